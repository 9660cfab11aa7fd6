//! Domain vocabulary shared by the service layer and both transports. The enums keep
//! Capillary's names exactly; each maps to the string stored in the database.

use async_graphql::Enum;
use serde::{Deserialize, Serialize};

/// An enum with one stable name per variant: the name is what GraphQL, REST and the error files
/// show, and what the database stores (through sea-orm's `DeriveActiveEnum`, so an entity field
/// holds the enum and a query binds it; no name is re-parsed at each use or spliced into SQL).
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Enum, Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize,
            sea_orm::EnumIter, sea_orm::DeriveActiveEnum,
        )]
        #[sea_orm(rs_type = "String", db_type = "Text")]
        pub enum $name {
            $($(#[$vmeta])* #[graphql(name = $s)] #[serde(rename = $s)] #[sea_orm(string_value = $s)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            /// The value sent by a client or written in a file, by its exact name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// Where an upload job stands. `FINISHED` also when rows were rejected (they are counted);
    /// `ERRORED` only when the job as a whole could not run.
    UploadJobStatus {
        Started => "STARTED",
        Processing => "PROCESSING",
        Finished => "FINISHED",
        Errored => "ERRORED",
        Cancelled => "CANCELLED",
    }
}

string_enum! {
    /// How the rows of an upload name their customer, if at all.
    CustomerIdentifierType {
        NotTagged => "NOT_TAGGED",
        Mobile => "MOBILE",
        Email => "EMAIL",
        ExternalId => "EXTERNAL_ID",
        UserId => "USER_ID",
    }
}

string_enum! {
    /// Whether a coupon can be redeemed. A revoked coupon stays in the inventory and still
    /// blocks the same code from being uploaded again in the org.
    CouponStatus {
        Active => "ACTIVE",
        Revoked => "REVOKED",
    }
}

string_enum! {
    /// How a coupon series hands out codes; uploaded codes are `DISC_CODE_PIN`.
    ClientHandlingType {
        DiscCodePin => "DISC_CODE_PIN",
        DiscCode => "DISC_CODE",
    }
}

string_enum! {
    /// Where an audience group came from. Groups made by this service are `UPLOAD` groups.
    AudienceGroupType {
        Upload => "UPLOAD",
    }
}

string_enum! {
    /// Lifecycle of an audience group or one of its versions.
    AudienceGroupStatus {
        Active => "ACTIVE",
        Archived => "ARCHIVED",
    }
}

string_enum! {
    /// What an API key may do: `READ` queries only, `READ_WRITE` also uploads and changes.
    Permission {
        Read => "READ",
        ReadWrite => "READ_WRITE",
    }
}

string_enum! {
    /// Where the worker is in a job. Each phase ends in one transaction that also moves the job
    /// to the next, so a job restarted after a crash resumes at the phase it was in.
    JobPhase {
        /// Reading the file into `upload_row`.
        Stage => "STAGE",
        /// Deciding, in SQL, which staged rows are rejected by the rules that span rows.
        Judge => "JUDGE",
        /// Inserting accepted rows as coupons, in checkpointed batches.
        Commit => "COMMIT",
        /// Writing the error and success files.
        Files => "FILES",
        /// Nothing left to do: the job has its final status.
        Done => "DONE",
    }
}

string_enum! {
    /// Why a row was rejected. The name is stable: it is stored in the database and written to
    /// the error file as `errorCode`. The rules that look at one cell are in `ingest::rules`; the
    /// set rules (a code repeated in the file, a code already used, a customer twice,
    /// `maxCreate`) are judged by the worker in SQL.
    RowErrorCode {
        /// The row could not be read, e.g. it has fewer columns than the upload needs.
        UnparseableRow => "UNPARSEABLE_ROW",
        /// The coupon code is empty once surrounding whitespace is trimmed.
        EmptyCouponCode => "EMPTY_COUPON_CODE",
        /// The coupon code has more characters than the series allows.
        CouponCodeTooLong => "COUPON_CODE_TOO_LONG",
        /// The coupon code has a character other than ASCII letters, ASCII digits, `-` and `_`.
        InvalidCouponCode => "INVALID_COUPON_CODE",
        /// The code appears more than once in the file; every copy is rejected.
        DuplicateCodeInFile => "DUPLICATE_CODE_IN_FILE",
        /// The code is already used in the org.
        CodeAlreadyExists => "CODE_ALREADY_EXISTS",
        /// A tagged upload's row has an empty customer identifier.
        MissingCustomerIdentifier => "MISSING_CUSTOMER_IDENTIFIER",
        /// The customer identifier is malformed for the upload's identifier type.
        InvalidCustomerIdentifier => "INVALID_CUSTOMER_IDENTIFIER",
        /// The customer already has a coupon of this series and the series allows one per customer.
        DuplicateCustomer => "DUPLICATE_CUSTOMER",
        /// Storing the row would exceed the series' `maxCreate`.
        MaxCreateExceeded => "MAX_CREATE_EXCEEDED",
    }
}

impl UploadJobStatus {
    /// The statuses of a job the worker has still to run or finish.
    pub const UNFINISHED: [UploadJobStatus; 2] =
        [UploadJobStatus::Started, UploadJobStatus::Processing];

    pub fn is_finished(self) -> bool {
        !Self::UNFINISHED.contains(&self)
    }
}

/// Who is calling: decided by the API key alone, never by input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgContext {
    pub org_id: i64,
    pub permission: Permission,
    pub api_key_id: i64,
}

impl OrgContext {
    pub fn require_write(&self) -> crate::error::AppResult<()> {
        match self.permission {
            Permission::ReadWrite => Ok(()),
            Permission::Read => Err(crate::error::AppError::Forbidden(
                "this API key is read-only; a READ_WRITE key is required".into(),
            )),
        }
    }
}

/// The current time at millisecond precision: what every database and both transports can
/// represent exactly (REST sends epoch milliseconds), so a timestamp reads back as written.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let t = chrono::Utc::now();
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// Lowercase hexadecimal, two digits per byte (key hashes, link signatures).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// The bytes of lowercase or uppercase hexadecimal, two digits per byte; `None` for anything
/// else (odd length, a non-hex character, any non-ASCII byte).
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}
