//! Phase `COMMIT`: the accepted rows become coupons batch by batch, each batch in one
//! transaction with its counts and the checkpoint `committed_through`.

use sea_orm::{ConnectionTrait, DatabaseTransaction};

use super::ctx::{JobCtx, Stop};
use super::judge::rejecting;
use super::judge::reserve_coupon_ids;
use super::sql;
use crate::domain::RowErrorCode;
use crate::domain::{CustomerIdentifierType, JobPhase, now};
use crate::entity::upload_job;
use crate::events::PROGRESS_EVERY;

/// Phase `COMMIT`: batch after batch from the checkpoint. Returns `true` when the job was
/// cancelled (it stops at a batch boundary with everything before it committed).
pub async fn commit_batches(ctx: &mut JobCtx<'_>) -> Result<bool, Stop> {
    let total = ctx.job.actual_row_count;
    reserve_coupon_ids(ctx).await?;
    let mut cancel = ctx.reload().await?.cancel_requested;
    let mut last_event = std::time::Instant::now();
    while ctx.job.committed_through < total {
        if cancel {
            return Ok(true);
        }
        ctx.check_alive()?;
        let from = ctx.job.committed_through + 1;
        let to = (ctx.job.committed_through + ctx.cfg.batch_rows.max(1)).min(total);
        let txn = ctx.service.begin_write().await?;
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
    let turn = ctx.service.write_turn().await;
    let job = ctx
        .update_job(ctx.service.db(), "phase = $1", vec![JobPhase::Files.into()])
        .await?;
    drop(turn);
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
    let customer_type: Option<CustomerIdentifierType> =
        (ctx.kind != CustomerIdentifierType::NotTagged).then_some(ctx.kind);
    let series = txn
        .query_one_raw(ctx.s(sql::LOCK_SERIES, vec![j.coupon_series_id.into()]))
        .await?
        .ok_or_else(|| Stop::Internal(anyhow::anyhow!("series {} is gone", j.coupon_series_id)))?;
    let (max_create, uploaded): (i64, i64) = (
        series.try_get("", "max_create")?,
        series.try_get("", "num_uploaded_total")?,
    );
    let room = (max_create - uploaded).max(0);
    if max_create >= 0 && room < to - from + 1 {
        // `maxCreate` was lowered after judging (or this is the last room): the rows past it
        // are rejected as if judged so.
        txn.execute_raw(
            ctx.s(
                sql::OVER_ROOM_IN_BATCH,
                [
                    vec![j.id.into(), from.into(), to.into(), room.into()],
                    rejecting(RowErrorCode::MaxCreateExceeded),
                ]
                .concat(),
            ),
        )
        .await?;
    }
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
            .execute_raw(
                ctx.s(
                    sql::MARK_SKIPPED,
                    [
                        vec![j.id.into(), from.into(), to.into(), base.into()],
                        rejecting(RowErrorCode::CodeAlreadyExists),
                    ]
                    .concat(),
                ),
            )
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
