//! The cross-org matrix: with org 1's READ_WRITE key, every query, mutation, subscription, REST
//! route and file link aimed at org 2's objects is NOT_FOUND (403 for links), and nothing of
//! org 2 changes.

use coupon_upload_api::domain::Permission;
use coupon_upload_api::entity::{coupon, coupon_series, upload_job};
use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::db_tests;
use crate::fixtures::{ORG_A, ORG_B, seed};
use crate::helpers::{TestApp, code};
use crate::subscriptions::{SUB, connect, init, recv, send};

db_tests!(another_orgs_objects_are_out_of_reach);

async fn snapshot(app: &TestApp) -> (Vec<coupon_series::Model>, Vec<upload_job::Model>, usize) {
    let db = app.state.service.db();
    let series = coupon_series::Entity::find().all(db).await.expect("series");
    let jobs = upload_job::Entity::find().all(db).await.expect("jobs");
    let coupons = coupon::Entity::find().all(db).await.expect("coupons").len();
    (series, jobs, coupons)
}

async fn another_orgs_objects_are_out_of_reach(app: TestApp) {
    let f = seed(&app).await;
    // Org 2's job gets files too, so its links can be attacked.
    let b_key = coupon_upload_api::storage::Storage::job_key(ORG_B, f.other_job, "errors.csv");
    app.state
        .service
        .storage()
        .put(&b_key, "secret of org 2")
        .await
        .expect("put");
    // And a coupon, so its code can be looked for.
    {
        use sea_orm::{ActiveModelTrait, Set};
        coupon::ActiveModel {
            org_id: Set(ORG_B),
            coupon_series_id: Set(f.other_series),
            upload_job_id: Set(Some(f.other_job)),
            row_number: Set(Some(1)),
            code: Set("B-SECRET".into()),
            created_on: Set(crate::fixtures::t0()),
            status: Set(coupon_upload_api::domain::CouponStatus::Active),
            ..Default::default()
        }
        .insert(app.state.service.db())
        .await
        .expect("coupon of org 2");
    }
    let key = app.key(ORG_A, Permission::ReadWrite).await;
    let before = snapshot(&app).await;
    let (s, j, g) = (
        f.other_series.to_string(),
        f.other_job.to_string(),
        f.other_group.to_string(),
    );

    // Queries.
    let (_, b) = app
        .gql(
            Some(&key),
            "query($s: ID!) { uploadStatus(couponSeriesId: $s) { orgId } }",
            json!({ "s": s }),
        )
        .await;
    assert_eq!(code(&b), "NOT_FOUND");
    let d = app
        .gql_ok(
            &key,
            "query($s: ID!, $j: ID!, $g: ID!) { uploadJob(jobId: $j) { jobId } couponSeries(id: $s) { id } audienceGroup(id: $g) { id }
               couponSeriesList { edges { node { id orgId } } } }",
            json!({ "s": s, "j": j, "g": g }),
        )
        .await;
    assert_eq!(
        (
            d["uploadJob"].clone(),
            d["couponSeries"].clone(),
            d["audienceGroup"].clone()
        ),
        (Value::Null, Value::Null, Value::Null)
    );
    // Exactly org 1's two series, so the check below is not vacuous.
    let edges = d["couponSeriesList"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut listed: Vec<&str> = edges
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap_or_default())
        .collect();
    listed.sort_unstable();
    let mut expected = [f.series.to_string(), f.empty_series.to_string()];
    expected.sort_unstable();
    assert_eq!(listed, expected, "{d}");
    assert!(edges.iter().all(|e| e["node"]["orgId"] == "1"), "{d}");

    // Its coupons: by code, through org 1's own series filtered by org 2's job.
    let d = app
        .gql_ok(
            &key,
            "query($s: ID!, $j: ID!) { coupon(code: \"B-SECRET\") { id }
               couponSeries(id: $s) { coupons(filter: { uploadJobId: $j }) { totalCount nodes { code } } } }",
            json!({ "s": f.series.to_string(), "j": j }),
        )
        .await;
    assert!(d["coupon"].is_null(), "{d}");
    assert_eq!(d["couponSeries"]["coupons"]["totalCount"], 0, "{d}");

    // Mutations.
    for (q, vars) in [
        (
            "mutation($s: ID!) { revokeCoupons(couponSeriesId: $s, codes: [\"B-SECRET\"]) { revokedCount } }",
            json!({ "s": s }),
        ),
        (
            "mutation($s: ID!) { updateCouponSeries(id: $s, input: { name: \"mine\", maxCreate: 0 }) { id } }",
            json!({ "s": s }),
        ),
        (
            "mutation($j: ID!) { cancelUploadJob(jobId: $j) { jobId } }",
            json!({ "j": j }),
        ),
    ] {
        let (_, b) = app.gql(Some(&key), q, vars).await;
        assert_eq!(code(&b), "NOT_FOUND", "{q}: {b}");
    }
    let (_, b) = app
        .upload_gql(&key, &s, "x.csv", b"code\nX-1\n".to_vec(), json!({}))
        .await;
    assert_eq!(code(&b), "NOT_FOUND", "{b}");

    // Subscription.
    let mut ws = connect(&app.base, "graphql-transport-ws").await;
    init(&mut ws, &key).await;
    send(&mut ws, json!({ "id": "1", "type": "subscribe", "payload": { "query": SUB, "variables": { "s": s, "j": j } } })).await;
    let m = recv(&mut ws).await;
    assert_eq!(
        m["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{m}"
    );

    // REST.
    let (status, b) = app
        .rest_get(
            &format!("/coupon/api/v1/upload/getUploadStatus/{s}"),
            Some(&key),
        )
        .await;
    assert_eq!(
        (status, b["errors"][0]["code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND"))
    );
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"code\nX-2\n".to_vec()).file_name("x.csv"),
    );
    let res = app
        .client
        .post(format!("{}/coupon/api/v1/upload/file/{s}", app.base))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // File links: org 2's file, with a link made for org 1's file, or with no valid signature.
    let mine = app
        .gql_ok(
            &key,
            "query($j: ID!) { uploadJob(jobId: $j) { errorFileUrl } }",
            json!({ "j": f.jobs[0].to_string() }),
        )
        .await["uploadJob"]["errorFileUrl"]
        .as_str()
        .expect("link")
        .to_owned();
    let (_, query) = mine.split_once('?').expect("query");
    for url in [
        format!("{}/files/{b_key}?{query}", app.base),
        format!("{}/files/{b_key}", app.base),
        format!(
            "{}/files/{b_key}?expires=9999999999&sig={}",
            app.base,
            "0".repeat(64)
        ),
    ] {
        let res = app.client.get(&url).send().await.expect("send");
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{url}");
        assert!(!res.text().await.unwrap_or_default().contains("secret"));
    }

    assert_eq!(
        snapshot(&app).await,
        before,
        "nothing of org 2 (or 1) changed"
    );
}

db_tests!(hostile_strings_get_coded_errors_or_are_stored_safely);

/// SQL metacharacters, path traversal, control characters and huge strings in every string
/// input: coded errors where the input breaks a rule, verbatim (bound, never spliced) where it
/// does not, sanitised file names, and everything still working afterwards.
async fn hostile_strings_get_coded_errors_or_are_stored_safely(app: TestApp) {
    let key = app.key(ORG_A, Permission::ReadWrite).await;
    let sql = "Robert'); DROP TABLE coupon_series; --";
    let d = app
        .gql_ok(
            &key,
            "mutation($n: String!, $d: String!) { createCouponSeries(input: { name: $n, description: $d }) { id name description } }",
            json!({ "n": sql, "d": "\\\" OR 1=1; $1 ?1 %s {}" }),
        )
        .await;
    assert_eq!(d["createCouponSeries"]["name"], sql, "stored verbatim");
    assert_eq!(
        d["createCouponSeries"]["description"],
        "\\\" OR 1=1; $1 ?1 %s {}"
    );
    let series = d["createCouponSeries"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (name, desc) in [
        ("a\u{0}b".to_owned(), String::new()),
        ("ok".to_owned(), "x".repeat(600 * 1024)),
        ("\u{7}bell".to_owned(), String::new()),
        ("x".repeat(201), String::new()),
    ] {
        let (status, b) = app
            .gql(
                Some(&key),
                "mutation($n: String!, $d: String!) { createCouponSeries(input: { name: $n, description: $d }) { id } }",
                json!({ "n": name, "d": desc }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(code(&b), "BAD_USER_INPUT", "{b}");
    }
    // A 2 MiB variable: refused before parsing.
    let (status, _) = app
        .gql(
            Some(&key),
            "query($x: String) { __typename }",
            json!({ "x": "y".repeat(2 << 20) }),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // File names lose their paths and control characters; hostile CSV values are row errors or
    // stored verbatim.
    let mut long_name = "../".repeat(50);
    long_name.push_str("..\\windows\\evil name ");
    long_name.push_str(&"n".repeat(400));
    let csv = "code,customer\nx'); DELETE FROM coupon; --,a\nOK-1,'; DROP TABLE upload_job; --\n../../etc/passwd,b\n";
    let (status, b) = app
        .upload_gql(
            &key,
            &series,
            &long_name,
            csv.as_bytes().to_vec(),
            json!({ "kind": "EXTERNAL_ID", "customerColumn": 1, "codeColumn": 0 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let stored_name = b["data"]["uploadCoupons"]["uploadedFileName"]
        .as_str()
        .expect("name")
        .to_owned();
    assert!(
        !stored_name.contains('/') && !stored_name.chars().any(char::is_control),
        "{stored_name:?}"
    );
    assert!(stored_name.chars().count() <= 255);
    let job = b["data"]["uploadCoupons"]["jobId"]
        .as_str()
        .expect("job")
        .to_owned();
    let j = app.wait_job(&key, &job).await;
    assert_eq!(j["uploadStatus"], "FINISHED", "{j}");
    assert_eq!(
        (j["totalUploadedCount"].clone(), j["errorCount"].clone()),
        (json!(1), json!(2))
    );
    let c = coupon::Entity::find()
        .all(app.state.service.db())
        .await
        .expect("coupons");
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0].customer_identifier.as_deref(),
        Some("'; DROP TABLE upload_job; --"),
        "bound, not spliced"
    );
    // Everything still works.
    let d = app
        .gql_ok(&key, "{ couponSeriesList { totalCount } }", json!({}))
        .await;
    assert_eq!(d["couponSeriesList"]["totalCount"], 1);
}
