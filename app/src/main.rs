//! `app serve | migrate`: wiring only; the logic lives in the library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "The service shipshape ships")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP on LISTEN_ADDR.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let config = app::config::Config::from_env()?;
    let pool = app::db::pool(&config.database_url)?;
    match Cli::parse().command {
        Command::Migrate => app::db::migrator().run(&pool).await.context("migrating the database")?,
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(config.listen_addr)
                .await
                .with_context(|| format!("binding LISTEN_ADDR={}", config.listen_addr))?;
            tracing::info!(addr = %config.listen_addr, "listening");
            axum::serve(listener, app::http::router(pool)).await?;
        }
    }
    Ok(())
}
