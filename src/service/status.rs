//! Upload jobs and their status: what `uploadStatus` and `getUploadStatus` answer.

use std::sync::LazyLock;

use super::status_page::{Found, JobWithAudience, StatusPage, UploadStatus};
use super::{Page, Service, org_of};
use crate::domain::{OrgContext, UploadJobStatus};
use crate::entity::{audience_group, audience_group_version, coupon_series, upload_job};
use crate::error::{AppError, AppResult};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, Iterable, QueryFilter, QueryOrder,
    QuerySelect, Value,
};

/// `"t"."col" AS "p_col", …` for every column of an entity.
fn columns<E: EntityTrait>(table: &str, prefix: &str) -> String {
    use sea_orm::IdenStatic;
    E::Column::iter()
        .map(|c| {
            let c = c.as_str();
            format!("{table}.\"{c}\" AS \"{prefix}{c}\"")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The select list of [`Service::upload_status_page`] on SQLite (PostgreSQL's status lane has
/// its own, by position): the series, the job, and the job's group and version, in one row per
/// job. Built once.
static STATUS_PAGE_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    [
        columns::<coupon_series::Entity>("s", "s_"),
        // The jobs' columns keep their names: decoding a prefixed column formats its name, and
        // jobs are most of the rows' columns.
        columns::<upload_job::Entity>("j", ""),
        columns::<audience_group::Entity>("g", "g_"),
        columns::<audience_group_version::Entity>("v", "v_"),
    ]
    .join(", ")
});

impl Service {
    /// `uploadStatus` in one statement: the series (`NOT_FOUND` unless it is the caller's), a
    /// page of its jobs newest first (only those in `statuses`, if given), and, with
    /// `audience`, each job's audience group and version.
    pub async fn upload_status_page(
        &self,
        org: &OrgContext,
        coupon_series_id: i64,
        statuses: Option<&[UploadJobStatus]>,
        page: Page,
        audience: bool,
    ) -> AppResult<StatusPage> {
        let found = if self.db.get_database_backend() == sea_orm::DbBackend::Postgres {
            let lane = self.status_lane.get_or_init(|| {
                super::status_lane::StatusLane::start(
                    self.db.get_postgres_connection_pool().clone(),
                    self.statements.clone(),
                )
            });
            let ask = super::status_lane::PageAsk {
                coupon_series_id,
                org_id: org_of(org),
                after: page.after,
                limit: page.first as i64,
                statuses: statuses
                    .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")),
                audience,
            };
            lane.read(ask).await?
        } else {
            self.status_page_rows(org, coupon_series_id, statuses, page, audience)
                .await?
        };
        let (series, jobs) =
            found.ok_or_else(|| AppError::not_found("coupon series", coupon_series_id))?;
        Ok(StatusPage {
            status: UploadStatus {
                org_id: org.org_id,
                series,
            },
            jobs,
        })
    }

    /// [`Self::upload_status_page`] in one statement of its own, decoded by column name
    /// (SQLite).
    async fn status_page_rows(
        &self,
        org: &OrgContext,
        coupon_series_id: i64,
        statuses: Option<&[UploadJobStatus]>,
        page: Page,
        audience: bool,
    ) -> AppResult<Found> {
        let mut values: Vec<Value> = vec![coupon_series_id.into(), org_of(org).into()];
        let mut jobs = String::new();
        if let Some(statuses) = statuses {
            let mut list = Vec::with_capacity(statuses.len());
            for s in statuses {
                values.push((*s).into());
                list.push(format!("${}", values.len()));
            }
            if list.is_empty() {
                jobs.push_str(" AND 1 = 0");
            } else {
                jobs.push_str(&format!(" AND j.upload_status IN ({})", list.join(", ")));
            }
        }
        if let Some(after) = page.after {
            values.push(after.into());
            jobs.push_str(&format!(" AND j.id < ${}", values.len()));
        }
        // One row at least, so an empty page still tells whether the series exists.
        let audience = if audience { "1 = 1" } else { "1 = 0" };
        let sql = format!(
            "SELECT {columns} FROM coupon_series s \
             LEFT JOIN upload_job j ON j.org_id = s.org_id AND j.coupon_series_id = s.id{jobs} \
             LEFT JOIN audience_group g ON {audience} AND g.id = j.audience_group_id AND g.org_id = s.org_id \
             LEFT JOIN audience_group_version v ON {audience} AND v.id = j.audience_group_version_id AND v.org_id = s.org_id \
             WHERE s.id = $1 AND s.org_id = $2 ORDER BY j.id DESC LIMIT {limit}",
            columns = STATUS_PAGE_COLUMNS.as_str(),
            limit = page.first.max(1),
        );
        let rows = self
            .db
            .query_all_raw(crate::db::stmt(
                self.db.get_database_backend(),
                &sql,
                values,
            ))
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let series = coupon_series::Model::from_query_result(first, "s_")?;
        let present = |row: &sea_orm::QueryResult, id: &str| -> AppResult<bool> {
            Ok(row.try_get::<Option<i64>>("", id)?.is_some())
        };
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows.iter().take(page.first as usize) {
            if !present(row, "id")? {
                continue;
            }
            jobs.push(JobWithAudience {
                job: upload_job::Model::from_query_result(row, "")?,
                group: if present(row, "g_id")? {
                    Some(audience_group::Model::from_query_result(row, "g_")?)
                } else {
                    None
                },
                version: if present(row, "v_id")? {
                    Some(audience_group_version::Model::from_query_result(row, "v_")?)
                } else {
                    None
                },
            });
        }
        Ok(Some((series, jobs)))
    }

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
            q = q.filter(upload_job::Column::UploadStatus.is_in(statuses.iter().copied()));
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

    pub async fn upload_jobs_by_ids(
        &self,
        org: &OrgContext,
        ids: &[i64],
    ) -> AppResult<std::collections::HashMap<i64, upload_job::Model>> {
        let rows = upload_job::Entity::find()
            .filter(upload_job::Column::OrgId.eq(org_of(org)))
            .filter(upload_job::Column::Id.is_in(ids.iter().copied()))
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|j| (j.id, j)).collect())
    }
}
