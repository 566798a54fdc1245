//! Talking to a running server with its client programs (`psql`, `pg_dump`, `pg_restore`): queries,
//! scratch databases and URLs naming another database on the same server.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::cleanup;

/// A client program, looked up like the server binaries (PATH first, then the usual places), so a
/// machine with only the server packages still works.
pub(crate) fn program(name: &str) -> Result<Command> {
    if which::which(name).is_ok() {
        return Ok(Command::new(name));
    }
    super::cluster::Binaries::find()
        .map(|binaries| binaries.path(name))
        .filter(|path| path.is_file())
        .map(Command::new)
        .with_context(|| {
            format!("`{name}` was not found: install the PostgreSQL client (`apt-get install postgresql-client`)")
        })
}

/// Runs `command`, returning its stdout; a failure carries its stderr and `what` it was doing.
pub(crate) fn output(mut command: Command, what: &str) -> Result<String> {
    let output = command.output().with_context(|| format!("{what}: could not start {:?}", command.get_program()))?;
    if !output.status.success() {
        bail!("{what} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `sql` against `url` and returns the rows, one line each, columns separated by `|`.
pub(crate) fn query(url: &str, sql: &str) -> Result<Vec<String>> {
    let mut psql = program("psql")?;
    psql.args(["--no-psqlrc", "--quiet", "--tuples-only", "--no-align", "--set", "ON_ERROR_STOP=1"]).args([
        "--dbname",
        url,
        "--command",
        sql,
    ]);
    let out = output(psql, &format!("psql `{}`", first_line(sql)))?;
    Ok(out.lines().filter(|line| !line.is_empty()).map(str::to_owned).collect())
}

fn first_line(sql: &str) -> &str {
    sql.lines().next().unwrap_or_default()
}

/// Applies the service's migrations (`app/migrations/*.sql`, in order) to `url` through `psql`, in one
/// transaction; returns how many there were.
pub(crate) fn apply_migrations(url: &str) -> Result<usize> {
    let migrations = crate::project::root().join("app/migrations");
    let mut files: Vec<camino::Utf8PathBuf> = migrations
        .read_dir_utf8()
        .with_context(|| format!("reading {migrations}"))?
        .flatten()
        .map(|entry| entry.path().to_owned())
        .filter(|path| path.extension() == Some("sql"))
        .collect();
    files.sort_unstable();
    let mut psql = program("psql")?;
    psql.args(["--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", "--single-transaction", "--dbname", url]);
    for file in &files {
        psql.args(["--file", file.as_str()]);
    }
    output(psql, &format!("applying the {} migrations of {migrations}", files.len()))?;
    Ok(files.len())
}

/// `url` with its database name replaced by `database` (query parameters kept).
pub(crate) fn with_database(url: &str, database: &str) -> Result<String> {
    let (base, params) = url.split_once('?').map_or((url, None), |(base, params)| (base, Some(params)));
    let authority_start = base.find("://").context("DATABASE_URL is not a postgres:// URL")? + 3;
    let path_start = base[authority_start..].find('/').map_or(base.len(), |index| authority_start + index);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(params) = params {
        out.push('?');
        out.push_str(params);
    }
    Ok(out)
}

/// A database created for one job on the server of `url`, dropped again on every way out.
pub(crate) struct ScratchDatabase {
    pub(crate) url: String,
    _drop: cleanup::Guard,
}

impl ScratchDatabase {
    /// Creates `name` (replacing a leftover of a killed run) next to the database of `url`.
    pub(crate) fn create(url: &str, name: &str) -> Result<Self> {
        let drop_sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        query(url, &drop_sql)?;
        query(url, &format!("CREATE DATABASE \"{name}\""))?;
        let guard = cleanup::register({
            let url = url.to_owned();
            move || {
                if let Err(error) = query(&url, &drop_sql) {
                    eprintln!("warning: could not drop the scratch database: {error:#}");
                }
            }
        });
        Ok(Self { url: with_database(url, name)?, _drop: guard })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_database_on_the_same_server() {
        assert_eq!(with_database("postgres://u:p@h:5432/app", "x").expect("url"), "postgres://u:p@h:5432/x");
        assert_eq!(
            with_database("postgres://h/app?sslmode=require", "x").expect("url"),
            "postgres://h/x?sslmode=require"
        );
        assert_eq!(with_database("postgresql://h:1", "x").expect("url"), "postgresql://h:1/x");
        assert!(with_database("h:1/app", "x").is_err());
    }
}
