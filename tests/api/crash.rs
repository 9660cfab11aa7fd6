//! Crash safety: `kill -9` the real binary while it works on a job, twice (while staging and
//! while committing); after each restart the job resumes from its last checkpoint, and it ends
//! with the same counts, coupons and files as an uninterrupted run of the same upload.

use crate::helpers::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coupon_upload_api::domain::{JobPhase, UploadJobStatus};
use coupon_upload_api::entity::upload_job;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, EntityTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::postgres_url;

const BIN: &str = env!("CARGO_BIN_EXE_coupon-upload-api");
pub(crate) const ROWS: usize = 30_000;

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn cli(db: &str, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--database-url")
        .arg(db)
        .current_dir(dir)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

async fn start(db: &str, dir: &Path) -> Server {
    start_with(db, dir, &[], &[]).await
}

/// [`start`] with more flags (`extra`, last, so they override) and environment variables.
pub(crate) async fn start_with(
    db: &str,
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Server {
    let port = free_port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("log");
    let child = Command::new(BIN)
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            db,
        ])
        .args(["--storage-dir", "files", "--spool-dir", "."])
        .args(["--worker-batch-rows", "250", "--job-lease-secs", "1"])
        // The test polls fast; per-key rate limiting has its own test.
        .args(["--rate-limit-per-second", "0"])
        .args(["--file-link-secret", "crash-test-secret-crash-test-secret"])
        .args(extra)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info,sqlx=warn")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{}/readyz", server.base)).send().await
            && r.status() == StatusCode::OK
        {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "server did not start: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Codes with every kind of outcome: valid, invalid characters, duplicated in the file, and
/// repeated customers (the series allows one coupon per customer).
pub(crate) fn file() -> String {
    let mut f = String::from("code,customer\n");
    for i in 0..ROWS {
        let code = if i % 97 == 0 {
            format!("BAD CODE {i}")
        } else if i % 1000 == 1 {
            "DUPLICATE".to_owned()
        } else {
            format!("K-{i:07}")
        };
        f.push_str(&format!("{code},E-{}\n", i % 25_000));
    }
    f
}

pub(crate) async fn gql(base: &str, key: &str, query: &str, variables: Value) -> Value {
    let body: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

pub(crate) const JOB: &str = "query($id: ID!) { uploadJob(jobId: $id) { uploadStatus processedRowCount actualRowCount
    totalUploadedCount errorCount errorFileUrl successFileUrl audienceGroupVersion { versionNumber customerCount }
    couponSeries { numUploadedTotal } } }";

pub(crate) async fn job(base: &str, key: &str, id: &str) -> Value {
    gql(base, key, JOB, json!({ "id": id })).await["uploadJob"].clone()
}

/// Creates the series and uploads the file; returns (key, job id).
pub(crate) async fn upload(server: &Server, key: &str) -> String {
    let series = gql(
        &server.base,
        key,
        "mutation { createCouponSeries(input: { name: \"crash\", codeMaxLength: 40 }) { id } }",
        json!({}),
    )
    .await["createCouponSeries"]["id"]
        .as_str()
        .expect("series")
        .to_owned();
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(file().into_bytes()).file_name("crash.csv"),
        )
        .text("customerIdentifier", "EXTERNAL_ID")
        .text("customerIdentifierColumn", "1")
        .text("couponCodeColumn", "0");
    let body: Value = reqwest::Client::new()
        .post(format!(
            "{}/coupon/api/v1/upload/file/{series}",
            server.base
        ))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("json");
    body["result"]["uploadJobStatuses"][0]["jobId"]
        .as_i64()
        .expect("job id")
        .to_string()
}

/// The job's row as stored.
pub(crate) async fn stored_job(db: &DatabaseConnection, id: i64) -> upload_job::Model {
    upload_job::Entity::find_by_id(id)
        .one(db)
        .await
        .expect("read job")
        .expect("job row")
}

pub(crate) async fn wait_end(server: &Server, key: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let j = job(&server.base, key, id).await;
        if matches!(
            j["uploadStatus"].as_str(),
            Some("FINISHED" | "ERRORED" | "CANCELLED")
        ) {
            return j;
        }
        assert!(Instant::now() < deadline, "job did not end: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn download(url: &Value) -> String {
    reqwest::get(url.as_str().expect("url"))
        .await
        .expect("get")
        .text()
        .await
        .expect("text")
}

/// The success file without its coupon ids (ids differ between databases), and the ids.
pub(crate) fn split_success(csv_text: &str) -> (String, Vec<(i64, String)>) {
    let mut masked = String::new();
    let mut ids = Vec::new();
    for (i, line) in csv_text.lines().enumerate() {
        let cols: Vec<&str> = line.split(',').collect();
        if i > 0 {
            ids.push((cols[1].parse().expect("id"), cols[2].to_owned()));
        }
        masked.push_str(&format!("{},{},{}\n", cols[0], cols[2], cols[3]));
    }
    (masked, ids)
}

pub(crate) struct Outcome {
    pub(crate) job: Value,
    errors: String,
    success: String,
    ids: Vec<(i64, String)>,
}

/// The job's files, downloaded.
pub(crate) async fn outcome(j: Value) -> Outcome {
    let errors = download(&j["errorFileUrl"]).await;
    let (success, ids) = split_success(&download(&j["successFileUrl"]).await);
    Outcome {
        job: j,
        errors,
        success,
        ids,
    }
}

/// Every coupon of the job exists once, with the id the success file gives.
pub(crate) async fn check_coupons(db: &DatabaseConnection, job_id: &str, o: &Outcome) {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            format!("SELECT id, code FROM coupon WHERE upload_job_id = {job_id} ORDER BY id"),
        ))
        .await
        .expect("coupons");
    let mut stored: Vec<(i64, String)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "id").expect("id"),
                r.try_get("", "code").expect("code"),
            )
        })
        .collect();
    let mut listed = o.ids.clone();
    stored.sort();
    listed.sort();
    assert_eq!(
        stored.len() as i64,
        o.job["totalUploadedCount"].as_i64().expect("total"),
        "no coupon lost or stored twice"
    );
    assert_eq!(
        stored, listed,
        "the success file lists exactly the stored coupons"
    );
}

async fn crash_run(db_url: &str, dir: &Path) -> (Outcome, DatabaseConnection, String) {
    let key = cli(
        db_url,
        dir,
        &[
            "api-key",
            "create",
            "--org-id",
            "1",
            "--name",
            "crash",
            "--permission",
            "READ_WRITE",
        ],
    );
    let a = start(db_url, dir).await;
    let db = Database::connect(db_url).await.expect("db");
    let id = upload(&a, &key).await;
    let job_id: i64 = id.parse().expect("job id");
    // Kill 1: while the file is being staged, i.e. once a worker holds the job's lease in
    // phase STAGE (staging ends in one transaction that moves the job to JUDGE).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let j = stored_job(&db, job_id).await;
        if j.upload_status == UploadJobStatus::Processing
            && j.phase == JobPhase::Stage
            && j.lease_owner.is_some()
        {
            break;
        }
        assert_eq!(j.phase, JobPhase::Stage, "staged before the kill: {j:?}");
        assert!(Instant::now() < deadline, "staging did not start: {j:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(a);
    // As the kill left it: claimed, leased, still staging.
    let first = stored_job(&db, job_id).await;
    assert_eq!(
        (first.upload_status, first.phase),
        (UploadJobStatus::Processing, JobPhase::Stage),
        "killed while staging: {first:?}"
    );
    assert!(
        first.lease_owner.is_some() && first.lease_expires_ms.is_some(),
        "killed holding the lease: {first:?}"
    );

    // Kill 2: in the middle of committing batches.
    let b = start(db_url, dir).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let at_kill = loop {
        let j = job(&b.base, &key, &id).await;
        let done = j["processedRowCount"].as_i64().unwrap_or(0);
        if done >= 5_000 {
            break j;
        }
        assert!(Instant::now() < deadline, "no progress: {j}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    drop(b);
    assert_eq!(
        at_kill["uploadStatus"], "PROCESSING",
        "killed mid-job: {at_kill}"
    );
    assert!(
        at_kill["processedRowCount"].as_i64().unwrap_or(0) < ROWS as i64,
        "{at_kill}"
    );

    let c = start(db_url, dir).await;
    let j = wait_end(&c, &key, &id).await;
    let o = outcome(j).await;
    (o, db, id)
}

pub(crate) async fn clean_run(db_url: &str, dir: &Path) -> Outcome {
    let key = cli(
        db_url,
        dir,
        &[
            "api-key",
            "create",
            "--org-id",
            "1",
            "--name",
            "clean",
            "--permission",
            "READ_WRITE",
        ],
    );
    let s = start(db_url, dir).await;
    let id = upload(&s, &key).await;
    let j = wait_end(&s, &key, &id).await;
    outcome(j).await
}

pub(crate) async fn compare(crashed: Outcome, clean: Outcome) {
    assert_eq!(clean.job["uploadStatus"], "FINISHED", "{}", clean.job);
    assert_eq!(crashed.job["uploadStatus"], "FINISHED", "{}", crashed.job);
    for f in [
        "actualRowCount",
        "totalUploadedCount",
        "errorCount",
        "processedRowCount",
        "audienceGroupVersion",
        "couponSeries",
    ] {
        assert_eq!(crashed.job[f], clean.job[f], "{f}");
    }
    assert_eq!(clean.job["actualRowCount"], ROWS);
    assert!(
        clean.job["errorCount"].as_i64().unwrap_or(0) > 300,
        "every kind of rejection is exercised: {}",
        clean.job
    );
    assert_eq!(crashed.errors, clean.errors, "error files are identical");
    assert_eq!(
        crashed.success, clean.success,
        "success files are identical but for coupon ids"
    );
    assert_eq!(
        crashed.errors.lines().count() as i64 - 1,
        crashed.job["errorCount"].as_i64().unwrap_or(-1)
    );
}

pub(crate) fn temp() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("dir");
    let p = d.path().to_owned();
    (d, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_job_then_resume_sqlite() {
    let (_d1, dir1) = temp();
    let (_d2, dir2) = temp();
    let url1 = format!("sqlite://{}/crash.db", dir1.display());
    let url2 = format!("sqlite://{}/clean.db", dir2.display());
    let (crashed, db, id) = crash_run(&url1, &dir1).await;
    check_coupons(&db, &id, &crashed).await;
    let clean = clean_run(&url2, &dir2).await;
    compare(crashed, clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_job_then_resume_postgres() {
    let Some(base) = postgres_url() else {
        eprintln!("skipped: TEST_POSTGRES_URL is not set");
        return;
    };
    let admin = Database::connect(&base)
        .await
        .expect("TEST_POSTGRES_URL is set but PostgreSQL cannot be reached");
    let names = [
        format!("crash_{:08x}", rand::random::<u32>()),
        format!("clean_{:08x}", rand::random::<u32>()),
    ];
    for n in &names {
        admin
            .execute_unprepared(&format!("CREATE DATABASE {n}"))
            .await
            .expect("create db");
    }
    let url = |n: &str| match base.rfind('/') {
        Some(i) => format!("{}/{n}", &base[..i]),
        None => panic!("TEST_POSTGRES_URL has no database name"),
    };
    let (_d1, dir1) = temp();
    let (_d2, dir2) = temp();
    let (crash_url, clean_url) = (url(&names[0]), url(&names[1]));
    let result = async move {
        let (crashed, db, id) = crash_run(&crash_url, &dir1).await;
        check_coupons(&db, &id, &crashed).await;
        db.close().await.ok();
        let clean = clean_run(&clean_url, &dir2).await;
        compare(crashed, clean).await;
    };
    let outcome = tokio::spawn(result).await;
    for n in &names {
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))
            .await;
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
