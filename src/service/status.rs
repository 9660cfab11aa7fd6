//! Upload jobs and their status: what `uploadStatus` and `getUploadStatus` answer.

use super::{Page, Service, org_of};
use crate::domain::{OrgContext, UploadJobStatus};
use crate::entity::{coupon_series, upload_job};
use crate::error::{AppError, AppResult};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

/// The status of one coupon series' uploads: the series (checked to be the caller's), whose
/// jobs are then read page by page with [`Service::upload_jobs`].
#[derive(Clone, Debug)]
pub struct UploadStatus {
    pub org_id: i64,
    pub series: coupon_series::Model,
}

impl Service {
    /// `NOT_FOUND` unless the series exists in the caller's org.
    pub async fn upload_status(
        &self,
        org: &OrgContext,
        coupon_series_id: i64,
    ) -> AppResult<UploadStatus> {
        let series = self
            .coupon_series(org, coupon_series_id)
            .await?
            .ok_or_else(|| AppError::not_found("coupon series", coupon_series_id))?;
        Ok(UploadStatus {
            org_id: org.org_id,
            series,
        })
    }

    /// The series' jobs, newest first, optionally only those in `statuses`.
    pub async fn upload_jobs(
        &self,
        org: &OrgContext,
        coupon_series_id: i64,
        statuses: Option<&[UploadJobStatus]>,
        page: Page,
    ) -> AppResult<Vec<upload_job::Model>> {
        let mut q = upload_job::Entity::find()
            .filter(upload_job::Column::OrgId.eq(org_of(org)))
            .filter(upload_job::Column::CouponSeriesId.eq(coupon_series_id));
        if let Some(statuses) = statuses {
            q = q.filter(
                upload_job::Column::UploadStatus.is_in(statuses.iter().map(|s| s.as_str())),
            );
        }
        if let Some(after) = page.after {
            q = q.filter(upload_job::Column::Id.lt(after));
        }
        Ok(q.order_by_desc(upload_job::Column::Id)
            .limit(page.first)
            .all(&self.db)
            .await?)
    }

    /// One job of the caller's org.
    pub async fn upload_job(
        &self,
        org: &OrgContext,
        job_id: i64,
    ) -> AppResult<Option<upload_job::Model>> {
        Ok(upload_job::Entity::find_by_id(job_id)
            .filter(upload_job::Column::OrgId.eq(org_of(org)))
            .one(&self.db)
            .await?)
    }
}
