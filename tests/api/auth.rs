//! API keys: missing, malformed, unknown, revoked; both headers; READ keys.

use coupon_upload_api::domain::Permission;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_tests;
use crate::fixtures::{ORG_A, seed};
use crate::helpers::{TestApp, code};

db_tests!(
    missing_or_bad_keys_are_unauthenticated,
    revoked_keys_stop_working_at_once,
    capillary_header_and_read_keys_are_accepted,
);

const Q: &str = "query($id: ID!) { uploadStatus(couponSeriesId: $id) { orgId } }";

async fn missing_or_bad_keys_are_unauthenticated(app: TestApp) {
    let f = seed(&app).await;
    let real = app.key(ORG_A, Permission::ReadWrite).await;
    let vars = json!({ "id": f.series.to_string() });
    let mut tampered = real.clone();
    tampered.replace_range(
        real.len() - 1..,
        if real.ends_with('0') { "1" } else { "0" },
    );
    for key in [
        None,
        Some(""),
        Some("nonsense"),
        Some(tampered.as_str()),
        Some(&"x".repeat(10_000)),
    ] {
        let (status, body) = app.gql(key, Q, vars.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");
        assert_eq!(body.get("data"), None, "nothing executed: {body}");
    }
    // Schemes other than Bearer are not keys.
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("Authorization", format!("Basic {real}"))
        .json(&json!({ "query": Q, "variables": vars }))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    // A garbage body from an unauthenticated client is never parsed: still 401.
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // REST: Capillary's envelope with the status.
    let (status, body) = app
        .rest_get(
            &format!("/coupon/api/v1/upload/getUploadStatus/{}", f.series),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["success"], false);
    assert_eq!(body["status"], 401);
    assert_eq!(body["errors"][0]["code"], "UNAUTHENTICATED");
}

async fn revoked_keys_stop_working_at_once(app: TestApp) {
    let f = seed(&app).await;
    let made = app
        .state
        .service
        .create_api_key(ORG_A, "to revoke", Permission::ReadWrite)
        .await
        .expect("key");
    let vars = json!({ "id": f.series.to_string() });
    let (status, _) = app.gql(Some(&made.key), Q, vars.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let revoked = app
        .state
        .service
        .revoke_api_key(made.record.id)
        .await
        .expect("revoke");
    assert!(revoked.revoked_on.is_some());
    let (status, body) = app.gql(Some(&made.key), Q, vars).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "UNAUTHENTICATED");
    let (status, _) = app
        .rest_get(
            &format!("/coupon/api/v1/upload/getUploadStatus/{}", f.series),
            Some(&made.key),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Other keys of the org keep working; revoking again changes nothing.
    let other = app.key(ORG_A, Permission::Read).await;
    let (status, _) = app
        .gql(Some(&other), Q, json!({ "id": f.series.to_string() }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let again = app
        .state
        .service
        .revoke_api_key(made.record.id)
        .await
        .expect("revoke again");
    assert_eq!(again.revoked_on, revoked.revoked_on);
    let listed = app
        .state
        .service
        .list_api_keys(Some(ORG_A))
        .await
        .expect("list");
    // Exactly the org's two keys (the revoked one and `other`), so the check below is not
    // vacuous.
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed
            .iter()
            .any(|k| k.id == made.record.id && k.revoked_on == revoked.revoked_on),
        "the revoked key is listed, revoked: {listed:?}"
    );
    assert!(
        listed
            .iter()
            .all(|k| !k.key_hash.contains(&made.key) && k.key_hash.len() == 64)
    );
}

async fn capillary_header_and_read_keys_are_accepted(app: TestApp) {
    let f = seed(&app).await;
    let read = app.key(ORG_A, Permission::Read).await;
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("X-CAP-API-OAUTH-TOKEN", &read)
        .json(&json!({ "query": Q, "variables": { "id": f.series.to_string() } }))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["data"]["uploadStatus"]["orgId"], "1");
    // A READ key reads everything its org has.
    let data = app
        .gql_ok(&read, "{ couponSeriesList { totalCount } }", json!({}))
        .await;
    assert_eq!(data["couponSeriesList"]["totalCount"], 2);
}

db_tests!(introspection_alone_needs_no_key);

/// GraphiQL loads the schema before a key is pasted; nothing else runs without one.
async fn introspection_alone_needs_no_key(app: TestApp) {
    let f = seed(&app).await;
    let (status, body) = app
        .gql(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
    let (status, body) = app
        .gql(
            Some("Bearer-less junk"),
            "query Q { __type(name: \"UploadJob\") { name } }",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["__type"]["name"], "UploadJob");
    for q in [
        format!(
            "{{ __typename uploadStatus(couponSeriesId: \"{}\") {{ orgId }} }}",
            f.series
        ),
        "{ ...F } fragment F on Query { couponSeriesList { totalCount } }".to_owned(),
        "{ __schema { queryType { name } } } query Other { couponSeriesList { totalCount } }"
            .to_owned(),
    ] {
        let (status, body) = app.gql(None, &q, json!({})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{q}: {body}");
        assert_eq!(code(&body), "UNAUTHENTICATED");
    }
    // An oversized anonymous body is refused without being parsed.
    let huge = format!(
        "{{ __schema {{ queryType {{ name }} }} }} #{}",
        "x".repeat(100_000)
    );
    let (status, _) = app.gql(None, &huge, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// PostgreSQL: a key revoked by another process on the same database (the CLI, another
/// instance) stops working here at once, though this instance trusts cached keys for a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_revoked_elsewhere_stop_working_here_postgres() {
    use coupon_upload_api::db::{self, DbOptions, StatementCounter};
    use coupon_upload_api::service::Service;
    use std::time::{Duration, Instant};
    let opts = crate::helpers::Options {
        auth_cache: Duration::from_secs(60),
        ..Default::default()
    };
    let Some(app) = TestApp::spawn_with(crate::helpers::Backend::Postgres, opts).await else {
        return;
    };
    let f = seed(&app).await;
    let made = app
        .state
        .service
        .create_api_key(ORG_A, "revoked elsewhere", Permission::Read)
        .await
        .expect("key");
    let vars = json!({ "id": f.series.to_string() });
    let (status, _) = app.gql(Some(&made.key), Q, vars.clone()).await;
    assert_eq!(status, StatusCode::OK, "cached now");

    // Another process on the same schema, as `api-key revoke` is.
    let (url, schema) = app.pg_schema().expect("postgres");
    let conn = db::connect(
        url,
        &DbOptions {
            max_connections: 2,
            search_path: Some(schema.to_owned()),
        },
        &StatementCounter::default(),
    )
    .await
    .expect("second connection");
    let files = tempfile::tempdir().expect("dir");
    let other = Service::new(
        conn,
        coupon_upload_api::storage::Storage::local(files.path()).expect("storage"),
        coupon_upload_api::links::FileLinks::new("http://elsewhere", b"other-secret", 60),
    );
    other.revoke_api_key(made.record.id).await.expect("revoke");
    let revoked_at = Instant::now();
    loop {
        let (status, body) = app.gql(Some(&made.key), Q, vars.clone()).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(code(&body), "UNAUTHENTICATED");
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "the revoked key still works here after 5 s (cache TTL 60 s)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "revoked elsewhere, refused here after {:?}",
        revoked_at.elapsed()
    );
}
