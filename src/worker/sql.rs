//! SQL shared by the worker's phases, written once for both databases: `$n` placeholders
//! become SQLite's numbered `?n`, which (unlike plain `?`) may repeat.

//!
//! The rules that reject rows set `error_code` and `error_message` from the last two
//! parameters (bound from [`crate::domain::RowErrorCode`], see `rejecting` in `judge`).

pub use crate::db::stmt;

/// Rows within the file that share a code with another row: every copy is rejected. Only the
/// codes of rows flagged when staged (`maybe_duplicate`: seen before, or a false alarm) can
/// repeat; NULL (staged before flags existed) counts as flagged.
pub const DUPLICATE_CODES: &str = "
    UPDATE upload_row SET error_code = $2, error_message = $3
    WHERE job_id = $1 AND error_code IS NULL AND code IN (
      SELECT code FROM upload_row WHERE job_id = $1 AND code IN (
        SELECT code FROM upload_row
        WHERE job_id = $1 AND code IS NOT NULL AND maybe_duplicate IS NOT FALSE)
      GROUP BY code HAVING COUNT(*) > 1)";

/// Codes already in the org (from any series or earlier upload).
/// A revoked coupon (`$5`) still holds its code; the message (`$6`) says so.
pub const EXISTING_CODES: &str = "
    UPDATE upload_row SET error_code = $3, error_message = CASE WHEN EXISTS (
        SELECT 1 FROM coupon c WHERE c.org_id = $2 AND c.code = upload_row.code AND c.status = $5)
      THEN $6 ELSE $4 END
    WHERE job_id = $1 AND error_code IS NULL AND EXISTS (
      SELECT 1 FROM coupon c WHERE c.org_id = $2 AND c.code = upload_row.code)";

/// Customers who already hold a coupon of the series (one coupon per customer).
pub const CUSTOMERS_WITH_COUPON: &str = "
    UPDATE upload_row SET error_code = $4, error_message = $5
    WHERE job_id = $1 AND error_code IS NULL AND customer IS NOT NULL AND EXISTS (
      SELECT 1 FROM coupon c WHERE c.coupon_series_id = $2 AND c.customer_identifier_type = $3
        AND c.customer_identifier = upload_row.customer AND c.status = $6)";

/// A customer's later rows in the file, after their first still-valid row.
pub const REPEATED_CUSTOMERS: &str = "
    UPDATE upload_row SET error_code = $2, error_message = $3
    WHERE job_id = $1 AND row_number IN (
      SELECT row_number FROM (
        SELECT row_number, ROW_NUMBER() OVER (PARTITION BY customer ORDER BY row_number) AS nth
        FROM upload_row WHERE job_id = $1 AND error_code IS NULL AND customer IS NOT NULL) t
      WHERE nth > 1)";

/// Valid rows past what `maxCreate` still allows ($2), in file order.
pub const OVER_MAX_CREATE: &str = "
    UPDATE upload_row SET error_code = $3, error_message = $4
    WHERE job_id = $1 AND row_number IN (
      SELECT row_number FROM (
        SELECT row_number, ROW_NUMBER() OVER (ORDER BY row_number) AS nth
        FROM upload_row WHERE job_id = $1 AND error_code IS NULL) t
      WHERE nth > $2)";

/// The series' room, read under its row lock (this no-op update takes it; it is held until the
/// batch commits), so a `maxCreate` lowered after judging applies to what is not committed yet.
pub const LOCK_SERIES: &str = "
    UPDATE coupon_series SET max_create = max_create WHERE id = $1
    RETURNING max_create, num_uploaded_total";

/// Valid rows of the batch (`$2`..`$3`) past the room the series has left (`$4`), in order.
pub const OVER_ROOM_IN_BATCH: &str = "
    UPDATE upload_row SET error_code = $5, error_message = $6
    WHERE job_id = $1 AND row_number IN (
      SELECT row_number FROM (
        SELECT row_number, ROW_NUMBER() OVER (ORDER BY row_number) AS nth
        FROM upload_row WHERE job_id = $1 AND row_number BETWEEN $2 AND $3 AND error_code IS NULL) t
      WHERE nth > $4)";

/// One batch of accepted rows becomes coupons, row `n` as coupon `$8 + n` (the job's reserved
/// id block). The unique index guards against a code that another job of the org committed
/// after this one was judged.
pub const INSERT_COUPONS: &str = "
    INSERT INTO coupon (id, org_id, coupon_series_id, upload_job_id, row_number, code,
                        customer_identifier_type, customer_identifier, created_on)
    SELECT $8 + row_number, $2, $3, $1, row_number, code, $6, customer, $7 FROM upload_row
    WHERE job_id = $1 AND row_number BETWEEN $4 AND $5 AND error_code IS NULL
    ON CONFLICT (org_id, code) DO NOTHING";

/// How many rows of the batch were accepted when judged.
pub const VALID_COUNT: &str = "
    SELECT COUNT(*) AS n FROM upload_row
    WHERE job_id = $1 AND row_number BETWEEN $2 AND $3 AND error_code IS NULL";

/// Accepted rows of the batch (`$2`..`$3`) that the unique index skipped: their code reached
/// the org after judging (another job committed it), so their coupon id (`$4` + row) is unused.
pub const MARK_SKIPPED: &str = "
    UPDATE upload_row SET error_code = $5, error_message = $6
    WHERE job_id = $1 AND row_number BETWEEN $2 AND $3 AND error_code IS NULL
      AND NOT EXISTS (SELECT 1 FROM coupon c WHERE c.id = $4 + upload_row.row_number)";

/// One page of the error file: job `$1`, rows up to `$2`, after row `$3`, `$4` rows.
pub const ERROR_ROWS: &str = "
    SELECT row_number, error_code, error_message, COALESCE(NULLIF(raw_code, ''), code, '') AS raw_code,
      raw_customer FROM upload_row
    WHERE job_id = $1 AND error_code IS NOT NULL AND row_number <= $2 AND row_number > $3
    ORDER BY row_number LIMIT $4";

/// One page of the success file: job `$1`, its coupon id block `$2`, rows up to `$3`, after row
/// `$4`, `$5` rows. The rows still accepted once committed are exactly the job's coupons.
pub const SUCCESS_ROWS: &str = "
    SELECT row_number, $2 + row_number AS coupon_id, code, customer FROM upload_row
    WHERE job_id = $1 AND error_code IS NULL AND row_number <= $3 AND row_number > $4
    ORDER BY row_number LIMIT $5";

pub const DISTINCT_CUSTOMERS: &str = "
    SELECT COUNT(DISTINCT customer) AS n FROM upload_row
    WHERE job_id = $1 AND error_code IS NULL AND customer IS NOT NULL";

/// PostgreSQL writes the error file itself (`COPY … TO STDOUT`, CSV with the header row): job
/// `{job}`, rows up to `{through}`. COPY takes no parameters, so the two integers are formatted
/// in. Empty strings go out as NULLs do, unquoted, as the `csv` crate writes them on SQLite.
pub fn error_file_copy_pg(job: i64, through: i64) -> String {
    format!(
        "COPY (SELECT row_number AS \"rowNumber\", error_code AS \"errorCode\", \
           NULLIF(error_message, '') AS \"errorMessage\", \
           COALESCE(NULLIF(raw_code, ''), code) AS \"couponCode\", \
           NULLIF(raw_customer, '') AS \"customerIdentifier\" \
         FROM upload_row WHERE job_id = {job} AND error_code IS NOT NULL AND row_number <= {through} \
         ORDER BY row_number) TO STDOUT WITH (FORMAT csv, HEADER)"
    )
}

/// The success file, likewise: coupon ids from the job's block `{base}`.
pub fn success_file_copy_pg(job: i64, base: i64, through: i64) -> String {
    format!(
        "COPY (SELECT row_number AS \"rowNumber\", {base}::bigint + row_number AS \"couponId\", \
           code AS \"couponCode\", NULLIF(customer, '') AS \"customerIdentifier\" \
         FROM upload_row WHERE job_id = {job} AND error_code IS NULL AND row_number <= {through} \
         ORDER BY row_number) TO STDOUT WITH (FORMAT csv, HEADER)"
    )
}
