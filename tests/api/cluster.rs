//! Several instances: two real server processes on one PostgreSQL database and one S3 bucket
//! (moto's S3 server on loopback, a real S3 API): a job uploaded through one is seen live on
//! the other; an instance killed mid-job loses its lease and the other finishes the job
//! exactly. And SIGTERM: the process stops within its grace period, gives its job back, and a
//! restart finishes it exactly.

use crate::helpers::free_port;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};

use crate::helpers::postgres_url;
use crate::subscriptions::{SUB, connect, init, recv, send};

const BIN: &str = env!("CARGO_BIN_EXE_coupon-upload-api");
const SECRET: &str = "cluster-test-secret-cluster-test";

pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_http(url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(url).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start (see its log)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// moto's S3 server on a free loopback port, with a bucket `coupons`.
pub(crate) async fn s3_server(dir: &Path) -> (Proc, String) {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with moto[server] (pip install \"moto[server]\") is needed when TEST_POSTGRES_URL is set");
    let endpoint = format!("http://127.0.0.1:{port}");
    let p = Proc(child);
    wait_http(&endpoint, "moto_server").await;
    let res = reqwest::Client::new()
        .put(format!("{endpoint}/coupons"))
        .send()
        .await
        .expect("create bucket");
    assert!(res.status().is_success(), "create bucket: {}", res.status());
    (p, endpoint)
}

struct Instance {
    proc: Proc,
    base: String,
}

async fn start(db: &str, dir: &Path, name: &str, s3: Option<&str>, extra: &[&str]) -> Instance {
    let port = free_port();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--database-url",
        db,
    ])
    .args(["--job-lease-secs", "2", "--file-link-secret", SECRET])
    .args(["--spool-dir", "."])
    // The test polls fast; per-key rate limiting has its own test.
    .args(["--rate-limit-per-second", "0"])
    .args(extra)
    .env("RUST_LOG", "info,sqlx=warn")
    .current_dir(dir)
    .stdout(Stdio::null())
    .stderr(log);
    match s3 {
        Some(endpoint) => {
            cmd.args(["--storage-url", "s3://coupons/cluster"])
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ENDPOINT", endpoint)
                .env("AWS_ALLOW_HTTP", "true");
        }
        None => {
            cmd.args(["--storage-dir", "files"]);
        }
    }
    let base = format!("http://127.0.0.1:{port}");
    let inst = Instance {
        proc: Proc(cmd.spawn().expect("spawn")),
        base,
    };
    wait_http(&format!("{}/readyz", inst.base), name).await;
    inst
}

fn api_key(db: &str, dir: &Path) -> String {
    let out = Command::new(BIN)
        .args([
            "api-key",
            "create",
            "--org-id",
            "1",
            "--name",
            "cluster",
            "--permission",
            "READ_WRITE",
            "--database-url",
            db,
        ])
        .current_dir(dir)
        .output()
        .expect("api-key");
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

async fn gql(base: &str, key: &str, query: &str, variables: Value) -> Value {
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

async fn create_series(base: &str, key: &str) -> String {
    gql(
        base,
        key,
        "mutation { createCouponSeries(input: { name: \"c\", codeMaxLength: 40 }) { id } }",
        json!({}),
    )
    .await["createCouponSeries"]["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// `rows` codes, every 50th invalid: `rows - rows/50` accepted (rows/50 rounded up rejected).
fn file(tag: &str, rows: usize) -> Vec<u8> {
    let mut f = String::from("code\n");
    for i in 0..rows {
        if i % 50 == 0 {
            f.push_str(&format!("BAD {tag} {i}\n"));
        } else {
            f.push_str(&format!("{tag}-{i:06}\n"));
        }
    }
    f.into_bytes()
}

async fn upload(base: &str, key: &str, series: &str, content: Vec<u8>) -> String {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(content).file_name("c.csv"),
    );
    let body: Value = reqwest::Client::new()
        .post(format!("{base}/coupon/api/v1/upload/file/{series}"))
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
        .unwrap_or_else(|| panic!("{body}"))
        .to_string()
}

const JOB: &str =
    "query($id: ID!) { uploadJob(jobId: $id) { uploadStatus processedRowCount actualRowCount
    totalUploadedCount errorCount errorFileUrl successFileUrl } }";

async fn wait_end(base: &str, key: &str, job: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = gql(base, key, JOB, json!({ "id": job })).await["uploadJob"].clone();
        if matches!(
            j["uploadStatus"].as_str(),
            Some("FINISHED" | "ERRORED" | "CANCELLED")
        ) {
            return j;
        }
        assert!(Instant::now() < deadline, "job did not end: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn lease_owner(db: &DatabaseConnection, job: &str) -> (Option<String>, i64) {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT lease_owner, processed_row_count FROM upload_job WHERE id = {job}"),
        ))
        .await
        .expect("query")
        .expect("row");
    (
        row.try_get("", "lease_owner").expect("owner"),
        row.try_get("", "processed_row_count").expect("n"),
    )
}

async fn coupons_of(db: &DatabaseConnection, job: &str) -> (i64, i64) {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n, COUNT(DISTINCT code) AS d FROM coupon WHERE upload_job_id = {job}"),
        ))
        .await
        .expect("query")
        .expect("row");
    (
        row.try_get("", "n").expect("n"),
        row.try_get("", "d").expect("d"),
    )
}

fn check_exact(j: &Value, rows: i64) {
    let rejected = (rows + 49) / 50;
    assert_eq!(j["uploadStatus"], "FINISHED", "{j}");
    assert_eq!(j["actualRowCount"], rows, "{j}");
    assert_eq!(j["totalUploadedCount"], rows - rejected, "{j}");
    assert_eq!(j["errorCount"], rejected, "{j}");
    assert_eq!(j["processedRowCount"], rows, "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_jobs_events_and_files_postgres() {
    let Some(base_url) = postgres_url() else {
        eprintln!("skipped: TEST_POSTGRES_URL is not set");
        return;
    };
    let admin = Database::connect(&base_url)
        .await
        .expect("TEST_POSTGRES_URL is set but PostgreSQL cannot be reached");
    let name = format!("cluster_{:08x}", rand::random::<u32>());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create db");
    let db_url = match base_url.rfind('/') {
        Some(i) => format!("{}/{name}", &base_url[..i]),
        None => panic!("TEST_POSTGRES_URL has no database name"),
    };
    let run = tokio::spawn(async move { cluster(&db_url).await });
    let outcome = run.await;
    let _ = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn cluster(db_url: &str) {
    let d = tempfile::tempdir().expect("dir");
    let dir = d.path();
    let (_s3, endpoint) = s3_server(dir).await;
    let key = api_key(db_url, dir);
    let a = start(
        db_url,
        dir,
        "a",
        Some(&endpoint),
        &["--worker-batch-rows", "250"],
    )
    .await;
    let b = start(
        db_url,
        dir,
        "b",
        Some(&endpoint),
        &["--worker-batch-rows", "250"],
    )
    .await;
    let series = create_series(&a.base, &key).await;

    // 1. Upload through A while subscribed on B: B sees the job to FINISHED and serves its files.
    let mut ws = connect(&b.base, "graphql-transport-ws").await;
    init(&mut ws, &key).await;
    send(&mut ws, json!({ "id": "1", "type": "subscribe", "payload": { "query": SUB, "variables": { "s": series } } })).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let job = upload(&a.base, &key, &series, file("ONE", 2_000)).await;
    let uploaded = t0.elapsed();
    let last = loop {
        let m = recv(&mut ws).await;
        let j = m["payload"]["data"]["uploadJobUpdated"].clone();
        if j["jobId"] == job.as_str() && j["uploadStatus"] == "FINISHED" {
            break j;
        }
    };
    let received = chrono::Utc::now();
    println!(
        "upload request {uploaded:?}; upload through A → FINISHED event on B: {:?}",
        t0.elapsed()
    );
    let finished_at =
        chrono::DateTime::parse_from_rfc3339(last["updatedOn"].as_str().expect("updatedOn"))
            .expect("time");
    println!(
        "job finished (commit on the worker) → event received on B: {} ms",
        (received - finished_at.with_timezone(&chrono::Utc)).num_milliseconds()
    );
    assert_eq!(last["totalUploadedCount"], 2_000 - 40);
    let url = last["errorFileUrl"]
        .as_str()
        .expect("error file")
        .to_owned();
    assert!(url.starts_with(&b.base), "B's own link: {url}");
    let res = reqwest::get(&url).await.expect("get");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.text().await.expect("text").lines().count(),
        41,
        "header + 40 rejected rows, from S3"
    );
    let ok = reqwest::get(last["successFileUrl"].as_str().expect("success"))
        .await
        .expect("get");
    assert_eq!(ok.text().await.expect("text").lines().count(), 1 + 1_960);

    // 2. Kill -9 whichever instance works on a job: the other takes it over when the lease lapses.
    let db = Database::connect(db_url).await.expect("db");
    let rows: i64 = 30_000;
    let job = upload(&a.base, &key, &series, file("TWO", rows as usize)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let owner = loop {
        let (owner, done) = lease_owner(&db, &job).await;
        if let Some(o) = owner
            && done >= 2_000
        {
            break o;
        }
        assert!(Instant::now() < deadline, "no progress on job {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pid: u32 = owner
        .split('-')
        .rev()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("pid in lease owner");
    let (mut victim, survivor) = if a.proc.0.id() == pid { (a, b) } else { (b, a) };
    assert_eq!(victim.proc.0.id(), pid, "the owner is one of ours");
    let (_, at_kill) = lease_owner(&db, &job).await;
    let killed = Instant::now();
    victim.proc.0.kill().expect("kill -9");
    let _ = victim.proc.0.wait();
    let resumed = loop {
        let (owner, done) = lease_owner(&db, &job).await;
        if owner.is_some_and(|o| !o.contains(&owner_of(&victim))) || done > at_kill {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "no takeover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("takeover after kill -9 (lease 2 s): {resumed:?}");
    let j = wait_end(&survivor.base, &key, &job).await;
    check_exact(&j, rows);
    assert_eq!(
        coupons_of(&db, &job).await,
        (rows - 600, rows - 600),
        "no coupon lost or stored twice"
    );
    let errors = reqwest::get(j["errorFileUrl"].as_str().expect("url"))
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert_eq!(
        errors.lines().count() as i64,
        1 + 600,
        "every rejected row once"
    );
    drop(victim);
}

fn owner_of(i: &Instance) -> String {
    format!("-{}-", i.proc.0.id())
}

/// SIGTERM mid-job: the process exits within its grace period, the job is given back (no
/// lease), and a restart finishes it exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_within_the_grace_period_and_the_job_resumes_sqlite() {
    let d = tempfile::tempdir().expect("dir");
    let dir = d.path();
    let db_url = format!("sqlite://{}/term.db", dir.display());
    let key = api_key(&db_url, dir);
    let mut s = start(
        &db_url,
        dir,
        "s",
        None,
        &["--shutdown-grace-secs", "5", "--worker-batch-rows", "50"],
    )
    .await;
    let series = create_series(&s.base, &key).await;
    let rows = 40_000;
    let job = upload(&s.base, &key, &series, file("TERM", rows)).await;
    let db = Database::connect(&db_url).await.expect("db");
    let deadline = Instant::now() + Duration::from_secs(60);
    while lease_owner(&db, &job).await.1 < 2_000 {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    let pid = s.proc.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = loop {
        if let Some(st) = s.proc.0.try_wait().expect("wait") {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "did not exit within the bound"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("exit after SIGTERM: {:?}", t.elapsed());
    assert!(status.success(), "clean exit: {status:?}");
    let (owner, done) = lease_owner(&db, &job).await;
    assert_eq!(owner, None, "the lease was released");
    assert!(done < rows as i64, "stopped mid-job ({done})");
    drop(s);
    let s2 = start(&db_url, dir, "s2", None, &[]).await;
    let j = wait_end(&s2.base, &key, &job).await;
    check_exact(&j, rows as i64);
    assert_eq!(
        coupons_of(&db, &job).await,
        (rows as i64 - 800, rows as i64 - 800)
    );
}
