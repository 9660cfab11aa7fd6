//! Audience groups and their versions, formed by tagged uploads.

use std::collections::HashMap;

use super::{Service, org_of};
use crate::domain::OrgContext;
use crate::entity::{audience_group, audience_group_version};
use crate::error::{AppError, AppResult};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

/// Versions in one page of a group's versions when a client does not say (`versions(first:)`).
pub const DEFAULT_VERSIONS_PAGE: i32 = 10;
/// The most versions one page may hold; also how many of each group's newest versions are
/// read for a page of groups at once.
pub const MAX_VERSIONS_PAGE: i32 = 100;

/// Checks `versions(first:)`.
pub fn versions_page(first: i32) -> AppResult<u64> {
    if (0..=MAX_VERSIONS_PAGE).contains(&first) {
        Ok(first as u64)
    } else {
        Err(AppError::BadUserInput(format!(
            "`first` must be between 0 and {MAX_VERSIONS_PAGE}, got {first}"
        )))
    }
}

impl Service {
    pub async fn audience_group(
        &self,
        org: &OrgContext,
        id: i64,
    ) -> AppResult<Option<audience_group::Model>> {
        Ok(audience_group::Entity::find_by_id(id)
            .filter(audience_group::Column::OrgId.eq(org_of(org)))
            .one(&self.db)
            .await?)
    }

    pub async fn audience_groups_by_ids(
        &self,
        org: &OrgContext,
        ids: &[i64],
    ) -> AppResult<HashMap<i64, audience_group::Model>> {
        let rows = audience_group::Entity::find()
            .filter(audience_group::Column::OrgId.eq(org_of(org)))
            .filter(audience_group::Column::Id.is_in(ids.iter().copied()))
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|g| (g.id, g)).collect())
    }

    /// Audience groups by the series that formed them.
    pub async fn audience_groups_by_series_ids(
        &self,
        org: &OrgContext,
        series_ids: &[i64],
    ) -> AppResult<HashMap<i64, audience_group::Model>> {
        let rows = audience_group::Entity::find()
            .filter(audience_group::Column::OrgId.eq(org_of(org)))
            .filter(audience_group::Column::CouponSeriesId.is_in(series_ids.iter().copied()))
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|g| (g.coupon_series_id, g)).collect())
    }

    pub async fn audience_group_versions_by_ids(
        &self,
        org: &OrgContext,
        ids: &[i64],
    ) -> AppResult<HashMap<i64, audience_group_version::Model>> {
        let rows = audience_group_version::Entity::find()
            .filter(audience_group_version::Column::OrgId.eq(org_of(org)))
            .filter(audience_group_version::Column::Id.is_in(ids.iter().copied()))
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|v| (v.id, v)).collect())
    }

    /// Each group's newest [`MAX_VERSIONS_PAGE`] versions, newest (highest `versionNumber`)
    /// first. A group's versions are numbered 1 to its `latest_version_number`, so the newest
    /// are a range of the `(audience_group_id, version_number)` key, whatever the group's age.
    pub async fn audience_group_versions_by_group_ids(
        &self,
        org: &OrgContext,
        group_ids: &[i64],
    ) -> AppResult<HashMap<i64, Vec<audience_group_version::Model>>> {
        let rows = audience_group_version::Entity::find()
            .filter(audience_group_version::Column::OrgId.eq(org_of(org)))
            .filter(
                audience_group_version::Column::AudienceGroupId.is_in(group_ids.iter().copied()),
            )
            .filter(Expr::cust(format!(
                "audience_group_version.version_number > (SELECT g.latest_version_number \
                 FROM audience_group g WHERE g.id = audience_group_version.audience_group_id) \
                 - {MAX_VERSIONS_PAGE}"
            )))
            .order_by_desc(audience_group_version::Column::VersionNumber)
            .all(&self.db)
            .await?;
        let mut by_group: HashMap<i64, Vec<_>> = HashMap::new();
        // (The window above holds every version a page can ask for without `before`.)
        for v in rows {
            by_group.entry(v.audience_group_id).or_default().push(v);
        }
        Ok(by_group)
    }

    /// A page of one group's versions older than `before` (a `versionNumber`), newest first.
    pub async fn audience_group_versions_before(
        &self,
        org: &OrgContext,
        group_id: i64,
        before: i32,
        first: u64,
    ) -> AppResult<Vec<audience_group_version::Model>> {
        Ok(audience_group_version::Entity::find()
            .filter(audience_group_version::Column::OrgId.eq(org_of(org)))
            .filter(audience_group_version::Column::AudienceGroupId.eq(group_id))
            .filter(audience_group_version::Column::VersionNumber.lt(before))
            .order_by_desc(audience_group_version::Column::VersionNumber)
            .limit(first)
            .all(&self.db)
            .await?)
    }
}
