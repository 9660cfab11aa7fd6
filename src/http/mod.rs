//! HTTP transport: the router and its handlers. Handlers authenticate, call the service layer,
//! and shape its answer for their protocol; the rules live in `crate::service`.

mod auth;
pub mod error;
mod files;
pub(crate) mod graphql;
mod health;
pub mod metrics;
pub mod multipart;
pub mod playground;
pub mod ratelimit;
mod rest;
pub mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use multipart::UploadLimits;

use crate::graphql::{AppSchema, GraphqlLimits};
use crate::service::Service;

/// Everything a handler needs, built once by the app builder (`App::build`) from the settings.
/// [`router`] shares it behind one `Arc` ([`Shared`]): axum clones the state for every request
/// and middleware, and a clone of this struct is dozens of reference counts and a `Vec` copy.
#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub(crate) schema: AppSchema,
    /// The schema WebSocket operations run on (see `build_ws_schema_with`).
    pub(crate) ws_schema: AppSchema,
    pub(crate) uploads: UploadLimits,
    pub(crate) limits: GraphqlLimits,
    pub(crate) rate_limiter: ratelimit::RateLimiter,
    /// Who may read `/metrics`.
    pub(crate) metrics_access: metrics::MetricsAccess,
    /// Per client address: the work done before a key is known (see `ratelimit`).
    pub(crate) anonymous_limiter: ratelimit::RateLimiter<std::net::IpAddr>,
    pub(crate) ws: ws::WsLimits,
    ws_counts: ws::WsCounts,
    /// Sockets upgraded and not yet authenticated.
    ws_unauthenticated: std::sync::Arc<ws::Unauthenticated>,
    /// Longest a request may take to its response (uploads excepted).
    pub(crate) request_timeout: std::time::Duration,
    /// Longest an upload may take to its response.
    pub(crate) upload_timeout: std::time::Duration,
    /// Longest pause within a request body.
    pub(crate) body_idle_timeout: std::time::Duration,
    /// Origins allowed cross-origin access (`*`: any).
    pub(crate) cors_origins: Vec<String>,
    /// Cancelled when the server shuts down: WebSockets close, the worker stops.
    pub shutdown: CancellationToken,
    /// GraphQL documents parsed lately, by their text (clients send the same few queries).
    pub(crate) docs: std::sync::Arc<graphql::DocCache>,
}

/// HTTP settings beyond the limits each door has.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Longest a request may take to its response (uploads excepted).
    pub request_timeout: std::time::Duration,
    /// Longest an upload (a multipart POST of a file) may take to its response.
    pub upload_timeout: std::time::Duration,
    /// Longest pause between two parts of a request body.
    pub body_idle_timeout: std::time::Duration,
    /// Origins allowed cross-origin access (`*`: any; empty: same origin only).
    pub cors_origins: Vec<String>,
    /// How long an authenticated key is trusted without asking the database again.
    pub auth_cache: std::time::Duration,
    /// Per client address, for what is done before a key is known: anonymous introspection
    /// and database lookups of keys that are not cached (wrong keys, mostly).
    pub anonymous_rate_limit: ratelimit::RateLimit,
    /// Who may read `/metrics`, and where it is served.
    pub metrics: metrics::MetricsAccess,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            request_timeout: std::time::Duration::from_secs(30),
            upload_timeout: std::time::Duration::from_secs(3600),
            body_idle_timeout: std::time::Duration::from_secs(30),
            cors_origins: Vec::new(),
            auth_cache: crate::service::DEFAULT_KEY_CACHE_TTL,
            anonymous_rate_limit: ratelimit::RateLimit {
                per_second: 20.0,
                burst: 100.0,
            },
            metrics: Default::default(),
        }
    }
}

/// The state as handlers and middleware receive it.
pub(crate) type Shared = std::sync::Arc<AppState>;

impl AppState {
    pub(crate) fn new(
        service: Service,
        uploads: UploadLimits,
        limits: GraphqlLimits,
        ws: ws::WsLimits,
        rate_limit: ratelimit::RateLimit,
        http: &HttpSettings,
        shutdown: CancellationToken,
    ) -> Self {
        let schema = crate::graphql::build_schema_with(service.clone(), &limits);
        let ws_schema = crate::graphql::build_ws_schema_with(service.clone(), &limits);
        let cors_origins = http
            .cors_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        Self {
            service,
            schema,
            ws_schema,
            uploads,
            limits,
            cors_origins,
            rate_limiter: ratelimit::RateLimiter::new(rate_limit),
            anonymous_limiter: ratelimit::RateLimiter::new(http.anonymous_rate_limit.clone()),
            metrics_access: http.metrics.clone(),
            ws,
            ws_counts: Default::default(),
            ws_unauthenticated: Default::default(),
            request_timeout: http.request_timeout,
            upload_timeout: http.upload_timeout,
            body_idle_timeout: http.body_idle_timeout,
            shutdown,
            docs: Default::default(),
        }
    }
}

impl AppState {
    /// The caller's org from its key, within its rate limit.
    pub async fn authorize(
        &self,
        headers: &axum::http::HeaderMap,
        peer: Peer,
    ) -> Result<crate::domain::OrgContext, crate::error::AppError> {
        let org = self
            .service
            .authenticate(auth::presented_key(headers), || self.anonymous_work(peer))
            .await?;
        self.rate_limiter
            .check(&org.api_key_id)
            .map_err(|retry_after_secs| crate::error::AppError::RateLimited { retry_after_secs })?;
        Ok(org)
    }
}

impl AppState {
    /// Takes a token from the client address's bucket for work done before a key is known.
    pub(crate) fn anonymous_work(&self, peer: Peer) -> Result<(), crate::error::AppError> {
        self.anonymous_limiter
            .check(&peer.0)
            .map_err(|retry_after_secs| crate::error::AppError::RateLimited { retry_after_secs })
    }
}

/// The client's address, as the connection gives it (a proxy in front is one client: limits
/// per address then apply to it as a whole). Unspecified where there is no connection (a
/// router called directly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(pub std::net::IpAddr);

impl Peer {
    pub fn of(extensions: &axum::http::Extensions) -> Self {
        Peer(
            extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip()),
        )
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer::of(&parts.extensions))
    }
}

/// `x-request-id` for requests that come without one: 16 random hex digits.
#[derive(Clone, Copy, Default)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = format!("{:016x}", rand::random::<u64>());
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(RequestId::new)
    }
}

/// Ends a request that takes longer than `request_timeout` with 504 `TIMEOUT`: the time to its
/// response's head (a download's body and a WebSocket, which run after it, are not counted).
/// An upload (a multipart POST to an upload route), whose length depends on the client's
/// bandwidth, has `upload_timeout` instead. Every request body must keep coming: a pause
/// between its parts longer than `body_idle_timeout` ends it. What a request claims in its
/// headers (an `Upgrade`, a multipart type) changes nothing of this on another route.
async fn request_timeout(
    axum::extract::State(state): axum::extract::State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let limit = if is_upload(&req) {
        state.upload_timeout
    } else {
        state.request_timeout
    };
    let idle = state.body_idle_timeout;
    let req =
        req.map(|body| axum::body::Body::new(tower_http::timeout::TimeoutBody::new(idle, body)));
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => crate::error::AppError::Timeout(limit).into_response(),
    }
}

/// A multipart POST to one of the two routes that take files.
fn is_upload(req: &axum::extract::Request) -> bool {
    let path = req.uri().path();
    req.method() == axum::http::Method::POST
        && multipart::is_multipart(req)
        && (path == "/graphql" || path.starts_with(rest::UPLOAD_PATH_PREFIX))
}

/// The answer to a request whose handler panicked.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    tracing::error!(panic = %message, "request handler panicked");
    crate::error::AppError::Internal(anyhow::anyhow!("the request handler panicked"))
        .into_response()
}

/// Cross-origin access for the configured origins only (none by default: same origin).
fn cors(origins: &[String]) -> CorsLayer {
    use axum::http::{HeaderName, Method, header};
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-cap-api-oauth-token"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")]);
    if origins.iter().any(|o| o == "*") {
        return layer.allow_origin(AllowOrigin::any());
    }
    let list: Vec<axum::http::HeaderValue> =
        origins.iter().filter_map(|o| o.parse().ok()).collect();
    layer.allow_origin(AllowOrigin::list(list))
}

/// The whole HTTP API in one place.
pub fn router(state: AppState) -> Router {
    let cors = cors(&state.cors_origins);
    let separate_metrics = state.metrics_access.separate;
    let state: Shared = std::sync::Arc::new(state);
    let mut routes = Router::new()
        .merge(graphql::router())
        .merge(rest::router())
        .merge(files::router())
        .merge(health::router())
        .merge(playground::router());
    if !separate_metrics {
        routes = routes.route("/metrics", axum::routing::get(metrics::render));
    }
    let routes = routes
        // Bodies are limited where they are read (uploads while streaming, JSON before
        // parsing), with coded errors; axum's blanket 2 MB limit would cut uploads short.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::disable())
        .layer(cors)
        .with_state(state);
    edge(routes)
}

/// `/metrics` alone, for a listener of its own (`--metrics-bind`).
pub fn metrics_router(state: AppState) -> Router {
    let state: Shared = std::sync::Arc::new(state);
    edge(
        Router::new()
            .route("/metrics", axum::routing::get(metrics::render))
            .with_state(state),
    )
}

/// What every request passes first and every response last, around the routes and their state.
fn edge(routes: Router) -> Router {
    routes
        // A panic anywhere below is a bug, but the client still gets a coded answer (500
        // `INTERNAL`, with its request id) instead of a reset connection; the panic is logged
        // in the request's span.
        .layer(CatchPanicLayer::custom(panicked))
        // Every request has an id, on its log lines (the span) and on its response.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<axum::body::Body>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
        }).on_response(DefaultOnResponse::new().level(tracing::Level::INFO)))
        .layer(SetRequestIdLayer::x_request_id(NewRequestId))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panic_is_a_coded_500_with_the_request_id() {
        let app = edge(Router::new().route(
            "/boom",
            axum::routing::get(|| async {
                let v: Vec<String> = Vec::new();
                v[1].clone()
            }),
        ));
        let res = app
            .oneshot(
                axum::http::Request::get("/boom")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("a response, not a reset");
        assert_eq!(res.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(res.headers().contains_key("x-request-id"));
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            json["errors"][0]["extensions"]["code"], "INTERNAL",
            "{json}"
        );
    }
}
