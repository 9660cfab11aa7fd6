//! `/metrics` in the Prometheus text format: HTTP requests by route and status with latency
//! histograms, upload jobs by status, rows processed, worker lag (age of the oldest job
//! waiting), database pool use and statements sent. Counters live in process; job figures are
//! read from the database at scrape time, so every instance reports the shared state.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::Shared;

const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Distinct operation names tracked; names past it count as `other` (clients choose names, and
/// an unbounded label set would grow without end).
const MAX_OPERATIONS: usize = 200;

#[derive(Clone, Default)]
pub struct Metrics {
    requests: Arc<Mutex<BTreeMap<(String, u16), u64>>>,
    /// Operation name → first error code → count.
    operations: Arc<Mutex<BTreeMap<String, BTreeMap<String, u64>>>>,
    latency: Arc<Mutex<BTreeMap<String, Histogram>>>,
    rows_processed: Arc<AtomicU64>,
    /// Operations answered by a compiled plan (`graphql::compiled`).
    compiled_answers: Arc<AtomicU64>,
}

impl Metrics {
    fn observe(&self, route: &str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((route.to_owned(), status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(route.to_owned()).or_default();
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        }
    }

    /// A GraphQL operation ended, with the code of its first error (`OK` without errors).
    pub fn observe_operation(&self, name: &str, code: &str) {
        if let Ok(mut o) = self.operations.lock() {
            let name: String = name.chars().take(100).collect();
            let name = if o.contains_key(&name) || o.len() < MAX_OPERATIONS {
                name
            } else {
                "other".into()
            };
            *o.entry(name)
                .or_default()
                .entry(code.to_owned())
                .or_default() += 1;
        }
    }

    /// An operation was answered by its compiled plan.
    pub fn count_compiled_answer(&self) {
        self.compiled_answers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn compiled_answers(&self) -> u64 {
        self.compiled_answers.load(Ordering::Relaxed)
    }

    /// Rows the worker committed (accepted and rejected alike).
    pub fn add_rows_processed(&self, n: u64) {
        self.rows_processed.fetch_add(n, Ordering::Relaxed);
    }
}

/// Counts each request under its route pattern (never the raw path: ids would make it
/// unbounded).
pub async fn track(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let res = next.run(req).await;
    state
        .service
        .metrics()
        .observe(&route, res.status().as_u16(), start.elapsed().as_secs_f64());
    res
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn render(State(state): State<Shared>) -> Response {
    let m = state.service.metrics();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP http_requests_total HTTP requests by route and status.\n# TYPE http_requests_total counter"
    );
    if let Ok(r) = m.requests.lock() {
        for ((route, status), n) in r.iter() {
            let _ = writeln!(
                out,
                "http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                label(route)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP graphql_operations_total GraphQL operations by name and first error code.\n# TYPE graphql_operations_total counter"
    );
    if let Ok(o) = m.operations.lock() {
        for (name, code, n) in o
            .iter()
            .flat_map(|(name, codes)| codes.iter().map(move |(c, n)| (name, c, n)))
        {
            let _ = writeln!(
                out,
                "graphql_operations_total{{operation=\"{}\",code=\"{}\"}} {n}",
                label(name),
                label(code)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP http_request_duration_seconds HTTP request latency by route.\n# TYPE http_request_duration_seconds histogram"
    );
    if let Ok(l) = m.latency.lock() {
        for (route, h) in l.iter() {
            let route = label(route);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP upload_rows_processed_total Rows committed by this instance's worker.\n# TYPE upload_rows_processed_total counter\nupload_rows_processed_total {}",
        m.rows_processed.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP graphql_compiled_answers_total Operations answered by a compiled status plan instead of the executor.\n# TYPE graphql_compiled_answers_total counter\ngraphql_compiled_answers_total {}",
        m.compiled_answers()
    );
    let _ = writeln!(
        out,
        "# HELP db_statements_total SQL statements sent by this instance.\n# TYPE db_statements_total counter\ndb_statements_total {}",
        state.statements.get()
    );
    let db = state.service.db();
    let (size, idle) = match db.get_database_backend() {
        DbBackend::Postgres => {
            let p = db.get_postgres_connection_pool();
            (p.size(), p.num_idle() as u32)
        }
        _ => {
            let p = db.get_sqlite_connection_pool();
            (p.size(), p.num_idle() as u32)
        }
    };
    let _ = writeln!(
        out,
        "# HELP db_pool_connections Database pool connections by state.\n# TYPE db_pool_connections gauge\n\
         db_pool_connections{{state=\"idle\"}} {idle}\ndb_pool_connections{{state=\"used\"}} {}",
        size.saturating_sub(idle)
    );
    // Shared state, read at scrape time.
    let _ = writeln!(
        out,
        "# HELP upload_jobs Upload jobs by status (all instances).\n# TYPE upload_jobs gauge"
    );
    let backend = db.get_database_backend();
    if let Ok(rows) = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT upload_status, COUNT(*) AS n FROM upload_job GROUP BY upload_status",
        ))
        .await
    {
        for r in rows {
            if let (Ok(status), Ok(n)) = (
                r.try_get::<String>("", "upload_status"),
                r.try_get::<i64>("", "n"),
            ) {
                let _ = writeln!(out, "upload_jobs{{status=\"{}\"}} {n}", label(&status));
            }
        }
    }
    let oldest = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT MIN(created_on) AS t FROM upload_job WHERE upload_status IN ('STARTED', 'PROCESSING')",
        ))
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get::<Option<chrono::DateTime<chrono::Utc>>>("", "t").ok().flatten());
    let lag = oldest
        .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    let _ = writeln!(
        out,
        "# HELP upload_worker_lag_seconds Age of the oldest unfinished upload job (0 when none).\n# TYPE upload_worker_lag_seconds gauge\nupload_worker_lag_seconds {lag}"
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
