//! Accepting uploads and cancelling them. Processing is the worker's (`crate::worker`).

use rand::RngCore;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter};

use super::{Service, org_of};
use crate::domain::{CustomerIdentifierType, JobPhase, OrgContext, UploadJobStatus, now};
use crate::entity::upload_job;
use crate::error::{AppError, AppResult};
use crate::storage::Storage;

/// The shared staging table every job's rows are staged in (`uploadTableName`).
pub const UPLOAD_TABLE: &str = "upload_row";

/// The most columns an upload may name: a column index beyond it is a mistake, not a file.
const MAX_COLUMN: i32 = 10_000;

/// What a client asks for when it uploads a file.
#[derive(Clone, Debug)]
pub struct NewUpload {
    pub coupon_series_id: i64,
    pub customer_identifier: CustomerIdentifierType,
    pub customer_identifier_column: Option<i32>,
    pub coupon_code_column: Option<i32>,
    pub has_header: bool,
    /// As the client named it; sanitised here.
    pub file_name: String,
}

/// The client's file name without path parts or control characters, at most 255 characters.
pub fn sanitize_file_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last.chars().filter(|c| !c.is_control()).take(255).collect();
    let clean = clean.trim().trim_start_matches('.').trim();
    if clean.is_empty() {
        "upload.csv".to_owned()
    } else {
        clean.to_owned()
    }
}

fn check_options(u: &NewUpload) -> AppResult<()> {
    let bad = |m: &str| Err(AppError::BadUserInput(m.to_owned()));
    for (name, col) in [
        ("customerIdentifierColumn", u.customer_identifier_column),
        ("couponCodeColumn", u.coupon_code_column),
    ] {
        if let Some(c) = col
            && !(0..=MAX_COLUMN).contains(&c)
        {
            return Err(AppError::BadUserInput(format!(
                "{name} must be between 0 and {MAX_COLUMN}"
            )));
        }
    }
    match (u.customer_identifier, u.customer_identifier_column) {
        (CustomerIdentifierType::NotTagged, Some(_)) => {
            return bad(
                "customerIdentifierColumn is only for tagged uploads (customerIdentifier other than NOT_TAGGED)",
            );
        }
        (CustomerIdentifierType::NotTagged, None) => {}
        (_, None) => {
            return bad(
                "customerIdentifierColumn is required when customerIdentifier is not NOT_TAGGED",
            );
        }
        (_, Some(_)) => {}
    }
    if u.customer_identifier_column.is_some()
        && u.customer_identifier_column == u.coupon_code_column
    {
        return bad("couponCodeColumn and customerIdentifierColumn must differ");
    }
    Ok(())
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Service {
    /// Stores the file and creates its job (`STARTED`); the worker takes it from there. The
    /// file is stored before the job exists, and removed again if the job cannot be created,
    /// so a job never points at a missing file and a refused upload leaves nothing behind.
    pub async fn create_upload_job<R>(
        &self,
        org: &OrgContext,
        upload: NewUpload,
        file: R,
    ) -> AppResult<upload_job::Model>
    where
        R: tokio::io::AsyncRead + Unpin + Send,
    {
        org.require_write()?;
        check_options(&upload)?;
        let series = self
            .coupon_series(org, upload.coupon_series_id)
            .await?
            .ok_or_else(|| AppError::not_found("coupon series", upload.coupon_series_id))?;
        let key = format!("org/{}/uploads/{}/uploaded.csv", org.org_id, random_hex(16));
        let size = self.storage.put_stream(&key, file).await.map_err(|e| {
            if crate::storage::unreachable(&e) {
                tracing::warn!(error = ?e, "the file storage is unreachable");
                AppError::Unavailable(
                    "the file storage is unavailable; retry in a few seconds".into(),
                )
            } else {
                AppError::Internal(e)
            }
        })?;
        let turn = self.write_turn().await;
        let job = upload_job::ActiveModel::started(upload_job::NewJob {
            org_id: org.org_id,
            coupon_series_id: series.id,
            customer_identifier: upload.customer_identifier,
            customer_identifier_column: upload.customer_identifier_column,
            coupon_code_column: upload.coupon_code_column,
            has_header: upload.has_header,
            uploaded_file_name: sanitize_file_name(&upload.file_name),
            uploaded_file_key: Some(key.clone()),
            uploaded_file_size: size as i64,
            upload_table_name: UPLOAD_TABLE.into(),
            created_on: now(),
        })
        .insert(&self.db)
        .await;
        drop(turn);
        match job {
            Ok(job) => {
                // STARTED goes out before the worker is woken, so subscribers see it first.
                self.events.publish(&job).await;
                self.jobs_ready.notify_one();
                Ok(job)
            }
            Err(e) => {
                let _ = self.storage.delete(&key).await;
                Err(e.into())
            }
        }
    }

    /// Cancels a job: one not yet picked up ends `CANCELLED` at once; one being processed
    /// stops at its next batch boundary, keeping what was committed (the job shows
    /// `cancelRequested` until then). Cancelling a cancelled job changes nothing; a finished
    /// or errored job cannot be cancelled.
    pub async fn cancel_upload_job(
        &self,
        org: &OrgContext,
        job_id: i64,
    ) -> AppResult<upload_job::Model> {
        org.require_write()?;
        let job = self
            .upload_job(org, job_id)
            .await?
            .ok_or_else(|| AppError::not_found("upload job", job_id))?;
        match job.upload_status {
            UploadJobStatus::Cancelled => return Ok(job),
            UploadJobStatus::Finished | UploadJobStatus::Errored => {
                return Err(AppError::BadUserInput(format!(
                    "upload job {job_id} has already ended ({})",
                    job.upload_status
                )));
            }
            _ => {}
        }
        let at = now();
        let turn = self.write_turn().await;
        // Not picked up yet (no live lease): cancel outright, guarded against a concurrent claim.
        let outright = upload_job::Entity::update_many()
            .col_expr(
                upload_job::Column::UploadStatus,
                UploadJobStatus::Cancelled.into(),
            )
            .col_expr(upload_job::Column::CancelRequested, true.into())
            .col_expr(upload_job::Column::Phase, JobPhase::Done.into())
            .col_expr(upload_job::Column::UpdatedOn, at.into())
            .col_expr(upload_job::Column::FinishedOn, Some(at).into())
            .filter(upload_job::Column::Id.eq(job_id))
            .filter(upload_job::Column::OrgId.eq(org_of(org)))
            .filter(upload_job::Column::UploadStatus.eq(UploadJobStatus::Started))
            .filter(upload_job::Column::LeaseOwner.is_null())
            .exec(&self.db)
            .await?;
        if outright.rows_affected == 0 {
            upload_job::Entity::update_many()
                .col_expr(upload_job::Column::CancelRequested, true.into())
                .col_expr(upload_job::Column::UpdatedOn, at.into())
                .filter(upload_job::Column::Id.eq(job_id))
                .filter(upload_job::Column::OrgId.eq(org_of(org)))
                .filter(upload_job::Column::UploadStatus.is_in(UploadJobStatus::UNFINISHED))
                .exec(&self.db)
                .await?;
        }
        drop(turn);
        let job = self
            .upload_job(org, job_id)
            .await?
            .ok_or_else(|| AppError::not_found("upload job", job_id))?;
        self.events.publish(&job).await;
        Ok(job)
    }
}

/// Keys of a job's result files.
pub fn result_keys(job: &upload_job::Model) -> (String, String) {
    (
        Storage::job_key(job.org_id, job.id, "errors.csv"),
        Storage::job_key(job.org_id, job.id, "success.csv"),
    )
}

#[cfg(test)]
mod tests {
    use super::sanitize_file_name;

    #[test]
    fn file_names_lose_paths_and_control_characters() {
        assert_eq!(sanitize_file_name("codes.csv"), "codes.csv");
        assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_file_name("C:\\Users\\me\\codes.csv"), "codes.csv");
        assert_eq!(sanitize_file_name("a\u{0}b\nc.csv"), "abc.csv");
        assert_eq!(sanitize_file_name(""), "upload.csv");
        assert_eq!(sanitize_file_name("dir/"), "upload.csv");
        assert_eq!(sanitize_file_name(".."), "upload.csv");
        assert_eq!(sanitize_file_name(&"x".repeat(1000)).len(), 255);
    }
}
