//! The binary itself: `api-key`, `print-schema`, and the README's first command, `serve --demo`.

use crate::helpers::free_port;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_coupon-upload-api");

fn run(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn api_key_commands_manage_keys_on_the_default_database() {
    let dir = tempfile::tempdir().expect("dir");
    let (ok, out, err) = run(
        dir.path(),
        &[
            "api-key",
            "create",
            "--org-id",
            "7",
            "--name",
            "ci",
            "--permission",
            "READ",
        ],
    );
    assert!(ok, "{err}");
    let key = out.lines().last().expect("key line");
    assert!(
        key.starts_with("cua_") && key.len() == 68,
        "the key alone on the last line: {out}"
    );
    assert!(
        dir.path().join("data/coupon-upload-api.db").exists(),
        "default SQLite file created"
    );

    let (ok, list, _) = run(dir.path(), &["api-key", "list"]);
    assert!(ok);
    assert!(list.contains(&key[..12]), "listed by prefix: {list}");
    assert!(!list.contains(key), "never the key itself: {list}");
    assert!(list.contains("\t7\tREAD\t"), "{list}");

    let (ok, _, err) = run(
        dir.path(),
        &[
            "api-key",
            "create",
            "--org-id",
            "7",
            "--name",
            "x",
            "--permission",
            "ADMIN",
        ],
    );
    assert!(!ok);
    assert!(err.contains("READ_WRITE"), "{err}");

    let (ok, out, err) = run(dir.path(), &["api-key", "revoke", "1"]);
    assert!(ok, "{err}");
    assert!(out.contains("revoked API key id=1"), "{out}");
    let (ok, _, err) = run(dir.path(), &["api-key", "revoke", "99"]);
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn print_schema_prints_the_committed_schema() {
    let dir = tempfile::tempdir().expect("dir");
    let (ok, out, err) = run(dir.path(), &["print-schema"]);
    assert!(ok, "{err}");
    assert_eq!(out, crate::schema::current_sdl());
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve --demo` on the SQLite default serves consistent demo data with the key it prints.
#[tokio::test]
async fn serve_demo_serves_consistent_data() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["serve", "--demo", "--bind", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let guard = Killed(child);
    let key = BufReader::new(stdout)
        .lines()
        .next()
        .expect("a line")
        .expect("utf-8");
    assert!(key.starts_with("cua_"), "{key}");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let q = r#"{ couponSeriesList { totalCount edges { node { id numUploadedTotal } } } }"#;
    let body: Value = client
        .post(format!("{base}/graphql"))
        .bearer_auth(&key)
        .json(&json!({ "query": q }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let edges = body["data"]["couponSeriesList"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(edges.len() >= 3, "several series: {body}");
    let (mut finished, mut errored, mut tagged) = (0, 0, 0);
    for e in edges {
        let id = e["node"]["id"].as_str().unwrap_or_default().to_owned();
        let series_total = e["node"]["numUploadedTotal"].as_i64().unwrap_or(-1);
        let q = r#"query($id: ID!) { uploadStatus(couponSeriesId: $id) { uploadJobStatuses {
            uploadStatus totalUploadedCount errorCount actualRowCount errorFileUrl
            audienceGroup { customerCount } audienceGroupVersion { versionNumber customerCount } } } }"#;
        let body: Value = client
            .post(format!("{base}/graphql"))
            .bearer_auth(&key)
            .json(&json!({ "query": q, "variables": { "id": id } }))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let jobs = body["data"]["uploadStatus"]["uploadJobStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut uploaded = 0;
        for j in jobs {
            let n = |f: &str| j[f].as_i64().unwrap_or(-1);
            match j["uploadStatus"].as_str() {
                Some("FINISHED") => {
                    finished += 1;
                    assert_eq!(
                        n("totalUploadedCount") + n("errorCount"),
                        n("actualRowCount"),
                        "{j}"
                    );
                    uploaded += n("totalUploadedCount");
                    let errors = client
                        .get(j["errorFileUrl"].as_str().expect("error file"))
                        .send()
                        .await
                        .expect("get");
                    let lines = errors.text().await.expect("body").lines().count() as i64;
                    assert_eq!(
                        lines - 1,
                        n("errorCount"),
                        "error file lists every rejected row"
                    );
                }
                Some("ERRORED") => errored += 1,
                other => panic!("unexpected status {other:?}"),
            }
            if !j["audienceGroupVersion"].is_null() {
                tagged += 1;
                assert!(
                    j["audienceGroupVersion"]["customerCount"]
                        .as_i64()
                        .unwrap_or(0)
                        > 0
                );
            }
        }
        assert_eq!(
            uploaded, series_total,
            "series {id}: numUploadedTotal is the sum of its jobs"
        );
    }
    assert!(
        finished >= 3 && errored >= 1 && tagged >= 2,
        "finished {finished}, errored {errored}, tagged {tagged}"
    );
    drop(guard);
}

/// `LOG_FORMAT=json`: one JSON object per line, each request's lines with its id, and no key.
#[tokio::test]
async fn json_logs_carry_request_ids_and_no_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let (ok, out, err) = run(
        dir.path(),
        &[
            "api-key",
            "create",
            "--org-id",
            "3",
            "--name",
            "logs",
            "--permission",
            "READ",
        ],
    );
    assert!(ok, "{err}");
    let key = out.lines().last().expect("key").to_owned();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
    let child = Command::new(BIN)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn");
    let guard = Killed(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = client
        .post(format!("{base}/graphql"))
        .bearer_auth(&key)
        .header("x-request-id", "log-test-42")
        .json(&json!({ "query": "query ListThem { couponSeriesList { totalCount } }" }))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(guard);
    let text = std::fs::read_to_string(dir.path().join("server.log")).expect("log");
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["request_id"] == "log-test-42" && l["span"]["path"] == "/graphql"),
        "a line of the request carries its id: {text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "graphql operation"
                && l["span"]["operation"] == "ListThem"),
        "a span per GraphQL operation: {text}"
    );
    assert!(!text.contains(&key), "the key is never logged");
}

/// `--metrics-bind` serves `/metrics` on its own address and takes it off the API's;
/// `--metrics-token` makes every scrape show the token.
#[tokio::test]
async fn metrics_on_their_own_address_behind_a_token() {
    let dir = tempfile::tempdir().expect("dir");
    let (port, metrics_port) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--metrics-bind",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("METRICS_TOKEN", "scrape-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let _guard = Killed(child);
    let base = format!("http://127.0.0.1:{port}");
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/readyz")).send().await.is_err()
        || client.get(&metrics).send().await.is_err()
    {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            client
                .get(format!("{base}/metrics"))
                .send()
                .await
                .expect("send")
        ),
        404,
        "not on the API's address"
    );
    assert_eq!(
        status(client.get(&metrics).send().await.expect("send")),
        401
    );
    assert_eq!(
        status(
            client
                .get(&metrics)
                .bearer_auth("wrong")
                .send()
                .await
                .expect("send")
        ),
        401
    );
    let res = client
        .get(&metrics)
        .bearer_auth("scrape-secret")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    assert!(
        res.text()
            .await
            .expect("text")
            .contains("upload_jobs{status=\"FINISHED\"}")
    );
}
