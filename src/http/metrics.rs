//! `/metrics` in the Prometheus text format: HTTP requests by route and status with latency
//! histograms, GraphQL operations, rows processed, upload jobs by status, worker lag (age of the
//! oldest job waiting), database pool use and statements sent. What is counted lives in
//! `crate::telemetry`; the shared figures come from the service at scrape time.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;

/// Counts each request under its route pattern.
pub async fn track(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let res = next.run(req).await;
    state.service.metrics().observe_request(
        &route,
        res.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    res
}

pub async fn render(State(state): State<Shared>) -> Response {
    let scrape = state.service.scrape().await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.service.metrics().render(&scrape),
    )
        .into_response()
}
