//! Database schema of coupon-upload-api, as sea-orm migrations.
//!
//! The server applies pending migrations on start (`coupon-upload-api serve` and
//! `coupon-upload-api migrate`); operators can also run this crate directly:
//! `cargo run -p migration -- up` (see `main.rs`).

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_init;
mod m20261126_000002_uploads;
mod m20261126_000003_coupon_without_fks;
mod m20261126_000004_coupon_id_block;
mod m20261126_000005_maybe_duplicate;
mod m20261202_000006_coupons_as_data;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_init::Migration),
            Box::new(m20261126_000002_uploads::Migration),
            Box::new(m20261126_000003_coupon_without_fks::Migration),
            Box::new(m20261126_000004_coupon_id_block::Migration),
            Box::new(m20261126_000005_maybe_duplicate::Migration),
            Box::new(m20261202_000006_coupons_as_data::Migration),
        ]
    }
}
