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
    /// How a job waits out a transient fault (database or storage unreachable).
    pub retry: RetryPolicy,
}

/// Waiting out a transient fault: pauses from `first`, doubling up to `max_delay` (each less a
/// random fifth, so that instances do not retry in step), for at most `window` in a row.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub first: Duration,
    pub max_delay: Duration,
    pub window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            window: Duration::from_secs(3600),
        }
    }
}

/// One run of faults in a row under a [`RetryPolicy`].
pub(crate) struct Backoff {
    policy: RetryPolicy,
    started: std::time::Instant,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            started: std::time::Instant::now(),
            next: policy.first,
        }
    }

    /// The pause before the next try, or `None` once the window is spent.
    pub(crate) fn next_delay(&mut self) -> Option<Duration> {
        let spent = self.started.elapsed();
        if spent >= self.policy.window {
            return None;
        }
        let jitter = 1.0 - rand::random::<f64>() / 5.0;
        let delay = self
            .next
            .min(self.policy.max_delay)
            .mul_f64(jitter)
            .min(self.policy.window - spent);
        self.next = (self.next * 2).min(self.policy.max_delay);
        Some(delay)
    }
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
            retry: Default::default(),
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
                    Err(Stop::Transient(e)) => {
                        // Only before the job's context existed (its series could not be read).
                        tracing::warn!(job_id = id, error = ?e, "transient fault at the start; the job is given back");
                        lease::give_back(&service, &cfg, id).await;
                        pause(&shutdown, Duration::from_secs(1)).await;
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

#[cfg(test)]
mod tests {
    use super::{Backoff, RetryPolicy};
    use std::time::Duration;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_ends_with_its_window() {
        let policy = RetryPolicy {
            first: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
            window: Duration::from_millis(300),
        };
        let mut b = Backoff::new(policy);
        let delays: Vec<Duration> = (0..5).map_while(|_| b.next_delay()).collect();
        assert_eq!(delays.len(), 5, "the window is time, not tries");
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        // Each step is its delay less at most a fifth: 100 ms, then 200 ms...
        assert!((80.0..=100.0).contains(&ms(&delays[0])), "{delays:?}");
        assert!((160.0..=200.0).contains(&ms(&delays[1])), "{delays:?}");
        // ...then 400 ms (at least 320 ms), cut to what is left of the 300 ms window.
        for d in &delays[2..] {
            assert!((250.0..=300.0).contains(&ms(d)), "{delays:?}");
        }
        std::thread::sleep(Duration::from_millis(310));
        assert_eq!(b.next_delay(), None, "past the window no more tries");
    }
}
