//! `/metrics` in the Prometheus text format: HTTP requests by route and status with latency
//! histograms, GraphQL operations, rows processed, upload jobs by status, worker lag (age of the
//! oldest job waiting), database pool use and statements sent. What is counted lives in
//! `crate::telemetry`; the shared figures come from the service at scrape time.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

use super::{Peer, Shared};
use crate::error::AppError;

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

/// Who may read `/metrics`, whose figures span every org.
#[derive(Clone, Debug, Default)]
pub struct MetricsAccess {
    /// When set, a scrape must send `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Served on a listener of its own (`--metrics-bind`), not on the API's.
    pub separate: bool,
}

impl MetricsAccess {
    /// A token is required when one is set; without one, the API's port answers loopback
    /// clients only (a separate listener is the operator's to expose).
    fn check(&self, headers: &HeaderMap, peer: Peer) -> Result<(), AppError> {
        if let Some(token) = &self.token {
            let sent = headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            let same: bool = sent.as_bytes().ct_eq(token.as_bytes()).into();
            return if same {
                Ok(())
            } else {
                Err(AppError::Unauthenticated(
                    "/metrics needs `Authorization: Bearer <METRICS_TOKEN>`".into(),
                ))
            };
        }
        if self.separate || peer.0.is_loopback() {
            return Ok(());
        }
        Err(AppError::Forbidden(
            "/metrics answers loopback clients only; set METRICS_TOKEN or METRICS_BIND to expose it"
                .into(),
        ))
    }
}

pub async fn render(State(state): State<Shared>, peer: Peer, headers: HeaderMap) -> Response {
    if let Err(e) = state.metrics_access.check(&headers, peer) {
        return e.into_response();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: [u8; 4]) -> Peer {
        Peer(std::net::IpAddr::from(ip))
    }

    #[test]
    fn only_loopback_without_a_token_or_a_listener_of_its_own() {
        let none = HeaderMap::new();
        let open = MetricsAccess::default();
        assert!(open.check(&none, peer([127, 0, 0, 1])).is_ok());
        assert_eq!(
            open.check(&none, peer([10, 0, 0, 7])).map_err(|e| e.code()),
            Err("FORBIDDEN")
        );
        let separate = MetricsAccess {
            token: None,
            separate: true,
        };
        assert!(separate.check(&none, peer([10, 0, 0, 7])).is_ok());
        let token = MetricsAccess {
            token: Some("t0ken".into()),
            separate: false,
        };
        let mut bearer = HeaderMap::new();
        bearer.insert(AUTHORIZATION, "Bearer t0ken".parse().expect("header"));
        assert!(token.check(&bearer, peer([10, 0, 0, 7])).is_ok());
        let mut wrong = HeaderMap::new();
        wrong.insert(AUTHORIZATION, "Bearer t0ke".parse().expect("header"));
        for h in [&none, &wrong] {
            assert_eq!(
                token.check(h, peer([127, 0, 0, 1])).map_err(|e| e.code()),
                Err("UNAUTHENTICATED")
            );
        }
    }
}
