//! The figures of a run, their comparison with the floor, and what is printed.

use crate::common::{median, mib};
use crate::load::Load;
use crate::seed;

/// What one run measured.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub idle_rss_kib: u64,
    pub peak_rss_kib: u64,
    pub floor_tps: f64,
}

impl RunResult {
    pub fn ratio(&self) -> f64 {
        self.rps / self.floor_tps
    }
}

/// The `q` quantile of sorted microseconds, in milliseconds (nearest rank).
pub fn percentile(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}

pub fn run_line(r: &RunResult, run: u32, runs: u32) -> String {
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

pub fn summary_line(results: &[RunResult]) -> String {
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
pub fn targets_line(results: &[RunResult]) -> String {
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

/// To stderr: the failures, requests per second of the window (lowest and highest
/// second), latency by the series' number of jobs, and the slowest requests.
pub fn diagnostics(load: &Load, run: u32) {
    for f in &load.failures {
        eprintln!("[run {run}] FAILED {f}");
    }
    let mut per_second: Vec<u32> = Vec::new();
    for s in &load.samples {
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
    for n in 1..=seed::MAX_JOBS_PER_SERIES {
        let mut lat: Vec<u32> = load
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
    let mut slowest = load.samples.clone();
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
