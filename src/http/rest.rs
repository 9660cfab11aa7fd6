//! The Capillary compatibility layer: the same service calls as GraphQL, in Capillary's shapes.
//!
//! Envelope: `{"success":true,"status":200,"result":…}`; on error
//! `{"success":false,"status":<http status>,"message":…,"errors":[{"code":…,"message":…}]}`.
//! Ids are integers, timestamps epoch-millisecond strings, absent audience ids `0`.

use axum::extract::Request;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Shared;
use super::multipart::{self, is_multipart};
use crate::domain::CustomerIdentifierType;
use crate::entity::upload_job;
use crate::error::AppError;
use crate::service::{NewUpload, Page, Service, parse_id};

pub fn router() -> Router<Shared> {
    Router::new()
        .route(
            "/coupon/api/v1/upload/file/{coupon_series_id}",
            post(upload_file),
        )
        .route(
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
    let mut res = (status, Json(body)).into_response();
    if let AppError::RateLimited { retry_after_secs } = e
        && let Ok(v) = axum::http::HeaderValue::from_str(&retry_after_secs.to_string())
    {
        res.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    res
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
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    Query(params): Query<StatusParams>,
) -> Response {
    let run = async {
        let org = state.authorize(&headers).await?;
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
        let found = state
            .service
            .upload_status_page(&org, series_id, None, page, false)
            .await?;
        Ok::<_, AppError>(UploadStatusResult {
            org_id: found.status.org_id,
            coupon_series_id: found.status.series.id,
            upload_job_statuses: found
                .jobs
                .into_iter()
                .map(|j| RestUploadJob::new(&state.service, j.job))
                .collect(),
        })
    };
    match run.await {
        Ok(result) => ok(result),
        Err(e) => fail(e),
    }
}

/// `POST /coupon/api/v1/upload/file/{couponSeriesId}`'s result: the new job and the file name.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UploadResult {
    #[serde(flatten)]
    job: RestUploadJob,
    file_name: String,
}

fn optional_int(form: &multipart::SpooledForm, name: &str) -> Result<Option<i32>, AppError> {
    match form.field(name).map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<i32>()
            .map(Some)
            .map_err(|_| AppError::BadUserInput(format!("`{name}` must be an integer"))),
    }
}

/// `POST /coupon/api/v1/upload/file/{couponSeriesId}` (Capillary's "Upload Coupons (Batch)"):
/// multipart fields `file`, `customerIdentifier` (default `NOT_TAGGED`),
/// `customerIdentifierColumn`, `couponCodeColumn` and `hasHeader` (default `true`).
async fn upload_file(
    State(state): State<Shared>,
    Path(raw_id): Path<String>,
    req: Request,
) -> Response {
    let run = async {
        let org = state.authorize(req.headers()).await?;
        // Refused before the body is read.
        org.require_write()?;
        let series_id = parse_id("couponSeriesId", &raw_id)?;
        if !is_multipart(&req) {
            return Err(AppError::BadUserInput(
                "send the file as multipart/form-data, in a field named `file`".into(),
            ));
        }
        let mut form = multipart::spool(req, &state.uploads).await?;
        let kind = match form.field("customerIdentifier").map(str::trim) {
            None | Some("") => CustomerIdentifierType::NotTagged,
            Some(k) => CustomerIdentifierType::parse(k).ok_or_else(|| {
                AppError::BadUserInput(
                    "`customerIdentifier` must be NOT_TAGGED, MOBILE, EMAIL, EXTERNAL_ID or USER_ID".into(),
                )
            })?,
        };
        let customer_identifier_column = optional_int(&form, "customerIdentifierColumn")?;
        let coupon_code_column = optional_int(&form, "couponCodeColumn")?;
        let has_header = match form
            .field("hasHeader")
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => true,
            Some(v) if v.is_empty() || v == "true" => true,
            Some(v) if v == "false" => false,
            Some(_) => {
                return Err(AppError::BadUserInput(
                    "`hasHeader` must be true or false".into(),
                ));
            }
        };
        let idx = form
            .files
            .iter()
            .position(|f| f.field == "file")
            .ok_or_else(|| {
                AppError::BadUserInput("the multipart body has no `file` field".into())
            })?;
        let file = form.files.swap_remove(idx);
        let new = NewUpload {
            coupon_series_id: series_id,
            customer_identifier: kind,
            customer_identifier_column,
            coupon_code_column,
            has_header,
            file_name: file.file_name,
        };
        let job = state
            .service
            .create_upload_job(&org, new, tokio::fs::File::from_std(file.file))
            .await?;
        let file_name = job.uploaded_file_name.clone();
        Ok::<_, AppError>(UploadResult {
            job: RestUploadJob::new(&state.service, job),
            file_name,
        })
    };
    match run.await {
        Ok(result) => ok(result),
        Err(e) => fail(e),
    }
}
