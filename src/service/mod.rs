//! The service layer: the one place for the rules. GraphQL resolvers and REST handlers call it
//! and nothing else; it is the only code that builds queries.
//!
//! Every method that reads or changes tenant data takes the caller's [`OrgContext`] and filters
//! by its org itself, so a transport cannot forget to. Something that exists in another org is
//! indistinguishable from something that does not exist: both are `NOT_FOUND` (or `None`).

mod api_keys;
mod audience;
mod coupons;
mod row_errors;
mod scrape;
mod series;
mod status;
mod status_lane;
mod status_page;
mod uploads;

pub use api_keys::{DEFAULT_KEY_CACHE_TTL, NewApiKey};
pub use audience::{DEFAULT_VERSIONS_PAGE, MAX_VERSIONS_PAGE, versions_page};
pub use coupons::{CouponFilter, CouponPage, CouponScope, JobCoupons, Revoked};
pub use row_errors::{JobErrors, RowError, RowErrorPage};
pub use series::SeriesPage;
pub use series::{CouponSeriesChanges, NewCouponSeries};
pub use status_page::{JobWithAudience, StatusPage, UploadStatus};
pub use uploads::{NewUpload, UPLOAD_TABLE, result_keys, sanitize_file_name};

use std::collections::HashMap;

use crate::domain::OrgContext;
use crate::error::{AppError, AppResult};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::events::JobEvents;
use crate::links::FileLinks;
use crate::storage::{Storage, StoredFile};
use sea_orm::DatabaseConnection;

/// Page size used when a client does not ask for one.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// The most items one page may hold; asking for more is `BAD_USER_INPUT`.
pub const MAX_PAGE_SIZE: u64 = 500;

/// The service: cheap to clone (one reference count), which resolvers and handlers do per
/// request.
#[derive(Clone)]
pub struct Service(Arc<ServiceParts>);

/// What a [`Service`] holds, shared by its clones.
pub struct ServiceParts {
    db: DatabaseConnection,
    storage: Storage,
    links: FileLinks,
    events: JobEvents,
    metrics: crate::telemetry::Metrics,
    /// Woken when a job is created, so an idle worker starts at once.
    jobs_ready: Arc<Notify>,
    keys: Arc<api_keys::KeyCache>,
    /// Counts the statements the service sends itself (the status lane's).
    statements: crate::db::StatementCounter,
    /// PostgreSQL: status pages are read in batches (see `status_lane`). Started on first use.
    status_lane: std::sync::OnceLock<status_lane::StatusLane>,
    /// `/metrics`' figures from the database, reused for a while (see `scrape`).
    figures: scrape::FiguresCache,
    /// SQLite: this process's writes take turns (see `db::WriteGate`).
    writes: crate::db::WriteGate,
}

impl std::ops::Deref for Service {
    type Target = ServiceParts;

    fn deref(&self) -> &ServiceParts {
        &self.0
    }
}

impl Service {
    pub fn new(db: DatabaseConnection, storage: Storage, links: FileLinks) -> Self {
        let keys = Arc::new(api_keys::KeyCache::new(api_keys::DEFAULT_KEY_CACHE_TTL));
        let forget = keys.clone();
        Self(Arc::new(ServiceParts {
            writes: Default::default(),
            events: JobEvents::new(db.clone(), Arc::new(move |id| forget.forget(id))),
            metrics: Default::default(),
            db,
            storage,
            links,
            jobs_ready: Arc::new(Notify::new()),
            keys,
            statements: Default::default(),
            status_lane: Default::default(),
            figures: Default::default(),
        }))
    }

    /// Counts the statements the service sends without sea-orm on `counter` too (the one
    /// `db::connect` counts sea-orm's on). Call before the service is cloned.
    pub fn with_statement_counter(mut self, counter: crate::db::StatementCounter) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("with_statement_counter is called before the service is cloned")
            .statements = counter;
        self
    }

    /// How long an authenticated key is trusted without asking the database again (zero: never).
    /// Keys revoked through this process stop working at once; on PostgreSQL, so do keys
    /// revoked elsewhere (the CLI, another instance: a `NOTIFY` reaches every instance's
    /// listener); a notice missed while the listener reconnects, within this time.
    pub fn set_key_cache_ttl(&self, ttl: std::time::Duration) {
        self.keys.set_ttl(ttl);
    }

    pub fn metrics(&self) -> &crate::telemetry::Metrics {
        &self.metrics
    }

    /// Every statement this service sends, through sea-orm or not.
    pub fn statements(&self) -> &crate::db::StatementCounter {
        &self.statements
    }

    pub fn events(&self) -> &JobEvents {
        &self.events
    }

    pub fn jobs_ready(&self) -> &Notify {
        &self.jobs_ready
    }

    /// Begins a transaction that will write, in this process's turn (see `db::WriteGate`).
    pub async fn begin_write(&self) -> Result<crate::db::WriteTxn, sea_orm::DbErr> {
        self.writes.begin(&self.db).await
    }

    /// This process's turn to write, for a write that is one statement (see `db::WriteGate`).
    pub async fn write_turn(&self) -> crate::db::WriteTurn {
        self.writes.turn(&self.db).await
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// A signed, expiring download link for a stored file.
    pub fn file_url(&self, key: Option<&str>) -> Option<String> {
        key.map(|k| self.links.url(k))
    }

    /// The stored file a download link names, if the link is genuine and current.
    pub async fn open_linked_file(
        &self,
        key: &str,
        expires: i64,
        sig: &str,
    ) -> AppResult<Option<StoredFile>> {
        if !self.links.verify(key, expires, sig) {
            return Err(AppError::Forbidden(
                "this download link is invalid or has expired".into(),
            ));
        }
        Ok(self.storage.open(key).await?)
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// `true` when the database answers.
    pub async fn ready(&self) -> bool {
        self.db.ping().await.is_ok()
    }
}

/// Keyset paging: `first` items after the item whose id is `after`, newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Page {
    pub first: u64,
    pub after: Option<i64>,
}

impl Page {
    pub fn new(first: Option<i32>, after: Option<i64>) -> AppResult<Self> {
        let first = match first {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if (0..=MAX_PAGE_SIZE as i32).contains(&n) => n as u64,
            Some(n) => {
                return Err(AppError::BadUserInput(format!(
                    "`first` must be between 0 and {MAX_PAGE_SIZE}, got {n}"
                )));
            }
        };
        Ok(Self { first, after })
    }
}

/// One keyset page of `T`, and whether more follow.
#[derive(Clone, Debug)]
pub struct PageOf<T> {
    pub items: Vec<T>,
    pub has_next_page: bool,
}

impl<T> Default for PageOf<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            has_next_page: false,
        }
    }
}

impl<T> PageOf<T> {
    /// The page out of up to `first + 1` items read in order (the extra one says more follow).
    fn of(mut items: Vec<T>, first: u64) -> Self {
        let has_next_page = items.len() as u64 > first;
        items.truncate(first as usize);
        Self {
            items,
            has_next_page,
        }
    }
}

/// Pages of many owners (jobs) at once: `rows` are (owner, item), up to `first + 1` items an
/// owner, put in order by `key` (a `UNION ALL` promises no order across its branches).
fn pages_by_owner<T>(
    rows: Vec<(i64, T)>,
    first: u64,
    key: impl Fn(&T) -> i64,
) -> HashMap<i64, PageOf<T>> {
    let mut by_owner: HashMap<i64, Vec<T>> = HashMap::new();
    for (owner, item) in rows {
        by_owner.entry(owner).or_default().push(item);
    }
    by_owner
        .into_iter()
        .map(|(owner, mut items)| {
            items.sort_by_key(&key);
            (owner, PageOf::of(items, first))
        })
        .collect()
}

/// Branches per `UNION ALL` statement (each binds a handful of values: far under any limit).
const UNION_BRANCHES: usize = 200;

/// `SELECT * FROM (inner)`: a `UNION ALL` branch that keeps its own `ORDER BY` and `LIMIT`
/// (SQLite takes neither in a compound's member).
fn union_branch(inner: sea_orm::sea_query::SelectStatement) -> sea_orm::sea_query::SelectStatement {
    sea_orm::sea_query::Query::select()
        .column(sea_orm::sea_query::Asterisk)
        .from_subquery(inner, sea_orm::sea_query::Alias::new("b"))
        .to_owned()
}

impl Service {
    /// The rows of every branch, one statement per [`UNION_BRANCHES`] branches: how pages and
    /// counts of many jobs are read at once.
    async fn union_all(
        &self,
        branches: Vec<sea_orm::sea_query::SelectStatement>,
    ) -> AppResult<Vec<sea_orm::QueryResult>> {
        use sea_orm::ConnectionTrait;
        let backend = self.db.get_database_backend();
        let mut rows = Vec::new();
        let mut branches = branches.into_iter().peekable();
        while branches.peek().is_some() {
            let mut chunk = branches.by_ref().take(UNION_BRANCHES);
            let Some(mut union) = chunk.next() else {
                break;
            };
            for b in chunk {
                union.union(sea_orm::sea_query::UnionType::All, b);
            }
            rows.extend(self.db.query_all_raw(backend.build(&union)).await?);
        }
        Ok(rows)
    }
}

/// Parses a client-supplied id (`ID` in GraphQL, a path segment in REST).
pub fn parse_id(what: &str, raw: &str) -> AppResult<i64> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::BadUserInput(format!("{what} must be a positive integer id")))
}

pub(crate) fn org_of(org: &OrgContext) -> i64 {
    org.org_id
}
