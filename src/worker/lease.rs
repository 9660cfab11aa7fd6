//! Claiming a job and holding it: the lease (`lease_owner`, `lease_expires_ms`) taken by the
//! claim, renewed while the job runs, and given back at a graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait};

use super::ctx::JobCtx;
use super::sql::{self, stmt};
use super::{WorkerConfig, now_ms};
use crate::domain::UploadJobStatus;
use crate::entity::upload_job;
use crate::service::Service;

/// Claims the oldest job that is unfinished and not leased, skipping series that have a job
/// in progress elsewhere (one job per series at a time keeps `maxCreate` and per-customer
/// rules exact).
///
/// That rule must see every other claim: two claims judged on their own snapshots would each
/// find the series free and take two of its jobs. On PostgreSQL the claim holds a transaction
/// advisory lock (one per schema) taken before the claiming statement, so that statement's
/// snapshot includes every claim committed before it; claims are one short statement each, so
/// serializing them costs little. SQLite has one writer at a time already.
pub async fn claim(
    service: &Service,
    cfg: &WorkerConfig,
) -> anyhow::Result<Option<upload_job::Model>> {
    let db = service.db();
    let backend = db.get_database_backend();
    let lock = if backend == DbBackend::Postgres {
        "FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let now = now_ms();
    let sql = format!(
        "UPDATE upload_job SET upload_status = $5, lease_owner = $1, lease_expires_ms = $2,
                attempts = attempts + 1, updated_on = $3
         WHERE id = (
           SELECT j.id FROM upload_job j
           WHERE j.upload_status IN ($6, $5)
             AND (j.lease_expires_ms IS NULL OR j.lease_expires_ms < $4)
             AND NOT EXISTS (
               SELECT 1 FROM upload_job o
               WHERE o.coupon_series_id = j.coupon_series_id AND o.id <> j.id
                 AND o.upload_status = $5 AND o.lease_expires_ms >= $4)
           ORDER BY j.id LIMIT 1 {lock})
         RETURNING id"
    );
    let stmt = sql::stmt(
        backend,
        &sql,
        vec![
            cfg.instance.clone().into(),
            (now + cfg.lease.as_millis() as i64).into(),
            crate::domain::now().into(),
            now.into(),
            UploadJobStatus::Processing.into(),
            UploadJobStatus::Started.into(),
        ],
    );
    let claimed = if backend == DbBackend::Postgres {
        let txn = service.begin_write().await?;
        txn.execute_unprepared(
            "SELECT pg_advisory_xact_lock(hashtext('coupon-upload-api.claim.' || current_schema()))",
        )
        .await?;
        let claimed = txn.query_one_raw(stmt).await?;
        txn.commit().await?;
        claimed
    } else {
        // One statement is one write transaction already, and the only writer at a time.
        let _turn = service.write_turn().await;
        db.query_one_raw(stmt).await?
    };
    let Some(row) = claimed else {
        return Ok(None);
    };
    let id: i64 = row.try_get("", "id")?;
    let job = upload_job::Entity::find_by_id(id).one(db).await?;
    if let Some(job) = &job {
        tracing::info!(job_id = job.id, attempt = job.attempts, phase = %job.phase, "claimed");
        debug_assert_eq!(job.upload_status, UploadJobStatus::Processing);
        service.events().publish(job).await;
    }
    Ok(job)
}

/// Keeps the lease alive while a job runs; flags `lost` if another worker took it.
pub fn renew_lease(
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
            let turn = service.write_turn().await;
            let r = db
                .execute_raw(stmt(
                    db.get_database_backend(),
                    "UPDATE upload_job SET lease_expires_ms = $1 WHERE id = $2 AND lease_owner = $3",
                    vec![(now_ms() + cfg.lease.as_millis() as i64).into(), job_id.into(), cfg.instance.clone().into()],
                ))
                .await;
            drop(turn);
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

/// Gives the job back at once (graceful shutdown): it stays `PROCESSING`, free to claim. The
/// claim is not counted as an attempt: only runs that failed count towards giving up.
pub async fn release(ctx: &JobCtx<'_>) {
    give_back(ctx.service, ctx.cfg, ctx.job.id).await
}

/// [`release`] by the job's id.
pub async fn give_back(service: &Service, cfg: &WorkerConfig, job_id: i64) {
    let db = service.db();
    let _turn = service.write_turn().await;
    let r = db
        .execute_raw(stmt(
            db.get_database_backend(),
            "UPDATE upload_job SET lease_owner = NULL, lease_expires_ms = NULL, \
             attempts = attempts - 1 WHERE id = $1 AND lease_owner = $2",
            vec![job_id.into(), cfg.instance.clone().into()],
        ))
        .await;
    if let Err(e) = r {
        tracing::warn!(job_id, error = ?e, "releasing the lease failed; it will lapse");
    }
}
