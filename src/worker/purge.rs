//! Staged rows (`upload_row`) are the worker's scratch space: once a job has ended and its files
//! are written, they are kept for a while (to look into a job) and then its accepted rows are
//! deleted, in chunks, so the table holds only recent jobs' rows and every job's rejected rows
//! (its `rowErrors`). Every instance purges; deleting twice is harmless.

use std::time::Duration;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio_util::sync::CancellationToken;

use super::sql::stmt;
use crate::domain::JobPhase;
use crate::entity::upload_job;
use crate::service::Service;

/// Rows deleted per statement (and, on SQLite, per write transaction).
const CHUNK_ROWS: i64 = 20_000;

/// Jobs looked at per round.
const JOBS_PER_ROUND: u64 = 500;

/// Deletes the staged rows of jobs that ended more than `retention` ago; returns how many.
pub async fn purge_staged_rows(service: &Service, retention: Duration) -> anyhow::Result<u64> {
    let db = service.db();
    let backend = db.get_database_backend();
    let cutoff = crate::domain::now()
        - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut after = 0i64;
    let mut deleted = 0u64;
    loop {
        let jobs: Vec<(i64, i64)> = upload_job::Entity::find()
            .select_only()
            .column(upload_job::Column::Id)
            .column(upload_job::Column::ActualRowCount)
            .filter(upload_job::Column::Phase.eq(JobPhase::Done))
            .filter(upload_job::Column::FinishedOn.lt(cutoff))
            .filter(upload_job::Column::Id.gt(after))
            .order_by_asc(upload_job::Column::Id)
            .limit(JOBS_PER_ROUND)
            .into_tuple()
            .all(db)
            .await?;
        let Some(&(last, _)) = jobs.last() else {
            return Ok(deleted);
        };
        after = last;
        for (job_id, rows) in jobs {
            // Chunks by row number: each is a range of the primary key.
            let mut from = 0i64;
            while from < rows.max(1) {
                let to = from + CHUNK_ROWS;
                let turn = service.write_turn().await;
                let done = db
                    .execute_raw(stmt(
                        backend,
                        "DELETE FROM upload_row WHERE job_id = $1 AND row_number > $2 AND row_number <= $3 \
                         AND error_code IS NULL",
                        vec![job_id.into(), from.into(), to.into()],
                    ))
                    .await?;
                drop(turn);
                deleted += done.rows_affected();
                from = to;
            }
        }
    }
}

/// Purges at start and then every `every`, until shutdown.
pub async fn purge_loop(
    service: Service,
    retention: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        match purge_staged_rows(&service, retention).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "purged staged rows of ended jobs"),
            Err(e) => tracing::warn!(error = ?e, "purging staged rows failed; retrying later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}
