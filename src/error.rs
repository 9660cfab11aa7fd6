//! The error policy, in one place.
//!
//! - Inside a request or a job, fallible code returns [`AppError`]: a closed set of variants, each
//!   with a stable machine-readable [`code`](AppError::code) that clients can branch on
//!   (`UNAUTHENTICATED`, `FORBIDDEN`, `NOT_FOUND`, `BAD_USER_INPUT`, `PAYLOAD_TOO_LARGE`,
//!   `RATE_LIMITED`, `TIMEOUT`, `INTERNAL`) and an HTTP status.
//! - The unexpected (a database error, an I/O error) becomes [`AppError::Internal`] through `?`.
//!   Its cause chain is logged where it is turned into a response, and the client only ever sees
//!   "internal error": no SQL, no paths, no driver messages.
//! - GraphQL maps an `AppError` to an error whose `extensions.code` is the code
//!   ([`ErrorExtensions`]). Over HTTP every error response is rendered once, in
//!   `crate::http::error` (status, `Retry-After`, `WWW-Authenticate`), in the body shape of its
//!   door: GraphQL's, Capillary's envelope for REST, or the downloads'. No door invents codes of
//!   its own.
//! - Outside requests (start-up, CLI) `anyhow::Result` is fine: those errors go to an operator.

use async_graphql::ErrorExtensions;
use axum::http::StatusCode;

#[derive(thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadUserInput(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("the request took longer than {0:?}")]
    Timeout(std::time::Duration),
    #[error("too many requests for this API key; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The database cannot be reached: the request may succeed when it is back.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::BadUserInput(_) => "BAD_USER_INPUT",
            AppError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::Timeout(_) => "TIMEOUT",
            AppError::Unavailable(_) => "UNAVAILABLE",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadUserInput(_) => StatusCode::BAD_REQUEST,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a client may see. Logs the cause chain of internal errors, once, here.
    pub fn public_message(&self) -> String {
        if let AppError::Internal(e) = self {
            tracing::error!(error = ?e, "internal error");
        }
        self.to_string()
    }

    /// The database cannot be reached (`cause` is logged, not shown).
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "the database is unreachable");
        AppError::Unavailable("the database is unavailable; retry in a few seconds".into())
    }

    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        AppError::NotFound(format!("{what} {id} not found"))
    }
}

/// Prints the whole cause chain, so `{:?}` in logs tells what happened.
impl std::fmt::Debug for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::Internal(e) => write!(f, "Internal({e:?})"),
            other => write!(f, "{}({})", other.code(), other),
        }
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(e: sea_orm::DbErr) -> Self {
        if crate::db::unreachable(&e) {
            return AppError::unavailable(&e);
        }
        AppError::Internal(anyhow::Error::new(e).context("database"))
    }
}

impl From<sea_orm::TransactionError<AppError>> for AppError {
    fn from(e: sea_orm::TransactionError<AppError>) -> Self {
        match e {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(app) => app,
        }
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        async_graphql::Error::new(self.public_message())
            .extend_with(|_, e| e.set("code", self.code()))
    }
}

/// `AppResult<T>` → `async_graphql::Result<T>` with `extensions.code`; resolvers end in `.gql()`.
pub trait GqlResultExt<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> GqlResultExt<T> for AppResult<T> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|e| e.extend())
    }
}
