//! `coupon` without foreign keys.
//!
//! Coupons arrive a million at a time, and PostgreSQL checks each foreign key with a trigger
//! per row: inserting 1,000,000 coupons took 12.2 s with the three keys (org, series, job) and
//! 4.2 s without them on the 2-core development machine (same rows, same unique index). Only
//! the worker inserts coupons, in the transaction that holds the job's lease, from a job,
//! series and org it has just read, and nothing deletes those; the keys guarded nothing the
//! code does not already guarantee. The unique index on (org_id, code) stays: it is a rule.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE_REBUILD: &[&str] = &[
    r#"CREATE TABLE "coupon_new" ( "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "org_id" integer NOT NULL,
        "coupon_series_id" integer NOT NULL, "upload_job_id" integer NULL, "row_number" integer NULL,
        "code" varchar NOT NULL, "customer_identifier_type" varchar(16) NULL, "customer_identifier" varchar NULL,
        "created_on" timestamp_with_timezone_text NOT NULL )"#,
    r#"INSERT INTO "coupon_new" SELECT "id", "org_id", "coupon_series_id", "upload_job_id", "row_number", "code",
        "customer_identifier_type", "customer_identifier", "created_on" FROM "coupon""#,
    r#"DROP TABLE "coupon""#,
    r#"ALTER TABLE "coupon_new" RENAME TO "coupon""#,
    r#"CREATE UNIQUE INDEX "uq_coupon_org_code" ON "coupon" ("org_id", "code")"#,
    r#"CREATE INDEX idx_coupon_series_customer ON coupon (coupon_series_id, customer_identifier)
        WHERE customer_identifier IS NOT NULL"#,
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction, hence one connection: the SQLite rebuild must not be spread over
    /// pooled connections, and must not be left half done.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        match db.get_database_backend() {
            DbBackend::Sqlite => {
                // SQLite cannot drop a constraint: the table is rebuilt without them.
                for sql in SQLITE_REBUILD {
                    db.execute_unprepared(sql).await?;
                }
            }
            _ => {
                db.execute_unprepared(
                    "ALTER TABLE coupon DROP CONSTRAINT fk_coupon_org, DROP CONSTRAINT fk_coupon_series, \
                     DROP CONSTRAINT fk_coupon_upload_job",
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE coupon ADD CONSTRAINT fk_coupon_org FOREIGN KEY (org_id) REFERENCES org (id), \
                 ADD CONSTRAINT fk_coupon_series FOREIGN KEY (coupon_series_id) REFERENCES coupon_series (id), \
                 ADD CONSTRAINT fk_coupon_upload_job FOREIGN KEY (upload_job_id) REFERENCES upload_job (id)",
            )
            .await?;
        }
        Ok(())
    }
}
