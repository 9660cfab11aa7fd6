//! PostgreSQL only: `uploadStatus` pages read in batches over a few connections of their own.
//! Hand-written because a benchmark needed it: `bench_status` went from ~7,000 to 9,303
//! requests/s with it (and PostgreSQL from 0.52 to 0.40 cores), see docs/benchmarks.md.
//!
//! A web app polls status for many series at once, so at any moment many requests want the
//! same kind of small read. Sent one statement each through the pool, every one costs a round
//! trip, a statement's fixed cost in PostgreSQL, and a second round trip when sqlx returns the
//! connection to its pool (it pings every connection it takes back). Here, a few lane tasks
//! each own one connection (taken from the pool and detached, so it has the pool's settings,
//! search path included); a request is queued, and a lane takes everything queued, up to
//! [`MAX_BATCH`], and reads it with one prepared statement: `unnest` of the requests' arguments,
//! each joined to its series and, `LATERAL`, to its page of jobs. While one lane's statement
//! is out, the next requests gather for the other. A request alone is read alone, at once:
//! batching never waits for company.
//!
//! Every request keeps its own org in the statement: a series is joined only with its org, and
//! jobs, groups and versions only with the series' org, as in the single statement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::{PgConnection, PgPool, PgRow};
use sea_orm::sqlx::{self, Connection, Row};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::status_page::{Found, JobWithAudience};
use crate::db::{StatementCounter, connection_lost, sqlx_unreachable};
use crate::domain::{
    AudienceGroupStatus, AudienceGroupType, ClientHandlingType, CustomerIdentifierType, JobPhase,
    UploadJobStatus,
};
use crate::entity::{audience_group, audience_group_version, coupon_series, upload_job};
use crate::error::{AppError, AppResult};

/// Most requests read by one statement.
pub const MAX_BATCH: usize = 64;
/// Lanes, that is statements in flight at once (and connections held).
pub const LANES: usize = 2;
/// A lane's connection idle this long is pinged before use (it may have been dropped by a
/// server restart, a proxy or a firewall), as the pool does for its own.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// What one request asks: a page of one series' jobs, in the caller's org.
#[derive(Clone, Debug)]
pub struct PageAsk {
    pub coupon_series_id: i64,
    pub org_id: i64,
    /// Only jobs with a smaller id.
    pub after: Option<i64>,
    pub limit: i64,
    /// Only jobs in these statuses, comma-separated (`Some("")`: none).
    pub statuses: Option<String>,
    /// Join the jobs' audience groups and versions.
    pub audience: bool,
}

struct Queued {
    ask: PageAsk,
    reply: oneshot::Sender<Result<Found, Arc<sqlx::Error>>>,
}

pub struct StatusLane {
    tx: mpsc::UnboundedSender<Queued>,
}

struct LaneShared {
    rx: Mutex<mpsc::UnboundedReceiver<Queued>>,
    pool: PgPool,
    sql: Arc<str>,
    statements: StatementCounter,
}

impl StatusLane {
    /// Starts [`LANES`] lane tasks. They end when the lane is dropped; their connections
    /// close with them.
    pub fn start(pool: PgPool, statements: StatementCounter) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(LaneShared {
            rx: Mutex::new(rx),
            pool,
            sql: batch_sql().into(),
            statements,
        });
        for _ in 0..LANES {
            tokio::spawn(serve(shared.clone()));
        }
        Self { tx }
    }

    /// The series and its page of jobs, newest first (with their groups and versions when
    /// asked); `None` when the series is not the org's.
    pub async fn read(&self, ask: PageAsk) -> AppResult<Found> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Queued { ask, reply })
            .map_err(|_| AppError::Internal(anyhow::anyhow!("the status lane has stopped")))?;
        match answer.await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) if sqlx_unreachable(&e) => Err(AppError::unavailable(&e)),
            Ok(Err(e)) => Err(AppError::Internal(anyhow::anyhow!(
                "reading upload status: {e}"
            ))),
            Err(_) => Err(AppError::Internal(anyhow::anyhow!(
                "the status lane stopped before answering"
            ))),
        }
    }
}

/// One column of a lane row, by position: what sqlx decodes itself, and the stored enums,
/// read as their text and checked against their names.
trait LaneColumn: Sized {
    fn at(row: &PgRow, index: usize) -> Result<Self, sqlx::Error>;
}

impl<T> LaneColumn for T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    fn at(row: &PgRow, index: usize) -> Result<Self, sqlx::Error> {
        row.try_get(index)
    }
}

macro_rules! stored_enum_columns {
    ($($enum:ty),+ $(,)?) => {
        $(impl LaneColumn for $enum {
            fn at(row: &PgRow, index: usize) -> Result<Self, sqlx::Error> {
                let name: String = row.try_get(index)?;
                <$enum as sea_orm::ActiveEnum>::try_from_value(&name).map_err(|e| {
                    sqlx::Error::ColumnDecode { index: index.to_string(), source: e.into() }
                })
            }
        })+
    };
}

stored_enum_columns!(
    AudienceGroupStatus,
    AudienceGroupType,
    ClientHandlingType,
    CustomerIdentifierType,
    JobPhase,
    UploadJobStatus,
);

/// Declares an entity's columns in the order its model's fields are decoded: `$cols`, the
/// column names (the fields' names), and `$decode`, the model from the row's columns from
/// `*at` on, by position (no name lookups; the struct literal names every field, so a new one
/// is a compile error here, not a silent gap).
macro_rules! by_position {
    ($cols:ident, $decode:ident, $entity:ident { $($field:ident),+ $(,)? }) => {
        const $cols: &[&str] = &[$(stringify!($field)),+];

        fn $decode(row: &PgRow, at: &mut usize) -> Result<$entity::Model, sqlx::Error> {
            Ok($entity::Model {
                $($field: {
                    let v = LaneColumn::at(row, *at)?;
                    *at += 1;
                    v
                }),+
            })
        }
    };
}

by_position!(
    SERIES_COLUMNS,
    series_at,
    coupon_series {
        id,
        org_id,
        name,
        description,
        client_handling_type,
        max_create,
        allow_multiple_per_customer,
        code_max_length,
        num_uploaded_total,
        created_on,
        updated_on,
    }
);
by_position!(
    JOB_COLUMNS,
    job_at,
    upload_job {
        id,
        org_id,
        coupon_series_id,
        upload_status,
        customer_identifier,
        customer_identifier_column,
        coupon_code_column,
        has_header,
        uploaded_file_name,
        uploaded_file_key,
        uploaded_file_size,
        error_file_key,
        success_file_key,
        upload_table_name,
        actual_row_count,
        total_uploaded_count,
        error_count,
        processed_row_count,
        error_reason,
        audience_group_id,
        audience_group_version_id,
        cancel_requested,
        lease_owner,
        lease_expires_ms,
        phase,
        committed_through,
        coupon_id_base,
        attempts,
        created_on,
        updated_on,
        finished_on,
    }
);
by_position!(
    GROUP_COLUMNS,
    group_at,
    audience_group {
        id,
        org_id,
        coupon_series_id,
        name,
        group_type,
        status,
        customer_count,
        latest_version_number,
        created_on,
        updated_on,
    }
);
by_position!(
    VERSION_COLUMNS,
    version_at,
    audience_group_version {
        id,
        org_id,
        audience_group_id,
        version_number,
        customer_count,
        status,
        upload_job_id,
        created_on,
    }
);

/// A model from a `LEFT JOIN`: `None` when its id is NULL (its columns are skipped).
fn optional_at<M>(
    row: &PgRow,
    at: &mut usize,
    columns: usize,
    decode: fn(&PgRow, &mut usize) -> Result<M, sqlx::Error>,
) -> Result<Option<M>, sqlx::Error> {
    if row.try_get::<Option<i64>, _>(*at)?.is_none() {
        *at += columns;
        return Ok(None);
    }
    decode(row, at).map(Some)
}

/// One request's rows (ordinal first, then series, job, group and version columns) decoded.
fn decode(rows: &[PgRow]) -> Result<Found, sqlx::Error> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let series = series_at(first, &mut 1)?;
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        let mut at = 1 + SERIES_COLUMNS.len();
        let Some(job) = optional_at(row, &mut at, JOB_COLUMNS.len(), job_at)? else {
            // The series has no job on this page.
            continue;
        };
        let group = optional_at(row, &mut at, GROUP_COLUMNS.len(), group_at)?;
        let version = optional_at(row, &mut at, VERSION_COLUMNS.len(), version_at)?;
        jobs.push(JobWithAudience {
            job,
            group,
            version,
        });
    }
    Ok(Some((series, jobs)))
}

/// One statement for a batch: each request is a row of `unnest(…) WITH ORDINALITY`, and its
/// rows come back together, in request order, each tagged with the request's ordinal first.
/// Groups and versions are joined on the job's org (the series' org, by the `LATERAL` filter):
/// on the series' own, the planner scanned the org's whole group index per job.
fn batch_sql() -> String {
    let list = |alias: &str, columns: &[&str]| {
        columns
            .iter()
            .map(|c| format!("{alias}.\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let columns = [
        list("s", SERIES_COLUMNS),
        list("j", JOB_COLUMNS),
        list("g", GROUP_COLUMNS),
        list("v", VERSION_COLUMNS),
    ]
    .join(", ");
    format!(
        "SELECT r.n, {columns} \
         FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::text[], $6::bool[]) \
              WITH ORDINALITY AS r(sid, org, after, lim, statuses, aud, n) \
         JOIN coupon_series s ON s.id = r.sid AND s.org_id = r.org \
         LEFT JOIN LATERAL (SELECT * FROM upload_job j \
             WHERE j.org_id = s.org_id AND j.coupon_series_id = s.id \
               AND (r.after IS NULL OR j.id < r.after) \
               AND (r.statuses IS NULL OR j.upload_status = ANY(string_to_array(r.statuses, ','))) \
             ORDER BY j.id DESC LIMIT r.lim) j ON true \
         LEFT JOIN audience_group g ON g.id = j.audience_group_id AND g.org_id = j.org_id AND r.aud \
         LEFT JOIN audience_group_version v ON v.id = j.audience_group_version_id AND v.org_id = j.org_id AND r.aud \
         ORDER BY r.n, j.id DESC"
    )
}

/// A lane: takes what is queued, reads it, answers each request with its rows.
async fn serve(shared: Arc<LaneShared>) {
    let mut conn: Option<(PgConnection, Instant)> = None;
    loop {
        let mut batch = {
            let mut rx = shared.rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(q) => batch.push(q),
                    Err(_) => break,
                }
            }
            batch
        };
        // Callers that went away (timed out, disconnected) need no answer.
        batch.retain(|q| !q.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        match read_batch(&shared, &mut conn, &batch).await {
            Ok(rows) => answer(batch, rows),
            Err(e) => {
                let e = Arc::new(e);
                for q in batch {
                    let _ = q.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Splits the rows by their request ordinal (1-based, in order) and answers each request with
/// its rows decoded.
fn answer(batch: Vec<Queued>, rows: Vec<PgRow>) {
    let mut rest = &rows[..];
    for (i, q) in batch.into_iter().enumerate() {
        let n = i as i64 + 1;
        let mine = rest
            .iter()
            .take_while(|r| r.try_get::<i64, _>(0).is_ok_and(|m| m == n))
            .count();
        let _ = q.reply.send(decode(&rest[..mine]).map_err(Arc::new));
        rest = &rest[mine..];
    }
}

/// Reads a batch on the lane's connection, (re)connecting as needed. A connection that fails
/// is dropped, and the read tried once more on a new one when the failure was the
/// connection's (it only reads, so trying again is safe).
async fn read_batch(
    shared: &LaneShared,
    conn: &mut Option<(PgConnection, Instant)>,
    batch: &[Queued],
) -> Result<Vec<PgRow>, sqlx::Error> {
    let mut sid = Vec::with_capacity(batch.len());
    let mut org = Vec::with_capacity(batch.len());
    let mut after = Vec::with_capacity(batch.len());
    let mut lim = Vec::with_capacity(batch.len());
    let mut statuses = Vec::with_capacity(batch.len());
    let mut aud = Vec::with_capacity(batch.len());
    for q in batch {
        sid.push(q.ask.coupon_series_id);
        org.push(q.ask.org_id);
        after.push(q.ask.after);
        lim.push(q.ask.limit);
        statuses.push(q.ask.statuses.clone());
        aud.push(q.ask.audience);
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut c = match conn.take() {
            Some((mut c, used)) if used.elapsed() >= PING_IF_IDLE_FOR => match c.ping().await {
                Ok(()) => c,
                Err(_) => connect(&shared.pool).await?,
            },
            Some((c, _)) => c,
            None => connect(&shared.pool).await?,
        };
        shared.statements.add(1);
        let result = sqlx::query(sqlx::AssertSqlSafe(shared.sql.clone()))
            .bind(&sid)
            .bind(&org)
            .bind(&after)
            .bind(&lim)
            .bind(&statuses)
            .bind(&aud)
            .fetch_all(&mut c)
            .await;
        match result {
            Ok(rows) => {
                *conn = Some((c, Instant::now()));
                return Ok(rows);
            }
            Err(e) if attempt == 1 && connection_lost(&e) => {
                tracing::warn!(error = %e, "status lane connection lost; reconnecting");
            }
            Err(e) => {
                // Possibly mid-message: not worth keeping.
                return Err(e);
            }
        }
    }
}

/// A connection of the pool's, detached from it, that plans the batch statement once. The
/// arrays' lengths vary, so PostgreSQL's custom plans look cheaper than the generic one and
/// it would plan every execution again (about 1 ms, more than running a batch); the generic
/// plan is index lookups in nested loops, right for any batch.
async fn connect(pool: &PgPool) -> Result<PgConnection, sqlx::Error> {
    let mut c = pool.acquire().await?.detach();
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut c)
        .await?;
    Ok(c)
}
