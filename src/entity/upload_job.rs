use sea_orm::entity::prelude::*;

use crate::domain::{CustomerIdentifierType, JobPhase, UploadJobStatus};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "upload_job")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub org_id: i64,
    pub coupon_series_id: i64,
    pub upload_status: UploadJobStatus,
    pub customer_identifier: CustomerIdentifierType,
    pub customer_identifier_column: Option<i32>,
    pub coupon_code_column: Option<i32>,
    pub has_header: bool,
    pub uploaded_file_name: String,
    /// Storage key of the file as uploaded.
    pub uploaded_file_key: Option<String>,
    pub uploaded_file_size: i64,
    pub error_file_key: Option<String>,
    pub success_file_key: Option<String>,
    pub upload_table_name: String,
    pub actual_row_count: i64,
    pub total_uploaded_count: i64,
    pub error_count: i64,
    pub processed_row_count: i64,
    /// Why the job as a whole could not run (`ERRORED`).
    pub error_reason: Option<String>,
    pub audience_group_id: Option<i64>,
    pub audience_group_version_id: Option<i64>,
    pub cancel_requested: bool,
    pub lease_owner: Option<String>,
    /// Epoch milliseconds until which `lease_owner` holds the job.
    pub lease_expires_ms: Option<i64>,
    /// Where the worker is.
    pub phase: JobPhase,
    /// The last data row whose batch is committed (coupons, row errors and counts).
    pub committed_through: i64,
    /// Accepted row `n` of the file is coupon `coupon_id_base + n` (reserved when judged).
    pub coupon_id_base: Option<i64>,
    pub attempts: i32,
    pub created_on: DateTimeUtc,
    pub updated_on: DateTimeUtc,
    pub finished_on: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// What a new job is made of; everything else starts at its beginning.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub org_id: i64,
    pub coupon_series_id: i64,
    pub customer_identifier: CustomerIdentifierType,
    pub customer_identifier_column: Option<i32>,
    pub coupon_code_column: Option<i32>,
    pub has_header: bool,
    pub uploaded_file_name: String,
    pub uploaded_file_key: Option<String>,
    pub uploaded_file_size: i64,
    pub upload_table_name: String,
    pub created_on: DateTimeUtc,
}

impl ActiveModel {
    /// A job as it is created: `STARTED`, in phase `STAGE`, nothing counted, no lease. The one
    /// place a whole job row is spelled out (the service, the tests' fixtures and the
    /// benchmarks' seeds start from it).
    pub fn started(new: NewJob) -> Self {
        use sea_orm::ActiveValue::Set;
        Self {
            org_id: Set(new.org_id),
            coupon_series_id: Set(new.coupon_series_id),
            upload_status: Set(UploadJobStatus::Started),
            customer_identifier: Set(new.customer_identifier),
            customer_identifier_column: Set(new.customer_identifier_column),
            coupon_code_column: Set(new.coupon_code_column),
            has_header: Set(new.has_header),
            uploaded_file_name: Set(new.uploaded_file_name),
            uploaded_file_key: Set(new.uploaded_file_key),
            uploaded_file_size: Set(new.uploaded_file_size),
            error_file_key: Set(None),
            success_file_key: Set(None),
            upload_table_name: Set(new.upload_table_name),
            actual_row_count: Set(0),
            total_uploaded_count: Set(0),
            error_count: Set(0),
            processed_row_count: Set(0),
            error_reason: Set(None),
            audience_group_id: Set(None),
            audience_group_version_id: Set(None),
            cancel_requested: Set(false),
            lease_owner: Set(None),
            lease_expires_ms: Set(None),
            phase: Set(JobPhase::Stage),
            committed_through: Set(0),
            coupon_id_base: Set(None),
            attempts: Set(0),
            created_on: Set(new.created_on),
            updated_on: Set(new.created_on),
            finished_on: Set(None),
            ..Default::default()
        }
    }
}
