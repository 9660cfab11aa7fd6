//! The multipart reader of uploads (`http::multipart::spool` and `graphql_request`).
//!
//! Input: 8 option bytes, then the body. The options give small limits (so that every limit is
//! hit), the size of the body's chunks, and whether the Content-Type header is the fixed
//! `multipart/form-data; boundary=X` or the body's first line. Both readers must answer Ok or an
//! error the client caused (never a panic, never INTERNAL), keep to the limits, and leave no
//! file behind: none in the spool folder, none open.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use coupon_upload_api::error::AppError;
use coupon_upload_api::http::multipart::{UploadLimits, graphql_request, spool};
use libfuzzer_sys::fuzz_target;

fn spool_dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("spool folder"))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Open file descriptors of the process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn request(content_type: &HeaderValue, body: &[u8], chunk: usize) -> Request {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(chunk).map(|c| Ok(c.to_vec())).collect();
    Request::builder()
        .method("POST")
        .uri("/graphql")
        .header(header::CONTENT_TYPE, content_type.clone())
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .expect("request")
}

fn client_error(err: &AppError) {
    assert!(
        matches!(
            err,
            AppError::BadUserInput(_) | AppError::PayloadTooLarge(_)
        ),
        "{err:?}"
    );
    assert!(!err.to_string().is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let limits = UploadLimits {
        max_file_bytes: u64::from(head[0]) * 16,
        max_files: usize::from(head[1] % 3),
        max_field_bytes: usize::from(head[2]) * 8,
        max_fields: usize::from(head[3] % 8),
        max_fields_total_bytes: usize::from(head[4]) * 16,
        spool_dir: spool_dir().path().to_owned(),
    };
    let chunk = match head[5] {
        0 => rest.len().max(1),
        n => usize::from(n),
    };
    let (content_type, body) = if head[6] & 1 == 0 {
        (
            HeaderValue::from_static("multipart/form-data; boundary=X"),
            rest,
        )
    } else {
        let (line, body) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let Ok(value) = HeaderValue::from_bytes(line) else {
            return;
        };
        (value, body)
    };

    let rt = runtime();
    let fds = open_fds();
    rt.block_on(async {
        match spool(request(&content_type, body, chunk), &limits).await {
            Ok(form) => {
                assert!(form.files.len() <= limits.max_files);
                assert!(form.fields.len() <= limits.max_fields);
                let mut total = 0;
                for (_, value) in &form.fields {
                    assert!(value.len() <= limits.max_field_bytes);
                    total += value.len();
                }
                assert!(total <= limits.max_fields_total_bytes);
                for file in &form.files {
                    assert!(file.size <= limits.max_file_bytes);
                    let len = file.file.metadata().expect("metadata").len();
                    assert_eq!(len, file.size);
                }
            }
            Err(err) => client_error(&err),
        }
        if let Err(err) = graphql_request(request(&content_type, body, chunk), &limits).await {
            client_error(&err);
        }
    });

    // Spooled files are anonymous: nothing is ever left in the folder.
    let left = std::fs::read_dir(spool_dir().path())
        .expect("spool folder")
        .count();
    assert_eq!(left, 0);
    // A spool file dropped mid-write is closed by tokio's blocking pool, a moment later.
    let mut waits = 0;
    while open_fds() != fds && waits < 200 {
        std::thread::sleep(std::time::Duration::from_millis(5));
        waits += 1;
    }
    assert_eq!(open_fds(), fds, "a file was left open");
});
