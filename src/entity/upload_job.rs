use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "upload_job")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub org_id: i64,
    pub coupon_series_id: i64,
    /// `STARTED`, `PROCESSING`, `FINISHED`, `ERRORED` or `CANCELLED`.
    pub upload_status: String,
    /// `NOT_TAGGED`, `MOBILE`, `EMAIL`, `EXTERNAL_ID` or `USER_ID`.
    pub customer_identifier: String,
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
    /// Where the worker is: `STAGE`, `JUDGE`, `COMMIT`, `FILES` or `DONE`.
    pub phase: String,
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
