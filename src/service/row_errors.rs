//! A job's row errors in the API: what its error file holds (row number, code, message, the
//! values as written), paged, and counted per code.
//!
//! They are read from the job's staged rows: the purge of an ended job's staged rows keeps its
//! rejected ones, found through partial indexes only error rows pay for (`(job_id,
//! row_number)` and `(job_id, error_code, row_number)`, both `WHERE error_code IS NOT NULL`),
//! so a page costs the same at any offset and a summary costs the job's errors, not its rows.
//! Jobs whose staged rows were purged before rejected rows were kept have their row errors
//! restored once, from their error file, on first use.

use std::collections::HashMap;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect, QueryTrait, Select,
};

use super::{Page, Service};
use crate::domain::{OrgContext, RowErrorCode, UploadJobStatus};
use crate::entity::{upload_job, upload_row};
use crate::error::AppResult;

/// One rejected row, as the error file has it.
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult)]
pub struct RowError {
    pub row_number: i64,
    pub error_code: RowErrorCode,
    pub error_message: Option<String>,
    /// The code cell as written.
    pub coupon_code: String,
    /// The customer cell as written.
    pub customer_identifier: Option<String>,
}

/// One page of a job's row errors, by row number.
pub type RowErrorPage = super::PageOf<RowError>;

/// What reading a job's row errors needs to know of the job (a job read in the caller's org).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JobErrors {
    pub job_id: i64,
    pub org_id: i64,
    /// Rows up to here were judged for good (a cancelled job's error file stops there).
    through: i64,
    /// Its row errors are complete once it has ended (its error file is written then).
    ended: bool,
    error_count: i64,
    error_file_key: Option<String>,
}

impl JobErrors {
    pub fn of(job: &upload_job::Model) -> Self {
        Self {
            job_id: job.id,
            org_id: job.org_id,
            through: job.committed_through,
            ended: !UploadJobStatus::UNFINISHED.contains(&job.upload_status),
            error_count: job.error_count,
            error_file_key: job.error_file_key.clone(),
        }
    }
}

fn ended(job: &JobErrors) -> bool {
    job.ended
}

/// The job's error rows.
fn errors_of(job: &JobErrors, code: Option<RowErrorCode>) -> Select<upload_row::Entity> {
    let mut q = upload_row::Entity::find()
        .filter(upload_row::Column::JobId.eq(job.job_id))
        .filter(upload_row::Column::ErrorCode.is_not_null())
        .filter(upload_row::Column::RowNumber.lte(job.through));
    if let Some(c) = code {
        q = q.filter(upload_row::Column::ErrorCode.eq(c));
    }
    q
}

fn as_row_errors(q: Select<upload_row::Entity>) -> sea_orm::sea_query::SelectStatement {
    q.select_only()
        .column(upload_row::Column::RowNumber)
        .column(upload_row::Column::ErrorCode)
        .column(upload_row::Column::ErrorMessage)
        .column_as(
            Expr::cust("COALESCE(NULLIF(raw_code, ''), code, '')"),
            "coupon_code",
        )
        .column_as(upload_row::Column::RawCustomer, "customer_identifier")
        .into_query()
}

impl Service {
    /// The same page of each (ended) job's row errors, in one statement. `jobs` were read in
    /// the caller's org.
    pub async fn row_errors_of_jobs(
        &self,
        jobs: &[JobErrors],
        code: Option<RowErrorCode>,
        page: Page,
    ) -> AppResult<HashMap<i64, RowErrorPage>> {
        let jobs: Vec<&JobErrors> = jobs.iter().filter(|j| ended(j)).collect();
        let mut pages = self.row_error_pages(&jobs, code, page).await?;
        // A job with errors and an empty page may be one whose rows were all purged.
        let missing: Vec<&JobErrors> = jobs
            .iter()
            .copied()
            .filter(|j| j.error_count > 0 && !pages.contains_key(&j.job_id))
            .collect();
        if self.restore_row_errors(&missing).await? {
            pages.extend(self.row_error_pages(&missing, code, page).await?);
        }
        Ok(pages)
    }

    async fn row_error_pages(
        &self,
        jobs: &[&JobErrors],
        code: Option<RowErrorCode>,
        page: Page,
    ) -> AppResult<HashMap<i64, RowErrorPage>> {
        let branches = jobs
            .iter()
            .map(|j| {
                let mut q = errors_of(j, code);
                if let Some(after) = page.after {
                    q = q.filter(upload_row::Column::RowNumber.gt(after));
                }
                super::union_branch(
                    as_row_errors(q)
                        .expr_as(Expr::val(j.job_id), "job_id")
                        .order_by(upload_row::Column::RowNumber, sea_orm::Order::Asc)
                        .limit(page.first + 1)
                        .to_owned(),
                )
            })
            .collect();
        let mut rows = Vec::new();
        for row in self.union_all(branches).await? {
            let job: i64 = row.try_get("", "job_id")?;
            rows.push((job, RowError::from_query_result(&row, "")?));
        }
        Ok(super::pages_by_owner(rows, page.first, |e| e.row_number))
    }

    /// Each (ended) job's count of rejected rows per error code, in one statement, codes in
    /// the order `RowErrorCode` lists them.
    pub async fn error_summaries(
        &self,
        org: &OrgContext,
        jobs: &[JobErrors],
    ) -> AppResult<HashMap<i64, Vec<(RowErrorCode, i64)>>> {
        let jobs: Vec<&JobErrors> = jobs
            .iter()
            .filter(|j| ended(j) && j.org_id == org.org_id)
            .collect();
        let mut out = self.summaries(&jobs).await?;
        // A job with errors and none found may be one whose rows were all purged.
        let missing: Vec<&JobErrors> = jobs
            .iter()
            .copied()
            .filter(|j| j.error_count > 0 && !out.contains_key(&j.job_id))
            .collect();
        if self.restore_row_errors(&missing).await? {
            out.extend(self.summaries(&missing).await?);
        }
        Ok(out)
    }

    async fn summaries(
        &self,
        jobs: &[&JobErrors],
    ) -> AppResult<HashMap<i64, Vec<(RowErrorCode, i64)>>> {
        let branches = jobs
            .iter()
            .map(|j| {
                errors_of(j, None)
                    .select_only()
                    .column_as(Expr::val(j.job_id), "job_id")
                    .column(upload_row::Column::ErrorCode)
                    .column_as(Expr::cust("COUNT(*)"), "n")
                    .group_by(upload_row::Column::ErrorCode)
                    .into_query()
            })
            .collect();
        let mut out: HashMap<i64, Vec<(RowErrorCode, i64)>> = HashMap::new();
        for row in self.union_all(branches).await? {
            let job: i64 = row.try_get("", "job_id")?;
            let code: RowErrorCode = row.try_get("", "error_code")?;
            let n: i64 = row.try_get("", "n")?;
            out.entry(job).or_default().push((code, n));
        }
        for counts in out.values_mut() {
            counts.sort_by_key(|(c, _)| RowErrorCode::ALL.iter().position(|x| x == c));
        }
        Ok(out)
    }

    /// Each of `jobs` (ended with errors, none of which were found) that has no error rows at
    /// all had its staged rows purged before rejected rows were kept: it gets them back from its
    /// error file (once: afterwards they are there). `true` if any job got rows back.
    async fn restore_row_errors(&self, jobs: &[&JobErrors]) -> AppResult<bool> {
        let mut restored = false;
        for job in jobs {
            restored |= self.restore_job_row_errors(job).await?;
        }
        Ok(restored)
    }

    async fn restore_job_row_errors(&self, job: &JobErrors) -> AppResult<bool> {
        let Some(key) = job.error_file_key.as_deref() else {
            return Ok(false);
        };
        let any = upload_row::Entity::find()
            .select_only()
            .column(upload_row::Column::RowNumber)
            .filter(upload_row::Column::JobId.eq(job.job_id))
            .filter(upload_row::Column::ErrorCode.is_not_null())
            .limit(1)
            .into_tuple::<i64>()
            .one(&self.db)
            .await?;
        if any.is_some() {
            return Ok(false);
        }
        let Some(file) = self.storage.open(key).await? else {
            return Ok(false);
        };
        use futures_util::TryStreamExt;
        let bytes: Vec<u8> = file
            .stream
            .map_ok(|b| b.to_vec())
            .try_concat()
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("reading {key}")))?;
        let mut rows = Vec::new();
        for record in csv::Reader::from_reader(bytes.as_slice()).records() {
            let r = record.map_err(|e| anyhow::Error::new(e).context(format!("parsing {key}")))?;
            let (Some(n), Some(code)) = (
                r.get(0).and_then(|n| n.parse::<i64>().ok()),
                r.get(1).and_then(RowErrorCode::parse),
            ) else {
                continue;
            };
            rows.push(upload_row::ActiveModel {
                job_id: sea_orm::Set(job.job_id),
                row_number: sea_orm::Set(n),
                raw_code: sea_orm::Set(r.get(3).unwrap_or_default().to_owned()),
                raw_customer: sea_orm::Set(r.get(4).filter(|c| !c.is_empty()).map(str::to_owned)),
                code: sea_orm::Set(None),
                customer: sea_orm::Set(None),
                error_code: sea_orm::Set(Some(code)),
                error_message: sea_orm::Set(r.get(2).map(str::to_owned)),
                maybe_duplicate: sea_orm::Set(None),
            });
        }
        let txn = self.begin_write().await?;
        for chunk in rows.chunks(500) {
            upload_row::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    sea_orm::sea_query::OnConflict::columns([
                        upload_row::Column::JobId,
                        upload_row::Column::RowNumber,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&*txn)
                .await?;
        }
        txn.commit().await?;
        tracing::info!(
            job_id = job.job_id,
            rows = rows.len(),
            "row errors restored from the error file"
        );
        Ok(!rows.is_empty())
    }
}
