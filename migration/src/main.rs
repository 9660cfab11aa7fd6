//! `cargo run -p migration -- <up|down|status|fresh>`: the schema migrations as a
//! command, for operators. A small hand-written CLI instead of sea-orm-cli's, which
//! would add a code generator and its dependencies to every build.

use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::Database;

#[derive(Parser)]
#[command(about = "Apply or inspect coupon-upload-api's database migrations")]
struct Cli {
    /// Database URL, e.g. `sqlite://data/coupons.db?mode=rwc` or `postgres://user@host/db`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/coupon-upload-api.db?mode=rwc"
    )]
    database_url: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations (the default).
    Up {
        /// Apply at most this many.
        #[arg(short, long)]
        num: Option<u32>,
    },
    /// Roll back the last migration(s).
    Down {
        #[arg(short, long, default_value_t = 1)]
        num: u32,
    },
    /// List migrations and whether each is applied.
    Status,
    /// Drop every table, then apply all migrations.
    Fresh,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    if let Some(path) = sqlite_parent_dir(&cli.database_url) {
        std::fs::create_dir_all(path)?;
    }
    let db = Database::connect(&cli.database_url).await?;
    match cli.command.unwrap_or(Command::Up { num: None }) {
        Command::Up { num } => Migrator::up(&db, num).await?,
        Command::Down { num } => Migrator::down(&db, Some(num)).await?,
        Command::Fresh => Migrator::fresh(&db).await?,
        Command::Status => {
            for m in Migrator::get_migration_with_status(&db).await? {
                println!("{:?}\t{}", m.status(), m.name());
            }
        }
    }
    Ok(())
}

/// The folder a `sqlite://path/file.db` URL points into, so it can be created.
fn sqlite_parent_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://")?.split('?').next()?;
    let parent = std::path::Path::new(path).parent()?;
    (!parent.as_os_str().is_empty()).then(|| parent.to_path_buf())
}
