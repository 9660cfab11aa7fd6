//! What `/metrics` reads from the database and the pool when it is scraped: the state every
//! instance shares (jobs by status, the oldest unfinished job) and this instance's pool.

use std::time::{Duration, Instant};

use sea_orm::sea_query::{Expr, Func, SimpleExpr};
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect};

use super::Service;
use crate::domain::UploadJobStatus;
use crate::entity::upload_job;
use crate::telemetry::Scrape;

/// How long the figures read from the database are reused: a scraper (or anyone who can reach
/// `/metrics`) asking more often costs no more statements.
pub const JOB_FIGURES_TTL: Duration = Duration::from_secs(10);

/// The figures of a scrape that are read from the database.
#[derive(Clone, Debug, Default)]
pub struct JobFigures {
    jobs_by_status: Vec<(&'static str, i64)>,
    oldest: Option<chrono::DateTime<chrono::Utc>>,
}

/// The last [`JobFigures`] read, and when.
#[derive(Default)]
pub struct FiguresCache(tokio::sync::Mutex<Option<(Instant, JobFigures)>>);

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
        let JobFigures {
            jobs_by_status,
            oldest,
        } = self.job_figures().await;
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

    /// Jobs by status and the oldest unfinished job: read at most once per
    /// [`JOB_FIGURES_TTL`] (concurrent scrapes wait for one read).
    async fn job_figures(&self) -> JobFigures {
        let mut cached = self.figures.0.lock().await;
        if let Some((at, figures)) = cached.as_ref()
            && at.elapsed() < JOB_FIGURES_TTL
        {
            return figures.clone();
        }
        let db = &self.db;
        let mut jobs_by_status: Vec<(&'static str, i64)> = UploadJobStatus::ALL
            .iter()
            .map(|s| (s.as_str(), 0))
            .collect();
        let counted = upload_job::Entity::find()
            .select_only()
            .column(upload_job::Column::UploadStatus)
            .column_as(
                SimpleExpr::from(Func::count(Expr::col(upload_job::Column::Id))),
                "n",
            )
            .group_by(upload_job::Column::UploadStatus)
            .into_tuple::<(UploadJobStatus, i64)>()
            .all(db)
            .await;
        let answered = counted.is_ok();
        for (status, n) in counted.unwrap_or_default() {
            if let Some(entry) = jobs_by_status
                .iter_mut()
                .find(|(s, _)| *s == status.as_str())
            {
                entry.1 = n;
            }
        }
        let oldest = upload_job::Entity::find()
            .select_only()
            .column_as(
                SimpleExpr::from(Func::min(Expr::col(upload_job::Column::CreatedOn))),
                "t",
            )
            .filter(upload_job::Column::UploadStatus.is_in(UploadJobStatus::UNFINISHED))
            .into_tuple::<Option<chrono::DateTime<chrono::Utc>>>()
            .one(db)
            .await
            .ok()
            .flatten()
            .flatten();
        let figures = JobFigures {
            jobs_by_status,
            oldest,
        };
        // An outage is not remembered: the next scrape asks again.
        *cached = answered.then(|| (Instant::now(), figures.clone()));
        figures
    }
}
