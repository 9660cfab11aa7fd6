//! Nested data comes through DataLoaders: the statements one `uploadStatus` request costs do
//! not grow with the number of jobs it returns.

use chrono::Duration;
use coupon_upload_api::domain::{CouponStatus, CustomerIdentifierType, Permission};
use coupon_upload_api::entity::coupon;
use sea_orm::{ActiveModelTrait, Set};
use serde_json::json;

use crate::db_tests_with;
use crate::fixtures::{insert_group, insert_org, insert_series, insert_version, job, t0};
use crate::helpers::TestApp;

// No worker: its polling would add statements of its own to the count.
// The query asks for a lot on purpose (200 jobs with their coupons): the complexity limit is
// raised so that it runs.
db_tests_with!(
    Options {
        worker: false,
        graphql: coupon_upload_api::graphql::GraphqlLimits {
            max_complexity: 200_000,
            ..Default::default()
        },
        ..Default::default()
    };
    statement_count_does_not_grow_with_jobs
);

const NESTED: &str = r#"query($id: ID!) { uploadStatus(couponSeriesId: $id) {
    orgId couponSeries { id name audienceGroup { id } }
    uploadJobStatuses(first: 200) {
      jobId orgId couponSeriesId uploadStatus createdOn updatedOn errorFileUrl successFileUrl
      uploadedFileUrl totalUploadedCount actualRowCount errorCount uploadTableName uploadedFileName
      audienceGroupId audienceGroupVersionId customerIdentifier processedRowCount
      couponSeries { id name }
      audienceGroup { id name customerCount versions(first: 3) { id versionNumber } latestVersion { id } }
      audienceGroupVersion { id versionNumber customerCount audienceGroup { id } }
      coupons(first: 10) { totalCount pageInfo { hasNextPage } nodes { code uploadJob { jobId } } }
    } } }"#;

/// A series of `n` MOBILE-tagged jobs, each with its own version of the series' group.
async fn series_with_jobs(app: &TestApp, n: usize) -> i64 {
    let db = app.state.service.db();
    let series = insert_series(app, 1, &format!("S{n}")).await;
    let group = insert_group(app, 1, series.id, 3).await;
    for i in 0..n {
        let mut j = job(1, series.id, t0() + Duration::minutes(i as i64));
        j.customer_identifier = Set(CustomerIdentifierType::Mobile);
        j.audience_group_id = Set(Some(group.id));
        let j = j.insert(db).await.expect("job");
        let v = insert_version(app, &group, i as i32 + 1, 3, Some(j.id)).await;
        for n in 0..2 {
            coupon::ActiveModel {
                org_id: Set(1),
                coupon_series_id: Set(series.id),
                upload_job_id: Set(Some(j.id)),
                row_number: Set(Some(n + 1)),
                code: Set(format!("S{}-J{}-{n}", series.id, j.id)),
                customer_identifier_type: Set(Some(CustomerIdentifierType::Mobile)),
                customer_identifier: Set(Some(format!("91987654{n:04}"))),
                created_on: Set(t0()),
                status: Set(CouponStatus::Active),
                revoked_on: Set(None),
                ..Default::default()
            }
            .insert(db)
            .await
            .expect("coupon");
        }
        let mut u: coupon_upload_api::entity::upload_job::ActiveModel = j.into();
        u.audience_group_version_id = Set(Some(v.id));
        u.update(db).await.expect("job version");
    }
    series.id
}

async fn statements_for(app: &TestApp, key: &str, series: i64, jobs: usize) -> u64 {
    let before = app.statements();
    let data = app
        .gql_ok(key, NESTED, json!({ "id": series.to_string() }))
        .await;
    let after = app.statements();
    let got = &data["uploadStatus"]["uploadJobStatuses"];
    assert_eq!(got.as_array().map(Vec::len), Some(jobs));
    assert!(got.as_array().into_iter().flatten().all(
        |j| j["audienceGroupVersion"]["id"].is_string()
            && j["coupons"]["totalCount"] == 2
            && j["coupons"]["nodes"].as_array().map(Vec::len) == Some(2)
            && j["coupons"]["nodes"][0]["uploadJob"]["jobId"] == j["jobId"]
    ));
    after - before
}

async fn statement_count_does_not_grow_with_jobs(app: TestApp) {
    insert_org(&app, 1).await;
    let one = series_with_jobs(&app, 1).await;
    let many = series_with_jobs(&app, 200).await;
    let key = app.key(1, Permission::Read).await;
    // The key's first request looks it up; later ones find it in the key cache.
    let first = statements_for(&app, &key, one, 1).await;
    let for_one = statements_for(&app, &key, one, 1).await;
    assert_eq!(first, for_one + 1, "the key was not cached");
    let for_many = statements_for(&app, &key, many, 200).await;
    println!("statements per uploadStatus request: 1 job: {for_one}, 200 jobs: {for_many}");
    assert_eq!(
        for_one, for_many,
        "statement count grew with the number of jobs"
    );
    // The series, its jobs and their groups and versions in one statement; then one batch each
    // for the groups' versions, the series' own group, the jobs' coupons, their counts and the
    // coupons' jobs.
    assert!(for_many <= 6, "{for_many} statements for one request");
}
