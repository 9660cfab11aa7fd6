//! `/graphql`: queries over POST and GET, and GraphiQL for browsers.

use async_graphql_axum::{GraphQLBatchRequest, GraphQLResponse};
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{ACCEPT, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use super::auth::presented_key;
use crate::error::AppError;
use crate::graphql::RequestContext;

pub fn router() -> Router<AppState> {
    Router::new().route("/graphql", get(graphql_get).post(graphql))
}

/// A browser navigating to `/graphql` gets GraphiQL; anything else is a GraphQL GET request.
async fn graphql_get(state: State<AppState>, req: Request) -> Response {
    let wants_html = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html && req.method() == Method::GET {
        return Html(super::playground::graphiql_html("/graphql")).into_response();
    }
    graphql(state, req).await
}

/// Authenticates before reading the body: an unauthenticated client gets 401 and its request
/// is never parsed or executed.
async fn graphql(State(state): State<AppState>, req: Request) -> Response {
    let org = match state
        .service
        .authenticate(presented_key(req.headers()))
        .await
    {
        Ok(org) => org,
        Err(e) => return error_response(e),
    };
    let batch =
        match GraphQLBatchRequest::<async_graphql_axum::rejection::GraphQLRejection>::from_request(
            req, &state,
        )
        .await
        {
            Ok(batch) => batch.into_inner(),
            Err(rejection) => return rejection.into_response(),
        };
    let ctx = RequestContext::new(state.service.clone(), org);
    GraphQLResponse::from(state.schema.execute_batch(batch.data(ctx)).await).into_response()
}

/// An error raised before execution, as a GraphQL response with `extensions.code`.
fn error_response(e: AppError) -> Response {
    let status = e.status();
    let body = Json(json!({
        "errors": [{ "message": e.public_message(), "extensions": { "code": e.code() } }]
    }));
    let mut res = (status, body).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}
