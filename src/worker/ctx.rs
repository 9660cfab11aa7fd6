//! What every phase shares: the claimed job's context, the fenced update each phase ends
//! with, and `Stop`, why a run ended before the job did.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, Value};
use tokio_util::sync::CancellationToken;

use super::sql::stmt;
use super::{WorkerConfig, now_ms};
use crate::domain::{CustomerIdentifierType, now};
use crate::entity::{coupon_series, upload_job};
use crate::service::Service;

/// Why a job run stopped before the job ended.
#[derive(Debug)]
pub enum Stop {
    /// The process is shutting down; the lease was released.
    Shutdown,
    /// Another worker holds the job now; nothing more was changed.
    LostLease,
    /// A fault that clears by itself (the database or the file storage unreachable, SQLite
    /// busy): the run goes on from the job's last commit after a pause, and the failure is not
    /// counted as an attempt (see `job::run`).
    Transient(anyhow::Error),
    /// Anything else: the job is retried once its lease lapses, as a failed attempt.
    Internal(anyhow::Error),
}

impl Stop {
    /// Sorts an error into [`Stop::Transient`] or [`Stop::Internal`] by every cause it has.
    pub fn from_error(e: anyhow::Error) -> Self {
        if is_transient(&e) {
            Stop::Transient(e)
        } else {
            Stop::Internal(e)
        }
    }
}

/// Whether anything in the chain of causes is a fault that clears by itself: a database error
/// `db::transient` says so of, an I/O error (the file storage, or the stream of a stored file),
/// or a storage error other than a missing or misnamed object.
fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<sea_orm::DbErr>() {
            return crate::db::transient(e);
        }
        if let Some(e) = cause.downcast_ref::<sea_orm::sqlx::Error>() {
            return crate::db::sqlx_transient(e);
        }
        if let Some(e) = cause.downcast_ref::<object_store::Error>() {
            return crate::storage::transient(e);
        }
        cause.is::<std::io::Error>()
    })
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::from_error(e)
    }
}

/// Every other error a phase meets is sorted the same way.
macro_rules! sorted_from {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for Stop {
            fn from(e: $error) -> Self {
                Stop::from_error(e.into())
            }
        })*
    };
}

sorted_from!(
    sea_orm::DbErr,
    sea_orm::sqlx::Error,
    std::io::Error,
    csv::Error,
);

pub struct JobCtx<'a> {
    pub service: &'a Service,
    pub cfg: &'a WorkerConfig,
    pub job: upload_job::Model,
    pub series: coupon_series::Model,
    pub kind: CustomerIdentifierType,
    pub backend: DbBackend,
    shutdown: &'a CancellationToken,
    lost: Arc<AtomicBool>,
}

impl<'a> JobCtx<'a> {
    /// `lost`: set by the lease renewal once another worker holds the job.
    pub fn new(
        service: &'a Service,
        cfg: &'a WorkerConfig,
        job: upload_job::Model,
        series: coupon_series::Model,
        kind: CustomerIdentifierType,
        shutdown: &'a CancellationToken,
        lost: Arc<AtomicBool>,
    ) -> Self {
        Self {
            service,
            cfg,
            job,
            series,
            kind,
            backend: service.db().get_database_backend(),
            shutdown,
            lost,
        }
    }
}

impl JobCtx<'_> {
    /// Between steps: stop if the lease was lost or the process is shutting down.
    pub fn check_alive(&self) -> Result<(), Stop> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(Stop::LostLease);
        }
        if self.shutdown.is_cancelled() {
            return Err(Stop::Shutdown);
        }
        Ok(())
    }

    pub fn lease_until(&self) -> i64 {
        now_ms() + self.cfg.lease.as_millis() as i64
    }

    pub fn s(&self, sql: &str, values: Vec<Value>) -> sea_orm::Statement {
        stmt(self.backend, sql, values)
    }

    /// The fenced update every phase ends with: `sets` applied only while we hold the lease.
    /// Returns the job as updated, or `LostLease`.
    pub async fn update_job(
        &self,
        conn: &impl ConnectionTrait,
        sets: &str,
        mut values: Vec<Value>,
    ) -> Result<upload_job::Model, Stop> {
        let n = values.len();
        values.extend([self.job.id.into(), self.cfg.instance.clone().into()]);
        let sql = format!(
            "UPDATE upload_job SET {sets}, updated_on = ${} WHERE id = ${} AND lease_owner = ${} RETURNING *",
            n + 3,
            n + 1,
            n + 2
        );
        values.push(now().into());
        let row = conn
            .query_one_raw(self.s(&sql, values))
            .await?
            .ok_or(Stop::LostLease)?;
        Ok(upload_job::Model::from_query_result(&row, "")?)
    }

    /// Waits `d`, or less if the run must stop (shutdown, lost lease).
    pub async fn pause(&self, d: std::time::Duration) -> Result<(), Stop> {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.shutdown.cancelled() => {}
        }
        self.check_alive()
    }

    /// The job as stored now, provided this worker still holds it (else `LostLease`).
    pub async fn reload_held(&self) -> Result<upload_job::Model, Stop> {
        let job = self.reload().await?;
        if job.lease_owner.as_deref() != Some(self.cfg.instance.as_str()) {
            return Err(Stop::LostLease);
        }
        Ok(job)
    }

    /// The job as stored now (another request may have asked to cancel it).
    pub async fn reload(&self) -> Result<upload_job::Model, Stop> {
        upload_job::Entity::find_by_id(self.job.id)
            .one(self.service.db())
            .await?
            .ok_or_else(|| Stop::Internal(anyhow::anyhow!("job {} is gone", self.job.id)))
    }
}
