//! Configuration: command-line flags, each also read from the environment, parsed once at start.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/coupon-upload-api.db";

/// Where the database is; shared by every subcommand that touches it.
#[derive(clap::Args, Clone, Debug)]
pub struct DbArgs {
    /// `sqlite://path/file.db` (created if missing) or `postgres://user@host:5432/db`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
}

/// `serve`'s settings.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// Serve `/metrics` on this address instead of the API's (for a scraper on a private
    /// network). Without it and without `--metrics-token`, the API's `/metrics` answers
    /// loopback clients only.
    #[arg(long, env = "METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// A token `/metrics` requires (`Authorization: Bearer <token>`), wherever it is served.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Folder for uploaded and result files.
    #[arg(long, env = "STORAGE_DIR", default_value = "data/files")]
    pub storage_dir: PathBuf,
    /// Where files are kept, as a URL: `s3://bucket/prefix` (S3-compatible; `AWS_*` variables
    /// configure it) or `file:///path`. Default: the folder `--storage-dir`. Instances that
    /// share a database must share this too.
    #[arg(long, env = "STORAGE_URL")]
    pub storage_url: Option<String>,
    /// Base URL clients reach this server at, used in download links (default: `http://BIND`).
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Secret that signs download links; instances sharing storage must share it. Default: a
    /// random secret kept in `STORAGE_DIR/../file-link-secret`, made on first start.
    #[arg(long, env = "FILE_LINK_SECRET", hide_env_values = true)]
    pub file_link_secret: Option<String>,
    /// How long a download link stays valid, in seconds.
    #[arg(long, env = "FILE_LINK_TTL_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(i64).range(1..=crate::links::MAX_TTL_SECS))]
    pub file_link_ttl_secs: i64,
    /// Most database connections in the pool. Default: two per CPU core, at least 4. More
    /// only queue work inside the database: under the status benchmark on 2 cores, 4
    /// connections gave p99 11 ms where 16 gave 14 ms, at the same throughput. On PostgreSQL,
    /// status reads hold two connections more, outside the pool (`service::status_lane`).
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = default_db_connections())]
    pub db_max_connections: u32,
    /// Largest upload accepted, in bytes (past it: HTTP 413, `PAYLOAD_TOO_LARGE`).
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub max_upload_bytes: u64,
    /// Files one upload request may carry.
    #[arg(long, env = "MAX_FILES_PER_REQUEST", default_value_t = 1)]
    pub max_files_per_request: usize,
    /// Where uploads are spooled while their request is read (default: the system's temp folder).
    #[arg(long, env = "SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Rows per commit batch of the worker.
    #[arg(long, env = "WORKER_BATCH_ROWS", default_value_t = 50_000)]
    pub worker_batch_rows: i64,
    /// Seconds a job's lease lasts without renewal; after it another instance takes over.
    #[arg(long, env = "JOB_LEASE_SECS", default_value_t = 15)]
    pub job_lease_secs: u64,
    /// Hours an ended job's staged rows (`upload_row`) are kept before they are deleted; its
    /// coupons, counts and files stay.
    #[arg(long, env = "STAGED_ROW_RETENTION_HOURS", default_value_t = 168)]
    pub staged_row_retention_hours: u64,
    /// Seconds a job keeps retrying through a transient fault (the database or the file storage
    /// unreachable) with no progress before it ends `ERRORED` with the fault as its reason.
    #[arg(long, env = "TRANSIENT_RETRY_WINDOW_SECS", default_value_t = 3600)]
    pub transient_retry_window_secs: u64,
    /// The most bytes one CSV record (row) may take; a file with a longer one ends `ERRORED`.
    #[arg(long, env = "MAX_RECORD_BYTES", default_value_t = 65536)]
    pub max_record_bytes: u64,
    /// The most fields one CSV record may have; a row with more is rejected
    /// (`UNPARSEABLE_ROW`), a header with more ends the job `ERRORED`.
    #[arg(long, env = "MAX_RECORD_FIELDS", default_value_t = 1024)]
    pub max_record_fields: usize,
    /// On SIGTERM/SIGINT, how long in-flight requests and the current batch may take.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Deepest selection nesting a GraphQL request may have.
    #[arg(long, env = "MAX_QUERY_DEPTH", default_value_t = 12)]
    pub max_query_depth: usize,
    /// Most complexity points per request (a field is 1; a list costs its page size times an item).
    #[arg(long, env = "MAX_QUERY_COMPLEXITY", default_value_t = 20_000)]
    pub max_query_complexity: usize,
    /// Most aliased fields per request.
    #[arg(long, env = "MAX_QUERY_ALIASES", default_value_t = 30)]
    pub max_query_aliases: usize,
    /// Most operations in one batched GraphQL request.
    #[arg(long, env = "MAX_BATCH_SIZE", default_value_t = 10)]
    pub max_batch_size: usize,
    /// Largest GraphQL response body in bytes; a larger answer is replaced by one
    /// `RESPONSE_TOO_LARGE` error.
    #[arg(long, env = "MAX_RESPONSE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_response_bytes: usize,
    /// Answer introspection queries (`__schema`, `__type`); on by default, for GraphiQL.
    #[arg(long, env = "INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub introspection: bool,
    /// Suggest field names in validation errors.
    #[arg(long, env = "FIELD_SUGGESTIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub field_suggestions: bool,
    /// Longest a request may take to its response, in seconds (uploads excepted; a
    /// download's body and a WebSocket run after the response starts).
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Longest an upload (a multipart POST of a file) may take to its response, in seconds.
    #[arg(long, env = "UPLOAD_TIMEOUT_SECS", default_value_t = 3600)]
    pub upload_timeout_secs: u64,
    /// Longest pause within any request body, in seconds: a client that stops sending is cut
    /// off.
    #[arg(long, env = "BODY_IDLE_TIMEOUT_SECS", default_value_t = 30)]
    pub body_idle_timeout_secs: u64,
    /// WebSocket connections one API key may hold open (past it: close 4429).
    #[arg(long, env = "WS_MAX_CONNECTIONS_PER_KEY", default_value_t = 20)]
    pub ws_max_connections_per_key: usize,
    /// Seconds between checks of an open WebSocket's key (a revoked key closes it, 4403).
    #[arg(long, env = "WS_KEY_RECHECK_SECS", default_value_t = 30)]
    pub ws_key_recheck_secs: u64,
    /// Seconds a new WebSocket has to send `connection_init` (then: close 4408).
    #[arg(long, env = "WS_INIT_TIMEOUT_SECS", default_value_t = 10)]
    pub ws_init_timeout_secs: u64,
    /// Seconds a WebSocket may stay open with no operation and no message (then: close 1000).
    #[arg(long, env = "WS_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    pub ws_idle_timeout_secs: u64,
    /// Requests per second each API key may make on average (0: no limit); past it, 429.
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 50.0)]
    pub rate_limit_per_second: f64,
    /// Requests a key may make at once before the average applies.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 200.0)]
    pub rate_limit_burst: f64,
    /// Per client address, per second on average: requests without a valid key (anonymous
    /// introspection) and lookups of keys not yet cached (0: no limit); past it, 429.
    #[arg(long, env = "ANONYMOUS_RATE_LIMIT_PER_SECOND", default_value_t = 20.0)]
    pub anonymous_rate_limit_per_second: f64,
    /// Such requests a client address may make at once before the average applies.
    #[arg(long, env = "ANONYMOUS_RATE_LIMIT_BURST", default_value_t = 100.0)]
    pub anonymous_rate_limit_burst: f64,
    /// Milliseconds an API key that authenticated is trusted without a database lookup (0:
    /// look up every request). A revoked key stops working at once: on PostgreSQL every
    /// instance hears of a revocation (`NOTIFY`), also one made with `api-key revoke`. This
    /// bounds only a notice missed while the listener reconnects, and, on SQLite, a
    /// revocation made with the CLI.
    #[arg(long, env = "AUTH_CACHE_MS", default_value_t = 2000)]
    pub auth_cache_ms: u64,
    /// Origins (comma-separated, e.g. `https://app.example.com`) allowed to call the API from
    /// a browser; `*` for any. Default: none (same origin only).
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// Serve the API only; process no jobs (for instances dedicated to traffic).
    #[arg(long, env = "NO_WORKER")]
    pub no_worker: bool,
    /// On a database with no coupon series, create a demo org with series, jobs and audience
    /// groups, and print a READ_WRITE key for it.
    #[arg(long)]
    pub demo: bool,
}

impl ServeArgs {
    /// The app's settings: these flags, grouped as `App::build` takes them.
    pub fn settings(&self, database_url: &str) -> anyhow::Result<crate::app::Settings> {
        use crate::app::{DatabaseSettings, HttpSettings, Settings, StorageSettings};
        use std::time::Duration;
        Ok(Settings {
            database: DatabaseSettings {
                url: database_url.to_owned(),
                pool: crate::db::DbOptions {
                    max_connections: self.db_max_connections,
                    ..Default::default()
                },
            },
            storage: StorageSettings {
                dir: self.storage_dir.clone(),
                url: self.storage_url.clone(),
                public_url: self.public_url(),
                link_secret: self.link_secret()?,
                link_ttl_secs: self.file_link_ttl_secs,
            },
            uploads: crate::http::UploadLimits {
                max_file_bytes: self.max_upload_bytes,
                max_files: self.max_files_per_request.max(1),
                spool_dir: self.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
                ..Default::default()
            },
            graphql: crate::graphql::GraphqlLimits {
                max_depth: self.max_query_depth,
                max_complexity: self.max_query_complexity,
                max_aliases: self.max_query_aliases,
                max_batch: self.max_batch_size,
                max_response_bytes: self.max_response_bytes.max(1024),
                introspection: self.introspection,
                suggestions: self.field_suggestions,
            },
            websocket: crate::http::ws::WsLimits {
                max_per_key: self.ws_max_connections_per_key,
                recheck: Duration::from_secs(self.ws_key_recheck_secs.max(1)),
                init_timeout: Duration::from_secs(self.ws_init_timeout_secs.max(1)),
                idle_timeout: Duration::from_secs(self.ws_idle_timeout_secs.max(1)),
                ..Default::default()
            },
            rate_limit: crate::http::ratelimit::RateLimit {
                per_second: self.rate_limit_per_second,
                burst: self.rate_limit_burst,
            },
            http: HttpSettings {
                request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
                upload_timeout: Duration::from_secs(self.upload_timeout_secs.max(1)),
                body_idle_timeout: Duration::from_secs(self.body_idle_timeout_secs.max(1)),
                cors_origins: self.cors_allowed_origins.clone(),
                auth_cache: Duration::from_millis(self.auth_cache_ms),
                anonymous_rate_limit: crate::http::ratelimit::RateLimit {
                    per_second: self.anonymous_rate_limit_per_second,
                    burst: self.anonymous_rate_limit_burst,
                },
                metrics: crate::http::metrics::MetricsAccess {
                    token: self.metrics_token.clone().filter(|t| !t.is_empty()),
                    separate: self.metrics_bind.is_some(),
                },
            },
            worker: (!self.no_worker).then(|| crate::worker::WorkerConfig {
                batch_rows: self.worker_batch_rows.max(1),
                lease: Duration::from_secs(self.job_lease_secs.max(1)),
                staged_retention: Duration::from_secs(self.staged_row_retention_hours * 3600),
                record_limits: crate::ingest::reader::RecordLimits {
                    max_bytes: self.max_record_bytes.max(1),
                    max_fields: self.max_record_fields.max(1),
                },
                retry: crate::worker::RetryPolicy {
                    window: Duration::from_secs(self.transient_retry_window_secs),
                    ..Default::default()
                },
                ..Default::default()
            }),
        })
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
    }

    /// The link-signing secret: configured, or kept beside the storage folder.
    pub fn link_secret(&self) -> anyhow::Result<Vec<u8>> {
        if let Some(s) = &self.file_link_secret {
            anyhow::ensure!(
                s.len() >= 16,
                "FILE_LINK_SECRET must be at least 16 characters"
            );
            return Ok(s.as_bytes().to_vec());
        }
        let dir = self
            .storage_dir
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        let path = dir.join("file-link-secret");
        if let Ok(existing) = std::fs::read_to_string(&path)
            && existing.trim().len() >= 32
        {
            // Readable by the owner only, also when an older version wrote it without a mode.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} owner-only", path.display()))?;
            return Ok(existing.trim().as_bytes().to_vec());
        }
        std::fs::create_dir_all(if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            &dir
        })?;
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let secret = crate::domain::hex(&bytes);
        write_owner_only(&path, secret.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(secret.into_bytes())
    }
}

/// Writes a secret to a new file that only its owner may read or write (mode 0600 from the
/// start: it is never readable by others, even for a moment).
fn write_owner_only(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode when opened: set it.
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Two database connections per CPU core, at least 4.
pub fn default_db_connections() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    (2 * cores).max(4)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn the_link_secret_file_is_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = dir.path().join("storage");
        let args =
            Cli::try_parse_from(["serve", "--storage-dir", storage.to_str().expect("utf-8")])
                .expect("args")
                .serve;
        let path = dir.path().join("file-link-secret");
        let made = args.link_secret().expect("made");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(args.link_secret().expect("read again"), made);
        // One written by an older version, readable by all, is tightened when read.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(args.link_secret().expect("read"), made);
        assert_eq!(mode(&path), 0o600);
        // Too short to use: replaced, owner-only.
        std::fs::write(&path, "short").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_ne!(args.link_secret().expect("replaced"), b"short".to_vec());
        assert_eq!(mode(&path), 0o600);
    }
}
