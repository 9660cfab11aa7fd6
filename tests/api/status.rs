//! `uploadStatus` and the other queries: values, nesting, paging, filtering, tenancy.

use coupon_upload_api::domain::Permission;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_tests;
use crate::fixtures::{ORG_A, ORG_B, seed};
use crate::helpers::{TestApp, code};

db_tests!(
    every_field_has_its_known_value,
    nested_audience_data_loads,
    jobs_page_newest_first_and_filter_by_status,
    missing_and_foreign_series_are_the_same_not_found,
    lookups_by_id_never_cross_orgs,
    coupon_series_list_is_a_relay_connection,
    malformed_ids_and_page_sizes_are_bad_user_input,
    concurrent_requests_get_their_own_answers,
    status_reads_survive_lost_connections,
);

const ALL_FIELDS: &str = r#"
query($id: ID!) {
  uploadStatus(couponSeriesId: $id) {
    id orgId couponSeriesId
    couponSeries { id name numUploadedTotal }
    uploadJobStatuses {
      id jobId orgId couponSeriesId uploadStatus createdOn updatedOn
      errorFileUrl successFileUrl uploadedFileUrl
      totalUploadedCount actualRowCount errorCount processedRowCount
      uploadTableName uploadedFileName
      audienceGroupId audienceGroupVersionId
      customerIdentifier customerIdentifierColumn couponCodeColumn hasHeader errorReason
    }
  }
}"#;

fn assert_link(url: &Value, app: &TestApp, key: &str) {
    let url = url
        .as_str()
        .unwrap_or_else(|| panic!("expected a link, got {url}"));
    let prefix = format!("{}/files/{}?expires=", app.base, key);
    assert!(url.starts_with(&prefix), "{url} should start with {prefix}");
    assert!(url.contains("&sig="), "{url}");
}

async fn every_field_has_its_known_value(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    let data = app
        .gql_ok(&key, ALL_FIELDS, json!({ "id": f.series.to_string() }))
        .await;
    let s = &data["uploadStatus"];
    assert_eq!(s["id"], f.series.to_string());
    assert_eq!(s["orgId"], "1");
    assert_eq!(s["couponSeriesId"], f.series.to_string());
    assert_eq!(
        s["couponSeries"],
        json!({ "id": f.series.to_string(), "name": "WELCOME", "numUploadedTotal": 0 })
    );
    let jobs = s["uploadJobStatuses"].as_array().expect("jobs");
    let ids: Vec<&str> = jobs
        .iter()
        .map(|j| j["jobId"].as_str().unwrap_or_default())
        .collect();
    let expected: Vec<String> = f.jobs.iter().rev().map(|j| j.to_string()).collect();
    assert_eq!(ids, expected, "newest first");

    let [j1, j2, j3] = f.jobs;
    let (newest, errored, oldest) = (&jobs[0], &jobs[1], &jobs[2]);
    assert_eq!(
        newest,
        &json!({
            "id": j3.to_string(), "jobId": j3.to_string(), "orgId": "1",
            "couponSeriesId": f.series.to_string(), "uploadStatus": "FINISHED",
            "createdOn": "2026-01-10T10:00:00.123+00:00", "updatedOn": "2026-01-10T10:00:05.123+00:00",
            "errorFileUrl": null, "successFileUrl": null, "uploadedFileUrl": null,
            "totalUploadedCount": 4, "actualRowCount": 5, "errorCount": 1, "processedRowCount": 5,
            "uploadTableName": "upload_row", "uploadedFileName": "vip.csv",
            "audienceGroupId": f.group.to_string(), "audienceGroupVersionId": f.version.to_string(),
            "customerIdentifier": "MOBILE", "customerIdentifierColumn": 1, "couponCodeColumn": 0,
            "hasHeader": true, "errorReason": null,
        })
    );
    assert_eq!(errored["uploadStatus"], "ERRORED");
    assert_eq!(errored["jobId"], j2.to_string());
    assert_eq!(errored["errorReason"], "couponCodeColumn 5 does not exist");
    assert_eq!(errored["audienceGroupId"], Value::Null);
    assert_eq!(errored["audienceGroupVersionId"], Value::Null);
    assert_eq!(errored["customerIdentifier"], "NOT_TAGGED");
    assert_eq!(errored["actualRowCount"], 0);

    assert_eq!(oldest["jobId"], j1.to_string());
    assert_eq!(oldest["createdOn"], "2026-01-10T08:00:00.123+00:00");
    assert_eq!(oldest["actualRowCount"], 10);
    assert_eq!(oldest["totalUploadedCount"], 8);
    assert_eq!(oldest["errorCount"], 2);
    assert_link(
        &oldest["errorFileUrl"],
        &app,
        &format!("org/1/jobs/{j1}/errors.csv"),
    );
    assert_link(
        &oldest["successFileUrl"],
        &app,
        &format!("org/1/jobs/{j1}/success.csv"),
    );
    assert_link(
        &oldest["uploadedFileUrl"],
        &app,
        &format!("org/1/jobs/{j1}/uploaded.csv"),
    );
    for j in jobs.iter().filter(|j| j["uploadStatus"] == "FINISHED") {
        assert_eq!(
            j["totalUploadedCount"].as_i64().unwrap_or(-1) + j["errorCount"].as_i64().unwrap_or(-1),
            j["actualRowCount"].as_i64().unwrap_or(-2)
        );
    }
}

async fn nested_audience_data_loads(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    let q = r#"query($id: ID!) { uploadStatus(couponSeriesId: $id) { uploadJobStatuses {
        jobId
        audienceGroup { id orgId couponSeriesId name type status customerCount
          versions { id versionNumber } latestVersion { id versionNumber customerCount } }
        audienceGroupVersion { id audienceGroupId versionNumber customerCount status uploadJobId createdOn
          audienceGroup { id } }
        couponSeries { id audienceGroup { id } }
    } } }"#;
    let data = app
        .gql_ok(&key, q, json!({ "id": f.series.to_string() }))
        .await;
    let jobs = &data["uploadStatus"]["uploadJobStatuses"];
    let (g, v, s) = (
        f.group.to_string(),
        f.version.to_string(),
        f.series.to_string(),
    );
    assert_eq!(
        jobs[0]["audienceGroup"],
        json!({
            "id": g, "orgId": "1", "couponSeriesId": s, "name": format!("series {} customers", f.series),
            "type": "UPLOAD", "status": "ACTIVE", "customerCount": 4,
            "versions": [{ "id": v, "versionNumber": 1 }],
            "latestVersion": { "id": v, "versionNumber": 1, "customerCount": 4 },
        })
    );
    assert_eq!(
        jobs[0]["audienceGroupVersion"],
        json!({
            "id": v, "audienceGroupId": g, "versionNumber": 1, "customerCount": 4, "status": "ACTIVE",
            "uploadJobId": f.jobs[2].to_string(), "createdOn": "2026-01-10T10:00:00.123+00:00",
            "audienceGroup": { "id": g },
        })
    );
    assert_eq!(
        jobs[0]["couponSeries"],
        json!({ "id": s, "audienceGroup": { "id": g } })
    );
    for untagged in [&jobs[1], &jobs[2]] {
        assert_eq!(untagged["audienceGroup"], Value::Null);
        assert_eq!(untagged["audienceGroupVersion"], Value::Null);
    }
    // The same group, reached from the top.
    let data = app
        .gql_ok(
            &key,
            "query($id: ID!) { audienceGroup(id: $id) { id versions { id } } }",
            json!({ "id": g }),
        )
        .await;
    assert_eq!(
        data["audienceGroup"],
        json!({ "id": g, "versions": [{ "id": v }] })
    );
}

async fn jobs_page_newest_first_and_filter_by_status(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    let q = r#"query($id: ID!, $first: Int, $after: String, $status: [UploadJobStatus!]) {
        uploadStatus(couponSeriesId: $id) { uploadJobStatuses(first: $first, after: $after, status: $status) { jobId } } }"#;
    let ids = |d: &Value| -> Vec<String> {
        d["uploadStatus"]["uploadJobStatuses"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|j| j["jobId"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let [j1, j2, j3] = f.jobs.map(|j| j.to_string());
    let p1 = app
        .gql_ok(&key, q, json!({ "id": f.series.to_string(), "first": 2 }))
        .await;
    assert_eq!(ids(&p1), [j3.clone(), j2.clone()]);
    let p2 = app
        .gql_ok(
            &key,
            q,
            json!({ "id": f.series.to_string(), "first": 2, "after": j2 }),
        )
        .await;
    assert_eq!(ids(&p2), vec![j1.clone()]);
    let p3 = app
        .gql_ok(
            &key,
            q,
            json!({ "id": f.series.to_string(), "first": 2, "after": j1 }),
        )
        .await;
    assert!(ids(&p3).is_empty());
    let zero = app
        .gql_ok(&key, q, json!({ "id": f.series.to_string(), "first": 0 }))
        .await;
    assert!(ids(&zero).is_empty());

    let finished = app
        .gql_ok(
            &key,
            q,
            json!({ "id": f.series.to_string(), "status": ["FINISHED"] }),
        )
        .await;
    assert_eq!(ids(&finished), [j3.clone(), j1.clone()]);
    let two = app
        .gql_ok(
            &key,
            q,
            json!({ "id": f.series.to_string(), "status": ["ERRORED", "CANCELLED"] }),
        )
        .await;
    assert_eq!(ids(&two), vec![j2.clone()]);
    let none = app
        .gql_ok(
            &key,
            q,
            json!({ "id": f.series.to_string(), "status": ["STARTED"] }),
        )
        .await;
    assert!(ids(&none).is_empty());
    let empty_series = app
        .gql_ok(&key, q, json!({ "id": f.empty_series.to_string() }))
        .await;
    assert!(ids(&empty_series).is_empty());

    // Aliases asking for different pages each get theirs (the series and one page are read
    // together; another page is read on its own), and aliases of one page share it.
    let aliased = app
        .gql_ok(
            &key,
            r#"query($id: ID!) { uploadStatus(couponSeriesId: $id) {
                newest: uploadJobStatuses(first: 1) { jobId }
                all: uploadJobStatuses { jobId }
                again: uploadJobStatuses { jobId audienceGroup { id } } } }"#,
            json!({ "id": f.series.to_string() }),
        )
        .await;
    let page = |alias: &str| -> Vec<String> {
        aliased["uploadStatus"][alias]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|j| j["jobId"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(page("newest"), vec![j3.clone()]);
    assert_eq!(page("all"), [j3.clone(), j2.clone(), j1.clone()]);
    assert_eq!(page("again"), page("all"));

    let (status, body) = app
        .gql(
            Some(&key),
            q,
            json!({ "id": f.series.to_string(), "status": ["DONE"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("DONE"),
        "{body}"
    );
}

async fn missing_and_foreign_series_are_the_same_not_found(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::ReadWrite).await;
    let q = "query($id: ID!) { uploadStatus(couponSeriesId: $id) { orgId uploadJobStatuses { jobId } } }";
    let (_, foreign) = app
        .gql(Some(&key), q, json!({ "id": f.other_series.to_string() }))
        .await;
    let (_, missing) = app.gql(Some(&key), q, json!({ "id": "987654" })).await;
    assert_eq!(code(&foreign), "NOT_FOUND", "{foreign}");
    assert_eq!(code(&missing), "NOT_FOUND", "{missing}");
    assert_eq!(foreign["data"], Value::Null);
    let msg = |b: &Value, id: String| {
        b["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .replace(&id, "ID")
    };
    assert_eq!(
        msg(&foreign, f.other_series.to_string()),
        msg(&missing, "987654".into())
    );
    assert!(
        !foreign.to_string().contains("OTHER"),
        "nothing of org 2 leaks: {foreign}"
    );

    // Org 2 sees its own series, and none of org 1's.
    let key_b = app.key(ORG_B, Permission::Read).await;
    let own = app
        .gql_ok(&key_b, q, json!({ "id": f.other_series.to_string() }))
        .await;
    assert_eq!(own["uploadStatus"]["orgId"], "2");
    assert_eq!(
        own["uploadStatus"]["uploadJobStatuses"],
        json!([{ "jobId": f.other_job.to_string() }])
    );
    let (_, theirs) = app
        .gql(Some(&key_b), q, json!({ "id": f.series.to_string() }))
        .await;
    assert_eq!(code(&theirs), "NOT_FOUND");
}

async fn lookups_by_id_never_cross_orgs(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    let q = r#"query($job: ID!, $series: ID!, $group: ID!) {
        uploadJob(jobId: $job) { jobId orgId }
        couponSeries(id: $series) { id orgId }
        audienceGroup(id: $group) { id orgId } }"#;
    let own = app
        .gql_ok(
            &key,
            q,
            json!({ "job": f.jobs[0].to_string(), "series": f.series.to_string(), "group": f.group.to_string() }),
        )
        .await;
    assert_eq!(
        own["uploadJob"],
        json!({ "jobId": f.jobs[0].to_string(), "orgId": "1" })
    );
    assert_eq!(
        own["couponSeries"],
        json!({ "id": f.series.to_string(), "orgId": "1" })
    );
    assert_eq!(
        own["audienceGroup"],
        json!({ "id": f.group.to_string(), "orgId": "1" })
    );
    let foreign = app
        .gql_ok(
            &key,
            q,
            json!({ "job": f.other_job.to_string(), "series": f.other_series.to_string(), "group": f.other_group.to_string() }),
        )
        .await;
    assert_eq!(
        foreign,
        json!({ "uploadJob": null, "couponSeries": null, "audienceGroup": null })
    );
}

async fn coupon_series_list_is_a_relay_connection(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    let q = r#"query($first: Int, $after: String) { couponSeriesList(first: $first, after: $after) {
        totalCount edges { cursor node { id name } } pageInfo { hasNextPage endCursor } } }"#;
    let p1 = app.gql_ok(&key, q, json!({ "first": 1 })).await;
    let c = &p1["couponSeriesList"];
    assert_eq!(c["totalCount"], 2);
    assert_eq!(
        c["edges"][0]["node"],
        json!({ "id": f.empty_series.to_string(), "name": "EMPTY" })
    );
    assert_eq!(c["pageInfo"]["hasNextPage"], true);
    assert_eq!(c["pageInfo"]["endCursor"], c["edges"][0]["cursor"]);
    let p2 = app
        .gql_ok(
            &key,
            q,
            json!({ "first": 1, "after": c["pageInfo"]["endCursor"] }),
        )
        .await;
    let c2 = &p2["couponSeriesList"];
    assert_eq!(
        c2["edges"][0]["node"],
        json!({ "id": f.series.to_string(), "name": "WELCOME" })
    );
    assert_eq!(c2["pageInfo"]["hasNextPage"], false);
    let all = app.gql_ok(&key, q, json!({})).await;
    assert_eq!(
        all["couponSeriesList"]["edges"].as_array().map(Vec::len),
        Some(2),
        "org 2's series never listed"
    );
}

async fn malformed_ids_and_page_sizes_are_bad_user_input(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    let status_q = "query($id: ID!, $first: Int, $after: String) { uploadStatus(couponSeriesId: $id) { uploadJobStatuses(first: $first, after: $after) { jobId } } }";
    for vars in [
        json!({ "id": "abc" }),
        json!({ "id": "-1" }),
        json!({ "id": "1; DROP TABLE upload_job" }),
        json!({ "id": f.series.to_string(), "first": 501 }),
        json!({ "id": f.series.to_string(), "first": -1 }),
        json!({ "id": f.series.to_string(), "after": "not-a-job" }),
    ] {
        let (status, body) = app.gql(Some(&key), status_q, vars.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(code(&body), "BAD_USER_INPUT", "{vars} → {body}");
    }
    let (_, body) = app
        .gql(
            Some(&key),
            "{ couponSeriesList(after: \"junk\") { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    let max = app
        .gql_ok(
            &key,
            status_q,
            json!({ "id": f.series.to_string(), "first": 500 }),
        )
        .await;
    assert_eq!(
        max["uploadStatus"]["uploadJobStatuses"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

/// On PostgreSQL, concurrent status requests are read in batches, one statement for many
/// requests of different orgs, series, pages and filters. Each must get exactly the answer it
/// gets alone: over HTTP, and straight from the service, where the batching is certain.
async fn concurrent_requests_get_their_own_answers(app: TestApp) {
    use coupon_upload_api::domain::{OrgContext, UploadJobStatus};
    use coupon_upload_api::service::Page;
    let f = seed(&app).await;
    let key_a = app.key(ORG_A, Permission::Read).await;
    let key_b = app.key(ORG_B, Permission::Read).await;
    let q = r#"query($id: ID!, $first: Int, $after: String, $status: [UploadJobStatus!]) {
        uploadStatus(couponSeriesId: $id) { couponSeriesId uploadJobStatuses(first: $first, after: $after, status: $status) {
            jobId orgId uploadStatus audienceGroup { id name } audienceGroupVersion { id versionNumber } } } }"#;
    let [_, j2, _] = f.jobs.map(|j| j.to_string());
    let asks: Vec<(&str, Value)> = vec![
        (&key_a, json!({ "id": f.series.to_string() })),
        (&key_a, json!({ "id": f.series.to_string(), "first": 1 })),
        (&key_a, json!({ "id": f.series.to_string(), "after": j2 })),
        (
            &key_a,
            json!({ "id": f.series.to_string(), "status": ["ERRORED"] }),
        ),
        (&key_a, json!({ "id": f.series.to_string(), "status": [] })),
        (&key_a, json!({ "id": f.series.to_string(), "first": 0 })),
        (&key_a, json!({ "id": f.empty_series.to_string() })),
        (&key_a, json!({ "id": f.other_series.to_string() })),
        (&key_a, json!({ "id": "987654321" })),
        (&key_b, json!({ "id": f.other_series.to_string() })),
        (&key_b, json!({ "id": f.series.to_string() })),
    ];
    let mut alone = Vec::new();
    for (key, vars) in &asks {
        alone.push(app.gql(Some(key), q, vars.clone()).await);
    }
    // The answers alone are the known ones (spot checks; the other tests check values).
    let jobs = |r: &(StatusCode, Value)| r.1["data"]["uploadStatus"]["uploadJobStatuses"].clone();
    assert_eq!(jobs(&alone[0]).as_array().map(Vec::len), Some(3));
    assert_eq!(
        jobs(&alone[0])[0]["audienceGroup"]["id"],
        f.group.to_string()
    );
    assert_eq!(jobs(&alone[3]).as_array().map(Vec::len), Some(1));
    assert_eq!(jobs(&alone[4]), json!([]));
    assert_eq!(jobs(&alone[6]), json!([]));
    assert_eq!(code(&alone[7].1), "NOT_FOUND");
    assert_eq!(code(&alone[8].1), "NOT_FOUND");
    assert_eq!(
        jobs(&alone[9])[0]["audienceGroup"]["id"],
        f.other_group.to_string()
    );
    assert_eq!(code(&alone[10].1), "NOT_FOUND");

    // Every ask eight times over, all at once, in a shuffled order.
    let mut order: Vec<usize> = (0..asks.len()).cycle().take(asks.len() * 8).collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let together = futures_util::future::join_all(
        order
            .iter()
            .map(|&i| app.gql(Some(asks[i].0), q, asks[i].1.clone())),
    )
    .await;
    for (&i, got) in order.iter().zip(&together) {
        assert_eq!(
            got, &alone[i],
            "ask {i} ({}) answered differently",
            asks[i].1
        );
    }

    // Straight from the service: all futures queue before a lane can take one.
    let org = |org_id| OrgContext {
        org_id,
        permission: Permission::Read,
        api_key_id: 0,
    };
    let service = &app.state.service;
    let (a, b) = (org(ORG_A), org(ORG_B));
    let finished = [UploadJobStatus::Finished];
    let calls = 60;
    let before = app.statements();
    let pages = futures_util::future::join_all((0..calls).map(|i| {
        let (who, series, statuses) = match i % 4 {
            0 => (&a, f.series, None),
            1 => (&a, f.series, Some(&finished[..])),
            2 => (&b, f.other_series, None),
            _ => (&b, f.series, None),
        };
        service.upload_status_page(
            who,
            series,
            statuses,
            Page::new(None, None).unwrap(),
            i % 2 == 0,
        )
    }))
    .await;
    let sent = app.statements() - before;
    for (i, page) in pages.iter().enumerate() {
        match i % 4 {
            0 => {
                let page = page.as_ref().expect("own series");
                assert_eq!(page.jobs.len(), 3);
                assert!(page.jobs.iter().all(|j| j.job.org_id == ORG_A));
                assert!(page.jobs[0].group.is_some(), "audience asked for");
            }
            1 => {
                let page = page.as_ref().expect("own series");
                let ids: Vec<i64> = page.jobs.iter().map(|j| j.job.id).collect();
                assert_eq!(ids, [f.jobs[2], f.jobs[0]]);
                assert!(
                    page.jobs.iter().all(|j| j.group.is_none()),
                    "audience not asked for"
                );
            }
            2 => {
                let page = page.as_ref().expect("own series");
                let ids: Vec<i64> = page.jobs.iter().map(|j| j.job.id).collect();
                assert_eq!(ids, [f.other_job]);
            }
            _ => assert!(page.is_err(), "another org's series must not be found"),
        }
    }
    println!("{calls} concurrent status pages took {sent} statement(s)");
    if app.backend() == crate::helpers::Backend::Postgres {
        assert!(
            sent <= calls / 2,
            "{sent} statements for {calls} pages: not batched"
        );
    }
}

/// PostgreSQL: the status reads' own connections ended by the server (a restart, an
/// administrator) are replaced, and the request that finds one gone is still answered.
async fn status_reads_survive_lost_connections(app: TestApp) {
    use sea_orm::ConnectionTrait;
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    let q = "query($id: ID!) { uploadStatus(couponSeriesId: $id) { uploadJobStatuses { jobId } } }";
    let vars = json!({ "id": f.series.to_string() });
    let jobs = |d: &Value| {
        d["uploadStatus"]["uploadJobStatuses"]
            .as_array()
            .map(Vec::len)
    };
    for round in 0..3 {
        let data = app.gql_ok(&key, q, vars.clone()).await;
        assert_eq!(jobs(&data), Some(3), "round {round}");
        if app.backend() != crate::helpers::Backend::Postgres {
            continue;
        }
        // Every session but this one whose last statement was a status batch.
        let ended = app
            .state
            .service
            .db()
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE pid <> pg_backend_pid() AND query LIKE 'SELECT r.n, s.\"id\"%' \
                   AND datname = current_database() AND query NOT LIKE '%pg_terminate_backend%'",
            ))
            .await
            .expect("terminate");
        assert!(
            !ended.is_empty(),
            "round {round}: no status connection to end"
        );
    }
    let data = app.gql_ok(&key, q, vars).await;
    assert_eq!(jobs(&data), Some(3));
}
