use sea_orm::entity::prelude::*;

use crate::domain::ClientHandlingType;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "coupon_series")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub description: String,
    pub client_handling_type: ClientHandlingType,
    /// -1 = unlimited.
    pub max_create: i64,
    pub allow_multiple_per_customer: bool,
    pub code_max_length: i32,
    pub num_uploaded_total: i64,
    pub created_on: DateTimeUtc,
    pub updated_on: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
