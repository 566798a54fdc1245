//! The `migrations` CI step: every migration that differs from the base is linted with squawk, and the
//! base's release is proven to keep working on the new schema (the serving release runs on it while
//! MIGRATE runs, and a rollback runs it there afterwards). docs/migrations.md is the user's guide.

mod base;
mod lint;
mod round_trip;

use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::postgres::{self, client::ScratchDatabase};
use crate::report::Report;
use crate::steps::Context;
use crate::{cleanup, project};

use base::{Base, Change};

pub(crate) use base::BASE_VARIABLE;

pub(crate) fn step(ctx: &mut Context) -> Result<()> {
    let started = Instant::now();
    let Some((base, changes)) = changed(ctx.base.as_deref())? else {
        return Ok(());
    };
    let result = lint(&mut ctx.report, &base, &changes).and_then(|()| round_trip(ctx, &base));
    println!("migrations: {} changed, checked in {:.1} s", changes.len(), started.elapsed().as_secs_f64());
    result
}

/// `cargo xtask lint-migrations`: the lint alone, for a quick look while writing a migration.
pub(crate) fn lint_only(base: Option<&str>) -> Result<()> {
    crate::tools::SQUAWK.require()?;
    let Some((base, changes)) = changed(base)? else {
        return Ok(());
    };
    lint(&mut Report::new(), &base, &changes)?;
    println!("migrations: {} changed since {} ({}), no problem found", changes.len(), base.short(), base.why);
    Ok(())
}

/// The base and what differs from it; `None`, after one line saying why, when there is nothing to check.
fn changed(base: Option<&str>) -> Result<Option<(Base, Vec<Change>)>> {
    let Some(base) = base::resolve(base)? else {
        println!("migrations: no earlier commit to compare with (the first commit): nothing to check");
        return Ok(None);
    };
    let changes = base::changes(&base)?;
    if changes.is_empty() {
        println!("migrations: none differ from {} ({}): nothing to check", base.short(), base.why);
        return Ok(None);
    }
    Ok(Some((base, changes)))
}

/// A changed or deleted shipped migration, and every linter finding, fail; all are listed.
fn lint(report: &mut Report, base: &Base, changes: &[Change]) -> Result<()> {
    let mut problems = Vec::new();
    for change in changes {
        match change {
            Change::Added(path) => {
                println!("migrations: linting {path}");
                for violation in lint::lint(path)? {
                    report.annotate(&violation.annotation());
                    problems.push(violation.to_string());
                }
            }
            Change::Modified(path) | Change::Deleted(path) => problems.push(format!(
                "{path}: {} since {}, whose release may have applied it; sqlx refuses a database whose applied \
                 migration changed (fix: restore it with `git checkout {} -- {path}` and add a new migration)",
                if matches!(change, Change::Deleted(_)) { "deleted" } else { "changed" },
                base.short(),
                base.short()
            )),
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    for problem in &problems {
        println!("{problem}");
    }
    bail!(
        "{} problem(s) in the migrations changed since {} ({}); see docs/migrations.md",
        problems.len(),
        base.short(),
        base.why
    )
}

fn round_trip(ctx: &mut Context, base: &Base) -> Result<()> {
    let cargo = ctx.cargo.clone();
    println!("migrations: building this checkout's app");
    base::seed(&project::target_dir())?;
    duct::cmd(&cargo, ["build", "--locked", "--package", "app"])
        .dir(project::root())
        .run()
        .context("this checkout's app does not build")?;
    let new = project::target_dir().join("debug/app");
    let built = base::build(base, &cargo)?;
    // Started only now: a step with nothing to check must not wait for a server.
    if ctx.database.is_none() {
        ctx.database = Some(postgres::provide()?);
    }
    let server = &ctx.database.as_ref().context("a database was provided")?.url;
    let database = ScratchDatabase::create(server, &format!("migrations_round_trip_{}", std::process::id()))?;
    let logs = project::target_dir().join(format!("migrations-base/logs-{}", std::process::id()));
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {logs}"))?;
    let _remove_logs = cleanup::register({
        let logs = logs.clone();
        move || {
            let _ = std::fs::remove_dir_all(&logs);
        }
    });
    println!("migrations: the base's release ({}) on the new schema", base.short());
    round_trip::run(&round_trip::Releases { base: &built, new: &new, database_url: &database.url, logs: &logs })
        .with_context(|| format!("the release of {} ({}) does not work on the new schema", base.short(), base.why))?;
    println!("migrations: the base's release passed the round trip on the new schema");
    Ok(())
}
