//! What the PostgreSQL benchmarks (`bench_upload`, `bench_status`) share: a database made for
//! the benchmark and dropped afterwards, the release server as a child process (a pinned copy of
//! the binary), `api-key create`, the server's memory read from `/proc`, and medians.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::{self, AssertSqlSafe, Connection};

pub const RSS_EVERY: Duration = Duration::from_millis(20);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The server binary copied into a temporary directory, so a rebuild during the benchmark cannot
/// change the server between runs (and an absolute path, since the server runs in a temporary
/// directory). Keep the returned directory alive as long as the copy is used.
pub struct PinnedBin {
    pub _dir: tempfile::TempDir,
    pub path: PathBuf,
    /// When the original was built (its modification time, UTC).
    pub built: String,
}

pub fn pin_server_bin(server_bin: &Path, prefix: &str) -> Result<PinnedBin> {
    ensure!(
        server_bin.is_file(),
        "{} not found: build it with `cargo build --release` or pass --server-bin",
        server_bin.display()
    );
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    let built = built_at(server_bin)?;
    let path = dir.path().join("coupon-upload-api");
    std::fs::copy(server_bin, &path)
        .with_context(|| format!("copying {}", server_bin.display()))?;
    Ok(PinnedBin {
        _dir: dir,
        path,
        built,
    })
}

/// When the server binary was built (its modification time, UTC).
fn built_at(bin: &Path) -> Result<String> {
    let modified = std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .with_context(|| format!("reading {}", bin.display()))?;
    Ok(chrono::DateTime::<chrono::Utc>::from(modified)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string())
}

/// `SHOW server_version` through the admin URL (also checks that it answers).
pub async fn server_version(admin_url: &str) -> Result<String> {
    let mut conn = PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("connecting to {admin_url}"))?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(version)
}

// ---------------------------------------------------------------------------------------------
// The database

/// A database made for the benchmark; [`BenchDb::drop`] removes it.
pub struct BenchDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl BenchDb {
    /// `CREATE DATABASE "<prefix><16 random hex digits>"` through `admin_url`.
    pub async fn create(admin_url: &str, prefix: &str) -> Result<Self> {
        let name = format!("{prefix}{:016x}", rand::random::<u64>());
        let url = with_database(admin_url, &name)?;
        let mut conn = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to {admin_url}"))?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(Self {
            admin_url: admin_url.to_string(),
            name,
            url,
        })
    }

    pub async fn drop(self) -> Result<()> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await
        .with_context(|| format!("dropping database {}", self.name))?;
        conn.close().await?;
        Ok(())
    }
}

/// `url` with its database name replaced by `name` (query string kept).
pub fn with_database(url: &str, name: &str) -> Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").context("the database URL has no scheme")? + 3;
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// The first error wins; a failure to drop the database after another error is only printed.
pub fn first_error<T>(result: Result<T>, dropped: Result<()>) -> Result<T> {
    match (result, dropped) {
        (Ok(r), Ok(())) => Ok(r),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(d)) => {
            eprintln!("also failed to drop the database: {d:#}");
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server process, its memory, its keys

/// The server as a child process; killed when dropped, whatever happened.
pub struct Server {
    child: Child,
    pub base: String,
    log: PathBuf,
}

impl Server {
    /// `serve` on a free loopback port with its files and spool under `dir`, `RUST_LOG=warn`,
    /// and `extra` flags; returns once `/readyz` answers 200.
    pub async fn start(bin: &Path, db_url: &str, dir: &Path, extra: &[&str]) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = dir.join("server.log");
        let out = std::fs::File::create(&log)?;
        std::fs::create_dir_all(dir.join("spool"))?;
        let child = Command::new(bin)
            .arg("serve")
            .args(["--database-url", db_url])
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .arg("--storage-dir")
            .arg(dir.join("files"))
            .arg("--spool-dir")
            .arg(dir.join("spool"))
            .args(extra)
            // Warnings only unless `BENCH_SERVER_LOG` says otherwise (e.g. `info`, the
            // server's own default, to include its per-request log lines in the figures).
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            self.check_alive()?;
            let ready = client.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "server not ready after {READY_TIMEOUT:?}; log:\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("server exited ({status}); log:\n{}", self.log_tail(40)),
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited after [`STOP_GRACE`].
    pub async fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let asked = Instant::now();
        while asked.elapsed() < STOP_GRACE {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("server did not stop within {STOP_GRACE:?} of SIGTERM; killing it");
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(file) = std::fs::File::open(&self.log) else {
            return format!("({} unreadable)", self.log.display());
        };
        let all: Vec<String> = std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `api-key create` for `org_id` with `permission` (`READ` or `READ_WRITE`); the key is alone on
/// the last line of its output.
pub async fn create_api_key(
    bin: &Path,
    db_url: &str,
    dir: &Path,
    org_id: i64,
    permission: &str,
) -> Result<String> {
    let mut cmd = Command::new(bin);
    cmd.args(["api-key", "create", "--org-id", &org_id.to_string()])
        .args(["--name", "bench", "--permission", permission])
        .args(["--database-url", db_url])
        .env("RUST_LOG", "warn")
        // It opens a file store relative to the working directory: keep it out of the repo.
        .current_dir(dir);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "api-key create failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .last()
        .map(|l| l.trim().to_string())
        .filter(|k| !k.is_empty())
        .context("api-key create printed no key")
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Samples VmRSS every [`RSS_EVERY`] and keeps the largest.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Ok(kib) = proc_status_kib(pid, "VmRSS") {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(RSS_EVERY).await;
            }
        });
        Self { stop, peak, task }
    }

    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// Report

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
