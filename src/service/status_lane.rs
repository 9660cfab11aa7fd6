//! PostgreSQL only: `uploadStatus` pages read in batches over a few connections of their own.
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

use crate::db::StatementCounter;
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
    reply: oneshot::Sender<Result<Vec<PgRow>, Arc<sqlx::Error>>>,
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
    /// Starts [`LANES`] lane tasks reading with `columns` (the select list over `s`, `j`, `g`
    /// and `v`). They end when the lane is dropped; their connections close with them.
    pub fn start(pool: PgPool, columns: &str, statements: StatementCounter) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(LaneShared {
            rx: Mutex::new(rx),
            pool,
            sql: batch_sql(columns).into(),
            statements,
        });
        for _ in 0..LANES {
            tokio::spawn(serve(shared.clone()));
        }
        Self { tx }
    }

    /// The rows of one page: none when the series is not the org's, else one per job (or one
    /// with the job's columns NULL when the page is empty), newest first.
    pub async fn read(&self, ask: PageAsk) -> AppResult<Vec<PgRow>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Queued { ask, reply })
            .map_err(|_| AppError::Internal(anyhow::anyhow!("the status lane has stopped")))?;
        match answer.await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(AppError::Internal(anyhow::anyhow!(
                "reading upload status: {e}"
            ))),
            Err(_) => Err(AppError::Internal(anyhow::anyhow!(
                "the status lane stopped before answering"
            ))),
        }
    }
}

/// One statement for a batch: each request is a row of `unnest(…) WITH ORDINALITY`, and its
/// rows come back together, in request order, each tagged with the request's ordinal first.
/// Groups and versions are joined on the job's org (the series' org, by the `LATERAL` filter):
/// on the series' own, the planner scanned the org's whole group index per job.
fn batch_sql(columns: &str) -> String {
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

/// Splits the rows by their request ordinal (1-based, in order) and answers each request.
fn answer(batch: Vec<Queued>, rows: Vec<PgRow>) {
    let mut rows = rows.into_iter().peekable();
    for (i, q) in batch.into_iter().enumerate() {
        let n = i as i64 + 1;
        let mut mine = Vec::new();
        while let Some(row) = rows.next_if(|r| r.try_get::<i64, _>(0).is_ok_and(|m| m == n)) {
            mine.push(row);
        }
        let _ = q.reply.send(Ok(mine));
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
            Err(e @ (sqlx::Error::Io(_) | sqlx::Error::Protocol(_))) if attempt == 1 => {
                tracing::warn!(error = %e, "status lane connection failed; reconnecting");
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
