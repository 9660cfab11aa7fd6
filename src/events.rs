//! Job change events, for live subscribers.
//!
//! Every change of an upload job's status, and its progress (at most every
//! [`PROGRESS_EVERY`] per job), is published here. On SQLite (one instance) an event goes
//! straight to this process's subscribers. On PostgreSQL it goes out as a `NOTIFY` with the
//! job as it was published (JSON), and every instance — this one included — has a listener that
//! hands it to its own subscribers, so a subscriber on instance B sees jobs that instance A
//! runs. Each event carries the job's state at that moment, so the last event of a job carries
//! its final counts and file links.
//!
//! The same listener carries API key revocations between instances (PostgreSQL): a key revoked
//! anywhere, the CLI included, is dropped from every instance's key cache at once.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbBackend, EntityTrait};
use tokio::sync::{OnceCell, broadcast};
use tokio_util::sync::CancellationToken;

use crate::entity::upload_job;

/// How many events a slow subscriber may fall behind before it misses some.
const CAPACITY: usize = 1024;
/// The PostgreSQL channel job events travel on (suffixed with the schema).
pub const CHANNEL: &str = "upload_job_events";
/// The PostgreSQL channel revoked API keys' ids travel on (suffixed with the schema).
pub const KEY_CHANNEL: &str = "api_key_revoked";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7900;
/// Progress events of one job are at least this far apart (status changes are never held back).
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What to do when another instance (or the CLI) revoked a key: its id.
pub type OnKeyRevoked = Arc<dyn Fn(i64) + Send + Sync>;

#[derive(Clone)]
pub struct JobEvents {
    tx: broadcast::Sender<upload_job::Model>,
    db: DatabaseConnection,
    /// `upload_job_events.<schema>` and `api_key_revoked.<schema>`: instances share events
    /// when they share the schema.
    channels: Arc<OnceCell<(String, String)>>,
    on_key_revoked: OnKeyRevoked,
}

impl JobEvents {
    pub fn new(db: DatabaseConnection, on_key_revoked: OnKeyRevoked) -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
            db,
            channels: Arc::default(),
            on_key_revoked,
        }
    }

    /// The job event channel and the key revocation channel.
    async fn channels(&self) -> anyhow::Result<(&str, &str)> {
        let (jobs, keys) = self
            .channels
            .get_or_try_init(|| async {
                let schema: String = sea_orm::sqlx::query_scalar("SELECT current_schema()::text")
                    .fetch_one(self.db.get_postgres_connection_pool())
                    .await?;
                let name = |channel: &str| {
                    let mut name = format!("{channel}.{schema}");
                    name.truncate(63);
                    name
                };
                Ok::<_, anyhow::Error>((name(CHANNEL), name(KEY_CHANNEL)))
            })
            .await?;
        Ok((jobs.as_str(), keys.as_str()))
    }

    /// Tells every instance (PostgreSQL) that key `id` was revoked, so it drops it from its key
    /// cache. Failing that, an instance trusts the key until its cache entry expires.
    pub async fn publish_key_revoked(&self, id: i64) {
        if !self.via_postgres() {
            return;
        }
        let sent = match self.channels().await {
            Ok((_, channel)) => sea_orm::sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(id.to_string())
                .execute(self.db.get_postgres_connection_pool())
                .await
                .map(drop)
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::warn!(api_key_id = id, error = %e, "NOTIFY of a revoked key failed; other instances drop it when their cache entry expires");
        }
    }

    fn via_postgres(&self) -> bool {
        self.db.get_database_backend() == DbBackend::Postgres
    }

    /// Publishes a change of `job` (as it is now).
    pub async fn publish(&self, job: &upload_job::Model) {
        if self.via_postgres() {
            let pool = self.db.get_postgres_connection_pool();
            // The job as it is now travels with the event (a reader would see a later state);
            // past NOTIFY's payload limit, only its id does, and listeners read it.
            let payload = serde_json::to_string(job)
                .ok()
                .filter(|p| p.len() < MAX_PAYLOAD)
                .unwrap_or_else(|| job.id.to_string());
            let sent = match self.channels().await {
                Ok((channel, _)) => sea_orm::sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(channel)
                    .bind(payload)
                    .execute(pool)
                    .await
                    .map(drop)
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                tracing::warn!(job_id = job.id, error = %e, "NOTIFY failed; delivering locally only");
                let _ = self.tx.send(job.clone());
            }
        } else {
            // No subscriber is not an error.
            let _ = self.tx.send(job.clone());
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<upload_job::Model> {
        self.tx.subscribe()
    }

    /// On PostgreSQL, listens for job events from every instance until `shutdown`;
    /// elsewhere does nothing.
    pub fn start_listener(
        &self,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if !self.via_postgres() {
            return None;
        }
        let this = self.clone();
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = this.listen() => {
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "job event listener failed; reconnecting");
                        }
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }))
    }

    async fn listen(&self) -> anyhow::Result<()> {
        let pool = self.db.get_postgres_connection_pool();
        let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool).await?;
        let (jobs, keys) = self.channels().await?;
        listener.listen_all([jobs, keys]).await?;
        loop {
            let n = listener.recv().await?;
            if n.channel() == keys {
                if let Ok(id) = n.payload().parse::<i64>() {
                    (self.on_key_revoked)(id);
                }
                continue;
            }
            if let Ok(job) = serde_json::from_str::<upload_job::Model>(n.payload()) {
                let _ = self.tx.send(job);
                continue;
            }
            let Ok(id) = n.payload().parse::<i64>() else {
                continue;
            };
            if let Some(job) = upload_job::Entity::find_by_id(id).one(&self.db).await? {
                let _ = self.tx.send(job);
            }
        }
    }
}
