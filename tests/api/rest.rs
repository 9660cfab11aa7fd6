//! The Capillary compatibility route gives the same numbers as GraphQL, in Capillary's shape.

use coupon_upload_api::domain::Permission;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_tests;
use crate::fixtures::{ORG_A, seed};
use crate::helpers::TestApp;

db_tests!(rest_status_equals_graphql, rest_errors_use_the_envelope);

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
