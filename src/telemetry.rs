//! The service's metrics, through the `metrics` facade, rendered in the Prometheus text format
//! by `metrics-exporter-prometheus`. Each app records into a recorder of its own rather than the
//! process-wide one: the integration tests run many apps in one process, and each must count
//! only what it did. What is shared by every instance (jobs by status, worker lag) is not
//! counted here but read from the database when `/metrics` is scraped and set as gauges.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

/// Latency buckets of `http_request_duration_seconds`, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Distinct operation names tracked; names past it count as `other` (clients choose names, and
/// an unbounded label set would grow without end).
const MAX_OPERATIONS: usize = 200;

const REQUESTS: &str = "http_requests_total";
const LATENCY: &str = "http_request_duration_seconds";
const OPERATIONS: &str = "graphql_operations_total";
const ROWS: &str = "upload_rows_processed_total";
const COMPILED: &str = "graphql_compiled_answers_total";
const STATEMENTS: &str = "db_statements_total";
const POOL: &str = "db_pool_connections";
const JOBS: &str = "upload_jobs";
const LAG: &str = "upload_worker_lag_seconds";

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// Cheap to clone; every clone records into the same recorder.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    recorder: PrometheusRecorder,
    /// Operation names seen, to bound the label set.
    operations: Mutex<HashSet<String>>,
    /// Mirrors `graphql_compiled_answers_total`, which the facade cannot read back.
    compiled: AtomicU64,
    /// The label-less counters, registered once.
    compiled_total: metrics::Counter,
    rows: metrics::Counter,
    statements: metrics::Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(LATENCY.into()), &BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        for (name, what) in [
            (REQUESTS, "HTTP requests by route and status."),
            (
                OPERATIONS,
                "GraphQL operations by name and first error code.",
            ),
            (ROWS, "Rows committed by this instance's worker."),
            (
                COMPILED,
                "Operations answered by a compiled status plan instead of the executor.",
            ),
            (STATEMENTS, "SQL statements sent by this instance."),
        ] {
            recorder.describe_counter(name.into(), None, what.into());
        }
        recorder.describe_histogram(
            LATENCY.into(),
            None,
            "HTTP request latency by route.".into(),
        );
        for (name, what) in [
            (POOL, "Database pool connections by state."),
            (JOBS, "Upload jobs by status (all instances)."),
            (
                LAG,
                "Age of the oldest unfinished upload job (0 when none).",
            ),
        ] {
            recorder.describe_gauge(name.into(), None, what.into());
        }
        // Registered now, so a scrape shows them before anything happened.
        let counter =
            |name: &'static str| recorder.register_counter(&Key::from_name(name), &METADATA);
        let (compiled_total, rows, statements) =
            (counter(COMPILED), counter(ROWS), counter(STATEMENTS));
        Self(Arc::new(Inner {
            recorder,
            operations: Mutex::default(),
            compiled: AtomicU64::new(0),
            compiled_total,
            rows,
            statements,
        }))
    }
}

impl Metrics {
    fn counter(&self, name: &'static str, labels: Vec<Label>) -> metrics::Counter {
        self.0
            .recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>) -> metrics::Gauge {
        self.0
            .recorder
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
    }

    /// An HTTP request ended, under its route pattern (never the raw path: ids would make the
    /// label set unbounded).
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        let route = Label::new("route", route.to_owned());
        self.counter(
            REQUESTS,
            vec![route.clone(), Label::new("status", status.to_string())],
        )
        .increment(1);
        self.0
            .recorder
            .register_histogram(&Key::from_parts(LATENCY, vec![route]), &METADATA)
            .record(seconds);
    }

    /// A GraphQL operation ended, with the code of its first error (`OK` without errors).
    pub fn observe_operation(&self, name: &str, code: &str) {
        let name: String = name.chars().take(100).collect();
        let name = {
            let mut seen = self.0.operations.lock().unwrap_or_else(|p| p.into_inner());
            if seen.contains(&name) || seen.len() < MAX_OPERATIONS {
                seen.insert(name.clone());
                name
            } else {
                "other".into()
            }
        };
        self.counter(
            OPERATIONS,
            vec![
                Label::new("operation", name),
                Label::new("code", code.to_owned()),
            ],
        )
        .increment(1);
    }

    /// An operation was answered by its compiled plan.
    pub fn count_compiled_answer(&self) {
        self.0.compiled.fetch_add(1, Ordering::Relaxed);
        self.0.compiled_total.increment(1);
    }

    pub fn compiled_answers(&self) -> u64 {
        self.0.compiled.load(Ordering::Relaxed)
    }

    /// Rows the worker committed (accepted and rejected alike).
    pub fn add_rows_processed(&self, n: u64) {
        self.0.rows.increment(n);
    }

    /// The exposition text, with the figures read at scrape time set first.
    pub fn render(&self, scrape: &Scrape) -> String {
        self.0.statements.absolute(scrape.statements);
        for (state, n) in [("idle", scrape.pool_idle), ("used", scrape.pool_used)] {
            self.gauge(POOL, vec![Label::new("state", state)])
                .set(n as f64);
        }
        for (status, n) in &scrape.jobs_by_status {
            self.gauge(JOBS, vec![Label::new("status", *status)])
                .set(*n as f64);
        }
        self.gauge(LAG, vec![]).set(scrape.worker_lag_secs);
        self.0.recorder.handle().render()
    }
}

/// What `/metrics` reads when it is scraped.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub statements: u64,
    pub pool_idle: u32,
    pub pool_used: u32,
    /// Every status, with 0 for those no job has (a gauge that is not set again keeps its value).
    pub jobs_by_status: Vec<(&'static str, i64)>,
    pub worker_lag_secs: f64,
}
