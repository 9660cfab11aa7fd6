//! A bounded load test on loopback: the real binary serves status queries from 8 concurrent
//! clients while another uploads files, for `LOAD_TEST_SECS` (default 120). Zero errors are
//! allowed, every upload must finish, and the server's RSS must level off (the last third of
//! the run may not exceed the middle third's peak by more than 20 % + 8 MiB).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_coupon-upload-api");

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_queries_and_uploads_under_load_sqlite() {
    let secs: u64 = std::env::var("LOAD_TEST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let dir = tempfile::tempdir().expect("dir");
    let out = Command::new(BIN)
        .args([
            "api-key",
            "create",
            "--org-id",
            "1",
            "--name",
            "load",
            "--permission",
            "READ_WRITE",
        ])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("key");
    let key = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    let port = crate::helpers::free_port();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--rate-limit-per-second",
            "0",
        ])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (c2, b2, k2) = (client.clone(), base.clone(), key.clone());
    let gql = move |q: &'static str, v: Value| {
        let (client, base, key) = (c2.clone(), b2.clone(), k2.clone());
        async move {
            let res = client
                .post(format!("{base}/graphql"))
                .bearer_auth(&key)
                .json(&json!({ "query": q, "variables": v }))
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => r
                    .json::<Value>()
                    .await
                    .ok()
                    .filter(|b| b.get("errors").is_none()),
                _ => None,
            }
        }
    };
    let series = gql(
        "mutation { createCouponSeries(input: { name: \"load\" }) { id } }",
        json!({}),
    )
    .await
    .expect("series")["data"]["createCouponSeries"]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let stop_at = Instant::now() + Duration::from_secs(secs);
    let (queries, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (gql, series, queries, errors) =
            (gql.clone(), series.clone(), queries.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop_at {
                let q = "query($s: ID!) { uploadStatus(couponSeriesId: $s) { uploadJobStatuses(first: 20) { jobId uploadStatus
                    totalUploadedCount errorCount actualRowCount errorFileUrl audienceGroup { id } } } }";
                match gql(q, json!({ "s": series })).await {
                    Some(_) => queries.fetch_add(1, Ordering::Relaxed),
                    None => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // The uploader: one 2,000-row file after another, each to FINISHED.
    let uploader = {
        let (client, base, key, series, errors) = (
            client.clone(),
            base.clone(),
            key.clone(),
            series.clone(),
            errors.clone(),
        );
        tokio::spawn(async move {
            let mut done = 0u64;
            let mut n = 0u64;
            while Instant::now() < stop_at {
                n += 1;
                let mut f = String::from("code\n");
                for i in 0..2_000 {
                    f.push_str(&format!("L{n}-{i}\n"));
                }
                let form = reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(f.into_bytes()).file_name("l.csv"),
                );
                let res = client
                    .post(format!("{base}/coupon/api/v1/upload/file/{series}"))
                    .bearer_auth(&key)
                    .multipart(form)
                    .send()
                    .await;
                let Ok(res) = res else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let body: Value = res.json().await.unwrap_or_default();
                let Some(job) = body["result"]["uploadJobStatuses"][0]["jobId"].as_i64() else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                loop {
                    let q = json!({ "query": "query($j: ID!) { uploadJob(jobId: $j) { uploadStatus totalUploadedCount } }", "variables": { "j": job.to_string() } });
                    let b: Value = match client
                        .post(format!("{base}/graphql"))
                        .bearer_auth(&key)
                        .json(&q)
                        .send()
                        .await
                    {
                        Ok(r) => r.json().await.unwrap_or_default(),
                        Err(_) => Value::Null,
                    };
                    match b["data"]["uploadJob"]["uploadStatus"].as_str() {
                        Some("FINISHED")
                            if b["data"]["uploadJob"]["totalUploadedCount"] == 2_000 =>
                        {
                            done += 1;
                            break;
                        }
                        Some("STARTED" | "PROCESSING") => {
                            tokio::time::sleep(Duration::from_millis(50)).await
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
            done
        })
    };
    let mut rss = Vec::new();
    while Instant::now() < stop_at {
        rss.push(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    let uploads = uploader.await.unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    let third = rss.len() / 3;
    let middle = rss[third..2 * third].iter().copied().max().unwrap_or(0);
    let last = rss[2 * third..].iter().copied().max().unwrap_or(0);
    println!(
        "load: {secs} s, {} status queries ({:.0}/s), {uploads} uploads of 2,000 rows, {} errors; RSS peak middle third {} MiB, last third {} MiB",
        queries.load(Ordering::Relaxed),
        queries.load(Ordering::Relaxed) as f64 / secs as f64,
        errors.load(Ordering::Relaxed),
        middle / 1024,
        last / 1024
    );
    assert_eq!(errors.load(Ordering::Relaxed), 0, "no errors under load");
    assert!(queries.load(Ordering::Relaxed) > 0 && uploads > 0);
    assert!(
        last as f64 <= middle as f64 * 1.2 + 8.0 * 1024.0,
        "RSS levels off: middle {middle} KiB, last {last} KiB"
    );
}
