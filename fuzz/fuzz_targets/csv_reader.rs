//! The upload CSV reader (`ingest::reader`) and the per-row rules (`ingest::rules`).
//!
//! Input: 8 option bytes, then the file. The options pick the customer identifier type, the
//! columns, `hasHeader`, the code length limit, small record limits (so that the limits are
//! hit) and how many bytes each `read` hands out. Every row is read to the end and checked
//! against what the reader promises; a file without NUL bytes must read the same whatever the
//! chunking. The rest of the input, as text, also goes through the rule parsers directly.
#![no_main]

use std::io::{self, Read};

use coupon_upload_api::domain::CustomerIdentifierType;
use coupon_upload_api::ingest::reader::{
    FileError, ReaderOptions, RecordLimits, RowReader, StagedRow,
};
use coupon_upload_api::ingest::rules::{CouponCode, CustomerIdentifier};
use libfuzzer_sys::fuzz_target;

/// Hands out at most `chunk` bytes per `read`.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn column(b: u8) -> Option<usize> {
    (b & 0x80 == 0).then_some(usize::from(b & 3))
}

fn is_code_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// All rows, or the rows before the file error; checks the iterator's invariants as it goes.
fn read_all<R: Read>(
    reader: R,
    opts: ReaderOptions,
    limits: RecordLimits,
    file_len: usize,
) -> Result<(Vec<StagedRow>, Option<FileError>), FileError> {
    let mut rows = RowReader::with_limits(reader, opts, limits)?;
    let columns = rows.column_count();
    assert!(columns >= 1 && columns <= limits.max_fields);
    assert!(rows.code_column() < columns);
    if let Some(c) = rows.customer_column() {
        assert!(c < columns);
        assert_ne!(c, rows.code_column());
    }
    let tagged = opts.customer_identifier != CustomerIdentifierType::NotTagged;
    let mut out: Vec<StagedRow> = Vec::new();
    let mut error = None;
    for item in rows.by_ref() {
        let row = match item {
            Ok(row) => row,
            Err(err) => {
                error = Some(err);
                break;
            }
        };
        // Numbers run 1, 2, 3, … with no gaps, and no row comes from nothing.
        assert_eq!(row.row_number, out.len() as i64 + 1);
        assert!(out.len() < file_len);
        assert!(row.raw_code.len() as u64 <= limits.max_bytes);
        if let Some(code) = &row.code {
            assert_eq!(code, row.raw_code.trim());
            assert!(!code.is_empty());
            assert!(code.chars().count() <= opts.code_max_length);
            assert!(code.chars().all(is_code_char), "{code:?}");
        }
        assert_eq!(row.raw_customer.is_some(), tagged);
        if !tagged {
            assert_eq!(row.customer, None);
        }
        if let Some(customer) = &row.customer {
            let again = CustomerIdentifier::parse(opts.customer_identifier, customer)
                .expect("a normalized identifier parses");
            assert_eq!(again.as_str(), customer);
        }
        match &row.error {
            Some(err) => assert!(!err.message.is_empty()),
            None => {
                assert!(row.code.is_some());
                assert_eq!(row.customer.is_some(), tagged);
            }
        }
        out.push(row);
    }
    // After the end or a file error there is nothing more.
    assert!(rows.next().is_none());
    assert!(rows.next().is_none());
    Ok((out, error))
}

fn rules(text: &str, max_len: usize) {
    match CouponCode::parse(text, max_len) {
        Ok(code) => {
            let code = code.as_str();
            assert_eq!(code, text.trim());
            assert!(!code.is_empty() && code.chars().count() <= max_len);
            assert!(code.chars().all(is_code_char));
            assert_eq!(
                CouponCode::parse(code, max_len).expect("again").as_str(),
                code
            );
        }
        Err(err) => {
            assert!(!err.message.is_empty());
            let _ = err.to_string();
        }
    }
    for &kind in CustomerIdentifierType::ALL {
        match CustomerIdentifier::parse(kind, text) {
            Ok(id) => {
                assert_ne!(kind, CustomerIdentifierType::NotTagged);
                // Normalizing is idempotent.
                let again = CustomerIdentifier::parse(kind, id.as_str()).expect("normalized");
                assert_eq!(again.as_str(), id.as_str(), "{kind:?}");
            }
            Err(err) => assert!(!err.message.is_empty()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((head, file)) = data.split_first_chunk::<8>() else {
        return;
    };
    let opts = ReaderOptions {
        customer_identifier: CustomerIdentifierType::ALL
            [usize::from(head[0]) % CustomerIdentifierType::ALL.len()],
        customer_identifier_column: column(head[1]),
        coupon_code_column: column(head[2]),
        has_header: head[3] & 1 == 1,
        code_max_length: usize::from(head[3] >> 1) % 40,
    };
    let limits = RecordLimits {
        max_bytes: 1 + u64::from(head[4]) * 8,
        max_fields: 1 + usize::from(head[5] % 16),
    };
    let chunk = match head[6] {
        0 => usize::MAX,
        n => usize::from(n),
    };

    let whole = read_all(file, opts, limits, file.len());
    if let Err(err) | Ok((_, Some(err))) = &whole {
        let _ = err.to_string();
    }
    let chunked = read_all(Chunked { data: file, chunk }, opts, limits, file.len());
    if !file.contains(&0) {
        assert_eq!(whole, chunked, "chunks of {chunk}");
    }

    rules(&String::from_utf8_lossy(file), usize::from(head[7]));
});
