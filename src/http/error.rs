//! Every error response of the HTTP doors is rendered here, once: the status from the error's
//! code, `Retry-After` on `RATE_LIMITED`, `WWW-Authenticate` on 401, the cause of an internal
//! error logged (by `AppError::public_message`) and never sent. Only the body's shape differs
//! by door, because each keeps the shape its clients already parse.

use axum::Json;
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::AppError;

/// The body an error is sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `{"errors":[{"message":…,"extensions":{"code":…}}]}`: GraphQL over HTTP, and what the
    /// middleware (timeouts) answers on any route.
    GraphQl,
    /// Capillary's envelope:
    /// `{"success":false,"status":…,"message":…,"errors":[{"code":…,"message":…}]}`.
    Capillary,
    /// `{"error":{"code":…,"message":…}}`: file downloads.
    Download,
}

/// An error with the shape of the door it is answered at.
pub struct Shaped(pub AppError, pub Shape);

impl AppError {
    pub fn shaped(self, shape: Shape) -> Shaped {
        Shaped(self, shape)
    }
}

/// GraphQL's shape, the default.
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        Shaped(self, Shape::GraphQl).into_response()
    }
}

impl IntoResponse for Shaped {
    fn into_response(self) -> Response {
        let Shaped(e, shape) = self;
        let status = e.status();
        let message = e.public_message();
        let code = e.code();
        let body = match shape {
            Shape::GraphQl => {
                json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })
            }
            Shape::Capillary => json!({
                "success": false,
                "status": status.as_u16(),
                "message": message,
                "errors": [{ "code": code, "message": message }],
            }),
            Shape::Download => json!({ "error": { "code": code, "message": message } }),
        };
        let mut res = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        match e {
            AppError::RateLimited { retry_after_secs } => {
                res.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            AppError::Unavailable(_) => {
                res.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("2"));
            }
            _ => {}
        }
        res
    }
}
