//! What ingesting uploads needs: the staging table, the worker's checkpoint columns, and lean
//! coupon indexes (every index on `coupon` is paid for by each of a million inserted rows).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UploadJob {
    Table,
    UploadStatus,
    LeaseExpiresAt,
    LeaseExpiresMs,
    Phase,
    CommittedThrough,
}

/// One row of an uploaded file, staged for judging. Shared by all jobs,
/// keyed by job; rows are kept after the job ends, so `uploadTableName` names real rows.
#[derive(DeriveIden)]
enum UploadRow {
    Table,
    JobId,
    RowNumber,
    RawCode,
    RawCustomer,
    Code,
    Customer,
    ErrorCode,
    ErrorMessage,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction, hence one connection: on SQLite, DDL spread over pooled connections
    /// can meet a connection that still sees the schema as it was (seen: "index already
    /// exists" right after dropping it), and a failed migration is never left half applied.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(UploadRow::Table)
                .col(big_integer(UploadRow::JobId))
                .col(big_integer(UploadRow::RowNumber))
                .col(text(UploadRow::RawCode))
                .col(text_null(UploadRow::RawCustomer))
                .col(text_null(UploadRow::Code))
                .col(text_null(UploadRow::Customer))
                .col(string_len_null(UploadRow::ErrorCode, 32))
                .col(text_null(UploadRow::ErrorMessage))
                .primary_key(
                    Index::create()
                        .col(UploadRow::JobId)
                        .col(UploadRow::RowNumber),
                )
                .to_owned(),
        )
        .await?;

        // Leases compare as integers (epoch milliseconds): portable, and exact on SQLite,
        // where timestamps are text.
        m.drop_index(
            Index::drop()
                .name("idx_upload_job_claim")
                .table(UploadJob::Table)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(UploadJob::Table)
                .drop_column(UploadJob::LeaseExpiresAt)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(UploadJob::Table)
                .add_column(big_integer_null(UploadJob::LeaseExpiresMs))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(UploadJob::Table)
                .add_column(string_len(UploadJob::Phase, 16).default("STAGE"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(UploadJob::Table)
                .add_column(big_integer(UploadJob::CommittedThrough).default(0))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_upload_job_claim")
                .table(UploadJob::Table)
                .col(UploadJob::UploadStatus)
                .col(UploadJob::LeaseExpiresMs)
                .to_owned(),
        )
        .await?;

        // Coupons are found by (org, code) — the unique index — and, for series that allow one
        // coupon per customer, by (series, customer): a partial index, so untagged coupons
        // never pay for it.
        m.drop_index(
            Index::drop()
                .name("idx_coupon_job_row")
                .table(Alias::new("coupon"))
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("idx_coupon_series")
                .table(Alias::new("coupon"))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX idx_coupon_series_customer ON coupon (coupon_series_id, customer_identifier) \
                 WHERE customer_identifier IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX idx_coupon_series_customer")
            .await?;
        m.create_index(
            Index::create()
                .name("idx_coupon_series")
                .table(Alias::new("coupon"))
                .col(Alias::new("coupon_series_id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_coupon_job_row")
                .table(Alias::new("coupon"))
                .col(Alias::new("upload_job_id"))
                .col(Alias::new("row_number"))
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("idx_upload_job_claim")
                .table(UploadJob::Table)
                .to_owned(),
        )
        .await?;
        for col in [
            UploadJob::CommittedThrough,
            UploadJob::Phase,
            UploadJob::LeaseExpiresMs,
        ] {
            m.alter_table(
                Table::alter()
                    .table(UploadJob::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        m.alter_table(
            Table::alter()
                .table(UploadJob::Table)
                .add_column(timestamp_with_time_zone_null(UploadJob::LeaseExpiresAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_upload_job_claim")
                .table(UploadJob::Table)
                .col(UploadJob::UploadStatus)
                .col(UploadJob::LeaseExpiresAt)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(UploadRow::Table).to_owned())
            .await?;
        Ok(())
    }
}
