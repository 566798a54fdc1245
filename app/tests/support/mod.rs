//! Test support: each test gets its own PostgreSQL schema, migrated, and dropped when the test ends
//! (also when it panics). Schemas of killed runs are swept by the next test to start.
//!
//! The server comes from `DATABASE_URL`, which `cargo xtask test` / `cargo xtask ci` provide.
#![allow(dead_code, unreachable_pub)]

pub mod api;
pub mod process;
pub mod receiver;
pub mod relay;
pub mod service;

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// Every test schema starts with this, so a sweep never touches anything else.
const SCHEMA_PREFIX: &str = "shipshape_test_";
/// A test's pool; with the keeper connection, five connections per test (the xtask caps test
/// threads so that tests × 5 stays under the server's `max_connections`).
const POOL_SIZE: u32 = 4;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A migrated schema of its own. Its name carries the backend pid of `keeper`, the connection that
/// lives as long as the test: a schema whose keeper is gone belongs to a dead run.
pub struct TestDb {
    pub pool: PgPool,
    pub schema: String,
    /// Holds the backend pid the schema is named for; it closes when the test ends.
    _keeper: PgConnection,
    url: String,
}

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL is not set: run the tests with `cargo xtask test` (it starts a throwaway PostgreSQL) or point DATABASE_URL at a server")
    })
}

impl TestDb {
    pub async fn new() -> Self {
        let url = database_url();
        let mut keeper = PgConnection::connect(&url).await.expect("connecting to DATABASE_URL");
        sweep(&mut keeper).await;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut keeper).await.expect("backend pid");
        let schema = format!("{SCHEMA_PREFIX}{pid}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        keeper.execute(format!(r#"CREATE SCHEMA "{schema}""#).as_str()).await.expect("creating the test schema");

        let options =
            PgConnectOptions::from_str(&url).expect("DATABASE_URL parses").options([("search_path", &schema)]);
        let pool = PgPoolOptions::new().max_connections(POOL_SIZE).connect_with(options).await.expect("test pool");
        let mut migrator = app::db::migrator();
        // Parallel tests migrate different schemas; the database-wide migration lock would serialise them.
        migrator.set_locking(false);
        migrator.run(&pool).await.expect("migrating the test schema");
        Self { pool, schema, _keeper: keeper, url }
    }
}

impl TestDb {
    /// A `DATABASE_URL` whose connections use this test's schema (for a spawned `app`).
    pub fn url_for_schema(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}options=-c%20search_path%3D{}", self.url, self.schema)
    }
}

/// Drops the test schemas whose keeper connection no longer exists.
async fn sweep(conn: &mut PgConnection) {
    let orphans: Vec<String> = sqlx::query_scalar(
        "SELECT nspname FROM pg_namespace
         WHERE starts_with(nspname, $1)
           AND split_part(substr(nspname, length($1) + 1), '_', 1)::int
               NOT IN (SELECT pid FROM pg_stat_activity)",
    )
    .bind(SCHEMA_PREFIX)
    .fetch_all(&mut *conn)
    .await
    .expect("listing leftover test schemas");
    for schema in orphans {
        // Another test may be sweeping the same schema: losing that race is fine.
        let _ = conn.execute(format!(r#"DROP SCHEMA IF EXISTS "{schema}" CASCADE"#).as_str()).await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // The test's runtime is blocked inside this call, so its connections cannot make progress
        // here: a fresh connection on a thread and runtime of its own drops the schema. Idle pool
        // connections hold no locks, and close when the pool drops right after.
        let (schema, url) = (self.schema.clone(), self.url.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let mut conn = PgConnection::connect(&url).await.expect("connecting to drop the test schema");
                conn.execute(format!(r#"DROP SCHEMA IF EXISTS "{schema}" CASCADE"#).as_str())
                    .await
                    .expect("dropping the test schema");
                let _ = conn.close().await;
            });
        });
        if cleanup.join().is_err() && !std::thread::panicking() {
            panic!("could not drop test schema {}", self.schema);
        }
    }
}
