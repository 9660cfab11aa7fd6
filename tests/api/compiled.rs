//! Compiled status queries (`graphql::compiled`) answer exactly what async-graphql answers:
//! generated documents (fields in any order, aliases, `__typename`, nested audience data,
//! arguments as literals, variables or defaults) with valid and invalid variables, each sent
//! to the compiled plan and, as a document never seen before, to the executor, byte for byte.

use coupon_upload_api::domain::Permission;
use serde_json::{Value, json};

use crate::db_tests;
use crate::fixtures::{ORG_A, seed};
use crate::helpers::TestApp;

db_tests!(
    compiled_answers_equal_the_executors,
    documents_it_cannot_answer_still_work
);

/// xorshift64: deterministic, so a failure names a case that can be run again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// A random subset of `items` in a random order, at least one.
    fn pick<'a>(&mut self, items: &[&'a str]) -> Vec<&'a str> {
        let mut v: Vec<&str> = items.to_vec();
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
        let n = 1 + self.below(v.len());
        v.truncate(n);
        v
    }
}

const JOB_FIELDS: &[&str] = &[
    "__typename",
    "id",
    "jobId",
    "orgId",
    "couponSeriesId",
    "uploadStatus",
    "createdOn",
    "updatedOn",
    "errorFileUrl",
    "successFileUrl",
    "uploadedFileUrl",
    "totalUploadedCount",
    "actualRowCount",
    "errorCount",
    "processedRowCount",
    "uploadTableName",
    "uploadedFileName",
    "customerIdentifier",
    "customerIdentifierColumn",
    "couponCodeColumn",
    "hasHeader",
    "cancelRequested",
    "errorReason",
    "audienceGroupId",
    "audienceGroupVersionId",
    "audienceGroup",
    "audienceGroupVersion",
];
const GROUP_FIELDS: &[&str] = &[
    "__typename",
    "id",
    "orgId",
    "couponSeriesId",
    "name",
    "type",
    "status",
    "customerCount",
    "createdOn",
    "updatedOn",
];
const VERSION_FIELDS: &[&str] = &[
    "__typename",
    "id",
    "audienceGroupId",
    "versionNumber",
    "customerCount",
    "status",
    "uploadJobId",
    "createdOn",
];
const STATUS_FIELDS: &[&str] = &["__typename", "id", "orgId", "couponSeriesId"];

/// Fields with, now and then, an alias.
fn selection(
    rng: &mut Rng,
    fields: &[&str],
    nested: &mut dyn FnMut(&mut Rng, &str) -> String,
) -> String {
    let mut out = Vec::new();
    for (i, f) in rng.pick(fields).into_iter().enumerate() {
        let alias = if rng.chance(20) {
            format!("a{i}_{f}: ")
        } else {
            String::new()
        };
        out.push(format!("{alias}{f}{}", nested(rng, f)));
    }
    out.join(" ")
}

/// A status document and the variables it declares, with how each argument is given.
fn document(rng: &mut Rng) -> String {
    let mut vars = vec!["$id: ID!".to_owned()];
    let mut args = Vec::new();
    match rng.below(4) {
        0 => {}
        1 => args.push(format!("first: {}", rng.below(4))),
        2 => {
            vars.push("$first: Int".into());
            args.push("first: $first".into());
        }
        _ => {
            vars.push("$first: Int = 2".into());
            args.push("first: $first".into());
        }
    }
    if rng.chance(40) {
        vars.push("$after: String".into());
        args.push("after: $after".into());
    }
    match rng.below(4) {
        0 => args.push("status: [FINISHED, ERRORED]".into()),
        1 => {
            vars.push("$status: [UploadJobStatus!]".into());
            args.push("status: $status".into());
        }
        _ => {}
    }
    let args = if args.is_empty() {
        String::new()
    } else {
        format!("({})", args.join(", "))
    };
    let jobs = selection(rng, JOB_FIELDS, &mut |rng, f| match f {
        "audienceGroup" => format!(
            " {{ {} }}",
            selection(rng, GROUP_FIELDS, &mut |_, _| String::new())
        ),
        "audienceGroupVersion" => {
            format!(
                " {{ {} }}",
                selection(rng, VERSION_FIELDS, &mut |_, _| String::new())
            )
        }
        _ => String::new(),
    });
    let mut status = selection(rng, STATUS_FIELDS, &mut |_, _| String::new());
    let jobs_key = if rng.chance(20) {
        "jobs: uploadJobStatuses"
    } else {
        "uploadJobStatuses"
    };
    let at = rng.below(2);
    status = if at == 0 {
        format!("{jobs_key}{args} {{ {jobs} }} {status}")
    } else {
        format!("{status} {jobs_key}{args} {{ {jobs} }}")
    };
    let root = if rng.chance(20) {
        "s: uploadStatus"
    } else {
        "uploadStatus"
    };
    let name = if rng.chance(50) {
        "query Poll"
    } else {
        "query"
    };
    format!(
        "{name}({}) {{ {root}(couponSeriesId: $id) {{ {status} }} }}",
        vars.join(", ")
    )
}

/// The raw body of a POST /graphql.
async fn raw(app: &TestApp, key: &str, body: &Value) -> String {
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    without_link_times(&format!("{status} {}", res.text().await.expect("body")))
}

/// The body with each file link's `expires=…&sig=…` masked: links expire a TTL after they are
/// made, to the second, so two answers made either side of a second's end differ there
/// (links themselves are checked in `status.rs`).
fn without_link_times(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.find("?expires=") {
        out.push_str(&rest[..at]);
        out.push_str("?expires=…");
        let end = rest[at..].find('"').map_or(rest.len(), |e| at + e);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

async fn compiled_answers_equal_the_executors(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    let [j1, j2, j3] = f.jobs.map(|j| j.to_string());
    let series = f.series.to_string();
    // Valid and invalid variables: a plan must answer the first as the executor does, and
    // leave the second to it.
    let variable_sets = [
        json!({ "id": series }),
        json!({ "id": series, "first": 1 }),
        json!({ "id": series, "first": 2, "after": j3 }),
        json!({ "id": series, "after": j2, "status": ["FINISHED"] }),
        json!({ "id": series, "status": "ERRORED" }),
        json!({ "id": series, "status": [] }),
        json!({ "id": series, "first": null, "after": null, "status": null }),
        json!({ "id": f.series }),
        json!({ "id": f.empty_series.to_string() }),
        json!({ "id": f.other_series.to_string() }),
        json!({ "id": "999999" }),
        json!({ "id": "abc" }),
        json!({ "id": 1.5 }),
        json!({ "id": null }),
        json!({}),
        json!({ "id": series, "first": 501 }),
        json!({ "id": series, "first": -1 }),
        json!({ "id": series, "first": "2" }),
        json!({ "id": series, "first": 2.0 }),
        json!({ "id": series, "first": 4_294_967_297u64 }),
        json!({ "id": series, "after": 7 }),
        json!({ "id": series, "after": "x" }),
        json!({ "id": series, "after": j1 }),
        json!({ "id": series, "status": ["NOPE"] }),
        json!({ "id": series, "status": [1] }),
    ];
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let metrics = app.state.service.metrics();
    let (mut compared, mut compiled) = (0, 0);
    for case in 0..120 {
        let doc = document(&mut rng);
        // Proven by one error-free run through the executor.
        let proof = raw(
            &app,
            &key,
            &json!({ "query": doc, "variables": { "id": series } }),
        )
        .await;
        assert!(
            proof.starts_with("200 {\"data\""),
            "case {case}: {doc}\n{proof}"
        );
        for (v, vars) in variable_sets.iter().enumerate() {
            if rng.chance(60) {
                continue;
            }
            let before = metrics.compiled_answers();
            let fast = raw(&app, &key, &json!({ "query": doc, "variables": vars })).await;
            compiled += metrics.compiled_answers() - before;
            // The same document never seen before (a different text) runs on the executor.
            let fresh = format!("{doc}{}", " ".repeat(1 + case * variable_sets.len() + v));
            let before = metrics.compiled_answers();
            let slow = raw(&app, &key, &json!({ "query": fresh, "variables": vars })).await;
            assert_eq!(
                metrics.compiled_answers(),
                before,
                "a fresh document is executed"
            );
            assert_eq!(fast, slow, "case {case}, variables {vars}\n{doc}");
            compared += 1;
        }
        // And with the operation named wrong, which only the executor reports.
        let named = raw(
            &app,
            &key,
            &json!({ "query": doc, "variables": { "id": series }, "operationName": "Other" }),
        )
        .await;
        assert!(named.contains("\"errors\""), "case {case}: {named}");
    }
    println!("{compared} answers compared, {compiled} of them compiled");
    assert!(
        compiled * 3 >= compared,
        "the plans answered only {compiled} of {compared}"
    );
}

/// Fragments, directives, other fields and batches run on the executor as before.
async fn documents_it_cannot_answer_still_work(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    let series = f.series.to_string();
    let docs = [
        "query($id: ID!) { uploadStatus(couponSeriesId: $id) { ...S } } fragment S on UploadStatus { uploadJobStatuses { jobId } }",
        "query($id: ID!) { uploadStatus(couponSeriesId: $id) { uploadJobStatuses { jobId @include(if: true) } } }",
        "query($id: ID!) { uploadStatus(couponSeriesId: $id) { couponSeries { name } uploadJobStatuses { jobId } } }",
        "query($id: ID!) { uploadStatus(couponSeriesId: $id) { uploadJobStatuses { jobId jobId } } }",
        "query($id: ID!) { uploadStatus(couponSeriesId: $id) { id } }",
        "query($id: ID!) { uploadStatus(couponSeriesId: $id) { uploadJobStatuses { jobId audienceGroup { versions { id } } } } }",
        "query($id: ID!) { a: uploadStatus(couponSeriesId: $id) { id } b: uploadStatus(couponSeriesId: $id) { uploadJobStatuses { jobId } } }",
    ];
    let metrics = app.state.service.metrics();
    let before = metrics.compiled_answers();
    for doc in docs {
        for _ in 0..2 {
            let body = raw(
                &app,
                &key,
                &json!({ "query": doc, "variables": { "id": series } }),
            )
            .await;
            assert!(body.starts_with("200 {\"data\""), "{doc}: {body}");
            assert!(!body.contains("errors"), "{doc}: {body}");
        }
    }
    assert_eq!(metrics.compiled_answers(), before, "none of these compile");
    // The same request twice: the second is compiled, and equal.
    let doc =
        "query($id: ID!) { uploadStatus(couponSeriesId: $id) { uploadJobStatuses { jobId } } }";
    let body = json!({ "query": doc, "variables": { "id": series } });
    let first = raw(&app, &key, &body).await;
    let second = raw(&app, &key, &body).await;
    assert_eq!(first, second);
    assert_eq!(metrics.compiled_answers(), before + 1);
    // A batch of it is executed.
    let batch = json!([body, body]);
    let b = raw(&app, &key, &batch).await;
    assert!(b.starts_with("200 [{\"data\""), "{b}");
    assert_eq!(metrics.compiled_answers(), before + 1);
}
