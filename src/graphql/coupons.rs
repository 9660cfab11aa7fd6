//! The arguments of the `coupons` connections (their filter, keyset cursors on the coupon id)
//! and a job's row errors (`rowErrors`, `errorSummary`). The object types that link coupons to
//! series and jobs (`Coupon`, its connection, `RevokeResult`) are in `types`, with those.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, InputObject, Object, Result};

use super::{loader_err, request_ctx};
use crate::domain::CouponStatus;
use crate::error::{AppResult, GqlResultExt};
use crate::service::{CouponFilter, Page, parse_id};

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

/// The kind of the coupons connections' cursors.
pub const COUPON_CURSOR: &str = "Coupon";

/// The arguments of a `coupons` field, checked.
pub fn coupon_args(
    first: Option<i32>,
    after: Option<String>,
    filter: Option<CouponFilterInput>,
) -> AppResult<(Page, CouponFilter)> {
    let after = after
        .as_deref()
        .map(|c| super::parse_cursor(COUPON_CURSOR, c))
        .transpose()?;
    let page = Page::new(first, after)?;
    Ok((page, filter.unwrap_or_default().checked()?))
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

const ROW_ERROR_CURSOR: &str = "RowError";

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
        .map(|c| super::parse_cursor(ROW_ERROR_CURSOR, c))
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
    conn.edges.extend(got.items.into_iter().map(|e| {
        Edge::new(
            super::cursor(ROW_ERROR_CURSOR, e.row_number),
            RowErrorNode(e),
        )
    }));
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
