//! Every door's worst input gets a coded answer, never a reset connection (issue "Hardening
//! II"). Each test here failed, with a panic or a broken connection, before its fix.

use coupon_upload_api::domain::Permission;
use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{TestApp, code};

/// A query that is not introspection (which runs without a key).
const STATUS: &str = "{ uploadStatus(couponSeriesId: \"1\") { id } }";

const UPLOAD: &str = "mutation($s: ID!, $f: Upload!) { uploadCoupons(couponSeriesId: $s, file: $f, customerIdentifier: NOT_TAGGED) { jobId } }";

async fn no_jobs(app: &TestApp) {
    let jobs = coupon_upload_api::entity::upload_job::Entity::find()
        .all(app.state.service.db())
        .await
        .expect("db");
    assert!(jobs.is_empty(), "{jobs:?}");
}

/// The server still answers after the request before.
async fn still_serving(app: &TestApp) {
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("the server still answers");
    assert_eq!(res.status(), StatusCode::OK);
}

db_tests!(multibyte_link_signatures_are_refused);

/// A `sig` of 64 bytes that are not 64 hex digits (here: multibyte characters, which used to
/// be sliced inside a character) is a 403 like any other bad signature.
async fn multibyte_link_signatures_are_refused(app: TestApp) {
    let expires = chrono::Utc::now().timestamp() + 3600;
    for sig in [
        format!("a%C3%A9{}", "0".repeat(61)),
        format!("{}%C3%A9", "0".repeat(62)),
        "%F0%9F%98%80".repeat(16),
        "zz".repeat(32),
    ] {
        let url = format!(
            "{}/files/org/1/jobs/1/errors.csv?expires={expires}&sig={sig}",
            app.base
        );
        let res = app.client.get(&url).send().await.expect("a response");
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{sig}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"]["code"], "FORBIDDEN", "{body}");
    }
    still_serving(&app).await;
}

db_tests!(file_placeholders_outside_multipart_are_coded);

/// The multipart reader's placeholder for a file, sent by a client as a plain JSON variable
/// or a literal, is refused with `BAD_USER_INPUT` (it used to panic in the argument's parser,
/// for any key, before the write check), and a placeholder naming a file that was not sent
/// is refused too.
async fn file_placeholders_outside_multipart_are_coded(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let read = app.key(1, Permission::Read).await;
    let series = app.create_series(&key, json!({})).await;
    for placeholder in [
        "#__graphql_file__:x",
        "#__graphql_file__:",
        "#__graphql_file__:0",
        "#__graphql_file__:18446744073709551616",
        "plain text",
    ] {
        for k in [&key, &read] {
            let (status, body) = app
                .gql(Some(k), UPLOAD, json!({ "s": series, "f": placeholder }))
                .await;
            assert!(
                status.is_client_error() || status == StatusCode::OK,
                "{status}"
            );
            assert!(body["data"]["uploadCoupons"].is_null(), "{body}");
            let c = code(&body);
            assert!(
                c == "BAD_USER_INPUT" || c == "FORBIDDEN",
                "{placeholder}: {body}"
            );
        }
        let literal = format!(
            "mutation {{ uploadCoupons(couponSeriesId: \"{series}\", file: \"{placeholder}\", customerIdentifier: NOT_TAGGED) {{ jobId }} }}"
        );
        let (_, body) = app.gql(Some(&key), &literal, json!({})).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{placeholder}: {body}");
    }
    // Anonymous: no key, the same answer shape.
    let (_, body) = app
        .gql(
            None,
            UPLOAD,
            json!({ "s": series, "f": "#__graphql_file__:x" }),
        )
        .await;
    assert_ne!(code(&body), "<none>", "{body}");
    no_jobs(&app).await;
    still_serving(&app).await;
}

async fn post_form(
    app: &TestApp,
    key: &str,
    form: reqwest::multipart::Form,
) -> (StatusCode, Value) {
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .expect("a response");
    let status = res.status();
    (status, res.json().await.expect("json"))
}

db_tests!(a_file_fills_one_argument);

/// One file mapped to two variables (or to two operations of a batch, which would then share
/// one read offset) is refused; nothing is created.
async fn a_file_fills_one_argument(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let single = json!({ "query": UPLOAD, "variables": { "s": series, "f": null } });
    let batch = json!([single.clone(), single.clone()]);
    for (operations, map) in [
        (
            single.clone(),
            json!({ "0": ["variables.f", "variables.f"] }),
        ),
        (batch, json!({ "0": ["0.variables.f", "1.variables.f"] })),
        (single, json!({ "0": [] })),
    ] {
        let form = reqwest::multipart::Form::new()
            .text("operations", operations.to_string())
            .text("map", map.to_string())
            .part(
                "0",
                reqwest::multipart::Part::bytes(b"code\nA\n".to_vec()).file_name("a.csv"),
            );
        let (status, body) = post_form(&app, &key, form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{map}: {body}");
        assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    }
    no_jobs(&app).await;
}

db_tests!(form_fields_are_capped);

/// A form may have 16 text fields of 2 MiB in all: more fields is `BAD_USER_INPUT`, more
/// bytes `PAYLOAD_TOO_LARGE`, before anything is parsed.
async fn form_fields_are_capped(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let operations = json!({ "query": UPLOAD, "variables": { "s": series, "f": null } });
    let mut many = reqwest::multipart::Form::new().text("operations", operations.to_string());
    for i in 0..20 {
        many = many.text(format!("extra{i}"), "x");
    }
    let (status, body) = post_form(&app, &key, many).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");

    let mut large = reqwest::multipart::Form::new().text("operations", operations.to_string());
    for i in 0..3 {
        large = large.text(format!("pad{i}"), " ".repeat(900 * 1024));
    }
    let (status, body) = post_form(&app, &key, large).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(code(&body), "PAYLOAD_TOO_LARGE", "{body}");
    no_jobs(&app).await;
}

crate::db_tests_with!(
    crate::helpers::Options { worker: false, ..Default::default() };
    a_wrong_key_again_costs_no_lookup
);

/// A key the database did not know is refused from memory when it comes again: a client
/// retrying a wrong key costs no statement. (No worker: its polling would be counted.)
async fn a_wrong_key_again_costs_no_lookup(app: TestApp) {
    let wrong = format!("cua_{}", "0".repeat(64));
    let ask = || async {
        let (status, body) = app.gql(Some(&wrong), STATUS, json!({})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");
    };
    ask().await;
    let before = app.statements();
    for _ in 0..5 {
        ask().await;
    }
    assert_eq!(
        app.statements(),
        before,
        "a known-wrong key was looked up again"
    );
}

crate::db_tests_with!(
    crate::helpers::Options {
        anonymous_rate_limit: coupon_upload_api::http::ratelimit::RateLimit {
            per_second: 0.01,
            burst: 3.0,
        },
        // No worker: its polling would be counted with the statements.
        worker: false,
        ..Default::default()
    };
    work_before_a_key_is_limited_per_address
);

/// Lookups of uncached keys and anonymous introspection share one bucket per client address:
/// past it, 429 with `Retry-After` and no statement. A valid key is not held back by it once
/// it is cached, and anonymous requests meet the same limits as any (one operation only).
async fn work_before_a_key_is_limited_per_address(app: TestApp) {
    let key = app.key(1, Permission::Read).await;
    // The valid key's first lookup takes a token; cached, it takes none after.
    app.gql_ok(&key, "{ __typename }", json!({})).await;
    let (status, body) = app
        .gql(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let random = format!("cua_{}", "1".repeat(64));
    let (status, _) = app.gql(Some(&random), STATUS, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let before = app.statements();
    for k in [
        format!("cua_{}", "2".repeat(64)),
        format!("cua_{}", "3".repeat(64)),
    ] {
        let res = app
            .client
            .post(format!("{}/graphql", app.base))
            .bearer_auth(&k)
            .json(&json!({ "query": STATUS }))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(res.headers().contains_key("retry-after"));
        let body: Value = res.json().await.expect("json");
        assert_eq!(code(&body), "RATE_LIMITED", "{body}");
    }
    let (status, body) = app
        .gql(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(
        app.statements(),
        before,
        "a limited request reached the database"
    );
    app.gql_ok(&key, "{ __typename }", json!({})).await;
}

db_tests!(anonymous_requests_are_one_operation);

/// Without a key, only a single introspection operation runs: a batch of them is refused.
async fn anonymous_requests_are_one_operation(app: TestApp) {
    let q = json!({ "query": "{ __schema { queryType { name } } }" });
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!([q, q]))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.expect("json");
    assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");
}

db_tests!(staged_rows_of_old_jobs_are_purged);

/// An ended job's staged rows are deleted once past their retention; a recent job's stay,
/// and so do the old job's coupons, counts and files.
async fn staged_rows_of_old_jobs_are_purged(app: TestApp) {
    use coupon_upload_api::entity::{coupon, upload_job, upload_row};
    use sea_orm::{ActiveModelTrait, ColumnTrait, PaginatorTrait, QueryFilter, Set};
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let old = app
        .upload_ok(
            &key,
            &series,
            b"code\nOLD-1\nOLD-2\nOLD-3\nBAD CODE\n",
            json!({}),
        )
        .await;
    app.wait_job(&key, &old).await;
    let recent = app
        .upload_ok(&key, &series, b"code\nNEW-1\nNEW-2\n", json!({}))
        .await;
    app.wait_job(&key, &recent).await;
    let db = app.state.service.db();
    let staged = |job: i64| async move {
        upload_row::Entity::find()
            .filter(upload_row::Column::JobId.eq(job))
            .count(db)
            .await
            .expect("count")
    };
    let (old, recent): (i64, i64) = (old.parse().expect("id"), recent.parse().expect("id"));
    assert_eq!((staged(old).await, staged(recent).await), (4, 2));
    let mut aged: upload_job::ActiveModel = crate::fixtures::stored_job(&app, old).await.into();
    aged.finished_on = Set(Some(
        coupon_upload_api::domain::now() - chrono::Duration::days(8),
    ));
    aged.update(db).await.expect("age the job");
    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    let purged = coupon_upload_api::worker::purge_staged_rows(&app.state.service, week)
        .await
        .expect("purge");
    assert_eq!(purged, 3);
    // The rejected row stays: it is the job's row errors.
    assert_eq!((staged(old).await, staged(recent).await), (1, 2));
    let coupons = coupon::Entity::find()
        .filter(coupon::Column::UploadJobId.eq(old))
        .count(db)
        .await
        .expect("count");
    assert_eq!(coupons, 3);
    let data = app
        .gql_ok(
            &key,
            "query($id: ID!) { uploadJob(jobId: $id) { totalUploadedCount successFileUrl } }",
            json!({ "id": old.to_string() }),
        )
        .await;
    assert_eq!(data["uploadJob"]["totalUploadedCount"], 3);
    let success = app.download(&data["uploadJob"]["successFileUrl"]).await;
    assert!(success.contains("OLD-3"), "{success}");
    assert_eq!(
        coupon_upload_api::worker::purge_staged_rows(&app.state.service, week)
            .await
            .expect("again"),
        0
    );
}

/// Sends `head` and `body` on a raw connection, then waits (sending nothing more) for the
/// response's status line; `None` if none came within `wait`.
async fn stalled_request(
    app: &TestApp,
    head: &str,
    body: &[u8],
    wait: std::time::Duration,
) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(body).await.expect("body");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, stream.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.lines().next().map(str::to_owned)
}

crate::db_tests_with!(
    crate::helpers::Options {
        request_timeout: std::time::Duration::from_millis(500),
        body_idle_timeout: std::time::Duration::from_millis(800),
        ..Default::default()
    };
    timeouts_cannot_be_dodged
);

/// A body that stops coming is cut off, whatever the request claims to be: an `Upgrade`
/// header on a plain POST (504 once the request timeout is up), or a real upload that stalls
/// (refused once the body has paused for longer than the idle timeout). Both used to wait for
/// as long as the client held the connection.
async fn timeouts_cannot_be_dodged(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let host = app.base.trim_start_matches("http://").to_owned();
    let wait = std::time::Duration::from_secs(5);
    let upgrade = format!(
        "POST /graphql HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 100\r\n\r\n"
    );
    let status = stalled_request(&app, &upgrade, b"{\"query\":", wait).await;
    assert!(
        status.as_deref().is_some_and(|s| s.contains(" 504 ")),
        "{status:?}"
    );

    let series = app.create_series(&key, json!({})).await;
    let operations =
        json!({ "query": UPLOAD, "variables": { "s": series, "f": null } }).to_string();
    let body = format!(
        "--b\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{operations}\r\n--b\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{{\"0\":[\"variables.f\"]}}\r\n--b\r\nContent-Disposition: form-data; name=\"0\"; filename=\"a.csv\"\r\n\r\ncode\nA-1\n"
    );
    let upload = format!(
        "POST /graphql HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n",
        body.len() + 1000
    );
    let started = std::time::Instant::now();
    let status = stalled_request(&app, &upload, body.as_bytes(), wait).await;
    assert!(
        status.as_deref().is_some_and(|s| s.contains(" 4")),
        "{status:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    no_jobs(&app).await;
}

db_tests!(graphql_over_http_shoulds);

/// The GraphQL-over-HTTP spec's SHOULDs: a POST without `Content-Type` is a 4xx, and a request
/// error (parse, validation) answered as `application/graphql-response+json` has no `data`.
async fn graphql_over_http_shoulds(app: TestApp) {
    let key = app.key(1, Permission::Read).await;
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(&key)
        .body(json!({ "query": "{ __typename }" }).to_string())
        .send()
        .await
        .expect("send");
    assert!(res.status().is_client_error(), "{}", res.status());
    let body: Value = res.json().await.expect("json");
    assert_ne!(code(&body), "<none>", "{body}");

    for query in ["{ __typename", "{ noSuchField }"] {
        let res = app
            .client
            .post(format!("{}/graphql", app.base))
            .bearer_auth(&key)
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query }))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = res.json().await.expect("json");
        assert!(body.get("data").is_none(), "{query}: {body}");
        assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    }
    // A field error keeps `data` (it is not a request error).
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(&key)
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": "{ uploadStatus(couponSeriesId: \"999\") { id } }" }))
        .send()
        .await
        .expect("send");
    let body: Value = res.json().await.expect("json");
    assert!(body.get("data").is_some(), "{body}");
}

crate::db_tests_with!(
    crate::helpers::Options { worker: false, ..Default::default() };
    metrics_figures_are_cached
);

/// Scrapes within the figures' lifetime send no statement: whoever can reach `/metrics`
/// cannot make the database count jobs on every request. (No worker: its polling would be
/// counted.)
async fn metrics_figures_are_cached(app: TestApp) {
    let scrape = || async {
        let res = app
            .client
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), StatusCode::OK);
        res.text().await.expect("text")
    };
    scrape().await;
    let before = app.statements();
    for _ in 0..5 {
        assert!(scrape().await.contains("upload_jobs{status=\"FINISHED\"}"));
    }
    assert_eq!(app.statements(), before);
}

db_tests!(oversized_records_are_bounded);

/// A row longer than 64 KiB (here a line of commas, which would be half a million fields)
/// ends the job `ERRORED` with the row's number; a row with more than 1,024 fields is one
/// rejected row and the rest of the file is read.
async fn oversized_records_are_bounded(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let mut commas = b"code\nA-1\n".to_vec();
    commas.extend(std::iter::repeat_n(b',', 512 * 1024));
    commas.extend_from_slice(b"\nA-3\n");
    let job = app.upload_ok(&key, &series, &commas, json!({})).await;
    let j = app.wait_job(&key, &job).await;
    assert_eq!(j["uploadStatus"], "ERRORED", "{j}");
    assert_eq!(
        j["errorReason"], "row 2 is longer than 65536 bytes; is the file a CSV of coupon codes?",
        "{j}"
    );
    assert_eq!(j["totalUploadedCount"], 0, "{j}");

    let wide = format!("code\nW-1\nW-2{}\nW-3\n", ",".repeat(2000));
    let job = app
        .upload_ok(&key, &series, wide.as_bytes(), json!({}))
        .await;
    let j = app.wait_job(&key, &job).await;
    assert_eq!(j["uploadStatus"], "FINISHED", "{j}");
    assert_eq!(
        (j["totalUploadedCount"].as_i64(), j["errorCount"].as_i64()),
        (Some(2), Some(1))
    );
    let errors = app.download(&j["errorFileUrl"]).await;
    assert!(errors.contains("2,UNPARSEABLE_ROW"), "{errors}");
    assert!(errors.contains("2001 columns"), "{errors}");
}

crate::db_tests_with!(
    crate::helpers::Options { worker: false, ..Default::default() };
    one_job_per_series_across_instances
);

/// Four workers (four lease owners, as four instances would be) start at once on queued jobs,
/// several per series, each of which alone would fill the series' `maxCreate`: one job of a
/// series runs at a time, so each series ends with exactly `maxCreate` coupons. (Judged on
/// their own snapshots, concurrent claims used to run jobs of one series side by side.)
async fn one_job_per_series_across_instances(app: TestApp) {
    use coupon_upload_api::entity::{coupon, coupon_series, upload_job};
    use sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter};
    let key = app.key(1, Permission::ReadWrite).await;
    let (series_count, jobs_per_series, room) = (3, 5, 20);
    let mut all_series = Vec::new();
    for s in 0..series_count {
        let series = app.create_series(&key, json!({ "maxCreate": room })).await;
        for j in 0..jobs_per_series {
            let mut file = String::from("code\n");
            for n in 0..room {
                file.push_str(&format!("S{s}-J{j}-{n}\n"));
            }
            app.upload_ok(&key, &series, file.as_bytes(), json!({}))
                .await;
        }
        all_series.push(series.parse::<i64>().expect("id"));
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    for w in 0..4 {
        let cfg = coupon_upload_api::worker::WorkerConfig {
            batch_rows: 3,
            instance: format!("instance-{w}"),
            idle_poll: std::time::Duration::from_millis(50),
            ..Default::default()
        };
        coupon_upload_api::worker::spawn(app.state.service.clone(), cfg, shutdown.clone());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while coupon_upload_api::worker::jobs_pending(&app.state.service)
        .await
        .expect("pending")
        > 0
    {
        assert!(std::time::Instant::now() < deadline, "jobs did not end");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let db = app.state.service.db();
    for series in all_series {
        let coupons = coupon::Entity::find()
            .filter(coupon::Column::CouponSeriesId.eq(series))
            .count(db)
            .await
            .expect("count");
        let stored = coupon_series::Entity::find_by_id(series)
            .one(db)
            .await
            .expect("db")
            .expect("series");
        let jobs = upload_job::Entity::find()
            .filter(upload_job::Column::CouponSeriesId.eq(series))
            .all(db)
            .await
            .expect("jobs");
        assert_eq!(jobs.len(), jobs_per_series);
        let accepted: i64 = jobs.iter().map(|j| j.total_uploaded_count).sum();
        let rejected: i64 = jobs.iter().map(|j| j.error_count).sum();
        assert_eq!(
            (coupons, stored.num_uploaded_total, accepted),
            (room as u64, room, room),
            "series {series}: {jobs:#?}"
        );
        assert_eq!(rejected, room * (jobs_per_series as i64 - 1));
    }
}

crate::db_tests_with!(
    crate::helpers::Options { worker: false, ..Default::default() };
    max_create_lowered_during_a_job_holds
);

/// `maxCreate` lowered after a job was judged (30 rows found room under 100) and before it
/// commits: the job stores only what the new limit allows, the rest rejected as
/// `MAX_CREATE_EXCEEDED`, and the series never holds more than its `maxCreate`.
async fn max_create_lowered_during_a_job_holds(app: TestApp) {
    use coupon_upload_api::entity::coupon;
    use sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter};
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({ "maxCreate": 100 })).await;
    let mut file = String::from("code\n");
    for n in 1..=30 {
        file.push_str(&format!("M-{n}\n"));
    }
    let job = app
        .upload_ok(&key, &series, file.as_bytes(), json!({}))
        .await;
    let job_id: i64 = job.parse().expect("id");
    let db = app.state.service.db();
    // As if staged and judged with room for all 30.
    let codes: Vec<String> = (1..=30).map(|n| format!("M-{n}")).collect();
    crate::fixtures::as_judged(&app, job_id, &codes).await;
    app.gql_ok(
        &key,
        "mutation($id: ID!) { updateCouponSeries(id: $id, input: { maxCreate: 10 }) { maxCreate } }",
        json!({ "id": series }),
    )
    .await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    coupon_upload_api::worker::spawn(app.state.service.clone(), Default::default(), shutdown);
    let j = app.wait_job(&key, &job).await;
    assert_eq!(j["uploadStatus"], "FINISHED", "{j}");
    assert_eq!(
        (j["totalUploadedCount"].as_i64(), j["errorCount"].as_i64()),
        (Some(10), Some(20)),
        "{j}"
    );
    let coupons = coupon::Entity::find()
        .filter(coupon::Column::UploadJobId.eq(job_id))
        .count(db)
        .await
        .expect("count");
    assert_eq!(coupons, 10);
    let errors = app.download(&j["errorFileUrl"]).await;
    assert_eq!(
        errors.matches("MAX_CREATE_EXCEEDED").count(),
        20,
        "{errors}"
    );
    // And lowering it below what is stored now is refused.
    let (_, body) = app
        .gql(
            Some(&key),
            "mutation($id: ID!) { updateCouponSeries(id: $id, input: { maxCreate: 5 }) { maxCreate } }",
            json!({ "id": series }),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
}

crate::db_tests_with!(
    crate::helpers::Options { worker: false, ..Default::default() };
    a_job_subscription_ends_when_its_last_event_is_lost
);

/// The job ends without its event reaching this instance (as when the receiver lagged or a
/// notice from another instance was lost): the job's subscription reads the job itself, sends
/// its final state and completes.
async fn a_job_subscription_ends_when_its_last_event_is_lost(app: TestApp) {
    use crate::subscriptions::{SUB, connect, init, recv, send};
    use coupon_upload_api::domain::{JobPhase, UploadJobStatus};
    use coupon_upload_api::entity::upload_job;
    use sea_orm::{ActiveModelTrait, Set};
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let job = app
        .upload_ok(&key, &series, b"code\nL-1\n", json!({}))
        .await;
    let mut ws = connect(&app.base, "graphql-transport-ws").await;
    init(&mut ws, &key).await;
    send(&mut ws, json!({ "id": "1", "type": "subscribe", "payload": { "query": SUB, "variables": { "s": series, "j": job } } })).await;
    let first = recv(&mut ws).await;
    assert_eq!(
        first["payload"]["data"]["uploadJobUpdated"]["uploadStatus"], "STARTED",
        "{first}"
    );
    let db = app.state.service.db();
    let mut j: upload_job::ActiveModel =
        crate::fixtures::stored_job(&app, job.parse().expect("id"))
            .await
            .into();
    j.upload_status = Set(UploadJobStatus::Finished);
    j.phase = Set(JobPhase::Done);
    j.update(db).await.expect("end the job, no event");
    let started = std::time::Instant::now();
    let last = recv(&mut ws).await;
    assert_eq!(
        last["payload"]["data"]["uploadJobUpdated"]["uploadStatus"], "FINISHED",
        "{last}"
    );
    assert_eq!(recv(&mut ws).await["type"], "complete");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

crate::db_tests_with!(
    crate::helpers::Options { worker: false, ..Default::default() };
    only_failed_attempts_count_and_giving_up_keeps_the_truth
);

/// A worker that stops gracefully mid-job gives the job back without using up an attempt; a job
/// given up after committing batches ends `ERRORED` with counts equal to its coupons.
async fn only_failed_attempts_count_and_giving_up_keeps_the_truth(app: TestApp) {
    use coupon_upload_api::entity::{coupon, upload_job};
    use sea_orm::{ActiveModelTrait, ColumnTrait, PaginatorTrait, QueryFilter, Set};
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let mut file = String::from("code\n");
    for n in 0..3000 {
        file.push_str(&format!("G-{n}\n"));
    }
    let job = app
        .upload_ok(&key, &series, file.as_bytes(), json!({}))
        .await;
    let job_id: i64 = job.parse().expect("id");
    let db = app.state.service.db();
    let read = || crate::fixtures::stored_job(&app, job_id);
    let stop = tokio_util::sync::CancellationToken::new();
    let cfg = coupon_upload_api::worker::WorkerConfig {
        batch_rows: 1,
        instance: "graceful".into(),
        ..Default::default()
    };
    let worker = coupon_upload_api::worker::spawn(app.state.service.clone(), cfg, stop.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while read().await.committed_through < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "the job did not start committing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.cancel();
    worker.await.expect("worker stops");
    let released = read().await;
    assert_eq!(released.lease_owner, None);
    assert_eq!(released.attempts, 0, "a graceful release is not an attempt");
    assert!(released.committed_through < 3000, "stopped mid-job");

    // Given up now (as after repeated failures), with batches committed.
    let mut a: upload_job::ActiveModel = released.into();
    a.attempts = Set(99);
    a.update(db).await.expect("attempts");
    let stop = tokio_util::sync::CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    coupon_upload_api::worker::spawn(app.state.service.clone(), Default::default(), stop.clone());
    let j = app.wait_job(&key, &job).await;
    assert_eq!(j["uploadStatus"], "ERRORED", "{j}");
    let coupons = coupon::Entity::find()
        .filter(coupon::Column::UploadJobId.eq(job_id))
        .count(db)
        .await
        .expect("count");
    assert!(coupons > 0);
    assert_eq!(j["totalUploadedCount"].as_u64(), Some(coupons), "{j}");
    assert_eq!(j["actualRowCount"], 3000, "{j}");
}

crate::db_tests_with!(
    crate::helpers::Options {
        ws: coupon_upload_api::http::ws::WsLimits {
            max_unauthenticated_per_ip: 2,
            max_operations: 2,
            ..Default::default()
        },
        graphql: coupon_upload_api::graphql::GraphqlLimits { max_aliases: 3, ..Default::default() },
        ..Default::default()
    };
    websocket_doors_are_bounded
);

/// WebSocket: a message over 64 KiB closes the socket with 1009 before it is parsed; sockets
/// that have not authenticated are capped per address (the upgrade is refused with 429); an
/// operation meets the alias limit, mutations are refused, and a socket's operations in flight
/// are capped (4429).
async fn websocket_doors_are_bounded(app: TestApp) {
    use crate::subscriptions::{SUB, connect, init, recv, send};
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;

    let mut big = connect(&app.base, "graphql-transport-ws").await;
    let huge = format!(
        "{{\"type\":\"connection_init\",\"payload\":{{\"x\":\"{}\"}}}}",
        "a".repeat(100 * 1024)
    );
    big.send(Message::Text(huge.into())).await.expect("send");
    assert_eq!(recv(&mut big).await["close"], 1009);

    // Two sockets may wait unauthenticated; a third from the same address is refused.
    let mut a = connect(&app.base, "graphql-transport-ws").await;
    let _b = connect(&app.base, "graphql-transport-ws").await;
    let url = app.base.replacen("http://", "ws://", 1) + "/graphql";
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .expect("req");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("h"),
    );
    match tokio_tungstenite::connect_async(req.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 429),
        other => panic!(
            "a third unauthenticated socket was accepted: {:?}",
            other.map(|_| ())
        ),
    }
    // Once one has authenticated, there is room again.
    init(&mut a, &key).await;
    let mut c = tokio_tungstenite::connect_async(req)
        .await
        .expect("room again")
        .0;
    init(&mut c, &key).await;

    // An operation's refusal: its first error, then `complete`.
    async fn refusal(ws: &mut crate::subscriptions::Ws) -> Value {
        let m = recv(ws).await;
        let error = m["payload"]["errors"][0].clone();
        assert!(error.is_object(), "{m}");
        assert!(m["payload"]["data"].is_null(), "{m}");
        assert_eq!(recv(ws).await["type"], "complete");
        error
    }
    send(&mut a, json!({ "id": "m", "type": "subscribe", "payload": { "query": "mutation { createCouponSeries(input: { name: \"ws\" }) { id } }" } })).await;
    let error = refusal(&mut a).await;
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("POST")),
        "{error}"
    );
    send(&mut a, json!({ "id": "x", "type": "subscribe", "payload": { "query": "{ a: __typename b: __typename c: __typename d: __typename }" } })).await;
    let error = refusal(&mut a).await;
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("aliases")),
        "{error}"
    );

    for id in ["1", "2", "3"] {
        send(&mut a, json!({ "id": id, "type": "subscribe", "payload": { "query": SUB, "variables": { "s": series } } })).await;
    }
    let closed = loop {
        let m = recv(&mut a).await;
        if m.get("close").is_some() {
            break m;
        }
    };
    assert_eq!(closed["close"], 4429, "{closed}");
}

crate::db_tests_with!(
    crate::helpers::Options { worker: false, ..Default::default() };
    a_database_that_is_gone_is_a_coded_503
);

/// With the database gone (here: the pool closed), every door answers 503 `UNAVAILABLE` with
/// `Retry-After`, not 500 `INTERNAL`, and `/readyz` says so.
async fn a_database_that_is_gone_is_a_coded_503(app: TestApp) {
    let key = app.key(1, Permission::Read).await;
    let fresh = app.key(1, Permission::Read).await;
    // Cached, so it passes authentication without the database.
    app.gql_ok(&key, "{ couponSeriesList { totalCount } }", json!({}))
        .await;
    app.state
        .service
        .db()
        .close_by_ref()
        .await
        .expect("close the pool");
    for k in [&key, &fresh] {
        let res = app
            .client
            .post(format!("{}/graphql", app.base))
            .bearer_auth(k)
            .json(&json!({ "query": "{ couponSeriesList { totalCount } }" }))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().contains_key("retry-after"));
        let body: Value = res.json().await.expect("json");
        assert_eq!(code(&body), "UNAVAILABLE", "{body}");
    }
    let (status, body) = app
        .rest_get("/coupon/api/v1/upload/getUploadStatus/1", Some(&key))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let ready = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("send");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// SQLite (the default) stays writable while a large file is staged: staging commits batch by
/// batch, and this process's writes take turns first come first served, so a request waits for
/// one batch, not the file. Before, staging was one transaction and every write during it
/// waited out SQLite's busy timeout, then failed with `INTERNAL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stays_writable_while_a_file_is_staged() {
    use coupon_upload_api::domain::JobPhase;
    let app = TestApp::spawn_with(
        crate::helpers::Backend::Sqlite,
        crate::helpers::Options {
            max_file_bytes: 64 * 1024 * 1024,
            batch_rows: 50_000,
            ..Default::default()
        },
    )
    .await
    .expect("sqlite");
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let mut file = String::with_capacity(400_000 * 16);
    for i in 0..400_000 {
        file.push_str(&format!("W-{i:09}\n"));
    }
    let job = app
        .upload_ok(
            &key,
            &series,
            file.as_bytes(),
            json!({ "hasHeader": false }),
        )
        .await;
    let job_id: i64 = job.parse().expect("id");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while crate::fixtures::stored_job(&app, job_id).await.phase != JobPhase::Stage
        || crate::fixtures::stored_job(&app, job_id)
            .await
            .lease_owner
            .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "staging did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut during = 0;
    for n in 0..5 {
        let t = std::time::Instant::now();
        let (status, body) = app
            .gql(
                Some(&key),
                "mutation($n: String!) { createCouponSeries(input: { name: $n }) { id } }",
                json!({ "n": format!("during staging {n}") }),
            )
            .await;
        let took = t.elapsed();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
        assert!(
            took < std::time::Duration::from_secs(1),
            "createCouponSeries took {took:?} while staging"
        );
        if crate::fixtures::stored_job(&app, job_id).await.phase == JobPhase::Stage {
            during += 1;
            println!("createCouponSeries while staging: {took:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        during >= 3,
        "the writes were sent while the file was staged ({during} of 5)"
    );
    let j = app.wait_job(&key, &job).await;
    assert_eq!(j["uploadStatus"], "FINISHED", "{j}");
    assert_eq!(j["totalUploadedCount"], 400_000, "{j}");
}

db_tests!(audience_group_versions_are_paged);

/// `AudienceGroup.versions` is a page (10 by default, at most 100), weighted by its size in
/// complexity, so the `versions → audienceGroup → versions` cycle cannot multiply past the
/// limit; older versions are reached with `beforeVersionNumber`. Before, it returned every
/// version of the group, as one list costing one point.
async fn audience_group_versions_are_paged(app: TestApp) {
    use sea_orm::{ActiveModelTrait, Set};
    crate::fixtures::insert_org(&app, 1).await;
    let series = crate::fixtures::insert_series(&app, 1, "versions").await;
    let group = crate::fixtures::insert_group(&app, 1, series.id, 5).await;
    for n in 1..=150 {
        crate::fixtures::insert_version(&app, &group, n, n as i64, None).await;
    }
    let mut g: coupon_upload_api::entity::audience_group::ActiveModel = group.clone().into();
    g.latest_version_number = Set(150);
    g.update(app.state.service.db()).await.expect("group");
    let key = app.key(1, Permission::Read).await;
    let numbers = |data: &Value| -> Vec<i64> {
        data["audienceGroup"]["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .map(|v| v["versionNumber"].as_i64().expect("number"))
            .collect()
    };
    let q = "query($id: ID!, $first: Int!, $before: Int) { audienceGroup(id: $id) {
        latestVersion { versionNumber }
        versions(first: $first, beforeVersionNumber: $before) { versionNumber } } }";
    let id = group.id.to_string();
    let d = app
        .gql_ok(
            &key,
            "query($id: ID!) { audienceGroup(id: $id) { versions { versionNumber } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(numbers(&d), (141..=150).rev().collect::<Vec<_>>());
    let d = app
        .gql_ok(&key, q, json!({ "id": id, "first": 100, "before": null }))
        .await;
    assert_eq!(numbers(&d), (51..=150).rev().collect::<Vec<_>>());
    assert_eq!(d["audienceGroup"]["latestVersion"]["versionNumber"], 150);
    let d = app
        .gql_ok(&key, q, json!({ "id": id, "first": 100, "before": 51 }))
        .await;
    assert_eq!(numbers(&d), (1..=50).rev().collect::<Vec<_>>());
    let (_, body) = app
        .gql(
            Some(&key),
            q,
            json!({ "id": id, "first": 101, "before": null }),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    // The cycle, two levels deep at 100 a page, is over the complexity limit before it runs.
    let cycle = "query($id: ID!) { audienceGroup(id: $id) { versions(first: 100) {
        audienceGroup { versions(first: 100) { audienceGroup { versions(first: 100) { id } } } } } } }";
    let (_, body) = app.gql(Some(&key), cycle, json!({ "id": id })).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    assert!(
        body.to_string().contains("complex"),
        "refused for its complexity: {body}"
    );
}

crate::db_tests_with!(
    crate::helpers::Options {
        graphql: coupon_upload_api::graphql::GraphqlLimits {
            max_response_bytes: 2048,
            ..Default::default()
        },
        ..Default::default()
    };
    responses_over_the_size_limit_are_refused
);

/// An answer over `MAX_RESPONSE_BYTES` is replaced by one coded error, whichever way it was
/// produced (the executor, or the compiled status plan once its document is proven).
async fn responses_over_the_size_limit_are_refused(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    for n in 0..12 {
        app.create_series(
            &key,
            json!({ "name": format!("series number {n:04} with a long name") }),
        )
        .await;
    }
    let small = "query { couponSeriesList(first: 1) { nodes { id } } }";
    let (_, body) = app.gql(Some(&key), small, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let big = "query { couponSeriesList(first: 100) { nodes { id name description maxCreate createdOn updatedOn } } }";
    let (status, body) = app.gql(Some(&key), big, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(code(&body), "RESPONSE_TOO_LARGE", "{body}");
    assert!(body["data"].is_null(), "{body}");
    // The status plan answers a document once proven: proven on a series with one job, it
    // answers for a series with six, and that answer is held to the same limit.
    let other = app.create_series(&key, json!({ "name": "six jobs" })).await;
    let job = app.upload_ok(&key, &series, b"code\nA1\n", json!({})).await;
    app.wait_job(&key, &job).await;
    for n in 0..6 {
        let job = app
            .upload_ok(&key, &other, format!("code\nB{n}\n").as_bytes(), json!({}))
            .await;
        app.wait_job(&key, &job).await;
    }
    let status_q = "query($s: ID!) { uploadStatus(couponSeriesId: $s) { uploadJobStatuses {
        jobId uploadStatus uploadedFileName uploadedFileUrl errorFileUrl successFileUrl } } }";
    let (_, body) = app.gql(Some(&key), status_q, json!({ "s": series })).await;
    assert!(body.get("errors").is_none(), "{body}");
    let compiled = app.state.service.metrics().compiled_answers();
    let (_, body) = app.gql(Some(&key), status_q, json!({ "s": other })).await;
    assert_eq!(code(&body), "RESPONSE_TOO_LARGE", "{body}");
    assert_eq!(
        app.state.service.metrics().compiled_answers(),
        compiled + 1,
        "answered by the plan"
    );
}

db_tests!(websocket_reads_only_the_type_before_connection_init);

/// Before `connection_init` a socket reads only each message's `type`: a ping may come, but an
/// operation (or anything that is not a message) closes the socket with 4401, as the
/// graphql-transport-ws protocol says, without the operation being looked at.
async fn websocket_reads_only_the_type_before_connection_init(app: TestApp) {
    use crate::subscriptions::{SUB, connect, recv, send};
    let key = app.key(1, Permission::Read).await;
    let series = app
        .create_series(&app.key(1, Permission::ReadWrite).await, json!({}))
        .await;
    for premature in [
        json!({ "id": "1", "type": "subscribe", "payload": { "query": SUB, "variables": { "s": series } } }),
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ __typename" } }),
        json!(["not", "a", "message"]),
    ] {
        let mut ws = connect(&app.base, "graphql-transport-ws").await;
        send(&mut ws, premature.clone()).await;
        let m = recv(&mut ws).await;
        assert_eq!(m["close"], 4401, "{premature}: {m}");
    }
    // A ping first is fine; then the socket initialises and works.
    let mut ws = connect(&app.base, "graphql-transport-ws").await;
    send(&mut ws, json!({ "type": "ping" })).await;
    send(
        &mut ws,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {key}") } }),
    )
    .await;
    let mut m = recv(&mut ws).await;
    if m["type"] == "pong" {
        m = recv(&mut ws).await;
    }
    assert_eq!(m["type"], "connection_ack", "{m}");
    send(
        &mut ws,
        json!({ "id": "q", "type": "subscribe", "payload": { "query": "{ __typename }" } }),
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = recv(&mut ws).await;
        got.push(m.clone());
        if m["type"] == "next" {
            assert_eq!(m["payload"]["data"]["__typename"], "Query", "{m}");
            return;
        }
    }
    panic!("no answer after init: {got:?}");
}
