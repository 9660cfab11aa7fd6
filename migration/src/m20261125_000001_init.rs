//! The initial schema: every table of the service (docs/ARCHITECTURE.md, "Data").
//!
//! Ids are 64-bit and auto-increment (orgs excepted: their ids come from the operator, as in
//! Capillary). Every table carries `org_id`, and every lookup the service makes starts with it,
//! so the indexes lead with `org_id` too.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Org {
    Table,
    Id,
    Name,
    CreatedOn,
}

#[derive(DeriveIden)]
enum ApiKey {
    Table,
    Id,
    OrgId,
    Name,
    Permission,
    KeyHash,
    KeyPrefix,
    CreatedOn,
    RevokedOn,
}

#[derive(DeriveIden)]
enum CouponSeries {
    Table,
    Id,
    OrgId,
    Name,
    Description,
    ClientHandlingType,
    MaxCreate,
    AllowMultiplePerCustomer,
    CodeMaxLength,
    NumUploadedTotal,
    CreatedOn,
    UpdatedOn,
}

#[derive(DeriveIden)]
enum AudienceGroup {
    Table,
    Id,
    OrgId,
    CouponSeriesId,
    Name,
    GroupType,
    Status,
    CustomerCount,
    LatestVersionNumber,
    CreatedOn,
    UpdatedOn,
}

#[derive(DeriveIden)]
enum AudienceGroupVersion {
    Table,
    Id,
    OrgId,
    AudienceGroupId,
    VersionNumber,
    CustomerCount,
    Status,
    UploadJobId,
    CreatedOn,
}

#[derive(DeriveIden)]
enum UploadJob {
    Table,
    Id,
    OrgId,
    CouponSeriesId,
    UploadStatus,
    CustomerIdentifier,
    CustomerIdentifierColumn,
    CouponCodeColumn,
    HasHeader,
    UploadedFileName,
    UploadedFileKey,
    UploadedFileSize,
    ErrorFileKey,
    SuccessFileKey,
    UploadTableName,
    ActualRowCount,
    TotalUploadedCount,
    ErrorCount,
    ProcessedRowCount,
    ErrorReason,
    AudienceGroupId,
    AudienceGroupVersionId,
    CancelRequested,
    LeaseOwner,
    LeaseExpiresAt,
    Attempts,
    CreatedOn,
    UpdatedOn,
    FinishedOn,
}

// Column names are the table's, whatever clippy thinks of the prefix.
#[allow(clippy::enum_variant_names)]
#[derive(DeriveIden)]
enum Coupon {
    Table,
    Id,
    OrgId,
    CouponSeriesId,
    UploadJobId,
    RowNumber,
    Code,
    CustomerIdentifierType,
    CustomerIdentifier,
    CreatedOn,
}

fn fk(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Restrict)
        .to_owned()
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
                .table(Org::Table)
                .col(big_integer(Org::Id).primary_key())
                .col(string(Org::Name))
                .col(timestamp_with_time_zone(Org::CreatedOn))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ApiKey::Table)
                .col(big_pk_auto(ApiKey::Id))
                .col(big_integer(ApiKey::OrgId))
                .col(string(ApiKey::Name))
                .col(string_len(ApiKey::Permission, 16))
                .col(string_len_uniq(ApiKey::KeyHash, 64))
                .col(string_len(ApiKey::KeyPrefix, 16))
                .col(timestamp_with_time_zone(ApiKey::CreatedOn))
                .col(timestamp_with_time_zone_null(ApiKey::RevokedOn))
                .foreign_key(&mut fk(
                    "fk_api_key_org",
                    (ApiKey::Table, ApiKey::OrgId),
                    (Org::Table, Org::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_api_key_org")
                .table(ApiKey::Table)
                .col(ApiKey::OrgId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(CouponSeries::Table)
                .col(big_pk_auto(CouponSeries::Id))
                .col(big_integer(CouponSeries::OrgId))
                .col(string(CouponSeries::Name))
                .col(text(CouponSeries::Description).default(""))
                .col(string_len(CouponSeries::ClientHandlingType, 32))
                .col(big_integer(CouponSeries::MaxCreate).default(-1))
                .col(boolean(CouponSeries::AllowMultiplePerCustomer).default(false))
                .col(integer(CouponSeries::CodeMaxLength))
                .col(big_integer(CouponSeries::NumUploadedTotal).default(0))
                .col(timestamp_with_time_zone(CouponSeries::CreatedOn))
                .col(timestamp_with_time_zone(CouponSeries::UpdatedOn))
                .foreign_key(&mut fk(
                    "fk_coupon_series_org",
                    (CouponSeries::Table, CouponSeries::OrgId),
                    (Org::Table, Org::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_coupon_series_org")
                .table(CouponSeries::Table)
                .col(CouponSeries::OrgId)
                .col(CouponSeries::Id)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AudienceGroup::Table)
                .col(big_pk_auto(AudienceGroup::Id))
                .col(big_integer(AudienceGroup::OrgId))
                // One audience group per series: created by its first tagged upload.
                .col(big_integer_uniq(AudienceGroup::CouponSeriesId))
                .col(string(AudienceGroup::Name))
                .col(string_len(AudienceGroup::GroupType, 16))
                .col(string_len(AudienceGroup::Status, 16))
                .col(big_integer(AudienceGroup::CustomerCount).default(0))
                .col(integer(AudienceGroup::LatestVersionNumber).default(0))
                .col(timestamp_with_time_zone(AudienceGroup::CreatedOn))
                .col(timestamp_with_time_zone(AudienceGroup::UpdatedOn))
                .foreign_key(&mut fk(
                    "fk_audience_group_org",
                    (AudienceGroup::Table, AudienceGroup::OrgId),
                    (Org::Table, Org::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_audience_group_series",
                    (AudienceGroup::Table, AudienceGroup::CouponSeriesId),
                    (CouponSeries::Table, CouponSeries::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_audience_group_org")
                .table(AudienceGroup::Table)
                .col(AudienceGroup::OrgId)
                .col(AudienceGroup::Id)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(UploadJob::Table)
                .col(big_pk_auto(UploadJob::Id))
                .col(big_integer(UploadJob::OrgId))
                .col(big_integer(UploadJob::CouponSeriesId))
                .col(string_len(UploadJob::UploadStatus, 16))
                .col(string_len(UploadJob::CustomerIdentifier, 16))
                .col(integer_null(UploadJob::CustomerIdentifierColumn))
                .col(integer_null(UploadJob::CouponCodeColumn))
                .col(boolean(UploadJob::HasHeader).default(true))
                .col(string(UploadJob::UploadedFileName))
                .col(string_null(UploadJob::UploadedFileKey))
                .col(big_integer(UploadJob::UploadedFileSize).default(0))
                .col(string_null(UploadJob::ErrorFileKey))
                .col(string_null(UploadJob::SuccessFileKey))
                .col(string(UploadJob::UploadTableName))
                .col(big_integer(UploadJob::ActualRowCount).default(0))
                .col(big_integer(UploadJob::TotalUploadedCount).default(0))
                .col(big_integer(UploadJob::ErrorCount).default(0))
                .col(big_integer(UploadJob::ProcessedRowCount).default(0))
                .col(text_null(UploadJob::ErrorReason))
                .col(big_integer_null(UploadJob::AudienceGroupId))
                .col(big_integer_null(UploadJob::AudienceGroupVersionId))
                .col(boolean(UploadJob::CancelRequested).default(false))
                .col(string_null(UploadJob::LeaseOwner))
                .col(timestamp_with_time_zone_null(UploadJob::LeaseExpiresAt))
                .col(integer(UploadJob::Attempts).default(0))
                .col(timestamp_with_time_zone(UploadJob::CreatedOn))
                .col(timestamp_with_time_zone(UploadJob::UpdatedOn))
                .col(timestamp_with_time_zone_null(UploadJob::FinishedOn))
                .foreign_key(&mut fk(
                    "fk_upload_job_org",
                    (UploadJob::Table, UploadJob::OrgId),
                    (Org::Table, Org::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_upload_job_series",
                    (UploadJob::Table, UploadJob::CouponSeriesId),
                    (CouponSeries::Table, CouponSeries::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_upload_job_audience_group",
                    (UploadJob::Table, UploadJob::AudienceGroupId),
                    (AudienceGroup::Table, AudienceGroup::Id),
                ))
                .to_owned(),
        )
        .await?;
        // `uploadStatus`: the jobs of one series of one org, newest first.
        m.create_index(
            Index::create()
                .name("idx_upload_job_series_newest")
                .table(UploadJob::Table)
                .col(UploadJob::OrgId)
                .col(UploadJob::CouponSeriesId)
                .col((UploadJob::Id, IndexOrder::Desc))
                .to_owned(),
        )
        .await?;
        // The worker: unfinished jobs whose lease is free or lapsed.
        m.create_index(
            Index::create()
                .name("idx_upload_job_claim")
                .table(UploadJob::Table)
                .col(UploadJob::UploadStatus)
                .col(UploadJob::LeaseExpiresAt)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AudienceGroupVersion::Table)
                .col(big_pk_auto(AudienceGroupVersion::Id))
                .col(big_integer(AudienceGroupVersion::OrgId))
                .col(big_integer(AudienceGroupVersion::AudienceGroupId))
                .col(integer(AudienceGroupVersion::VersionNumber))
                .col(big_integer(AudienceGroupVersion::CustomerCount).default(0))
                .col(string_len(AudienceGroupVersion::Status, 16))
                .col(big_integer_null(AudienceGroupVersion::UploadJobId))
                .col(timestamp_with_time_zone(AudienceGroupVersion::CreatedOn))
                .foreign_key(&mut fk(
                    "fk_audience_group_version_org",
                    (AudienceGroupVersion::Table, AudienceGroupVersion::OrgId),
                    (Org::Table, Org::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_audience_group_version_group",
                    (
                        AudienceGroupVersion::Table,
                        AudienceGroupVersion::AudienceGroupId,
                    ),
                    (AudienceGroup::Table, AudienceGroup::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_audience_group_version_job",
                    (
                        AudienceGroupVersion::Table,
                        AudienceGroupVersion::UploadJobId,
                    ),
                    (UploadJob::Table, UploadJob::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_audience_group_version_number")
                .table(AudienceGroupVersion::Table)
                .col(AudienceGroupVersion::AudienceGroupId)
                .col(AudienceGroupVersion::VersionNumber)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_audience_group_version_org")
                .table(AudienceGroupVersion::Table)
                .col(AudienceGroupVersion::OrgId)
                .col(AudienceGroupVersion::Id)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Coupon::Table)
                .col(big_pk_auto(Coupon::Id))
                .col(big_integer(Coupon::OrgId))
                .col(big_integer(Coupon::CouponSeriesId))
                .col(big_integer_null(Coupon::UploadJobId))
                .col(big_integer_null(Coupon::RowNumber))
                .col(string(Coupon::Code))
                .col(string_len_null(Coupon::CustomerIdentifierType, 16))
                .col(string_null(Coupon::CustomerIdentifier))
                .col(timestamp_with_time_zone(Coupon::CreatedOn))
                .foreign_key(&mut fk(
                    "fk_coupon_org",
                    (Coupon::Table, Coupon::OrgId),
                    (Org::Table, Org::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_coupon_series",
                    (Coupon::Table, Coupon::CouponSeriesId),
                    (CouponSeries::Table, CouponSeries::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_coupon_upload_job",
                    (Coupon::Table, Coupon::UploadJobId),
                    (UploadJob::Table, UploadJob::Id),
                ))
                .to_owned(),
        )
        .await?;
        // "Coupon code is already used in this org": the database enforces it.
        m.create_index(
            Index::create()
                .name("uq_coupon_org_code")
                .table(Coupon::Table)
                .col(Coupon::OrgId)
                .col(Coupon::Code)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_coupon_job_row")
                .table(Coupon::Table)
                .col(Coupon::UploadJobId)
                .col(Coupon::RowNumber)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_coupon_series")
                .table(Coupon::Table)
                .col(Coupon::CouponSeriesId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Coupon::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(AudienceGroupVersion::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(UploadJob::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(AudienceGroup::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(CouponSeries::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(ApiKey::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Org::Table).to_owned())
            .await?;
        Ok(())
    }
}
