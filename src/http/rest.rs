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

use super::Shared;
use super::error::Shape;
use super::multipart::{self, is_multipart};
use crate::domain::CustomerIdentifierType;
use crate::entity::upload_job;
use crate::error::AppError;
use crate::service::{NewUpload, Page, Service, parse_id};
use crate::view::{JobField, Value};

/// Where the upload route's path starts (it ends with the series id).
pub const UPLOAD_PATH_PREFIX: &str = "/coupon/api/v1/upload/file/";

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
        .route("/v2/coupon", get(get_coupons))
        .route("/v2/coupon/revoke", post(revoke_coupons))
}

/// A coupon as the v2 coupon API shows it: ids as numbers, times as epoch-millisecond strings.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RestCoupon {
    id: i64,
    code: String,
    series_id: i64,
    upload_job_id: i64,
    customer_identifier_type: Option<&'static str>,
    issued_to: Option<String>,
    status: &'static str,
    created_on: String,
    revoked_on: Option<String>,
}

impl From<crate::entity::coupon::Model> for RestCoupon {
    fn from(c: crate::entity::coupon::Model) -> Self {
        Self {
            id: c.id,
            code: c.code,
            series_id: c.coupon_series_id,
            upload_job_id: c.upload_job_id.unwrap_or(0),
            customer_identifier_type: c.customer_identifier_type.map(|t| t.as_str()),
            issued_to: c.customer_identifier,
            status: c.status.as_str(),
            created_on: c.created_on.timestamp_millis().to_string(),
            revoked_on: c.revoked_on.map(|t| t.timestamp_millis().to_string()),
        }
    }
}

/// A comma-separated list parameter: trimmed, empty items dropped.
fn list(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CouponParams {
    coupon_codes: Option<String>,
    issued_to_ids: Option<String>,
    series_id: Option<String>,
}

/// The most codes or customers one `GET /v2/coupon` may name.
const MAX_LOOKUP: usize = 100;

/// `GET /v2/coupon?couponCodes=A,B` or `?issuedToIds=C1,C2[&seriesId=N]`: the caller's org's
/// coupons with those codes, or tagged to those customers (in one series when given).
async fn get_coupons(
    State(state): State<Shared>,
    peer: super::Peer,
    headers: HeaderMap,
    Query(params): Query<CouponParams>,
) -> Response {
    let run = async {
        let org = state.authorize(&headers, peer).await?;
        let codes = list(params.coupon_codes.as_deref());
        let customers = list(params.issued_to_ids.as_deref());
        if codes.is_empty() == customers.is_empty() {
            return Err(AppError::BadUserInput(
                "give either `couponCodes` or `issuedToIds` (comma-separated)".into(),
            ));
        }
        if codes.len().max(customers.len()) > MAX_LOOKUP {
            return Err(AppError::BadUserInput(format!(
                "at most {MAX_LOOKUP} codes or customers per request"
            )));
        }
        let series = params
            .series_id
            .as_deref()
            .map(|s| parse_id("seriesId", s))
            .transpose()?;
        let found = if codes.is_empty() {
            state
                .service
                .coupons_by_customers(&org, &customers, series)
                .await?
        } else {
            state.service.coupons_by_codes(&org, &codes).await?
        };
        let coupons: Vec<RestCoupon> = found
            .into_iter()
            .filter(|c| series.is_none_or(|s| c.coupon_series_id == s))
            .map(RestCoupon::from)
            .collect();
        Ok::<_, AppError>(serde_json::json!({ "coupons": coupons }))
    };
    match run.await {
        Ok(result) => ok(result),
        Err(e) => fail(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokeBody {
    series_id: serde_json::Value,
    coupon_codes: Vec<String>,
}

/// `POST /v2/coupon/revoke` with `{"seriesId": N, "couponCodes": [...]}` (up to 1,000 codes;
/// Capillary takes 50): what `revokeCoupons` does.
async fn revoke_coupons(State(state): State<Shared>, req: Request) -> Response {
    let run = async {
        let org = state
            .authorize(req.headers(), super::Peer::of(req.extensions()))
            .await?;
        org.require_write()?;
        let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .map_err(|_| AppError::PayloadTooLarge("the body is over 1 MiB".into()))?;
        let body: RevokeBody = serde_json::from_slice(&bytes).map_err(|e| {
            AppError::BadUserInput(format!(
                "the body must be {{\"seriesId\": <id>, \"couponCodes\": [..]}}: {e}"
            ))
        })?;
        let series = match &body.series_id {
            serde_json::Value::Number(n) => parse_id("seriesId", &n.to_string())?,
            serde_json::Value::String(s) => parse_id("seriesId", s)?,
            _ => return Err(AppError::BadUserInput("seriesId must be an id".into())),
        };
        let r = state
            .service
            .revoke_coupons(&org, series, &body.coupon_codes)
            .await?;
        Ok::<_, AppError>(serde_json::json!({
            "revokedCount": r.revoked.len(),
            "revoked": r.revoked.into_iter().map(RestCoupon::from).collect::<Vec<_>>(),
            "alreadyRevokedCodes": r.already_revoked,
            "unknownCodes": r.unknown,
        }))
    };
    match run.await {
        Ok(result) => ok(result),
        Err(e) => fail(e),
    }
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
    e.shaped(Shape::Capillary).into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UploadStatusResult<'a> {
    org_id: i64,
    coupon_series_id: i64,
    upload_job_statuses: Vec<RestUploadJob<'a>>,
}

/// One job, field for field as Capillary's status API sends it: the fields `crate::view` marks
/// for REST, in its order; ids as numbers (an absent one `0`), times as epoch-millisecond
/// strings, files as signed links.
struct RestUploadJob<'a> {
    job: upload_job::Model,
    service: &'a Service,
}

impl<'a> RestUploadJob<'a> {
    fn new(service: &'a Service, job: upload_job::Model) -> Self {
        Self { job, service }
    }
}

impl Serialize for RestUploadJob<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = ser.serialize_map(None)?;
        for field in JobField::ALL.iter().filter(|f| f.in_rest()) {
            let value = field.get(&self.job);
            let name = field.name();
            match value {
                Value::Id(n) | Value::Count(n) => map.serialize_entry(name, &n)?,
                Value::OptId(n) => map.serialize_entry(name, &n.unwrap_or(0))?,
                Value::OptInt(n) => map.serialize_entry(name, &n)?,
                Value::Bool(b) => map.serialize_entry(name, &b)?,
                Value::Str(s) => map.serialize_entry(name, s)?,
                Value::OptStr(s) => map.serialize_entry(name, &s)?,
                Value::Time(t) => map.serialize_entry(name, &t.timestamp_millis().to_string())?,
                Value::File(key) => map.serialize_entry(name, &self.service.file_url(key))?,
                Value::Status(x) => map.serialize_entry(name, x.as_str())?,
                Value::Identifier(x) => map.serialize_entry(name, x.as_str())?,
            }
        }
        map.end()
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
    peer: super::Peer,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    Query(params): Query<StatusParams>,
) -> Response {
    let run = async {
        let org = state.authorize(&headers, peer).await?;
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

/// `POST /coupon/api/v1/upload/file/{couponSeriesId}`'s result, as Capillary documents "Upload
/// Coupons (Batch)": the org, the series, the new job (`STARTED`) in `uploadJobStatuses`, and
/// the file name.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UploadResult<'a> {
    org_id: i64,
    coupon_series_id: i64,
    upload_job_statuses: [RestUploadJob<'a>; 1],
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
        let org = state
            .authorize(req.headers(), super::Peer::of(req.extensions()))
            .await?;
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
        Ok::<_, AppError>(UploadResult {
            org_id: job.org_id,
            coupon_series_id: job.coupon_series_id,
            file_name: job.uploaded_file_name.clone(),
            upload_job_statuses: [RestUploadJob::new(&state.service, job)],
        })
    };
    match run.await {
        Ok(result) => ok(result),
        Err(e) => fail(e),
    }
}
