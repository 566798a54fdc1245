//! The environment contract: every variable the service reads, parsed once into a typed `Config`.

use std::net::SocketAddr;

use anyhow::{Context, Result};

/// What the service runs with. Built once at start-up, then passed down.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub database_url: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`, so tests can supply their own environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let listen_addr = lookup("LISTEN_ADDR").unwrap_or_else(|| "127.0.0.1:8000".to_owned());
        let listen_addr = listen_addr
            .parse()
            .with_context(|| format!("LISTEN_ADDR={listen_addr:?} is not a socket address; use e.g. 127.0.0.1:8000"))?;
        let database_url =
            lookup("DATABASE_URL").context("DATABASE_URL is not set; use e.g. postgres://user@localhost/app")?;
        Ok(Self { listen_addr, database_url })
    }
}
