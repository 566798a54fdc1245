//! The pipeline as data: one ordered list drives `cargo xtask ci`, the generated workflow and the summary.

use anyhow::{Context as _, Result, bail};
use camino::Utf8PathBuf;
use xshell::{Shell, cmd};

use crate::postgres::{self, Database};
use crate::redis::{self, Redis};
use crate::tools::{self, Tool};
use crate::{audit, coverage, diagnostics, migrations, project, report::Report, restore_drill, workflows};

pub(crate) struct Step {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    /// A PostgreSQL server must be up before the step starts.
    pub(crate) needs_postgres: bool,
    /// A Redis server too (the shared rate-limit tests).
    pub(crate) needs_redis: bool,
    /// Cargo tools the step runs (installed by `cargo xtask setup`).
    pub(crate) tools: &'static [&'static Tool],
    /// The one-line fix printed when the step fails.
    pub(crate) hint: &'static str,
    pub(crate) run: fn(&mut Context) -> Result<()>,
}

pub(crate) const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        about: "code is formatted (cargo fmt --check; never rewrites files)",
        needs_postgres: false,
        needs_redis: false,
        tools: &[],
        hint: "run `cargo fmt --all` and commit the result",
        run: fmt,
    },
    Step {
        name: "clippy",
        about: "no lint in any target (cargo clippy --all-targets -D warnings)",
        needs_postgres: false,
        needs_redis: false,
        tools: &[],
        hint: "fix the lints above; many go away with `cargo clippy --fix --workspace --all-targets --allow-dirty`",
        run: clippy,
    },
    Step {
        name: "test",
        about: "every test passes, run once under coverage instrumentation, on a real PostgreSQL",
        needs_postgres: true,
        needs_redis: true,
        tools: &[&tools::LLVM_COV],
        hint: "rerun the failing tests with `cargo xtask test NAME`",
        run: test,
    },
    Step {
        name: "restore-drill",
        about: "a backup of a migrated, seeded database restores into an identical copy",
        needs_postgres: true,
        needs_redis: false,
        tools: &[],
        hint: "reproduce with `DATABASE_URL=... cargo xtask restore-drill` against a migrated database",
        run: restore_drill,
    },
    Step {
        name: "migrations",
        about: "migrations changed since the base pass squawk, and the base's release works on the new schema",
        // Started by the step only when a migration changed: with none, it takes no time at all.
        needs_postgres: false,
        needs_redis: false,
        tools: &[&tools::SQUAWK],
        hint: "read docs/migrations.md (expand now, contract in a later deploy); rerun with `cargo xtask ci --only migrations`",
        run: migrations::step,
    },
    Step {
        name: "coverage",
        about: "line coverage of the test run meets the gate in xtask/src/coverage.rs",
        needs_postgres: false,
        needs_redis: false,
        tools: &[],
        hint: "add tests for the uncovered lines shown in target/coverage/html/index.html",
        run: coverage_gate,
    },
    Step {
        name: "audit",
        about: "dependencies pass cargo-deny: advisories, licenses, bans, sources",
        needs_postgres: false,
        needs_redis: false,
        tools: &[&tools::DENY],
        hint: "read the cargo-deny report above; without GitHub access set ADVISORY_DB to a RustSec advisory-db clone or bundle",
        run: audit,
    },
    Step {
        name: "workflows",
        about: ".github/workflows/ci.yml matches its model (and passes actionlint and zizmor when installed)",
        needs_postgres: false,
        needs_redis: false,
        tools: &[],
        hint: "run `cargo xtask workflows` and commit the result; never edit the YAML by hand",
        run: workflows_check,
    },
    Step {
        name: "build",
        about: "release build of the service",
        needs_postgres: false,
        needs_redis: false,
        tools: &[],
        hint: "reproduce with `cargo build --release --locked --package app`",
        run: build,
    },
];

/// What the steps share while the pipeline runs.
pub(crate) struct Context {
    pub(crate) sh: Shell,
    pub(crate) cargo: String,
    pub(crate) report: Report,
    pub(crate) database: Option<Database>,
    pub(crate) redis: Option<Redis>,
    /// Line coverage in percent, once the coverage step has read it.
    pub(crate) coverage: Option<f64>,
    /// What the test runner reported, once the test step has run.
    pub(crate) tests: Option<diagnostics::TestCounts>,
    /// `--base`: the revision whose release must work on the new schema (the migrations step).
    pub(crate) base: Option<String>,
}

impl Context {
    pub(crate) fn new(report: Report) -> Result<Self> {
        let sh = Shell::new()?;
        sh.change_dir(project::root());
        Ok(Self {
            sh,
            cargo: project::cargo(),
            report,
            database: None,
            redis: None,
            coverage: None,
            tests: None,
            base: None,
        })
    }

    /// Makes sure what `step` needs is there before it runs.
    pub(crate) fn prepare(&mut self, step: &Step) -> Result<()> {
        for tool in step.tools {
            tool.require()?;
        }
        if step.needs_postgres && self.database.is_none() {
            self.database = Some(postgres::provide()?);
        }
        if step.needs_redis && self.redis.is_none() {
            self.redis = Some(redis::provide()?);
        }
        Ok(())
    }
}

fn fmt(ctx: &mut Context) -> Result<()> {
    let cargo = &ctx.cargo;
    cmd!(ctx.sh, "{cargo} fmt --all --check").run()?;
    Ok(())
}

fn clippy(ctx: &mut Context) -> Result<()> {
    let args = ["clippy", "--workspace", "--all-targets", "--locked", "--message-format=json", "--", "-D", "warnings"];
    let report = &mut ctx.report;
    let ok = diagnostics::stream(&duct::cmd(&ctx.cargo, args).dir(project::root()), |line| {
        match diagnostics::compiler_message(line) {
            Some(message) => {
                print!("{}", message.rendered);
                if let Some(annotation) = message.annotation {
                    report.annotate(&annotation);
                }
            }
            // Cargo's other JSON records (artifacts, build scripts) are noise here.
            None if line.starts_with('{') => {}
            None => println!("{line}"),
        }
    })?;
    if !ok {
        bail!("clippy reported problems");
    }
    Ok(())
}

/// The test runner's arguments: nextest when installed, else libtest; under llvm-cov when `coverage`.
fn runner_args(coverage: bool, extra: &[String], threads: usize) -> Vec<String> {
    let nextest = tools::nextest_installed();
    let prefix: &[&str] = match (coverage, nextest) {
        (true, true) => &["llvm-cov", "nextest", "--no-report"],
        (true, false) => &["llvm-cov", "test", "--no-report"],
        (false, true) => &["nextest", "run"],
        (false, false) => &["test"],
    };
    let mut args: Vec<String> = prefix.iter().map(|arg| (*arg).to_owned()).collect();
    args.extend(["--workspace", "--locked", "--no-fail-fast"].map(String::from));
    let threads = ["--test-threads".to_owned(), threads.to_string()];
    // nextest takes the cap as its own option, before any `--` of the caller's; libtest after one.
    if nextest {
        args.extend(threads);
        args.extend(extra.iter().cloned());
    } else {
        args.extend(extra.iter().cloned());
        if !extra.iter().any(|arg| arg == "--") {
            args.push("--".to_owned());
        }
        args.extend(threads);
    }
    args
}

/// Runs the test command, streaming its output and annotating panics; true when every test passed.
fn run_tests(ctx: &mut Context, args: Vec<String>) -> Result<bool> {
    let database = ctx.database.as_ref().context("the test step runs with a database")?;
    let redis = ctx.redis.as_ref().context("the test step runs with a Redis")?;
    let expression = duct::cmd(&ctx.cargo, args)
        .dir(project::root())
        .env("DATABASE_URL", &database.url)
        .env("REDIS_URL", &redis.url)
        .stderr_to_stdout();
    let mut panics = diagnostics::Panics::default();
    let mut counts = diagnostics::TestCounts::default();
    let report = &mut ctx.report;
    let ok = diagnostics::stream(&expression, |line| {
        println!("{line}");
        counts.feed(line);
        if let Some(annotation) = panics.feed(line) {
            report.annotate(&annotation);
        }
    })?;
    ctx.tests = Some(counts);
    if let Some(annotation) = panics.finish() {
        ctx.report.annotate(&annotation);
    }
    Ok(ok)
}

fn test(ctx: &mut Context) -> Result<()> {
    let cargo = ctx.cargo.clone();
    let out = coverage::dir();
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {out}"))?;
    }
    cmd!(ctx.sh, "{cargo} llvm-cov clean --workspace").run()?;
    let threads = ctx.database.as_ref().map_or(1, Database::test_threads);
    let passed = run_tests(ctx, runner_args(true, &[], threads))?;
    // Report even when tests failed: the coverage of what ran is still worth reading.
    coverage::write_reports(&ctx.sh, &cargo, &out)?;
    if !passed {
        bail!("some tests failed");
    }
    Ok(())
}

/// `cargo xtask test`: the tests alone, without instrumentation, for a quick edit-and-rerun loop.
pub(crate) fn test_without_coverage(extra: &[String]) -> Result<()> {
    let mut ctx = Context::new(Report::new())?;
    ctx.database = Some(postgres::provide()?);
    ctx.redis = Some(redis::provide()?);
    let threads = ctx.database.as_ref().map_or(1, Database::test_threads);
    let args = runner_args(false, extra, threads);
    if !run_tests(&mut ctx, args)? {
        bail!("some tests failed");
    }
    Ok(())
}

fn restore_drill(ctx: &mut Context) -> Result<()> {
    let database = ctx.database.as_ref().context("the restore drill runs with a database")?;
    restore_drill::ci_step(&database.url)
}

fn coverage_gate(ctx: &mut Context) -> Result<()> {
    let summary: Utf8PathBuf = coverage::dir().join("summary.json");
    let percent = coverage::line_percent(&summary)?;
    ctx.coverage = Some(percent);
    coverage::gate(percent)
}

fn audit(ctx: &mut Context) -> Result<()> {
    audit::run(&ctx.sh, &ctx.cargo)
}

fn workflows_check(ctx: &mut Context) -> Result<()> {
    workflows::run(true)?;
    workflows::lint(&ctx.sh)
}

fn build(ctx: &mut Context) -> Result<()> {
    let cargo = &ctx.cargo;
    cmd!(ctx.sh, "{cargo} build --release --locked --package app").run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report;

    #[test]
    fn step_names_are_unique_and_short() {
        let mut names: Vec<_> = STEPS.iter().map(|step| step.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), STEPS.len());
        assert!(STEPS.iter().all(|step| step.name.len() <= report::NAME_WIDTH && !step.hint.is_empty()));
    }

    #[test]
    fn steps_run_in_the_documented_order() {
        let names: Vec<_> = STEPS.iter().map(|step| step.name).collect();
        assert_eq!(
            names,
            ["fmt", "clippy", "test", "restore-drill", "migrations", "coverage", "audit", "workflows", "build"]
        );
    }

    #[test]
    fn runner_passes_thread_cap_and_extra_arguments() {
        let args = runner_args(true, &["health".to_owned()], 3);
        assert_eq!(args[0], "llvm-cov");
        assert!(args.iter().any(|arg| arg == "health"));
        let threads = args.iter().position(|arg| arg == "--test-threads").expect("thread cap passed");
        assert_eq!(args[threads + 1], "3");

        // A caller's `-- filter --nocapture` reaches the test binaries, whichever runner is installed.
        let args = runner_args(false, &["--".to_owned(), "--nocapture".to_owned()], 2);
        assert_eq!(args.iter().filter(|arg| *arg == "--").count(), 1, "{args:?}");
        let (threads, dashes) = (
            args.iter().position(|arg| arg == "--test-threads").expect("thread cap passed"),
            args.iter().position(|arg| arg == "--").expect("--"),
        );
        assert_eq!(threads < dashes, tools::nextest_installed(), "{args:?}");
    }
}
