//! Building the app from configuration: database (migrated), storage, links, service, schema.
//! The binary and the integration tests both come through here.

use std::path::Path;

use crate::db::{self, DbOptions, StatementCounter};
use crate::graphql::GraphqlLimits;
use crate::http::{AppState, UploadLimits};
use crate::links::FileLinks;
use crate::service::Service;
use crate::storage::Storage;

pub struct AppSettings<'a> {
    pub database_url: &'a str,
    pub db: DbOptions,
    pub storage_dir: &'a Path,
    /// Overrides `storage_dir` (`s3://…` or `file://…`).
    pub storage_url: Option<&'a str>,
    pub public_url: &'a str,
    pub link_secret: &'a [u8],
    pub link_ttl_secs: i64,
    pub uploads: UploadLimits,
    pub graphql: GraphqlLimits,
}

/// Connects, applies pending migrations, and assembles the state every handler shares.
pub async fn build_state(s: AppSettings<'_>) -> anyhow::Result<AppState> {
    let statements = StatementCounter::default();
    let conn = db::connect(s.database_url, &s.db, &statements).await?;
    db::migrate(&conn).await?;
    let storage = match s.storage_url {
        Some(url) => Storage::from_url(url)?,
        None => Storage::local(s.storage_dir)?,
    };
    let links = FileLinks::new(s.public_url, s.link_secret, s.link_ttl_secs);
    Ok(AppState::new(
        Service::new(conn, storage, links).with_statement_counter(statements.clone()),
        statements,
        s.uploads,
        s.graphql,
    ))
}
