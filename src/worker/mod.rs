//! The worker: claims upload jobs and runs them to the end, exactly once, across crashes.
//!
//! A job is claimed with a lease (`lease_owner`, `lease_expires_ms`), renewed while it is
//! worked on (`lease.rs`). Every change the worker makes to a job is *fenced*: the statement
//! also requires `lease_owner = me`, so a worker that lost its lease (it stalled, another took
//! over) changes nothing more. A job moves through phases, each ending in one commit
//! (docs/ARCHITECTURE.md, "The job pipeline"), each in its own file:
//!
//! 1. `STAGE` (`stage.rs`): stream the stored file through the CSV reader into `upload_row`
//!    (`COPY` on PostgreSQL, multi-row inserts on SQLite), in one transaction with the phase
//!    change;
//! 2. `JUDGE` (`judge.rs`): mark the set rules in SQL (duplicates in the file, codes already in
//!    the org, repeated customers, `maxCreate`), one transaction;
//! 3. `COMMIT` (`commit.rs`): insert the accepted rows as coupons batch by batch, each batch in
//!    one transaction with its counts and the checkpoint `committed_through`;
//! 4. `FILES` (`files.rs`): write the error and success files from `upload_row`, then finish the
//!    job (and its audience group version) in one transaction.
//!
//! `job.rs` takes a claimed job from phase to phase. The phases share the job context of
//! `ctx.rs` (the fenced update, and `Stop`: why a run ended before the job did) and the SQL of
//! `sql.rs`. No phase imports `job.rs`, nor another phase, except that `commit.rs` calls
//! `judge.rs` to reserve the coupon ids of a job judged before jobs reserved ids.
//!
//! A process killed at any instant leaves the job at its last commit; whoever claims it next
//! resumes there, so counts, coupons and files come out exactly as in an uninterrupted run.

mod commit;
mod ctx;
mod files;
mod job;
mod judge;
mod lease;
mod purge;
mod sql;
mod stage;

use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::domain::UploadJobStatus;
use crate::entity::upload_job;
use crate::service::Service;
use ctx::Stop;
use lease::claim;
pub use purge::purge_staged_rows;

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
    /// How long a job's staged rows are kept after it ends.
    pub staged_retention: Duration,
    /// How often staged rows past their retention are looked for.
    pub purge_every: Duration,
    /// Bounds on one record of an uploaded file.
    pub record_limits: crate::ingest::reader::RecordLimits,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch_rows: 50_000,
            lease: Duration::from_secs(15),
            idle_poll: Duration::from_secs(2),
            max_attempts: 5,
            instance: default_instance(),
            staged_retention: Duration::from_secs(7 * 24 * 3600),
            purge_every: Duration::from_secs(600),
            record_limits: Default::default(),
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
    let purge = purge::purge_loop(
        service.clone(),
        cfg.staged_retention,
        cfg.purge_every,
        shutdown.clone(),
    );
    tokio::join!(jobs(service, cfg, shutdown), purge);
}

async fn jobs(service: Service, cfg: WorkerConfig, shutdown: CancellationToken) {
    tracing::info!(instance = %cfg.instance, "worker started");
    while !shutdown.is_cancelled() {
        match claim(&service, &cfg).await {
            Ok(Some(job)) => {
                let id = job.id;
                match job::run(&service, &cfg, job, &shutdown).await {
                    Ok(()) => {}
                    Err(Stop::Shutdown) => {
                        tracing::info!(job_id = id, "stopped for shutdown; lease released")
                    }
                    Err(Stop::LostLease) => {
                        tracing::warn!(job_id = id, "lost the lease; another worker has the job")
                    }
                    Err(Stop::Internal(e)) => {
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

/// How many jobs are unfinished (used by tests and the demo to wait for jobs).
pub async fn jobs_pending(service: &Service) -> anyhow::Result<i64> {
    let n = upload_job::Entity::find()
        .filter(upload_job::Column::UploadStatus.is_in(UploadJobStatus::UNFINISHED))
        .count(service.db())
        .await?;
    Ok(n as i64)
}
