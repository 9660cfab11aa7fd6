//! Phase `STAGE`: the stored file, streamed through the CSV reader into `upload_row`.
//!
//! The reader runs on a blocking thread over the storage stream and hands rows over in
//! bounded batches, so memory holds a few thousand rows whatever the file's size. On
//! PostgreSQL the rows go in with `COPY … FROM STDIN`, in one transaction with the job's move
//! to `JUDGE`; on SQLite with multi-row inserts, a transaction per batch so that other writes
//! are not held up for the whole file. Either way the job leaves `STAGE` only with all its rows
//! staged, and whoever stages it again (after a crash, say) deletes what an earlier run left.

use std::io::BufReader;

use sea_orm::{ConnectionTrait, DbBackend, Value};
use tokio::sync::mpsc;

use super::ctx::{JobCtx, Stop};
use super::sql::stmt;
use crate::domain::JobPhase;
use crate::ingest::reader::{FileError, ReaderOptions, RecordLimits, RowReader, StagedRow};
use crate::ingest::seen::SeenCodes;

/// Rows per message from the reader thread; a few messages may be in flight.
const READ_BATCH: usize = 5_000;
const IN_FLIGHT: usize = 4;
/// Rows per INSERT on SQLite (9 parameters each, well under SQLite's limit).
const SQLITE_ROWS_PER_INSERT: usize = 500;

/// A row as staged: what the reader made of it, and whether its code may repeat an earlier
/// row's (judging checks only those codes for duplicates).
struct Staged {
    row: StagedRow,
    maybe_duplicate: bool,
}

/// What the reader thread hands over: rows (SQLite inserts them with parameters), or for
/// PostgreSQL the rows already encoded for `COPY` on the reader thread, so the strings are
/// freed where they were made and only one buffer crosses threads per batch.
enum Rows {
    Rows(Vec<Staged>),
    Copy { data: Vec<u8>, last_row: i64 },
}

type Batch = Result<Rows, FileError>;

/// `Ok(Err(_))`: the file cannot be ingested (the job will be `ERRORED`); `Ok(Ok(n))`: `n` rows
/// staged and the job moved to `JUDGE`.
pub async fn stage(ctx: &JobCtx<'_>) -> Result<Result<i64, FileError>, Stop> {
    let Some(key) = ctx.job.uploaded_file_key.clone() else {
        return Ok(Err(FileError::Io("the uploaded file is missing".into())));
    };
    let Some(reader) = ctx.service.storage().reader(&key).await? else {
        return Ok(Err(FileError::Io(
            "the uploaded file is missing from storage".into(),
        )));
    };
    let opts = ReaderOptions {
        customer_identifier: ctx.kind,
        customer_identifier_column: ctx.job.customer_identifier_column.map(|c| c as usize),
        coupon_code_column: ctx.job.coupon_code_column.map(|c| c as usize),
        has_header: ctx.job.has_header,
        code_max_length: ctx.series.code_max_length.max(1) as usize,
    };
    let (tx, rx) = mpsc::channel::<Batch>(IN_FLIGHT);
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    let copy_job = (ctx.backend == DbBackend::Postgres).then_some(ctx.job.id);
    let limits = ctx.cfg.record_limits;
    let reading =
        tokio::task::spawn_blocking(move || read_rows(bridge, opts, limits, copy_job, tx));
    let staged = match ctx.backend {
        DbBackend::Postgres => stage_postgres(ctx, rx).await,
        _ => stage_sqlite(ctx, rx).await,
    };
    // The reader stops by itself once the receiver is gone.
    let _ = reading.await;
    staged
}

/// Reads the file on a blocking thread. `copy_job`: encode the rows for PostgreSQL's `COPY`
/// (with this job id) instead of handing them over as they are.
fn read_rows(
    input: impl std::io::Read,
    opts: ReaderOptions,
    limits: RecordLimits,
    copy_job: Option<i64>,
    tx: mpsc::Sender<Batch>,
) {
    let input = BufReader::with_capacity(256 * 1024, input);
    let rows = match RowReader::with_limits(input, opts, limits) {
        Ok(rows) => rows,
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    };
    let mut batch = Vec::with_capacity(READ_BATCH);
    let mut seen = SeenCodes::default();
    let send = |batch: &mut Vec<Staged>| {
        let full = std::mem::replace(batch, Vec::with_capacity(READ_BATCH));
        let message = match copy_job {
            Some(job_id) => {
                let mut data = Vec::with_capacity(full.len() * 64);
                for r in &full {
                    copy_row(&mut data, job_id, r);
                }
                let last_row = full.last().map_or(0, |r| r.row.row_number);
                drop(full);
                Rows::Copy { data, last_row }
            }
            None => Rows::Rows(full),
        };
        tx.blocking_send(Ok(message)).is_ok()
    };
    for row in rows {
        match row {
            Ok(row) => {
                let maybe_duplicate = row.code.as_deref().is_some_and(|c| seen.insert(c));
                batch.push(Staged {
                    row,
                    maybe_duplicate,
                });
                if batch.len() == READ_BATCH && !send(&mut batch) {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
    if !batch.is_empty() {
        send(&mut batch);
    }
}

/// PostgreSQL `COPY` text format: tab-separated, `\N` for NULL, backslash escapes.
fn copy_field(buf: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => buf.extend_from_slice(b"\\N"),
        Some(s) => {
            for b in s.bytes() {
                match b {
                    b'\\' => buf.extend_from_slice(b"\\\\"),
                    b'\t' => buf.extend_from_slice(b"\\t"),
                    b'\n' => buf.extend_from_slice(b"\\n"),
                    b'\r' => buf.extend_from_slice(b"\\r"),
                    _ => buf.push(b),
                }
            }
        }
    }
}

/// The code as written, when the row must keep it: `""` when it is the valid code itself (most
/// rows), which saves staging every code twice; result files read `raw_code` or else `code`.
fn raw_code(r: &StagedRow) -> &str {
    if r.code.as_deref() == Some(r.raw_code.as_str()) {
        ""
    } else {
        &r.raw_code
    }
}

fn copy_row(buf: &mut Vec<u8>, job_id: i64, staged: &Staged) {
    use std::io::Write as _;
    let r = &staged.row;
    let _ = write!(buf, "{job_id}\t{}", r.row_number);
    for v in [
        Some(raw_code(r)),
        r.raw_customer.as_deref(),
        r.code.as_deref(),
        r.customer.as_deref(),
        r.error.as_ref().map(|e| e.code.as_str()),
        r.error.as_ref().map(|e| e.message.as_str()),
    ] {
        buf.push(b'\t');
        copy_field(buf, v);
    }
    buf.extend_from_slice(if staged.maybe_duplicate {
        b"\tt\n"
    } else {
        b"\tf\n"
    });
}

/// The reader stopped at `e`. A stream that failed while reading is not a bad file: the storage
/// failed, and the run is retried (`Stop::Transient`); anything else is the file's fault.
fn unreadable(e: FileError) -> Result<Result<i64, FileError>, Stop> {
    match e {
        FileError::Io(reason) => Err(Stop::Transient(anyhow::anyhow!(
            "reading the uploaded file failed: {reason}"
        ))),
        e => Ok(Err(e)),
    }
}

async fn stage_postgres(
    ctx: &JobCtx<'_>,
    mut rx: mpsc::Receiver<Batch>,
) -> Result<Result<i64, FileError>, Stop> {
    let pool = ctx.service.db().get_postgres_connection_pool();
    let mut tx = pool.begin().await?;
    sea_orm::sqlx::query("DELETE FROM upload_row WHERE job_id = $1")
        .bind(ctx.job.id)
        .execute(&mut *tx)
        .await?;
    let mut copy = tx
        .copy_in_raw(
            "COPY upload_row (job_id, row_number, raw_code, raw_customer, code, customer, error_code, \
             error_message, maybe_duplicate) FROM STDIN",
        )
        .await?;
    let mut rows = 0i64;
    while let Some(batch) = rx.recv().await {
        match batch {
            Ok(Rows::Copy { data, last_row }) => {
                rows = last_row;
                copy.send(data.as_slice()).await?;
            }
            Ok(Rows::Rows(_)) => {
                return Err(Stop::Internal(anyhow::anyhow!(
                    "the reader sent rows, not COPY data"
                )));
            }
            Err(file_error) => {
                let _ = copy.abort("the file cannot be ingested").await;
                let _ = tx.rollback().await;
                return unreadable(file_error);
            }
        }
        ctx.check_alive()?;
    }
    copy.finish().await?;
    let moved = sea_orm::sqlx::query(
        "UPDATE upload_job SET phase = $1, actual_row_count = $2, updated_on = $3 \
         WHERE id = $4 AND lease_owner = $5",
    )
    .bind(JobPhase::Judge.as_str())
    .bind(rows)
    .bind(crate::domain::now())
    .bind(ctx.job.id)
    .bind(&ctx.cfg.instance)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() != 1 {
        let _ = tx.rollback().await;
        return Err(Stop::LostLease);
    }
    tx.commit().await?;
    Ok(Ok(rows))
}

/// SQLite: each batch from the reader is its own short write transaction, taken in this
/// process's turn (`db::WriteGate`), so the API's writes go in between batches instead of
/// waiting for the whole file. Rows staged so far are seen by nothing: the job stays in `STAGE`
/// until the last transaction moves it on, and whoever stages it again deletes them first.
/// Each transaction is fenced on the lease, so a worker that lost the job stages nothing more.
async fn stage_sqlite(
    ctx: &JobCtx<'_>,
    mut rx: mpsc::Receiver<Batch>,
) -> Result<Result<i64, FileError>, Stop> {
    let backend = ctx.backend;
    let txn = ctx.service.begin_write().await?;
    fence_sqlite(ctx, &txn, None).await?;
    txn.execute_raw(stmt(
        backend,
        "DELETE FROM upload_row WHERE job_id = $1",
        vec![ctx.job.id.into()],
    ))
    .await?;
    txn.commit().await?;
    let mut rows = 0i64;
    while let Some(batch) = rx.recv().await {
        let batch = match batch {
            Ok(Rows::Rows(b)) => b,
            Ok(Rows::Copy { .. }) => {
                return Err(Stop::Internal(anyhow::anyhow!(
                    "the reader sent COPY data to SQLite"
                )));
            }
            // The rows staged so far are deleted with the job's failure, or by the next run.
            Err(file_error) => return unreadable(file_error),
        };
        let txn = ctx.service.begin_write().await?;
        fence_sqlite(ctx, &txn, None).await?;
        for chunk in batch.chunks(SQLITE_ROWS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO upload_row (job_id, row_number, raw_code, raw_customer, code, customer, \
                 error_code, error_message, maybe_duplicate) VALUES ",
            );
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 9);
            for (i, staged) in chunk.iter().enumerate() {
                let r = &staged.row;
                if i > 0 {
                    sql.push(',');
                }
                let p = i * 9;
                sql.push('(');
                for n in 1..=9 {
                    if n > 1 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("${}", p + n));
                }
                sql.push(')');
                values.extend([
                    ctx.job.id.into(),
                    r.row_number.into(),
                    raw_code(r).to_owned().into(),
                    r.raw_customer.clone().into(),
                    r.code.clone().into(),
                    r.customer.clone().into(),
                    r.error.as_ref().map(|e| e.code).into(),
                    r.error.as_ref().map(|e| e.message.clone()).into(),
                    staged.maybe_duplicate.into(),
                ]);
            }
            txn.execute_raw(stmt(backend, &sql, values)).await?;
        }
        txn.commit().await?;
        rows = batch.last().map(|r| r.row.row_number).unwrap_or(rows);
        ctx.check_alive()?;
    }
    let txn = ctx.service.begin_write().await?;
    fence_sqlite(ctx, &txn, Some(rows)).await?;
    txn.commit().await?;
    Ok(Ok(rows))
}

/// Within `txn`, requires that this worker still holds the job (else `LostLease`, and the
/// transaction is dropped, so rolled back). `staged`: also move the job to `JUDGE` with that
/// many rows.
async fn fence_sqlite(
    ctx: &JobCtx<'_>,
    txn: &crate::db::WriteTxn,
    staged: Option<i64>,
) -> Result<(), Stop> {
    let (sets, mut values): (&str, Vec<Value>) = match staged {
        Some(rows) => (
            "phase = $3, actual_row_count = $4, updated_on = $5",
            vec![JobPhase::Judge.into(), rows.into()],
        ),
        None => ("updated_on = $3", vec![]),
    };
    values.push(crate::domain::now().into());
    let mut params: Vec<Value> = vec![ctx.job.id.into(), ctx.cfg.instance.clone().into()];
    params.extend(values);
    let moved = txn
        .execute_raw(stmt(
            ctx.backend,
            &format!("UPDATE upload_job SET {sets} WHERE id = $1 AND lease_owner = $2"),
            params,
        ))
        .await?;
    if moved.rows_affected() != 1 {
        return Err(Stop::LostLease);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_text_escapes_what_would_break_a_row() {
        let mut buf = Vec::new();
        super::copy_field(&mut buf, Some("a\tb\nc\\d\re"));
        assert_eq!(buf, b"a\\tb\\nc\\\\d\\re");
        buf.clear();
        super::copy_field(&mut buf, None);
        assert_eq!(buf, b"\\N");
    }
}
