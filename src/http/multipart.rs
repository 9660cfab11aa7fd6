//! Multipart request bodies (uploads), read as a stream with limits.
//!
//! async-graphql-axum's own multipart reader has no size limit, so uploads come through here
//! instead, for GraphQL (the GraphQL multipart request spec: `operations`, `map`, then files)
//! and for the REST route alike. Each file part is streamed to an anonymous temporary file
//! (unlinked from the start, so it disappears with its last handle, even if the process dies)
//! while its bytes are counted: past the limit the request ends with `PAYLOAD_TOO_LARGE` and
//! nothing is left behind. Memory holds one chunk at a time.

use std::collections::HashMap;
use std::path::PathBuf;

use async_graphql::{BatchRequest, UploadValue};
use axum::extract::{FromRequest, Multipart, Request};
use tokio::io::AsyncWriteExt;

use crate::error::AppError;

/// Limits on multipart bodies.
#[derive(Clone, Debug)]
pub struct UploadLimits {
    /// Largest file accepted, in bytes.
    pub max_file_bytes: u64,
    /// Most files in one request.
    pub max_files: usize,
    /// Largest non-file field (`operations`, `map`, form fields), in bytes.
    pub max_field_bytes: usize,
    /// Most non-file fields in one request.
    pub max_fields: usize,
    /// All non-file fields of one request together, in bytes.
    pub max_fields_total_bytes: usize,
    /// Where files are spooled while the request is read.
    pub spool_dir: PathBuf,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 512 * 1024 * 1024,
            max_files: 1,
            max_field_bytes: 1024 * 1024,
            max_fields: 16,
            max_fields_total_bytes: 2 * 1024 * 1024,
            spool_dir: std::env::temp_dir(),
        }
    }
}

/// A file part, spooled.
pub struct SpooledFile {
    pub field: String,
    pub file_name: String,
    pub content_type: Option<String>,
    pub file: std::fs::File,
    pub size: u64,
}

/// A multipart body: its text fields in order, and its files.
pub struct SpooledForm {
    pub fields: Vec<(String, String)>,
    pub files: Vec<SpooledFile>,
}

impl SpooledForm {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn is_multipart(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

fn malformed(e: impl std::fmt::Display) -> AppError {
    AppError::BadUserInput(format!("malformed multipart body: {e}"))
}

fn too_large(limit: u64) -> AppError {
    AppError::PayloadTooLarge(format!(
        "the file is larger than the limit of {limit} bytes"
    ))
}

/// Most bytes read and discarded after a body went over its limit, so that the client, still
/// sending, sees the 413 response instead of a connection reset.
pub(crate) const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// Reads and discards the rest of a field; returns the running total of discarded bytes.
async fn drain_field(field: &mut axum::extract::multipart::Field<'_>, mut drained: u64) -> u64 {
    while drained <= DRAIN_LIMIT {
        match field.chunk().await {
            Ok(Some(chunk)) => drained += chunk.len() as u64,
            _ => break,
        }
    }
    drained
}

/// Reads the whole body, spooling files, enforcing `limits` as it goes. A refused body (a file
/// or field over its limit, one file too many, a field that is not UTF-8) is read on and
/// discarded, up to [`DRAIN_LIMIT`], so that the client, still sending, gets the error
/// rather than a connection reset. (A body the multipart parser cannot read is not: past a
/// broken boundary there is nothing to skip by.)
pub async fn spool(req: Request, limits: &UploadLimits) -> Result<SpooledForm, AppError> {
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| malformed(e.body_text()))?;
    let mut form = SpooledForm {
        fields: Vec::new(),
        files: Vec::new(),
    };
    let (error, mut drained) = loop {
        let mut field = match mp.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(form),
            Err(e) => return Err(malformed(e.body_text())),
        };
        if let Err(e) = read_field(&mut field, &mut form, limits).await {
            let drained = drain_field(&mut field, 0).await;
            break (e, drained);
        }
    };
    while drained <= DRAIN_LIMIT {
        match mp.next_field().await {
            Ok(Some(mut f)) => drained = drain_field(&mut f, drained).await,
            _ => break,
        }
    }
    Err(error)
}

/// One part of the form: a file, spooled, or a text field.
async fn read_field(
    field: &mut axum::extract::multipart::Field<'_>,
    form: &mut SpooledForm,
    limits: &UploadLimits,
) -> Result<(), AppError> {
    let name = field.name().unwrap_or_default().to_owned();
    let Some(file_name) = field.file_name().map(str::to_owned) else {
        if form.fields.len() >= limits.max_fields {
            return Err(AppError::BadUserInput(format!(
                "at most {} form fields per request",
                limits.max_fields
            )));
        }
        let before: usize = form.fields.iter().map(|(_, v)| v.len()).sum();
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| malformed(e.body_text()))? {
            if value.len() + chunk.len() > limits.max_field_bytes {
                return Err(AppError::PayloadTooLarge(format!(
                    "form field `{name}` is larger than {} bytes",
                    limits.max_field_bytes
                )));
            }
            if before + value.len() + chunk.len() > limits.max_fields_total_bytes {
                return Err(AppError::PayloadTooLarge(format!(
                    "the form's fields are larger than {} bytes together",
                    limits.max_fields_total_bytes
                )));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value)
            .map_err(|_| AppError::BadUserInput(format!("form field `{name}` is not UTF-8")))?;
        form.fields.push((name, value));
        return Ok(());
    };
    if form.files.len() >= limits.max_files {
        return Err(AppError::BadUserInput(format!(
            "at most {} file(s) per request",
            limits.max_files
        )));
    }
    let content_type = field.content_type().map(str::to_owned);
    let std_file = tempfile::tempfile_in(&limits.spool_dir)
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("creating a spool file")))?;
    // Unlinked: dropped on any error, it leaves nothing behind.
    let mut file = tokio::fs::File::from_std(std_file);
    let mut size = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(|e| malformed(e.body_text()))? {
        size += chunk.len() as u64;
        if size > limits.max_file_bytes {
            return Err(too_large(limits.max_file_bytes));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("spooling an upload")))?;
    }
    file.flush()
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let mut std_file = file.into_std().await;
    std::io::Seek::rewind(&mut std_file).map_err(|e| AppError::Internal(e.into()))?;
    form.files.push(SpooledFile {
        field: name,
        file_name,
        content_type,
        file: std_file,
        size,
    });
    Ok(())
}

/// A GraphQL multipart request (<https://github.com/jaydenseric/graphql-multipart-request-spec>):
/// `operations` is the request (or batch) as JSON, `map` says which variable each file fills.
pub async fn graphql_request(
    req: Request,
    limits: &UploadLimits,
) -> Result<BatchRequest, AppError> {
    let form = spool(req, limits).await?;
    let operations = form.field("operations").ok_or_else(|| {
        AppError::BadUserInput("multipart request without an `operations` field".into())
    })?;
    let mut batch: BatchRequest = serde_json::from_str(operations).map_err(|e| {
        AppError::BadUserInput(format!("`operations` is not a GraphQL request: {e}"))
    })?;
    let map: HashMap<String, Vec<String>> = match form.field("map") {
        Some(m) => serde_json::from_str(m)
            .map_err(|e| AppError::BadUserInput(format!("`map` is not valid: {e}")))?,
        None if form.files.is_empty() => HashMap::new(),
        None => {
            return Err(AppError::BadUserInput(
                "multipart request with files but no `map` field".into(),
            ));
        }
    };
    for f in form.files {
        let paths = map
            .get(&f.field)
            .ok_or_else(|| AppError::BadUserInput(format!("file `{}` is not in `map`", f.field)))?;
        // A file is read once, by the one argument it fills: two arguments (or two operations
        // of a batch) sharing one spooled file would share its read offset.
        if paths.len() != 1 {
            return Err(AppError::BadUserInput(format!(
                "file `{}` must be mapped to exactly one variable path (it is mapped to {})",
                f.field,
                paths.len()
            )));
        }
        for path in paths {
            let upload = UploadValue {
                filename: f.file_name.clone(),
                content_type: f.content_type.clone(),
                content: f
                    .file
                    .try_clone()
                    .map_err(|e| AppError::Internal(e.into()))?,
            };
            match &mut batch {
                BatchRequest::Single(r) => r.set_upload(path, upload),
                BatchRequest::Batch(rs) => {
                    let (index, rest) = path
                        .split_once('.')
                        .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)))
                        .ok_or_else(|| {
                            AppError::BadUserInput(format!(
                                "map path `{path}` has no operation index"
                            ))
                        })?;
                    let r = rs.get_mut(index).ok_or_else(|| {
                        AppError::BadUserInput(format!("map path `{path}` names no operation"))
                    })?;
                    r.set_upload(rest, upload);
                }
            }
        }
    }
    Ok(batch)
}
