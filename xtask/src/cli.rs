//! The command line: `cargo xtask <command>`, with the pipeline's steps listed in the help.

use clap::builder::PossibleValue;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::backup::BackupArgs;
use crate::bench::BenchArgs;
use crate::deploy::{DeployArgs, RootArg};
use crate::fuzz::FuzzArgs;
use crate::preflight::InstallArgs;
use crate::restore::RestoreArgs;
use crate::restore_drill::RestoreDrillArgs;
use crate::secrets::SecretsArgs;
use crate::smoke::SmokeArgs;
use crate::steps::STEPS;
use crate::tls::TlsArgs;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "shipshape: the pipeline, deploys and operations for the service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the service locally: a throwaway PostgreSQL, migrations, `app serve`; Ctrl-C stops all.
    Dev(InstallArgs),
    /// Run the CI pipeline (the steps below), exactly as GitHub Actions does.
    Ci(CiArgs),
    /// Run the tests (no coverage) against a throwaway PostgreSQL; arguments go to the test runner.
    Test {
        #[command(flatten)]
        install: InstallArgs,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Start a throwaway PostgreSQL, print its DATABASE_URL, and remove it on Ctrl-C.
    Postgres,
    /// Write .github/workflows/ci.yml from its model in xtask/src/workflows.rs.
    Workflows {
        /// Fail if the committed file differs from the generated one instead of writing it.
        #[arg(long)]
        check: bool,
    },
    /// Write app/openapi.json from the service's code (`app openapi`).
    Openapi {
        /// Fail if the committed file differs from the generated one instead of writing it.
        #[arg(long)]
        check: bool,
    },
    /// Lint the migrations changed since the base with squawk (the migrations step without its round trip).
    LintMigrations {
        /// Default: MIGRATIONS_BASE, else the merge-base with main, or HEAD~1 on main.
        #[arg(long, value_name = "REF")]
        base: Option<String>,
    },
    /// Install every prerequisite of the pipeline that is missing: pinned cargo and PyPI tools, system
    /// packages (through sudo when not root). `ci`, `test` and `dev` do this themselves for what they need.
    Setup,
    /// Ship the service through the deploy state machine (`--target host|kubernetes|fly`); also status, lock, unlock.
    Deploy(DeployArgs),
    /// Put the previous release back into service (host target).
    Rollback(RootArg),
    /// Back up DATABASE_URL: pg_dump -Fc, verified, checksummed, old backups rotated.
    Backup(BackupArgs),
    /// Restore a backup over DATABASE_URL (a backup of the current data is taken first).
    Restore(RestoreArgs),
    /// Back up DATABASE_URL, restore into a scratch database, compare every table, report the time
    /// (--from-latest: the newest off-site backup instead).
    RestoreDrill(RestoreDrillArgs),
    /// Check a running service from the outside: health, HTTPS, headers, hosts, auth, CORS.
    Smoke(SmokeArgs),
    /// `secrets check --target host|kubernetes|fly`: every variable a deployed service requires is in the
    /// target's store (names only, never a value).
    Secrets(SecretsArgs),
    /// `tls issue|renew`: ACME certificates for the nginx edge; `tls expiry`: the served certificate's expiry as a metric.
    Tls(TlsArgs),
    /// Measure the release service against the bare limits; write docs/benchmarks.md (--check: compare).
    Bench(BenchArgs),
    /// Run the fuzz targets of fuzz/ for a bounded time each (nightly toolchain, cargo-fuzz).
    Fuzz(FuzzArgs),
}

#[derive(Args, Debug, Default)]
pub(crate) struct CiArgs {
    /// Run every selected step even after a failure, then report all failures.
    #[arg(long)]
    pub(crate) keep_going: bool,
    /// Leave out this step (repeatable).
    #[arg(long, value_name = "STEP", value_parser = step_names())]
    pub(crate) skip: Vec<String>,
    /// Run only this step (repeatable).
    #[arg(long, value_name = "STEP", value_parser = step_names(), conflicts_with = "skip")]
    pub(crate) only: Vec<String>,
    /// The revision whose release must work on the new schema (the migrations step). Default:
    /// MIGRATIONS_BASE, else the merge-base with main, or HEAD~1 on main.
    #[arg(long, value_name = "REF")]
    pub(crate) base: Option<String>,
    #[command(flatten)]
    pub(crate) install: InstallArgs,
}

fn step_names() -> clap::builder::PossibleValuesParser {
    STEPS.iter().map(|step| PossibleValue::new(step.name).help(step.about)).collect::<Vec<_>>().into()
}

/// One line per step, for `cargo xtask --help` and `cargo xtask ci --help`.
pub(crate) fn steps_help() -> String {
    let width = STEPS.iter().map(|step| step.name.len()).max().unwrap_or(0);
    let lines: Vec<String> = STEPS.iter().map(|step| format!("  {:width$}  {}", step.name, step.about)).collect();
    format!("Pipeline steps, in order:\n{}", lines.join("\n"))
}

pub(crate) fn parse() -> Command {
    let command = Cli::command().after_help(steps_help()).mut_subcommand("ci", |ci| ci.after_help(steps_help()));
    let matches = command.get_matches();
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli.command,
        Err(error) => error.exit(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_every_step_on_its_own_line() {
        let help = steps_help();
        for step in STEPS {
            assert!(help.lines().any(|line| line.trim_start().starts_with(step.name) && line.contains(step.about)));
        }
    }

    #[test]
    fn unknown_step_is_refused() {
        let result = Cli::try_parse_from(["xtask", "ci", "--only", "lint"]);
        assert!(result.is_err());
    }

    #[test]
    fn installing_can_be_turned_off_for_ci_test_and_dev() {
        for args in [
            &["xtask", "ci", "--no-install"][..],
            &["xtask", "test", "--no-install", "health"],
            &["xtask", "dev", "--no-install"],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
        assert!(Cli::try_parse_from(["xtask", "ci", "--no-install", "--install-system"]).is_err());
    }

    #[test]
    fn only_and_skip_cannot_be_combined() {
        assert!(Cli::try_parse_from(["xtask", "ci", "--only", "fmt", "--skip", "test"]).is_err());
    }
}
