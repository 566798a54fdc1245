//! The supply-chain audit: `cargo deny check` (advisories, licenses, bans, sources). Without GitHub
//! access it reads an offline RustSec database named by `ADVISORY_DB`; it never skips advisories
//! quietly.

use std::process::Command;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

/// A clone or git bundle of github.com/RustSec/advisory-db, for machines without GitHub access.
pub(crate) const ADVISORY_DB_VAR: &str = "ADVISORY_DB";
/// The directory cargo-deny (0.20) reads for the default database URL, under its `db-path`.
const DB_DIR_NAME: &str = "advisory-db-3157b0e258782691";

pub(crate) fn run(sh: &Shell, cargo: &str) -> Result<()> {
    match std::env::var(ADVISORY_DB_VAR) {
        Ok(source) if !source.trim().is_empty() => {
            let db = install_offline(Utf8Path::new(&source))?;
            println!("advisories: OFFLINE, from {source}: {}", describe(&db)?);
            // --offline also keeps cargo metadata offline, which needs every platform's crates on disk.
            cmd!(sh, "{cargo} fetch --locked").run()?;
            cmd!(sh, "{cargo} deny --locked --offline check").run()?;
        }
        _ => {
            println!(
                "advisories: fetching the RustSec database from GitHub \
                 (without access, set {ADVISORY_DB_VAR} to a clone or bundle of it)"
            );
            cmd!(sh, "{cargo} deny --locked check").run()?;
        }
    }
    Ok(())
}

/// `$CARGO_HOME/advisory-dbs`, cargo-deny's default `db-path`.
fn db_root() -> Result<Utf8PathBuf> {
    let home = match std::env::var("CARGO_HOME") {
        Ok(home) if !home.is_empty() => Utf8PathBuf::from(home),
        _ => Utf8PathBuf::from(std::env::var("HOME").context("neither CARGO_HOME nor HOME is set")?).join(".cargo"),
    };
    Ok(home.join("advisory-dbs"))
}

/// Clones `source` (a bundle file or a repository) to where cargo-deny reads it, replacing what was there.
fn install_offline(source: &Utf8Path) -> Result<Utf8PathBuf> {
    if !source.exists() {
        bail!(
            "{ADVISORY_DB_VAR}={source} does not exist: point it at a clone or git bundle of the RustSec advisory-db"
        );
    }
    let root = db_root()?;
    std::fs::create_dir_all(&root).with_context(|| format!("creating {root}"))?;
    let db = root.join(DB_DIR_NAME);
    let staging = root.join(format!("{DB_DIR_NAME}.incoming"));
    let _ = std::fs::remove_dir_all(&staging);
    let status = Command::new("git")
        .args(["-c", "init.defaultBranch=main", "clone", "--quiet"])
        .arg(source)
        .arg(&staging)
        .status()?;
    if !status.success() {
        bail!("{ADVISORY_DB_VAR}={source}: `git clone` failed; it must be a git bundle or repository");
    }
    if !staging.join("crates").is_dir() {
        bail!("{ADVISORY_DB_VAR}={source} has no crates/ directory: it is not the RustSec advisory-db");
    }
    let _ = std::fs::remove_dir_all(&db);
    std::fs::rename(&staging, &db).with_context(|| format!("moving the database into {db}"))?;
    Ok(db)
}

/// How many advisories the database holds and how recent it is.
fn describe(db: &Utf8Path) -> Result<String> {
    let mut count = 0;
    for krate in std::fs::read_dir(db.join("crates"))? {
        count += std::fs::read_dir(krate?.path())?.count();
    }
    if count == 0 {
        bail!("the advisory database at {db} holds no advisories");
    }
    let output = Command::new("git").args(["-C", db.as_str(), "log", "-1", "--format=%h of %cs"]).output()?;
    Ok(format!("{count} advisories, commit {}", String::from_utf8_lossy(&output.stdout).trim()))
}
