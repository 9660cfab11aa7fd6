//! The floor: what PostgreSQL itself does for the same rows, measured with pgbench.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};

/// The floor's pgbench script: a random series of the seeded layout (its org follows from its
/// id), then one statement returning what [`QUERY`](crate::load::QUERY) needs of the same rows,
/// with the same filter, order and page size (100) as the service.
pub const FLOOR_SQL: &str = "\\set sid random(1, 10000)
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

pub struct Floor {
    pub tps: f64,
    pub latency_ms: f64,
    pub transactions: u64,
}

/// `pgbench --version`, which also checks that it can be run.
pub fn pgbench_version() -> Result<String> {
    let out = Command::new("pgbench")
        .arg("--version")
        .output()
        .context("running pgbench (is it installed and on PATH?)")?;
    ensure!(out.status.success(), "pgbench --version failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// pgbench with the script at the same concurrency, on the same database.
pub fn run(db_url: &str, script: &Path, connections: usize, seconds: u64) -> Result<Floor> {
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
