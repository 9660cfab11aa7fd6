use sea_orm::entity::prelude::*;

use crate::domain::AudienceGroupStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audience_group_version")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub org_id: i64,
    pub audience_group_id: i64,
    pub version_number: i32,
    pub customer_count: i64,
    pub status: AudienceGroupStatus,
    pub upload_job_id: Option<i64>,
    pub created_on: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
