//! Phase `JUDGE`: the set rules marked in SQL on the staged rows, and the job's block of
//! coupon ids reserved.

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Value};

use super::ctx::{JobCtx, Stop};
use super::sql;
use crate::domain::{CouponStatus, CustomerIdentifierType, JobPhase};

/// `CODE_ALREADY_EXISTS` for a code whose coupon was revoked.
const REVOKED_CODE_MESSAGE: &str = "Coupon code was revoked in this org; a revoked code stays used \
     and cannot be uploaded again";
use crate::entity::coupon_series;
use crate::ingest::rules::RowErrorCode;

/// Phase `JUDGE`: the set rules, in SQL, in one transaction with the move to `COMMIT`.
pub async fn judge(ctx: &mut JobCtx<'_>) -> Result<(), Stop> {
    if ctx.backend == DbBackend::Postgres {
        // Fresh statistics for the rows just staged: without them the planner takes the job's
        // rows for a handful and picks nested loops that are quadratic in the file's size.
        ctx.service
            .db()
            .execute_unprepared("ANALYZE upload_row")
            .await?;
    }
    reserve_coupon_ids(ctx).await?;
    let txn = ctx.service.begin_write().await?;
    let id: Value = ctx.job.id.into();
    txn.execute_raw(
        ctx.s(
            sql::DUPLICATE_CODES,
            [
                vec![id.clone()],
                rejecting(RowErrorCode::DuplicateCodeInFile),
            ]
            .concat(),
        ),
    )
    .await?;
    txn.execute_raw(
        ctx.s(
            sql::EXISTING_CODES,
            [
                vec![id.clone(), ctx.job.org_id.into()],
                rejecting(RowErrorCode::CodeAlreadyExists),
                vec![
                    CouponStatus::Revoked.into(),
                    REVOKED_CODE_MESSAGE.to_owned().into(),
                ],
            ]
            .concat(),
        ),
    )
    .await?;
    // The series as it is now, inside the transaction: its counter and rules.
    let series = coupon_series::Entity::find_by_id(ctx.series.id)
        .one(&*txn)
        .await?
        .ok_or_else(|| Stop::Internal(anyhow::anyhow!("series {} is gone", ctx.series.id)))?;
    if ctx.kind != CustomerIdentifierType::NotTagged && !series.allow_multiple_per_customer {
        txn.execute_raw(
            ctx.s(
                sql::CUSTOMERS_WITH_COUPON,
                [
                    vec![id.clone(), series.id.into(), ctx.kind.into()],
                    rejecting(RowErrorCode::DuplicateCustomer),
                    // A customer whose coupons were revoked holds none.
                    vec![CouponStatus::Active.into()],
                ]
                .concat(),
            ),
        )
        .await?;
        txn.execute_raw(ctx.s(
            sql::REPEATED_CUSTOMERS,
            [vec![id.clone()], rejecting(RowErrorCode::DuplicateCustomer)].concat(),
        ))
        .await?;
    }
    if series.max_create >= 0 {
        let room = (series.max_create - series.num_uploaded_total).max(0);
        txn.execute_raw(
            ctx.s(
                sql::OVER_MAX_CREATE,
                [
                    vec![id.clone(), room.into()],
                    rejecting(RowErrorCode::MaxCreateExceeded),
                ]
                .concat(),
            ),
        )
        .await?;
    }
    let job = ctx
        .update_job(&*txn, "phase = $1", vec![JobPhase::Commit.into()])
        .await?;
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
pub async fn reserve_coupon_ids(ctx: &mut JobCtx<'_>) -> Result<i64, Stop> {
    if let Some(base) = ctx.job.coupon_id_base {
        return Ok(base);
    }
    let rows = ctx.job.actual_row_count.max(0);
    let txn = ctx.service.begin_write().await?;
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
        .update_job(&*txn, "coupon_id_base = $1", vec![base.into()])
        .await?;
    txn.commit().await?;
    ctx.job = job;
    Ok(base)
}

/// The last two parameters of a statement that rejects rows: the code and its message.
pub fn rejecting(code: RowErrorCode) -> Vec<Value> {
    vec![code.into(), code.default_message().to_owned().into()]
}
