//! Audience groups and their versions, formed by tagged uploads.

use std::collections::HashMap;

use super::{Service, org_of};
use crate::domain::OrgContext;
use crate::entity::{audience_group, audience_group_version};
use crate::error::AppResult;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

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

    /// Each group's versions, newest (highest `versionNumber`) first.
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
            .order_by_desc(audience_group_version::Column::VersionNumber)
            .all(&self.db)
            .await?;
        let mut by_group: HashMap<i64, Vec<_>> = HashMap::new();
        for v in rows {
            by_group.entry(v.audience_group_id).or_default().push(v);
        }
        Ok(by_group)
    }
}
