//! Health, GraphiQL, GraphQL over GET, and signed download links.

use coupon_upload_api::domain::Permission;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_tests;
use crate::fixtures::{ORG_A, ORG_B, seed};
use crate::helpers::{TestApp, code};

db_tests!(
    health_and_readiness_need_no_key,
    graphiql_is_served_offline,
    graphql_over_get,
    download_links_are_signed
);

async fn health_and_readiness_need_no_key(app: TestApp) {
    for (path, expect) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let res = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["status"], expect);
    }
}

async fn graphiql_is_served_offline(app: TestApp) {
    let res = app
        .client
        .get(format!("{}/graphql", app.base))
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.expect("html");
    assert!(html.contains("graphiql"), "a GraphiQL page");
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "no external URL in the page"
    );
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.starts_with("/graphiql/assets/"))
        .collect();
    assert!(
        assets.len() >= 4,
        "scripts and styles are local: {assets:?}"
    );
    for a in assets {
        let res = app
            .client
            .get(format!("{}{a}", app.base))
            .send()
            .await
            .expect("asset");
        assert_eq!(res.status(), StatusCode::OK, "{a}");
        assert!(res.bytes().await.expect("body").len() > 1000, "{a}");
    }
}

async fn graphql_over_get(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    let query = format!(
        "{{ uploadStatus(couponSeriesId: \"{}\") {{ orgId }} }}",
        f.series
    );
    let url = format!("{}/graphql", app.base);
    let res = app
        .client
        .get(&url)
        .query(&[("query", &query)])
        .bearer_auth(&key)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["data"]["uploadStatus"]["orgId"], "1");
    let res = app
        .client
        .get(&url)
        .query(&[("query", &query)])
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn download_links_are_signed(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::Read).await;
    let data = app
        .gql_ok(
            &key,
            "query($id: ID!) { uploadJob(jobId: $id) { errorFileUrl uploadedFileUrl successFileUrl } }",
            json!({ "id": f.jobs[0].to_string() }),
        )
        .await;
    let url = data["uploadJob"]["errorFileUrl"]
        .as_str()
        .expect("link")
        .to_owned();
    let res = app.client.get(&url).send().await.expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        res.text().await.expect("body"),
        "rowNumber,errorCode\n3,EMPTY_COUPON_CODE\n"
    );
    let uploaded = data["uploadJob"]["uploadedFileUrl"].as_str().expect("link");
    assert_eq!(
        app.client
            .get(uploaded)
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("body"),
        "code\nA\n"
    );

    // The success file is referenced but was never stored: a valid link, and 404.
    let success = data["uploadJob"]["successFileUrl"].as_str().expect("link");
    assert_eq!(
        app.client.get(success).send().await.expect("send").status(),
        StatusCode::NOT_FOUND
    );

    let (path, query) = url.split_once('?').expect("query");
    let expires: i64 = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("expires="))
        .and_then(|v| v.parse().ok())
        .expect("expires");
    let other_key = path.replace("errors.csv", "uploaded.csv");
    let sig_flipped = {
        let mut u = url.clone();
        let last = if u.ends_with('0') { "1" } else { "0" };
        u.replace_range(u.len() - 1.., last);
        u
    };
    for bad in [
        format!("{other_key}?{query}"),
        format!(
            "{path}?{}",
            query.replace(&expires.to_string(), &(expires + 3600).to_string())
        ),
        sig_flipped,
        path.to_owned(),
        format!("{path}?expires=1&sig=00"),
        format!(
            "{}/files/org/2/jobs/1/../../1/jobs/1/errors.csv?{query}",
            app.base
        ),
    ] {
        let res = app.client.get(&bad).send().await.expect("send");
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{bad}");
    }
}

// Request ids and CORS.
crate::db_tests_with!(
    Options { cors_origins: vec!["https://app.example.com".into()], ..Default::default() };
    requests_carry_ids_and_cors_follows_the_allow_list
);

async fn requests_carry_ids_and_cors_follows_the_allow_list(app: TestApp) {
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("send");
    let id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id")
        .to_owned();
    assert_eq!(id.len(), 16, "{id}");
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "client-chosen-1")
        .send()
        .await
        .expect("send");
    assert_eq!(
        res.headers()["x-request-id"],
        "client-chosen-1",
        "the caller's id is kept"
    );
    // Preflight from the allowed origin, and from another.
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.base))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
    };
    let ok = preflight("https://app.example.com").await.expect("send");
    assert_eq!(
        ok.headers()
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(&b"https://app.example.com"[..])
    );
    let allowed_headers = ok
        .headers()
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    let other = preflight("https://evil.example.net").await.expect("send");
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "no CORS for other origins"
    );
}

// GraphQL over HTTP: media types, status codes, GET for queries only.
db_tests!(graphql_over_http_media_types_and_status_codes);

async fn graphql_over_http_media_types_and_status_codes(app: TestApp) {
    let f = seed(&app).await;
    let key = app.key(ORG_A, Permission::ReadWrite).await;
    let url = format!("{}/graphql", app.base);
    let post = |query: String, accept: &'static str| {
        app.client
            .post(&url)
            .bearer_auth(&key)
            .header("Accept", accept)
            .json(&json!({ "query": query }))
            .send()
    };
    let gr = "application/graphql-response+json";
    // A good query: 200 and the new media type when accepted.
    let res = post("{ couponSeriesList { totalCount } }".into(), gr)
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], gr);
    // Parse and validation errors: 400 with the new media type, 200 with legacy JSON.
    for bad in ["{ couponSeriesList { ", "{ nope }"] {
        let res = post(bad.into(), gr).await.expect("send");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
        let res = post(bad.into(), "application/json").await.expect("send");
        assert_eq!(res.status(), StatusCode::OK, "{bad}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap_or_default()
                .starts_with("application/json")
        );
    }
    // A field error is still a 200: the request was valid. The other org's series is
    // NOT_FOUND, and nothing of it is in the answer.
    let other_status = format!(
        "{{ uploadStatus(couponSeriesId: \"{}\") {{ orgId couponSeriesId }} }}",
        f.other_series
    );
    let res = post(other_status.clone(), gr).await.expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], gr);
    let body: Value = res.json().await.expect("json");
    assert_eq!(code(&body), "NOT_FOUND", "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["uploadStatus"]), "{body}");
    assert_eq!(body["data"], Value::Null, "no data of org 2: {body}");
    // The same request by the series' own org does return it.
    let owner = app.key(ORG_B, Permission::Read).await;
    let res = app
        .client
        .post(&url)
        .bearer_auth(&owner)
        .header("Accept", gr)
        .json(&json!({ "query": other_status }))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(
        body["data"]["uploadStatus"],
        json!({ "orgId": ORG_B.to_string(), "couponSeriesId": f.other_series.to_string() }),
        "{body}"
    );
    // Mutations over GET: 405, nothing done.
    let m = "mutation { createCouponSeries(input: { name: \"via GET\" }) { id } }";
    let res = app
        .client
        .get(&url)
        .query(&[("query", m)])
        .bearer_auth(&key)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "POST");
    let d = app
        .gql_ok(&key, "{ couponSeriesList { totalCount } }", json!({}))
        .await;
    assert_eq!(d["couponSeriesList"]["totalCount"], 2, "no series was made");
}

db_tests!(metrics_are_exposed_for_prometheus);

async fn metrics_are_exposed_for_prometheus(app: TestApp) {
    let key = app.key(ORG_A, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let job = app
        .upload_ok(&key, &series, b"code\nM-1\nM-2\nbad code\n", json!({}))
        .await;
    app.wait_job(&key, &job).await;
    let (_, missing) = app
        .gql(
            Some(&key),
            "query Missing { uploadStatus(couponSeriesId: \"999\") { orgId } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&missing), "NOT_FOUND");
    let res = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    let text = res.text().await.expect("text");
    for want in [
        "http_requests_total{route=\"/graphql\",status=\"200\"}",
        "graphql_operations_total{operation=\"anonymous\",code=\"OK\"}",
        "graphql_operations_total{operation=\"Missing\",code=\"NOT_FOUND\"} 1",
        "http_request_duration_seconds_bucket{route=\"/graphql\",le=\"+Inf\"}",
        "upload_jobs{status=\"FINISHED\"} 1",
        "upload_rows_processed_total 3",
        "upload_worker_lag_seconds 0",
        "db_pool_connections{state=\"idle\"}",
        "db_statements_total",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
    // Every sample line is `name{labels} value` or `name value`, with a number (blank lines
    // between metric families are allowed by the format).
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    assert!(!text.contains(&key), "no key material");
}

db_tests!(graphiqls_prefilled_query_runs_on_the_demo_data);

/// The query GraphiQL opens with runs as it is, with the key `serve --demo` prints, on the
/// demo data, and shows the demo series' jobs.
async fn graphiqls_prefilled_query_runs_on_the_demo_data(app: TestApp) {
    let demo = coupon_upload_api::demo::seed_if_empty(
        &app.state.service,
        Some(std::time::Duration::from_secs(60)),
    )
    .await
    .expect("demo data");
    let query = coupon_upload_api::http::playground::DEFAULT_QUERY;
    let data = app
        .gql_ok(&demo.key.key, query, serde_json::json!({}))
        .await;
    let jobs = data["uploadStatus"]["uploadJobStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!jobs.is_empty(), "the pre-filled series has jobs: {data}");
    assert!(
        jobs.iter().all(|j| j["uploadStatus"] == "FINISHED"),
        "{data}"
    );
}
