//! Domain vocabulary shared by the service layer and both transports. The enums keep
//! Capillary's names exactly; each maps to the string stored in the database.

use async_graphql::Enum;
use serde::Serialize;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
        pub enum $name { $(#[graphql(name = $s)] #[serde(rename = $s)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            /// The value stored in the database or sent by a client, by its exact name.
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
