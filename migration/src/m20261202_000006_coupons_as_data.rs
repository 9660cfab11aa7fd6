//! Coupons as data: a coupon has a status (`ACTIVE`, `REVOKED`) and the time it was revoked;
//! a series' coupons are paged by id (`(coupon_series_id, id)`, appended to in id order by every
//! upload, so the cheapest kind of index to keep), revoked ones through a partial index of their
//! own; and a job's row errors stay in `upload_row` when its accepted rows are purged, found
//! through partial indexes that only error rows pay for.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Coupon {
    Table,
    Status,
    RevokedOn,
}

const INDEXES: &[&str] = &[
    "CREATE INDEX idx_coupon_series_id ON coupon (coupon_series_id, id)",
    "CREATE INDEX idx_coupon_series_revoked ON coupon (coupon_series_id, id) WHERE status = 'REVOKED'",
    "CREATE INDEX idx_upload_row_errors ON upload_row (job_id, row_number) WHERE error_code IS NOT NULL",
    "CREATE INDEX idx_upload_row_error_codes ON upload_row (job_id, error_code, row_number) \
     WHERE error_code IS NOT NULL",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Two statements: SQLite adds one column per ALTER TABLE.
        m.alter_table(
            Table::alter()
                .table(Coupon::Table)
                .add_column(string_len(Coupon::Status, 16).default("ACTIVE"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Coupon::Table)
                .add_column(timestamp_with_time_zone_null(Coupon::RevokedOn))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        for sql in INDEXES {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for name in [
            "idx_upload_row_error_codes",
            "idx_upload_row_errors",
            "idx_coupon_series_revoked",
            "idx_coupon_series_id",
        ] {
            db.execute_unprepared(&format!("DROP INDEX {name}")).await?;
        }
        for col in [Coupon::RevokedOn, Coupon::Status] {
            m.alter_table(
                Table::alter()
                    .table(Coupon::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
