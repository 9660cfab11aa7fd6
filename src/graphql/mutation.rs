use async_graphql::{Context, ID, InputObject, Object, Result};

use super::types::{CouponSeries, UploadJob};
use super::upload::FileUpload;
use super::{request_ctx, service};
use crate::domain::CustomerIdentifierType;
use crate::error::GqlResultExt;
use crate::service::{CouponSeriesChanges, NewCouponSeries, NewUpload, parse_id};

pub struct MutationRoot;

/// A new coupon series for uploaded codes (`clientHandlingType: DISC_CODE_PIN`).
#[derive(InputObject)]
pub struct CreateCouponSeriesInput {
    /// 1 to 200 characters.
    name: String,
    #[graphql(default)]
    description: String,
    /// Most coupons the series may hold; -1 = unlimited.
    #[graphql(default = -1)]
    max_create: i32,
    /// Whether one customer may hold several coupons of the series.
    #[graphql(default = false)]
    allow_multiple_per_customer: bool,
    /// Longest coupon code accepted, 1 to 255.
    #[graphql(default = 50)]
    code_max_length: i32,
}

/// Changes to a coupon series; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateCouponSeriesInput {
    name: Option<String>,
    description: Option<String>,
    /// Cannot go below `numUploadedTotal`; -1 = unlimited.
    max_create: Option<i32>,
    allow_multiple_per_customer: Option<bool>,
    code_max_length: Option<i32>,
}

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Creates a coupon series in the caller's org. Needs a READ_WRITE key.
    async fn create_coupon_series(
        &self,
        ctx: &Context<'_>,
        input: CreateCouponSeriesInput,
    ) -> Result<CouponSeries> {
        let rc = request_ctx(ctx)?;
        let new = NewCouponSeries {
            name: input.name,
            description: input.description,
            max_create: input.max_create.into(),
            allow_multiple_per_customer: input.allow_multiple_per_customer,
            code_max_length: input.code_max_length,
        };
        Ok(CouponSeries(
            service(ctx)?
                .create_coupon_series(&rc.org, new)
                .await
                .gql()?,
        ))
    }

    /// Changes a coupon series of the caller's org. Needs a READ_WRITE key.
    async fn update_coupon_series(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateCouponSeriesInput,
    ) -> Result<CouponSeries> {
        let rc = request_ctx(ctx)?;
        let id = parse_id("id", &id).gql()?;
        let changes = CouponSeriesChanges {
            name: input.name,
            description: input.description,
            max_create: input.max_create.map(i64::from),
            allow_multiple_per_customer: input.allow_multiple_per_customer,
            code_max_length: input.code_max_length,
        };
        Ok(CouponSeries(
            service(ctx)?
                .update_coupon_series(&rc.org, id, changes)
                .await
                .gql()?,
        ))
    }

    /// Uploads a CSV of coupon codes to a series (Capillary's "Upload Coupons (Batch)"). Send
    /// it as a GraphQL multipart request. Returns at once with the job `STARTED`; rows are
    /// ingested in the background (watch `uploadJob` or `uploadStatus`). Columns are 0-based;
    /// `couponCodeColumn` defaults to the first column that is not the customer's.
    #[allow(clippy::too_many_arguments)]
    async fn upload_coupons(
        &self,
        ctx: &Context<'_>,
        coupon_series_id: ID,
        file: FileUpload,
        customer_identifier: CustomerIdentifierType,
        customer_identifier_column: Option<i32>,
        coupon_code_column: Option<i32>,
        #[graphql(default = true)] has_header: bool,
    ) -> Result<UploadJob> {
        let rc = request_ctx(ctx)?;
        rc.org.require_write().gql()?;
        let series = parse_id("couponSeriesId", &coupon_series_id).gql()?;
        let upload = file.value(ctx).gql()?;
        let new = NewUpload {
            coupon_series_id: series,
            customer_identifier,
            customer_identifier_column,
            coupon_code_column,
            has_header,
            file_name: upload.filename,
        };
        let content = tokio::fs::File::from_std(upload.content);
        Ok(UploadJob::new(
            service(ctx)?
                .create_upload_job(&rc.org, new, content)
                .await
                .gql()?,
        ))
    }

    /// Revokes coupons of a series by code (at most 1,000 per call). A revoked coupon stays in
    /// the inventory as `REVOKED`, no longer counts towards `numUploadedTotal` or `maxCreate`,
    /// and still blocks its code from being uploaded again in the org. Codes the series does
    /// not have are reported in `unknownCodes`, not an error. Needs a READ_WRITE key.
    async fn revoke_coupons(
        &self,
        ctx: &Context<'_>,
        coupon_series_id: ID,
        codes: Vec<String>,
    ) -> Result<super::types::RevokeResult> {
        let rc = request_ctx(ctx)?;
        let id = parse_id("couponSeriesId", &coupon_series_id).gql()?;
        Ok(super::types::RevokeResult(
            service(ctx)?
                .revoke_coupons(&rc.org, id, &codes)
                .await
                .gql()?,
        ))
    }

    /// Cancels an upload job: a job not yet started ends `CANCELLED` at once; one in progress
    /// stops at its next batch, keeping what it committed. Needs a READ_WRITE key.
    async fn cancel_upload_job(&self, ctx: &Context<'_>, job_id: ID) -> Result<UploadJob> {
        let rc = request_ctx(ctx)?;
        let id = parse_id("jobId", &job_id).gql()?;
        Ok(UploadJob::new(
            service(ctx)?.cancel_upload_job(&rc.org, id).await.gql()?,
        ))
    }
}
