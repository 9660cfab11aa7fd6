//! Coupons as GraphQL: `Coupon`, the `coupons` connections of a series and of a job (keyset
//! cursors on the coupon id), their filter, and what `revokeCoupons` answers.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, InputObject, Object, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::types::{CouponSeries, UploadJob, loader_err};
use super::{request_ctx, service};
use crate::domain::{CouponStatus, CustomerIdentifierType};
use crate::entity::coupon;
use crate::error::{AppError, AppResult, GqlResultExt};
use crate::service::{CouponFilter, CouponPage, CouponScope, Page, Revoked, parse_id};

/// One coupon code in the inventory: who uploaded it, to whom it is tagged, whether it is live.
pub struct Coupon(pub coupon::Model);

/// One coupon code in the inventory: who uploaded it, to whom it is tagged, whether it is live.
#[Object]
impl Coupon {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn code(&self) -> &str {
        &self.0.code
    }
    async fn coupon_series(&self, ctx: &Context<'_>) -> Result<Option<CouponSeries>> {
        let rc = request_ctx(ctx)?;
        let s = rc
            .loaders()
            .coupon_series
            .load_one(self.0.coupon_series_id)
            .await
            .map_err(loader_err)?;
        Ok(s.map(CouponSeries))
    }
    /// The upload that created the coupon.
    async fn upload_job(&self, ctx: &Context<'_>) -> Result<Option<UploadJob>> {
        let Some(job) = self.0.upload_job_id else {
            return Ok(None);
        };
        let rc = request_ctx(ctx)?;
        let j = rc
            .loaders()
            .upload_job
            .load_one(job)
            .await
            .map_err(loader_err)?;
        Ok(j.map(UploadJob::new))
    }
    /// How the customer is named; null for an untagged coupon.
    async fn customer_identifier_type(&self) -> Option<CustomerIdentifierType> {
        self.0.customer_identifier_type
    }
    /// The customer the coupon is tagged to (normalized as uploaded); null when untagged.
    async fn customer_identifier(&self) -> Option<&str> {
        self.0.customer_identifier.as_deref()
    }
    async fn status(&self) -> CouponStatus {
        self.0.status
    }
    async fn created_on(&self) -> DateTime<Utc> {
        self.0.created_on
    }
    async fn revoked_on(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_on
    }
}

/// Narrows a page of coupons; every field given must hold.
#[derive(InputObject, Default)]
#[graphql(name = "CouponFilter")]
pub struct CouponFilterInput {
    /// Codes that start with this (case-sensitive, as codes are).
    pub code_prefix: Option<String>,
    pub customer_identifier: Option<String>,
    pub status: Option<CouponStatus>,
    pub upload_job_id: Option<ID>,
}

impl CouponFilterInput {
    fn checked(self) -> AppResult<CouponFilter> {
        CouponFilter {
            code_prefix: self.code_prefix,
            customer_identifier: self.customer_identifier,
            status: self.status,
            upload_job_id: self
                .upload_job_id
                .map(|id| parse_id("uploadJobId", &id))
                .transpose()?,
        }
        .checked()
    }
}

/// What a `coupons` connection has beyond its page.
pub struct CouponConnectionFields {
    scope: CouponScope,
    filter: CouponFilter,
}

#[Object]
impl CouponConnectionFields {
    /// Coupons matching the filter, across pages (counted when asked for).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        let rc = request_ctx(ctx)?;
        if let CouponScope::Job(job) = self.scope {
            // A page of jobs counts in one statement.
            let n = rc
                .loaders()
                .coupon_count_of_job
                .load_one((job, self.filter.clone()))
                .await
                .map_err(loader_err)?;
            return Ok(n.unwrap_or(0));
        }
        service(ctx)?
            .coupons_count(&rc.org, self.scope, &self.filter)
            .await
            .gql()
    }
}

pub type CouponConnection = Connection<String, Coupon, CouponConnectionFields>;

const COUPON_CURSOR: &str = "Coupon:";

fn coupon_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{COUPON_CURSOR}{id}"))
}

fn parse_coupon_cursor(cursor: &str) -> AppResult<i64> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.strip_prefix(COUPON_CURSOR).and_then(|id| id.parse().ok()))
        .ok_or_else(|| AppError::BadUserInput("`after` is not a cursor this API returned".into()))
}

/// The arguments of a `coupons` field, checked.
pub fn coupon_args(
    first: Option<i32>,
    after: Option<String>,
    filter: Option<CouponFilterInput>,
) -> AppResult<(Page, CouponFilter)> {
    let after = after.as_deref().map(parse_coupon_cursor).transpose()?;
    let page = Page::new(first, after)?;
    Ok((page, filter.unwrap_or_default().checked()?))
}

/// A page as a connection.
pub fn connection(
    scope: CouponScope,
    filter: CouponFilter,
    page: Page,
    got: CouponPage,
) -> CouponConnection {
    let mut conn = Connection::with_additional_fields(
        page.after.is_some(),
        got.has_next_page,
        CouponConnectionFields { scope, filter },
    );
    conn.edges.extend(
        got.items
            .into_iter()
            .map(|c| Edge::new(coupon_cursor(c.id), Coupon(c))),
    );
    conn
}

/// What `revokeCoupons` did.
pub struct RevokeResult(pub Revoked);

/// What `revokeCoupons` did: unknown codes are reported, not fatal.
#[Object]
impl RevokeResult {
    /// Coupons revoked by this call.
    async fn revoked_count(&self) -> usize {
        self.0.revoked.len()
    }
    /// The coupons revoked by this call, as they are now.
    async fn revoked(&self) -> Vec<Coupon> {
        self.0.revoked.iter().cloned().map(Coupon).collect()
    }
    /// Codes of the series that were revoked before (they stay revoked).
    async fn already_revoked_codes(&self) -> &[String] {
        &self.0.already_revoked
    }
    /// Codes with no coupon in the series.
    async fn unknown_codes(&self) -> &[String] {
        &self.0.unknown
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn coupon_cursors_round_trip_and_reject_junk() {
        assert_eq!(
            super::parse_coupon_cursor(&super::coupon_cursor(7)).ok(),
            Some(7)
        );
        for junk in ["7", "", "Q291cG9uOg", "é", "Q291cG9uU2VyaWVzOjE"] {
            assert!(super::parse_coupon_cursor(junk).is_err(), "{junk}");
        }
    }
}

/// One rejected row of an upload, as the job's error file has it.
pub struct RowErrorNode(pub crate::service::RowError);

/// One rejected row of an upload, as the job's error file has it.
#[Object(name = "RowError")]
impl RowErrorNode {
    /// The data row's number in the file (1 = the first row after the header).
    async fn row_number(&self) -> i64 {
        self.0.row_number
    }
    async fn error_code(&self) -> crate::domain::RowErrorCode {
        self.0.error_code
    }
    async fn message(&self) -> &str {
        self.0.error_message.as_deref().unwrap_or_default()
    }
    /// The code cell as written.
    async fn coupon_code(&self) -> &str {
        &self.0.coupon_code
    }
    /// The customer cell as written; null when the upload names no customers.
    async fn customer_identifier(&self) -> Option<&str> {
        self.0.customer_identifier.as_deref()
    }
}

/// How many rows of a job were rejected with one error code.
#[derive(async_graphql::SimpleObject)]
pub struct ErrorCount {
    pub error_code: crate::domain::RowErrorCode,
    pub count: i64,
}

/// What a `rowErrors` connection has beyond its page.
pub struct RowErrorConnectionFields {
    pub job: crate::service::JobErrors,
    pub code: Option<crate::domain::RowErrorCode>,
}

#[Object]
impl RowErrorConnectionFields {
    /// Rejected rows (with `errorCode`, if given), across pages.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let rc = request_ctx(ctx)?;
        let counts = rc
            .loaders()
            .error_summary
            .load_one(self.job.clone())
            .await
            .map_err(loader_err)?
            .unwrap_or_default();
        Ok(counts
            .iter()
            .filter(|(c, _)| self.code.is_none_or(|want| *c == want))
            .map(|(_, n)| n)
            .sum())
    }
}

pub type RowErrorConnection = Connection<String, RowErrorNode, RowErrorConnectionFields>;

const ROW_ERROR_CURSOR: &str = "RowError:";

fn row_error_cursor(row: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{ROW_ERROR_CURSOR}{row}"))
}

fn parse_row_error_cursor(cursor: &str) -> AppResult<i64> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| {
            s.strip_prefix(ROW_ERROR_CURSOR)
                .and_then(|n| n.parse().ok())
        })
        .ok_or_else(|| AppError::BadUserInput("`after` is not a cursor this API returned".into()))
}

/// `UploadJob.rowErrors`: the job's page of rejected rows, by row number.
pub async fn row_errors(
    ctx: &Context<'_>,
    job: &crate::entity::upload_job::Model,
    first: Option<i32>,
    after: Option<String>,
    code: Option<crate::domain::RowErrorCode>,
) -> Result<RowErrorConnection> {
    let rc = request_ctx(ctx)?;
    let after = after
        .as_deref()
        .map(parse_row_error_cursor)
        .transpose()
        .gql()?;
    let page = Page::new(first, after).gql()?;
    let errors = crate::service::JobErrors::of(job);
    let got = rc
        .loaders()
        .row_errors_of_job
        .load_one(super::loaders::ErrorPageKey {
            job: errors.clone(),
            code,
            page,
        })
        .await
        .map_err(loader_err)?
        .unwrap_or_default();
    let mut conn = Connection::with_additional_fields(
        page.after.is_some(),
        got.has_next_page,
        RowErrorConnectionFields { job: errors, code },
    );
    conn.edges.extend(
        got.items
            .into_iter()
            .map(|e| Edge::new(row_error_cursor(e.row_number), RowErrorNode(e))),
    );
    Ok(conn)
}

/// `UploadJob.errorSummary`: the job's count of rejected rows per code.
pub async fn error_summary(
    ctx: &Context<'_>,
    job: &crate::entity::upload_job::Model,
) -> Result<Vec<ErrorCount>> {
    let rc = request_ctx(ctx)?;
    let counts = rc
        .loaders()
        .error_summary
        .load_one(crate::service::JobErrors::of(job))
        .await
        .map_err(loader_err)?
        .unwrap_or_default();
    Ok(counts
        .into_iter()
        .map(|(error_code, count)| ErrorCount { error_code, count })
        .collect())
}
