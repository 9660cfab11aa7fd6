//! What `/metrics` reads from the database and the pool when it is scraped: the state every
//! instance shares (jobs by status, the oldest unfinished job) and this instance's pool.

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::Service;
use crate::domain::UploadJobStatus;
use crate::telemetry::Scrape;

impl Service {
    /// The figures of one scrape. A database that does not answer leaves the job figures at 0
    /// (the scrape itself must still answer: it is how an operator sees the outage).
    pub async fn scrape(&self) -> Scrape {
        let db = &self.db;
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
        let backend = db.get_database_backend();
        let mut jobs_by_status: Vec<(&'static str, i64)> = UploadJobStatus::ALL
            .iter()
            .map(|s| (s.as_str(), 0))
            .collect();
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
                ) && let Some(entry) = jobs_by_status.iter_mut().find(|(s, _)| *s == status)
                {
                    entry.1 = n;
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
        let worker_lag_secs = oldest
            .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        Scrape {
            statements: self.statements.get(),
            pool_idle: idle,
            pool_used: size.saturating_sub(idle),
            jobs_by_status,
            worker_lag_secs,
        }
    }
}
