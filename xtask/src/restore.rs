//! `cargo xtask restore FILE`: replaces the data of `DATABASE_URL` with a verified backup, only when told
//! twice for production, and only after taking a backup of what it is about to replace.

use std::time::Instant;

use anyhow::{Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use clap::Args;

use crate::postgres::client;
use crate::process;
use crate::{backup, postgres};

#[derive(Args, Debug)]
pub(crate) struct RestoreArgs {
    /// The dump to restore, written by `cargo xtask backup` (its `.sha256` must sit beside it).
    pub(crate) file: Utf8PathBuf,
    /// Confirm that the database's current data is to be replaced.
    #[arg(long)]
    pub(crate) yes: bool,
    /// The target is production (also assumed when APP_ENV=production).
    #[arg(long)]
    pub(crate) production: bool,
    /// The second confirmation a production restore needs.
    #[arg(long)]
    pub(crate) i_know_this_is_production: bool,
    /// Where the pre-restore backup goes.
    #[arg(long, default_value = "backups")]
    pub(crate) dir: Utf8PathBuf,
}

pub(crate) fn run(args: &RestoreArgs) -> Result<()> {
    backup::verify(&args.file)?;
    let url = backup::database_url()?;
    let app_env = std::env::var("APP_ENV").unwrap_or_default();
    confirm(args, &app_env, &postgres::redact(&url))?;
    let before = backup::create(&url, &args.dir)?;
    println!("restore: the current data is saved in {before}");
    let started = Instant::now();
    restore_into(&url, &args.file)?;
    println!(
        "restore: {} restored in {:.2} s; to go back: cargo xtask restore {before} --yes",
        args.file,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Refuses unless the operator confirmed, twice for production.
fn confirm(args: &RestoreArgs, app_env: &str, target: &str) -> Result<()> {
    if !args.yes {
        bail!(
            "{} is a valid backup, and restoring it replaces the data in {target}: rerun with --yes to do it",
            args.file
        );
    }
    let production = args.production || app_env == "production";
    if production && !args.i_know_this_is_production {
        bail!(
            "{target} is production (APP_ENV=production or --production): rerun with --yes --i-know-this-is-production to restore {} over it",
            args.file
        );
    }
    Ok(())
}

/// Restores `file` over the database of `url` in one transaction: either all of it or nothing.
pub(crate) fn restore_into(url: &str, file: &Utf8Path) -> Result<()> {
    let mut pg_restore = client::connect("pg_restore", url)?;
    pg_restore
        .args(["--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error"])
        .arg(file.as_str());
    process::output(pg_restore, &format!("pg_restore of {file}")).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(yes: bool, production: bool, sure: bool) -> RestoreArgs {
        RestoreArgs {
            file: "backups/db.dump".into(),
            yes,
            production,
            i_know_this_is_production: sure,
            dir: "backups".into(),
        }
    }

    #[test]
    fn a_restore_needs_yes_and_production_needs_more() {
        let refused = confirm(&args(false, false, false), "development", "db").expect_err("no --yes");
        assert!(refused.to_string().contains("rerun with --yes"), "{refused}");
        assert!(confirm(&args(true, false, false), "development", "db").is_ok());
        for (production_flag, app_env) in [(true, "staging"), (false, "production")] {
            let refused = confirm(&args(true, production_flag, false), app_env, "db").expect_err("production");
            assert!(refused.to_string().contains("--i-know-this-is-production"), "{refused}");
            assert!(confirm(&args(true, production_flag, true), app_env, "db").is_ok());
        }
    }
}
