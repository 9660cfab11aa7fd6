//! Each job reserves a block of coupon ids when it is judged: its accepted row `n` becomes coupon
//! `coupon_id_base + n`. Inserts then need no sequence call per row, and the success file is read
//! straight from the staged rows instead of joining a million of them back to `coupon`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UploadJob {
    Table,
    CouponIdBase,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // NULL until the job reserves its block (jobs judged before this migration reserve one
        // when they resume, and renumber the coupons they had committed; see the worker).
        m.alter_table(
            Table::alter()
                .table(UploadJob::Table)
                .add_column(big_integer_null(UploadJob::CouponIdBase))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(UploadJob::Table)
                .drop_column(UploadJob::CouponIdBase)
                .to_owned(),
        )
        .await
    }
}
