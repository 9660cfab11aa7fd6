use sea_orm::entity::prelude::*;

use crate::domain::{CouponStatus, CustomerIdentifierType};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "coupon")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub org_id: i64,
    pub coupon_series_id: i64,
    pub upload_job_id: Option<i64>,
    /// 1-based data row of the uploaded file (header excluded).
    pub row_number: Option<i64>,
    /// Unique within the org, case preserved.
    pub code: String,
    pub customer_identifier_type: Option<CustomerIdentifierType>,
    pub customer_identifier: Option<String>,
    pub created_on: DateTimeUtc,
    pub status: CouponStatus,
    pub revoked_on: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
