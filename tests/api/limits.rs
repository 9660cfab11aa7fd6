//! Request limits, rejected before execution with coded errors.

use coupon_upload_api::domain::Permission;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_tests_with;
use crate::fixtures::{ORG_A, seed};
use crate::helpers::{TestApp, code};

db_tests_with!(Options::default(); depth_complexity_aliases_and_batches_are_limited);
db_tests_with!(
    Options { graphql: coupon_upload_api::graphql::GraphqlLimits { introspection: false, suggestions: false, ..Default::default() }, ..Default::default() };
    introspection_and_suggestions_can_be_turned_off
);

async fn depth_complexity_aliases_and_batches_are_limited(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    // Depth: 13 levels through the audience group and its versions.
    let mut deep = String::from("id");
    for _ in 0..6 {
        deep = format!("audienceGroup {{ versions(first: 1) {{ {deep} }} }}");
    }
    let q = format!("{{ uploadJob(jobId: \"{}\") {{ {deep} }} }}", f.jobs[2]);
    let (status, body) = app.gql(Some(&key), &q, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("deep"),
        "{body}"
    );
    // Complexity: lists cost their page size times an item.
    let fields = "jobId orgId couponSeriesId uploadStatus createdOn updatedOn errorFileUrl successFileUrl uploadedFileUrl \
        totalUploadedCount actualRowCount errorCount uploadTableName uploadedFileName audienceGroupId audienceGroupVersionId \
        customerIdentifier processedRowCount hasHeader errorReason cancelRequested customerIdentifierColumn couponCodeColumn \
        couponSeries { id name description } audienceGroup { id name customerCount } audienceGroupVersion { id versionNumber }";
    // Two pages of 500 jobs with ~34 fields each: ~34,000 points, over the 20,000 allowed.
    let heavy = format!(
        "{{ a: uploadStatus(couponSeriesId: \"{s}\") {{ uploadJobStatuses(first: 500) {{ {fields} }} }} \
           b: uploadStatus(couponSeriesId: \"{s}\") {{ uploadJobStatuses(first: 500) {{ {fields} }} }} }}",
        s = f.series
    );
    let (_, body) = app.gql(Some(&key), &heavy, json!({})).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("complex"),
        "{body}"
    );
    let normal = format!(
        "{{ uploadStatus(couponSeriesId: \"{}\") {{ uploadJobStatuses(first: 100) {{ {fields} }} }} }}",
        f.series
    );
    app.gql_ok(&key, &normal, json!({})).await;
    // Aliases.
    let many: String = (0..31).map(|i| format!("a{i}: __typename ")).collect();
    let (status, body) = app
        .gql(Some(&key), &format!("{{ {many} }}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "BAD_USER_INPUT");
    let thirty: String = (0..30).map(|i| format!("a{i}: __typename ")).collect();
    app.gql_ok(&key, &format!("{{ {thirty} }}"), json!({}))
        .await;
    // Batches.
    let batch: Vec<Value> = (0..11)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(&key)
        .json(&batch)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.expect("json");
    assert_eq!(code(&body), "BAD_USER_INPUT");
    let ten: Vec<Value> = (0..10)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(&key)
        .json(&ten)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body.as_array().map(Vec::len), Some(10));
    // JSON bodies over 1 MiB: 413 before parsing.
    let huge = json!({ "query": format!("{{ __typename }} #{}", "x".repeat(2 * 1024 * 1024)) });
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(&key)
        .json(&huge)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

async fn introspection_and_suggestions_can_be_turned_off(app: TestApp) {
    let key = app.key(ORG_A, Permission::Read).await;
    let (_, body) = app
        .gql(Some(&key), "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(
        body["data"]["__schema"],
        Value::Null,
        "introspection is off: {body}"
    );
    // And nothing is answered without a key.
    let (status, _) = app
        .gql(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, body) = app
        .gql(Some(&key), "{ couponSeriesLis { totalCount } }", json!({}))
        .await;
    let msg = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(!msg.contains("Did you mean"), "{msg}");
}

db_tests_with!(
    Options { rate_limit: coupon_upload_api::http::ratelimit::RateLimit { per_second: 1.0, burst: 5.0 }, ..Default::default() };
    each_key_is_rate_limited
);

async fn each_key_is_rate_limited(app: TestApp) {
    let key = app.key(ORG_A, Permission::Read).await;
    let other = app.key(ORG_A, Permission::Read).await;
    for _ in 0..5 {
        let (status, _) = app.gql(Some(&key), "{ __typename }", json!({})).await;
        assert_eq!(status, StatusCode::OK);
    }
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(&key)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: Value = res.json().await.expect("json");
    assert_eq!(code(&body), "RATE_LIMITED");
    let (status, body) = app
        .rest_get("/coupon/api/v1/upload/getUploadStatus/1", Some(&key))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["errors"][0]["code"], "RATE_LIMITED");
    let (status, _) = app.gql(Some(&other), "{ __typename }", json!({})).await;
    assert_eq!(status, StatusCode::OK, "another key has its own budget");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _) = app.gql(Some(&key), "{ __typename }", json!({})).await;
    assert_eq!(status, StatusCode::OK, "tokens come back");
}

db_tests_with!(
    Options { request_timeout: std::time::Duration::from_millis(300), ..Default::default() };
    slow_requests_time_out
);

/// A request stuck behind a lock is ended after the timeout with 504 `TIMEOUT`.
async fn slow_requests_time_out(app: TestApp) {
    use sea_orm::{ConnectionTrait, DbBackend};
    let key = app.key(ORG_A, Permission::ReadWrite).await;
    let db = app.state.service.db();
    // Hold the lock a new series needs.
    let txn = app.state.service.begin_write().await.expect("begin");
    if db.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("LOCK TABLE coupon_series IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("lock");
    }
    let t = std::time::Instant::now();
    let (status, body) = app
        .gql(
            Some(&key),
            "mutation { createCouponSeries(input: { name: \"slow\" }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(code(&body), "TIMEOUT");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    txn.rollback().await.expect("rollback");
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
}
