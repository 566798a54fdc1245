//! The pipeline as data: one ordered list drives `cargo xtask ci`, the generated workflow and the summary.

use anyhow::{Context as _, Result, bail};
use camino::Utf8PathBuf;
use xshell::{Shell, cmd};

use crate::postgres::{self, Database};
use crate::preflight::{self, InstallArgs};
use crate::redis::{self, Redis};
use crate::report::{Fix, Report};
use crate::tools::{self, Tool};
use crate::{audit, coverage, diagnostics, dist, junit, migrations, monitoring, project, restore_drill, workflows};

pub(crate) struct Step {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    /// A PostgreSQL server must be up before the step starts.
    pub(crate) needs_postgres: bool,
    /// A Redis server too (the shared rate-limit tests).
    pub(crate) needs_redis: bool,
    /// What the step needs from the table of `tools.rs`: the preflight finds or installs each before
    /// any step runs.
    pub(crate) tools: &'static [&'static Tool],
    /// The one-line fix printed when the step's check fails (a `report::Fix` in the error overrides it).
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
        tools: &[&tools::C_TOOLCHAIN],
        hint: "fix the lints above; many go away with `cargo clippy --fix --workspace --all-targets --allow-dirty`",
        run: clippy,
    },
    Step {
        name: "test",
        about: "every test passes, run once under coverage instrumentation, on a real PostgreSQL",
        needs_postgres: true,
        needs_redis: true,
        tools: TEST_TOOLS,
        hint: "rerun the failing tests with `cargo xtask test NAME`",
        run: test,
    },
    Step {
        name: "restore-drill",
        about: "a backup of a migrated, seeded database restores into an identical copy",
        needs_postgres: true,
        needs_redis: false,
        tools: &[&tools::POSTGRES_CLIENT],
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
        about: ".github/workflows/ci.yml matches its model; zizmor (every audit) and actionlint (when installed) find nothing",
        needs_postgres: false,
        needs_redis: false,
        tools: &[&tools::ZIZMOR],
        hint: "run `cargo xtask workflows` and commit the result; never edit the YAML by hand",
        run: workflows_check,
    },
    Step {
        name: "monitoring",
        about: "deploy/monitoring passes promtool: config, rules, a unit test per alert, the dashboard's queries",
        needs_postgres: false,
        needs_redis: false,
        tools: &[&tools::PROMETHEUS],
        hint: "reproduce with `cd deploy/monitoring && promtool test rules alerts*.test.yml`",
        run: monitoring,
    },
    Step {
        name: "build",
        about: "release build of the service",
        needs_postgres: false,
        needs_redis: false,
        tools: &[&tools::C_TOOLCHAIN, &tools::AUDITABLE],
        hint: "reproduce with `cargo auditable build --release --locked --package app`",
        run: build,
    },
];

/// What the tests need: the runner (coverage aside), the servers they start and the programs they drive
/// (the pipeline's own tests run the audit and the workflow lint on scratch workspaces).
pub(crate) const TEST_TOOLS: &[&Tool] = &[
    &tools::C_TOOLCHAIN,
    &tools::LLVM_COV,
    &tools::NEXTEST,
    &tools::DENY,
    &tools::ZIZMOR,
    &tools::POSTGRES_SERVER,
    &tools::POSTGRES_CLIENT,
    &tools::REDIS_SERVER,
    &tools::NGINX,
    &tools::SSHD,
    &tools::SSH_CLIENT,
    &tools::CURL,
    &tools::LOGROTATE,
    &tools::SETPRIV,
    // The off-site backup tests: encryption, and a real S3 server; the certificate tests and their CA.
    &tools::AGE,
    &tools::MOTO,
    &tools::OPENSSL,
    &tools::PEBBLE,
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
    /// The slowest tests of the JUnit report, once the test step has run.
    pub(crate) slowest: Vec<junit::TestTime>,
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
            slowest: Vec::new(),
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
    let mut compile_error = false;
    let ok = diagnostics::stream(&duct::cmd(&ctx.cargo, args).dir(project::root()), |line| {
        match diagnostics::compiler_message(line) {
            Some(message) => {
                compile_error |= message.compile_error;
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
    if compile_error {
        return Err(Fix::new(
            "the code does not compile",
            "fix the errors above; `cargo build --workspace --all-targets` shows them",
        )
        .into());
    }
    if !ok {
        bail!("clippy reported problems");
    }
    Ok(())
}

/// nextest's arguments, under llvm-cov when `coverage`.
fn runner_args(coverage: bool, extra: &[String], threads: usize) -> Vec<String> {
    let prefix: &[&str] = if coverage { &["llvm-cov", "nextest", "--no-report"] } else { &["nextest", "run"] };
    let mut args: Vec<String> = prefix.iter().map(|arg| (*arg).to_owned()).collect();
    args.extend(["--workspace", "--locked", "--no-fail-fast", "--test-threads"].map(String::from));
    // The cap goes before any `-- filter` of the caller's, which nextest passes to the test binaries.
    args.push(threads.to_string());
    args.extend(extra.iter().cloned());
    args
}

/// Runs the test command with nextest's `profile`, streaming its output and annotating panics; true when
/// every test passed.
fn run_tests(ctx: &mut Context, args: Vec<String>, profile: &str) -> Result<bool> {
    let database = ctx.database.as_ref().context("the test step runs with a database")?;
    let redis = ctx.redis.as_ref().context("the test step runs with a Redis")?;
    let expression = duct::cmd(&ctx.cargo, args)
        .dir(project::root())
        .env("DATABASE_URL", &database.url)
        .env("REDIS_URL", &redis.url)
        // An environment variable, since llvm-cov takes `--profile` for cargo's build profile.
        .env("NEXTEST_PROFILE", profile)
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
    let _ = std::fs::remove_file(junit::path());
    // Only the last run's profiles go: the instrumented build stays, so a warm run rebuilds what changed.
    cmd!(ctx.sh, "{cargo} llvm-cov clean --profraw-only").run()?;
    let threads = ctx.database.as_ref().map_or(1, Database::test_threads);
    // The `ci` profile of .config/nextest.toml writes the JUnit report.
    let passed = run_tests(ctx, runner_args(true, &[], threads), "ci")?;
    let counts = ctx.tests.unwrap_or_default();
    if !passed && counts.passed + counts.failed == 0 {
        return Err(Fix::new(
            "no test ran: the tests did not build, or the runner stopped before any test finished",
            "fix the errors above; `cargo build --workspace --all-targets --locked` reproduces a build error",
        )
        .into());
    }
    ctx.slowest = junit::read_slowest();
    // Report even when tests failed: the coverage of what ran is still worth reading.
    coverage::write_reports(&ctx.sh, &cargo, &out)?;
    match (passed, counts.failed) {
        (true, _) => Ok(()),
        (false, 0) => Err(Fix::new(
            "the test runner failed although no test failed",
            "read the runner's error above; `cargo xtask test` reproduces it without coverage",
        )
        .into()),
        (false, failed) => bail!("{failed} tests failed (JUnit report: {})", junit::path()),
    }
}

/// `cargo xtask test`: the tests alone, without instrumentation, for a quick edit-and-rerun loop.
pub(crate) fn test_without_coverage(extra: &[String], install: InstallArgs) -> Result<()> {
    let needs: Vec<&Tool> = TEST_TOOLS.iter().copied().filter(|tool| tool.name != tools::LLVM_COV.name).collect();
    preflight::run(&needs, install)?;
    let mut ctx = Context::new(Report::new())?;
    ctx.database = Some(postgres::provide()?);
    ctx.redis = Some(redis::provide()?);
    let threads = ctx.database.as_ref().map_or(1, Database::test_threads);
    let args = runner_args(false, extra, threads);
    if !run_tests(&mut ctx, args, "default")? {
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

fn monitoring(ctx: &mut Context) -> Result<()> {
    monitoring::check(&ctx.sh)
}

/// The release build, with its dependency list embedded (`cargo auditable`), and `target/dist`: the
/// service and this xtask with a `SHA256SUMS` beside them, the artefact CI uploads and deploys.
fn build(ctx: &mut Context) -> Result<()> {
    let cargo = &ctx.cargo;
    cmd!(ctx.sh, "{cargo} auditable build --release --locked --package app").run()?;
    let dist = dist::write(&project::target_dir().join("release/app"))?;
    println!("release: {dist}/app, {dist}/xtask, {dist}/SHA256SUMS");
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
            [
                "fmt",
                "clippy",
                "test",
                "restore-drill",
                "migrations",
                "coverage",
                "audit",
                "workflows",
                "monitoring",
                "build"
            ]
        );
    }

    #[test]
    fn runner_passes_thread_cap_profile_and_extra_arguments() {
        let args = runner_args(true, &["health".to_owned()], 3);
        assert_eq!(args[..3], ["llvm-cov", "nextest", "--no-report"]);
        assert!(args.iter().any(|arg| arg == "health"));
        let threads = args.iter().position(|arg| arg == "--test-threads").expect("thread cap passed");
        assert_eq!(args[threads + 1], "3");

        // A caller's `-- filter --nocapture` goes after the cap, and reaches the test binaries.
        let args = runner_args(false, &["--".to_owned(), "--nocapture".to_owned()], 2);
        assert_eq!(args[..2], ["nextest", "run"]);
        let (threads, dashes) = (
            args.iter().position(|arg| arg == "--test-threads").expect("thread cap passed"),
            args.iter().position(|arg| arg == "--").expect("--"),
        );
        assert!(threads < dashes, "{args:?}");
    }
}
