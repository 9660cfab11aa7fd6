//! Faults that clear by themselves, injected mid-job into the real binary on PostgreSQL: every
//! app session terminated (`pg_terminate_backend`), PostgreSQL itself stopped and started again
//! (a throw-away cluster of the test's own, on its own port), and the S3 store unreachable (a
//! proxy in front of moto's S3 server stops passing connections, then passes them again). Each
//! job ends `FINISHED` with the same counts, coupons and files as an uninterrupted run, each
//! code once, and the faults cost it no attempt. A store that stays down past the retry window
//! ends the job `ERRORED` with the fault as its reason and counts equal to its coupons.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coupon_upload_api::domain::{JobPhase, UploadJobStatus};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};

use crate::crash::{
    JOB, Server, check_coupons, clean_run, cli, compare, outcome, start_with, stored_job, temp,
    upload,
};
use crate::helpers::{free_port, postgres_url};

/// `TEST_POSTGRES_URL` with its database replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    match base.rfind('/') {
        Some(i) => format!("{}/{name}", &base[..i]),
        None => panic!("TEST_POSTGRES_URL has no database name"),
    }
}

/// Fresh databases on the test server for one test, dropped by [`drop_databases`].
async fn databases(base: &str, prefixes: &[&str]) -> (DatabaseConnection, Vec<String>) {
    let admin = Database::connect(base)
        .await
        .expect("TEST_POSTGRES_URL is set but PostgreSQL cannot be reached");
    let mut names = Vec::new();
    for p in prefixes {
        let n = format!("{p}_{:08x}", rand::random::<u32>());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {n}"))
            .await
            .expect("create db");
        names.push(n);
    }
    (admin, names)
}

async fn drop_databases(admin: &DatabaseConnection, names: &[String]) {
    for n in names {
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))
            .await;
    }
}

/// The API key the CLI makes, for org 1.
fn key(db: &str, dir: &Path) -> String {
    cli(
        db,
        dir,
        &[
            "api-key",
            "create",
            "--org-id",
            "1",
            "--name",
            "faults",
            "--permission",
            "READ_WRITE",
        ],
    )
}

/// The job as the API shows it, or `None` while the API answers with an error (503 while the
/// database is down).
async fn try_job(server: &Server, key: &str, id: &str) -> Option<Value> {
    let res = reqwest::Client::new()
        .post(format!("{}/graphql", server.base))
        .bearer_auth(key)
        .json(&json!({ "query": JOB, "variables": { "id": id } }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let body: Value = res.json().await.ok()?;
    body.get("errors")
        .is_none()
        .then(|| body["data"]["uploadJob"].clone())
}

/// Waits for the job to end, through any answers the faults cause.
async fn wait_end(server: &Server, key: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(j) = try_job(server, key, id).await
            && matches!(
                j["uploadStatus"].as_str(),
                Some("FINISHED" | "ERRORED" | "CANCELLED")
            )
        {
            return j;
        }
        assert!(Instant::now() < deadline, "the job did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the stored job (through `db`, a connection of the test's own) until `ready` holds.
async fn wait_stored(
    db: &DatabaseConnection,
    id: i64,
    what: &str,
    ready: impl Fn(&coupon_upload_api::entity::upload_job::Model) -> bool,
) -> coupon_upload_api::entity::upload_job::Model {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = stored_job(db, id).await;
        if ready(&j) {
            return j;
        }
        assert!(Instant::now() < deadline, "{what}: {j:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn server_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

/// The job ended as an uninterrupted run of the same file does, the faults cost it no
/// attempt, and the server did meet them (its log says it waited one out).
async fn check_survived(
    db: &DatabaseConnection,
    dir: &Path,
    id: &str,
    faulted: Value,
    clean_db: &str,
) {
    let server_log = server_log(dir);
    assert!(
        server_log.contains("transient fault"),
        "the worker met the fault and waited it out:\n{server_log}"
    );
    let stored = stored_job(db, id.parse().expect("id")).await;
    assert_eq!(
        stored.attempts, 1,
        "a transient fault is not a failed attempt: {stored:?}"
    );
    let (_clean_dir_guard, clean_dir) = temp();
    let faulted = outcome(faulted).await;
    check_coupons(db, id, &faulted).await;
    let clean = clean_run(clean_db, &clean_dir).await;
    compare(faulted, clean).await;
}

/// Terminates every session of database `name` but the test's own (named `fault-test`).
async fn terminate_sessions(admin: &DatabaseConnection, name: &str) -> i64 {
    let row = admin
        .query_one_raw(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            format!(
                "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid() \
                 AND application_name <> 'fault-test'"
            ),
        ))
        .await
        .expect("terminate")
        .expect("row");
    row.try_get("", "n").expect("n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions_terminated_mid_job() {
    let Some(base) = postgres_url() else {
        eprintln!("skipped: TEST_POSTGRES_URL is not set");
        return;
    };
    let (admin, names) = databases(&base, &["fault_kill", "fault_kill_clean"]).await;
    let (url, clean_url) = (
        with_database(&base, &names[0]),
        with_database(&base, &names[1]),
    );
    let admin2 = Database::connect(&base).await.expect("admin");
    let run = {
        let name = names[0].clone();
        async move {
            let (_guard, dir) = temp();
            let key = key(&url, &dir);
            let server = start_with(&url, &dir, &[], &[]).await;
            let db = Database::connect(format!("{url}?application_name=fault-test"))
                .await
                .expect("db");
            let id = upload(&server, &key).await;
            let job_id: i64 = id.parse().expect("id");
            // Once while staging, then twice while committing batches.
            let staging = wait_stored(&db, job_id, "staging did not start", |j| {
                j.phase != JobPhase::Stage || j.lease_owner.is_some()
            })
            .await;
            if staging.phase == JobPhase::Stage {
                assert!(terminate_sessions(&admin2, &name).await > 0);
            }
            for at in [5_000, 15_000] {
                let j =
                    wait_stored(&db, job_id, "no progress", |j| j.processed_row_count >= at).await;
                assert_eq!(j.upload_status, UploadJobStatus::Processing, "{j:?}");
                assert!(
                    j.processed_row_count < crate::crash::ROWS as i64,
                    "terminated mid-job: {j:?}"
                );
                assert!(terminate_sessions(&admin2, &name).await > 0);
            }
            let j = wait_end(&server, &key, &id).await;
            check_survived(&db, &dir, &id, j, &clean_url).await;
        }
    };
    let result = tokio::spawn(run).await;
    drop_databases(&admin, &names).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A PostgreSQL cluster of the test's own in a temp folder, on a free port, run as the
/// `postgres` user when the test runs as root (PostgreSQL refuses to run as root).
struct ThrowAwayCluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    socket_dir: PathBuf,
}

impl ThrowAwayCluster {
    fn create() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's programs in /usr/lib/postgresql (initdb, pg_ctl)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|p| p.join("pg_ctl").exists())
            .expect("pg_ctl");
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let socket_dir = dir.path().to_owned();
        let c = Self {
            port: free_port(),
            data,
            bin,
            socket_dir,
            _dir: dir,
        };
        if running_as_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(c._dir.path())
                .status()
                .expect("chown");
            assert!(ok.success(), "chown to postgres");
        }
        let data = c.data.display().to_string();
        c.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        c.start();
        c
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut cmd = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = cmd.args(args).output().expect(program);
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60",
            self.port,
            self.socket_dir.display()
        );
        let log = self.socket_dir.join("postgres.log").display().to_string();
        let data = self.data.display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        );
    }

    /// As a crash would: no shutdown checkpoint, recovery at the next start.
    fn stop_immediately(&self) {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

impl Drop for ThrowAwayCluster {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let path = self.bin.join("pg_ctl");
        let mut cmd = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let _ = cmd.args(["-D", &data, "-m", "immediate", "stop"]).output();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_job() {
    if postgres_url().is_none() {
        eprintln!("skipped: TEST_POSTGRES_URL is not set");
        return;
    }
    let cluster = ThrowAwayCluster::create();
    let base = cluster.url();
    let (admin, names) = databases(&base, &["fault_restart", "fault_restart_clean"]).await;
    admin.close().await.ok();
    let (url, clean_url) = (
        with_database(&base, &names[0]),
        with_database(&base, &names[1]),
    );
    let (_guard, dir) = temp();
    let key = key(&url, &dir);
    let server = start_with(&url, &dir, &[], &[]).await;
    let id = upload(&server, &key).await;
    let job_id: i64 = id.parse().expect("id");
    {
        let db = Database::connect(&url).await.expect("db");
        let j = wait_stored(&db, job_id, "no progress", |j| {
            j.processed_row_count >= 5_000
        })
        .await;
        assert_eq!(j.upload_status, UploadJobStatus::Processing, "{j:?}");
        db.close().await.ok();
    }
    cluster.stop_immediately();
    // While it is down the API says so: 503 with a code, and /readyz.
    let client = reqwest::Client::new();
    let ready = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let res = client
        .post(format!("{}/graphql", server.base))
        .bearer_auth(&key)
        .json(&json!({ "query": JOB, "variables": { "id": id } }))
        .send()
        .await
        .expect("graphql");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAVAILABLE",
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start();
    let j = wait_end(&server, &key, &id).await;
    let db = Database::connect(&url).await.expect("db");
    let ready = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK, "ready again on its own");
    check_survived(&db, &dir, &id, j, &clean_url).await;
    drop(server);
}

/// A TCP proxy on loopback in front of `target`; `set_up(false)` cuts every connection through
/// it and refuses new ones (each is closed at once) until `set_up(true)`.
struct Outage {
    port: u16,
    up: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
    _task: tokio::task::JoinHandle<()>,
}

impl Outage {
    async fn proxy(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (up2, cut2) = (up.clone(), cut.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let cut = cut2.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        Self {
            port,
            up,
            cut,
            _task: task,
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.cut.notify_waiters();
        }
    }
}

/// moto behind an [`Outage`] proxy; returns (moto, proxy, the endpoint through the proxy).
async fn s3_with_outage(dir: &Path) -> (crate::cluster::Proc, Outage, String) {
    let (moto, endpoint) = crate::cluster::s3_server(dir).await;
    let target = endpoint.trim_start_matches("http://").to_owned();
    let outage = Outage::proxy(target).await;
    let through = format!("http://127.0.0.1:{}", outage.port);
    (moto, outage, through)
}

fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT", endpoint.to_owned()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
}

async fn start_on_s3(db: &str, dir: &Path, endpoint: &str, extra: &[&str]) -> Server {
    let env = s3_env(endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut args = vec!["--storage-url", "s3://coupons/faults"];
    args.extend_from_slice(extra);
    start_with(db, dir, &args, &env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_unreachable_mid_job() {
    let Some(base) = postgres_url() else {
        eprintln!("skipped: TEST_POSTGRES_URL is not set");
        return;
    };
    let (admin, names) = databases(&base, &["fault_s3", "fault_s3_clean"]).await;
    let (url, clean_url) = (
        with_database(&base, &names[0]),
        with_database(&base, &names[1]),
    );
    let run = async move {
        let (_guard, dir) = temp();
        let (_moto, outage, endpoint) = s3_with_outage(&dir).await;
        let key = key(&url, &dir);
        // Uploaded through an instance without a worker, so the store is down before any
        // worker opens the file.
        let id = {
            let api = start_on_s3(&url, &dir, &endpoint, &["--no-worker"]).await;
            upload(&api, &key).await
        };
        outage.set_up(false);
        let server = start_on_s3(&url, &dir, &endpoint, &[]).await;
        let db = Database::connect(&url).await.expect("db");
        let job_id: i64 = id.parse().expect("id");
        // Down while the worker tries to read the file (beyond the store client's own
        // retries, ~10 s), then back.
        wait_stored(&db, job_id, "the worker did not claim the job", |j| {
            j.lease_owner.is_some()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(12)).await;
        let j = stored_job(&db, job_id).await;
        assert_eq!(
            (j.upload_status, j.phase),
            (UploadJobStatus::Processing, JobPhase::Stage),
            "waiting for the store: {j:?}"
        );
        outage.set_up(true);
        // Down again near the end of committing, so the files are written into the outage.
        wait_stored(&db, job_id, "no progress", |j| {
            j.processed_row_count >= crate::crash::ROWS as i64 - 3_000
        })
        .await;
        outage.set_up(false);
        wait_stored(&db, job_id, "the job did not reach FILES", |j| {
            j.phase == JobPhase::Files
        })
        .await;
        tokio::time::sleep(Duration::from_secs(12)).await;
        let j = stored_job(&db, job_id).await;
        assert_eq!(
            j.phase,
            JobPhase::Files,
            "waiting to write its files: {j:?}"
        );
        outage.set_up(true);
        let j = wait_end(&server, &key, &id).await;
        check_survived(&db, &dir, &id, j, &clean_url).await;
    };
    let result = tokio::spawn(run).await;
    drop_databases(&admin, &names).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_down_past_the_retry_window_errors_the_job_with_its_reason() {
    let Some(base) = postgres_url() else {
        eprintln!("skipped: TEST_POSTGRES_URL is not set");
        return;
    };
    let (admin, names) = databases(&base, &["fault_window"]).await;
    let url = with_database(&base, &names[0]);
    let run = async move {
        let (_guard, dir) = temp();
        let (_moto, outage, endpoint) = s3_with_outage(&dir).await;
        let key = key(&url, &dir);
        let server = start_on_s3(
            &url,
            &dir,
            &endpoint,
            &["--transient-retry-window-secs", "3"],
        )
        .await;
        let id = upload(&server, &key).await;
        let db = Database::connect(&url).await.expect("db");
        let job_id: i64 = id.parse().expect("id");
        // Down for good once batches are committed: the files cannot be written.
        wait_stored(&db, job_id, "no progress", |j| {
            j.processed_row_count >= 5_000
        })
        .await;
        outage.set_up(false);
        let j = wait_end(&server, &key, &id).await;
        assert_eq!(j["uploadStatus"], "ERRORED", "{j}");
        let stored = stored_job(&db, job_id).await;
        let reason = stored.error_reason.clone().unwrap_or_default();
        assert!(
            reason.contains("could not be completed") && reason.contains("retried for 3 s"),
            "{reason}"
        );
        // What it committed stays, and its counts say exactly that.
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("SELECT count(*) AS n FROM coupon WHERE upload_job_id = {job_id}"),
            ))
            .await
            .expect("count")
            .expect("row");
        let coupons: i64 = row.try_get("", "n").expect("n");
        assert!(coupons > 0, "batches were committed before the outage");
        assert_eq!(j["totalUploadedCount"].as_i64(), Some(coupons), "{j}");
        assert_eq!(
            j["couponSeries"]["numUploadedTotal"].as_i64(),
            Some(coupons),
            "{j}"
        );
        drop(server);
    };
    let result = tokio::spawn(run).await;
    drop_databases(&admin, &names).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
