//! `TestApp`: the real router on a loopback port over a fresh database, and a client for it.
//!
//! Every test gets its own database: a SQLite file in a temp folder, or (when
//! `TEST_POSTGRES_URL` is set) its own PostgreSQL schema, dropped afterwards. So tests run in
//! parallel and never see each other's rows. `TEST_LOG=1` prints the server's logs.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use coupon_upload_api::AppState;
use coupon_upload_api::app::{App, DatabaseSettings, HttpSettings, Settings, StorageSettings};
use coupon_upload_api::db::DbOptions;
use coupon_upload_api::domain::Permission;
use coupon_upload_api::http::UploadLimits;
use coupon_upload_api::worker::WorkerConfig;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    shutdown: CancellationToken,
}

/// How a test app is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Run the worker (off: jobs stay `STARTED`).
    pub worker: bool,
    pub batch_rows: i64,
    pub max_file_bytes: u64,
    pub graphql: coupon_upload_api::graphql::GraphqlLimits,
    pub cors_origins: Vec<String>,
    pub request_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub ws: coupon_upload_api::http::ws::WsLimits,
    /// Off (0) unless a test sets it.
    pub rate_limit: coupon_upload_api::http::ratelimit::RateLimit,
    /// How long an authenticated key is trusted without a lookup.
    pub auth_cache: Duration,
    /// Per client address, before a key is known (the server's default unless a test sets it).
    pub anonymous_rate_limit: coupon_upload_api::http::ratelimit::RateLimit,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            worker: true,
            batch_rows: 4,
            max_file_bytes: 4 * 1024 * 1024,
            graphql: Default::default(),
            cors_origins: Vec::new(),
            request_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(30),
            ws: Default::default(),
            rate_limit: coupon_upload_api::http::ratelimit::RateLimit {
                per_second: 0.0,
                burst: 0.0,
            },
            auth_cache: coupon_upload_api::service::DEFAULT_KEY_CACHE_TTL,
            anonymous_rate_limit: HttpSettings::default().anonymous_rate_limit,
        }
    }
}

static TRACING: Once = Once::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A loopback port nobody listens on now (for a server process a test starts). It is drawn
/// below the kernel's ephemeral range (32768 and up on Linux): a port the kernel hands out for
/// `:0` can be taken, before the server binds it, as the source port of any of the many
/// connections the tests open, and the server then fails to start.
pub fn free_port() -> u16 {
    for _ in 0..1_000 {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000..32000")
}

pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

impl TestApp {
    /// `None` for PostgreSQL when `TEST_POSTGRES_URL` is not set. When it is set, failing to
    /// reach PostgreSQL fails the test: CI must not silently skip the PostgreSQL half.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, Options::default()).await
    }

    pub async fn spawn_with(backend: Backend, opts: Options) -> Option<TestApp> {
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
        std::fs::create_dir_all(dir.path().join("spool")).expect("spool dir");
        let built = App::build(Settings {
            database: DatabaseSettings {
                url: url.clone(),
                pool: DbOptions {
                    max_connections: 5,
                    search_path,
                },
            },
            storage: StorageSettings {
                dir: dir.path().join("files"),
                url: None,
                public_url: base.clone(),
                link_secret: b"test-secret-test-secret".to_vec(),
                link_ttl_secs: 600,
            },
            uploads: UploadLimits {
                max_file_bytes: opts.max_file_bytes,
                spool_dir: dir.path().join("spool"),
                ..Default::default()
            },
            graphql: opts.graphql.clone(),
            websocket: opts.ws.clone(),
            rate_limit: opts.rate_limit.clone(),
            http: HttpSettings {
                request_timeout: opts.request_timeout,
                body_idle_timeout: opts.body_idle_timeout,
                cors_origins: opts.cors_origins.clone(),
                auth_cache: opts.auth_cache,
                anonymous_rate_limit: opts.anonymous_rate_limit.clone(),
                ..Default::default()
            },
            worker: opts.worker.then(|| WorkerConfig {
                batch_rows: opts.batch_rows,
                lease: Duration::from_secs(3),
                idle_poll: Duration::from_millis(200),
                ..Default::default()
            }),
        })
        .await
        .expect("build app");
        let state = built.state.clone();
        let shutdown = state.shutdown.clone();
        let app = built.router();
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .expect("serve");
        });
        Some(TestApp {
            base,
            state,
            client: reqwest::Client::new(),
            _dir: dir,
            pg_schema,
            server,
            shutdown,
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

    /// PostgreSQL: the server URL and this app's schema.
    pub fn pg_schema(&self) -> Option<(&str, &str)> {
        self.pg_schema
            .as_ref()
            .map(|(u, s)| (u.as_str(), s.as_str()))
    }

    pub fn backend(&self) -> Backend {
        if self.pg_schema.is_some() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    pub fn statements(&self) -> u64 {
        self.state.service.statements().get()
    }

    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// `createCouponSeries` with the given extra input fields; returns the series id.
    pub async fn create_series(&self, key: &str, input: Value) -> String {
        let mut input = input;
        if input.get("name").is_none() {
            input["name"] = json!("TEST");
        }
        let data = self
            .gql_ok(
                key,
                "mutation($i: CreateCouponSeriesInput!) { createCouponSeries(input: $i) { id } }",
                json!({ "i": input }),
            )
            .await;
        data["createCouponSeries"]["id"]
            .as_str()
            .expect("series id")
            .to_owned()
    }

    /// `uploadCoupons` as a GraphQL multipart request, the way apollo-upload-client sends it.
    pub async fn upload_gql(
        &self,
        key: &str,
        series: &str,
        file_name: &str,
        content: Vec<u8>,
        args: Value,
    ) -> (StatusCode, Value) {
        let mut variables = json!({ "series": series, "file": null, "kind": "NOT_TAGGED" });
        if let Some(obj) = args.as_object() {
            for (k, v) in obj {
                variables[k] = v.clone();
            }
        }
        let operations = json!({
            "query": "mutation($series: ID!, $file: Upload!, $kind: CustomerIdentifierType!, $customerColumn: Int, $codeColumn: Int, $hasHeader: Boolean = true) {
                uploadCoupons(couponSeriesId: $series, file: $file, customerIdentifier: $kind,
                  customerIdentifierColumn: $customerColumn, couponCodeColumn: $codeColumn, hasHeader: $hasHeader) {
                  jobId uploadStatus uploadedFileName couponSeriesId } }",
            "variables": variables,
        });
        let form = reqwest::multipart::Form::new()
            .text("operations", operations.to_string())
            .text("map", json!({ "0": ["variables.file"] }).to_string())
            .part(
                "0",
                reqwest::multipart::Part::bytes(content)
                    .file_name(file_name.to_owned())
                    .mime_str("text/csv")
                    .expect("mime"),
            );
        let res = self
            .client
            .post(format!("{}/graphql", self.base))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        let status = res.status();
        (status, res.json().await.expect("json"))
    }

    /// Uploads and returns the new job id, failing the test on any error.
    pub async fn upload_ok(&self, key: &str, series: &str, content: &[u8], args: Value) -> String {
        let (status, body) = self
            .upload_gql(key, series, "codes.csv", content.to_vec(), args)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
        assert_eq!(body["data"]["uploadCoupons"]["uploadStatus"], "STARTED");
        body["data"]["uploadCoupons"]["jobId"]
            .as_str()
            .expect("job id")
            .to_owned()
    }

    /// Polls `uploadJob` until the job has ended; returns all its fields.
    pub async fn wait_job(&self, key: &str, job: &str) -> Value {
        let q = "query($id: ID!) { uploadJob(jobId: $id) { jobId uploadStatus actualRowCount totalUploadedCount errorCount
            processedRowCount errorReason errorFileUrl successFileUrl uploadedFileUrl uploadedFileName uploadTableName
            customerIdentifier cancelRequested audienceGroupId audienceGroupVersionId
            audienceGroup { id customerCount } audienceGroupVersion { id versionNumber customerCount } } }";
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let data = self.gql_ok(key, q, json!({ "id": job })).await;
            let j = data["uploadJob"].clone();
            if matches!(
                j["uploadStatus"].as_str(),
                Some("FINISHED" | "ERRORED" | "CANCELLED")
            ) {
                return j;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {job} did not end: {j}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn download(&self, url: &Value) -> String {
        let url = url.as_str().unwrap_or_else(|| panic!("no link: {url}"));
        let res = self.client.get(url).send().await.expect("download");
        assert_eq!(res.status(), StatusCode::OK, "{url}");
        res.text().await.expect("text")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
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

/// Like `db_tests!`, with the given [`Options`].
#[macro_export]
macro_rules! db_tests_with {
    ($opts:expr; $($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::{Backend, Options, TestApp};

                #[allow(clippy::needless_update)]
                fn opts() -> Options {
                    $opts
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = TestApp::spawn_with(Backend::Sqlite, opts()).await.expect("sqlite app");
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    match TestApp::spawn_with(Backend::Postgres, opts()).await {
                        Some(app) => super::$name(app).await,
                        None => eprintln!("skipped: TEST_POSTGRES_URL is not set"),
                    }
                }
            }
        )+
    };
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
