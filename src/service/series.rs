//! Coupon series.

use std::collections::HashMap;

use super::{Page, Service, org_of};
use crate::domain::{ClientHandlingType, OrgContext, now};
use crate::entity::{coupon_series, org};
use crate::error::{AppError, AppResult};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

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

/// `createCouponSeries`' input, checked by [`Service::create_coupon_series`].
#[derive(Clone, Debug)]
pub struct NewCouponSeries {
    pub name: String,
    pub description: String,
    pub max_create: i64,
    pub allow_multiple_per_customer: bool,
    pub code_max_length: i32,
}

/// `updateCouponSeries`' input: only the given fields change.
#[derive(Clone, Debug, Default)]
pub struct CouponSeriesChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub max_create: Option<i64>,
    pub allow_multiple_per_customer: Option<bool>,
    pub code_max_length: Option<i32>,
}

/// The longest coupon code a series may allow.
pub const MAX_CODE_LENGTH: i32 = 255;

fn check_name(name: &str) -> AppResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(AppError::BadUserInput(
            "name must be 1 to 200 characters, without control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

fn check_description(d: &str) -> AppResult<String> {
    if d.chars().count() > 2000 || d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(AppError::BadUserInput(
            "description must be at most 2000 characters, without control characters".into(),
        ));
    }
    Ok(d.to_owned())
}

fn check_max_create(n: i64) -> AppResult<i64> {
    if n < -1 {
        return Err(AppError::BadUserInput(
            "maxCreate must be -1 (unlimited) or at least 0".into(),
        ));
    }
    Ok(n)
}

fn check_code_max_length(n: i32) -> AppResult<i32> {
    if !(1..=MAX_CODE_LENGTH).contains(&n) {
        return Err(AppError::BadUserInput(format!(
            "codeMaxLength must be between 1 and {MAX_CODE_LENGTH}"
        )));
    }
    Ok(n)
}

impl Service {
    pub async fn create_coupon_series(
        &self,
        org: &OrgContext,
        input: NewCouponSeries,
    ) -> AppResult<coupon_series::Model> {
        org.require_write()?;
        let at = now();
        let txn = self.begin_write().await?;
        // The org exists: its key does. (Kept as a guard for keys whose org row was removed.)
        if org::Entity::find_by_id(org.org_id)
            .one(&*txn)
            .await?
            .is_none()
        {
            return Err(AppError::Unauthenticated(
                "the API key's org no longer exists".into(),
            ));
        }
        let model = coupon_series::ActiveModel {
            org_id: Set(org.org_id),
            name: Set(check_name(&input.name)?),
            description: Set(check_description(&input.description)?),
            client_handling_type: Set(ClientHandlingType::DiscCodePin),
            max_create: Set(check_max_create(input.max_create)?),
            allow_multiple_per_customer: Set(input.allow_multiple_per_customer),
            code_max_length: Set(check_code_max_length(input.code_max_length)?),
            num_uploaded_total: Set(0),
            created_on: Set(at),
            updated_on: Set(at),
            ..Default::default()
        }
        .insert(&*txn)
        .await?;
        txn.commit().await?;
        Ok(model)
    }

    /// Changes the given fields. `maxCreate` cannot go below the coupons already uploaded.
    pub async fn update_coupon_series(
        &self,
        org: &OrgContext,
        id: i64,
        changes: CouponSeriesChanges,
    ) -> AppResult<coupon_series::Model> {
        org.require_write()?;
        let current = self
            .coupon_series(org, id)
            .await?
            .ok_or_else(|| AppError::not_found("coupon series", id))?;
        let mut a: coupon_series::ActiveModel = current.clone().into();
        if let Some(n) = changes.name {
            a.name = Set(check_name(&n)?);
        }
        if let Some(d) = changes.description {
            a.description = Set(check_description(&d)?);
        }
        if let Some(m) = changes.max_create {
            let m = check_max_create(m)?;
            if m >= 0 && m < current.num_uploaded_total {
                return Err(AppError::BadUserInput(format!(
                    "maxCreate cannot be below the {} coupons already uploaded",
                    current.num_uploaded_total
                )));
            }
            a.max_create = Set(m);
        }
        if let Some(b) = changes.allow_multiple_per_customer {
            a.allow_multiple_per_customer = Set(b);
        }
        if let Some(l) = changes.code_max_length {
            a.code_max_length = Set(check_code_max_length(l)?);
        }
        a.updated_on = Set(now());
        // `current` was read within the caller's org, so this row is theirs. The update is
        // guarded against coupons committed since it was read: a worker commits under the
        // series' row lock and re-reads `maxCreate` there, so either it sees the new limit or
        // this sees its coupons.
        let mut update = coupon_series::Entity::update_many()
            .set(a)
            .filter(coupon_series::Column::Id.eq(id))
            .filter(coupon_series::Column::OrgId.eq(current.org_id));
        if let Some(m) = changes.max_create.filter(|&m| m >= 0) {
            update = update.filter(coupon_series::Column::NumUploadedTotal.lte(m));
        }
        let turn = self.write_turn().await;
        let updated = update.exec(&self.db).await?.rows_affected;
        drop(turn);
        if updated == 0 {
            let now_uploaded = self
                .coupon_series(org, id)
                .await?
                .map_or(0, |s| s.num_uploaded_total);
            return Err(AppError::BadUserInput(format!(
                "maxCreate cannot be below the {now_uploaded} coupons already uploaded"
            )));
        }
        self.coupon_series(org, id)
            .await?
            .ok_or_else(|| AppError::not_found("coupon series", id))
    }
}
