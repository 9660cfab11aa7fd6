//! The Capillary compatibility route gives the same numbers as GraphQL, in Capillary's shape.

use coupon_upload_api::domain::Permission;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_tests;
use crate::fixtures::{ORG_A, seed};
use crate::helpers::TestApp;

db_tests!(
    rest_status_equals_graphql,
    rest_errors_use_the_envelope,
    rest_envelopes_keep_their_exact_shape,
    rest_coupons_are_found_and_revoked
);

async fn rest_status_equals_graphql(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    let (status, rest) = app
        .rest_get(
            &format!("/coupon/api/v1/upload/getUploadStatus/{}", f.series),
            Some(&key),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rest["success"], true);
    assert_eq!(rest["status"], 200);
    let result = &rest["result"];
    assert_eq!(result["orgId"], 1);
    assert_eq!(result["couponSeriesId"], f.series);

    let gql = app
        .gql_ok(
            &key,
            r#"query($id: ID!) { uploadStatus(couponSeriesId: $id) { uploadJobStatuses {
                jobId orgId couponSeriesId uploadStatus createdOn updatedOn errorFileUrl successFileUrl
                uploadedFileUrl totalUploadedCount actualRowCount errorCount uploadTableName
                uploadedFileName audienceGroupId audienceGroupVersionId } } }"#,
            json!({ "id": f.series.to_string() }),
        )
        .await;
    let g_jobs = gql["uploadStatus"]["uploadJobStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let r_jobs = result["uploadJobStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(r_jobs.len(), 3);
    assert_eq!(g_jobs.len(), r_jobs.len());
    let int_id = |v: &Value| -> i64 { v.as_str().map(|s| s.parse().unwrap_or(-1)).unwrap_or(0) };
    let millis = |v: &Value| -> String {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
            .map(|t| t.timestamp_millis().to_string())
            .unwrap_or_default()
    };
    // Links are signed per request; compare them without the query string.
    let path = |v: &Value| {
        v.as_str()
            .map(|s| s.split('?').next().unwrap_or_default().to_owned())
    };
    for (g, r) in g_jobs.iter().zip(&r_jobs) {
        let obj = r.as_object().expect("object");
        assert_eq!(obj.len(), 16, "exactly Capillary's 16 fields: {r}");
        for id_field in ["jobId", "orgId", "couponSeriesId"] {
            assert_eq!(r[id_field], json!(int_id(&g[id_field])), "{id_field}");
        }
        for audience in ["audienceGroupId", "audienceGroupVersionId"] {
            assert_eq!(
                r[audience],
                json!(int_id(&g[audience])),
                "{audience}: absent is 0"
            );
        }
        for t in ["createdOn", "updatedOn"] {
            assert!(r[t].is_string(), "{t} is a string of epoch millis");
            assert_eq!(r[t].as_str().map(str::to_owned), Some(millis(&g[t])), "{t}");
        }
        for same in [
            "uploadStatus",
            "totalUploadedCount",
            "actualRowCount",
            "errorCount",
            "uploadTableName",
            "uploadedFileName",
        ] {
            assert_eq!(r[same], g[same], "{same}");
        }
        for link in ["errorFileUrl", "successFileUrl", "uploadedFileUrl"] {
            assert_eq!(path(&r[link]), path(&g[link]), "{link}");
        }
    }
    assert_eq!(r_jobs[0]["audienceGroupId"], f.group);
    assert_eq!(r_jobs[1]["audienceGroupId"], 0);
    assert_eq!(r_jobs[2]["createdOn"], "1768032000123");

    // Paging beyond Capillary: ?limit and ?after.
    let (_, page) = app
        .rest_get(
            &format!(
                "/coupon/api/v1/upload/getUploadStatus/{}?limit=1&after={}",
                f.series, f.jobs[2]
            ),
            Some(&key),
        )
        .await;
    assert_eq!(
        page["result"]["uploadJobStatuses"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(page["result"]["uploadJobStatuses"][0]["jobId"], f.jobs[1]);
}

async fn rest_errors_use_the_envelope(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    for (path, status, code) in [
        (
            format!("/coupon/api/v1/upload/getUploadStatus/{}", f.other_series),
            404,
            "NOT_FOUND",
        ),
        (
            "/coupon/api/v1/upload/getUploadStatus/424242".to_owned(),
            404,
            "NOT_FOUND",
        ),
        (
            "/coupon/api/v1/upload/getUploadStatus/abc".to_owned(),
            400,
            "BAD_USER_INPUT",
        ),
        (
            format!(
                "/coupon/api/v1/upload/getUploadStatus/{}?limit=9999",
                f.series
            ),
            400,
            "BAD_USER_INPUT",
        ),
        (
            format!("/coupon/api/v1/upload/getUploadStatus/{}?limit=x", f.series),
            400,
            "BAD_USER_INPUT",
        ),
    ] {
        let (got, body) = app.rest_get(&path, Some(&key)).await;
        assert_eq!(got.as_u16(), status, "{path}: {body}");
        assert_eq!(body["success"], false);
        assert_eq!(body["status"], status);
        assert_eq!(body["errors"][0]["code"], code, "{path}");
        assert!(body["message"].is_string());
    }
}

/// A JSON value's shape: each object's keys (sorted: `serde_json::Value` sorts them; their
/// order is checked on the raw text by [`in_order`]) with the shape of their values, arrays by
/// their first item, scalars by their JSON type.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<_> = m.iter().map(|(k, v)| json!([k, shape(v)])).collect();
            keys.sort_by_key(|k| k[0].as_str().map(str::to_owned));
            Value::Array(keys)
        }
        Value::Array(items) => json!({ "array of": items.first().map(shape) }),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

/// Capillary's job fields, in its order, with their types (a job not yet processed).
fn started_job_shape() -> Value {
    sorted(json!([
        ["orgId", "number"],
        ["couponSeriesId", "number"],
        ["jobId", "number"],
        ["uploadStatus", "string"],
        ["createdOn", "string"],
        ["updatedOn", "string"],
        ["errorFileUrl", "null"],
        ["successFileUrl", "null"],
        ["uploadedFileUrl", "string"],
        ["totalUploadedCount", "number"],
        ["actualRowCount", "number"],
        ["errorCount", "number"],
        ["uploadTableName", "string"],
        ["uploadedFileName", "string"],
        ["audienceGroupId", "number"],
        ["audienceGroupVersionId", "number"]
    ]))
}

/// The pairs of a shape sorted by key, as [`shape`] gives them.
fn sorted(v: Value) -> Value {
    let mut items = v.as_array().cloned().unwrap_or_default();
    items.sort_by_key(|k| k[0].as_str().map(str::to_owned));
    Value::Array(items)
}

/// The keys appear in the raw JSON text in this order (each after the one before).
fn in_order(raw: &str, keys: &[&str]) {
    let mut at = 0;
    for k in keys {
        let needle = format!("\"{k}\":");
        let found = raw[at..]
            .find(&needle)
            .unwrap_or_else(|| panic!("{k} missing or out of order in {raw}"));
        at += found + needle.len();
    }
}

const JOB_KEYS: [&str; 16] = [
    "orgId",
    "couponSeriesId",
    "jobId",
    "uploadStatus",
    "createdOn",
    "updatedOn",
    "errorFileUrl",
    "successFileUrl",
    "uploadedFileUrl",
    "totalUploadedCount",
    "actualRowCount",
    "errorCount",
    "uploadTableName",
    "uploadedFileName",
    "audienceGroupId",
    "audienceGroupVersionId",
];

/// Both REST envelopes, key for key: a Capillary client reads `result.uploadJobStatuses[0]` of
/// either (the upload's answer flattened the job into `result` before).
async fn rest_envelopes_keep_their_exact_shape(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"code\nREST-1\n".to_vec()).file_name("codes.csv"),
    );
    let res = app
        .client
        .post(format!("{}/coupon/api/v1/upload/file/{series}", app.base))
        .header("X-CAP-API-OAUTH-TOKEN", &key)
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let raw = res.text().await.expect("body");
    let upload: Value = serde_json::from_str(&raw).expect("json");
    let mut job = started_job_shape();
    assert_eq!(
        shape(&upload),
        sorted(json!([
            ["success", "bool"],
            ["status", "number"],
            [
                "result",
                sorted(json!([
                    ["orgId", "number"], ["couponSeriesId", "number"],
                    ["uploadJobStatuses", { "array of": job.clone() }],
                    ["fileName", "string"]
                ]))
            ]
        ])),
        "{upload}"
    );
    in_order(
        &raw,
        &[
            "success",
            "status",
            "result",
            "orgId",
            "couponSeriesId",
            "uploadJobStatuses",
        ],
    );
    in_order(&raw, &JOB_KEYS);
    in_order(
        &raw,
        &["uploadJobStatuses", "audienceGroupVersionId", "fileName"],
    );
    let id = upload["result"]["uploadJobStatuses"][0]["jobId"].to_string();
    app.wait_job(&key, &id).await;
    let raw = app
        .client
        .get(format!(
            "{}/coupon/api/v1/upload/getUploadStatus/{series}",
            app.base
        ))
        .header("X-CAP-API-OAUTH-TOKEN", &key)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    let status: Value = serde_json::from_str(&raw).expect("json");
    // Once finished, its result files are links.
    for item in job.as_array_mut().expect("pairs") {
        if item[0] == "errorFileUrl" || item[0] == "successFileUrl" {
            item[1] = json!("string");
        }
    }
    assert_eq!(
        shape(&status),
        sorted(json!([
            ["success", "bool"],
            ["status", "number"],
            [
                "result",
                sorted(json!([
                    ["orgId", "number"], ["couponSeriesId", "number"],
                    ["uploadJobStatuses", { "array of": job }]
                ]))
            ]
        ])),
        "{status}"
    );
    in_order(
        &raw,
        &[
            "success",
            "status",
            "result",
            "orgId",
            "couponSeriesId",
            "uploadJobStatuses",
        ],
    );
    in_order(&raw, &JOB_KEYS);
}

/// `GET /v2/coupon` by codes or customers, `POST /v2/coupon/revoke`, in the envelope.
async fn rest_coupons_are_found_and_revoked(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app
        .create_series(&key, json!({ "allowMultiplePerCustomer": true }))
        .await;
    let job = app
        .upload_ok(
            &key,
            &series,
            b"code,customer\nR-1,E-1\nR-2,E-2\nR-3,E-1\n",
            json!({ "kind": "EXTERNAL_ID", "customerColumn": 1, "codeColumn": 0 }),
        )
        .await;
    app.wait_job(&key, &job).await;
    let (status, body) = app
        .rest_get("/v2/coupon?couponCodes=R-1,R-3,NOPE", Some(&key))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let coupons = body["result"]["coupons"].as_array().expect("coupons");
    let codes: Vec<&str> = coupons.iter().filter_map(|c| c["code"].as_str()).collect();
    assert_eq!(codes, ["R-1", "R-3"], "{body}");
    assert_eq!(coupons[0]["issuedTo"], "E-1");
    assert_eq!(coupons[0]["status"], "ACTIVE");
    assert_eq!(coupons[0]["seriesId"].to_string(), series);
    let (_, body) = app
        .rest_get(
            &format!("/v2/coupon?issuedToIds=E-1&seriesId={series}"),
            Some(&key),
        )
        .await;
    let codes: Vec<&str> = body["result"]["coupons"]
        .as_array()
        .expect("coupons")
        .iter()
        .filter_map(|c| c["code"].as_str())
        .collect();
    assert_eq!(codes, ["R-1", "R-3"], "{body}");
    for bad in [
        "/v2/coupon",
        "/v2/coupon?couponCodes=A&issuedToIds=B",
        "/v2/coupon?couponCodes=A%07",
    ] {
        let (status, body) = app.rest_get(bad, Some(&key)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["errors"][0]["code"], "BAD_USER_INPUT", "{bad}: {body}");
    }
    let revoke = |body: Value| {
        app.client
            .post(format!("{}/v2/coupon/revoke", app.base))
            .header("X-CAP-API-OAUTH-TOKEN", &key)
            .json(&body)
            .send()
    };
    let res = revoke(
        json!({ "seriesId": series.parse::<i64>().expect("id"), "couponCodes": ["R-2", "NOPE"] }),
    )
    .await
    .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["result"]["revokedCount"], 1, "{body}");
    assert_eq!(body["result"]["unknownCodes"], json!(["NOPE"]), "{body}");
    assert_eq!(body["result"]["revoked"][0]["status"], "REVOKED", "{body}");
    let (_, body) = app.rest_get("/v2/coupon?couponCodes=R-2", Some(&key)).await;
    assert_eq!(body["result"]["coupons"][0]["status"], "REVOKED", "{body}");
    let res = revoke(json!({ "seriesId": "x", "couponCodes": [] }))
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}
