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
    let txn = crate::db::begin_write(ctx.service.db()).await?;
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
            &txn,
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
