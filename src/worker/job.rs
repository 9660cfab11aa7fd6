//! Running one claimed job through its phases (see the module doc of `worker`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use sea_orm::{ConnectionTrait, EntityTrait};
use tokio_util::sync::CancellationToken;

use super::WorkerConfig;
use super::commit::commit_batches;
use super::ctx::{JobCtx, Stop};
use super::files::finish;
use super::judge::judge;
use super::lease::{release, renew_lease};
use super::stage::stage;
use crate::domain::{JobPhase, UploadJobStatus, now};
use crate::entity::{coupon_series, upload_job};
use crate::service::Service;

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
    let kind = job.customer_identifier;
    let lost = Arc::new(AtomicBool::new(false));
    let renewal = renew_lease(service.clone(), cfg.clone(), job.id, lost.clone());
    let mut ctx = JobCtx::new(service, cfg, job, series, kind, shutdown, lost);
    let result = drive_retrying(&mut ctx).await;
    renewal.abort();
    if let Err(Stop::Shutdown) = &result {
        release(&ctx).await;
    }
    result
}

/// Drives the job; after a transient fault (`Stop::Transient`) waits (backing off), re-reads
/// the job and goes on from its last commit, which also settles a commit whose answer was lost
/// with the connection. The run keeps its lease meanwhile (the renewal goes on retrying), so
/// the fault costs no attempt. Faults in a row, with no phase or batch committed between them,
/// are retried for `cfg.retry.window`; past it the job ends `ERRORED` with the last fault as
/// its reason (or, if even that cannot be written, the lease lapses and the job is claimed
/// again later as a failed attempt).
async fn drive_retrying(ctx: &mut JobCtx<'_>) -> Result<(), Stop> {
    let mut backoff = super::Backoff::new(ctx.cfg.retry);
    // Where the job stood at the last fault: a fault after progress starts a new window.
    let mut stood: Option<(JobPhase, i64)> = None;
    loop {
        let fault = match drive(ctx).await {
            Err(Stop::Transient(fault)) => fault,
            ended => return ended,
        };
        let at = (ctx.job.phase, ctx.job.committed_through);
        if stood != Some(at) {
            backoff = super::Backoff::new(ctx.cfg.retry);
            stood = Some(at);
        }
        let Some(delay) = backoff.next_delay() else {
            let reason = format!(
                "the job could not be completed: {fault:#} (retried for {} s)",
                ctx.cfg.retry.window.as_secs()
            );
            return fail(ctx, &reason).await;
        };
        tracing::warn!(job_id = ctx.job.id, error = %format!("{fault:#}"), retry_in_ms = delay.as_millis() as u64,
            "transient fault; the job goes on from its last commit");
        ctx.pause(delay).await?;
        ctx.job = match ctx.reload_held().await {
            Ok(job) => job,
            Err(Stop::Transient(_)) => continue,
            Err(stop) => return Err(stop),
        };
    }
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
        match ctx.job.phase {
            JobPhase::Stage => match stage(ctx).await? {
                Ok(rows) => {
                    ctx.job.phase = JobPhase::Judge;
                    ctx.job.actual_row_count = rows;
                    tracing::info!(job_id = ctx.job.id, rows, "staged");
                }
                Err(file_error) => return fail(ctx, &file_error.to_string()).await,
            },
            JobPhase::Judge => judge(ctx).await?,
            JobPhase::Commit => {
                if commit_batches(ctx).await? {
                    return finish(ctx, UploadJobStatus::Cancelled).await;
                }
            }
            JobPhase::Files => return finish(ctx, UploadJobStatus::Finished).await,
            JobPhase::Done => return Ok(()),
        }
    }
}

/// The job as a whole cannot run: `ERRORED` with the reason. A job that committed nothing keeps
/// nothing staged and counts nothing. One that gave up after committing batches keeps its counts
/// as committed (they equal its coupons) and its staged rows (purged with the others).
async fn fail(ctx: &mut JobCtx<'_>, reason: &str) -> Result<(), Stop> {
    let txn = ctx.service.begin_write().await?;
    let committed = ctx.job.committed_through > 0;
    if !committed {
        txn.execute_raw(ctx.s(
            "DELETE FROM upload_row WHERE job_id = $1",
            vec![ctx.job.id.into()],
        ))
        .await?;
    }
    let counts = if committed {
        ""
    } else {
        "actual_row_count = 0, processed_row_count = 0, "
    };
    let job = ctx
        .update_job(
            &*txn,
            &format!(
                "upload_status = $1, phase = $2, error_reason = $3, {counts}finished_on = $4, \
                 lease_owner = NULL, lease_expires_ms = NULL"
            ),
            vec![
                UploadJobStatus::Errored.into(),
                JobPhase::Done.into(),
                reason.to_owned().into(),
                now().into(),
            ],
        )
        .await?;
    txn.commit().await?;
    tracing::info!(job_id = job.id, reason, "errored");
    ctx.service.events().publish(&job).await;
    ctx.job = job;
    Ok(())
}
