//! Staged rows say whether their code may repeat an earlier row's (see the worker's
//! `SeenCodes`), so judging checks only those codes for duplicates.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UploadRow {
    Table,
    MaybeDuplicate,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // NULL for rows staged before: judging treats them as possible repeats (a full check).
        m.alter_table(
            Table::alter()
                .table(UploadRow::Table)
                .add_column(boolean_null(UploadRow::MaybeDuplicate))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(UploadRow::Table)
                .drop_column(UploadRow::MaybeDuplicate)
                .to_owned(),
        )
        .await
    }
}
