//! Running one claimed job through its phases (see the module doc of `worker`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    FromQueryResult, QueryFilter, Set, Value,
};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::sql::{self, stmt};
use super::{WorkerConfig, now_ms, stage};
use crate::domain::{
    AudienceGroupStatus, AudienceGroupType, CustomerIdentifierType, UploadJobStatus, now,
};
use crate::entity::{audience_group, audience_group_version, coupon_series, upload_job};
use crate::events::PROGRESS_EVERY;
use crate::ingest::rules::RowErrorCode;
use crate::service::{Service, result_keys};

/// Why a job run stopped before the job ended.
#[derive(Debug)]
pub enum Stop {
    /// The process is shutting down; the lease was released.
    Shutdown,
    /// Another worker holds the job now; nothing more was changed.
    LostLease,
    Internal(anyhow::Error),
}

impl From<sea_orm::DbErr> for Stop {
    fn from(e: sea_orm::DbErr) -> Self {
        Stop::Internal(e.into())
    }
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Internal(e)
    }
}

pub struct JobCtx<'a> {
    pub service: &'a Service,
    pub cfg: &'a WorkerConfig,
    pub job: upload_job::Model,
    pub series: coupon_series::Model,
    pub kind: CustomerIdentifierType,
    pub backend: DbBackend,
    shutdown: &'a CancellationToken,
    lost: Arc<AtomicBool>,
}

impl JobCtx<'_> {
    /// Between steps: stop if the lease was lost or the process is shutting down.
    pub fn check_alive(&self) -> Result<(), Stop> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(Stop::LostLease);
        }
        if self.shutdown.is_cancelled() {
            return Err(Stop::Shutdown);
        }
        Ok(())
    }

    fn lease_until(&self) -> i64 {
        now_ms() + self.cfg.lease.as_millis() as i64
    }

    fn s(&self, sql: &str, values: Vec<Value>) -> sea_orm::Statement {
        stmt(self.backend, sql, values)
    }

    /// The fenced update every phase ends with: `sets` applied only while we hold the lease.
    /// Returns the job as updated, or `LostLease`.
    async fn update_job(
        &self,
        conn: &impl ConnectionTrait,
        sets: &str,
        mut values: Vec<Value>,
    ) -> Result<upload_job::Model, Stop> {
        let n = values.len();
        values.extend([self.job.id.into(), self.cfg.instance.clone().into()]);
        let sql = format!(
            "UPDATE upload_job SET {sets}, updated_on = ${} WHERE id = ${} AND lease_owner = ${} RETURNING *",
            n + 3,
            n + 1,
            n + 2
        );
        values.push(now().into());
        let row = conn
            .query_one_raw(self.s(&sql, values))
            .await?
            .ok_or(Stop::LostLease)?;
        Ok(upload_job::Model::from_query_result(&row, "")?)
    }
}

/// Keeps the lease alive while a job runs; flags `lost` if another worker took it.
fn renew_lease(
    service: Service,
    cfg: WorkerConfig,
    job_id: i64,
    lost: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = cfg.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let db = service.db();
            let r = db
                .execute_raw(stmt(
                    db.get_database_backend(),
                    "UPDATE upload_job SET lease_expires_ms = $1 WHERE id = $2 AND lease_owner = $3",
                    vec![(now_ms() + cfg.lease.as_millis() as i64).into(), job_id.into(), cfg.instance.clone().into()],
                ))
                .await;
            match r {
                Ok(r) if r.rows_affected() == 1 => {}
                Ok(_) => {
                    lost.store(true, Ordering::Relaxed);
                    return;
                }
                Err(e) => tracing::warn!(job_id, error = ?e, "renewing the lease failed; retrying"),
            }
        }
    })
}

pub async fn run(
    service: &Service,
    cfg: &WorkerConfig,
    job: upload_job::Model,
    shutdown: &CancellationToken,
) -> Result<(), Stop> {
    let series = coupon_series::Entity::find_by_id(job.coupon_series_id)
        .one(service.db())
        .await?
        .ok_or_else(|| {
            Stop::Internal(anyhow::anyhow!(
                "series {} of job {} is gone",
                job.coupon_series_id,
                job.id
            ))
        })?;
    let kind = CustomerIdentifierType::parse(&job.customer_identifier).ok_or_else(|| {
        Stop::Internal(anyhow::anyhow!(
            "job {} has identifier {:?}",
            job.id,
            job.customer_identifier
        ))
    })?;
    let lost = Arc::new(AtomicBool::new(false));
    let renewal = renew_lease(service.clone(), cfg.clone(), job.id, lost.clone());
    let mut ctx = JobCtx {
        service,
        cfg,
        job,
        series,
        kind,
        backend: service.db().get_database_backend(),
        shutdown,
        lost,
    };
    let result = drive(&mut ctx).await;
    renewal.abort();
    if let Err(Stop::Shutdown) = &result {
        release(&ctx).await;
    }
    result
}

async fn drive(ctx: &mut JobCtx<'_>) -> Result<(), Stop> {
    if ctx.job.attempts > ctx.cfg.max_attempts {
        let reason = format!(
            "the job could not be processed in {} attempts",
            ctx.cfg.max_attempts
        );
        return fail(ctx, &reason).await;
    }
    loop {
        ctx.check_alive()?;
        match ctx.job.phase.as_str() {
            "STAGE" => match stage::stage(ctx).await? {
                Ok(rows) => {
                    ctx.job.phase = "JUDGE".into();
                    ctx.job.actual_row_count = rows;
                    tracing::info!(job_id = ctx.job.id, rows, "staged");
                }
                Err(file_error) => return fail(ctx, &file_error.to_string()).await,
            },
            "JUDGE" => judge(ctx).await?,
            "COMMIT" => {
                if commit_batches(ctx).await? {
                    return finish(ctx, UploadJobStatus::Cancelled).await;
                }
            }
            "FILES" => return finish(ctx, UploadJobStatus::Finished).await,
            "DONE" => return Ok(()),
            other => {
                return Err(Stop::Internal(anyhow::anyhow!(
                    "job {} has phase {other:?}",
                    ctx.job.id
                )));
            }
        }
    }
}

/// Gives the job back at once (graceful shutdown): it stays `PROCESSING`, free to claim.
async fn release(ctx: &JobCtx<'_>) {
    let db = ctx.service.db();
    let r = db
        .execute_raw(ctx.s(
            "UPDATE upload_job SET lease_owner = NULL, lease_expires_ms = NULL WHERE id = $1 AND lease_owner = $2",
            vec![ctx.job.id.into(), ctx.cfg.instance.clone().into()],
        ))
        .await;
    if let Err(e) = r {
        tracing::warn!(job_id = ctx.job.id, error = ?e, "releasing the lease failed; it will lapse");
    }
}

/// Phase `JUDGE`: the set rules, in SQL, in one transaction with the move to `COMMIT`.
async fn judge(ctx: &mut JobCtx<'_>) -> Result<(), Stop> {
    if ctx.backend == DbBackend::Postgres {
        // Fresh statistics for the rows just staged: without them the planner takes the job's
        // rows for a handful and picks nested loops that are quadratic in the file's size.
        ctx.service
            .db()
            .execute_unprepared("ANALYZE upload_row")
            .await?;
    }
    reserve_coupon_ids(ctx).await?;
    let txn = crate::db::begin_write(ctx.service.db()).await?;
    let id: Value = ctx.job.id.into();
    let msg = |c: RowErrorCode| -> Value { c.default_message().to_owned().into() };
    txn.execute_raw(ctx.s(
        sql::DUPLICATE_CODES,
        vec![id.clone(), msg(RowErrorCode::DuplicateCodeInFile)],
    ))
    .await?;
    txn.execute_raw(ctx.s(
        sql::EXISTING_CODES,
        vec![
            id.clone(),
            ctx.job.org_id.into(),
            msg(RowErrorCode::CodeAlreadyExists),
        ],
    ))
    .await?;
    // The series as it is now, inside the transaction: its counter and rules.
    let series = coupon_series::Entity::find_by_id(ctx.series.id)
        .one(&txn)
        .await?
        .ok_or_else(|| Stop::Internal(anyhow::anyhow!("series {} is gone", ctx.series.id)))?;
    if ctx.kind != CustomerIdentifierType::NotTagged && !series.allow_multiple_per_customer {
        txn.execute_raw(ctx.s(
            sql::CUSTOMERS_WITH_COUPON,
            vec![
                id.clone(),
                series.id.into(),
                ctx.kind.as_str().into(),
                msg(RowErrorCode::DuplicateCustomer),
            ],
        ))
        .await?;
        txn.execute_raw(ctx.s(
            sql::REPEATED_CUSTOMERS,
            vec![id.clone(), msg(RowErrorCode::DuplicateCustomer)],
        ))
        .await?;
    }
    if series.max_create >= 0 {
        let room = (series.max_create - series.num_uploaded_total).max(0);
        txn.execute_raw(ctx.s(
            sql::OVER_MAX_CREATE,
            vec![
                id.clone(),
                room.into(),
                msg(RowErrorCode::MaxCreateExceeded),
            ],
        ))
        .await?;
    }
    let job = ctx.update_job(&txn, "phase = 'COMMIT'", vec![]).await?;
    txn.commit().await?;
    ctx.series = series;
    ctx.job = job;
    tracing::info!(job_id = ctx.job.id, "judged");
    Ok(())
}

/// The job's coupon ids: a block as long as the file, reserved once (before judging), so that
/// accepted row `n` becomes coupon `coupon_id_base + n` whoever commits it and however often the
/// job resumes. Other inserts into `coupon` keep using the id sequence, which is moved past the
/// block while they are locked out (PostgreSQL) or under the write lock (SQLite).
async fn reserve_coupon_ids(ctx: &mut JobCtx<'_>) -> Result<i64, Stop> {
    if let Some(base) = ctx.job.coupon_id_base {
        return Ok(base);
    }
    let rows = ctx.job.actual_row_count.max(0);
    let txn = crate::db::begin_write(ctx.service.db()).await?;
    let base: i64 = if ctx.backend == DbBackend::Postgres {
        // SHARE ROW EXCLUSIVE conflicts with itself and with every INSERT, so no other id is
        // drawn between reading the sequence and moving it.
        txn.execute_unprepared("LOCK TABLE coupon IN SHARE ROW EXCLUSIVE MODE")
            .await?;
        let row = txn
            .query_one_raw(ctx.s(
                "SELECT nextval(pg_get_serial_sequence('coupon', 'id')) - 1 AS base",
                vec![],
            ))
            .await?
            .ok_or_else(|| Stop::Internal(anyhow::anyhow!("nextval returned no row")))?;
        let base: i64 = row.try_get("", "base")?;
        if rows > 1 {
            txn.execute_raw(ctx.s(
                "SELECT setval(pg_get_serial_sequence('coupon', 'id'), $1)",
                vec![(base + rows).into()],
            ))
            .await?;
        }
        base
    } else {
        // AUTOINCREMENT: new ids start past both `sqlite_sequence` and the largest id.
        let row = txn
            .query_one_raw(ctx.s(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'coupon'), 0), \
                 COALESCE((SELECT MAX(id) FROM coupon), 0)) AS base",
                vec![],
            ))
            .await?
            .ok_or_else(|| Stop::Internal(anyhow::anyhow!("no sequence row")))?;
        let base: i64 = row.try_get("", "base")?;
        let moved = txn
            .execute_raw(ctx.s(
                "UPDATE sqlite_sequence SET seq = $1 WHERE name = 'coupon'",
                vec![(base + rows).into()],
            ))
            .await?;
        if moved.rows_affected() == 0 {
            txn.execute_raw(ctx.s(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('coupon', $1)",
                vec![(base + rows).into()],
            ))
            .await?;
        }
        base
    };
    if ctx.job.committed_through > 0 {
        // Judged by a version without id blocks: its committed coupons took sequence ids, which
        // nothing has shown yet (the success file is written last). Move them into the block.
        txn.execute_raw(ctx.s(
            "UPDATE coupon SET id = $1 + row_number WHERE upload_job_id = $2",
            vec![base.into(), ctx.job.id.into()],
        ))
        .await?;
    }
    let job = ctx
        .update_job(&txn, "coupon_id_base = $1", vec![base.into()])
        .await?;
    txn.commit().await?;
    ctx.job = job;
    Ok(base)
}

/// Phase `COMMIT`: batch after batch from the checkpoint. Returns `true` when the job was
/// cancelled (it stops at a batch boundary with everything before it committed).
async fn commit_batches(ctx: &mut JobCtx<'_>) -> Result<bool, Stop> {
    let total = ctx.job.actual_row_count;
    reserve_coupon_ids(ctx).await?;
    let mut cancel = reload(ctx).await?.cancel_requested;
    let mut last_event = std::time::Instant::now();
    while ctx.job.committed_through < total {
        if cancel {
            return Ok(true);
        }
        ctx.check_alive()?;
        let from = ctx.job.committed_through + 1;
        let to = (ctx.job.committed_through + ctx.cfg.batch_rows.max(1)).min(total);
        let txn = crate::db::begin_write(ctx.service.db()).await?;
        let (job, accepted) = commit_batch(ctx, &txn, from, to).await?;
        txn.commit().await?;
        let _ = accepted;
        cancel = job.cancel_requested;
        ctx.job = job;
        ctx.service
            .metrics()
            .add_rows_processed((to - from + 1) as u64);
        if last_event.elapsed() >= PROGRESS_EVERY {
            ctx.service.events().publish(&ctx.job).await;
            last_event = std::time::Instant::now();
        }
    }
    let job = ctx
        .update_job(ctx.service.db(), "phase = 'FILES'", vec![])
        .await?;
    ctx.job = job;
    Ok(false)
}

async fn commit_batch(
    ctx: &JobCtx<'_>,
    txn: &DatabaseTransaction,
    from: i64,
    to: i64,
) -> Result<(upload_job::Model, i64), Stop> {
    let j = &ctx.job;
    let base = j
        .coupon_id_base
        .ok_or_else(|| Stop::Internal(anyhow::anyhow!("job {} has no coupon ids", j.id)))?;
    let customer_type: Option<String> =
        (ctx.kind != CustomerIdentifierType::NotTagged).then(|| ctx.kind.as_str().to_owned());
    let inserted = txn
        .execute_raw(ctx.s(
            sql::INSERT_COUPONS,
            vec![
                j.id.into(),
                j.org_id.into(),
                j.coupon_series_id.into(),
                from.into(),
                to.into(),
                customer_type.into(),
                now().into(),
                base.into(),
            ],
        ))
        .await?;
    let accepted = inserted.rows_affected() as i64;
    let valid: i64 = txn
        .query_one_raw(ctx.s(sql::VALID_COUNT, vec![j.id.into(), from.into(), to.into()]))
        .await?
        .map(|r| r.try_get("", "n"))
        .transpose()?
        .unwrap_or(0);
    if valid != accepted {
        // Rare: codes another job committed after this one was judged.
        let skipped = txn
            .execute_raw(ctx.s(
                sql::MARK_SKIPPED,
                vec![
                    j.id.into(),
                    from.into(),
                    to.into(),
                    base.into(),
                    RowErrorCode::CodeAlreadyExists
                        .default_message()
                        .to_owned()
                        .into(),
                ],
            ))
            .await?
            .rows_affected();
        tracing::info!(
            job_id = j.id,
            skipped,
            "codes taken by another job meanwhile"
        );
    }
    let rejected = (to - from + 1) - accepted;
    if accepted > 0 {
        txn.execute_raw(ctx.s(
            "UPDATE coupon_series SET num_uploaded_total = num_uploaded_total + $1, updated_on = $2 WHERE id = $3",
            vec![accepted.into(), now().into(), j.coupon_series_id.into()],
        ))
        .await?;
    }
    let job = ctx
        .update_job(
            txn,
            "total_uploaded_count = total_uploaded_count + $1, error_count = error_count + $2, \
             processed_row_count = $3, committed_through = $3, lease_expires_ms = $4",
            vec![
                accepted.into(),
                rejected.into(),
                to.into(),
                ctx.lease_until().into(),
            ],
        )
        .await?;
    Ok((job, accepted))
}

async fn reload(ctx: &JobCtx<'_>) -> Result<upload_job::Model, Stop> {
    upload_job::Entity::find_by_id(ctx.job.id)
        .one(ctx.service.db())
        .await?
        .ok_or_else(|| Stop::Internal(anyhow::anyhow!("job {} is gone", ctx.job.id)))
}

/// The job as a whole cannot run: `ERRORED` with the reason, nothing staged kept.
async fn fail(ctx: &mut JobCtx<'_>, reason: &str) -> Result<(), Stop> {
    let txn = crate::db::begin_write(ctx.service.db()).await?;
    txn.execute_raw(ctx.s(
        "DELETE FROM upload_row WHERE job_id = $1",
        vec![ctx.job.id.into()],
    ))
    .await?;
    let job = ctx
        .update_job(
            &txn,
            "upload_status = 'ERRORED', phase = 'DONE', error_reason = $1, actual_row_count = 0, \
             processed_row_count = 0, finished_on = $2, lease_owner = NULL, lease_expires_ms = NULL",
            vec![reason.to_owned().into(), now().into()],
        )
        .await?;
    txn.commit().await?;
    tracing::info!(job_id = job.id, reason, "errored");
    ctx.service.events().publish(&job).await;
    ctx.job = job;
    Ok(())
}

/// Writes the result files for the committed rows, then ends the job (`FINISHED`, or
/// `CANCELLED`) in one transaction; a finished tagged job adds a version to the series'
/// audience group.
async fn finish(ctx: &mut JobCtx<'_>, status: UploadJobStatus) -> Result<(), Stop> {
    let (error_key, success_key) = result_keys(&ctx.job);
    let through = ctx.job.committed_through;
    // Two queries on two connections: the database reads one file's rows while this process
    // encodes the other's.
    tokio::try_join!(
        write_errors(ctx, &error_key, through),
        write_successes(ctx, &success_key, through)
    )?;
    ctx.check_alive()?;

    let txn = crate::db::begin_write(ctx.service.db()).await?;
    let (mut group_id, mut version_id): (Option<i64>, Option<i64>) = (None, None);
    if status == UploadJobStatus::Finished && ctx.kind != CustomerIdentifierType::NotTagged {
        let n = txn
            .query_one_raw(ctx.s(sql::DISTINCT_CUSTOMERS, vec![ctx.job.id.into()]))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        let (g, v) = add_audience_version(ctx, &txn, n).await?;
        group_id = Some(g);
        version_id = Some(v);
    }
    let job = ctx
        .update_job(
            &txn,
            "upload_status = $1, phase = 'DONE', error_file_key = $2, success_file_key = $3, \
             audience_group_id = $4, audience_group_version_id = $5, finished_on = $6, \
             lease_owner = NULL, lease_expires_ms = NULL",
            vec![
                status.as_str().into(),
                error_key.into(),
                success_key.into(),
                group_id.into(),
                version_id.into(),
                now().into(),
            ],
        )
        .await?;
    txn.commit().await?;
    tracing::info!(
        job_id = job.id,
        status = %job.upload_status,
        rows = job.actual_row_count,
        accepted = job.total_uploaded_count,
        rejected = job.error_count,
        "ended"
    );
    ctx.service.events().publish(&job).await;
    ctx.job = job;
    Ok(())
}

/// The series' audience group (made by its first tagged upload) gains a version.
async fn add_audience_version(
    ctx: &JobCtx<'_>,
    txn: &DatabaseTransaction,
    customers: i64,
) -> Result<(i64, i64), Stop> {
    let at = now();
    let existing = audience_group::Entity::find()
        .filter(audience_group::Column::CouponSeriesId.eq(ctx.series.id))
        .one(txn)
        .await?;
    let group = match existing {
        Some(g) => {
            let number = g.latest_version_number + 1;
            let mut a: audience_group::ActiveModel = g.into();
            a.latest_version_number = Set(number);
            a.customer_count = Set(customers);
            a.updated_on = Set(at);
            a.update(txn).await?
        }
        None => {
            audience_group::ActiveModel {
                org_id: Set(ctx.job.org_id),
                coupon_series_id: Set(ctx.series.id),
                name: Set(format!("{} customers", ctx.series.name)),
                group_type: Set(AudienceGroupType::Upload.as_str().into()),
                status: Set(AudienceGroupStatus::Active.as_str().into()),
                customer_count: Set(customers),
                latest_version_number: Set(1),
                created_on: Set(at),
                updated_on: Set(at),
                ..Default::default()
            }
            .insert(txn)
            .await?
        }
    };
    let version = audience_group_version::ActiveModel {
        org_id: Set(ctx.job.org_id),
        audience_group_id: Set(group.id),
        version_number: Set(group.latest_version_number),
        customer_count: Set(customers),
        status: Set(AudienceGroupStatus::Active.as_str().into()),
        upload_job_id: Set(Some(ctx.job.id)),
        created_on: Set(at),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok((group.id, version.id))
}

/// Rows per query when paging result files out of `upload_row` (SQLite).
const FILE_PAGE: i64 = 10_000;
const ERROR_HEADER: [&str; 5] = [
    "rowNumber",
    "errorCode",
    "errorMessage",
    "couponCode",
    "customerIdentifier",
];
const SUCCESS_HEADER: [&str; 4] = ["rowNumber", "couponId", "couponCode", "customerIdentifier"];

/// PostgreSQL: a result file that the database writes (`COPY … TO STDOUT`), streamed to storage
/// in ~1 MiB pieces; nothing is decoded here.
async fn copy_pg_file(ctx: &JobCtx<'_>, key: &str, copy: String) -> Result<(), Stop> {
    use futures_util::TryStreamExt;
    use sea_orm::sqlx::postgres::PgPoolCopyExt;
    let internal = |e: sea_orm::sqlx::Error| Stop::Internal(e.into());
    let mut out = ctx.service.storage().writer(key)?;
    let pool = ctx.service.db().get_postgres_connection_pool();
    let mut rows = pool.copy_out_raw(&copy).await.map_err(internal)?;
    let mut piece = Vec::with_capacity(1 << 20);
    while let Some(bytes) = rows.try_next().await.map_err(internal)? {
        piece.extend_from_slice(&bytes);
        if piece.len() >= 1 << 20 {
            out.write_all(&piece)
                .await
                .map_err(|e| Stop::Internal(e.into()))?;
            piece.clear();
        }
    }
    drop(rows);
    out.write_all(&piece)
        .await
        .map_err(|e| Stop::Internal(e.into()))?;
    out.shutdown().await.map_err(|e| Stop::Internal(e.into()))?;
    Ok(())
}

async fn write_errors(ctx: &JobCtx<'_>, key: &str, through: i64) -> Result<(), Stop> {
    if ctx.backend == DbBackend::Postgres {
        return copy_pg_file(ctx, key, sql::error_file_copy_pg(ctx.job.id, through)).await;
    }
    let binds = vec![ctx.job.id.into(), through.into()];
    page_file(ctx, key, &ERROR_HEADER, sql::ERROR_ROWS, binds, |r| {
        Ok(vec![
            r.try_get::<i64>("", "row_number")?.to_string(),
            r.try_get("", "error_code")?,
            r.try_get::<Option<String>>("", "error_message")?
                .unwrap_or_default(),
            r.try_get("", "raw_code")?,
            r.try_get::<Option<String>>("", "raw_customer")?
                .unwrap_or_default(),
        ])
    })
    .await
}

async fn write_successes(ctx: &JobCtx<'_>, key: &str, through: i64) -> Result<(), Stop> {
    let base = ctx.job.coupon_id_base.unwrap_or(0);
    if ctx.backend == DbBackend::Postgres {
        let copy = sql::success_file_copy_pg(ctx.job.id, base, through);
        return copy_pg_file(ctx, key, copy).await;
    }
    let binds = vec![ctx.job.id.into(), base.into(), through.into()];
    page_file(ctx, key, &SUCCESS_HEADER, sql::SUCCESS_ROWS, binds, |r| {
        Ok(vec![
            r.try_get::<i64>("", "row_number")?.to_string(),
            r.try_get::<i64>("", "coupon_id")?.to_string(),
            r.try_get("", "code")?,
            r.try_get::<Option<String>>("", "customer")?
                .unwrap_or_default(),
        ])
    })
    .await
}

/// SQLite: a result file page by page (keyset on `row_number`, the record's first column).
/// `sql` binds `binds`, then the row to start after and the page size.
async fn page_file(
    ctx: &JobCtx<'_>,
    key: &str,
    header: &[&str],
    sql: &str,
    binds: Vec<Value>,
    record: impl Fn(&sea_orm::QueryResult) -> Result<Vec<String>, sea_orm::DbErr>,
) -> Result<(), Stop> {
    let mut out = ctx.service.storage().writer(key)?;
    let mut page = csv_page(Some(header))?;
    let mut last = 0i64;
    loop {
        let mut values = binds.clone();
        values.extend([last.into(), FILE_PAGE.into()]);
        let rows = ctx.service.db().query_all_raw(ctx.s(sql, values)).await?;
        for r in &rows {
            last = r.try_get("", "row_number")?;
            page.write_record(record(r)?)
                .map_err(|e| Stop::Internal(e.into()))?;
        }
        flush_page(&mut out, &mut page).await?;
        if (rows.len() as i64) < FILE_PAGE {
            break;
        }
        ctx.check_alive()?;
    }
    out.shutdown().await.map_err(|e| Stop::Internal(e.into()))?;
    Ok(())
}

fn csv_page(header: Option<&[&str]>) -> Result<csv::Writer<Vec<u8>>, Stop> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(1 << 20));
    if let Some(h) = header {
        w.write_record(h).map_err(|e| Stop::Internal(e.into()))?;
    }
    Ok(w)
}

async fn flush_page(
    out: &mut object_store::buffered::BufWriter,
    page: &mut csv::Writer<Vec<u8>>,
) -> Result<(), Stop> {
    let full = std::mem::replace(page, csv_page(None)?);
    let bytes = full
        .into_inner()
        .map_err(|e| Stop::Internal(anyhow::anyhow!("csv: {e}")))?;
    out.write_all(&bytes)
        .await
        .map_err(|e| Stop::Internal(e.into()))?;
    Ok(())
}
