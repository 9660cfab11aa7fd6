//! The worker: claims upload jobs and runs them to the end, exactly once, across crashes.
//!
//! A job is claimed with a lease (`lease_owner`, `lease_expires_ms`), renewed while it is
//! worked on. Every change the worker makes to a job is *fenced*: the statement also requires
//! `lease_owner = me`, so a worker that lost its lease (it stalled, another took over) changes
//! nothing more. A job moves through phases, each ending in one commit (docs/ARCHITECTURE.md, "The job pipeline"):
//!
//! 1. `STAGE`: stream the stored file through the CSV reader into `upload_row` (`COPY` on
//!    PostgreSQL, multi-row inserts on SQLite), in one transaction with the phase change;
//! 2. `JUDGE`: mark the set rules in SQL (duplicates in the file, codes already in the org,
//!    repeated customers, `maxCreate`), one transaction;
//! 3. `COMMIT`: insert the accepted rows as coupons batch by batch, each batch in one
//!    transaction with its counts and the checkpoint `committed_through`;
//! 4. `FILES`: write the error and success files from `upload_row`, then finish the job (and
//!    its audience group version) in one transaction.
//!
//! A process killed at any instant leaves the job at its last commit; whoever claims it next
//! resumes there, so counts, coupons and files come out exactly as in an uninterrupted run.

mod job;
mod sql;
mod stage;

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::domain::UploadJobStatus;
use crate::entity::upload_job;
use crate::service::Service;

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Rows per commit batch.
    pub batch_rows: i64,
    /// How long a claim lasts without renewal; another instance takes a job over after it.
    pub lease: Duration,
    /// How often an idle worker looks for jobs (it is also woken when a job is created).
    pub idle_poll: Duration,
    /// Claims a job may take before it is given up as `ERRORED`.
    pub max_attempts: i32,
    /// Names this worker in leases and logs.
    pub instance: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch_rows: 50_000,
            lease: Duration::from_secs(15),
            idle_poll: Duration::from_secs(2),
            max_attempts: 5,
            instance: default_instance(),
        }
    }
}

/// `host-pid-random`: unique per process, readable in the database.
pub fn default_instance() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Starts the worker loop; it stops at a batch boundary once `shutdown` is cancelled,
/// releasing its lease so another instance can resume at once.
pub fn spawn(service: Service, cfg: WorkerConfig, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move { run(service, cfg, shutdown).await })
}

async fn run(service: Service, cfg: WorkerConfig, shutdown: CancellationToken) {
    tracing::info!(instance = %cfg.instance, "worker started");
    while !shutdown.is_cancelled() {
        match claim(&service, &cfg).await {
            Ok(Some(job)) => {
                let id = job.id;
                match job::run(&service, &cfg, job, &shutdown).await {
                    Ok(()) => {}
                    Err(job::Stop::Shutdown) => {
                        tracing::info!(job_id = id, "stopped for shutdown; lease released")
                    }
                    Err(job::Stop::LostLease) => {
                        tracing::warn!(job_id = id, "lost the lease; another worker has the job")
                    }
                    Err(job::Stop::Internal(e)) => {
                        tracing::error!(job_id = id, error = ?e, "job failed; it will be retried when its lease lapses");
                        pause(&shutdown, Duration::from_secs(1)).await;
                    }
                }
            }
            Ok(None) => {
                tokio::select! {
                    _ = service.jobs_ready().notified() => {}
                    _ = tokio::time::sleep(cfg.idle_poll) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = ?e, "claiming a job failed");
                pause(&shutdown, Duration::from_secs(1)).await;
            }
        }
    }
    tracing::info!(instance = %cfg.instance, "worker stopped");
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! { _ = tokio::time::sleep(d) => {}, _ = shutdown.cancelled() => {} }
}

/// Claims the oldest job that is unfinished and not leased, skipping series that have a job
/// in progress elsewhere (one job per series at a time keeps `maxCreate` and per-customer
/// rules exact). PostgreSQL skips rows other instances are claiming (`SKIP LOCKED`).
async fn claim(service: &Service, cfg: &WorkerConfig) -> anyhow::Result<Option<upload_job::Model>> {
    let db = service.db();
    let backend = db.get_database_backend();
    let lock = if backend == DbBackend::Postgres {
        "FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let now = now_ms();
    let sql = format!(
        "UPDATE upload_job SET upload_status = 'PROCESSING', lease_owner = $1, lease_expires_ms = $2,
                attempts = attempts + 1, updated_on = $3
         WHERE id = (
           SELECT j.id FROM upload_job j
           WHERE j.upload_status IN ('STARTED', 'PROCESSING')
             AND (j.lease_expires_ms IS NULL OR j.lease_expires_ms < $4)
             AND NOT EXISTS (
               SELECT 1 FROM upload_job o
               WHERE o.coupon_series_id = j.coupon_series_id AND o.id <> j.id
                 AND o.upload_status = 'PROCESSING' AND o.lease_expires_ms >= $4)
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
        ],
    );
    let Some(row) = db.query_one_raw(stmt).await? else {
        return Ok(None);
    };
    let id: i64 = row.try_get("", "id")?;
    let job = upload_job::Entity::find_by_id(id).one(db).await?;
    if let Some(job) = &job {
        tracing::info!(job_id = job.id, attempt = job.attempts, phase = %job.phase, "claimed");
        debug_assert_eq!(job.upload_status, UploadJobStatus::Processing.as_str());
        service.events().publish(job).await;
    }
    Ok(job)
}

/// Runs a one-off SQL statement (used by tests and the demo to wait for jobs).
pub async fn jobs_pending(service: &Service) -> anyhow::Result<i64> {
    let db = service.db();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM upload_job WHERE upload_status IN ('STARTED', 'PROCESSING')",
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0))
}
