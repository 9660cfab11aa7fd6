use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Object, Result, SimpleObject};

use super::types::{AudienceGroup, CouponSeries, UploadJob, UploadStatus};
use super::{request_ctx, service};
use crate::error::{AppResult, GqlResultExt};
use crate::service::{Page, parse_id};

pub struct QueryRoot;

/// Extra fields of `CouponSeriesConnection`.
#[derive(SimpleObject)]
pub struct SeriesConnectionFields {
    /// All of the caller's coupon series, across pages.
    total_count: u64,
}

const SERIES_CURSOR: &str = "CouponSeries";

fn series_cursor(id: i64) -> String {
    super::cursor(SERIES_CURSOR, id)
}

fn parse_series_cursor(cursor: &str) -> AppResult<i64> {
    super::parse_cursor(SERIES_CURSOR, cursor)
}

#[Object(name = "Query")]
impl QueryRoot {
    /// Where the uploads of a coupon series stand (Capillary's "Get Uploaded Coupons' Status").
    /// `NOT_FOUND` when the series does not exist in the caller's org.
    async fn upload_status(&self, ctx: &Context<'_>, coupon_series_id: ID) -> Result<UploadStatus> {
        let id = parse_id("couponSeriesId", &coupon_series_id).gql()?;
        UploadStatus::load(ctx, id).await
    }

    /// One upload job of the caller's org; null if there is none with this id.
    async fn upload_job(&self, ctx: &Context<'_>, job_id: ID) -> Result<Option<UploadJob>> {
        let rc = request_ctx(ctx)?;
        let id = parse_id("jobId", &job_id).gql()?;
        Ok(service(ctx)?
            .upload_job(&rc.org, id)
            .await
            .gql()?
            .map(UploadJob::new))
    }

    /// One coupon series of the caller's org; null if there is none with this id.
    async fn coupon_series(&self, ctx: &Context<'_>, id: ID) -> Result<Option<CouponSeries>> {
        let rc = request_ctx(ctx)?;
        let id = parse_id("id", &id).gql()?;
        Ok(service(ctx)?
            .coupon_series(&rc.org, id)
            .await
            .gql()?
            .map(CouponSeries))
    }

    /// The caller's coupon series, newest first (Relay connection; `first` default 100, at most 500).
    #[graphql(complexity = "crate::graphql::list_complexity(first, child_complexity)")]
    async fn coupon_series_list(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, CouponSeries, SeriesConnectionFields>> {
        let rc = request_ctx(ctx)?;
        let after = after
            .as_deref()
            .map(parse_series_cursor)
            .transpose()
            .gql()?;
        let page = service(ctx)?
            .coupon_series_page(&rc.org, Page::new(first, after).gql()?)
            .await
            .gql()?;
        let mut conn = Connection::with_additional_fields(
            after.is_some(),
            page.has_next_page,
            SeriesConnectionFields {
                total_count: page.total_count,
            },
        );
        conn.edges.extend(
            page.items
                .into_iter()
                .map(|s| Edge::new(series_cursor(s.id), CouponSeries(s))),
        );
        Ok(conn)
    }

    /// The caller's org's coupon with this code (codes are unique in an org); null if none.
    async fn coupon(
        &self,
        ctx: &Context<'_>,
        code: String,
    ) -> Result<Option<super::types::Coupon>> {
        let rc = request_ctx(ctx)?;
        Ok(service(ctx)?
            .coupon_by_code(&rc.org, &code)
            .await
            .gql()?
            .map(super::types::Coupon))
    }

    /// One audience group of the caller's org; null if there is none with this id.
    async fn audience_group(&self, ctx: &Context<'_>, id: ID) -> Result<Option<AudienceGroup>> {
        let rc = request_ctx(ctx)?;
        let id = parse_id("id", &id).gql()?;
        Ok(service(ctx)?
            .audience_group(&rc.org, id)
            .await
            .gql()?
            .map(AudienceGroup))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn series_cursors_round_trip_and_reject_junk() {
        assert_eq!(
            super::parse_series_cursor(&super::series_cursor(42)).ok(),
            Some(42)
        );
        assert!(super::parse_series_cursor("42").is_err());
        assert!(super::parse_series_cursor("").is_err());
    }
}
