//! One projection of an upload job for every door. The scalar fields of a job are listed once,
//! in [`with_job_fields!`]: each with its GraphQL name, its GraphQL type, whether Capillary's REST
//! envelope carries it, and how its [`Value`] is read from the stored job. From that list come
//! the GraphQL `UploadJob`'s resolvers (`graphql::types`), the compiled status plan's job fields
//! (`graphql::compiled`) and the REST job (`http::rest`), so adding a job field is one entry
//! here (and the schema snapshot). The list is in Capillary's order, which the REST envelope
//! keeps; GraphQL answers in the order of the query.

use chrono::{DateTime, Utc};

use crate::domain::{CustomerIdentifierType, UploadJobStatus};
use crate::entity::upload_job;

/// A job field's value, by kind; each door renders a kind its own way (an id is a string in
/// GraphQL and a number in REST, a time RFC 3339 or epoch milliseconds, a file a signed link).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Id(i64),
    /// REST sends an absent id as `0`.
    OptId(Option<i64>),
    /// A count, stored as 64 bits (GraphQL's `Int` saturates).
    Count(i64),
    OptInt(Option<i32>),
    Bool(bool),
    Str(&'a str),
    OptStr(Option<&'a str>),
    Time(&'a DateTime<Utc>),
    /// A stored file's key; sent as a signed, expiring download link.
    File(Option<&'a str>),
    Status(UploadJobStatus),
    Identifier(CustomerIdentifierType),
}

/// Calls `$callback! { { $extra } <entries> }`, the entries being the job's scalar fields:
/// `Variant method "graphqlName": GraphQlType, rest: bool, |job| value;` with the field's doc.
/// `$extra` is passed through (the GraphQL object adds its object-valued fields with it).
macro_rules! with_job_fields {
    ($callback:ident ! { $($extra:tt)* }) => {
        $callback! {
            { $($extra)* }
            /// Equal to `jobId`.
            Id id "id": async_graphql::ID, rest: false, |j| Value::Id(j.id);
            OrgId org_id "orgId": async_graphql::ID, rest: true, |j| Value::Id(j.org_id);
            CouponSeriesId coupon_series_id "couponSeriesId": async_graphql::ID, rest: true,
                |j| Value::Id(j.coupon_series_id);
            JobId job_id "jobId": async_graphql::ID, rest: true, |j| Value::Id(j.id);
            /// `STARTED` → `PROCESSING` → `FINISHED` or `ERRORED`; `CANCELLED` if cancelled.
            UploadStatus upload_status "uploadStatus": crate::domain::UploadJobStatus, rest: true,
                |j| Value::Status(j.upload_status);
            CreatedOn created_on "createdOn": chrono::DateTime<chrono::Utc>, rest: true,
                |j| Value::Time(&j.created_on);
            UpdatedOn updated_on "updatedOn": chrono::DateTime<chrono::Utc>, rest: true,
                |j| Value::Time(&j.updated_on);
            /// Download link to the CSV of rejected rows; null until there is one.
            ErrorFileUrl error_file_url "errorFileUrl": Option<String>, rest: true,
                |j| Value::File(j.error_file_key.as_deref());
            /// Download link to the CSV of accepted rows; null until there is one.
            SuccessFileUrl success_file_url "successFileUrl": Option<String>, rest: true,
                |j| Value::File(j.success_file_key.as_deref());
            /// Download link to the file exactly as uploaded; null once it has been purged.
            UploadedFileUrl uploaded_file_url "uploadedFileUrl": Option<String>, rest: true,
                |j| Value::File(j.uploaded_file_key.as_deref());
            /// Rows accepted and stored as coupons.
            TotalUploadedCount total_uploaded_count "totalUploadedCount": i32, rest: true,
                |j| Value::Count(j.total_uploaded_count);
            /// Data rows in the file, header excluded.
            ActualRowCount actual_row_count "actualRowCount": i32, rest: true,
                |j| Value::Count(j.actual_row_count);
            /// Rows rejected. When `FINISHED`: `totalUploadedCount + errorCount == actualRowCount`.
            ErrorCount error_count "errorCount": i32, rest: true, |j| Value::Count(j.error_count);
            /// Rows read and judged so far (live progress while `PROCESSING`).
            ProcessedRowCount processed_row_count "processedRowCount": i32, rest: false,
                |j| Value::Count(j.processed_row_count);
            /// The table holding this job's uploaded rows.
            UploadTableName upload_table_name "uploadTableName": String, rest: true,
                |j| Value::Str(&j.upload_table_name);
            /// The client's file name, without path parts.
            UploadedFileName uploaded_file_name "uploadedFileName": String, rest: true,
                |j| Value::Str(&j.uploaded_file_name);
            /// How the file's rows name customers.
            CustomerIdentifier customer_identifier "customerIdentifier":
                crate::domain::CustomerIdentifierType, rest: false,
                |j| Value::Identifier(j.customer_identifier);
            /// 0-based column of the customer identifier (tagged uploads).
            CustomerIdentifierColumn customer_identifier_column "customerIdentifierColumn":
                Option<i32>, rest: false, |j| Value::OptInt(j.customer_identifier_column);
            /// 0-based column of the coupon code.
            CouponCodeColumn coupon_code_column "couponCodeColumn": Option<i32>, rest: false,
                |j| Value::OptInt(j.coupon_code_column);
            HasHeader has_header "hasHeader": bool, rest: false, |j| Value::Bool(j.has_header);
            /// A cancel was asked for; the job stops at its next batch boundary.
            CancelRequested cancel_requested "cancelRequested": bool, rest: false,
                |j| Value::Bool(j.cancel_requested);
            /// Why the job as a whole could not run (`ERRORED` only).
            ErrorReason error_reason "errorReason": Option<String>, rest: false,
                |j| Value::OptStr(j.error_reason.as_deref());
            /// The audience group the tagged customers joined; null for `NOT_TAGGED` uploads.
            AudienceGroupId audience_group_id "audienceGroupId": Option<async_graphql::ID>,
                rest: true, |j| Value::OptId(j.audience_group_id);
            /// The audience group version this upload formed; null for `NOT_TAGGED` uploads.
            AudienceGroupVersionId audience_group_version_id "audienceGroupVersionId":
                Option<async_graphql::ID>, rest: true, |j| Value::OptId(j.audience_group_version_id);
        }
    };
}
pub(crate) use with_job_fields;

/// The field list as data: [`JobField`], with its name and its value from a job.
macro_rules! job_field_enum {
    (
        { }
        $( $(#[doc = $doc:tt])* $variant:ident $method:ident $gql:tt : $ty:ty, rest: $rest:tt,
           |$j:ident| $get:expr; )*
    ) => {
        /// A scalar field of an upload job.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum JobField { $($variant),* }

        impl JobField {
            /// Every field, in Capillary's order.
            pub const ALL: &'static [JobField] = &[$(JobField::$variant),*];

            /// The field's GraphQL name (also its REST name).
            pub fn name(self) -> &'static str {
                match self { $(JobField::$variant => $gql),* }
            }

            /// The field a GraphQL selection names.
            pub fn by_name(name: &str) -> Option<Self> {
                match name { $($gql => Some(JobField::$variant),)* _ => None }
            }

            /// Capillary's REST job carries it.
            pub fn in_rest(self) -> bool {
                match self { $(JobField::$variant => $rest),* }
            }

            /// The field's value in `job`.
            pub fn get(self, job: &upload_job::Model) -> Value<'_> {
                match self {
                    $(JobField::$variant => { let $j = job; $get })*
                }
            }
        }
    };
}

with_job_fields!(job_field_enum! {});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found_again() {
        for f in JobField::ALL {
            assert_eq!(JobField::by_name(f.name()), Some(*f));
        }
        assert_eq!(JobField::by_name("audienceGroup"), None);
    }

    #[test]
    fn rest_fields_are_capillarys_in_its_order() {
        let rest: Vec<&str> = JobField::ALL
            .iter()
            .filter(|f| f.in_rest())
            .map(|f| f.name())
            .collect();
        assert_eq!(
            rest,
            [
                "orgId",
                "couponSeriesId",
                "jobId",
                "uploadStatus",
                "createdOn",
                "updatedOn",
                "errorFileUrl",
                "successFileUrl",
                "uploadedFileUrl",
                "totalUploadedCount",
                "actualRowCount",
                "errorCount",
                "uploadTableName",
                "uploadedFileName",
                "audienceGroupId",
                "audienceGroupVersionId",
            ]
        );
    }
}
