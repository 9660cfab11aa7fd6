//! HTTP transport: the router and its handlers. Handlers authenticate, call the service layer,
//! and shape its answer for their protocol; the rules live in `crate::service`.

mod auth;
mod files;
mod graphql;
mod health;
pub mod multipart;
pub mod playground;
mod rest;
mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

pub use multipart::UploadLimits;

use crate::db::StatementCounter;
use crate::graphql::{AppSchema, GraphqlLimits};
use crate::service::Service;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub schema: AppSchema,
    pub statements: StatementCounter,
    pub uploads: UploadLimits,
    pub limits: GraphqlLimits,
    /// Cancelled when the server shuts down: WebSockets close, the worker stops.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(
        service: Service,
        statements: StatementCounter,
        uploads: UploadLimits,
        limits: GraphqlLimits,
    ) -> Self {
        let schema = crate::graphql::build_schema_with(service.clone(), &limits);
        Self {
            service,
            schema,
            statements,
            uploads,
            limits,
            shutdown: CancellationToken::new(),
        }
    }
}

/// The whole HTTP API in one place.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(graphql::router())
        .merge(rest::router())
        .merge(files::router())
        .merge(health::router())
        .merge(playground::router())
        // Bodies are limited where they are read (uploads while streaming, JSON before
        // parsing), with coded errors; axum's blanket 2 MB limit would cut uploads short.
        .layer(DefaultBodyLimit::disable())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
