//! `TestApp`: the real router on a loopback port over a fresh database, and a client for it.
//!
//! Every test gets its own database: a SQLite file in a temp folder, or (when
//! `TEST_POSTGRES_URL` is set) its own PostgreSQL schema, dropped afterwards. So tests run in
//! parallel and never see each other's rows. `TEST_LOG=1` prints the server's logs.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use coupon_upload_api::AppState;
use coupon_upload_api::db::DbOptions;
use coupon_upload_api::domain::Permission;
use coupon_upload_api::startup::{AppSettings, build_state};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    pg_schema: Option<(String, String)>,
    server: tokio::task::JoinHandle<()>,
}

static TRACING: Once = Once::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

impl TestApp {
    /// `None` for PostgreSQL when `TEST_POSTGRES_URL` is not set. When it is set, failing to
    /// reach PostgreSQL fails the test: CI must not silently skip the PostgreSQL half.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        TRACING.call_once(|| {
            if std::env::var("TEST_LOG").is_ok() {
                let _ = tracing_subscriber::fmt()
                    .with_env_filter("info,sqlx=warn")
                    .with_test_writer()
                    .try_init();
            }
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, search_path, pg_schema) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}/test.db", dir.path().display()),
                None,
                None,
            ),
            Backend::Postgres => {
                let url = postgres_url()?;
                let schema = format!(
                    "t_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    rand::random::<u32>()
                );
                let admin = Database::connect(&url).await.unwrap_or_else(|e| {
                    panic!("TEST_POSTGRES_URL is set but PostgreSQL cannot be reached: {e}")
                });
                admin
                    .execute_unprepared(&format!("CREATE SCHEMA {schema}"))
                    .await
                    .expect("create schema");
                admin.close().await.ok();
                (url.clone(), Some(schema.clone()), Some((url, schema)))
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state = build_state(AppSettings {
            database_url: &url,
            db: DbOptions {
                max_connections: 5,
                search_path,
            },
            storage_dir: &dir.path().join("files"),
            public_url: &base,
            link_secret: b"test-secret-test-secret",
            link_ttl_secs: 600,
        })
        .await
        .expect("build app");
        let app = coupon_upload_api::router(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Some(TestApp {
            base,
            state,
            client: reqwest::Client::new(),
            _dir: dir,
            pg_schema,
            server,
        })
    }

    pub async fn key(&self, org_id: i64, permission: Permission) -> String {
        self.state
            .service
            .create_api_key(org_id, "test", permission)
            .await
            .expect("api key")
            .key
    }

    /// POSTs a GraphQL request with `key` (if any) as a Bearer token.
    pub async fn gql(
        &self,
        key: Option<&str>,
        query: &str,
        variables: Value,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({
                "query": query,
                "variables": variables,
            }));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        (status, res.json().await.expect("json body"))
    }

    /// GraphQL that must succeed: returns `data`, failing the test on any error.
    pub async fn gql_ok(&self, key: &str, query: &str, variables: Value) -> Value {
        let (status, body) = self.gql(Some(key), query, variables).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// GET with `X-CAP-API-OAUTH-TOKEN` (Capillary's header), JSON body.
    pub async fn rest_get(&self, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.client.get(format!("{}{}", self.base, path));
        if let Some(key) = key {
            req = req.header("X-CAP-API-OAUTH-TOKEN", key);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        (status, res.json().await.expect("json body"))
    }

    pub fn statements(&self) -> u64 {
        self.state.statements.get()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        if let Some((url, schema)) = self.pg_schema.take() {
            // Drop needs its own runtime: the test's runtime is shutting down.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    if let Ok(db) = Database::connect(&url).await {
                        let _ = db
                            .execute_unprepared(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .await;
                        let _ = db.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// The error code of the first GraphQL error.
pub fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}

/// Runs each listed `async fn(TestApp)` twice: on SQLite, and on PostgreSQL when
/// `TEST_POSTGRES_URL` is set (otherwise the PostgreSQL variant says it skipped).
#[macro_export]
macro_rules! db_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::{Backend, TestApp};

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite app");
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    match TestApp::spawn(Backend::Postgres).await {
                        Some(app) => super::$name(app).await,
                        None => eprintln!("skipped: TEST_POSTGRES_URL is not set"),
                    }
                }
            }
        )+
    };
}
