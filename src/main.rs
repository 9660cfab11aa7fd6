//! The `coupon-upload-api` command: `serve`, `api-key`, `migrate`, `print-schema`.
//!
//! Only wiring lives here; everything it runs is in the library (see `lib.rs`), which is what
//! the integration tests exercise.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use coupon_upload_api::app::App;
use coupon_upload_api::config::{DbArgs, ServeArgs};
use coupon_upload_api::db::{self, DbOptions, StatementCounter};
use coupon_upload_api::domain::Permission;
use coupon_upload_api::links::FileLinks;
use coupon_upload_api::service::Service;
use coupon_upload_api::storage::Storage;

/// mimalloc rather than the system allocator: a request allocates and frees many small
/// objects across two worker threads, and glibc's malloc took about a fifth of the server's CPU
/// under the status benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's defaults favour speed over footprint: arenas committed eagerly and freed memory
/// kept for a while, which showed as 31 MiB idle and an upload's peak growing with the file
/// (56 MiB at 100k rows, 68 MiB at 1M). Committing on demand and returning freed pages at once
/// keeps the server at the footprint it had with glibc's malloc (18 MiB idle, ~30 MiB peak at
/// either size) and its speed. (Option ids from mimalloc v3's `mi_option_e`.)
fn tune_allocator() {
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: setting options is allowed at any time; nothing else runs yet.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}
use coupon_upload_api::{demo, graphql};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(version, about = "GraphQL service for bulk coupon uploads")]
struct Cli {
    #[command(flatten)]
    db: DbArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (applies pending migrations first).
    Serve(Box<ServeArgs>),
    /// Manage API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Apply pending database migrations.
    Migrate,
    /// Print the GraphQL schema (SDL); `schema.graphql` is this output.
    PrintSchema,
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key (and the org, if new). The key is printed once, alone on the last line.
    Create {
        #[arg(long)]
        org_id: i64,
        #[arg(long)]
        name: String,
        /// READ or READ_WRITE.
        #[arg(long, value_parser = parse_permission)]
        permission: Permission,
    },
    /// List keys (never the keys themselves).
    List {
        #[arg(long)]
        org_id: Option<i64>,
    },
    /// Revoke a key by its id.
    Revoke { id: i64 },
}

fn parse_permission(s: &str) -> Result<Permission, String> {
    Permission::parse(s).ok_or_else(|| format!("expected READ or READ_WRITE, got {s:?}"))
}

fn main() -> ExitCode {
    tune_allocator();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async_main()),
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn async_main() -> ExitCode {
    // Logs go to stderr: `RUST_LOG` filters them, `LOG_FORMAT=json` makes each line a JSON
    // object (with the request's span: request_id, method, path). Keys are never logged.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        logs.init();
    }
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The service for commands that only need the database (no files are served).
async fn offline_service(url: &str) -> anyhow::Result<Service> {
    let conn = db::connect(
        url,
        &DbOptions {
            max_connections: 2,
            ..Default::default()
        },
        &StatementCounter::default(),
    )
    .await?;
    db::migrate(&conn).await?;
    let storage = Storage::local(std::path::Path::new("data/files"))?;
    Ok(Service::new(
        conn,
        storage,
        FileLinks::new("", b"unused", 0),
    ))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let url = cli.db.database_url.as_str();
    match cli.command {
        Command::Serve(args) => serve(url, *args).await,
        Command::Migrate => {
            let conn =
                db::connect(url, &DbOptions::default(), &StatementCounter::default()).await?;
            db::migrate(&conn).await?;
            println!("migrations applied to {}", db::redact(url));
            Ok(())
        }
        Command::PrintSchema => {
            let service = Service::new(
                sea_orm::DatabaseConnection::default(),
                Storage::local(&std::env::temp_dir())?,
                FileLinks::new("", b"unused", 0),
            );
            print!("{}", graphql::sdl(&graphql::build_schema(service)));
            Ok(())
        }
        Command::ApiKey(cmd) => {
            let service = offline_service(url).await?;
            match cmd {
                ApiKeyCommand::Create {
                    org_id,
                    name,
                    permission,
                } => {
                    let new = service.create_api_key(org_id, &name, permission).await?;
                    println!(
                        "created API key id={} org={} permission={} name={:?}",
                        new.record.id, org_id, permission, name
                    );
                    println!("store it now, it is not shown again:");
                    println!("{}", new.key);
                }
                ApiKeyCommand::List { org_id } => {
                    println!("id\torg\tpermission\tprefix\tcreated\trevoked\tname");
                    for k in service.list_api_keys(org_id).await? {
                        let revoked = k
                            .revoked_on
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_else(|| "-".into());
                        println!(
                            "{}\t{}\t{}\t{}…\t{}\t{}\t{}",
                            k.id,
                            k.org_id,
                            k.permission,
                            k.key_prefix,
                            k.created_on.to_rfc3339(),
                            revoked,
                            k.name
                        );
                    }
                }
                ApiKeyCommand::Revoke { id } => {
                    let k = service.revoke_api_key(id).await?;
                    println!(
                        "revoked API key id={} org={} name={:?}",
                        k.id, k.org_id, k.name
                    );
                }
            }
            Ok(())
        }
    }
}

async fn serve(url: &str, args: ServeArgs) -> anyhow::Result<()> {
    let public_url = args.public_url();
    let app = App::build(args.settings(url)?).await?;
    let shutdown = app.shutdown().clone();
    if args.demo {
        let wait = app
            .has_worker()
            .then_some(std::time::Duration::from_secs(60));
        let outcome = demo::seed_if_empty(app.service(), wait).await?;
        if outcome.seeded {
            tracing::info!(org_id = demo::DEMO_ORG_ID, "demo data created");
        } else {
            tracing::info!("the database already has coupon series; demo data not added");
        }
        eprintln!();
        eprintln!(
            "  Demo org {}: open {public_url}/graphql in a browser, put this in the Headers tab:",
            demo::DEMO_ORG_ID
        );
        eprintln!("    {{\"Authorization\": \"Bearer {}\"}}", outcome.key.key);
        eprintln!(
            "  or: curl -s {public_url}/graphql -H 'Authorization: Bearer {}' \\",
            outcome.key.key
        );
        eprintln!(
            "         -H 'content-type: application/json' -d '{{\"query\":\"{{ uploadStatus(couponSeriesId: 1) {{ uploadJobStatuses {{ jobId uploadStatus actualRowCount errorCount }} }} }}\"}}'"
        );
        eprintln!();
        println!("{}", outcome.key.key);
    }
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    tracing::info!(addr = %listener.local_addr()?, database = %db::redact(url), "listening");
    // On SIGTERM/SIGINT: stop accepting, let in-flight requests finish for up to
    // `--shutdown-grace-secs`, close WebSockets, and let the worker stop at a batch boundary
    // and release its lease.
    let stop = shutdown.clone();
    // The peer's address is the client for the limits on work done before a key is known.
    let service = app
        .router()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, service).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    if let Some(addr) = args.metrics_bind {
        let metrics = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr} for /metrics"))?;
        tracing::info!(addr = %metrics.local_addr()?, "serving /metrics");
        let router = app
            .metrics_router()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(metrics, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = ?e, "the /metrics listener failed");
            }
        });
    }
    let grace = std::time::Duration::from_secs(args.shutdown_grace_secs);
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = server => served?,
        _ = deadline => tracing::warn!(?grace, "requests still in flight after the grace period; closing them"),
    }
    app.stopped(grace).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
