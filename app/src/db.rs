//! The connection pool (limits, lifetimes, statement timeout, PgBouncer mode) and the embedded
//! migrations: applying them with a lock timeout, tolerating newer ones, and listing the ones a
//! database lacks.

use std::str::FromStr;

use anyhow::Context as _;
use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{Connection as _, PgConnection, PgPool};

use crate::config::DatabaseConfig;

/// Every migration under `app/migrations`, compiled into the binary. Applied migrations it does not
/// know are ignored: a newer release applied them, and this one must still migrate and serve when it
/// is rolled back to (expand-only migrations keep the older code working on the newer schema). A
/// known migration whose checksum differs is still refused.
pub fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
}

/// The host `url` reaches over the network without requiring TLS (an sslmode below `require`), unless
/// it is this machine: on the way there the password and every row could be read or changed.
pub fn unencrypted_remote_host(url: &str) -> Option<String> {
    let options = PgConnectOptions::from_str(url).ok()?;
    let host = options.get_host();
    let local = options.get_socket().is_some()
        || host == "localhost"
        || host.starts_with('/')
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let required = matches!(options.get_ssl_mode(), PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull);
    (!local && !required).then(|| host.to_owned())
}

/// Applies the pending migrations on one connection with `lock_timeout` set: a migration that cannot
/// get its lock fails (and is retried by the next deploy) rather than stall every request behind it.
/// No statement timeout: a migration may take long once it holds its locks.
pub async fn migrate(config: &DatabaseConfig) -> anyhow::Result<()> {
    let mut connection = connect(config).await?;
    let lock_timeout = format!("SET lock_timeout = '{}ms'", config.migration_lock_timeout.as_millis());
    sqlx::raw_sql(&lock_timeout).execute(&mut connection).await?;
    sqlx::raw_sql("SET statement_timeout = 0").execute(&mut connection).await?;
    apply(&mut connection).await
}

/// Runs the migrator on `connection`, first saying in one line which applied migrations this
/// release does not know.
pub async fn apply(connection: &mut PgConnection) -> anyhow::Result<()> {
    let known: Vec<i64> = migrator().iter().map(|migration| migration.version).collect();
    let unknown: Vec<i64> = applied(connection).await?.into_iter().filter(|version| !known.contains(version)).collect();
    if !unknown.is_empty() {
        tracing::warn!(
            versions = ?unknown,
            "the database has migrations this release does not know (applied by a newer release); ignoring them"
        );
    }
    migrator().run(connection).await.context("migrating the database")?;
    Ok(())
}

/// Versions the database records as applied (none before the first migration).
async fn applied(connection: &mut PgConnection) -> anyhow::Result<Vec<i64>> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&mut *connection).await?;
    if !exists {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(connection)
        .await?)
}

/// The embedded migrations the database has not applied, as `version description`.
pub async fn pending(config: &DatabaseConfig) -> anyhow::Result<Vec<String>> {
    let mut connection = connect(config).await?;
    let applied = applied(&mut connection).await?;
    Ok(migrator()
        .iter()
        .filter(|migration| !applied.contains(&migration.version))
        .map(|migration| format!("{} {}", migration.version, migration.description))
        .collect())
}

async fn connect(config: &DatabaseConfig) -> anyhow::Result<PgConnection> {
    let options = PgConnectOptions::from_str(config.url.expose_secret()).map_err(|_| InvalidUrl)?;
    PgConnection::connect_with(&options).await.context("connecting to DATABASE_URL")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_database_must_be_reached_over_tls() {
        assert_eq!(unencrypted_remote_host("postgres://app@db.example.com/app").as_deref(), Some("db.example.com"));
        assert_eq!(
            unencrypted_remote_host("postgres://app@db.example.com/app?sslmode=prefer").as_deref(),
            Some("db.example.com")
        );
        for fine in [
            "postgres://app@db.example.com/app?sslmode=require",
            "postgres://app@db.example.com/app?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem",
            "postgres://app@localhost/app",
            "postgres://app@127.0.0.1:5432/app",
            "postgres://app@[::1]/app",
            "postgres:///app?host=/run/postgresql",
        ] {
            assert_eq!(unencrypted_remote_host(fine), None, "{fine}");
        }
    }
}
