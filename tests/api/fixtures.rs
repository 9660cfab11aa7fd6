//! A small, fully known data set, inserted through the project's entities.
//!
//! Org 1 has series `series` with three jobs (oldest first: a finished untagged job with
//! rejected rows, an errored job, and a finished MOBILE-tagged job that formed audience group
//! version 1), and an empty series. Org 2 has one series with one tagged job of its own.

use chrono::{DateTime, Duration, Utc};
use coupon_upload_api::domain::{
    AudienceGroupStatus, AudienceGroupType, ClientHandlingType, CustomerIdentifierType, JobPhase,
    UploadJobStatus,
};
use coupon_upload_api::entity::{
    audience_group, audience_group_version, coupon_series, org, upload_job,
};
use coupon_upload_api::storage::Storage;
use sea_orm::{ActiveModelTrait, Set};

use crate::helpers::TestApp;

pub const ORG_A: i64 = 1;
pub const ORG_B: i64 = 2;

pub struct Fixture {
    pub series: i64,
    pub empty_series: i64,
    /// Oldest first.
    pub jobs: [i64; 3],
    pub group: i64,
    pub version: i64,
    pub other_series: i64,
    pub other_job: i64,
    pub other_group: i64,
}

pub fn t0() -> DateTime<Utc> {
    "2026-01-10T08:00:00.123Z".parse().expect("time")
}

pub async fn insert_org(app: &TestApp, id: i64) {
    org::ActiveModel {
        id: Set(id),
        name: Set(format!("org {id}")),
        created_on: Set(t0()),
    }
    .insert(app.state.service.db())
    .await
    .expect("org");
}

pub async fn insert_series(app: &TestApp, org_id: i64, name: &str) -> coupon_series::Model {
    coupon_series::ActiveModel {
        org_id: Set(org_id),
        name: Set(name.into()),
        description: Set(format!("{name} description")),
        client_handling_type: Set(ClientHandlingType::DiscCodePin),
        max_create: Set(-1),
        allow_multiple_per_customer: Set(false),
        code_max_length: Set(20),
        num_uploaded_total: Set(0),
        created_on: Set(t0()),
        updated_on: Set(t0()),
        ..Default::default()
    }
    .insert(app.state.service.db())
    .await
    .expect("series")
}

/// A FINISHED untagged job with `rows` rows of which `errors` were rejected.
pub fn job(org_id: i64, series_id: i64, created: DateTime<Utc>) -> upload_job::ActiveModel {
    let mut job = upload_job::ActiveModel::started(upload_job::NewJob {
        org_id,
        coupon_series_id: series_id,
        customer_identifier: CustomerIdentifierType::NotTagged,
        customer_identifier_column: None,
        coupon_code_column: Some(0),
        has_header: true,
        uploaded_file_name: "codes.csv".into(),
        uploaded_file_key: None,
        uploaded_file_size: 100,
        upload_table_name: "upload_row".into(),
        created_on: created,
    });
    job.upload_status = Set(UploadJobStatus::Finished);
    job.phase = Set(JobPhase::Done);
    job.attempts = Set(1);
    job.updated_on = Set(created + Duration::seconds(5));
    job.finished_on = Set(Some(created + Duration::seconds(5)));
    job
}

pub async fn insert_group(
    app: &TestApp,
    org_id: i64,
    series_id: i64,
    customers: i64,
) -> audience_group::Model {
    audience_group::ActiveModel {
        org_id: Set(org_id),
        coupon_series_id: Set(series_id),
        name: Set(format!("series {series_id} customers")),
        group_type: Set(AudienceGroupType::Upload),
        status: Set(AudienceGroupStatus::Active),
        customer_count: Set(customers),
        latest_version_number: Set(1),
        created_on: Set(t0()),
        updated_on: Set(t0()),
        ..Default::default()
    }
    .insert(app.state.service.db())
    .await
    .expect("group")
}

pub async fn insert_version(
    app: &TestApp,
    group: &audience_group::Model,
    number: i32,
    customers: i64,
    job_id: Option<i64>,
) -> audience_group_version::Model {
    audience_group_version::ActiveModel {
        org_id: Set(group.org_id),
        audience_group_id: Set(group.id),
        version_number: Set(number),
        customer_count: Set(customers),
        status: Set(AudienceGroupStatus::Active),
        upload_job_id: Set(job_id),
        created_on: Set(t0() + Duration::hours(2)),
        ..Default::default()
    }
    .insert(app.state.service.db())
    .await
    .expect("version")
}

pub async fn seed(app: &TestApp) -> Fixture {
    let db = app.state.service.db();
    insert_org(app, ORG_A).await;
    insert_org(app, ORG_B).await;
    let series = insert_series(app, ORG_A, "WELCOME").await;
    let empty = insert_series(app, ORG_A, "EMPTY").await;

    let mut j1 = job(ORG_A, series.id, t0());
    j1.uploaded_file_name = Set("first.csv".into());
    j1.actual_row_count = Set(10);
    j1.total_uploaded_count = Set(8);
    j1.error_count = Set(2);
    j1.processed_row_count = Set(10);
    let j1 = j1.insert(db).await.expect("job 1");
    let key = |name: &str| Storage::job_key(ORG_A, j1.id, name);
    app.state
        .service
        .storage()
        .put(
            &key("errors.csv"),
            "rowNumber,errorCode\n3,EMPTY_COUPON_CODE\n",
        )
        .await
        .expect("put");
    app.state
        .service
        .storage()
        .put(&key("uploaded.csv"), "code\nA\n")
        .await
        .expect("put");
    let mut j1u: upload_job::ActiveModel = j1.clone().into();
    j1u.uploaded_file_key = Set(Some(key("uploaded.csv")));
    j1u.error_file_key = Set(Some(key("errors.csv")));
    j1u.success_file_key = Set(Some(key("success.csv")));
    let j1 = j1u.update(db).await.expect("job 1 keys");

    let mut j2 = job(ORG_A, series.id, t0() + Duration::hours(1));
    j2.upload_status = Set(UploadJobStatus::Errored);
    j2.uploaded_file_name = Set("broken.csv".into());
    j2.coupon_code_column = Set(Some(5));
    j2.error_reason = Set(Some("couponCodeColumn 5 does not exist".into()));
    let j2 = j2.insert(db).await.expect("job 2");

    let group = insert_group(app, ORG_A, series.id, 4).await;
    let mut j3 = job(ORG_A, series.id, t0() + Duration::hours(2));
    j3.customer_identifier = Set(CustomerIdentifierType::Mobile);
    j3.customer_identifier_column = Set(Some(1));
    j3.uploaded_file_name = Set("vip.csv".into());
    j3.actual_row_count = Set(5);
    j3.total_uploaded_count = Set(4);
    j3.error_count = Set(1);
    j3.processed_row_count = Set(5);
    j3.audience_group_id = Set(Some(group.id));
    let j3 = j3.insert(db).await.expect("job 3");
    let version = insert_version(app, &group, 1, 4, Some(j3.id)).await;
    let mut j3u: upload_job::ActiveModel = j3.clone().into();
    j3u.audience_group_version_id = Set(Some(version.id));
    let j3 = j3u.update(db).await.expect("job 3 version");

    let other = insert_series(app, ORG_B, "OTHER").await;
    let other_group = insert_group(app, ORG_B, other.id, 1).await;
    let mut jb = job(ORG_B, other.id, t0());
    jb.customer_identifier = Set(CustomerIdentifierType::Email);
    jb.audience_group_id = Set(Some(other_group.id));
    let jb = jb.insert(db).await.expect("other job");
    insert_version(app, &other_group, 1, 1, Some(jb.id)).await;

    Fixture {
        series: series.id,
        empty_series: empty.id,
        jobs: [j1.id, j2.id, j3.id],
        group: group.id,
        version: version.id,
        other_series: other.id,
        other_job: jb.id,
        other_group: other_group.id,
    }
}

/// The job's row as stored.
pub async fn stored_job(app: &TestApp, job_id: i64) -> upload_job::Model {
    use sea_orm::EntityTrait;
    upload_job::Entity::find_by_id(job_id)
        .one(app.state.service.db())
        .await
        .expect("db")
        .expect("job")
}

/// A job as if staged and judged: `codes` as its valid rows 1, 2, …, the job ready to commit
/// (phase `COMMIT`). With the worker off, the test then starts one to commit it.
pub async fn as_judged(app: &TestApp, job_id: i64, codes: &[String]) {
    use coupon_upload_api::entity::upload_row;
    let db = app.state.service.db();
    for (n, code) in (1..).zip(codes) {
        upload_row::ActiveModel {
            job_id: Set(job_id),
            row_number: Set(n),
            raw_code: Set(code.clone()),
            raw_customer: Set(None),
            code: Set(Some(code.clone())),
            customer: Set(None),
            error_code: Set(None),
            error_message: Set(None),
            maybe_duplicate: Set(Some(false)),
        }
        .insert(db)
        .await
        .expect("stage");
    }
    let mut j: upload_job::ActiveModel = stored_job(app, job_id).await.into();
    j.phase = Set(JobPhase::Commit);
    j.actual_row_count = Set(codes.len() as i64);
    j.update(db).await.expect("job");
}
