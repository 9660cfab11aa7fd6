//! Per-row upload rules, in the "parse, don't validate" style: a raw cell either
//! becomes a [`CouponCode`] / [`CustomerIdentifier`] that is valid by construction, or a
//! [`RowError`] with a stable [`RowErrorCode`] and a human message.
//!
//! Only the rules that look at one cell live here. The set rules (a code repeated in the file, a
//! code already used in the org, a customer appearing twice, `maxCreate`) are judged by the worker
//! in SQL; their codes are listed here so that every error code has one home.

use std::fmt;

use crate::domain::CustomerIdentifierType;

pub use crate::domain::RowErrorCode;

impl RowErrorCode {
    /// A human sentence for the code, used when nothing more specific is known.
    /// `CODE_ALREADY_EXISTS` keeps Capillary's wording exactly.
    pub fn default_message(self) -> &'static str {
        match self {
            RowErrorCode::UnparseableRow => "the row could not be read",
            RowErrorCode::EmptyCouponCode => "the coupon code is empty",
            RowErrorCode::CouponCodeTooLong => "the coupon code is too long",
            RowErrorCode::InvalidCouponCode => {
                "the coupon code may contain only letters A-Z and a-z, digits 0-9, '-' and '_'"
            }
            RowErrorCode::DuplicateCodeInFile => {
                "the code appears more than once in the file; every copy is rejected"
            }
            RowErrorCode::CodeAlreadyExists => "Coupon code is already used in this org",
            RowErrorCode::MissingCustomerIdentifier => "the customer identifier is empty",
            RowErrorCode::InvalidCustomerIdentifier => {
                "the customer identifier is not valid for the upload's identifier type"
            }
            RowErrorCode::DuplicateCustomer => {
                "the customer already has a coupon of this series and the series allows one per customer"
            }
            RowErrorCode::MaxCreateExceeded => "the series' maxCreate limit would be exceeded",
        }
    }
}

/// A rejected row: the stable code and a message that may be more specific than
/// [`RowErrorCode::default_message`] (e.g. it names the maximum length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub code: RowErrorCode,
    pub message: String,
}

impl RowError {
    /// An error with a specific message.
    pub fn new(code: RowErrorCode, message: impl Into<String>) -> Self {
        RowError {
            code,
            message: message.into(),
        }
    }

    /// An error with the code's [`RowErrorCode::default_message`].
    pub fn from_code(code: RowErrorCode) -> Self {
        RowError::new(code, code.default_message())
    }
}

impl From<RowErrorCode> for RowError {
    fn from(code: RowErrorCode) -> Self {
        RowError::from_code(code)
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for RowError {}

/// Whether `c` may appear in a coupon code: an ASCII letter, an ASCII digit, `-` or `_`.
fn is_code_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// A coupon code that satisfies the per-row rules.
///
/// Rules, in the order they are checked ([`CouponCode::parse`]):
/// 1. Surrounding whitespace (Unicode `White_Space`, as [`str::trim`]) is removed; the trimmed
///    text is the code.
/// 2. An empty code is `EMPTY_COUPON_CODE`.
/// 3. A code of more than `max_len` characters (chars, not bytes) is `COUPON_CODE_TOO_LONG`; the
///    message names the limit.
/// 4. A code with any character other than ASCII letters, ASCII digits, `-` and `_` is
///    `INVALID_COUPON_CODE` (so non-ASCII letters such as `é` are rejected, as are inner spaces).
///
/// Case is preserved: `abc` and `ABC` are different codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponCode(String);

impl CouponCode {
    /// Parses a raw cell; see the type's documentation for the rules.
    pub fn parse(raw: &str, max_len: usize) -> Result<Self, RowError> {
        let code = raw.trim();
        if code.is_empty() {
            return Err(RowError::from_code(RowErrorCode::EmptyCouponCode));
        }
        // Counting stops just past the limit so that a huge cell costs no more than needed.
        let len = code.chars().take(max_len.saturating_add(1)).count();
        if len > max_len {
            return Err(RowError::new(
                RowErrorCode::CouponCodeTooLong,
                format!("the coupon code is longer than the maximum of {max_len} characters"),
            ));
        }
        if let Some(bad) = code.chars().find(|&c| !is_code_char(c)) {
            return Err(RowError::new(
                RowErrorCode::InvalidCouponCode,
                format!(
                    "the coupon code may contain only letters A-Z and a-z, digits 0-9, '-' and '_' \
                     (found '{}')",
                    bad.escape_debug()
                ),
            ));
        }
        Ok(CouponCode(code.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Longest EMAIL identifier, in characters.
const EMAIL_MAX_LEN: usize = 254;
/// Longest local part (before `@`) of an EMAIL identifier.
const EMAIL_LOCAL_MAX_LEN: usize = 64;
/// Longest label of an EMAIL identifier's domain.
const EMAIL_LABEL_MAX_LEN: usize = 63;
/// Longest EXTERNAL_ID identifier, in characters.
const EXTERNAL_ID_MAX_LEN: usize = 100;
/// Fewest and most digits of a MOBILE identifier.
const MOBILE_MIN_DIGITS: usize = 8;
const MOBILE_MAX_DIGITS: usize = 15;

/// A customer identifier that satisfies the rules of its type, in normalized form: two cells
/// naming the same customer normalize to the same value.
///
/// Rules ([`CustomerIdentifier::parse`]):
/// - `NOT_TAGGED` uploads have no customer identifier: parsing is an `INVALID_CUSTOMER_IDENTIFIER`
///   error (callers never parse one for such uploads).
/// - Surrounding whitespace is trimmed first; an empty identifier is
///   `MISSING_CUSTOMER_IDENTIFIER`.
/// - Otherwise, a value not matching its type's format is `INVALID_CUSTOMER_IDENTIFIER`, with a
///   message saying the expected format:
///   - `MOBILE`: an optional leading `+`, then 8 to 15 ASCII digits and nothing else. Normalized to
///     the digits without `+`, so `+919800000001` and `919800000001` are the same customer.
///   - `EMAIL`: at most 254 characters with exactly one `@`. The local part has 1 to 64 printable
///     ASCII characters other than space, `@`, `"`, `,`, `<`, `>`, `(`, `)`, `;`, `:`, `\`, `[`
///     and `]`, neither starts nor ends with `.` and has no `..`. The domain has at least two
///     labels separated by `.`, each 1 to 63 ASCII letters, digits or `-`, neither starting nor
///     ending with `-`. Normalized to lower case.
///   - `EXTERNAL_ID`: 1 to 100 characters (chars, not bytes) and no control characters.
///     Normalized to the trimmed value as is (case preserved).
///   - `USER_ID`: ASCII digits only, a positive integer that fits in an `i64` (leading zeros are
///     allowed; `0` is rejected). Normalized to the canonical decimal without leading zeros.
///
/// Normalizing is idempotent: a normalized identifier parses to itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerIdentifier(String);

impl CustomerIdentifier {
    /// Parses and normalizes a raw cell for the upload's identifier type; see the type's
    /// documentation for the rules.
    pub fn parse(kind: CustomerIdentifierType, raw: &str) -> Result<Self, RowError> {
        if kind == CustomerIdentifierType::NotTagged {
            return Err(RowError::new(
                RowErrorCode::InvalidCustomerIdentifier,
                "untagged (NOT_TAGGED) uploads have no customer identifier",
            ));
        }
        let value = raw.trim();
        if value.is_empty() {
            return Err(RowError::new(
                RowErrorCode::MissingCustomerIdentifier,
                format!("the customer identifier ({}) is empty", kind.as_str()),
            ));
        }
        let normalized = match kind {
            CustomerIdentifierType::NotTagged => None,
            CustomerIdentifierType::Mobile => normalize_mobile(value),
            CustomerIdentifierType::Email => normalize_email(value),
            CustomerIdentifierType::ExternalId => normalize_external_id(value),
            CustomerIdentifierType::UserId => normalize_user_id(value),
        };
        normalized.map(CustomerIdentifier).ok_or_else(|| {
            RowError::new(
                RowErrorCode::InvalidCustomerIdentifier,
                expected_format(kind).to_owned(),
            )
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The message of an `INVALID_CUSTOMER_IDENTIFIER` error: what the type expects.
fn expected_format(kind: CustomerIdentifierType) -> &'static str {
    match kind {
        CustomerIdentifierType::NotTagged => {
            "untagged (NOT_TAGGED) uploads have no customer identifier"
        }
        CustomerIdentifierType::Mobile => {
            "a MOBILE identifier must be 8 to 15 digits, optionally with a leading '+'"
        }
        CustomerIdentifierType::Email => {
            "an EMAIL identifier must be an email address such as name@example.com \
             (at most 254 characters)"
        }
        CustomerIdentifierType::ExternalId => {
            "an EXTERNAL_ID identifier must be 1 to 100 characters without control characters"
        }
        CustomerIdentifierType::UserId => {
            "a USER_ID identifier must be a positive whole number (digits only, at most \
             9223372036854775807)"
        }
    }
}

/// `\+?[0-9]{8,15}` → the digits.
fn normalize_mobile(value: &str) -> Option<String> {
    let digits = value.strip_prefix('+').unwrap_or(value);
    let ok = (MOBILE_MIN_DIGITS..=MOBILE_MAX_DIGITS).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| digits.to_owned())
}

/// A character allowed in an email's local part (besides the rules on `.`).
fn is_email_local_char(c: char) -> bool {
    c.is_ascii_graphic()
        && !matches!(
            c,
            '@' | '"' | ',' | '<' | '>' | '(' | ')' | ';' | ':' | '\\' | '[' | ']'
        )
}

/// One label of an email's domain.
fn is_domain_label(label: &str) -> bool {
    (1..=EMAIL_LABEL_MAX_LEN).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// The EMAIL rules → the address in lower case.
fn normalize_email(value: &str) -> Option<String> {
    if value.chars().take(EMAIL_MAX_LEN + 1).count() > EMAIL_MAX_LEN {
        return None;
    }
    let (local, domain) = value.split_once('@')?;
    if domain.contains('@') {
        return None;
    }
    let local_ok = (1..=EMAIL_LOCAL_MAX_LEN).contains(&local.chars().count())
        && local.chars().all(is_email_local_char)
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let domain_ok = domain.split('.').count() >= 2 && domain.split('.').all(is_domain_label);
    (local_ok && domain_ok).then(|| value.to_ascii_lowercase())
}

/// 1 to 100 chars without control characters → as is.
fn normalize_external_id(value: &str) -> Option<String> {
    let len = value.chars().take(EXTERNAL_ID_MAX_LEN + 1).count();
    let ok = (1..=EXTERNAL_ID_MAX_LEN).contains(&len) && !value.chars().any(char::is_control);
    ok.then(|| value.to_owned())
}

/// Digits only, a positive `i64` → canonical decimal.
fn normalize_user_id(value: &str) -> Option<String> {
    // Checked first: `i64::from_str` would also accept a leading sign.
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = value.parse().ok()?;
    (n > 0).then(|| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use CustomerIdentifierType as Kind;

    fn code_err(raw: &str, max_len: usize) -> RowErrorCode {
        match CouponCode::parse(raw, max_len) {
            Ok(code) => panic!("{raw:?} was accepted as {code:?}"),
            Err(err) => err.code,
        }
    }

    fn ident(kind: Kind, raw: &str) -> Result<String, RowErrorCode> {
        CustomerIdentifier::parse(kind, raw)
            .map(CustomerIdentifier::into_inner)
            .map_err(|e| e.code)
    }

    // ---- RowErrorCode ----

    #[test]
    fn error_codes_round_trip_and_are_distinct() {
        assert_eq!(RowErrorCode::ALL.len(), 10);
        for &code in RowErrorCode::ALL {
            assert_eq!(RowErrorCode::parse(code.as_str()), Some(code));
            assert_eq!(code.to_string(), code.as_str());
            assert!(!code.default_message().is_empty());
        }
        let names: std::collections::HashSet<_> =
            RowErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), RowErrorCode::ALL.len());
        assert_eq!(RowErrorCode::parse("empty_coupon_code"), None);
        assert_eq!(RowErrorCode::parse(""), None);
    }

    #[test]
    fn error_code_names_and_fixed_messages() {
        use RowErrorCode::*;
        let expected = [
            (UnparseableRow, "UNPARSEABLE_ROW"),
            (EmptyCouponCode, "EMPTY_COUPON_CODE"),
            (CouponCodeTooLong, "COUPON_CODE_TOO_LONG"),
            (InvalidCouponCode, "INVALID_COUPON_CODE"),
            (DuplicateCodeInFile, "DUPLICATE_CODE_IN_FILE"),
            (CodeAlreadyExists, "CODE_ALREADY_EXISTS"),
            (MissingCustomerIdentifier, "MISSING_CUSTOMER_IDENTIFIER"),
            (InvalidCustomerIdentifier, "INVALID_CUSTOMER_IDENTIFIER"),
            (DuplicateCustomer, "DUPLICATE_CUSTOMER"),
            (MaxCreateExceeded, "MAX_CREATE_EXCEEDED"),
        ];
        for (code, name) in expected {
            assert_eq!(code.as_str(), name);
        }
        assert_eq!(
            CodeAlreadyExists.default_message(),
            "Coupon code is already used in this org"
        );
        assert_eq!(
            DuplicateCodeInFile.default_message(),
            "the code appears more than once in the file; every copy is rejected"
        );
        assert_eq!(
            DuplicateCustomer.default_message(),
            "the customer already has a coupon of this series and the series allows one per customer"
        );
        assert_eq!(
            MaxCreateExceeded.default_message(),
            "the series' maxCreate limit would be exceeded"
        );
        let err = RowError::from(CodeAlreadyExists);
        assert_eq!(err.message, "Coupon code is already used in this org");
        assert_eq!(
            err.to_string(),
            "CODE_ALREADY_EXISTS: Coupon code is already used in this org"
        );
    }

    // ---- CouponCode ----

    #[test]
    fn code_accepts_allowed_alphabet_and_preserves_case() {
        let code = CouponCode::parse("Ab-_09zZ", 20).unwrap();
        assert_eq!(code.as_str(), "Ab-_09zZ");
        assert_eq!(code.into_inner(), "Ab-_09zZ");
        assert_ne!(
            CouponCode::parse("abc", 5).unwrap(),
            CouponCode::parse("ABC", 5).unwrap()
        );
    }

    #[test]
    fn code_is_trimmed() {
        assert_eq!(
            CouponCode::parse("  SAVE10\t", 10).unwrap().as_str(),
            "SAVE10"
        );
        assert_eq!(CouponCode::parse("\r\nX\n", 1).unwrap().as_str(), "X");
        // Unicode whitespace counts as surrounding whitespace too.
        assert_eq!(
            CouponCode::parse("\u{a0}X\u{3000}", 1).unwrap().as_str(),
            "X"
        );
    }

    #[test]
    fn code_empty() {
        assert_eq!(code_err("", 10), RowErrorCode::EmptyCouponCode);
        assert_eq!(code_err("   ", 10), RowErrorCode::EmptyCouponCode);
        assert_eq!(code_err("\t\r\n", 10), RowErrorCode::EmptyCouponCode);
    }

    #[test]
    fn code_length_boundary() {
        assert_eq!(CouponCode::parse("ABCDE", 5).unwrap().as_str(), "ABCDE");
        assert_eq!(CouponCode::parse(" ABCDE ", 5).unwrap().as_str(), "ABCDE");
        let err = CouponCode::parse("ABCDEF", 5).unwrap_err();
        assert_eq!(err.code, RowErrorCode::CouponCodeTooLong);
        assert!(err.message.contains('5'), "{}", err.message);
        assert_eq!(code_err("A", 0), RowErrorCode::CouponCodeTooLong);
    }

    #[test]
    fn code_length_checked_before_characters() {
        assert_eq!(code_err("a b c d", 3), RowErrorCode::CouponCodeTooLong);
        let long = "x".repeat(1 << 20);
        assert_eq!(code_err(&long, 50), RowErrorCode::CouponCodeTooLong);
    }

    #[test]
    fn code_rejects_other_characters() {
        for raw in [
            "A B",
            "A.B",
            "A/B",
            "A+B",
            "A@B",
            "A\"B",
            "A,B",
            "A\tB",
            "A\u{0}B",
            "café",
            "ÄBC",
            "코드",
            "ＡＢＣ",
            "١٢٣",
            "A\u{200b}B",
        ] {
            assert_eq!(
                code_err(raw, 50),
                RowErrorCode::InvalidCouponCode,
                "{raw:?}"
            );
        }
        let err = CouponCode::parse("café", 50).unwrap_err();
        assert!(err.message.contains('é'), "{}", err.message);
    }

    #[test]
    fn code_length_counts_chars_not_bytes() {
        // Three chars, six bytes: too long is judged on chars, then the chars are rejected.
        assert_eq!(code_err("ééé", 3), RowErrorCode::InvalidCouponCode);
        assert_eq!(code_err("éééé", 3), RowErrorCode::CouponCodeTooLong);
    }

    // ---- CustomerIdentifier ----

    #[test]
    fn not_tagged_has_no_identifier() {
        let err = CustomerIdentifier::parse(Kind::NotTagged, "9800000001").unwrap_err();
        assert_eq!(err.code, RowErrorCode::InvalidCustomerIdentifier);
        assert!(err.message.contains("NOT_TAGGED"), "{}", err.message);
    }

    #[test]
    fn empty_identifier_is_missing_for_every_kind() {
        for &kind in Kind::ALL {
            if kind == Kind::NotTagged {
                continue;
            }
            for raw in ["", "  ", "\t\r\n"] {
                assert_eq!(
                    ident(kind, raw),
                    Err(RowErrorCode::MissingCustomerIdentifier),
                    "{kind:?} {raw:?}"
                );
            }
        }
    }

    #[test]
    fn mobile() {
        assert_eq!(
            ident(Kind::Mobile, "+919800000001").unwrap(),
            "919800000001"
        );
        assert_eq!(ident(Kind::Mobile, "919800000001").unwrap(), "919800000001");
        assert_eq!(
            ident(Kind::Mobile, " 919800000001 ").unwrap(),
            "919800000001"
        );
        // Boundaries: 8 and 15 digits, with or without '+'.
        assert_eq!(ident(Kind::Mobile, "12345678").unwrap(), "12345678");
        assert_eq!(ident(Kind::Mobile, "+12345678").unwrap(), "12345678");
        assert_eq!(
            ident(Kind::Mobile, "123456789012345").unwrap(),
            "123456789012345"
        );
        assert_eq!(
            ident(Kind::Mobile, "+123456789012345").unwrap(),
            "123456789012345"
        );
        for raw in [
            "1234567",
            "+1234567",
            "1234567890123456",
            "+1234567890123456",
            "++12345678",
            "+",
            "12345678+",
            "1234 5678",
            "1234-5678",
            "(123)45678",
            "١٢٣٤٥٦٧٨",
            "１２３４５６７８",
            "abcdefgh",
        ] {
            assert_eq!(
                ident(Kind::Mobile, raw),
                Err(RowErrorCode::InvalidCustomerIdentifier),
                "{raw:?}"
            );
        }
        let err = CustomerIdentifier::parse(Kind::Mobile, "12").unwrap_err();
        assert!(err.message.contains("8 to 15 digits"), "{}", err.message);
    }

    #[test]
    fn email_valid() {
        assert_eq!(
            ident(Kind::Email, " Jane.Doe+tag@Example.COM ").unwrap(),
            "jane.doe+tag@example.com"
        );
        for raw in [
            "a@b.co",
            "x@sub.domain-1.example",
            "o'brien!#$%&*=?^_`{|}~/-@ex.org",
            "1@2.3",
        ] {
            assert!(ident(Kind::Email, raw).is_ok(), "{raw:?}");
        }
        // Boundaries: 64-char local part, 63-char label, 254 chars in all.
        let local64 = "l".repeat(64);
        assert!(ident(Kind::Email, &format!("{local64}@ex.com")).is_ok());
        let label63 = "d".repeat(63);
        assert!(ident(Kind::Email, &format!("a@{label63}.com")).is_ok());
        let long = format!(
            "{local64}@{}.{}.{}.com",
            "a".repeat(61),
            "b".repeat(61),
            "c".repeat(61)
        );
        assert_eq!(long.len(), 254);
        assert!(ident(Kind::Email, &long).is_ok());
    }

    #[test]
    fn email_invalid() {
        let local65 = "l".repeat(65);
        let label64 = "d".repeat(64);
        let local64 = "l".repeat(64);
        let too_long = format!(
            "{local64}@{}.{}.{}.com",
            "a".repeat(61),
            "b".repeat(61),
            "c".repeat(62)
        );
        assert_eq!(too_long.len(), 255);
        let bad = [
            "plainaddress".to_owned(),
            "@ex.com".to_owned(),
            "a@".to_owned(),
            "a@b@c.com".to_owned(),
            "a@localhost".to_owned(),
            "a@.com".to_owned(),
            "a@ex..com".to_owned(),
            "a@ex.com.".to_owned(),
            "a@-ex.com".to_owned(),
            "a@ex-.com".to_owned(),
            "a@ex_1.com".to_owned(),
            "a b@ex.com".to_owned(),
            ".a@ex.com".to_owned(),
            "a.@ex.com".to_owned(),
            "a..b@ex.com".to_owned(),
            "\"a\"@ex.com".to_owned(),
            "a,b@ex.com".to_owned(),
            "a<b@ex.com".to_owned(),
            "a>b@ex.com".to_owned(),
            "a(b@ex.com".to_owned(),
            "a)b@ex.com".to_owned(),
            "a;b@ex.com".to_owned(),
            "a:b@ex.com".to_owned(),
            "a\\b@ex.com".to_owned(),
            "a[b@ex.com".to_owned(),
            "a]b@ex.com".to_owned(),
            "jörg@ex.com".to_owned(),
            "a@exämple.com".to_owned(),
            "a\u{7f}@ex.com".to_owned(),
            format!("{local65}@ex.com"),
            format!("a@{label64}.com"),
            too_long,
        ];
        for raw in bad {
            assert_eq!(
                ident(Kind::Email, &raw),
                Err(RowErrorCode::InvalidCustomerIdentifier),
                "{raw:?}"
            );
        }
        let err = CustomerIdentifier::parse(Kind::Email, "nope").unwrap_err();
        assert!(err.message.contains("email address"), "{}", err.message);
    }

    #[test]
    fn external_id() {
        assert_eq!(ident(Kind::ExternalId, "  CUST-42 ").unwrap(), "CUST-42");
        assert_eq!(
            ident(Kind::ExternalId, "Ab c/é 코드").unwrap(),
            "Ab c/é 코드"
        );
        let hundred = "é".repeat(100); // 100 chars, 200 bytes
        assert_eq!(ident(Kind::ExternalId, &hundred).unwrap(), hundred);
        assert_eq!(
            ident(Kind::ExternalId, &"x".repeat(101)),
            Err(RowErrorCode::InvalidCustomerIdentifier)
        );
        for raw in ["a\u{0}b", "a\tb", "a\nb", "a\u{7f}b", "a\u{85}b"] {
            assert_eq!(
                ident(Kind::ExternalId, raw),
                Err(RowErrorCode::InvalidCustomerIdentifier),
                "{raw:?}"
            );
        }
        let err = CustomerIdentifier::parse(Kind::ExternalId, "a\u{1}").unwrap_err();
        assert!(err.message.contains("100"), "{}", err.message);
    }

    #[test]
    fn user_id() {
        assert_eq!(ident(Kind::UserId, "42").unwrap(), "42");
        assert_eq!(ident(Kind::UserId, " 00042 ").unwrap(), "42");
        assert_eq!(ident(Kind::UserId, "1").unwrap(), "1");
        assert_eq!(
            ident(Kind::UserId, "9223372036854775807").unwrap(),
            "9223372036854775807"
        );
        assert_eq!(
            ident(Kind::UserId, "0009223372036854775807").unwrap(),
            "9223372036854775807"
        );
        for raw in [
            "0",
            "000",
            "-1",
            "+1",
            "1.0",
            "1e3",
            "12 34",
            "9223372036854775808",
            "99999999999999999999999",
            "abc",
            "١",
        ] {
            assert_eq!(
                ident(Kind::UserId, raw),
                Err(RowErrorCode::InvalidCustomerIdentifier),
                "{raw:?}"
            );
        }
    }

    // ---- properties ----

    fn identifier_kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Mobile),
            Just(Kind::Email),
            Just(Kind::ExternalId),
            Just(Kind::UserId),
        ]
    }

    /// Strings likely to hit each identifier type's interesting cases.
    fn identifier_like() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ +]?[0-9]{0,20}[ ]?",
            "[ ]?[A-Za-z0-9._%+-]{0,10}@[A-Za-z0-9-]{0,8}(\\.[A-Za-z0-9-]{0,8}){0,3}[ ]?",
            "[ \t]?[^\u{0}-\u{1f}]{0,110}",
        ]
    }

    /// A kind with strings mostly valid for it, so that idempotence is exercised on accepted
    /// values of every kind.
    fn kind_with_likely_valid() -> impl Strategy<Value = (Kind, String)> {
        prop_oneof![
            (Just(Kind::Mobile), "[ ]?\\+?[0-9]{8,15}[ ]?".boxed()),
            (
                Just(Kind::Email),
                "[A-Za-z0-9_%+!#-]{1,10}(\\.[A-Za-z0-9_%+-]{1,5})?@[A-Za-z0-9]{1,8}(-[A-Za-z0-9]{1,4})?\\.[A-Za-z]{2,6}".boxed()
            ),
            (Just(Kind::ExternalId), "[ ]?[^\\p{Cc}]{1,100}".boxed()),
            (Just(Kind::UserId), "[ ]?0{0,3}[1-9][0-9]{0,17}".boxed()),
        ]
    }

    proptest! {
        #[test]
        fn prop_likely_valid_identifiers_are_accepted_and_idempotent((kind, raw) in kind_with_likely_valid()) {
            let id = CustomerIdentifier::parse(kind, &raw);
            // Every generated value is valid, except external ids made only of whitespace.
            if kind != Kind::ExternalId || !raw.trim().is_empty() && raw.trim().chars().count() <= 100 {
                prop_assert!(id.is_ok(), "{:?} {:?} rejected: {:?}", kind, raw, id);
            }
            if let Ok(id) = id {
                prop_assert_eq!(CustomerIdentifier::parse(kind, id.as_str()), Ok(id.clone()));
            }
        }

        #[test]
        fn prop_code_parse_never_panics(raw in any::<String>(), max_len in 0usize..40) {
            let _ = CouponCode::parse(&raw, max_len);
        }

        #[test]
        fn prop_accepted_code_is_well_formed(
            raw in prop_oneof![any::<String>(), "[ \t]{0,2}[A-Za-z0-9_é -]{0,30}[ \t]{0,2}"],
            max_len in 1usize..25,
        ) {
            if let Ok(code) = CouponCode::parse(&raw, max_len) {
                let s = code.as_str();
                prop_assert!(!s.is_empty());
                prop_assert!(s.chars().count() <= max_len);
                prop_assert!(s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
                prop_assert_eq!(s, raw.trim());
                prop_assert_eq!(CouponCode::parse(s, max_len), Ok(code.clone()));
            }
        }

        #[test]
        fn prop_allowed_alphabet_is_accepted(
            (max_len, code) in (1usize..64).prop_flat_map(|max_len| {
                (Just(max_len), proptest::string::string_regex(&format!("[A-Za-z0-9_-]{{1,{max_len}}}")).unwrap())
            }),
        ) {
            let parsed = CouponCode::parse(&code, max_len);
            prop_assert_eq!(parsed.map(CouponCode::into_inner), Ok(code));
        }

        #[test]
        fn prop_identifier_parse_never_panics(kind in prop_oneof![Just(Kind::NotTagged), identifier_kind()], raw in identifier_like()) {
            let _ = CustomerIdentifier::parse(kind, &raw);
        }

        #[test]
        fn prop_normalized_identifier_is_idempotent(kind in identifier_kind(), raw in identifier_like()) {
            if let Ok(id) = CustomerIdentifier::parse(kind, &raw) {
                prop_assert_eq!(CustomerIdentifier::parse(kind, id.as_str()), Ok(id.clone()));
            }
        }

        #[test]
        fn prop_mobile_accepts_every_match(raw in "\\+?[0-9]{8,15}") {
            let digits = raw.trim_start_matches('+').to_owned();
            prop_assert_eq!(ident(Kind::Mobile, &raw), Ok(digits));
        }

        #[test]
        fn prop_mobile_accepts_only_matches(raw in prop_oneof!["[+0-9]{0,18}", "[+0-9a٣]{0,18}", any::<String>()]) {
            // Reference for `\+?[0-9]{8,15}`; the alphabets have no whitespace, so trimming
            // is the identity except for `any::<String>()` which is trimmed here too.
            let trimmed = raw.trim();
            let digits = trimmed.strip_prefix('+').unwrap_or(trimmed);
            let matches = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
            prop_assert_eq!(ident(Kind::Mobile, &raw).is_ok(), matches, "{:?}", raw);
        }
    }
}
