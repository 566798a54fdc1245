//! PostgreSQL for the tests: `DATABASE_URL` when set, else a throwaway cluster under `target/`, else a
//! Docker container; whatever is started is stopped again on every way out.

pub(crate) mod client;
mod cluster;
mod container;

pub(crate) use cluster::free_port;

use anyhow::{Result, bail};

use crate::cleanup;
use crate::tools::{self, Tool};

/// Connections one test may hold: a keeper connection plus a pool of four (app/tests/support).
const CONNECTIONS_PER_TEST: u32 = 5;
/// Connections left for the xtask, psql sessions and the server's own workers.
const RESERVED_CONNECTIONS: u32 = 10;
/// PostgreSQL's default `max_connections`, assumed for a server we did not start.
const DEFAULT_MAX_CONNECTIONS: u32 = 100;
/// `max_connections` of the servers we start.
const MAX_CONNECTIONS: u32 = 100;

/// Settings for a server that lives for one run: speed over durability, loopback only.
fn server_settings() -> Vec<String> {
    let mut settings: Vec<String> = [
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "listen_addresses=127.0.0.1",
        "log_min_messages=warning",
    ]
    .map(String::from)
    .into();
    settings.push(format!("max_connections={MAX_CONNECTIONS}"));
    settings
}

/// A server the tests can use, and what stops it (nothing, for `DATABASE_URL`).
#[derive(Debug)]
pub(crate) struct Database {
    pub(crate) url: String,
    pub(crate) max_connections: u32,
    /// Where a throwaway cluster keeps its files.
    pub(crate) cluster_dir: Option<camino::Utf8PathBuf>,
    /// Stops what was started, in order, when the database is dropped.
    _stop: Vec<cleanup::Guard>,
}

impl Database {
    /// How many tests may run at once without exhausting the server's connections.
    pub(crate) fn test_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        test_threads(cores, self.max_connections)
    }
}

/// Two tests per core: most of a test's time is spent waiting on the processes it starts (deploys, health
/// checks, servers), so one per core leaves the cores half idle.
fn test_threads(cores: usize, max_connections: u32) -> usize {
    let budget = max_connections.saturating_sub(RESERVED_CONNECTIONS) / CONNECTIONS_PER_TEST;
    (cores * 2).min(usize::try_from(budget).unwrap_or(usize::MAX)).max(1)
}

/// What `provide` needs from the tool table: the server binaries, unless `DATABASE_URL` or a Docker
/// engine serves instead.
pub(crate) fn needs() -> Vec<&'static Tool> {
    let served = std::env::var("DATABASE_URL").is_ok_and(|url| !url.trim().is_empty())
        || (cluster::Binaries::find().is_none() && container::docker_usable());
    if served { Vec::new() } else { vec![&tools::POSTGRES_SERVER] }
}

/// The three ways, in order of preference.
pub(crate) fn provide() -> Result<Database> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.trim().is_empty()
    {
        println!("postgres: using DATABASE_URL={} (nothing started)", redact(&url));
        return Ok(Database { url, max_connections: DEFAULT_MAX_CONNECTIONS, cluster_dir: None, _stop: Vec::new() });
    }
    if let Some(binaries) = cluster::Binaries::find() {
        return cluster::start(&binaries);
    }
    if container::docker_usable() {
        return container::start();
    }
    bail!(
        "no PostgreSQL for the tests. Any of these works:\n  \
         1. set DATABASE_URL to a server you run (e.g. postgres://postgres@localhost:5432/postgres);\n  \
         2. install the server binaries so initdb and pg_ctl are found (on PATH, /usr/lib/postgresql/*/bin, \
         or Homebrew's postgresql@*): `apt-get install postgresql` or `brew install postgresql@16`;\n  \
         3. start a Docker engine: the xtask then runs a pinned postgres image."
    )
}

/// `cargo xtask postgres`: a server for manual work, until Ctrl-C.
pub(crate) fn serve_until_interrupted() -> Result<()> {
    let database = provide()?;
    println!("DATABASE_URL={}", database.url);
    let Some(dir) = &database.cluster_dir else {
        return Ok(());
    };
    println!("PGDATA={dir}/data");
    println!("press Ctrl-C to stop and remove it");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    loop {
        // The signal handler stops the server and exits.
        std::thread::park();
    }
}

/// The URL with any password replaced, for printing.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/app"), "postgres://app:***@db:5432/app");
        assert_eq!(redact("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn test_threads_stay_under_the_connection_limit() {
        assert_eq!(test_threads(2, 100), 4);
        assert_eq!(test_threads(64, 100), 18);
        assert_eq!(test_threads(8, 20), 2);
        assert_eq!(test_threads(8, 5), 1);
        for cores in 1..=128 {
            let threads = test_threads(cores, 100);
            assert!(u32::try_from(threads).expect("small") * CONNECTIONS_PER_TEST <= 100 - RESERVED_CONNECTIONS);
        }
    }
}
