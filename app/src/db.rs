//! The connection pool and the embedded migrations.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

/// Every migration under `app/migrations`, compiled into the binary.
pub fn migrator() -> Migrator {
    sqlx::migrate!("./migrations")
}

/// Opens a pool lazily: the service starts even while the database is down, and `/readyz` says so.
pub fn pool(database_url: &str) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new().max_connections(10).acquire_timeout(Duration::from_secs(5)).connect_lazy(database_url)
}
