//! Talking to a running server with its client programs (`psql`, `pg_dump`, `pg_restore`): queries,
//! scratch databases and URLs naming another database on the same server.

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{cleanup, process};

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

/// `name` (psql, pg_dump, pg_restore) connecting to `url`: the URL goes on the command line without
/// its password, which reaches the child in `PGPASSWORD` only. Any user can read a command line in
/// `/proc/<pid>/cmdline`; a process's environment only its owner and root.
pub(crate) fn connect(name: &str, url: &str) -> Result<Command> {
    let (url, password) = without_password(url)?;
    let mut command = program(name)?;
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command.arg("--dbname").arg(url);
    Ok(command)
}

/// `url` without the password of its userinfo, and that password, percent-decoded as libpq decodes it.
fn without_password(url: &str) -> Result<(String, Option<String>)> {
    let authority_start = url.find("://").context("DATABASE_URL is not a postgres:// URL")? + 3;
    let authority_end = url[authority_start..].find(['/', '?']).map_or(url.len(), |index| authority_start + index);
    let authority = &url[authority_start..authority_end];
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return Ok((url.to_owned(), None));
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return Ok((url.to_owned(), None));
    };
    let stripped = format!("{}{user}@{host}{}", &url[..authority_start], &url[authority_end..]);
    Ok((stripped, Some(percent_decode(password))))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `sql` against `url` and returns the rows, one line each, columns separated by `|`.
pub(crate) fn query(url: &str, sql: &str) -> Result<Vec<String>> {
    let mut psql = connect("psql", url)?;
    psql.args(["--no-psqlrc", "--quiet", "--tuples-only", "--no-align", "--set", "ON_ERROR_STOP=1", "--command", sql]);
    let out = process::output(psql, &format!("psql `{}`", first_line(sql)))?;
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
    let mut psql = connect("psql", url)?;
    psql.args(["--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", "--single-transaction"]);
    for file in &files {
        psql.args(["--file", file.as_str()]);
    }
    process::output(psql, &format!("applying the {} migrations of {migrations}", files.len()))?;
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

    #[test]
    fn the_password_leaves_the_url_for_the_environment() {
        let split = |url| without_password(url).expect("a URL");
        assert_eq!(
            split("postgres://app:s%40cr%3At@db:5432/app?sslmode=require"),
            ("postgres://app@db:5432/app?sslmode=require".to_owned(), Some("s@cr:t".to_owned()))
        );
        assert_eq!(split("postgres://app@db/app"), ("postgres://app@db/app".to_owned(), None));
        assert_eq!(split("postgresql://db"), ("postgresql://db".to_owned(), None));
        let psql = connect("psql", "postgres://app:secret@db/app").expect("psql");
        assert!(psql.get_args().all(|arg| !arg.to_string_lossy().contains("secret")));
        assert!(psql.get_envs().any(|(name, value)| name == "PGPASSWORD" && value == Some("secret".as_ref())));
    }
}
