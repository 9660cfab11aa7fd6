//! Read-path benchmark on PostgreSQL: `uploadStatus` under concurrent load, against the
//! database's own floor for the same rows.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench_status -- \
//!     [--runs 3] [--seconds 20] [--connections 32] \
//!     [--database-url postgres://postgres@127.0.0.1:5432/test] \
//!     [--server-bin target/release/coupon-upload-api] [--keep-db]
//! ```
//!
//! Once, on a fresh database `bench_status_<random>` created through `--database-url` (dropped
//! at the end, also on error or Ctrl-C, unless `--keep-db`):
//!
//! 1. applies the migrations with the server binary's `migrate` (a copy taken when the benchmark
//!    starts, so a rebuild meanwhile changes nothing), then **seeds** deterministically (fixed
//!    seed) through the crate's own sea-orm entities, in chunks of [`INSERT_CHUNK`] rows: 10 orgs,
//!    1,000 coupon series per org, 1–10 upload jobs per series (≈55,000), 200 audience groups per
//!    org with 1–5 versions each. Rows are what the service itself leaves behind (see
//!    [`seed::generate`]): mostly `FINISHED` jobs with counts and result-file keys, some
//!    `ERRORED`, `CANCELLED` (before pick-up or mid-job), and a `STARTED` or `PROCESSING` newest
//!    job here and there; a group exists exactly for the series with a finished tagged upload, and
//!    each such upload formed one version of it. Coupons and staged rows are not seeded: the read
//!    path never reads them. Then `ANALYZE`, and one `READ` key per org with `api-key create`.
//!
//! Then, per run (`--runs`, on the same database):
//!
//! 2. starts the release server as a child process (`--no-worker`, since the seeded in-flight
//!    jobs have no files; `--rate-limit-per-second 0`, since the per-key limit would otherwise
//!    cap the load; everything else default) and loads it on loopback with `--connections`
//!    HTTP/1.1 keep-alive connections (one task each, with a minimal HTTP/1.1 client: `load::http1`), for
//!    [`WARMUP`] not counted, then `--seconds`. Each request is `POST /graphql` with the key of
//!    the series' org and [`QUERY`] (the 16 Capillary fields of every job, plus the nested
//!    audience group and version) for a uniformly random series. Every response is checked:
//!    HTTP 200, no `errors`, the requested `couponSeriesId`, the seeded number of jobs, newest
//!    first, of the right org and series, and nested audience data matching the ids. Failures
//!    are counted (warm-up included) and the first few printed;
//! 3. samples the server's VmRSS every 20 ms during the load; the peak is the largest sample or
//!    VmHWM read at the end, whichever is larger;
//! 4. stops the server and measures the **floor** at the same concurrency: `pgbench -n -M
//!    prepared -c <connections> -j 2 -T <seconds>` running [`FLOOR_SQL`], one prepared statement
//!    returning the same rows and columns for a random series;
//! 5. prints requests/s, p50 and p99 latency, errors, peak RSS, the floor's transactions/s and
//!    the ratio requests/s ÷ floor.
//!
//! At the end: the medians, and the targets (ratio ≥ 0.4, p99 ≤ 10 ms, peak RSS ≤ 50 MiB) judged
//! on them. The exit status is non-zero only when a request failed its checks or the benchmark
//! itself failed. Progress and diagnostics (seeding, CPU used by the load generator and the
//! server, throughput per second, latency by number of jobs, the slowest requests, the server
//! log's tail on failure) go to stderr. The load generator shares the machine with the server
//! and PostgreSQL, as pgbench does for the floor; its CPU share is printed so it can be judged.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::{self, Connection};
use serde::Deserialize;

use common::{
    BenchDb, RssSampler, Server, create_api_key, first_error, median, mib, pin_server_bin,
    proc_status_kib, server_version,
};

/// Load before the measured window, not counted (connections opened, caches warm).
const WARMUP: Duration = Duration::from_secs(2);
/// Longest a request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Failures printed per run (all are counted).
const FAILURES_SHOWN: usize = 5;
/// Rows per `insert_many` statement while seeding.
const INSERT_CHUNK: usize = 1_000;

/// The request: the 16 fields of Capillary's status API for every job, plus the nested
/// audience group and version.
const QUERY: &str = "query($id: ID!) { uploadStatus(couponSeriesId: $id) { couponSeriesId uploadJobStatuses { \
    jobId orgId couponSeriesId uploadStatus createdOn updatedOn errorFileUrl successFileUrl uploadedFileUrl \
    totalUploadedCount actualRowCount errorCount uploadTableName uploadedFileName audienceGroupId audienceGroupVersionId \
    audienceGroup { id name } audienceGroupVersion { id versionNumber customerCount } } } }";

/// The floor's pgbench script: a random series of the seeded layout (its org follows from its
/// id), then one statement returning what [`QUERY`] needs of the same rows, with the same filter,
/// order and page size (100) as the service.
const FLOOR_SQL: &str = "\\set sid random(1, 10000)
\\set org (:sid - 1) / 1000 + 1
SELECT j.id, j.org_id, j.coupon_series_id, j.upload_status, j.created_on, j.updated_on,
       j.error_file_key, j.success_file_key, j.uploaded_file_key,
       j.total_uploaded_count, j.actual_row_count, j.error_count,
       j.upload_table_name, j.uploaded_file_name, j.audience_group_id, j.audience_group_version_id,
       g.id, g.name, v.id, v.version_number, v.customer_count
  FROM upload_job j
  LEFT JOIN audience_group g ON g.id = j.audience_group_id
  LEFT JOIN audience_group_version v ON v.id = j.audience_group_version_id
 WHERE j.org_id = :org AND j.coupon_series_id = :sid
 ORDER BY j.id DESC
 LIMIT 100;
";

#[derive(Parser, Debug)]
#[command(about = "Benchmark uploadStatus over HTTP against a pgbench floor of the same rows")]
struct Args {
    /// Runs (load + floor) on the same seeded database.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Measured seconds of load per run (after a 2 s warm-up), and of pgbench.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Concurrent keep-alive connections (and pgbench clients).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// A PostgreSQL database to connect to for `CREATE DATABASE` / `DROP DATABASE`.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
    /// The server binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/coupon-upload-api")]
    server_bin: PathBuf,
    /// Keep the seeded database afterwards (its name is printed).
    #[arg(long)]
    keep_db: bool,
}

/// What one run measured.
#[derive(Clone, Debug)]
struct RunResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    idle_rss_kib: u64,
    peak_rss_kib: u64,
    floor_tps: f64,
}

impl RunResult {
    fn ratio(&self) -> f64 {
        self.rps / self.floor_tps
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    ensure!(
        args.runs > 0 && args.seconds > 0 && args.connections > 0,
        "--runs, --seconds and --connections must be positive"
    );
    let pgbench = pgbench_version()?;
    // A copy, so a rebuild during the benchmark cannot change the server between runs.
    let pinned = pin_server_bin(&args.server_bin, "bench_status")?;
    let version = server_version(&args.database_url).await?;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bench_status: PostgreSQL {version} ({pgbench}), {cpus} CPUs, server {} (built {}), \
         {} connections, {} s (+{} s warm-up), {} run(s)",
        args.server_bin.display(),
        pinned.built,
        args.connections,
        args.seconds,
        WARMUP.as_secs(),
        args.runs
    );
    args.server_bin = pinned.path.clone();

    let db = BenchDb::create(&args.database_url, "bench_status_").await?;
    eprintln!("database {}", db.name);
    // Ctrl-C drops the benchmark (and with it the server process), then the database.
    let result = tokio::select! {
        r = bench(&args, &db.url) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let dropped = if args.keep_db {
        eprintln!("kept database {} ({})", db.name, db.url);
        Ok(())
    } else {
        db.drop().await
    };
    let results = first_error(result, dropped)?;

    println!();
    println!("{}", summary_line(&results));
    println!("{}", targets_line(&results));
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    ensure!(errors == 0, "{errors} request(s) failed their checks");
    Ok(())
}

/// `pgbench --version`, which also checks that it can be run.
fn pgbench_version() -> Result<String> {
    let out = Command::new("pgbench")
        .arg("--version")
        .output()
        .context("running pgbench (is it installed and on PATH?)")?;
    ensure!(out.status.success(), "pgbench --version failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Seeds the database, then runs the load and the floor `--runs` times.
async fn bench(args: &Args, db_url: &str) -> Result<Vec<RunResult>> {
    let dir = tempfile::Builder::new().prefix("bench_status").tempdir()?;
    migrate(&args.server_bin, db_url, dir.path()).await?;

    let t = Instant::now();
    let seeded = seed::seed(db_url).await.context("seeding")?;
    eprintln!(
        "seeded in {:.1} s: {}",
        t.elapsed().as_secs_f64(),
        seeded.summary
    );
    let mut keys = Vec::new();
    for org in 1..=seed::ORGS {
        keys.push(create_api_key(&args.server_bin, db_url, dir.path(), org, "READ").await?);
    }
    let target = Arc::new(Target {
        keys,
        jobs_per_series: seeded.jobs_per_series,
        query: serde_json::to_string(QUERY)?,
    });
    let script = dir.path().join("floor.sql");
    std::fs::write(&script, FLOOR_SQL)?;

    let mut results = Vec::new();
    for run in 1..=args.runs {
        let r = run_once(args, db_url, dir.path(), &target, &script, run)
            .await
            .with_context(|| format!("run {run}"))?;
        println!("{}", run_line(&r, run, args.runs));
        results.push(r);
    }
    Ok(results)
}

/// The pinned binary's `migrate`: the schema the server under test expects.
async fn migrate(bin: &Path, db_url: &str, dir: &Path) -> Result<()> {
    let mut cmd = Command::new(bin);
    cmd.args(["migrate", "--database-url", db_url])
        .env("RUST_LOG", "warn")
        .current_dir(dir);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    ensure!(
        out.status.success(),
        "migrate failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `CHECKPOINT`, so a measurement does not pay for earlier dirty pages.
async fn checkpoint(db_url: &str) -> Result<()> {
    let mut conn = PgConnection::connect(db_url).await?;
    sqlx::query("CHECKPOINT").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// One run

async fn run_once(
    args: &Args,
    db_url: &str,
    dir: &Path,
    target: &Arc<Target>,
    script: &Path,
    run: u32,
) -> Result<RunResult> {
    checkpoint(db_url).await?;
    let mut server = Server::start(
        &args.server_bin,
        db_url,
        dir,
        &["--no-worker", "--rate-limit-per-second", "0"],
    )
    .await?;
    let idle_rss_kib = proc_status_kib(server.pid(), "VmRSS")?;
    let sampler = RssSampler::start(server.pid());
    let cpu0 = CpuUse::now(server.pid());
    let load = load::run(
        &server.base,
        target.clone(),
        args.connections,
        Duration::from_secs(args.seconds),
        run,
    )
    .await;
    let cpu = CpuUse::now(server.pid()).since(&cpu0);
    let sampled = sampler.stop().await;
    let hwm = proc_status_kib(server.pid(), "VmHWM")?;
    let alive = server.check_alive();
    if load.is_err() || alive.is_err() {
        eprintln!("--- server log (last lines) ---\n{}", server.log_tail(40));
    }
    server.stop().await?;
    alive?;
    let load = load?;
    let wall = load.wall.as_secs_f64();
    eprintln!(
        "[run {run}] {} requests in {wall:.1} s (warm-up included); {}",
        load.total,
        cpu.describe(wall)
    );
    load.diagnostics(run);

    checkpoint(db_url).await?;
    let machine0 = CpuUse::machine();
    let floor = floor(db_url, script, args.connections, args.seconds)?;
    eprintln!(
        "[run {run}] floor: {} transactions, {:.0} tps, latency average {:.3} ms; machine {:.2} cores busy (pgbench and PostgreSQL)",
        floor.transactions,
        floor.tps,
        floor.latency_ms,
        (CpuUse::machine() - machine0) / args.seconds as f64
    );

    let mut lat = load.latencies_us();
    lat.sort_unstable();
    Ok(RunResult {
        rps: lat.len() as f64 / args.seconds as f64,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        errors: load.errors,
        idle_rss_kib,
        peak_rss_kib: sampled.max(hwm),
        floor_tps: floor.tps,
    })
}

/// The `q` quantile of sorted microseconds, in milliseconds (nearest rank).
fn percentile(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}

/// CPU seconds used so far (at the usual 100 ticks per second): by the whole machine (busy time
/// from `/proc/stat`), the server, PostgreSQL (every process named `postgres`; its backends for
/// the server's pool live through the load) and this process (the load generator).
#[derive(Clone, Copy, Debug)]
struct CpuUse {
    machine: f64,
    server: f64,
    postgres: f64,
    me: f64,
}

impl CpuUse {
    fn now(server_pid: u32) -> Self {
        let mut postgres = 0.0;
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                match process_cpu(pid) {
                    Some((comm, secs)) if comm == "postgres" => postgres += secs,
                    _ => {}
                }
            }
        }
        Self {
            machine: Self::machine(),
            server: process_cpu(server_pid).map_or(0.0, |(_, s)| s),
            postgres,
            me: process_cpu(std::process::id()).map_or(0.0, |(_, s)| s),
        }
    }

    /// Busy CPU seconds of the whole machine (all but idle and iowait).
    fn machine() -> f64 {
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return 0.0;
        };
        let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
            return 0.0;
        };
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is within user).
        let busy: u64 = v
            .iter()
            .take(8)
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, t)| t)
            .sum();
        busy as f64 / 100.0
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            machine: self.machine - earlier.machine,
            server: self.server - earlier.server,
            postgres: self.postgres - earlier.postgres,
            me: self.me - earlier.me,
        }
    }

    /// In cores (CPU seconds per second of `wall`), with what the rest of the machine used:
    /// anything much above zero means other work disturbed the measurement.
    fn describe(&self, wall: f64) -> String {
        let other = (self.machine - self.server - self.postgres - self.me).max(0.0);
        let mut out = format!(
            "CPU in cores: machine {:.2} busy = server {:.2} + PostgreSQL {:.2} + load generator {:.2} + other {:.2}",
            self.machine / wall,
            self.server / wall,
            self.postgres / wall,
            self.me / wall,
            other / wall
        );
        if other / wall > 0.2 {
            out.push_str(" (WARNING: other processes were busy; the figures are disturbed)");
        }
        out
    }
}

/// A process's command name and user + system CPU seconds (`/proc/<pid>/stat`).
fn process_cpu(pid: u32) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; after it, state is the first
    // field, utime the 12th and stime the 13th.
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some((comm.to_string(), (ticks(11) + ticks(12)) as f64 / 100.0))
}

// ---------------------------------------------------------------------------------------------
// The floor

struct Floor {
    tps: f64,
    latency_ms: f64,
    transactions: u64,
}

/// pgbench with the script at the same concurrency, on the same database.
fn floor(db_url: &str, script: &Path, connections: usize, seconds: u64) -> Result<Floor> {
    let threads = connections.min(2);
    let out = Command::new("pgbench")
        .args(["-n", "-M", "prepared"])
        .args(["-c", &connections.to_string()])
        .args(["-j", &threads.to_string()])
        .args(["-T", &seconds.to_string()])
        .arg("-f")
        .arg(script)
        .arg(db_url)
        .output()
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "pgbench failed ({}): {stdout}{stderr}",
        out.status
    );
    // pgbench 15: "tps = 12345.678901 (without initial connection time)",
    // "latency average = 2.591 ms", "number of transactions actually processed: 246935",
    // "number of failed transactions: 0 (0.000%)".
    let field = |prefix: &str| -> Option<&str> {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(str::trim)
    };
    let tps = field("tps = ")
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench's output:\n{stdout}"))?;
    let latency_ms = field("latency average = ")
        .and_then(|v| v.trim_end_matches("ms").trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let transactions = field("number of transactions actually processed:")
        .and_then(|v| v.split('/').next()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if let Some(failed) = field("number of failed transactions:") {
        ensure!(
            failed.starts_with("0 "),
            "pgbench transactions failed: {failed}\n{stdout}{stderr}"
        );
    }
    Ok(Floor {
        tps,
        latency_ms,
        transactions,
    })
}

// ---------------------------------------------------------------------------------------------
// The load generator

/// What the load needs to know: a key per org, the seeded job count per series (to check each
/// answer), and the query as a JSON string.
struct Target {
    /// `keys[org - 1]`.
    keys: Vec<String>,
    /// `jobs_per_series[series_id - 1]`.
    jobs_per_series: Vec<u8>,
    query: String,
}

mod load {
    use super::*;

    /// One measured request.
    #[derive(Clone, Copy)]
    pub struct Sample {
        /// Since the start of the measured window.
        pub at_ms: u32,
        pub latency_us: u32,
        pub series_id: u32,
        pub jobs: u8,
    }

    pub struct Load {
        pub samples: Vec<Sample>,
        /// Requests, warm-up included.
        pub total: u64,
        /// Failed checks, warm-up included.
        pub errors: u64,
        /// The first failures, as text.
        pub failures: Vec<String>,
        pub wall: Duration,
    }

    /// What one connection's task did.
    #[derive(Default)]
    struct TaskResult {
        samples: Vec<Sample>,
        total: u64,
        errors: u64,
        failures: Vec<String>,
    }

    /// `connections` tasks, each with its own keep-alive connection, sending requests back
    /// to back for the warm-up and `seconds`.
    pub async fn run(
        base: &str,
        target: Arc<Target>,
        connections: usize,
        seconds: Duration,
        run: u32,
    ) -> Result<Load> {
        let addr = base
            .strip_prefix("http://")
            .context("the server's base URL is not http://")?
            .to_owned();
        let t0 = Instant::now();
        let measure_from = t0 + WARMUP;
        let until = measure_from + seconds;
        let mut tasks = Vec::new();
        for i in 0..connections {
            let (addr, target) = (addr.clone(), target.clone());
            let seed = super::seed::SEED ^ (u64::from(run) << 32) ^ (i as u64 + 1);
            tasks.push(tokio::spawn(async move {
                let mut rng = super::seed::Rng::new(seed);
                let mut out = TaskResult::default();
                let mut conn: Option<http1::Conn> = None;
                loop {
                    let start = Instant::now();
                    if start >= until {
                        break;
                    }
                    let series_id = 1 + rng.below(target.jobs_per_series.len() as u64) as u32;
                    let checked = tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        request(&mut conn, &addr, &target, series_id),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}"))
                    });
                    if checked.is_err() {
                        // A failed exchange may leave the connection mid-response.
                        conn = None;
                    }
                    let latency = start.elapsed();
                    out.total += 1;
                    if start >= measure_from {
                        out.samples.push(Sample {
                            at_ms: (start - measure_from).as_millis() as u32,
                            latency_us: latency.as_micros().min(u128::from(u32::MAX)) as u32,
                            series_id,
                            jobs: target.jobs_per_series[series_id as usize - 1],
                        });
                    }
                    if let Err(e) = checked {
                        out.errors += 1;
                        if out.failures.len() < FAILURES_SHOWN {
                            out.failures.push(format!(
                                "series {series_id} at {:.3} s: {e:#}",
                                (start - t0).as_secs_f64()
                            ));
                        }
                    }
                }
                out
            }));
        }
        let mut load = Load {
            samples: Vec::new(),
            total: 0,
            errors: 0,
            failures: Vec::new(),
            wall: Duration::ZERO,
        };
        for task in tasks {
            let r = task.await?;
            load.samples.extend(r.samples);
            load.total += r.total;
            load.errors += r.errors;
            load.failures.extend(r.failures);
        }
        load.wall = t0.elapsed();
        load.failures.truncate(FAILURES_SHOWN);
        Ok(load)
    }

    // The answer, borrowed from the body: the ids are plain digits, never escaped (a string
    // that needed unescaping fails to parse, and the request counts as failed).
    #[derive(Deserialize)]
    struct Response<'a> {
        #[serde(borrow)]
        data: Option<Data<'a>>,
        errors: Option<serde::de::IgnoredAny>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data<'a> {
        #[serde(borrow)]
        upload_status: Option<Status<'a>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Status<'a> {
        coupon_series_id: &'a str,
        #[serde(borrow)]
        upload_job_statuses: Vec<Job<'a>>,
    }

    /// The fields checked (the others are skipped unread).
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Job<'a> {
        job_id: &'a str,
        org_id: &'a str,
        coupon_series_id: &'a str,
        audience_group_id: Option<&'a str>,
        audience_group_version_id: Option<&'a str>,
        #[serde(borrow)]
        audience_group: Option<Nested<'a>>,
        #[serde(borrow)]
        audience_group_version: Option<Nested<'a>>,
    }

    #[derive(Deserialize)]
    struct Nested<'a> {
        id: &'a str,
    }

    /// One `uploadStatus` request for `series_id` with its org's key, and the checks. Sent on
    /// `conn`, opened to `addr` first if there is none.
    async fn request(
        conn: &mut Option<http1::Conn>,
        addr: &str,
        target: &Target,
        series_id: u32,
    ) -> Result<()> {
        let org = super::seed::org_of(i64::from(series_id));
        let body = format!(
            r#"{{"query":{},"variables":{{"id":"{series_id}"}}}}"#,
            target.query
        );
        if conn.is_none() {
            *conn = Some(http1::Conn::open(addr).await?);
        }
        let c = conn.as_mut().expect("opened");
        let (status, bytes) = c
            .post("/graphql", &target.keys[org as usize - 1], body.as_bytes())
            .await?;
        if status != 200 {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(bytes));
        }
        let answer: Response = serde_json::from_slice(bytes).with_context(|| {
            format!("not the expected JSON: {}", String::from_utf8_lossy(bytes))
        })?;
        if answer.errors.is_some() {
            bail!("errors: {}", String::from_utf8_lossy(bytes));
        }
        let s = answer
            .data
            .and_then(|d| d.upload_status)
            .context("no data.uploadStatus")?;
        let want = series_id.to_string();
        ensure!(
            s.coupon_series_id == want,
            "couponSeriesId is {}",
            s.coupon_series_id
        );
        let jobs = &s.upload_job_statuses;
        let seeded = target.jobs_per_series[series_id as usize - 1];
        ensure!(
            jobs.len() == usize::from(seeded),
            "{} jobs, seeded {seeded}",
            jobs.len()
        );
        let org = org.to_string();
        let mut previous = i64::MAX;
        for job in jobs {
            ensure!(
                job.org_id == org && job.coupon_series_id == want,
                "job {} of org {} and series {}",
                job.job_id,
                job.org_id,
                job.coupon_series_id
            );
            let id: i64 = job.job_id.parse().context("jobId is not an integer")?;
            ensure!(
                id < previous,
                "jobs not newest first ({id} after {previous})"
            );
            previous = id;
            let group = job.audience_group.as_ref().map(|g| g.id);
            let version = job.audience_group_version.as_ref().map(|v| v.id);
            ensure!(
                group == job.audience_group_id && version == job.audience_group_version_id,
                "job {id}: audienceGroup {group:?} / audienceGroupId {:?}, audienceGroupVersion {version:?} / audienceGroupVersionId {:?}",
                job.audience_group_id,
                job.audience_group_version_id
            );
        }
        Ok(())
    }

    /// A minimal HTTP/1.1 keep-alive client, one connection, one request at a time: what the
    /// benchmark needs and no more, so the load generator takes as little of the machine as it
    /// can (as pgbench does for the floor). reqwest took about 45 us of CPU per request here,
    /// a third of the server's.
    pub mod http1 {
        use anyhow::{Context, Result, bail};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::TcpStream;

        pub struct Conn {
            stream: TcpStream,
            host: String,
            /// The request being written, then the response being read.
            out: Vec<u8>,
            buf: Vec<u8>,
        }

        impl Conn {
            pub async fn open(addr: &str) -> Result<Self> {
                let stream = TcpStream::connect(addr)
                    .await
                    .with_context(|| format!("connecting to {addr}"))?;
                stream.set_nodelay(true)?;
                Ok(Self {
                    stream,
                    host: addr.to_owned(),
                    out: Vec::with_capacity(2048),
                    buf: Vec::with_capacity(16 * 1024),
                })
            }

            /// POSTs a JSON body with a bearer key; the status and the body. The server must
            /// answer with `Content-Length` (hyper does for a whole body).
            pub async fn post(
                &mut self,
                path: &str,
                key: &str,
                body: &[u8],
            ) -> Result<(u16, &[u8])> {
                use std::io::Write;
                self.out.clear();
                write!(
                    self.out,
                    "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    self.host,
                    body.len()
                )?;
                self.out.extend_from_slice(body);
                self.stream.write_all(&self.out).await?;
                self.buf.clear();
                let (status, head, length) = loop {
                    if self.stream.read_buf(&mut self.buf).await? == 0 {
                        bail!("the server closed the connection");
                    }
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    let mut res = httparse::Response::new(&mut headers);
                    if let httparse::Status::Complete(head) = res.parse(&self.buf)? {
                        let status = res.code.context("no status code")?;
                        let mut length = None;
                        for h in res.headers.iter() {
                            if h.name.eq_ignore_ascii_case("content-length") {
                                length =
                                    Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                bail!("a chunked response: not supported here");
                            }
                        }
                        break (status, head, length.context("no Content-Length")?);
                    }
                };
                while self.buf.len() < head + length {
                    if self.stream.read_buf(&mut self.buf).await? == 0 {
                        bail!("the server closed the connection mid-body");
                    }
                }
                if self.buf.len() > head + length {
                    bail!("more bytes than the response's length");
                }
                Ok((status, &self.buf[head..head + length]))
            }
        }
    }

    impl Load {
        pub fn latencies_us(&self) -> Vec<u32> {
            self.samples.iter().map(|s| s.latency_us).collect()
        }

        /// To stderr: the failures, requests per second of the window (lowest and highest
        /// second), latency by the series' number of jobs, and the slowest requests.
        pub fn diagnostics(&self, run: u32) {
            for f in &self.failures {
                eprintln!("[run {run}] FAILED {f}");
            }
            let mut per_second: Vec<u32> = Vec::new();
            for s in &self.samples {
                let i = (s.at_ms / 1000) as usize;
                if per_second.len() <= i {
                    per_second.resize(i + 1, 0);
                }
                per_second[i] += 1;
            }
            if let (Some(lo), Some(hi)) = (per_second.iter().min(), per_second.iter().max()) {
                eprintln!("[run {run}] requests per second of the window: min {lo}, max {hi}");
            }
            let mut by_jobs = String::new();
            for n in 1..=super::seed::MAX_JOBS_PER_SERIES {
                let mut lat: Vec<u32> = self
                    .samples
                    .iter()
                    .filter(|s| s.jobs == n)
                    .map(|s| s.latency_us)
                    .collect();
                lat.sort_unstable();
                by_jobs.push_str(&format!(
                    " {n}:{:.2}/{:.2}",
                    percentile(&lat, 0.5),
                    percentile(&lat, 0.99)
                ));
            }
            eprintln!("[run {run}] p50/p99 ms by jobs in the series:{by_jobs}");
            let mut slowest = self.samples.clone();
            slowest.sort_unstable_by_key(|s| std::cmp::Reverse(s.latency_us));
            let list: Vec<String> = slowest
                .iter()
                .take(5)
                .map(|s| {
                    format!(
                        "{:.1} ms (series {}, {} jobs, at {:.2} s)",
                        f64::from(s.latency_us) / 1000.0,
                        s.series_id,
                        s.jobs,
                        f64::from(s.at_ms) / 1000.0
                    )
                })
                .collect();
            eprintln!("[run {run}] slowest: {}", list.join(", "));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Seeding

mod seed {
    use super::*;
    use chrono::{DateTime, Utc};
    use coupon_upload_api::domain::{
        AudienceGroupStatus, AudienceGroupType, ClientHandlingType, CustomerIdentifierType,
        UploadJobStatus,
    };
    use coupon_upload_api::entity::{
        audience_group, audience_group_version, coupon_series, org, upload_job,
    };
    use sea_orm::ActiveValue::Set;
    use sea_orm::{
        ActiveModelTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait,
        IntoActiveModel,
    };

    pub const SEED: u64 = 0x5EED_0FC0_FFEE;
    pub const ORGS: i64 = 10;
    pub const SERIES_PER_ORG: i64 = 1_000;
    pub const MAX_JOBS_PER_SERIES: u8 = 10;
    const GROUPS_PER_ORG: usize = 200;
    const MAX_VERSIONS: u64 = 5;
    /// The worker's default rows per commit (`WORKER_BATCH_ROWS`).
    const BATCH_ROWS: i64 = 50_000;
    /// What `upload_job.upload_table_name` says (`service::uploads::UPLOAD_TABLE`).
    const UPLOAD_TABLE: &str = "upload_row";
    /// The instance that holds the seeded `PROCESSING` jobs' (lapsed) leases.
    const LEASE_OWNER: &str = "bench-seed-instance";

    /// Series ids are `1..=ORGS * SERIES_PER_ORG`, each org's a contiguous block.
    pub fn org_of(series_id: i64) -> i64 {
        (series_id - 1) / SERIES_PER_ORG + 1
    }

    /// SplitMix64: small, fast, and the same sequence on every platform and crate version.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Self(seed)
        }

        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
        pub fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }

        /// Uniform in `[0, 1)`.
        fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        fn chance(&mut self, p: f64) -> bool {
            self.unit() < p
        }

        fn hex(&mut self) -> String {
            format!("{:016x}{:016x}", self.next_u64(), self.next_u64())
        }
    }

    /// An `upload_job` row with every column the service sets. Columns added later (nullable or
    /// with a default) take their defaults, so the seed keeps compiling as the entity grows.
    pub struct Job {
        id: i64,
        org_id: i64,
        coupon_series_id: i64,
        upload_status: String,
        customer_identifier: String,
        customer_identifier_column: Option<i32>,
        coupon_code_column: Option<i32>,
        has_header: bool,
        uploaded_file_name: String,
        uploaded_file_key: Option<String>,
        uploaded_file_size: i64,
        error_file_key: Option<String>,
        success_file_key: Option<String>,
        upload_table_name: String,
        actual_row_count: i64,
        total_uploaded_count: i64,
        error_count: i64,
        processed_row_count: i64,
        error_reason: Option<String>,
        audience_group_id: Option<i64>,
        audience_group_version_id: Option<i64>,
        cancel_requested: bool,
        lease_owner: Option<String>,
        lease_expires_ms: Option<i64>,
        phase: String,
        committed_through: i64,
        attempts: i32,
        created_on: DateTime<Utc>,
        updated_on: DateTime<Utc>,
        finished_on: Option<DateTime<Utc>>,
    }

    impl IntoActiveModel<upload_job::ActiveModel> for Job {
        // `..Default::default()` covers the columns this list does not know (yet).
        #[allow(clippy::needless_update)]
        fn into_active_model(self) -> upload_job::ActiveModel {
            upload_job::ActiveModel {
                id: Set(self.id),
                org_id: Set(self.org_id),
                coupon_series_id: Set(self.coupon_series_id),
                upload_status: Set(self.upload_status),
                customer_identifier: Set(self.customer_identifier),
                customer_identifier_column: Set(self.customer_identifier_column),
                coupon_code_column: Set(self.coupon_code_column),
                has_header: Set(self.has_header),
                uploaded_file_name: Set(self.uploaded_file_name),
                uploaded_file_key: Set(self.uploaded_file_key),
                uploaded_file_size: Set(self.uploaded_file_size),
                error_file_key: Set(self.error_file_key),
                success_file_key: Set(self.success_file_key),
                upload_table_name: Set(self.upload_table_name),
                actual_row_count: Set(self.actual_row_count),
                total_uploaded_count: Set(self.total_uploaded_count),
                error_count: Set(self.error_count),
                processed_row_count: Set(self.processed_row_count),
                error_reason: Set(self.error_reason),
                audience_group_id: Set(self.audience_group_id),
                audience_group_version_id: Set(self.audience_group_version_id),
                cancel_requested: Set(self.cancel_requested),
                lease_owner: Set(self.lease_owner),
                lease_expires_ms: Set(self.lease_expires_ms),
                phase: Set(self.phase),
                committed_through: Set(self.committed_through),
                attempts: Set(self.attempts),
                created_on: Set(self.created_on),
                updated_on: Set(self.updated_on),
                finished_on: Set(self.finished_on),
                ..Default::default()
            }
        }
    }

    /// Everything the seed inserts, in dependency order.
    pub struct Generated {
        orgs: Vec<org::Model>,
        series: Vec<coupon_series::Model>,
        groups: Vec<audience_group::Model>,
        jobs: Vec<Job>,
        versions: Vec<audience_group_version::Model>,
        /// `jobs_per_series[series_id - 1]`.
        pub jobs_per_series: Vec<u8>,
    }

    pub struct Seeded {
        pub jobs_per_series: Vec<u8>,
        pub summary: String,
    }

    fn ms(t: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(t).unwrap_or_default()
    }

    const MINUTE: i64 = 60_000;
    const DAY: i64 = 24 * 60 * MINUTE;

    /// A file's size in bytes: a header and `rows` lines of a code (and a customer).
    fn file_size(rows: i64, tagged: bool) -> i64 {
        if tagged {
            20 + rows * 28
        } else {
            5 + rows * 13
        }
    }

    /// The rows as the service leaves them. Per series, jobs follow each other in time (ids
    /// increase with `createdOn`); all but the newest have ended: `FINISHED` (90 %, a third with
    /// rejected rows), `ERRORED` (6 %, a file-level reason, nothing counted), `CANCELLED` (4 %:
    /// before pick-up, nothing counted and no result files; or mid-job, keeping its committed
    /// batches, with result files). The newest is `STARTED` (2 %) or `PROCESSING` (3 %, at a
    /// batch boundary, its lease lapsed) or ends like the others. `FINISHED` and mid-job
    /// `CANCELLED` jobs have both result-file keys (the worker writes both, possibly empty); all
    /// have the uploaded file's key. `numUploadedTotal` is the sum of committed rows.
    ///
    /// Audience: per org, 200 series with at least one `FINISHED` job get a group; in each, 1–5
    /// of the finished jobs are tagged uploads (the series' identifier type), each forming the
    /// next version (customers = accepted rows, or fewer when the series allows several coupons
    /// per customer), pointing at it with `audienceGroupId` / `audienceGroupVersionId`; the
    /// group has the latest version's count. A finished tagged upload always forms a version, so
    /// other series have no finished tagged job; a quarter of the jobs that did not finish are
    /// tagged uploads anyway (they form nothing).
    pub fn generate() -> Generated {
        let mut rng = Rng::new(SEED);
        let base = 1_735_689_600_000; // 2025-01-01T00:00:00Z
        let types = [
            CustomerIdentifierType::Mobile,
            CustomerIdentifierType::Mobile,
            CustomerIdentifierType::Mobile,
            CustomerIdentifierType::Email,
            CustomerIdentifierType::ExternalId,
            CustomerIdentifierType::UserId,
        ];
        let campaigns = [
            "Summer sale",
            "Welcome offer",
            "Loyalty reward",
            "Black Friday",
            "Birthday treat",
            "Win-back",
        ];
        let mut g = Generated {
            orgs: Vec::new(),
            series: Vec::new(),
            groups: Vec::new(),
            jobs: Vec::new(),
            versions: Vec::new(),
            jobs_per_series: Vec::new(),
        };
        // Per series: its jobs' index range in `g.jobs` and its customer identifier type.
        let mut ranges = Vec::new();
        let mut kinds = Vec::new();

        for org_id in 1..=ORGS {
            g.orgs.push(org::Model {
                id: org_id,
                name: format!("org {org_id}"),
                created_on: ms(base - 30 * DAY),
            });
            for k in 0..SERIES_PER_ORG {
                let series_id = (org_id - 1) * SERIES_PER_ORG + k + 1;
                let created = base + rng.below((200 * DAY) as u64) as i64;
                let kind = types[rng.below(types.len() as u64) as usize];
                let allow_multiple = rng.chance(0.3);
                let n = 1 + rng.below(u64::from(MAX_JOBS_PER_SERIES)) as u8;
                let first = g.jobs.len();
                let mut t = created + MINUTE + rng.below((2 * DAY) as u64) as i64;
                for i in 0..n {
                    let newest = i + 1 == n;
                    let id = g.jobs.len() as i64 + 1;
                    g.jobs.push(job(&mut rng, id, org_id, series_id, t, newest));
                    t += 10 * MINUTE + rng.below((14 * DAY) as u64) as i64;
                }
                let jobs = &g.jobs[first..];
                let uploaded: i64 = jobs.iter().map(|j| j.total_uploaded_count).sum();
                let updated = jobs
                    .iter()
                    .filter(|j| j.total_uploaded_count > 0)
                    .map(|j| j.updated_on)
                    .max()
                    .unwrap_or(ms(created));
                let max_create = if rng.chance(0.2) && uploaded <= 5_000_000 {
                    5_000_000
                } else {
                    -1
                };
                g.series.push(coupon_series::Model {
                    id: series_id,
                    org_id,
                    name: format!(
                        "{} {}",
                        campaigns[rng.below(campaigns.len() as u64) as usize],
                        k + 1
                    ),
                    description: String::new(),
                    client_handling_type: ClientHandlingType::DiscCodePin.as_str().into(),
                    max_create,
                    allow_multiple_per_customer: allow_multiple,
                    code_max_length: 50,
                    num_uploaded_total: uploaded,
                    created_on: ms(created),
                    updated_on: updated,
                });
                g.jobs_per_series.push(n);
                ranges.push(first..g.jobs.len());
                kinds.push(kind);
            }
        }

        // Which series have a group: per org, 200 of those with a finished job, at random.
        let finished = UploadJobStatus::Finished.as_str();
        let mut with_group = vec![false; g.series.len()];
        for org_index in 0..ORGS as usize {
            let block = org_index * SERIES_PER_ORG as usize;
            let mut order: Vec<usize> = (block..block + SERIES_PER_ORG as usize).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            order
                .into_iter()
                .filter(|&s| {
                    g.jobs[ranges[s].clone()]
                        .iter()
                        .any(|j| j.upload_status == finished)
                })
                .take(GROUPS_PER_ORG)
                .for_each(|s| with_group[s] = true);
        }

        // Groups and versions in series order, versions in job order (ids increase with time).
        for (s, series) in g.series.iter().enumerate() {
            if !with_group[s] {
                continue;
            }
            let mut done: Vec<usize> = ranges[s]
                .clone()
                .filter(|&j| g.jobs[j].upload_status == finished)
                .collect();
            let k = 1 + rng.below(MAX_VERSIONS.min(done.len() as u64)) as usize;
            for i in 0..k {
                let pick = i + rng.below((done.len() - i) as u64) as usize;
                done.swap(i, pick);
            }
            let mut tagged = done[..k].to_vec();
            tagged.sort_unstable();
            let group_id = g.groups.len() as i64 + 1;
            let mut customers = 0;
            for (number, &j) in tagged.iter().enumerate() {
                let version_id = g.versions.len() as i64 + 1;
                let job = &mut g.jobs[j];
                tag(job, kinds[s]);
                customers = if series.allow_multiple_per_customer {
                    job.total_uploaded_count * (60 + rng.below(41) as i64) / 100
                } else {
                    job.total_uploaded_count
                };
                job.audience_group_id = Some(group_id);
                job.audience_group_version_id = Some(version_id);
                g.versions.push(audience_group_version::Model {
                    id: version_id,
                    org_id: series.org_id,
                    audience_group_id: group_id,
                    version_number: number as i32 + 1,
                    customer_count: customers,
                    status: AudienceGroupStatus::Active.as_str().into(),
                    upload_job_id: Some(job.id),
                    created_on: job.finished_on.unwrap_or(job.updated_on),
                });
            }
            let first = &g.versions[g.versions.len() - k];
            let last = &g.versions[g.versions.len() - 1];
            g.groups.push(audience_group::Model {
                id: group_id,
                org_id: series.org_id,
                coupon_series_id: series.id,
                name: format!("{} customers", series.name),
                group_type: AudienceGroupType::Upload.as_str().into(),
                status: AudienceGroupStatus::Active.as_str().into(),
                customer_count: customers,
                latest_version_number: k as i32,
                created_on: first.created_on,
                updated_on: last.created_on,
            });
        }

        // Tagged uploads that did not finish: they form nothing.
        for (s, range) in ranges.iter().enumerate() {
            for j in range.clone() {
                if g.jobs[j].upload_status != finished && rng.chance(0.25) {
                    tag(&mut g.jobs[j], kinds[s]);
                }
            }
        }
        g
    }

    /// Makes a job a tagged upload of `kind` (customer in column 1, code in the default
    /// column 0).
    fn tag(job: &mut Job, kind: CustomerIdentifierType) {
        job.customer_identifier = kind.as_str().into();
        job.customer_identifier_column = Some(1);
        job.uploaded_file_name = format!(
            "{}_{}",
            kind.as_str().to_lowercase(),
            job.uploaded_file_name
        );
        if job.uploaded_file_size > 0 {
            job.uploaded_file_size = file_size(job.actual_row_count.max(1), true);
        }
    }

    /// A job stopped at a batch boundary (`PROCESSING`, or `CANCELLED` mid-job): at least two
    /// batches of rows, some committed, rejected rows in proportion; when that happened.
    fn cut_at_batch(rng: &mut Rng, m: &mut Job, rows: i64, rejected: i64, t: i64) -> i64 {
        let rows = rows.max(2 * BATCH_ROWS) + rng.below(800_000) as i64;
        let through = BATCH_ROWS * (1 + rng.below((rows / BATCH_ROWS - 1) as u64) as i64);
        m.actual_row_count = rows;
        m.uploaded_file_size = file_size(rows, false);
        m.processed_row_count = through;
        m.committed_through = through;
        m.error_count = rejected * through / rows;
        m.total_uploaded_count = through - m.error_count;
        t + 300 + through / 150
    }

    /// One untagged job created at `t` (epoch ms), as the service would have left it.
    fn job(rng: &mut Rng, id: i64, org_id: i64, series_id: i64, t: i64, newest: bool) -> Job {
        let r = rng.unit();
        let status = if newest && r < 0.02 {
            UploadJobStatus::Started
        } else if newest && r < 0.05 {
            UploadJobStatus::Processing
        } else {
            let r = rng.unit();
            if r < 0.90 {
                UploadJobStatus::Finished
            } else if r < 0.96 {
                UploadJobStatus::Errored
            } else {
                UploadJobStatus::Cancelled
            }
        };
        // Rows: log-uniform from 10 to 1,000,000 (median ≈ 3,000).
        let rows = 10f64.powf(1.0 + 5.0 * rng.unit()).round() as i64;
        let rejected = if rng.chance(0.35) {
            ((rows as f64 * 0.25 * rng.unit()) as i64).max(1)
        } else {
            0
        };
        let names = [
            "coupons.csv",
            "codes.csv",
            "batch.csv",
            "promo codes (final).csv",
        ];
        let mut m = Job {
            id,
            org_id,
            coupon_series_id: series_id,
            upload_status: status.as_str().into(),
            customer_identifier: CustomerIdentifierType::NotTagged.as_str().into(),
            customer_identifier_column: None,
            coupon_code_column: None,
            has_header: true,
            uploaded_file_name: format!(
                "{}-{}",
                ms(t).format("%Y%m%d"),
                names[rng.below(names.len() as u64) as usize]
            ),
            uploaded_file_key: Some(format!("org/{org_id}/uploads/{}/uploaded.csv", rng.hex())),
            uploaded_file_size: file_size(rows, false),
            error_file_key: None,
            success_file_key: None,
            upload_table_name: UPLOAD_TABLE.into(),
            actual_row_count: 0,
            total_uploaded_count: 0,
            error_count: 0,
            processed_row_count: 0,
            error_reason: None,
            audience_group_id: None,
            audience_group_version_id: None,
            cancel_requested: false,
            lease_owner: None,
            lease_expires_ms: None,
            phase: "DONE".into(),
            committed_through: 0,
            attempts: 1,
            created_on: ms(t),
            updated_on: ms(t),
            finished_on: None,
        };
        // About 150,000 rows/s once picked up, which takes a moment.
        let end = t + 300 + rng.below(1_000) as i64 + rows / 150;
        match status {
            UploadJobStatus::Started => {
                m.phase = "STAGE".into();
                m.attempts = 0;
            }
            UploadJobStatus::Processing => {
                let at = cut_at_batch(rng, &mut m, rows, rejected, t);
                m.phase = "COMMIT".into();
                m.lease_owner = Some(LEASE_OWNER.into());
                m.lease_expires_ms = Some(at + 15_000);
                m.updated_on = ms(at);
            }
            UploadJobStatus::Finished => {
                m.actual_row_count = rows;
                m.processed_row_count = rows;
                m.committed_through = rows;
                m.error_count = rejected;
                m.total_uploaded_count = rows - rejected;
                m.error_file_key = Some(format!("org/{org_id}/jobs/{id}/errors.csv"));
                m.success_file_key = Some(format!("org/{org_id}/jobs/{id}/success.csv"));
                m.updated_on = ms(end);
                m.finished_on = Some(ms(end));
            }
            UploadJobStatus::Errored => {
                let reasons = [
                    "the file is empty: it has no rows",
                    "the file is not a text file (it contains NUL bytes); upload a CSV file saved as UTF-8 text",
                    "the file is not UTF-8 text: row 1 has characters in another encoding; save the file as \"CSV UTF-8\" and upload it again",
                ];
                let i = rng.below(reasons.len() as u64) as usize;
                if i == 0 {
                    m.uploaded_file_size = 0;
                }
                m.error_reason = Some(reasons[i].into());
                let at = t + 200 + rng.below(500) as i64;
                m.updated_on = ms(at);
                m.finished_on = Some(ms(at));
            }
            UploadJobStatus::Cancelled => {
                m.cancel_requested = true;
                let at = if rng.chance(0.5) {
                    // Before the worker picked it up.
                    m.attempts = 0;
                    t + 1_000 + rng.below(60_000) as i64
                } else {
                    // Mid-job: stopped at a batch boundary, with result files.
                    let at = cut_at_batch(rng, &mut m, rows, rejected, t);
                    m.error_file_key = Some(format!("org/{org_id}/jobs/{id}/errors.csv"));
                    m.success_file_key = Some(format!("org/{org_id}/jobs/{id}/success.csv"));
                    at
                };
                m.updated_on = ms(at);
                m.finished_on = Some(ms(at));
            }
        }
        m
    }

    /// `insert_many` in chunks of [`INSERT_CHUNK`]; the rows inserted.
    async fn insert_all<M, A>(db: &DatabaseConnection, rows: Vec<M>) -> Result<u64>
    where
        M: IntoActiveModel<A>,
        A: ActiveModelTrait + Send,
    {
        let mut inserted = 0;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            // Every column `Set`, the ids included (they are known up front).
            let chunk: Vec<A> = rows
                .by_ref()
                .take(INSERT_CHUNK)
                .map(|m| m.into_active_model().reset_all())
                .collect();
            inserted += A::Entity::insert_many(chunk)
                .exec_without_returning(db)
                .await?;
        }
        Ok(inserted)
    }

    /// Generates and inserts the rows, moves the id sequences past them, checks the audience
    /// links, and analyzes.
    pub async fn seed(db_url: &str) -> Result<Seeded> {
        let g = generate();
        let jobs_per_series = g.jobs_per_series.clone();
        let mut by_status = std::collections::BTreeMap::<String, usize>::new();
        for j in &g.jobs {
            *by_status.entry(j.upload_status.clone()).or_default() += 1;
        }
        let tagged = g
            .jobs
            .iter()
            .filter(|j| j.customer_identifier != CustomerIdentifierType::NotTagged.as_str())
            .count();
        let with_version = g.versions.len();
        let summary = format!(
            "{} orgs, {} series, {} jobs ({}), {tagged} tagged ({with_version} with a group version), \
             {} audience groups, {} versions",
            g.orgs.len(),
            g.series.len(),
            g.jobs.len(),
            by_status
                .iter()
                .map(|(s, n)| format!("{s} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            g.groups.len(),
            g.versions.len()
        );

        let db = Database::connect(db_url).await?;
        // Foreign keys: series and groups before jobs (audienceGroupId), jobs before versions
        // (uploadJobId); `audienceGroupVersionId` has no foreign key.
        let n = g.jobs.len() as u64;
        insert_all(&db, g.orgs).await?;
        insert_all(&db, g.series).await?;
        insert_all(&db, g.groups).await?;
        ensure!(
            insert_all(&db, g.jobs).await? == n,
            "not every job was inserted"
        );
        insert_all(&db, g.versions).await?;
        for table in [
            "coupon_series",
            "audience_group",
            "upload_job",
            "audience_group_version",
        ] {
            db.execute_unprepared(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            ))
            .await?;
        }
        // Each job with a version is the job that formed it, in the same group and org.
        let linked = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT count(*) AS n FROM upload_job j \
                 JOIN audience_group_version v ON v.id = j.audience_group_version_id \
                 JOIN audience_group g ON g.id = j.audience_group_id \
                 WHERE v.upload_job_id = j.id AND v.audience_group_id = g.id \
                   AND v.org_id = j.org_id AND g.org_id = j.org_id AND g.coupon_series_id = j.coupon_series_id",
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        ensure!(
            linked as usize == with_version,
            "{linked} jobs are linked to their group version, expected {with_version}"
        );
        db.execute_unprepared("ANALYZE").await?;
        db.close().await?;
        Ok(Seeded {
            jobs_per_series,
            summary,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Report

fn run_line(r: &RunResult, run: u32, runs: u32) -> String {
    format!(
        "run {run}/{runs}  {:.0} requests/s  p50 {:.2} ms  p99 {:.2} ms  errors {}  \
         RSS idle {:.1} MiB, peak {:.1} MiB  floor {:.0} tps  ratio {:.2}",
        r.rps,
        r.p50_ms,
        r.p99_ms,
        r.errors,
        mib(r.idle_rss_kib),
        mib(r.peak_rss_kib),
        r.floor_tps,
        r.ratio()
    )
}

fn summary_line(results: &[RunResult]) -> String {
    let m = |f: fn(&RunResult) -> f64| median(results.iter().map(f).collect());
    format!(
        "runs={}  median {:.0} requests/s  p50 {:.2} ms  p99 {:.2} ms  errors {} (total)  \
         peak RSS {:.1} MiB  floor {:.0} tps  ratio {:.2}",
        results.len(),
        m(|r| r.rps),
        m(|r| r.p50_ms),
        m(|r| r.p99_ms),
        results.iter().map(|r| r.errors).sum::<u64>(),
        m(|r| mib(r.peak_rss_kib)),
        m(|r| r.floor_tps),
        m(RunResult::ratio)
    )
}

/// The targets, judged on the medians.
fn targets_line(results: &[RunResult]) -> String {
    let m = |f: fn(&RunResult) -> f64| median(results.iter().map(f).collect());
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let (ratio, p99, rss) = (
        m(RunResult::ratio),
        m(|r| r.p99_ms),
        m(|r| mib(r.peak_rss_kib)),
    );
    format!(
        "targets: ratio >= 0.4: {} ({ratio:.2}); p99 <= 10 ms: {} ({p99:.2} ms); peak RSS <= 50 MiB: {} ({rss:.1} MiB)",
        verdict(ratio >= 0.4),
        verdict(p99 <= 10.0),
        verdict(rss <= 50.0)
    )
}
