//! coupon-upload-api: a GraphQL service for bulk coupon uploads.
//!
//! Layers, top to bottom (docs/ARCHITECTURE.md, "Layers"; imports only run down): the app
//! builder ([`app`], from [`config`]'s flags); transport ([`http`] over [`graphql`]); the
//! [`worker`]; the rules ([`service`]); pure logic and shared parts ([`ingest`], [`view`],
//! [`events`], [`links`], [`telemetry`]); data ([`entity`], [`db`], [`storage`], [`domain`],
//! [`error`]). `main.rs` is only the command line; everything it runs is here, so the
//! integration tests build exactly the app the binary serves.

pub mod app;
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
pub mod storage;
pub mod telemetry;
pub mod view;
pub mod worker;

pub use http::{AppState, router};
