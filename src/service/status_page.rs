//! What a status read answers: a series and a page of its jobs. Shared by the single statement
//! (`status`) and PostgreSQL's batched reads (`status_lane`), which both produce it.

use crate::entity::{audience_group, audience_group_version, coupon_series, upload_job};

/// The status of one coupon series' uploads: the series (checked to be the caller's), whose
/// jobs are then read page by page with `Service::upload_jobs`.
#[derive(Clone, Debug)]
pub struct UploadStatus {
    pub org_id: i64,
    pub series: coupon_series::Model,
}

/// A page of a series' jobs, read together with the series in one statement.
#[derive(Clone, Debug)]
pub struct StatusPage {
    pub status: UploadStatus,
    pub jobs: Vec<JobWithAudience>,
}

/// A job with its audience group and version, when they were asked for and it has them.
#[derive(Clone, Debug)]
pub struct JobWithAudience {
    pub job: upload_job::Model,
    pub group: Option<audience_group::Model>,
    pub version: Option<audience_group_version::Model>,
}

/// A series and a page of its jobs; `None`: the series is not the org's.
pub type Found = Option<(coupon_series::Model, Vec<JobWithAudience>)>;
