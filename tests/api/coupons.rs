//! Coupons as data: `coupon(code:)`, the `coupons` connections of a series and of a job (every
//! filter, page boundaries, cursors), and `revokeCoupons` (counts, audience version, re-upload
//! blocked, bad input changing nothing).

use coupon_upload_api::domain::Permission;
use coupon_upload_api::entity::coupon;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{TestApp, code};

db_tests!(
    a_code_is_found_in_its_org_only,
    a_series_coupons_are_paged_and_filtered,
    coupons_are_revoked_by_code
);

/// A series with 25 coupons from two uploads: 20 tagged (`EXTERNAL_ID`, customers C-0..C-9,
/// two each), then 5 untagged. Returns (key, series, first job, second job).
async fn series_with_coupons(app: &TestApp) -> (String, String, String, String) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app
        .create_series(&key, json!({ "allowMultiplePerCustomer": true }))
        .await;
    let mut tagged = String::from("code,customer\n");
    for i in 0..20 {
        tagged.push_str(&format!("SUMMER-{i:03},C-{}\n", i % 10));
    }
    let a = app
        .upload_ok(
            &key,
            &series,
            tagged.as_bytes(),
            json!({ "kind": "EXTERNAL_ID", "customerColumn": 1, "codeColumn": 0 }),
        )
        .await;
    let ja = app.wait_job(&key, &a).await;
    assert_eq!(ja["totalUploadedCount"], 20, "{ja}");
    let mut plain = String::from("code\n");
    for i in 0..5 {
        plain.push_str(&format!("WINTER-{i:03}\n"));
    }
    let b = app
        .upload_ok(&key, &series, plain.as_bytes(), json!({}))
        .await;
    app.wait_job(&key, &b).await;
    (key, series, a, b)
}

const COUPON: &str = "query($c: String!) { coupon(code: $c) { id code status customerIdentifierType
    customerIdentifier createdOn revokedOn couponSeries { id } uploadJob { jobId } } }";

async fn a_code_is_found_in_its_org_only(app: TestApp) {
    let (key, series, job, _) = series_with_coupons(&app).await;
    let d = app.gql_ok(&key, COUPON, json!({ "c": "SUMMER-007" })).await;
    let c = &d["coupon"];
    assert_eq!(c["code"], "SUMMER-007", "{d}");
    assert_eq!(c["status"], "ACTIVE");
    assert_eq!(c["customerIdentifierType"], "EXTERNAL_ID");
    assert_eq!(c["customerIdentifier"], "C-7");
    assert_eq!(c["couponSeries"]["id"], series.as_str());
    assert_eq!(c["uploadJob"]["jobId"], job.as_str());
    assert!(c["revokedOn"].is_null());
    // Codes are case-sensitive; an unknown code is null.
    for unknown in ["summer-007", "NOPE"] {
        let d = app.gql_ok(&key, COUPON, json!({ "c": unknown })).await;
        assert!(d["coupon"].is_null(), "{unknown}: {d}");
    }
    // Another org's key never sees it.
    let other = app.key(2, Permission::ReadWrite).await;
    let d = app
        .gql_ok(&other, COUPON, json!({ "c": "SUMMER-007" }))
        .await;
    assert!(d["coupon"].is_null(), "{d}");
    // A code no coupon can have is a coded error.
    for bad in ["A\u{7}B", "", "has space", &"X".repeat(300)] {
        let (_, body) = app.gql(Some(&key), COUPON, json!({ "c": bad })).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{bad:?}: {body}");
    }
}

fn codes(conn: &Value) -> Vec<String> {
    conn["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("edges: {conn}"))
        .iter()
        .map(|e| e["node"]["code"].as_str().expect("code").to_owned())
        .collect()
}

const PAGE: &str = "query($s: ID!, $first: Int, $after: String, $f: CouponFilter) {
    couponSeries(id: $s) { coupons(first: $first, after: $after, filter: $f) {
      totalCount pageInfo { hasNextPage hasPreviousPage endCursor }
      edges { cursor node { code status customerIdentifier uploadJob { jobId } } } } } }";

async fn page(app: &TestApp, key: &str, series: &str, vars: Value) -> Value {
    let mut v = vars;
    v["s"] = json!(series);
    app.gql_ok(key, PAGE, v).await["couponSeries"]["coupons"].clone()
}

async fn a_series_coupons_are_paged_and_filtered(app: TestApp) {
    let (key, series, first_job, second_job) = series_with_coupons(&app).await;
    // Pages of 10, 10 and 5, oldest first, every code once.
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    for (n, more) in [(10, true), (10, true), (5, false)] {
        let p = page(&app, &key, &series, json!({ "first": 10, "after": after })).await;
        assert_eq!(codes(&p).len(), n, "{p}");
        assert_eq!(p["pageInfo"]["hasNextPage"], more, "{p}");
        assert_eq!(p["pageInfo"]["hasPreviousPage"], after.is_some(), "{p}");
        assert_eq!(p["totalCount"], 25);
        all.extend(codes(&p));
        after = p["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    let mut expected: Vec<String> = (0..20).map(|i| format!("SUMMER-{i:03}")).collect();
    expected.extend((0..5).map(|i| format!("WINTER-{i:03}")));
    assert_eq!(all, expected);
    // Past the end: an empty page.
    let p = page(&app, &key, &series, json!({ "first": 10, "after": after })).await;
    assert!(
        codes(&p).is_empty() && p["pageInfo"]["hasNextPage"] == false,
        "{p}"
    );
    // Filters.
    let p = page(
        &app,
        &key,
        &series,
        json!({ "f": { "codePrefix": "WINTER-00" } }),
    )
    .await;
    assert_eq!(codes(&p).len(), 5, "{p}");
    assert_eq!(p["totalCount"], 5);
    let p = page(
        &app,
        &key,
        &series,
        json!({ "f": { "codePrefix": "SUMMER-01" } }),
    )
    .await;
    assert_eq!(codes(&p).len(), 10, "{p}");
    let p = page(
        &app,
        &key,
        &series,
        json!({ "f": { "customerIdentifier": "C-3" } }),
    )
    .await;
    assert_eq!(codes(&p), vec!["SUMMER-003", "SUMMER-013"], "{p}");
    let p = page(
        &app,
        &key,
        &series,
        json!({ "f": { "uploadJobId": second_job } }),
    )
    .await;
    assert_eq!(codes(&p).len(), 5, "{p}");
    let p = page(&app, &key, &series, json!({ "f": { "status": "REVOKED" } })).await;
    assert!(codes(&p).is_empty(), "{p}");
    let p = page(
        &app,
        &key,
        &series,
        json!({ "f": { "uploadJobId": first_job, "customerIdentifier": "C-3", "codePrefix": "SUMMER-00" } }),
    )
    .await;
    assert_eq!(codes(&p), vec!["SUMMER-003"], "{p}");
    // A job's own coupons, and the same in a status page.
    let d = app
        .gql_ok(
            &key,
            "query($j: ID!) { uploadJob(jobId: $j) { coupons(first: 3) { totalCount
                pageInfo { hasNextPage } nodes { code } } } }",
            json!({ "j": second_job }),
        )
        .await;
    let c = &d["uploadJob"]["coupons"];
    assert_eq!(c["totalCount"], 5, "{d}");
    assert_eq!(c["pageInfo"]["hasNextPage"], true);
    assert_eq!(c["nodes"].as_array().map(Vec::len), Some(3));
    let d = app
        .gql_ok(
            &key,
            "query($s: ID!) { uploadStatus(couponSeriesId: $s) { uploadJobStatuses { jobId
                coupons(first: 2) { nodes { code } } } } }",
            json!({ "s": series }),
        )
        .await;
    let jobs = d["uploadStatus"]["uploadJobStatuses"]
        .as_array()
        .expect("jobs");
    assert_eq!(jobs.len(), 2, "{d}");
    for j in jobs {
        let want = if j["jobId"] == first_job.as_str() {
            ["SUMMER-000", "SUMMER-001"]
        } else {
            ["WINTER-000", "WINTER-001"]
        };
        assert_eq!(
            j["coupons"]["nodes"],
            json!(want.map(|c| json!({ "code": c }))),
            "{d}"
        );
    }
    // Bad input is coded: a page too large, a cursor of another kind, junk in a filter.
    let series_cursor = app
        .gql_ok(
            &key,
            "{ couponSeriesList(first: 1) { pageInfo { endCursor } } }",
            json!({}),
        )
        .await["couponSeriesList"]["pageInfo"]["endCursor"]
        .clone();
    for vars in [
        json!({ "first": 501 }),
        json!({ "after": series_cursor }),
        json!({ "after": "not a cursor" }),
        json!({ "f": { "codePrefix": "A\u{0}" } }),
        json!({ "f": { "uploadJobId": "x" } }),
        json!({ "f": { "customerIdentifier": "" } }),
    ] {
        let mut v = vars.clone();
        v["s"] = json!(series);
        let (_, body) = app.gql(Some(&key), PAGE, v).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{vars}: {body}");
    }
}

const REVOKE: &str =
    "mutation($s: ID!, $codes: [String!]!) { revokeCoupons(couponSeriesId: $s, codes: $codes) {
    revokedCount revoked { code status revokedOn } alreadyRevokedCodes unknownCodes } }";

async fn series_state(app: &TestApp, key: &str, series: &str) -> Value {
    app.gql_ok(
        key,
        "query($s: ID!) { couponSeries(id: $s) { numUploadedTotal audienceGroup { customerCount
            latestVersion { versionNumber customerCount } } } }",
        json!({ "s": series }),
    )
    .await["couponSeries"]
        .clone()
}

async fn coupons_are_revoked_by_code(app: TestApp) {
    let (key, series, _, _) = series_with_coupons(&app).await;
    let before = series_state(&app, &key, &series).await;
    assert_eq!(before["numUploadedTotal"], 25, "{before}");
    assert_eq!(before["audienceGroup"]["customerCount"], 10, "{before}");
    // C-3 holds SUMMER-003 and SUMMER-013: revoking both takes C-3 out of the group;
    // WINTER-000 is untagged; NOPE-1 is not in the series.
    let d = app
        .gql_ok(
            &key,
            REVOKE,
            json!({ "s": series, "codes": ["SUMMER-003", "SUMMER-013", "WINTER-000", "NOPE-1", "NOPE-1"] }),
        )
        .await;
    let r = &d["revokeCoupons"];
    assert_eq!(r["revokedCount"], 3, "{d}");
    assert_eq!(r["unknownCodes"], json!(["NOPE-1"]), "{d}");
    assert_eq!(r["alreadyRevokedCodes"], json!([]), "{d}");
    assert!(
        r["revoked"]
            .as_array()
            .expect("revoked")
            .iter()
            .all(|c| c["status"] == "REVOKED" && !c["revokedOn"].is_null()),
        "{d}"
    );
    let after = series_state(&app, &key, &series).await;
    assert_eq!(
        after["numUploadedTotal"], 22,
        "active coupons only: {after}"
    );
    assert_eq!(after["audienceGroup"]["customerCount"], 9, "{after}");
    assert_eq!(
        after["audienceGroup"]["latestVersion"]["versionNumber"].as_i64(),
        before["audienceGroup"]["latestVersion"]["versionNumber"]
            .as_i64()
            .map(|n| n + 1),
        "a new version without the revoked customers: {after}"
    );
    let d = app.gql_ok(&key, COUPON, json!({ "c": "SUMMER-003" })).await;
    assert_eq!(d["coupon"]["status"], "REVOKED", "{d}");
    let p = page(&app, &key, &series, json!({ "f": { "status": "REVOKED" } })).await;
    assert_eq!(
        codes(&p),
        vec!["SUMMER-003", "SUMMER-013", "WINTER-000"],
        "{p}"
    );
    // Again: nothing more happens, and it says so.
    let d = app
        .gql_ok(
            &key,
            REVOKE,
            json!({ "s": series, "codes": ["SUMMER-003"] }),
        )
        .await;
    assert_eq!(d["revokeCoupons"]["revokedCount"], 0, "{d}");
    assert_eq!(
        d["revokeCoupons"]["alreadyRevokedCodes"],
        json!(["SUMMER-003"])
    );
    assert_eq!(series_state(&app, &key, &series).await, after);
    // A revoked code still blocks its upload again, and the error says why.
    let j = app
        .upload_ok(&key, &series, b"code\nSUMMER-003\n", json!({}))
        .await;
    let j = app.wait_job(&key, &j).await;
    assert_eq!(
        (j["totalUploadedCount"].clone(), j["errorCount"].clone()),
        (json!(0), json!(1)),
        "{j}"
    );
    let errors = app.download(&j["errorFileUrl"]).await;
    assert!(errors.contains("CODE_ALREADY_EXISTS"), "{errors}");
    assert!(
        errors.contains("revoked"),
        "the message says the code was revoked: {errors}"
    );
    // A customer whose coupons were all revoked holds none: one coupon per customer lets them
    // have a new one (C-3's were revoked above).
    let once = app.create_series(&key, json!({ "name": "once" })).await;
    let mut file = String::from("code,customer\n");
    file.push_str("ONCE-1,C-3\n");
    let j1 = app
        .upload_ok(
            &key,
            &once,
            file.as_bytes(),
            json!({ "kind": "EXTERNAL_ID", "customerColumn": 1, "codeColumn": 0 }),
        )
        .await;
    assert_eq!(app.wait_job(&key, &j1).await["totalUploadedCount"], 1);
    let d = app
        .gql_ok(&key, REVOKE, json!({ "s": once, "codes": ["ONCE-1"] }))
        .await;
    assert_eq!(d["revokeCoupons"]["revokedCount"], 1, "{d}");
    let j2 = app
        .upload_ok(
            &key,
            &once,
            b"code,customer\nONCE-2,C-3\n",
            json!({ "kind": "EXTERNAL_ID", "customerColumn": 1, "codeColumn": 0 }),
        )
        .await;
    let j2 = app.wait_job(&key, &j2).await;
    assert_eq!(
        j2["totalUploadedCount"], 1,
        "a revoked coupon does not hold its customer: {j2}"
    );
    // Bad input changes nothing: a READ key, too many codes, a bad code, another org's series.
    let stored = || async {
        coupon::Entity::find()
            .all(app.state.service.db())
            .await
            .expect("coupons")
    };
    let snapshot = stored().await;
    let read = app.key(1, Permission::Read).await;
    let (_, body) = app
        .gql(
            Some(&read),
            REVOKE,
            json!({ "s": series, "codes": ["SUMMER-001"] }),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let many: Vec<String> = (0..1_001).map(|i| format!("SUMMER-{i:03}")).collect();
    let (_, body) = app
        .gql(Some(&key), REVOKE, json!({ "s": series, "codes": many }))
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    let (_, body) = app
        .gql(
            Some(&key),
            REVOKE,
            json!({ "s": series, "codes": ["SUMMER-001", "BAD\u{1b}"] }),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    let other = app.key(2, Permission::ReadWrite).await;
    let (_, body) = app
        .gql(
            Some(&other),
            REVOKE,
            json!({ "s": series, "codes": ["SUMMER-001"] }),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");
    assert_eq!(stored().await, snapshot, "nothing changed");
    assert_eq!(
        coupon::Entity::find()
            .count(app.state.service.db())
            .await
            .expect("count"),
        27,
        "25 in the first series, 2 in the second"
    );
}

db_tests!(row_errors_are_paged_summed_and_outlive_the_purge);

const ERRORS: &str = "query($j: ID!, $first: Int, $after: String, $code: RowErrorCode) { uploadJob(jobId: $j) {
    errorCount errorSummary { errorCode count }
    rowErrors(first: $first, after: $after, errorCode: $code) { totalCount pageInfo { hasNextPage endCursor }
      nodes { rowNumber errorCode message couponCode customerIdentifier } } } }";

/// `rowErrors` and `errorSummary` say what the error file says, paged and counted; they stay
/// when the job's staged rows are purged, and a job whose rows were all purged (as before
/// rejected rows were kept) gets them back from its error file.
async fn row_errors_are_paged_summed_and_outlive_the_purge(app: TestApp) {
    use coupon_upload_api::entity::upload_row;
    use sea_orm::{ColumnTrait, QueryFilter};
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let file =
        "code,customer\nOK-1,E-1\nBAD CODE,E-2\nOK-2,E-3\nOK-1,E-4\nOK-3,E-1\n,E-5\nBAD!,E-6\n";
    let job = app
        .upload_ok(
            &key,
            &series,
            file.as_bytes(),
            json!({ "kind": "EXTERNAL_ID", "customerColumn": 1, "codeColumn": 0 }),
        )
        .await;
    let j = app.wait_job(&key, &job).await;
    let error_file = app.download(&j["errorFileUrl"]).await;
    let read = |vars: Value| {
        let mut v = vars;
        v["j"] = json!(job);
        let app = &app;
        let key = &key;
        async move { app.gql_ok(key, ERRORS, v).await["uploadJob"].clone() }
    };
    let all = read(json!({})).await;
    let errors = all["rowErrors"]["nodes"]
        .as_array()
        .cloned()
        .expect("nodes");
    assert_eq!(all["rowErrors"]["totalCount"], all["errorCount"], "{all}");
    assert_eq!(errors.len() as i64, all["errorCount"].as_i64().expect("n"));
    assert_eq!(errors.len(), error_file.lines().count() - 1, "{error_file}");
    // Row for row what the error file holds.
    for (e, line) in errors.iter().zip(error_file.lines().skip(1)) {
        let cols: Vec<String> = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_bytes())
            .records()
            .next()
            .expect("record")
            .expect("csv")
            .iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(e["rowNumber"].to_string(), cols[0], "{e} vs {line}");
        assert_eq!(e["errorCode"], cols[1].as_str());
        assert_eq!(e["message"], cols[2].as_str());
        assert_eq!(e["couponCode"], cols[3].as_str());
        assert_eq!(e["customerIdentifier"], cols[4].as_str());
    }
    // The summary counts per code, and sums to the error count.
    let summary = all["errorSummary"].as_array().cloned().expect("summary");
    let sum: i64 = summary
        .iter()
        .map(|c| c["count"].as_i64().expect("count"))
        .sum();
    assert_eq!(sum, all["errorCount"].as_i64().expect("n"), "{all}");
    for c in &summary {
        let n = errors
            .iter()
            .filter(|e| e["errorCode"] == c["errorCode"])
            .count();
        assert_eq!(c["count"], n, "{all}");
    }
    // Pages of 2, then a code filter.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let p = read(json!({ "first": 2, "after": after })).await;
        let nodes = p["rowErrors"]["nodes"].as_array().cloned().expect("nodes");
        assert!(nodes.len() <= 2);
        seen.extend(nodes);
        if p["rowErrors"]["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = p["rowErrors"]["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_owned);
    }
    assert_eq!(seen, errors);
    let wanted = summary[0]["errorCode"].clone();
    let p = read(json!({ "code": wanted })).await;
    assert_eq!(p["rowErrors"]["totalCount"], summary[0]["count"], "{p}");
    assert!(
        p["rowErrors"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .all(|e| e["errorCode"] == wanted)
    );
    // After the purge of its staged rows, and after losing all of them.
    coupon_upload_api::worker::purge_staged_rows(&app.state.service, std::time::Duration::ZERO)
        .await
        .expect("purge");
    assert_eq!(read(json!({})).await, all, "row errors outlive the purge");
    let db = app.state.service.db();
    upload_row::Entity::delete_many()
        .filter(upload_row::Column::JobId.eq(job.parse::<i64>().expect("id")))
        .exec(db)
        .await
        .expect("delete");
    assert_eq!(read(json!({})).await, all, "restored from the error file");
    // A foreign cursor is coded.
    let (_, body) = app
        .gql(
            Some(&key),
            ERRORS,
            json!({ "j": job, "after": "Q291cG9uOjE" }),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
}

crate::db_tests_with!(
    crate::helpers::Options { batch_rows: 200, ..Default::default() };
    a_revoke_during_an_upload_keeps_every_count_exact
);

/// A revoke of a series' codes while an upload to the same series is committing: they take the
/// series row's lock in turn, so `numUploadedTotal` ends equal to the active coupons, within
/// `maxCreate`, and the upload's counts equal its coupons.
async fn a_revoke_during_an_upload_keeps_every_count_exact(app: TestApp) {
    use coupon_upload_api::domain::CouponStatus;
    use sea_orm::{ColumnTrait, QueryFilter};
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({ "maxCreate": 5_000 })).await;
    let mut first = String::from("code\n");
    for i in 0..1_000 {
        first.push_str(&format!("OLD-{i:05}\n"));
    }
    let a = app
        .upload_ok(&key, &series, first.as_bytes(), json!({}))
        .await;
    app.wait_job(&key, &a).await;
    let mut second = String::from("code\n");
    for i in 0..20_000 {
        second.push_str(&format!("NEW-{i:05}\n"));
    }
    let b = app
        .upload_ok(&key, &series, second.as_bytes(), json!({}))
        .await;
    // Revoke in several calls while B commits its batches.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let j = crate::fixtures::stored_job(&app, b.parse().expect("id")).await;
        if j.processed_row_count > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B did not start committing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut revoked = 0;
    let mut during = 0;
    for round in 0..5 {
        let codes: Vec<String> = (round * 40..round * 40 + 40)
            .map(|i| format!("OLD-{i:05}"))
            .collect();
        let d = app
            .gql_ok(&key, REVOKE, json!({ "s": series, "codes": codes }))
            .await;
        revoked += d["revokeCoupons"]["revokedCount"].as_i64().expect("count");
        let j = crate::fixtures::stored_job(&app, b.parse().expect("id")).await;
        if j.upload_status == coupon_upload_api::domain::UploadJobStatus::Processing {
            during += 1;
        }
    }
    assert_eq!(revoked, 200);
    assert!(
        during >= 3,
        "the revokes ran while the upload committed ({during} of 5)"
    );
    let jb = app.wait_job(&key, &b).await;
    assert_eq!(jb["uploadStatus"], "FINISHED", "{jb}");
    let db = app.state.service.db();
    let series_id: i64 = series.parse().expect("id");
    let active = coupon::Entity::find()
        .filter(coupon::Column::CouponSeriesId.eq(series_id))
        .filter(coupon::Column::Status.eq(CouponStatus::Active))
        .count(db)
        .await
        .expect("count");
    let of_b = coupon::Entity::find()
        .filter(coupon::Column::UploadJobId.eq(b.parse::<i64>().expect("id")))
        .count(db)
        .await
        .expect("count");
    let state = series_state(&app, &key, &series).await;
    assert_eq!(state["numUploadedTotal"].as_u64(), Some(active), "{state}");
    assert!(active <= 5_000, "{active} active coupons over maxCreate");
    assert_eq!(jb["totalUploadedCount"].as_u64(), Some(of_b), "{jb}");
    assert_eq!(active, 800 + of_b, "{jb}");
    assert_eq!(
        jb["totalUploadedCount"].as_i64().unwrap_or(0) + jb["errorCount"].as_i64().unwrap_or(0),
        20_000,
        "{jb}"
    );
}
