//! `/files/<key>?expires=…&sig=…`: signed, expiring downloads of stored files. The link is the
//! credential (browsers follow it without headers), so no API key is asked for here.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::Shared;
use super::error::Shape;
use crate::error::AppError;

pub fn router() -> Router<Shared> {
    Router::new().route("/files/{*key}", get(download))
}

#[derive(Deserialize)]
struct LinkParams {
    expires: Option<i64>,
    sig: Option<String>,
}

async fn download(
    State(state): State<Shared>,
    Path(key): Path<String>,
    Query(p): Query<LinkParams>,
) -> Response {
    let (Some(expires), Some(sig)) = (p.expires, p.sig) else {
        return error(AppError::Forbidden(
            "this download link is invalid or has expired".into(),
        ));
    };
    match state.service.open_linked_file(&key, expires, &sig).await {
        Ok(Some(file)) => {
            let name = key
                .rsplit('/')
                .next()
                .unwrap_or("file.csv")
                .replace('"', "");
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_LENGTH, file.size.to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                    (header::CACHE_CONTROL, "private, no-store".to_owned()),
                ],
                Body::from_stream(file.stream),
            )
                .into_response()
        }
        Ok(None) => error(AppError::NotFound("this file no longer exists".into())),
        Err(e) => error(e),
    }
}

fn error(e: AppError) -> Response {
    e.shaped(Shape::Download).into_response()
}
