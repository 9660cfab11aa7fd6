//! Uploads end to end: GraphQL multipart and REST, through the worker, to FINISHED with exact
//! counts and files; every rejection reason; whole-file failures; limits; tenancy; cancel.

use coupon_upload_api::domain::Permission;
use coupon_upload_api::entity::coupon;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{Backend, Options, TestApp, code};
use crate::{db_tests, db_tests_with};

db_tests!(
    graphql_upload_finishes_with_exact_counts_and_files,
    rest_upload_answers_like_capillary_and_finishes,
    every_identifier_type_forms_audience_versions,
    repeated_customers_and_max_create,
    whole_file_problems_end_errored,
    csv_dialects_are_read_right,
    read_keys_and_foreign_series_are_refused,
    series_mutations_validate_and_stay_in_the_org,
    bad_upload_options_are_bad_user_input,
);

/// (rowNumber, errorCode, couponCode, customerIdentifier) of each row of an error file, after
/// checking the header and that every message is non-empty.
fn error_rows(csv_text: &str) -> Vec<(i64, String, String, String)> {
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = r.headers().expect("header").clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "rowNumber",
            "errorCode",
            "errorMessage",
            "couponCode",
            "customerIdentifier"
        ]
    );
    r.records()
        .map(|rec| {
            let rec = rec.expect("record");
            assert!(!rec[2].is_empty(), "message for row {}", &rec[0]);
            (
                rec[0].parse().expect("row number"),
                rec[1].to_owned(),
                rec[3].to_owned(),
                rec[4].to_owned(),
            )
        })
        .collect()
}

/// (rowNumber, couponId, couponCode, customerIdentifier) of each row of a success file.
fn success_rows(csv_text: &str) -> Vec<(i64, i64, String, String)> {
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = r.headers().expect("header").clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        ["rowNumber", "couponId", "couponCode", "customerIdentifier"]
    );
    r.records()
        .map(|rec| {
            let rec = rec.expect("record");
            (
                rec[0].parse().expect("n"),
                rec[1].parse().expect("id"),
                rec[2].to_owned(),
                rec[3].to_owned(),
            )
        })
        .collect()
}

fn s(v: &str) -> String {
    v.to_owned()
}

async fn series_total(app: &TestApp, key: &str, series: &str) -> i64 {
    let d = app
        .gql_ok(
            key,
            "query($id: ID!) { couponSeries(id: $id) { numUploadedTotal } }",
            json!({ "id": series }),
        )
        .await;
    d["couponSeries"]["numUploadedTotal"]
        .as_i64()
        .expect("total")
}

async fn graphql_upload_finishes_with_exact_counts_and_files(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app
        .create_series(&key, json!({ "name": "S", "codeMaxLength": 12 }))
        .await;
    let first = app
        .upload_ok(&key, &series, b"code\nEXIST-1\n", json!({}))
        .await;
    let j = app.wait_job(&key, &first).await;
    assert_eq!(j["uploadStatus"], "FINISHED", "{j}");
    assert_eq!(j["totalUploadedCount"], 1);

    let file = "code,extra\nGOOD-1,x\n GOOD-2 ,x\nBAD CODE,x\n,x\nTOOLONG-123456,x\nDUP-1,x\nEXIST-1,x\nDUP-1,x\n\"GOOD,3\",x\nGOOD-4\n";
    let job = app
        .upload_ok(&key, &series, file.as_bytes(), json!({}))
        .await;
    let j = app.wait_job(&key, &job).await;
    assert_eq!(j["uploadStatus"], "FINISHED", "{j}");
    assert_eq!(j["actualRowCount"], 10);
    assert_eq!(j["totalUploadedCount"], 3);
    assert_eq!(j["errorCount"], 7);
    assert_eq!(j["processedRowCount"], 10);
    assert_eq!(j["uploadedFileName"], "codes.csv");
    assert_eq!(j["uploadTableName"], "upload_row");
    assert_eq!(j["audienceGroupId"], Value::Null);

    assert_eq!(
        error_rows(&app.download(&j["errorFileUrl"]).await),
        vec![
            (3, s("INVALID_COUPON_CODE"), s("BAD CODE"), s("")),
            (4, s("EMPTY_COUPON_CODE"), s(""), s("")),
            (5, s("COUPON_CODE_TOO_LONG"), s("TOOLONG-123456"), s("")),
            (6, s("DUPLICATE_CODE_IN_FILE"), s("DUP-1"), s("")),
            (7, s("CODE_ALREADY_EXISTS"), s("EXIST-1"), s("")),
            (8, s("DUPLICATE_CODE_IN_FILE"), s("DUP-1"), s("")),
            (9, s("INVALID_COUPON_CODE"), s("GOOD,3"), s("")),
        ]
    );
    let ok = success_rows(&app.download(&j["successFileUrl"]).await);
    let codes: Vec<(i64, String)> = ok.iter().map(|r| (r.0, r.2.clone())).collect();
    assert_eq!(
        codes,
        vec![(1, s("GOOD-1")), (2, s("GOOD-2")), (10, s("GOOD-4"))]
    );
    // Each coupon id names the stored coupon with that code, from this job and row.
    for (row, id, code, _) in &ok {
        let c = coupon::Entity::find_by_id(*id)
            .one(app.state.service.db())
            .await
            .expect("db")
            .expect("coupon");
        assert_eq!(&c.code, code);
        assert_eq!(c.row_number, Some(*row));
        assert_eq!(c.upload_job_id.map(|j| j.to_string()), Some(job.clone()));
        assert_eq!(c.org_id, 1);
    }
    assert_eq!(
        app.download(&j["uploadedFileUrl"]).await,
        file,
        "the file exactly as uploaded"
    );
    assert_eq!(series_total(&app, &key, &series).await, 4);
    let stored = coupon::Entity::find()
        .filter(coupon::Column::OrgId.eq(1))
        .all(app.state.service.db())
        .await
        .expect("db");
    assert_eq!(stored.len(), 4, "no coupon lost or stored twice");
}

async fn rest_upload_answers_like_capillary_and_finishes(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(
                b"mobile,code\n+919812345678,R-1\n12,R-2\n919812345679,R-3\n".to_vec(),
            )
            .file_name("../../etc/rest.csv"),
        )
        .text("customerIdentifier", "MOBILE")
        .text("customerIdentifierColumn", "0")
        .text("couponCodeColumn", "1");
    let res = app
        .client
        .post(format!("{}/coupon/api/v1/upload/file/{series}", app.base))
        .header("X-CAP-API-OAUTH-TOKEN", &key)
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["status"], 200);
    // Capillary's "Upload Coupons (Batch)" shape: the org, the series, the new job in
    // `uploadJobStatuses`, and the file name.
    let top = &body["result"];
    assert_eq!(top["fileName"], "rest.csv", "path parts removed");
    assert_eq!(top["orgId"], 1, "{body}");
    assert_eq!(
        top["couponSeriesId"].as_i64().map(|v| v.to_string()),
        Some(series.clone())
    );
    assert_eq!(
        top["uploadJobStatuses"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    let r = &top["uploadJobStatuses"][0];
    assert_eq!(r["uploadStatus"], "STARTED");
    assert_eq!(r["uploadedFileName"], "rest.csv");
    assert_eq!(r["audienceGroupId"], 0);
    let job = r["jobId"].as_i64().expect("job id").to_string();
    let j = app.wait_job(&key, &job).await;
    assert_eq!(
        (
            j["actualRowCount"].clone(),
            j["totalUploadedCount"].clone(),
            j["errorCount"].clone()
        ),
        (json!(3), json!(2), json!(1))
    );
    let (_, status) = app
        .rest_get(
            &format!("/coupon/api/v1/upload/getUploadStatus/{series}"),
            Some(&key),
        )
        .await;
    let rest_job = &status["result"]["uploadJobStatuses"][0];
    assert_eq!(rest_job["uploadStatus"], "FINISHED");
    assert_eq!(rest_job["totalUploadedCount"], 2);
    assert!(rest_job["audienceGroupId"].as_i64().unwrap_or(0) > 0);
    assert_eq!(
        error_rows(&app.download(&rest_job["errorFileUrl"]).await),
        vec![(2, s("INVALID_CUSTOMER_IDENTIFIER"), s("R-2"), s("12"))]
    );
}

async fn every_identifier_type_forms_audience_versions(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let cases = [
        (
            "MOBILE",
            "+919800000001\n919800000002\n1234567\n+1234567890123456\n",
            vec![(3, "1234567"), (4, "+1234567890123456")],
        ),
        (
            "EMAIL",
            "Ana@Example.com\nbo@example.org\nnot-an-email\na@b\n",
            vec![(3, "not-an-email"), (4, "a@b")],
        ),
        ("EXTERNAL_ID", "ext-1\next 2\n   \nX\n", vec![(3, "   ")]),
        ("USER_ID", "42\n007\n0\n-5\n", vec![(3, "0"), (4, "-5")]),
    ];
    for (kind, customers, bad) in cases {
        let series = app
            .create_series(
                &key,
                json!({ "name": kind, "allowMultiplePerCustomer": true }),
            )
            .await;
        let mut file = String::from("customer,code\n");
        for (i, c) in customers.lines().enumerate() {
            file.push_str(&format!("\"{c}\",{kind}-C{i}\n"));
        }
        let job = app
            .upload_ok(
                &key,
                &series,
                file.as_bytes(),
                json!({ "kind": kind, "customerColumn": 0 }),
            )
            .await;
        let j = app.wait_job(&key, &job).await;
        assert_eq!(j["uploadStatus"], "FINISHED", "{kind}: {j}");
        assert_eq!(j["customerIdentifier"], kind);
        let rows = error_rows(&app.download(&j["errorFileUrl"]).await);
        let got: Vec<(i64, String)> = rows.iter().map(|r| (r.0, r.3.clone())).collect();
        let want: Vec<(i64, String)> = bad.iter().map(|(n, c)| (*n as i64, s(c))).collect();
        assert_eq!(got, want, "{kind}");
        let expected_codes: Vec<&str> = if kind == "EXTERNAL_ID" {
            vec!["MISSING_CUSTOMER_IDENTIFIER"]
        } else {
            vec!["INVALID_CUSTOMER_IDENTIFIER"; bad.len()]
        };
        assert_eq!(
            rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
            expected_codes,
            "{kind}"
        );
        let accepted = 4 - bad.len() as i64;
        assert_eq!(j["totalUploadedCount"], accepted, "{kind}");
        assert_eq!(j["audienceGroupVersion"]["versionNumber"], 1, "{kind}");
        assert_eq!(
            j["audienceGroupVersion"]["customerCount"], accepted,
            "{kind}"
        );
        assert_eq!(j["audienceGroup"]["id"], j["audienceGroupId"]);
    }
    // Normalized identifiers are stored: lower-case email, mobile without '+', canonical user id.
    let all = coupon::Entity::find()
        .all(app.state.service.db())
        .await
        .expect("db");
    let ids: Vec<&str> = all
        .iter()
        .filter_map(|c| c.customer_identifier.as_deref())
        .collect();
    for want in ["919800000001", "ana@example.com", "7", "ext 2"] {
        assert!(ids.contains(&want), "{want} in {ids:?}");
    }

    // A second tagged upload to a series adds version 2 of the same group.
    let series = app.create_series(&key, json!({ "name": "TWICE" })).await;
    let one = app
        .upload_ok(
            &key,
            &series,
            b"c,code\n1,V-1\n2,V-2\n",
            json!({ "kind": "USER_ID", "customerColumn": 0 }),
        )
        .await;
    let j1 = app.wait_job(&key, &one).await;
    let two = app
        .upload_ok(
            &key,
            &series,
            b"c,code\n3,V-3\n",
            json!({ "kind": "USER_ID", "customerColumn": 0 }),
        )
        .await;
    let j2 = app.wait_job(&key, &two).await;
    assert_eq!(j1["audienceGroupId"], j2["audienceGroupId"]);
    assert_eq!(j2["audienceGroupVersion"]["versionNumber"], 2);
    assert_eq!(j2["audienceGroupVersion"]["customerCount"], 1);
    assert_eq!(
        j2["audienceGroup"]["customerCount"], 1,
        "the group's count is its latest version's"
    );
    let g = app
        .gql_ok(&key, "query($id: ID!) { audienceGroup(id: $id) { versions { versionNumber customerCount uploadJobId } } }", json!({ "id": j2["audienceGroupId"] }))
        .await;
    assert_eq!(
        g["audienceGroup"]["versions"],
        json!([
            { "versionNumber": 2, "customerCount": 1, "uploadJobId": two },
            { "versionNumber": 1, "customerCount": 2, "uploadJobId": one },
        ])
    );
}

async fn repeated_customers_and_max_create(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    // One coupon per customer: later rows of a customer are rejected, across formats and uploads.
    let series = app
        .create_series(&key, json!({ "name": "ONE-EACH", "maxCreate": 4 }))
        .await;
    let first = app
        .upload_ok(
            &key,
            &series,
            b"m,c\n+919800000001,A-1\n919800000001,A-2\n+919800000002,A-3\n",
            json!({ "kind": "MOBILE", "customerColumn": 0 }),
        )
        .await;
    let j = app.wait_job(&key, &first).await;
    assert_eq!(
        error_rows(&app.download(&j["errorFileUrl"]).await),
        vec![(2, s("DUPLICATE_CUSTOMER"), s("A-2"), s("919800000001"))]
    );
    assert_eq!(j["audienceGroupVersion"]["customerCount"], 2);
    // Room left under maxCreate 4: 2. Row 1's customer already has a coupon.
    let second = app
        .upload_ok(
            &key,
            &series,
            b"m,c\n+919800000002,B-1\n+919800000003,B-2\n+919800000004,B-3\n+919800000005,B-4\n",
            json!({ "kind": "MOBILE", "customerColumn": 0 }),
        )
        .await;
    let j = app.wait_job(&key, &second).await;
    assert_eq!(j["uploadStatus"], "FINISHED");
    assert_eq!(
        error_rows(&app.download(&j["errorFileUrl"]).await),
        vec![
            (1, s("DUPLICATE_CUSTOMER"), s("B-1"), s("+919800000002")),
            (4, s("MAX_CREATE_EXCEEDED"), s("B-4"), s("+919800000005")),
        ]
    );
    assert_eq!(series_total(&app, &key, &series).await, 4);
    // Full: every valid row is now over the limit, and the job still FINISHES.
    let third = app
        .upload_ok(
            &key,
            &series,
            b"m,c\n+919800000009,C-1\n",
            json!({ "kind": "MOBILE", "customerColumn": 0 }),
        )
        .await;
    let j = app.wait_job(&key, &third).await;
    assert_eq!(j["uploadStatus"], "FINISHED");
    assert_eq!(
        (j["totalUploadedCount"].clone(), j["errorCount"].clone()),
        (json!(0), json!(1))
    );
    // Series allowing several coupons per customer accept repeats.
    let many = app
        .create_series(
            &key,
            json!({ "name": "MANY", "allowMultiplePerCustomer": true }),
        )
        .await;
    let job = app
        .upload_ok(
            &key,
            &many,
            b"e,c\nx@example.com,M-1\nX@example.com,M-2\n",
            json!({ "kind": "EMAIL", "customerColumn": 0 }),
        )
        .await;
    let j = app.wait_job(&key, &job).await;
    assert_eq!(j["totalUploadedCount"], 2);
    assert_eq!(
        j["audienceGroupVersion"]["customerCount"], 1,
        "distinct customers"
    );
}

async fn whole_file_problems_end_errored(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let mut png = vec![
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d,
    ];
    png.extend_from_slice(&[0u8; 64]);
    let cases: Vec<(&str, Vec<u8>, Value)> = vec![
        ("empty", Vec::new(), json!({})),
        ("blank", b"\n\n  \n".to_vec(), json!({})),
        ("binary", png, json!({})),
        ("latin-1", b"code,name\nA-1,Jos\xe9\n".to_vec(), json!({})),
        (
            "no such column",
            b"code\nA-1\n".to_vec(),
            json!({ "codeColumn": 3 }),
        ),
        (
            "no such customer column",
            b"code\nA-1\n".to_vec(),
            json!({ "kind": "EMAIL", "customerColumn": 5 }),
        ),
    ];
    for (what, content, args) in cases {
        let job = app.upload_ok(&key, &series, &content, args).await;
        let j = app.wait_job(&key, &job).await;
        assert_eq!(j["uploadStatus"], "ERRORED", "{what}: {j}");
        assert!(
            j["errorReason"].as_str().is_some_and(|r| !r.is_empty()),
            "{what}: {j}"
        );
        assert_eq!(
            (j["actualRowCount"].clone(), j["totalUploadedCount"].clone()),
            (json!(0), json!(0)),
            "{what}"
        );
        assert_eq!(j["errorFileUrl"], Value::Null, "{what}");
    }
    // A header and nothing else is a file with no rows, not an error.
    let job = app.upload_ok(&key, &series, b"code\n", json!({})).await;
    let j = app.wait_job(&key, &job).await;
    assert_eq!(j["uploadStatus"], "FINISHED", "{j}");
    assert_eq!(j["actualRowCount"], 0);
    assert_eq!(
        app.download(&j["successFileUrl"]).await,
        "rowNumber,couponId,couponCode,customerIdentifier\n"
    );
    assert_eq!(series_total(&app, &key, &series).await, 0);
}

async fn csv_dialects_are_read_right(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app
        .create_series(
            &key,
            json!({ "codeMaxLength": 255, "allowMultiplePerCustomer": true }),
        )
        .await;
    // As long as a row may be (`MAX_RECORD_BYTES`, 64 KiB by default), less its other fields.
    let long = "L".repeat(64 * 1024 - 16);
    let file = format!(
        "\u{feff}ext,code,note\r\n\"id, with comma\",Q-1,\r\n\"say \"\"id\"\"\",Q-2,\"multi\nline\r\nnote\"\r\nplain,{long}\r\nlast,Q-3\r\n"
    );
    let job = app
        .upload_ok(
            &key,
            &series,
            file.as_bytes(),
            json!({ "kind": "EXTERNAL_ID", "customerColumn": 0 }),
        )
        .await;
    let j = app.wait_job(&key, &job).await;
    assert_eq!(j["uploadStatus"], "FINISHED", "{j}");
    assert_eq!(
        j["actualRowCount"], 4,
        "a quoted newline does not make a row"
    );
    let ok = success_rows(&app.download(&j["successFileUrl"]).await);
    let got: Vec<(i64, String, String)> = ok.into_iter().map(|r| (r.0, r.2, r.3)).collect();
    assert_eq!(
        got,
        vec![
            (1, s("Q-1"), s("id, with comma")),
            (2, s("Q-2"), s("say \"id\"")),
            (4, s("Q-3"), s("last"))
        ]
    );
    let errors = error_rows(&app.download(&j["errorFileUrl"]).await);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].0, errors[0].1.as_str()),
        (3, "COUPON_CODE_TOO_LONG")
    );
    assert_eq!(errors[0].2.len(), long.len(), "the original value, whole");
    // No header: every line is data; the code column defaults to the first non-customer one.
    let job = app
        .upload_ok(&key, &series, b"N-1\nN-2\n", json!({ "hasHeader": false }))
        .await;
    let j = app.wait_job(&key, &job).await;
    assert_eq!(
        (j["actualRowCount"].clone(), j["totalUploadedCount"].clone()),
        (json!(2), json!(2))
    );
    // A short row is a row error, not a file error.
    let job = app
        .upload_ok(
            &key,
            &series,
            b"a,code\nx,S-1\ny\n",
            json!({ "codeColumn": 1 }),
        )
        .await;
    let j = app.wait_job(&key, &job).await;
    assert_eq!(
        error_rows(&app.download(&j["errorFileUrl"]).await)
            .into_iter()
            .map(|r| (r.0, r.1))
            .collect::<Vec<_>>(),
        vec![(2, s("UNPARSEABLE_ROW"))]
    );
}

async fn read_keys_and_foreign_series_are_refused(app: TestApp) {
    let writer = app.key(1, Permission::ReadWrite).await;
    let reader = app.key(1, Permission::Read).await;
    let other = app.key(2, Permission::ReadWrite).await;
    let series = app.create_series(&writer, json!({})).await;
    let foreign = app.create_series(&other, json!({})).await;
    let files_before = count_files(app.dir());

    let (status, body) = app
        .upload_gql(&reader, &series, "a.csv", b"code\nA\n".to_vec(), json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&body), "FORBIDDEN");
    let (status, body) = app
        .upload_gql(&writer, &foreign, "a.csv", b"code\nA\n".to_vec(), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(code(&body), "NOT_FOUND", "{body}");
    let (_, missing) = app
        .upload_gql(&writer, "999999", "a.csv", b"code\nA\n".to_vec(), json!({}))
        .await;
    assert_eq!(
        body["errors"][0]["message"]
            .as_str()
            .map(|m| m.replace(&foreign, "X")),
        missing["errors"][0]["message"]
            .as_str()
            .map(|m| m.replace("999999", "X"))
    );
    // REST: the same refusals, in Capillary's envelope.
    for (key, s, want) in [(&reader, &series, 403), (&writer, &foreign, 404)] {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"code\nA\n".to_vec()).file_name("a.csv"),
        );
        let res = app
            .client
            .post(format!("{}/coupon/api/v1/upload/file/{s}", app.base))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .await
            .expect("send");
        assert_eq!(res.status().as_u16(), want);
        let b: Value = res.json().await.expect("json");
        assert_eq!(b["success"], false);
    }
    // Mutations other than uploads, too.
    for q in [
        "mutation { createCouponSeries(input: { name: \"N\" }) { id } }".to_owned(),
        format!(
            "mutation {{ updateCouponSeries(id: \"{series}\", input: {{ name: \"N\" }}) {{ id }} }}"
        ),
        "mutation { cancelUploadJob(jobId: \"1\") { jobId } }".to_owned(),
    ] {
        let (_, b) = app.gql(Some(&reader), &q, json!({})).await;
        assert_eq!(code(&b), "FORBIDDEN", "{q}: {b}");
    }
    // Nothing was stored, no job made.
    assert_eq!(count_files(app.dir()), files_before, "no file left behind");
    let jobs = coupon_upload_api::entity::upload_job::Entity::find()
        .all(app.state.service.db())
        .await
        .expect("db");
    assert!(jobs.is_empty());
    // Org 2 cannot see or cancel org 1's jobs.
    let job = app
        .upload_ok(&writer, &series, b"code\nA\n", json!({}))
        .await;
    let (_, b) = app
        .gql(
            Some(&other),
            &format!("mutation {{ cancelUploadJob(jobId: \"{job}\") {{ jobId }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(code(&b), "NOT_FOUND");
}

fn count_files(dir: &std::path::Path) -> usize {
    fn walk(p: &std::path::Path, n: &mut usize) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, n);
                } else if !path.to_string_lossy().contains("test.db") {
                    *n += 1;
                }
            }
        }
    }
    let mut n = 0;
    walk(dir, &mut n);
    n
}

async fn series_mutations_validate_and_stay_in_the_org(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let other = app.key(2, Permission::ReadWrite).await;
    let d = app
        .gql_ok(
            &key,
            r#"mutation { createCouponSeries(input: { name: "  Spring  ", description: "d", maxCreate: 10, allowMultiplePerCustomer: true, codeMaxLength: 30 }) {
                id orgId name description maxCreate allowMultiplePerCustomer codeMaxLength numUploadedTotal clientHandlingType } }"#,
            json!({}),
        )
        .await;
    let c = &d["createCouponSeries"];
    assert_eq!(c["name"], "Spring");
    assert_eq!(c["orgId"], "1");
    assert_eq!(
        (
            c["maxCreate"].clone(),
            c["codeMaxLength"].clone(),
            c["numUploadedTotal"].clone()
        ),
        (json!(10), json!(30), json!(0))
    );
    assert_eq!(c["clientHandlingType"], "DISC_CODE_PIN");
    let id = c["id"].as_str().expect("id").to_owned();
    for bad in [
        r#"{ name: "" }"#,
        r#"{ name: "x", maxCreate: -2 }"#,
        r#"{ name: "x", codeMaxLength: 0 }"#,
        r#"{ name: "x", codeMaxLength: 256 }"#,
        r#"{ name: "a\u0000b" }"#,
    ] {
        let (_, b) = app
            .gql(
                Some(&key),
                &format!("mutation {{ createCouponSeries(input: {bad}) {{ id }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(code(&b), "BAD_USER_INPUT", "{bad}: {b}");
    }
    let d = app
        .gql_ok(&key, "mutation($id: ID!) { updateCouponSeries(id: $id, input: { maxCreate: -1, name: \"Renamed\" }) { name maxCreate description } }", json!({ "id": id }))
        .await;
    assert_eq!(
        d["updateCouponSeries"],
        json!({ "name": "Renamed", "maxCreate": -1, "description": "d" })
    );
    // maxCreate cannot go below what was uploaded.
    let job = app
        .upload_ok(&key, &id, b"code\nU-1\nU-2\n", json!({}))
        .await;
    app.wait_job(&key, &job).await;
    let (_, b) = app
        .gql(
            Some(&key),
            "mutation($id: ID!) { updateCouponSeries(id: $id, input: { maxCreate: 1 }) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code(&b), "BAD_USER_INPUT", "{b}");
    let (_, b) = app
        .gql(
            Some(&other),
            "mutation($id: ID!) { updateCouponSeries(id: $id, input: { name: \"Mine\" }) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code(&b), "NOT_FOUND");
    let d = app
        .gql_ok(
            &key,
            "query($id: ID!) { couponSeries(id: $id) { name } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(d["couponSeries"]["name"], "Renamed", "unchanged by org 2");
}

async fn bad_upload_options_are_bad_user_input(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    for args in [
        json!({ "kind": "MOBILE" }),
        json!({ "kind": "NOT_TAGGED", "customerColumn": 0 }),
        json!({ "kind": "EMAIL", "customerColumn": 1, "codeColumn": 1 }),
        json!({ "codeColumn": -1 }),
        json!({ "series": "abc" }),
    ] {
        let (status, body) = app
            .upload_gql(&key, &series, "a.csv", b"code\nA\n".to_vec(), args.clone())
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(code(&body), "BAD_USER_INPUT", "{args}: {body}");
    }
    // Not a multipart body, or no file part.
    let res = app
        .client
        .post(format!("{}/coupon/api/v1/upload/file/{series}", app.base))
        .bearer_auth(&key)
        .body("code\nA\n")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let form = reqwest::multipart::Form::new().text("customerIdentifier", "NOT_TAGGED");
    let res = app
        .client
        .post(format!("{}/coupon/api/v1/upload/file/{series}", app.base))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let jobs = coupon_upload_api::entity::upload_job::Entity::find()
        .all(app.state.service.db())
        .await
        .expect("db");
    assert!(jobs.is_empty(), "no job for refused uploads");
}

// Uploads larger than the limit are refused while streaming, and nothing stays behind.
db_tests!(
    size_limit_is_enforced_while_streaming,
    refused_forms_are_answered_while_the_client_sends,
);

async fn size_limit_is_enforced_while_streaming(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let big = vec![b'A'; 5 * 1024 * 1024];
    let (status, body) = app
        .upload_gql(&key, &series, "big.csv", big.clone(), json!({}))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(code(&body), "PAYLOAD_TOO_LARGE");
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(big).file_name("big.csv"),
    );
    let res = app
        .client
        .post(format!("{}/coupon/api/v1/upload/file/{series}", app.base))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let b: Value = res.json().await.expect("json");
    assert_eq!(b["errors"][0]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(count_files(app.dir()), 0, "nothing stored or spooled");
    let jobs = coupon_upload_api::entity::upload_job::Entity::find()
        .all(app.state.service.db())
        .await
        .expect("db");
    assert!(jobs.is_empty());
}

/// A form refused part-way (one file too many, a text field over its limit) while the client is
/// still sending megabytes: the client gets the coded error, not a reset connection, and
/// nothing is kept.
async fn refused_forms_are_answered_while_the_client_sends(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    // More than loopback's socket buffers hold, so the client is still sending when the
    // server answers.
    let big = vec![b'A'; 24 * 1024 * 1024];
    let ops = json!({
        "query": "mutation($f: Upload!) { uploadCoupons(couponSeriesId: \"1\", file: $f) { jobId } }",
        "variables": { "f": null },
    });
    let forms = [
        (
            // The second file is one too many; then 24 MiB more follow.
            reqwest::multipart::Form::new()
                .text("operations", ops.to_string())
                .text("map", json!({ "0": ["variables.f"] }).to_string())
                .part(
                    "0",
                    reqwest::multipart::Part::bytes(b"code\nA-1\n".to_vec()).file_name("a.csv"),
                )
                .part(
                    "1",
                    reqwest::multipart::Part::bytes(big.clone()).file_name("b.csv"),
                )
                .part(
                    "2",
                    reqwest::multipart::Part::bytes(big.clone()).file_name("c.csv"),
                ),
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
        ),
        (
            // A text field over the 1 MiB field limit, then a file.
            reqwest::multipart::Form::new()
                .text("operations", "x".repeat(2 * 1024 * 1024))
                .part(
                    "0",
                    reqwest::multipart::Part::bytes(big.clone()).file_name("a.csv"),
                ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (i, (form, status, want)) in forms.into_iter().enumerate() {
        let res = app
            .client
            .post(format!("{}/graphql", app.base))
            .bearer_auth(&key)
            .multipart(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("form {i}: no answer: {e:?}"));
        assert_eq!(res.status(), status, "form {i}");
        let b: Value = res.json().await.expect("json");
        assert_eq!(b["errors"][0]["extensions"]["code"], want, "form {i}: {b}");
    }
    assert_eq!(count_files(app.dir()), 0, "nothing stored or spooled");
    let _ = series;
    let jobs = coupon_upload_api::entity::upload_job::Entity::find()
        .all(app.state.service.db())
        .await
        .expect("db");
    assert!(jobs.is_empty());
}

// Cancelling: a job not yet picked up is cancelled at once; one in progress stops at a batch
// boundary with exact counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_processing_sqlite() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        Options {
            worker: false,
            ..Default::default()
        },
    )
    .await
    .expect("app");
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let job = app
        .upload_ok(&key, &series, b"code\nA-1\n", json!({}))
        .await;
    let d = app
        .gql_ok(
            &key,
            "mutation($id: ID!) { cancelUploadJob(jobId: $id) { uploadStatus cancelRequested } }",
            json!({ "id": job }),
        )
        .await;
    assert_eq!(
        d["cancelUploadJob"],
        json!({ "uploadStatus": "CANCELLED", "cancelRequested": true })
    );
    let again = app
        .gql_ok(
            &key,
            "mutation($id: ID!) { cancelUploadJob(jobId: $id) { uploadStatus } }",
            json!({ "id": job }),
        )
        .await;
    assert_eq!(
        again["cancelUploadJob"]["uploadStatus"], "CANCELLED",
        "idempotent"
    );
}

db_tests!(cancel_stops_at_a_batch_boundary);

async fn cancel_stops_at_a_batch_boundary(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let mut file = String::from("code\n");
    for i in 0..20_000 {
        file.push_str(&format!("C-{i}\n"));
    }
    let job = app
        .upload_ok(&key, &series, file.as_bytes(), json!({}))
        .await;
    // Cancel as soon as rows are being committed (batches of 4 rows: thousands of batches).
    let q = "query($id: ID!) { uploadJob(jobId: $id) { uploadStatus processedRowCount } }";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let d = app.gql_ok(&key, q, json!({ "id": job })).await;
        if d["uploadJob"]["processedRowCount"].as_i64().unwrap_or(0) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let d = app
        .gql_ok(
            &key,
            "mutation($id: ID!) { cancelUploadJob(jobId: $id) { cancelRequested } }",
            json!({ "id": job }),
        )
        .await;
    assert_eq!(d["cancelUploadJob"]["cancelRequested"], true);
    let j = app.wait_job(&key, &job).await;
    assert_eq!(j["uploadStatus"], "CANCELLED", "{j}");
    let processed = j["processedRowCount"].as_i64().expect("processed");
    assert!(processed > 0 && processed < 20_000, "{j}");
    assert_eq!(j["actualRowCount"], 20_000);
    assert_eq!(
        j["totalUploadedCount"].as_i64().unwrap_or(-1) + j["errorCount"].as_i64().unwrap_or(-1),
        processed
    );
    let ok = success_rows(&app.download(&j["successFileUrl"]).await);
    assert_eq!(
        ok.len() as i64,
        processed,
        "the success file lists the committed rows"
    );
    assert_eq!(series_total(&app, &key, &series).await, processed);
    let stored = coupon::Entity::find()
        .all(app.state.service.db())
        .await
        .expect("db");
    assert_eq!(stored.len() as i64, processed);
}

// A code that reaches the org between judging and committing (another job committed it) is
// caught by the unique index at commit time and reported, with exact counts.
db_tests_with!(Options { worker: false, ..Default::default() }; codes_taken_after_judging_are_reported);

async fn codes_taken_after_judging_are_reported(app: TestApp) {
    use sea_orm::{ActiveModelTrait, Set};
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let job = app
        .upload_ok(&key, &series, b"code\nA-1\nA-2\nA-3\n", json!({}))
        .await;
    let job_id: i64 = job.parse().expect("id");
    let db = app.state.service.db();
    // As if staged and judged: three valid rows, the job ready to commit.
    let codes: Vec<String> = ["A-1", "A-2", "A-3"].map(String::from).to_vec();
    crate::fixtures::as_judged(&app, job_id, &codes).await;
    // Meanwhile another upload of the org stored A-2.
    coupon::ActiveModel {
        org_id: Set(1),
        coupon_series_id: Set(series.parse().expect("id")),
        upload_job_id: Set(None),
        row_number: Set(None),
        code: Set("A-2".into()),
        customer_identifier_type: Set(None),
        customer_identifier: Set(None),
        created_on: Set(coupon_upload_api::domain::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("coupon");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    coupon_upload_api::worker::spawn(app.state.service.clone(), Default::default(), shutdown);
    let j = app.wait_job(&key, &job).await;
    assert_eq!(j["uploadStatus"], "FINISHED", "{j}");
    assert_eq!(
        (j["totalUploadedCount"].clone(), j["errorCount"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(
        error_rows(&app.download(&j["errorFileUrl"]).await),
        vec![(2, s("CODE_ALREADY_EXISTS"), s("A-2"), s(""))]
    );
    let ok = success_rows(&app.download(&j["successFileUrl"]).await);
    assert_eq!(
        ok.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        ["A-1", "A-3"]
    );
    // The ids come from the job's reserved block and name the coupons stored for these rows.
    for (row, id, code, _) in &ok {
        let c = coupon::Entity::find_by_id(*id)
            .one(db)
            .await
            .expect("db")
            .expect("coupon");
        assert_eq!(
            (&c.code, c.row_number, c.upload_job_id),
            (code, Some(*row), Some(job_id))
        );
    }
    // A coupon stored after the job got its block takes an id past it.
    let later = coupon::ActiveModel {
        org_id: Set(1),
        coupon_series_id: Set(series.parse().expect("id")),
        code: Set("LATER-1".into()),
        created_on: Set(coupon_upload_api::domain::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("coupon");
    // (row 3, the last of the file, is the block's last id)
    assert!(
        later.id > ok.last().expect("rows").1,
        "{} inside the block",
        later.id
    );
}

/// Property: whatever bytes are uploaded, the pipeline never fails unexpectedly: the job ends
/// `FINISHED` with `totalUploadedCount + errorCount == actualRowCount`, or `ERRORED` with a
/// reason and no rows.
#[test]
fn arbitrary_files_end_finished_with_exact_counts_or_errored() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = rt
        .block_on(TestApp::spawn_with(
            Backend::Sqlite,
            Options {
                batch_rows: 3,
                ..Default::default()
            },
        ))
        .expect("app");
    let key = rt.block_on(app.key(1, Permission::ReadWrite));
    let series = rt.block_on(app.create_series(&key, json!({ "codeMaxLength": 12 })));
    // Bytes biased towards CSV: separators, quotes, newlines, code characters, and anything.
    let byte = prop_oneof![
        3 => proptest::sample::select(b",\"\n\r -_aZ09".to_vec()),
        1 => any::<u8>(),
    ];
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(content in proptest::collection::vec(byte, 0..400), tagged in any::<bool>())| {
        let args = if tagged { json!({ "kind": "EXTERNAL_ID", "customerColumn": 1, "codeColumn": 0 }) } else { json!({}) };
        let job = rt.block_on(app.upload_ok(&key, &series, &content, args));
        let j = rt.block_on(app.wait_job(&key, &job));
        let n = |f: &str| j[f].as_i64().unwrap_or(-1);
        match j["uploadStatus"].as_str() {
            Some("FINISHED") => prop_assert_eq!(n("totalUploadedCount") + n("errorCount"), n("actualRowCount"), "{}", j),
            Some("ERRORED") => {
                prop_assert!(j["errorReason"].as_str().is_some_and(|r| !r.is_empty()), "{}", j);
                prop_assert_eq!(n("actualRowCount"), 0);
            }
            other => prop_assert!(false, "unexpected status {:?}: {}", other, j),
        }
    });
    drop(app);
}

db_tests!(one_file_per_request);

/// Uploads carry one file (`MAX_FILES_PER_REQUEST`); a second file part is refused.
async fn one_file_per_request(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let operations = json!({
        "query": "mutation($s: ID!, $f: Upload!) { uploadCoupons(couponSeriesId: $s, file: $f, customerIdentifier: NOT_TAGGED) { jobId } }",
        "variables": { "s": series, "f": null },
    });
    let form = reqwest::multipart::Form::new()
        .text("operations", operations.to_string())
        .text(
            "map",
            json!({ "0": ["variables.f"], "1": ["variables.f"] }).to_string(),
        )
        .part(
            "0",
            reqwest::multipart::Part::bytes(b"code\nA\n".to_vec()).file_name("a.csv"),
        )
        .part(
            "1",
            reqwest::multipart::Part::bytes(b"code\nB\n".to_vec()).file_name("b.csv"),
        );
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.expect("json");
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    let jobs = coupon_upload_api::entity::upload_job::Entity::find()
        .all(app.state.service.db())
        .await
        .expect("db");
    assert!(jobs.is_empty());
}
