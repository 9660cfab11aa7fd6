use sea_orm::entity::prelude::*;

use crate::domain::{AudienceGroupStatus, AudienceGroupType};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audience_group")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub org_id: i64,
    #[sea_orm(unique)]
    pub coupon_series_id: i64,
    pub name: String,
    pub group_type: AudienceGroupType,
    pub status: AudienceGroupStatus,
    /// Distinct customers of the latest version.
    pub customer_count: i64,
    pub latest_version_number: i32,
    pub created_on: DateTimeUtc,
    pub updated_on: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
