//! The pipeline's own cost: a warm `cargo xtask ci` against the same tools typed by hand, on the same
//! PostgreSQL and Redis. The restore drill, the audit and the workflow check are left out of both: they
//! have no one-line equivalent by hand.

use std::time::Instant;

use anyhow::{Context as _, Result};

use super::report::Pipeline;
use crate::project;

const XTASK: &[&str] =
    &["xtask", "ci", "--only", "fmt", "--only", "clippy", "--only", "test", "--only", "coverage", "--only", "build"];

/// What a developer would type for the same steps.
const BY_HAND: &[&[&str]] = &[
    &["fmt", "--all", "--check"],
    &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"],
    &["llvm-cov", "clean", "--profraw-only"],
    &["llvm-cov", "nextest", "--no-report", "--workspace", "--locked"],
    &["llvm-cov", "report", "--summary-only"],
    &["build", "--release", "--locked", "--package", "app"],
];

/// Runs both twice, interleaved (the first pair warms the caches), and keeps the second pair.
pub(crate) fn measure(database_url: &str, redis_url: &str) -> Result<Pipeline> {
    let mut figures = (0.0, 0.0);
    for _ in 0..2 {
        figures = (timed(&[XTASK], database_url, redis_url)?, timed(BY_HAND, database_url, redis_url)?);
    }
    Ok(Pipeline {
        xtask_command: format!("cargo {}", XTASK.join(" ")),
        xtask_s: figures.0,
        by_hand: BY_HAND.iter().map(|args| format!("cargo {}", args.join(" "))).collect(),
        by_hand_s: figures.1,
    })
}

fn timed(commands: &[&[&str]], database_url: &str, redis_url: &str) -> Result<f64> {
    let started = Instant::now();
    for args in commands {
        println!("bench: cargo {}", args.join(" "));
        duct::cmd(project::cargo(), *args)
            .dir(project::root())
            .env("DATABASE_URL", database_url)
            .env("REDIS_URL", redis_url)
            .stdout_null()
            .run()
            .with_context(|| format!("cargo {}", args.join(" ")))?;
    }
    Ok(started.elapsed().as_secs_f64())
}
