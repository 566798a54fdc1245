//! The connection pool (limits, lifetimes, statement timeout, PgBouncer mode) and the embedded
//! migrations.

use std::str::FromStr;

use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::DatabaseConfig;

/// Every migration under `app/migrations`, compiled into the binary.
pub fn migrator() -> Migrator {
    sqlx::migrate!("./migrations")
}

/// `DATABASE_URL` could not be parsed. The URL itself is never shown: it may hold a password.
#[derive(Debug)]
pub struct InvalidUrl;

impl std::fmt::Display for InvalidUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "DATABASE_URL is not a valid PostgreSQL URL (fix: use postgres://user[:password]@host[:port]/database)",
        )
    }
}

impl std::error::Error for InvalidUrl {}

/// Opens a pool lazily: the service starts while the database is down, and `/readyz` says so.
pub fn pool(config: &DatabaseConfig) -> Result<PgPool, InvalidUrl> {
    let mut options = PgConnectOptions::from_str(config.url.expose_secret()).map_err(|_| InvalidUrl)?;
    if config.pgbouncer {
        // Transaction pooling hands each transaction to any server connection: prepared statements
        // would not be there, and PgBouncer refuses unknown startup parameters (set
        // statement_timeout on the role instead: ALTER ROLE app SET statement_timeout = '15s').
        options = options.statement_cache_capacity(0);
    } else {
        let timeout = config.statement_timeout.as_millis().to_string();
        options = options.options([("statement_timeout", timeout.as_str())]);
    }
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(config.min_connections)
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(Some(config.idle_timeout))
        .max_lifetime(Some(config.max_lifetime))
        .connect_lazy_with(options))
}
