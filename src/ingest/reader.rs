//! Streaming reader of an uploaded CSV file.
//!
//! [`RowReader`] reads any [`std::io::Read`] record by record with the `csv` crate and yields one
//! [`StagedRow`] per data row, holding a single record in memory at a time, so memory does not
//! grow with the file. Per-row problems ([`RowError`]) are part of the row; problems that stop the
//! whole job ([`FileError`]) are yielded once, after which the iterator ends.
//!
//! File format: comma separated, RFC 4180 quoting (`"` quotes, `""` escapes a quote, a quoted
//! field may span lines), LF, CRLF or CR line ends, UTF-8 with an optional byte order mark.
//! Records may have different widths: extra columns are ignored and a row that lacks a needed
//! column is rejected as `UNPARSEABLE_ROW`. A record whose fields are all empty or whitespace
//! (a blank line, a whitespace-only line, or `,,` as spreadsheets export empty rows) is not a row:
//! it is skipped and gets no row number.

use std::io::{self, Read};

use csv::{ByteRecord, ReaderBuilder};

use crate::domain::CustomerIdentifierType;
use crate::ingest::rules::{CouponCode, CustomerIdentifier, RowError, RowErrorCode};

/// How to read an upload: the upload options (`customerIdentifier`, its column, the code
/// column, `hasHeader`) plus the series' code length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderOptions {
    /// How rows name their customer. For `NOT_TAGGED` the customer column is ignored.
    pub customer_identifier: CustomerIdentifierType,
    /// 0-based; required when the upload is tagged.
    pub customer_identifier_column: Option<usize>,
    /// 0-based; `None` means [`default_code_column`].
    pub coupon_code_column: Option<usize>,
    /// Whether the first record is a header (skipped, but it fixes the column count).
    pub has_header: bool,
    /// The longest coupon code, in characters.
    pub code_max_length: usize,
}

/// Bounds on one record of an upload, so that no file can make the reader allocate more than
/// a little memory per record (one line of half a gigabyte of commas would otherwise be half a
/// billion fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    /// The most bytes one record may take in the file (its quoted newlines included).
    pub max_bytes: u64,
    /// The most fields one record may have.
    pub max_fields: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024,
            max_fields: 1024,
        }
    }
}

/// The CSV parser's read buffer: the parser may hold this much beyond the record it is on.
const CSV_BUFFER: u64 = 8 * 1024;

/// One data row, ready to stage.
///
/// `code` and `customer` are filled whenever that cell on its own is valid, even when the row is
/// rejected for another reason; whether the row is rejected is decided by `error` alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedRow {
    /// 1-based data row number (header and blank lines excluded); a quoted field spanning
    /// lines is one row.
    pub row_number: i64,
    /// The code column exactly as in the file ("" if the column is missing in this row).
    pub raw_code: String,
    /// The customer column as in the file ("" if missing in this row; `None` for NOT_TAGGED).
    pub raw_customer: Option<String>,
    /// The parsed code when it is valid.
    pub code: Option<String>,
    /// The normalized identifier when valid (`None` for NOT_TAGGED).
    pub customer: Option<String>,
    /// The first per-row error: a missing column, then the code, then the customer.
    pub error: Option<RowError>,
}

/// Why the job as a whole cannot run. The `Display` text is meant for the operator or marketer
/// who uploaded the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// No records: 0 bytes, only a byte order mark, or only blank/whitespace lines.
    #[error("the file is empty: it has no rows")]
    Empty,
    /// A field somewhere in the file is not valid UTF-8. `row_number` is the data row number the
    /// record would have had (0 for the header).
    #[error("{}", not_utf8_message(*.row_number))]
    NotUtf8 { row_number: i64 },
    /// The file has NUL bytes: it is a binary file, not text.
    #[error(
        "the file is not a text file (it contains NUL bytes); upload a CSV file saved as UTF-8 text"
    )]
    NotText,
    /// A column option points past the width of the file's first record.
    #[error("{option} {index} does not exist: the file has {columns} {noun}", noun = column_noun(*.columns))]
    NoSuchColumn {
        /// `"customerIdentifierColumn"` or `"couponCodeColumn"`.
        option: &'static str,
        index: usize,
        columns: usize,
    },
    /// The customer column and the code column are the same.
    #[error(
        "customerIdentifierColumn and couponCodeColumn name the same column; the coupon code and \
         the customer identifier must be in different columns"
    )]
    SameColumn,
    /// A tagged upload without a customer column.
    #[error(
        "customerIdentifierColumn is required when customerIdentifier is not NOT_TAGGED: give the \
         column that holds the customer identifier"
    )]
    MissingCustomerColumn,
    /// Reading the upload failed.
    #[error("the file could not be read: {0}")]
    Io(String),
    /// The CSV parser gave up on the file.
    #[error("the file is not valid CSV: {0}")]
    Csv(String),
    /// A record is longer than [`RecordLimits::max_bytes`]. Past it the record's end cannot be
    /// found safely (a quote may hold any number of lines), so the file is refused as a whole.
    #[error("{} is longer than {max_bytes} bytes; is the file a CSV of coupon codes?", row_name(*.row_number))]
    RecordTooLarge { row_number: i64, max_bytes: u64 },
    /// The first record (which fixes the columns) has more than [`RecordLimits::max_fields`].
    #[error("{} has more than {max_fields} columns", row_name(*.row_number))]
    TooManyColumns { row_number: i64, max_fields: usize },
}

fn row_name(row_number: i64) -> String {
    if row_number == 0 {
        "the header row".to_owned()
    } else {
        format!("row {row_number}")
    }
}

fn not_utf8_message(row_number: i64) -> String {
    let place = row_name(row_number);
    format!(
        "the file is not UTF-8 text: {place} has characters in another encoding; save the file \
         as \"CSV UTF-8\" and upload it again"
    )
}

fn column_noun(columns: usize) -> &'static str {
    if columns == 1 { "column" } else { "columns" }
}

impl From<csv::Error> for FileError {
    fn from(err: csv::Error) -> Self {
        match err.kind() {
            csv::ErrorKind::Io(io_err) => FileError::Io(io_err.to_string()),
            _ => FileError::Csv(err.to_string()),
        }
    }
}

/// The coupon code column when none is given: the first column that is not the customer column.
pub fn default_code_column(customer_column: Option<usize>) -> usize {
    if customer_column == Some(0) { 1 } else { 0 }
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// How many leading bytes are read before the CSV parser sees any, to strip a byte order mark
/// and to tell a binary file (NUL bytes) from text before judging its first record.
const SNIFF_LEN: usize = 1024;

/// The upload as the CSV parser sees it: without a leading UTF-8 byte order mark, whatever the
/// chunking of the underlying reader (`csv-core` strips a BOM only when its first buffer holds
/// all three bytes), and noting whether any NUL byte went through.
struct Input<R> {
    inner: R,
    head: Box<[u8; SNIFF_LEN]>,
    head_len: usize,
    head_pos: usize,
    started: bool,
    saw_nul: bool,
    /// Bytes handed to the parser (after a BOM).
    handed: u64,
    /// The parser may not be handed bytes past this offset (the end of the room a record has).
    allowed_until: u64,
    /// A read was refused for passing `allowed_until`.
    over_limit: bool,
}

impl<R: Read> Input<R> {
    fn new(inner: R) -> Self {
        Input {
            inner,
            head: Box::new([0; SNIFF_LEN]),
            head_len: 0,
            head_pos: 0,
            started: false,
            saw_nul: false,
            handed: 0,
            allowed_until: u64::MAX,
            over_limit: false,
        }
    }

    /// Reads the first bytes (up to [`SNIFF_LEN`], fewer at end of file) and skips a BOM.
    fn start(&mut self) -> io::Result<()> {
        while self.head_len < SNIFF_LEN {
            let free = &mut self.head[self.head_len..];
            match self.inner.read(free) {
                Ok(0) => break,
                Ok(n) => self.head_len += n.min(free.len()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        let head = &self.head[..self.head_len];
        if head.starts_with(UTF8_BOM) {
            self.head_pos = UTF8_BOM.len();
        }
        if self.head[self.head_pos..self.head_len].contains(&0) {
            self.saw_nul = true;
        }
        self.started = true;
        Ok(())
    }
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.allowed_until.saturating_sub(self.handed);
        if room == 0 {
            self.over_limit = true;
            return Err(io::Error::other("a record is too large"));
        }
        let len = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let buf = &mut buf[..len];
        let n = self.read_unlimited(buf)?;
        self.handed += n as u64;
        Ok(n)
    }
}

impl<R: Read> Input<R> {
    fn read_unlimited(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.started {
            self.start()?;
        }
        if self.head_pos < self.head_len {
            let pending = &self.head[self.head_pos..self.head_len];
            let n = pending.len().min(buf.len());
            buf[..n].copy_from_slice(&pending[..n]);
            self.head_pos += n;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        if buf.get(..n).is_none_or(|read| read.contains(&0)) {
            // A NUL byte (or a reader claiming more bytes than it was given room for).
            self.saw_nul = true;
        }
        Ok(n)
    }
}

/// Streams the data rows of an upload; see the module documentation.
pub struct RowReader<R: Read> {
    csv: csv::Reader<Input<R>>,
    /// The one record in memory, reused for every record.
    record: ByteRecord,
    kind: CustomerIdentifierType,
    /// `None` for NOT_TAGGED.
    customer_column: Option<usize>,
    code_column: usize,
    code_max_length: usize,
    /// Width of the file's first record (the header when there is one).
    columns: usize,
    /// `record` holds the first data row, read by `new` and not yet yielded.
    pending: bool,
    /// The number the next data row gets.
    next_row: i64,
    /// A fatal error was yielded or the file ended.
    done: bool,
    limits: RecordLimits,
}

impl<R: Read> RowReader<R> {
    /// Validates options against the file's first record (the header if `has_header`, else the
    /// first data row): errors on empty file, missing/identical columns, column index out of
    /// range (message: "couponCodeColumn 3 does not exist: the file has 1 column"), tagged upload
    /// without `customer_identifier_column`. Also fails when the first record is not UTF-8 text,
    /// or on a read error.
    ///
    /// Column options are checked first (they need no input), then the file. For a NOT_TAGGED
    /// upload `customer_identifier_column` is ignored.
    pub fn new(reader: R, opts: ReaderOptions) -> Result<Self, FileError> {
        Self::with_limits(reader, opts, RecordLimits::default())
    }

    /// [`RowReader::new`] with other bounds on a record.
    pub fn with_limits(
        reader: R,
        opts: ReaderOptions,
        limits: RecordLimits,
    ) -> Result<Self, FileError> {
        let customer_column = match opts.customer_identifier {
            CustomerIdentifierType::NotTagged => None,
            _ => Some(
                opts.customer_identifier_column
                    .ok_or(FileError::MissingCustomerColumn)?,
            ),
        };
        let code_column = opts
            .coupon_code_column
            .unwrap_or_else(|| default_code_column(customer_column));
        if customer_column == Some(code_column) {
            return Err(FileError::SameColumn);
        }

        let csv = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(b',')
            .quote(b'"')
            .double_quote(true)
            .quoting(true)
            .terminator(csv::Terminator::CRLF)
            .buffer_capacity(CSV_BUFFER as usize)
            .from_reader(Input::new(reader));
        let mut rows = RowReader {
            csv,
            record: ByteRecord::new(),
            kind: opts.customer_identifier,
            customer_column,
            code_column,
            code_max_length: opts.code_max_length,
            columns: 0,
            pending: false,
            next_row: 1,
            done: false,
            limits,
        };

        let first_row_number = if opts.has_header { 0 } else { 1 };
        if !rows.read_record(first_row_number)? {
            return Err(FileError::Empty);
        }
        rows.columns = rows.record.len();
        let columns = rows.columns;
        if columns > limits.max_fields {
            return Err(FileError::TooManyColumns {
                row_number: first_row_number,
                max_fields: limits.max_fields,
            });
        }
        if let Some(index) = customer_column.filter(|&i| i >= columns) {
            return Err(FileError::NoSuchColumn {
                option: "customerIdentifierColumn",
                index,
                columns,
            });
        }
        if code_column >= columns {
            return Err(FileError::NoSuchColumn {
                option: "couponCodeColumn",
                index: code_column,
                columns,
            });
        }
        rows.pending = !opts.has_header;
        Ok(rows)
    }

    /// Width of the file's first record (the header when there is one).
    pub fn column_count(&self) -> usize {
        self.columns
    }

    /// The 0-based column the coupon codes are read from.
    pub fn code_column(&self) -> usize {
        self.code_column
    }

    /// The 0-based column the customer identifiers are read from (`None` for NOT_TAGGED).
    pub fn customer_column(&self) -> Option<usize> {
        self.customer_column
    }

    /// Reads the next record that is not blank into `self.record`; `Ok(false)` at end of file.
    /// Every field of every record (blank ones included) must be NUL-free UTF-8; `row_number` is
    /// the number reported if this record is not.
    ///
    /// A record may take [`RecordLimits::max_bytes`]: the parser is handed no more input than
    /// that (plus its buffer) past the record's start, so an endless record ends in
    /// `RecordTooLarge` having cost at most that much memory.
    fn read_record(&mut self, row_number: i64) -> Result<bool, FileError> {
        let too_large = FileError::RecordTooLarge {
            row_number,
            max_bytes: self.limits.max_bytes,
        };
        loop {
            let start = self.csv.position().byte();
            self.csv.get_mut().allowed_until = start
                .saturating_add(self.limits.max_bytes)
                .saturating_add(CSV_BUFFER);
            let read = self.csv.read_byte_record(&mut self.record);
            // Every byte the parser saw went through `Input`, which notes NUL bytes.
            if self.csv.get_ref().saw_nul {
                return Err(FileError::NotText);
            }
            if self.csv.get_ref().over_limit {
                return Err(too_large);
            }
            let more = read?;
            if self.csv.position().byte() - start > self.limits.max_bytes {
                return Err(too_large);
            }
            if !more {
                return Ok(false);
            }
            let mut blank = true;
            for field in &self.record {
                let text =
                    std::str::from_utf8(field).map_err(|_| FileError::NotUtf8 { row_number })?;
                blank &= text.trim().is_empty();
            }
            if !blank {
                return Ok(true);
            }
        }
    }

    /// Applies the per-row rules to `self.record`.
    fn stage(&self, row_number: i64) -> StagedRow {
        let width = self.record.len();
        let missing = |option: &str, what: &str, index: usize| {
            RowError::new(
                RowErrorCode::UnparseableRow,
                format!(
                    "the row has {width} {} so the {what} column ({option} {index}) is missing",
                    column_noun(width)
                ),
            )
        };

        let raw_code = field(&self.record, self.code_column);
        let mut error = raw_code
            .is_none()
            .then(|| missing("couponCodeColumn", "coupon code", self.code_column));
        if width > self.limits.max_fields {
            error = Some(RowError::new(
                RowErrorCode::UnparseableRow,
                format!(
                    "the row has {width} columns, more than the {} a row may have",
                    self.limits.max_fields
                ),
            ));
        }
        let raw_customer = self.customer_column.map(|i| (i, field(&self.record, i)));
        if let Some((index, None)) = raw_customer {
            error = error.or_else(|| Some(missing("customerIdentifierColumn", "customer", index)));
        }

        let code = raw_code.map(|raw| CouponCode::parse(raw, self.code_max_length));
        let customer = raw_customer
            .and_then(|(_, raw)| raw)
            .map(|raw| CustomerIdentifier::parse(self.kind, raw));
        if let Some(Err(err)) = &code {
            error = error.or_else(|| Some(err.clone()));
        }
        if let Some(Err(err)) = &customer {
            error = error.or_else(|| Some(err.clone()));
        }

        StagedRow {
            row_number,
            raw_code: raw_code.unwrap_or_default().to_owned(),
            raw_customer: raw_customer.map(|(_, raw)| raw.unwrap_or_default().to_owned()),
            code: code.and_then(Result::ok).map(CouponCode::into_inner),
            customer: customer
                .and_then(Result::ok)
                .map(CustomerIdentifier::into_inner),
            error,
        }
    }
}

/// Field `index` of an already validated record.
fn field(record: &ByteRecord, index: usize) -> Option<&str> {
    record
        .get(index)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
}

impl<R: Read> Iterator for RowReader<R> {
    type Item = Result<StagedRow, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.pending {
            self.pending = false;
        } else {
            match self.read_record(self.next_row) {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            }
        }
        let row = self.stage(self.next_row);
        self.next_row += 1;
        Some(Ok(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    use CustomerIdentifierType as Kind;

    fn opts(kind: Kind, customer: Option<usize>, code: Option<usize>) -> ReaderOptions {
        ReaderOptions {
            customer_identifier: kind,
            customer_identifier_column: customer,
            coupon_code_column: code,
            has_header: true,
            code_max_length: 20,
        }
    }

    fn untagged() -> ReaderOptions {
        opts(Kind::NotTagged, None, None)
    }

    fn open(input: &[u8], o: ReaderOptions) -> Result<RowReader<Cursor<Vec<u8>>>, FileError> {
        RowReader::new(Cursor::new(input.to_vec()), o)
    }

    fn read_all(input: &[u8], o: ReaderOptions) -> Result<Vec<StagedRow>, FileError> {
        open(input, o)?.collect()
    }

    /// An endless stream of one byte: a file with no end, and no line end.
    struct Endless(u8);

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(self.0);
            Ok(buf.len())
        }
    }

    #[test]
    fn an_endless_record_is_refused_within_its_limit() {
        for byte in [b',', b'x'] {
            let mut header = b"code\n".to_vec();
            header.extend(std::iter::repeat_n(byte, 10));
            let input = io::Read::chain(Cursor::new(header), Endless(byte));
            let mut rows = RowReader::new(input, untagged()).expect("header");
            match rows.next() {
                Some(Err(FileError::RecordTooLarge {
                    row_number,
                    max_bytes,
                })) => {
                    assert_eq!((row_number, max_bytes), (1, 64 * 1024));
                }
                other => panic!("{other:?}"),
            }
            assert!(rows.next().is_none());
        }
        // A quoted field that never closes, from the first record on.
        let input = io::Read::chain(Cursor::new(b"\"".to_vec()), Endless(b'a'));
        assert!(matches!(
            RowReader::new(input, untagged()).err(),
            Some(FileError::RecordTooLarge { row_number: 0, .. })
        ));
        // Lines of commas under the limit are read, each a record.
        let limits = RecordLimits {
            max_bytes: 100,
            max_fields: 1000,
        };
        let mut file = b"code\n".to_vec();
        file.extend_from_slice(&[b'A'; 99]);
        file.extend_from_slice(b"\nB\n");
        let rows: Vec<_> = RowReader::with_limits(Cursor::new(file.clone()), untagged(), limits)
            .expect("open")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(rows.len(), 2);
        file.insert(10, b'A');
        let err = RowReader::with_limits(Cursor::new(file), untagged(), limits)
            .expect("open")
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert_eq!(
            err,
            FileError::RecordTooLarge {
                row_number: 1,
                max_bytes: 100
            }
        );
        assert_eq!(
            err.to_string(),
            "row 1 is longer than 100 bytes; is the file a CSV of coupon codes?"
        );
    }

    #[test]
    fn too_many_fields_is_a_row_error_or_a_file_error_in_the_header() {
        let wide = ",".repeat(1500);
        let file = format!("code\nA{wide}\nB\n");
        let rows = read_all(file.as_bytes(), untagged()).expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(error_code(&rows[0]), Some(RowErrorCode::UnparseableRow));
        assert!(
            rows[0]
                .error
                .as_ref()
                .is_some_and(|e| e.message.contains("1501 columns")),
            "{:?}",
            rows[0].error
        );
        assert_eq!(error_code(&rows[1]), None);
        let header = format!("code{wide}\nA\n");
        assert_eq!(
            open(header.as_bytes(), untagged()).err(),
            Some(FileError::TooManyColumns {
                row_number: 0,
                max_fields: 1024
            })
        );
    }

    fn codes(rows: &[StagedRow]) -> Vec<(i64, &str)> {
        rows.iter()
            .map(|r| (r.row_number, r.raw_code.as_str()))
            .collect()
    }

    fn error_code(row: &StagedRow) -> Option<RowErrorCode> {
        row.error.as_ref().map(|e| e.code)
    }

    /// Hands out one byte per `read`, like the slowest possible network stream.
    struct OneByte(Cursor<Vec<u8>>);

    impl Read for OneByte {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let len = buf.len().min(1);
            self.0.read(&mut buf[..len])
        }
    }

    struct Failing;

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("connection reset"))
        }
    }

    #[test]
    fn simple_untagged_file() {
        let rows = read_all(b"code\nA1\nB2\n", untagged()).unwrap();
        assert_eq!(
            rows[0],
            StagedRow {
                row_number: 1,
                raw_code: "A1".into(),
                raw_customer: None,
                code: Some("A1".into()),
                customer: None,
                error: None,
            }
        );
        assert_eq!(codes(&rows), [(1, "A1"), (2, "B2")]);
    }

    #[test]
    fn without_header_first_record_is_row_one() {
        let o = ReaderOptions {
            has_header: false,
            ..untagged()
        };
        let reader = open(b"A1,x\nB2\n", o).unwrap();
        assert_eq!(reader.column_count(), 2);
        let rows: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(codes(&rows), [(1, "A1"), (2, "B2")]);
    }

    #[test]
    fn bom_is_ignored() {
        let input = b"\xEF\xBB\xBFcode\nA1\n";
        let reader = open(input, untagged()).unwrap();
        assert_eq!(reader.column_count(), 1);
        let o = ReaderOptions {
            has_header: false,
            ..untagged()
        };
        let rows = read_all(b"\xEF\xBB\xBFA1\n", o).unwrap();
        assert_eq!(rows[0].code.as_deref(), Some("A1"));
        // Also when the reader hands out the BOM one byte at a time (csv-core alone would keep
        // it then), and when the first field is quoted.
        let slow = OneByte(Cursor::new(b"\xEF\xBB\xBF\"A1\",x\n".to_vec()));
        let rows: Vec<_> = RowReader::new(slow, o)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows[0].raw_code, "A1");
        assert_eq!(rows[0].error, None);
    }

    #[test]
    fn only_bom_is_empty() {
        assert_eq!(
            open(b"\xEF\xBB\xBF", untagged()).err(),
            Some(FileError::Empty)
        );
        assert_eq!(
            open(b"\xEF\xBB\xBF\r\n", untagged()).err(),
            Some(FileError::Empty)
        );
    }

    #[test]
    fn crlf_and_cr_line_ends() {
        let rows = read_all(b"code\r\nA1\r\nB2\r\n", untagged()).unwrap();
        assert_eq!(codes(&rows), [(1, "A1"), (2, "B2")]);
        let rows = read_all(b"code\rA1\rB2", untagged()).unwrap();
        assert_eq!(codes(&rows), [(1, "A1"), (2, "B2")]);
    }

    #[test]
    fn quoted_fields() {
        let input = b"code,note\n\"A1\",\"a, b\"\n\"B\"\"2\",\"line1\nline2\r\nline3\"\n\"C3\",x\n\"a,b\",y\n";
        let rows = read_all(input, untagged()).unwrap();
        assert_eq!(
            codes(&rows),
            [(1, "A1"), (2, "B\"2"), (3, "C3"), (4, "a,b")]
        );
        assert_eq!(error_code(&rows[0]), None);
        assert_eq!(error_code(&rows[1]), Some(RowErrorCode::InvalidCouponCode));
        assert_eq!(error_code(&rows[2]), None);
        assert_eq!(error_code(&rows[3]), Some(RowErrorCode::InvalidCouponCode));
        // A newline inside a quoted code is one row, rejected for its characters.
        let rows = read_all(b"code\n\"A\nB\"\nC\n", untagged()).unwrap();
        assert_eq!(codes(&rows), [(1, "A\nB"), (2, "C")]);
        assert_eq!(error_code(&rows[0]), Some(RowErrorCode::InvalidCouponCode));
    }

    #[test]
    fn raw_values_are_kept_and_codes_trimmed() {
        let o = opts(Kind::Mobile, Some(1), None);
        let rows = read_all(b"code,mobile\n  A1 , +919800000001 \n", o).unwrap();
        let row = &rows[0];
        assert_eq!(row.raw_code, "  A1 ");
        assert_eq!(row.code.as_deref(), Some("A1"));
        assert_eq!(row.raw_customer.as_deref(), Some(" +919800000001 "));
        assert_eq!(row.customer.as_deref(), Some("919800000001"));
        assert_eq!(row.error, None);
    }

    #[test]
    fn header_only_yields_no_rows() {
        let mut reader = open(b"code,mobile\n", opts(Kind::Mobile, Some(1), None)).unwrap();
        assert_eq!(reader.column_count(), 2);
        assert!(reader.next().is_none());
        assert!(reader.next().is_none());
        assert!(read_all(b"code", untagged()).unwrap().is_empty());
    }

    #[test]
    fn empty_and_whitespace_only_files() {
        for input in [
            &b""[..],
            b"\n",
            b"\r\n\r\n",
            b"   ",
            b"  \n\t\n \r\n",
            b",,\n , \n",
            b"\"\"\n",
        ] {
            assert_eq!(
                open(input, untagged()).err(),
                Some(FileError::Empty),
                "{input:?}"
            );
            let o = ReaderOptions {
                has_header: false,
                ..untagged()
            };
            assert_eq!(open(input, o).err(), Some(FileError::Empty), "{input:?}");
        }
        assert_eq!(
            FileError::Empty.to_string(),
            "the file is empty: it has no rows"
        );
    }

    #[test]
    fn blank_lines_are_not_rows() {
        let rows = read_all(b"\n\ncode\n\nA1\n   \n,,\nB2\n\n", untagged()).unwrap();
        assert_eq!(codes(&rows), [(1, "A1"), (2, "B2")]);
    }

    #[test]
    fn binary_file_is_not_text() {
        let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x01\x00\x08\x06";
        assert_eq!(open(png, untagged()).err(), Some(FileError::NotText));
        let o = ReaderOptions {
            has_header: false,
            ..untagged()
        };
        assert_eq!(open(png, o).err(), Some(FileError::NotText));
        // A NUL after the first KiB: rows before it may be yielded, then the error, then nothing.
        let mut input = b"code\n".to_vec();
        for i in 0..500 {
            input.extend_from_slice(format!("C{i}\n").as_bytes());
        }
        input.extend_from_slice(b"X\x00Y\nZ\n");
        let mut reader = open(&input, untagged()).unwrap();
        let mut ok = 0;
        let err = loop {
            match reader.next() {
                Some(Ok(_)) => ok += 1,
                Some(Err(err)) => break err,
                None => panic!("no error"),
            }
        };
        assert!(ok <= 500);
        assert_eq!(err, FileError::NotText);
        assert!(reader.next().is_none());
        assert!(FileError::NotText.to_string().contains("not a text file"));
    }

    #[test]
    fn non_utf8_in_unused_column() {
        // Latin-1 'é' (0xE9) in a column nobody reads still fails the file.
        let input = b"code,note\nA1,ok\nB2,caf\xE9\nC3,ok\n";
        let mut reader = open(input, untagged()).unwrap();
        assert_eq!(reader.next().unwrap().unwrap().raw_code, "A1");
        let err = reader.next().unwrap().unwrap_err();
        assert_eq!(err, FileError::NotUtf8 { row_number: 2 });
        assert!(reader.next().is_none());
        assert!(err.to_string().contains("row 2"), "{err}");
        assert!(err.to_string().contains("UTF-8"), "{err}");
        // In the header.
        let err = open(b"code,caf\xE9\nA1,x\n", untagged()).err().unwrap();
        assert_eq!(err, FileError::NotUtf8 { row_number: 0 });
        assert!(err.to_string().contains("header"), "{err}");
        // In the first data row of a file without header.
        let o = ReaderOptions {
            has_header: false,
            ..untagged()
        };
        assert_eq!(
            open(b"A1,\xE9\n", o).err(),
            Some(FileError::NotUtf8 { row_number: 1 })
        );
    }

    #[test]
    fn one_mebibyte_line() {
        let code = "A".repeat(1 << 20);
        let input = format!("code,note\n{code},x\nB2,y\n");
        // Over the default limit on a record: the file is refused.
        assert_eq!(
            read_all(input.as_bytes(), untagged()).unwrap_err(),
            FileError::RecordTooLarge {
                row_number: 1,
                max_bytes: 64 * 1024
            }
        );
        // Within a larger limit: a row with a code that is too long.
        let limits = RecordLimits {
            max_bytes: 2 << 20,
            ..Default::default()
        };
        let rows: Vec<StagedRow> =
            RowReader::with_limits(Cursor::new(input.into_bytes()), untagged(), limits)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].raw_code.len(), 1 << 20);
        assert_eq!(rows[0].raw_code, code);
        assert_eq!(rows[0].code, None);
        let err = rows[0].error.as_ref().unwrap();
        assert_eq!(err.code, RowErrorCode::CouponCodeTooLong);
        assert!(err.message.contains("20"), "{}", err.message);
        assert_eq!(rows[1].code.as_deref(), Some("B2"));
    }

    #[test]
    fn code_max_length_is_applied() {
        let o = ReaderOptions {
            code_max_length: 3,
            ..untagged()
        };
        let rows = read_all(b"code\nABC\nABCD\n", o).unwrap();
        assert_eq!(error_code(&rows[0]), None);
        assert_eq!(error_code(&rows[1]), Some(RowErrorCode::CouponCodeTooLong));
    }

    #[test]
    fn column_out_of_range() {
        let o = opts(Kind::NotTagged, None, Some(3));
        let err = open(b"code\nA1\n", o).err().unwrap();
        assert_eq!(
            err,
            FileError::NoSuchColumn {
                option: "couponCodeColumn",
                index: 3,
                columns: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "couponCodeColumn 3 does not exist: the file has 1 column"
        );
        let err = open(b"code,x\nA1,y\n", opts(Kind::Email, Some(2), None))
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "customerIdentifierColumn 2 does not exist: the file has 2 columns"
        );
    }

    #[test]
    fn same_column() {
        let err = open(b"a,b\n1,2\n", opts(Kind::Mobile, Some(1), Some(1)))
            .err()
            .unwrap();
        assert_eq!(err, FileError::SameColumn);
        assert!(err.to_string().contains("same column"), "{err}");
    }

    #[test]
    fn tagged_upload_needs_customer_column() {
        for kind in [Kind::Mobile, Kind::Email, Kind::ExternalId, Kind::UserId] {
            let err = open(b"code\nA1\n", opts(kind, None, Some(0)))
                .err()
                .unwrap();
            assert_eq!(err, FileError::MissingCustomerColumn);
        }
        assert!(
            FileError::MissingCustomerColumn
                .to_string()
                .contains("customerIdentifierColumn")
        );
    }

    #[test]
    fn untagged_upload_ignores_customer_column() {
        let o = opts(Kind::NotTagged, Some(0), None);
        let rows = read_all(b"code\nA1\n", o).unwrap();
        assert_eq!(rows[0].raw_customer, None);
        assert_eq!(rows[0].customer, None);
        assert_eq!(rows[0].code.as_deref(), Some("A1"));
    }

    #[test]
    fn default_code_column_skips_customer_column() {
        assert_eq!(default_code_column(None), 0);
        assert_eq!(default_code_column(Some(0)), 1);
        assert_eq!(default_code_column(Some(1)), 0);
        assert_eq!(default_code_column(Some(5)), 0);
        let reader = open(
            b"mobile,code\n+919800000001,A1\n",
            opts(Kind::Mobile, Some(0), None),
        )
        .unwrap();
        assert_eq!(reader.code_column(), 1);
        assert_eq!(reader.customer_column(), Some(0));
        let rows: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(rows[0].raw_code, "A1");
        assert_eq!(rows[0].customer.as_deref(), Some("919800000001"));
    }

    #[test]
    fn each_identifier_type() {
        let cases: [(Kind, &str, Option<&str>, Option<RowErrorCode>); 12] = [
            (Kind::Mobile, "+919800000001", Some("919800000001"), None),
            (
                Kind::Mobile,
                "98000",
                None,
                Some(RowErrorCode::InvalidCustomerIdentifier),
            ),
            (
                Kind::Mobile,
                " ",
                None,
                Some(RowErrorCode::MissingCustomerIdentifier),
            ),
            (
                Kind::Email,
                "Jane@Example.com",
                Some("jane@example.com"),
                None,
            ),
            (
                Kind::Email,
                "jane@",
                None,
                Some(RowErrorCode::InvalidCustomerIdentifier),
            ),
            (
                Kind::Email,
                "",
                None,
                Some(RowErrorCode::MissingCustomerIdentifier),
            ),
            (Kind::ExternalId, " ext-1 ", Some("ext-1"), None),
            (
                Kind::ExternalId,
                &"x".repeat(101),
                None,
                Some(RowErrorCode::InvalidCustomerIdentifier),
            ),
            (
                Kind::ExternalId,
                "",
                None,
                Some(RowErrorCode::MissingCustomerIdentifier),
            ),
            (Kind::UserId, "0042", Some("42"), None),
            (
                Kind::UserId,
                "0",
                None,
                Some(RowErrorCode::InvalidCustomerIdentifier),
            ),
            (
                Kind::UserId,
                "",
                None,
                Some(RowErrorCode::MissingCustomerIdentifier),
            ),
        ];
        for (kind, raw, customer, error) in cases {
            let input = format!("code,customer\nA1,\"{raw}\"\n");
            let rows = read_all(input.as_bytes(), opts(kind, Some(1), None)).unwrap();
            let row = &rows[0];
            assert_eq!(row.raw_customer.as_deref(), Some(raw), "{kind:?} {raw:?}");
            assert_eq!(row.customer.as_deref(), customer, "{kind:?} {raw:?}");
            assert_eq!(error_code(row), error, "{kind:?} {raw:?}");
            assert_eq!(row.code.as_deref(), Some("A1"));
        }
    }

    #[test]
    fn code_is_checked_before_customer() {
        let rows = read_all(b"code,mobile\nA B,123\n", opts(Kind::Mobile, Some(1), None)).unwrap();
        assert_eq!(error_code(&rows[0]), Some(RowErrorCode::InvalidCouponCode));
        assert_eq!(rows[0].code, None);
        assert_eq!(rows[0].customer, None);
        // A valid cell is still parsed when the row is rejected for the other one.
        let rows = read_all(
            b"code,mobile\n,+919800000001\n",
            opts(Kind::Mobile, Some(1), None),
        )
        .unwrap();
        assert_eq!(error_code(&rows[0]), Some(RowErrorCode::EmptyCouponCode));
        assert_eq!(rows[0].customer.as_deref(), Some("919800000001"));
    }

    #[test]
    fn ragged_rows() {
        let o = opts(Kind::Email, Some(2), Some(1));
        let input = b"a,code,email\nx,A1,a@b.co\nx,A2\nx\nx,A4,a@b.co,extra,columns\n";
        let rows = read_all(input, o).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].error, None);

        let row = &rows[1];
        assert_eq!(error_code(row), Some(RowErrorCode::UnparseableRow));
        assert_eq!(row.raw_code, "A2");
        assert_eq!(row.code.as_deref(), Some("A2"));
        assert_eq!(row.raw_customer.as_deref(), Some(""));
        let message = &row.error.as_ref().unwrap().message;
        assert!(message.contains("customerIdentifierColumn 2"), "{message}");
        assert!(message.contains("2 columns"), "{message}");

        let row = &rows[2];
        assert_eq!(error_code(row), Some(RowErrorCode::UnparseableRow));
        assert_eq!(row.raw_code, "");
        assert_eq!(row.code, None);
        let message = &row.error.as_ref().unwrap().message;
        assert!(message.contains("couponCodeColumn 1"), "{message}");
        assert!(message.contains("1 column "), "{message}");

        assert_eq!(rows[3].error, None);
        assert_eq!(rows[3].customer.as_deref(), Some("a@b.co"));
    }

    #[test]
    fn io_error_is_a_file_error() {
        let err = RowReader::new(Failing, untagged()).err().unwrap();
        assert!(matches!(&err, FileError::Io(msg) if msg.contains("connection reset")));
        assert!(err.to_string().starts_with("the file could not be read"));
    }

    #[test]
    fn slow_reader_gives_same_rows() {
        let input = b"\xEF\xBB\xBFmobile,code\r\n+919800000001,\"A,1\"\r\n\r\n919800000002,B2\r\n";
        let o = opts(Kind::Mobile, Some(0), None);
        let fast = read_all(input, o).unwrap();
        let slow: Vec<_> = RowReader::new(OneByte(Cursor::new(input.to_vec())), o)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(fast, slow);
        assert_eq!(codes(&fast), [(1, "A,1"), (2, "B2")]);
    }

    proptest! {
        #[test]
        fn prop_arbitrary_bytes_never_panic(
            input in proptest::collection::vec(any::<u8>(), 0..2000),
            kind in prop_oneof![
                Just(Kind::NotTagged), Just(Kind::Mobile), Just(Kind::Email),
                Just(Kind::ExternalId), Just(Kind::UserId),
            ],
            customer in proptest::option::of(0usize..4),
            code in proptest::option::of(0usize..4),
            has_header in any::<bool>(),
            code_max_length in 0usize..30,
        ) {
            let o = ReaderOptions {
                customer_identifier: kind,
                customer_identifier_column: customer,
                coupon_code_column: code,
                has_header,
                code_max_length,
            };
            if let Ok(mut reader) = RowReader::new(Cursor::new(input), o) {
                let mut expected = 1;
                while let Some(item) = reader.next() {
                    match item {
                        Ok(row) => {
                            prop_assert_eq!(row.row_number, expected);
                            expected += 1;
                        }
                        Err(_) => {
                            prop_assert!(reader.next().is_none());
                            break;
                        }
                    }
                }
            }
        }

        #[test]
        fn prop_csv_like_input_never_panics(
            input in "[a-zA-Z0-9 ,\"\r\n@+.\u{feff}é-]{0,300}",
            has_header in any::<bool>(),
        ) {
            let o = ReaderOptions {
                has_header,
                ..opts(Kind::Email, Some(1), None)
            };
            if let Ok(reader) = RowReader::new(Cursor::new(input.into_bytes()), o) {
                for (expected, item) in (1..).zip(reader) {
                    prop_assert_eq!(item.unwrap().row_number, expected);
                }
            }
        }
    }
}
