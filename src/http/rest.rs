//! The Capillary compatibility layer: the same service calls as GraphQL, in Capillary's shapes.
//!
//! Envelope: `{"success":true,"status":200,"result":…}`; on error
//! `{"success":false,"status":<http status>,"message":…,"errors":[{"code":…,"message":…}]}`.
//! Ids are integers, timestamps epoch-millisecond strings, absent audience ids `0`.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::auth::presented_key;
use crate::entity::upload_job;
use crate::error::AppError;
use crate::service::{Page, Service, parse_id};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/coupon/api/v1/upload/getUploadStatus/{coupon_series_id}",
        get(get_upload_status),
    )
}

/// Capillary's success envelope; a struct, so fields keep Capillary's order.
#[derive(Serialize)]
struct Envelope<T> {
    success: bool,
    status: u16,
    result: T,
}

fn ok(result: impl Serialize) -> Response {
    Json(Envelope {
        success: true,
        status: 200,
        result,
    })
    .into_response()
}

fn fail(e: AppError) -> Response {
    let status = e.status();
    let message = e.public_message();
    let body = json!({
        "success": false,
        "status": status.as_u16(),
        "message": message,
        "errors": [{ "code": e.code(), "message": message }],
    });
    (status, Json(body)).into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UploadStatusResult {
    org_id: i64,
    coupon_series_id: i64,
    upload_job_statuses: Vec<RestUploadJob>,
}

/// One job, field for field as Capillary's status API sends it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RestUploadJob {
    org_id: i64,
    coupon_series_id: i64,
    job_id: i64,
    upload_status: String,
    created_on: String,
    updated_on: String,
    error_file_url: Option<String>,
    success_file_url: Option<String>,
    uploaded_file_url: Option<String>,
    total_uploaded_count: i64,
    actual_row_count: i64,
    error_count: i64,
    upload_table_name: String,
    uploaded_file_name: String,
    audience_group_id: i64,
    audience_group_version_id: i64,
}

impl RestUploadJob {
    fn new(service: &Service, j: upload_job::Model) -> Self {
        Self {
            org_id: j.org_id,
            coupon_series_id: j.coupon_series_id,
            job_id: j.id,
            created_on: j.created_on.timestamp_millis().to_string(),
            updated_on: j.updated_on.timestamp_millis().to_string(),
            error_file_url: service.file_url(j.error_file_key.as_deref()),
            success_file_url: service.file_url(j.success_file_key.as_deref()),
            uploaded_file_url: service.file_url(j.uploaded_file_key.as_deref()),
            total_uploaded_count: j.total_uploaded_count,
            actual_row_count: j.actual_row_count,
            error_count: j.error_count,
            audience_group_id: j.audience_group_id.unwrap_or(0),
            audience_group_version_id: j.audience_group_version_id.unwrap_or(0),
            upload_status: j.upload_status,
            upload_table_name: j.upload_table_name,
            uploaded_file_name: j.uploaded_file_name,
        }
    }
}

/// Paging beyond Capillary's API: `?limit=` (default 100, at most 500) and `?after=<jobId>`.
#[derive(Deserialize)]
struct StatusParams {
    limit: Option<String>,
    after: Option<String>,
}

/// `GET /coupon/api/v1/upload/getUploadStatus/{couponSeriesId}`: the series' jobs, newest first.
async fn get_upload_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    Query(params): Query<StatusParams>,
) -> Response {
    let run = async {
        let org = state.service.authenticate(presented_key(&headers)).await?;
        let series_id = parse_id("couponSeriesId", &raw_id)?;
        let limit = match params.limit.as_deref() {
            None => None,
            Some(raw) => Some(
                raw.parse::<i32>()
                    .map_err(|_| AppError::BadUserInput("`limit` must be an integer".into()))?,
            ),
        };
        let after = params
            .after
            .as_deref()
            .map(|a| parse_id("`after`", a))
            .transpose()?;
        let page = Page::new(limit, after)?;
        let status = state.service.upload_status(&org, series_id).await?;
        let jobs = state
            .service
            .upload_jobs(&org, series_id, None, page)
            .await?;
        Ok::<_, AppError>(UploadStatusResult {
            org_id: status.org_id,
            coupon_series_id: status.series.id,
            upload_job_statuses: jobs
                .into_iter()
                .map(|j| RestUploadJob::new(&state.service, j))
                .collect(),
        })
    };
    match run.await {
        Ok(result) => ok(result),
        Err(e) => fail(e),
    }
}
