//! Integration tests: the real router over HTTP, on SQLite and (with `TEST_POSTGRES_URL`)
//! PostgreSQL. One test binary, so the app is compiled once.

mod helpers;

mod auth;
mod cli;
mod cluster;
mod compiled;
mod coupons;
mod crash;
mod faults;
mod fixtures;
mod hardening;
mod http_misc;
mod isolation;
mod limits;
mod load;
mod rest;
mod schema;
mod statements;
mod status;
pub mod subscriptions;
mod uploads;
