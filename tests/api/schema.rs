//! `schema.graphql` is the code's schema, exported with sorted fields. When this fails, the
//! schema changed: review the diff like an API changelog, then run
//! `cargo run -- print-schema > schema.graphql` (or `UPDATE_SCHEMA=1 cargo test schema`).

use coupon_upload_api::graphql::{build_schema, sdl};
use coupon_upload_api::links::FileLinks;
use coupon_upload_api::service::Service;
use coupon_upload_api::storage::Storage;

pub fn current_sdl() -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = Service::new(
        sea_orm::DatabaseConnection::default(),
        Storage::local(dir.path()).expect("storage"),
        FileLinks::new("", b"unused", 0),
    );
    sdl(&build_schema(service))
}

#[test]
fn schema_snapshot_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let current = current_sdl();
    if std::env::var("UPDATE_SCHEMA").is_ok() {
        std::fs::write(path, &current).expect("write schema.graphql");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed != current {
        let first_diff = committed
            .lines()
            .zip(current.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(current.lines().count()));
        panic!(
            "schema.graphql differs from the code's schema (first difference at line {}).\n\
             Review the change, then update it with:\n    cargo run -- print-schema > schema.graphql",
            first_diff + 1
        );
    }
}

#[test]
fn every_entity_type_has_an_id() {
    let sdl = current_sdl();
    // Root types, Relay wrappers (connections, edges, page info) and what a mutation reports
    // are not entities.
    let wrappers = [
        "CouponSeriesConnection",
        "CouponSeriesEdge",
        "CouponConnection",
        "CouponEdge",
        "RevokeResult",
        // A job's rejected rows are rows of its file (job and row number), not entities.
        "RowErrorConnection",
        "RowErrorEdge",
        "RowError",
        "ErrorCount",
        "PageInfo",
        "Query",
        "Mutation",
        "Subscription",
    ];
    for block in format!("\n{sdl}").split("\ntype ").skip(1) {
        let name = block.split_whitespace().next().unwrap_or_default();
        if wrappers.contains(&name) {
            continue;
        }
        assert!(
            block.contains("\n  id: ID!\n"),
            "type {name} has no `id: ID!`"
        );
    }
}
