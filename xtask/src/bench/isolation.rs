//! What isolating one test costs: a migrated schema of its own (what `app/tests/support` gives each
//! test) against a database of its own, each created, migrated and dropped, timed end to end.

use std::time::Instant;

use anyhow::Result;

use super::report::{Isolation, Stat};
use crate::postgres::client;

pub(crate) fn measure(server_url: &str, runs: usize) -> Result<Isolation> {
    let (mut schema, mut database) = (Vec::new(), Vec::new());
    // Interleaved, so that a busy moment of the machine weighs on both alike.
    for run in 0..runs {
        let name = format!("bench_isolation_{}_{run}", std::process::id());
        schema.push(timed(|| per_schema(server_url, &name))?);
        database.push(timed(|| per_database(server_url, &name))?);
    }
    Ok(Isolation { runs, schema_ms: Stat::of(&schema), database_ms: Stat::of(&database) })
}

fn timed(work: impl FnOnce() -> Result<()>) -> Result<f64> {
    let started = Instant::now();
    work()?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

fn per_schema(server_url: &str, name: &str) -> Result<()> {
    client::query(server_url, &format!("CREATE SCHEMA \"{name}\""))?;
    let separator = if server_url.contains('?') { '&' } else { '?' };
    client::apply_migrations(&format!("{server_url}{separator}options=-csearch_path%3D{name}"))?;
    client::query(server_url, &format!("DROP SCHEMA \"{name}\" CASCADE"))?;
    Ok(())
}

fn per_database(server_url: &str, name: &str) -> Result<()> {
    client::query(server_url, &format!("CREATE DATABASE \"{name}\""))?;
    client::apply_migrations(&client::with_database(server_url, name)?)?;
    client::query(server_url, &format!("DROP DATABASE \"{name}\""))?;
    Ok(())
}
