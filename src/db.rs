//! Connecting to the database, applying migrations, and counting statements.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend, Statement, Value};

/// A statement written once for both databases: `$n` placeholders become SQLite's numbered
/// `?n`, which (unlike plain `?`) may repeat.
pub fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DbBackend::Sqlite => sql.replace('$', "?"),
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// The error says the connection is gone, not that the statement failed: I/O, a broken
/// protocol, or the server ending the session (SQLSTATE class 08, connection exception, or
/// 57P0x: administrator or crash shutdown, e.g. a restart or `pg_terminate_backend`).
pub fn connection_lost(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match e {
        Error::Io(_) | Error::Protocol(_) => true,
        Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
        _ => false,
    }
}

/// The database could not be reached (no connection to be had, or it was lost), as opposed to
/// a statement that failed: the request may succeed once the database is back.
pub fn unreachable(e: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    match e {
        DbErr::ConnectionAcquire(_) => true,
        DbErr::Conn(r) | DbErr::Exec(r) | DbErr::Query(r) => match r {
            RuntimeErr::SqlxError(s) => sqlx_unreachable(s),
            _ => false,
        },
        _ => false,
    }
}

/// [`unreachable`] for an error of sqlx itself (the status lane's connections).
pub fn sqlx_unreachable(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    connection_lost(e) || matches!(e, Error::PoolTimedOut | Error::PoolClosed)
}

/// A failure that clears by itself: the database unreachable ([`unreachable`]), busy (SQLite's
/// lock held by another process past the busy timeout) or a transaction chosen to fail so that
/// others can go on (serialization failure, deadlock). Doing the same again later may succeed.
pub fn transient(e: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    unreachable(e)
        || match e {
            DbErr::Conn(RuntimeErr::SqlxError(s))
            | DbErr::Exec(RuntimeErr::SqlxError(s))
            | DbErr::Query(RuntimeErr::SqlxError(s)) => sqlx_transient(s),
            _ => false,
        }
}

/// [`transient`] for an error of sqlx itself.
pub fn sqlx_transient(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    sqlx_unreachable(e)
        || match e {
            // PostgreSQL: serialization_failure, deadlock_detected, too_many_connections.
            // SQLite: SQLITE_BUSY and SQLITE_LOCKED, with their extended codes.
            Error::Database(d) => d.code().is_some_and(|c| {
                matches!(
                    c.as_ref(),
                    "40001" | "40P01" | "53300" | "5" | "6" | "261" | "262" | "517"
                )
            }),
            _ => false,
        }
}

/// Counts every SQL statement the service sends (sea-orm's metric callback). Exposed for
/// metrics, and used by the tests that pin how many statements a query costs.
#[derive(Clone, Default, Debug)]
pub struct StatementCounter(Arc<AtomicU64>);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts statements sent other than through sea-orm.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// Options beyond the URL; the defaults suit the server.
#[derive(Clone, Debug)]
pub struct DbOptions {
    pub max_connections: u32,
    /// PostgreSQL only: the schema to use (tests give each test its own).
    pub search_path: Option<String>,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            search_path: None,
        }
    }
}

/// Opens a pool on `url` (`sqlite://…` or `postgres://…`). For SQLite the file and its folder
/// are created, and the connection uses WAL with a busy timeout so readers never block the
/// writer.
pub async fn connect(
    url: &str,
    opts: &DbOptions,
    counter: &StatementCounter,
) -> anyhow::Result<DatabaseConnection> {
    let mut url = url.to_owned();
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        let file = path.split('?').next().unwrap_or_default();
        if !file.is_empty() && file != ":memory:" {
            if let Some(parent) = std::path::Path::new(file)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!("creating the database folder {}", parent.display())
                })?;
            }
            if !path.contains("mode=") {
                url.push_str(if path.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
        }
    }
    let mut opt = ConnectOptions::new(url.clone());
    opt.max_connections(opts.max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        // A ping per checkout would double the round trips of a one-statement request; only
        // connections idle long enough to have been dropped (server restart, proxy, firewall)
        // are checked.
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    if let Some(path) = &opts.search_path {
        opt.set_schema_search_path(path.clone());
    }
    let mut db = Database::connect(opt)
        .await
        .with_context(|| format!("connecting to {}", redact(&url)))?;
    let count = counter.0.clone();
    db.set_metric_callback(move |_| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    Ok(db)
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None).await.context("applying migrations")
}

/// A database URL fit for logs: the password, if any, replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Writes on SQLite take turns in this process, first come first served.
///
/// SQLite has one writer at a time, and a writer that finds the database locked waits in its
/// busy handler, which sleeps and retries (up to 100 ms at a time): not a queue. A long task
/// that writes in many short transactions (staging a file) would win the lock back every time
/// it let go, and a request's write would wait out the whole task, then fail at the busy
/// timeout. Every write of this process takes a turn here first (tokio's mutex grants turns in
/// the order they were asked for), so a request waits for at most the transaction in progress.
/// Other processes on the same file still meet SQLite's busy handler. On PostgreSQL, which has
/// row locks, there are no turns.
#[derive(Clone, Debug, Default)]
pub struct WriteGate(Arc<tokio::sync::Mutex<()>>);

/// A turn to write (nothing on PostgreSQL); the next writer goes when it is dropped.
pub type WriteTurn = Option<tokio::sync::OwnedMutexGuard<()>>;

impl WriteGate {
    /// Waits for this process's turn to write on `db`.
    pub async fn turn(&self, db: &DatabaseConnection) -> WriteTurn {
        match sea_orm::ConnectionTrait::get_database_backend(db) {
            DbBackend::Sqlite => Some(self.0.clone().lock_owned().await),
            _ => None,
        }
    }

    /// Begins a transaction that will write, in its turn. On SQLite it takes the write lock up
    /// front (`BEGIN IMMEDIATE`): a deferred transaction that reads first cannot upgrade to a
    /// writer while another connection writes, and fails at once with "database is locked"
    /// instead of waiting. PostgreSQL ignores the option.
    pub async fn begin(&self, db: &DatabaseConnection) -> Result<WriteTxn, sea_orm::DbErr> {
        use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
        let turn = self.turn(db).await;
        let txn = db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?;
        Ok(WriteTxn { txn, _turn: turn })
    }
}

/// A write transaction that holds its turn (see [`WriteGate`]) until it ends. Statements run
/// on it as on the transaction it derefs to.
pub struct WriteTxn {
    txn: sea_orm::DatabaseTransaction,
    _turn: WriteTurn,
}

impl std::ops::Deref for WriteTxn {
    type Target = sea_orm::DatabaseTransaction;

    fn deref(&self) -> &sea_orm::DatabaseTransaction {
        &self.txn
    }
}

impl WriteTxn {
    pub async fn commit(self) -> Result<(), sea_orm::DbErr> {
        self.txn.commit().await
    }

    pub async fn rollback(self) -> Result<(), sea_orm::DbErr> {
        self.txn.rollback().await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
