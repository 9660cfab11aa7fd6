//! Coupons as data: find a code, page a series' or a job's coupons (keyset on `id`), count
//! them, and revoke codes.
//!
//! A series' coupons are paged on the `(coupon_series_id, id)` index, revoked ones on its
//! partial twin; a job's coupons are the block of ids its rows were given (`coupon_id_base +
//! row_number`), a range of the primary key. So a page costs the same at any offset and in an
//! org of any size. Pages of many jobs at once (a status page's `coupons`) are one statement:
//! one `LIMIT`ed branch per job, `UNION ALL`.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Select,
};

use super::{Page, Service, org_of};
use crate::domain::{CouponStatus, OrgContext, now};
use crate::entity::{audience_group, audience_group_version, coupon, coupon_series, upload_job};
use crate::error::{AppError, AppResult};
use crate::ingest::rules::CouponCode;

/// The most codes one `revokeCoupons` call may name.
const MAX_REVOKE_CODES: usize = 1_000;

/// What a page of coupons is narrowed to; every field optional, all given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CouponFilter {
    /// Codes that start with this (case-sensitive, as codes are).
    pub code_prefix: Option<String>,
    pub customer_identifier: Option<String>,
    pub status: Option<CouponStatus>,
    pub upload_job_id: Option<i64>,
}

impl CouponFilter {
    /// Checks what a client sent: a prefix is held to the characters a code may have.
    pub fn checked(self) -> AppResult<Self> {
        if let Some(p) = &self.code_prefix
            && !p.is_empty()
        {
            checked_code("codePrefix", p)?;
        }
        if let Some(c) = &self.customer_identifier
            && (c.is_empty() || c.len() > 320 || c.chars().any(char::is_control))
        {
            return Err(AppError::BadUserInput(
                "customerIdentifier must be 1 to 320 characters without control characters".into(),
            ));
        }
        Ok(self)
    }

    fn apply(&self, mut q: Select<coupon::Entity>) -> Select<coupon::Entity> {
        if let Some(p) = self.code_prefix.as_ref().filter(|p| !p.is_empty()) {
            // `substr`, not `LIKE`: `_` is a code character and a LIKE wildcard.
            let head = Func::cust("substr")
                .arg(Expr::col((coupon::Entity, coupon::Column::Code)))
                .arg(1)
                .arg(p.chars().count() as i32);
            q = q.filter(Expr::expr(head).eq(p.clone()));
        }
        if let Some(c) = &self.customer_identifier {
            q = q.filter(coupon::Column::CustomerIdentifier.eq(c.clone()));
        }
        if let Some(s) = self.status {
            q = q.filter(coupon::Column::Status.eq(s));
        }
        if let Some(j) = self.upload_job_id {
            q = q.filter(coupon::Column::UploadJobId.eq(j));
        }
        q
    }
}

/// Whose coupons: a series' (already found in the caller's org), or a job's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CouponScope {
    Series(i64),
    Job(JobCoupons),
}

/// A job's coupons: their ids are the job's block, `coupon_id_base + 1 ..= + actual_row_count`
/// (jobs from before blocks were reserved have none, and are found by `upload_job_id` alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JobCoupons {
    pub job_id: i64,
    pub ids: Option<(i64, i64)>,
}

impl JobCoupons {
    pub fn of(job: &upload_job::Model) -> Self {
        Self {
            job_id: job.id,
            ids: job
                .coupon_id_base
                .map(|b| (b + 1, b + Ord::max(job.actual_row_count, 0))),
        }
    }
}

/// One page of coupons, oldest (lowest id) first.
pub type CouponPage = super::PageOf<coupon::Model>;

/// What `revokeCoupons` did.
#[derive(Clone, Debug, Default)]
pub struct Revoked {
    /// Coupons revoked by this call.
    pub revoked: Vec<coupon::Model>,
    /// Codes revoked before (they stay revoked).
    pub already_revoked: Vec<String>,
    /// Codes with no coupon in the series.
    pub unknown: Vec<String>,
}

/// A code a client names: the characters and length a coupon code may have.
fn checked_code(what: &str, raw: &str) -> AppResult<String> {
    if raw.chars().any(char::is_control) {
        return Err(AppError::BadUserInput(format!(
            "{what} contains a control character; a coupon code has only letters, digits, '-' and '_'"
        )));
    }
    CouponCode::parse(raw, super::series::MAX_CODE_LENGTH as usize)
        .map(CouponCode::into_inner)
        .map_err(|e| AppError::BadUserInput(format!("{what}: {}", e.message)))
}

fn scoped(org: &OrgContext, scope: CouponScope, filter: &CouponFilter) -> Select<coupon::Entity> {
    let q = coupon::Entity::find().filter(coupon::Column::OrgId.eq(org_of(org)));
    let q = match scope {
        CouponScope::Series(id) => q.filter(coupon::Column::CouponSeriesId.eq(id)),
        CouponScope::Job(j) => {
            let q = q.filter(coupon::Column::UploadJobId.eq(j.job_id));
            match j.ids {
                Some((from, to)) => q.filter(coupon::Column::Id.between(from, to)),
                None => q,
            }
        }
    };
    filter.apply(q)
}

/// `page` of `q`: after the cursor's id, oldest first, one more than asked (more follow?).
fn page_of(q: Select<coupon::Entity>, page: Page) -> Select<coupon::Entity> {
    let q = match page.after {
        Some(after) => q.filter(coupon::Column::Id.gt(after)),
        None => q,
    };
    q.order_by_asc(coupon::Column::Id).limit(page.first + 1)
}

impl Service {
    /// The caller's org's coupon with this code, if any (codes are unique in an org).
    pub async fn coupon_by_code(
        &self,
        org: &OrgContext,
        code: &str,
    ) -> AppResult<Option<coupon::Model>> {
        let code = checked_code("code", code)?;
        Ok(coupon::Entity::find()
            .filter(coupon::Column::OrgId.eq(org_of(org)))
            .filter(coupon::Column::Code.eq(code))
            .one(&self.db)
            .await?)
    }

    /// The caller's org's coupons with these codes (REST `GET /v2/coupon`).
    pub async fn coupons_by_codes(
        &self,
        org: &OrgContext,
        codes: &[String],
    ) -> AppResult<Vec<coupon::Model>> {
        let codes = checked_codes(codes)?;
        Ok(coupon::Entity::find()
            .filter(coupon::Column::OrgId.eq(org_of(org)))
            .filter(coupon::Column::Code.is_in(codes))
            .order_by_asc(coupon::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// The caller's org's coupons tagged to these customers (in `series`, when given: the
    /// `(coupon_series_id, customer_identifier)` index; else across the org's coupons).
    pub async fn coupons_by_customers(
        &self,
        org: &OrgContext,
        customers: &[String],
        series: Option<i64>,
    ) -> AppResult<Vec<coupon::Model>> {
        for c in customers {
            CouponFilter {
                customer_identifier: Some(c.clone()),
                ..Default::default()
            }
            .checked()?;
        }
        let mut q = coupon::Entity::find()
            .filter(coupon::Column::OrgId.eq(org_of(org)))
            .filter(coupon::Column::CustomerIdentifier.is_in(customers.iter().cloned()));
        if let Some(s) = series {
            q = q.filter(coupon::Column::CouponSeriesId.eq(s));
        }
        Ok(q.order_by_asc(coupon::Column::Id)
            .limit(1_000)
            .all(&self.db)
            .await?)
    }

    /// A page of coupons after the cursor's id, oldest first.
    pub async fn coupons_page(
        &self,
        org: &OrgContext,
        scope: CouponScope,
        filter: &CouponFilter,
        page: Page,
    ) -> AppResult<CouponPage> {
        let items = page_of(scoped(org, scope, filter), page)
            .all(&self.db)
            .await?;
        Ok(CouponPage::of(items, page.first))
    }

    /// How many coupons the scope and filter hold (asked only when `totalCount` is selected).
    pub async fn coupons_count(
        &self,
        org: &OrgContext,
        scope: CouponScope,
        filter: &CouponFilter,
    ) -> AppResult<u64> {
        use sea_orm::PaginatorTrait;
        Ok(scoped(org, scope, filter).count(&self.db).await?)
    }

    /// The same page (`filter`, `page`) of each job's coupons, in one statement.
    pub async fn coupons_of_jobs(
        &self,
        org: &OrgContext,
        jobs: &[JobCoupons],
        filter: &CouponFilter,
        page: Page,
    ) -> AppResult<HashMap<i64, CouponPage>> {
        let branches = jobs
            .iter()
            .map(|j| {
                let q = scoped(org, CouponScope::Job(*j), filter);
                super::union_branch(page_of(q, page).into_query())
            })
            .collect();
        let mut rows = Vec::new();
        for row in self.union_all(branches).await? {
            let c = coupon::Model::from_query_result(&row, "")?;
            if let Some(job) = c.upload_job_id {
                rows.push((job, c));
            }
        }
        Ok(super::pages_by_owner(rows, page.first, |c| c.id))
    }

    /// How many coupons each job holds under `filter`, in one statement.
    pub async fn coupon_counts_of_jobs(
        &self,
        org: &OrgContext,
        jobs: &[JobCoupons],
        filter: &CouponFilter,
    ) -> AppResult<HashMap<i64, u64>> {
        let branches = jobs
            .iter()
            .map(|j| {
                scoped(org, CouponScope::Job(*j), filter)
                    .select_only()
                    .column_as(Expr::val(j.job_id), "job_id")
                    .column_as(Expr::cust("COUNT(*)"), "n")
                    .into_query()
            })
            .collect();
        let mut counts = HashMap::new();
        for row in self.union_all(branches).await? {
            let job: i64 = row.try_get("", "job_id")?;
            let n: i64 = row.try_get("", "n")?;
            counts.insert(job, Ord::max(n, 0) as u64);
        }
        Ok(counts)
    }

    /// Revokes the series' coupons with these codes, in one transaction with the series' count
    /// of active coupons and, if revoked coupons were tagged, a new version of the series'
    /// audience group without their customers (those with no other active coupon). The series
    /// row is locked first, as each commit batch of an upload locks it, so a revoke and an
    /// upload to the same series see each other's counts.
    pub async fn revoke_coupons(
        &self,
        org: &OrgContext,
        series_id: i64,
        codes: &[String],
    ) -> AppResult<Revoked> {
        org.require_write()?;
        if codes.len() > MAX_REVOKE_CODES {
            return Err(AppError::BadUserInput(format!(
                "at most {MAX_REVOKE_CODES} codes may be revoked in one call, got {}",
                codes.len()
            )));
        }
        let codes = checked_codes(codes)?;
        let series = self
            .coupon_series(org, series_id)
            .await?
            .ok_or_else(|| AppError::not_found("coupon series", series_id))?;
        let txn = self.begin_write().await?;
        let backend = txn.get_database_backend();
        txn.query_one_raw(crate::db::stmt(
            backend,
            "UPDATE coupon_series SET max_create = max_create WHERE id = $1 RETURNING id",
            vec![series.id.into()],
        ))
        .await?;
        let found = coupon::Entity::find()
            .filter(coupon::Column::OrgId.eq(series.org_id))
            .filter(coupon::Column::CouponSeriesId.eq(series.id))
            .filter(coupon::Column::Code.is_in(codes.clone()))
            .order_by_asc(coupon::Column::Id)
            .all(&*txn)
            .await?;
        let at = now();
        let (active, revoked_before): (Vec<_>, Vec<_>) = found
            .into_iter()
            .partition(|c| c.status == CouponStatus::Active);
        if !active.is_empty() {
            coupon::Entity::update_many()
                .col_expr(coupon::Column::Status, CouponStatus::Revoked.into())
                .col_expr(coupon::Column::RevokedOn, Some(at).into())
                .filter(coupon::Column::Id.is_in(active.iter().map(|c| c.id)))
                .exec(&*txn)
                .await?;
            coupon_series::Entity::update_many()
                .col_expr(
                    coupon_series::Column::NumUploadedTotal,
                    Expr::col(coupon_series::Column::NumUploadedTotal).sub(active.len() as i64),
                )
                .col_expr(coupon_series::Column::UpdatedOn, at.into())
                .filter(coupon_series::Column::Id.eq(series.id))
                .exec(&*txn)
                .await?;
            if active.iter().any(|c| c.customer_identifier.is_some()) {
                new_audience_version(&txn, series.id, at).await?;
            }
        }
        txn.commit().await?;
        let known: std::collections::HashSet<&str> = active
            .iter()
            .chain(&revoked_before)
            .map(|c| c.code.as_str())
            .collect();
        let mut seen = std::collections::HashSet::new();
        let unknown = codes
            .iter()
            .filter(|c| !known.contains(c.as_str()) && seen.insert(c.as_str()))
            .cloned()
            .collect();
        let revoked = active
            .into_iter()
            .map(|mut c| {
                c.status = CouponStatus::Revoked;
                c.revoked_on = Some(at);
                c
            })
            .collect();
        Ok(Revoked {
            revoked,
            already_revoked: revoked_before.into_iter().map(|c| c.code).collect(),
            unknown,
        })
    }
}

fn checked_codes(codes: &[String]) -> AppResult<Vec<String>> {
    codes
        .iter()
        .enumerate()
        .map(|(i, c)| checked_code(&format!("codes[{i}]"), c))
        .collect()
}

/// The series' audience group gets a version counting the customers that still hold an active
/// coupon of the series.
async fn new_audience_version(
    txn: &crate::db::WriteTxn,
    series_id: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> AppResult<()> {
    use sea_orm::{ActiveModelTrait, Set};
    let Some(group) = audience_group::Entity::find()
        .filter(audience_group::Column::CouponSeriesId.eq(series_id))
        .one(&**txn)
        .await?
    else {
        return Ok(());
    };
    let customers = coupon::Entity::find()
        .select_only()
        .column_as(Expr::cust("COUNT(DISTINCT customer_identifier)"), "n")
        .filter(coupon::Column::CouponSeriesId.eq(series_id))
        .filter(coupon::Column::CustomerIdentifier.is_not_null())
        .filter(coupon::Column::Status.eq(CouponStatus::Active))
        .into_tuple::<i64>()
        .one(&**txn)
        .await?
        .unwrap_or(0);
    let number = group.latest_version_number + 1;
    audience_group_version::ActiveModel {
        org_id: Set(group.org_id),
        audience_group_id: Set(group.id),
        version_number: Set(number),
        customer_count: Set(customers),
        status: Set(crate::domain::AudienceGroupStatus::Active),
        upload_job_id: Set(None),
        created_on: Set(at),
        ..Default::default()
    }
    .insert(&**txn)
    .await?;
    let mut g: audience_group::ActiveModel = group.into();
    g.latest_version_number = Set(number);
    g.customer_count = Set(customers);
    g.updated_on = Set(at);
    g.update(&**txn).await?;
    Ok(())
}
