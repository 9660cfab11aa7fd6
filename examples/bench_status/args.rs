//! The command line.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Benchmark uploadStatus over HTTP against a pgbench floor of the same rows")]
pub struct Args {
    /// Runs (load + floor) on the same seeded database.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Measured seconds of load per run (after a 2 s warm-up), and of pgbench.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Concurrent keep-alive connections (and pgbench clients).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// A PostgreSQL database to connect to for `CREATE DATABASE` / `DROP DATABASE`.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub database_url: String,
    /// The server binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/coupon-upload-api")]
    pub server_bin: PathBuf,
    /// Keep the seeded database afterwards (its name is printed).
    #[arg(long)]
    pub keep_db: bool,
}
