use sea_orm::entity::prelude::*;

use crate::domain::RowErrorCode;

/// A staged row of an uploaded file (the table `uploadTableName` names).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "upload_row")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub row_number: i64,
    /// The code column as written, or `""` when that is the valid `code` itself.
    pub raw_code: String,
    pub raw_customer: Option<String>,
    /// The valid code, if it parsed.
    pub code: Option<String>,
    /// The normalized customer identifier, if it parsed.
    pub customer: Option<String>,
    pub error_code: Option<RowErrorCode>,
    pub error_message: Option<String>,
    /// The code may repeat an earlier row's (NULL: staged before this was recorded).
    pub maybe_duplicate: Option<bool>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
