//! Coupon series.

use std::collections::HashMap;

use super::{Page, Service, org_of};
use crate::domain::OrgContext;
use crate::entity::coupon_series;
use crate::error::AppResult;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

/// One page of the caller's series, newest first.
#[derive(Clone, Debug)]
pub struct SeriesPage {
    pub items: Vec<coupon_series::Model>,
    pub has_next_page: bool,
    pub total_count: u64,
}

impl Service {
    pub async fn coupon_series(
        &self,
        org: &OrgContext,
        id: i64,
    ) -> AppResult<Option<coupon_series::Model>> {
        Ok(coupon_series::Entity::find_by_id(id)
            .filter(coupon_series::Column::OrgId.eq(org_of(org)))
            .one(&self.db)
            .await?)
    }

    pub async fn coupon_series_by_ids(
        &self,
        org: &OrgContext,
        ids: &[i64],
    ) -> AppResult<HashMap<i64, coupon_series::Model>> {
        let rows = coupon_series::Entity::find()
            .filter(coupon_series::Column::OrgId.eq(org_of(org)))
            .filter(coupon_series::Column::Id.is_in(ids.iter().copied()))
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|s| (s.id, s)).collect())
    }

    pub async fn coupon_series_page(&self, org: &OrgContext, page: Page) -> AppResult<SeriesPage> {
        let base =
            coupon_series::Entity::find().filter(coupon_series::Column::OrgId.eq(org_of(org)));
        let total_count = base.clone().count(&self.db).await?;
        let mut q = base;
        if let Some(after) = page.after {
            q = q.filter(coupon_series::Column::Id.lt(after));
        }
        // One extra row tells whether there is a next page.
        let mut items = q
            .order_by_desc(coupon_series::Column::Id)
            .limit(page.first + 1)
            .all(&self.db)
            .await?;
        let has_next_page = items.len() as u64 > page.first;
        items.truncate(page.first as usize);
        Ok(SeriesPage {
            items,
            has_next_page,
            total_count,
        })
    }
}
