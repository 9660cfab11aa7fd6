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
//!    seed) through the crate's own sea-orm entities, in chunks of
//!    [`INSERT_CHUNK`](seed::INSERT_CHUNK) rows: 10 orgs, 1,000 coupon series per org, 1–10
//!    upload jobs per series (≈55,000), 200 audience groups per org with 1–5 versions each. Rows
//!    are what the service itself leaves behind (see [`seed::generate`]): mostly `FINISHED` jobs
//!    with counts and result-file keys, some `ERRORED`, `CANCELLED` (before pick-up or mid-job),
//!    and a `STARTED` or `PROCESSING` newest job here and there; a group exists exactly for the
//!    series with a finished tagged upload, and each such upload formed one version of it.
//!    Coupons and staged rows are not seeded: the read path never reads them. Then `ANALYZE`,
//!    and one `READ` key per org with `api-key create`.
//!
//! Then, per run (`--runs`, on the same database):
//!
//! 2. starts the release server as a child process (`--no-worker`, since the seeded in-flight
//!    jobs have no files; `--rate-limit-per-second 0`, since the per-key limit would otherwise
//!    cap the load; everything else default) and loads it on loopback with `--connections`
//!    HTTP/1.1 keep-alive connections (one task each, with a minimal HTTP/1.1 client:
//!    `load::http1`), for [`WARMUP`](load::WARMUP) not counted, then `--seconds`. Each request
//!    is `POST /graphql` with the key of the series' org and [`QUERY`](load::QUERY) (the 16
//!    Capillary fields of every job, plus the nested audience group and version) for a
//!    uniformly random series. Every response is checked: HTTP 200, no `errors`, the requested
//!    `couponSeriesId`, the seeded number of jobs, newest first, of the right org and series,
//!    and nested audience data matching the ids. Failures are counted (warm-up included) and
//!    the first few printed;
//! 3. samples the server's VmRSS every 20 ms during the load; the peak is the largest sample or
//!    VmHWM read at the end, whichever is larger;
//! 4. stops the server and measures the **floor** at the same concurrency: `pgbench -n -M
//!    prepared -c <connections> -j 2 -T <seconds>` running [`FLOOR_SQL`](floor::FLOOR_SQL), one
//!    prepared statement returning the same rows and columns for a random series;
//! 5. prints requests/s, p50 and p99 latency, errors, peak RSS, the floor's transactions/s and
//!    the ratio requests/s ÷ floor.
//!
//! At the end: the medians, and the targets (ratio ≥ 0.4, p99 ≤ 10 ms, peak RSS ≤ 50 MiB) judged
//! on them. The exit status is non-zero only when a request failed its checks or the benchmark
//! itself failed. Progress and diagnostics (seeding, CPU used by the load generator and the
//! server, throughput per second, latency by number of jobs, the slowest requests, the server
//! log's tail on failure) go to stderr. The load generator shares the machine with the server
//! and PostgreSQL, as pgbench does for the floor; its CPU share is printed so it can be judged.

#[path = "../common/mod.rs"]
mod common;

mod args;
mod cpu;
mod floor;
mod load;
mod report;
mod seed;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::{self, Connection};

use args::Args;
use common::{
    BenchDb, RssSampler, Server, create_api_key, first_error, pin_server_bin, proc_status_kib,
    server_version,
};
use cpu::CpuUse;
use load::{Target, WARMUP};
use report::{RunResult, percentile};

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    ensure!(
        args.runs > 0 && args.seconds > 0 && args.connections > 0,
        "--runs, --seconds and --connections must be positive"
    );
    let pgbench = floor::pgbench_version()?;
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
    println!("{}", report::summary_line(&results));
    println!("{}", report::targets_line(&results));
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    ensure!(errors == 0, "{errors} request(s) failed their checks");
    Ok(())
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
        query: serde_json::to_string(load::QUERY)?,
    });
    let script = dir.path().join("floor.sql");
    std::fs::write(&script, floor::FLOOR_SQL)?;

    let mut results = Vec::new();
    for run in 1..=args.runs {
        let r = run_once(args, db_url, dir.path(), &target, &script, run)
            .await
            .with_context(|| format!("run {run}"))?;
        println!("{}", report::run_line(&r, run, args.runs));
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
    report::diagnostics(&load, run);

    checkpoint(db_url).await?;
    let machine0 = CpuUse::machine();
    let floor = floor::run(db_url, script, args.connections, args.seconds)?;
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
