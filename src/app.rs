//! The one application builder: from one [`Settings`] value to a running app (database
//! connected and migrated, storage, links, service, schemas, event listener, worker). The
//! binary, the integration tests and the benchmarks (which run the binary) all come through
//! [`App::build`]; nothing is adjusted after it.

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db::{self, DbOptions, StatementCounter};
use crate::graphql::GraphqlLimits;
pub use crate::http::HttpSettings;
use crate::http::ratelimit::RateLimit;
use crate::http::ws::WsLimits;
use crate::http::{AppState, UploadLimits};
use crate::links::FileLinks;
use crate::service::Service;
use crate::storage::Storage;
use crate::worker::{self, WorkerConfig};

/// Everything the app is configured with, grouped by what it configures.
#[derive(Clone, Debug)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub storage: StorageSettings,
    pub uploads: UploadLimits,
    pub graphql: GraphqlLimits,
    pub websocket: WsLimits,
    pub rate_limit: RateLimit,
    pub http: HttpSettings,
    /// `None`: this instance processes no jobs (it serves traffic only).
    pub worker: Option<WorkerConfig>,
}

#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    /// `sqlite://path/file.db` or `postgres://user@host:5432/db`.
    pub url: String,
    pub pool: DbOptions,
}

#[derive(Clone, Debug)]
pub struct StorageSettings {
    /// The local folder files are kept in, unless `url` says otherwise.
    pub dir: PathBuf,
    /// `s3://bucket/prefix` or `file:///path`; overrides `dir`.
    pub url: Option<String>,
    /// Base URL clients reach the server at, for download links.
    pub public_url: String,
    /// Signs download links; instances sharing storage share it.
    pub link_secret: Vec<u8>,
    /// How long a download link stays valid, in seconds.
    pub link_ttl_secs: i64,
}

/// A built app: its state (for the router and for callers that use the service directly) and
/// the background tasks it started.
pub struct App {
    pub state: AppState,
    worker: Option<JoinHandle<()>>,
    listener: Option<JoinHandle<()>>,
}

impl App {
    /// Connects, applies pending migrations, assembles the state every handler shares, and
    /// starts the event listener and (if configured) the worker.
    pub async fn build(s: Settings) -> anyhow::Result<Self> {
        let statements = StatementCounter::default();
        let conn = db::connect(&s.database.url, &s.database.pool, &statements).await?;
        db::migrate(&conn).await?;
        let storage = match &s.storage.url {
            Some(url) => Storage::from_url(url)?,
            None => Storage::local(&s.storage.dir)?,
        };
        let links = FileLinks::new(
            &s.storage.public_url,
            &s.storage.link_secret,
            s.storage.link_ttl_secs,
        );
        let service = Service::new(conn, storage, links).with_statement_counter(statements);
        service.set_key_cache_ttl(s.http.auth_cache);
        let shutdown = CancellationToken::new();
        let state = AppState::new(
            service,
            s.uploads,
            s.graphql,
            s.websocket,
            s.rate_limit,
            &s.http,
            shutdown.clone(),
        );
        let listener = state.service.events().start_listener(shutdown.clone());
        let worker = s
            .worker
            .map(|cfg| worker::spawn(state.service.clone(), cfg, shutdown.clone()));
        Ok(Self {
            state,
            worker,
            listener,
        })
    }

    pub fn service(&self) -> &Service {
        &self.state.service
    }

    /// Cancelled when the app shuts down: WebSockets close, the worker stops.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.state.shutdown
    }

    pub fn has_worker(&self) -> bool {
        self.worker.is_some()
    }

    /// The whole HTTP API.
    pub fn router(&self) -> axum::Router {
        crate::http::router(self.state.clone())
    }

    /// `/metrics` alone, for its own listener (`--metrics-bind`).
    pub fn metrics_router(&self) -> axum::Router {
        crate::http::metrics_router(self.state.clone())
    }

    /// After shutdown: waits up to `grace` for the worker to stop at a batch boundary (and
    /// release its lease), then stops the listener.
    pub async fn stopped(self, grace: Duration) {
        self.state.shutdown.cancel();
        if let Some(worker) = self.worker
            && tokio::time::timeout(grace, worker).await.is_err()
        {
            tracing::warn!("the worker did not stop in time; its lease will lapse");
        }
        if let Some(task) = self.listener {
            task.abort();
        }
    }
}
