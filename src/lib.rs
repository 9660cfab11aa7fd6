//! coupon-upload-api: a GraphQL service for bulk coupon uploads.
//!
//! Layers, top to bottom: transport ([`http`], [`graphql`]) over rules ([`service`]) over data
//! ([`entity`], [`storage`]). `main.rs` is only the command line; everything it runs is here, so
//! the integration tests build exactly the app the binary serves.

pub mod config;
pub mod db;
pub mod demo;
pub mod domain;
pub mod entity;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod ingest;
pub mod links;
pub mod service;
pub mod startup;
pub mod storage;
pub mod worker;

pub use http::{AppState, router};
