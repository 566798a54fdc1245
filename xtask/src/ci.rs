//! `cargo xtask ci`: runs the selected steps in order and reports each.

use std::time::Instant;

use anyhow::{Result, bail};

use crate::cli::CiArgs;
use crate::preflight;
use crate::report::{self, Outcome, Report, StepResult};
use crate::steps::{Context, STEPS, Step};

/// The steps `--only` / `--skip` leave, in pipeline order.
fn select<'a>(steps: &'a [Step], args: &CiArgs) -> Vec<&'a Step> {
    steps
        .iter()
        .filter(|step| args.only.is_empty() || args.only.iter().any(|name| name == step.name))
        .filter(|step| !args.skip.iter().any(|name| name == step.name))
        .collect()
}

pub(crate) fn run(args: &CiArgs) -> Result<()> {
    let selected = select(STEPS, args);
    preflight::run(&preflight::unique(selected.iter().flat_map(|step| step.tools)), args.install)?;
    let mut ctx = Context::new(Report::new())?;
    ctx.base.clone_from(&args.base);
    let mut results = Vec::with_capacity(selected.len());
    // Each failed step with the hint that fits its failure.
    let mut failed: Vec<(&str, String)> = Vec::new();
    for step in &selected {
        if !failed.is_empty() && !args.keep_going {
            results.push(StepResult { name: step.name, outcome: Outcome::NotRun, elapsed: Default::default() });
            continue;
        }
        ctx.report.start(step.name, step.about);
        let started = Instant::now();
        let outcome = ctx.prepare(step).and_then(|()| (step.run)(&mut ctx));
        let result = StepResult {
            name: step.name,
            outcome: if outcome.is_ok() { Outcome::Passed } else { Outcome::Failed },
            elapsed: started.elapsed(),
        };
        let hint = outcome.as_ref().err().map(|error| report::hint(error, step.hint));
        ctx.report.finish(&result, outcome.as_ref().err().zip(hint));
        if let Some(hint) = hint {
            failed.push((step.name, hint.to_owned()));
        }
        results.push(result);
    }
    // Stop the database before the summary so nothing outlives a failure in writing it.
    drop(ctx.database.take());
    drop(ctx.redis.take());
    ctx.report.summary(&results, ctx.coverage, &ctx.slowest)?;
    // Last, in the plain form any CI log reader understands.
    if let Some(tests) = ctx.tests {
        println!("tests: {} passed, {} failed", tests.passed, tests.failed);
    }
    match failed.as_slice() {
        [] => Ok(()),
        [(name, hint)] => bail!("ci failed at step `{name}`: {hint}"),
        steps => {
            let lines: Vec<String> = steps.iter().map(|(name, hint)| format!("  {name}: {hint}")).collect();
            bail!("ci failed at {} steps:\n{}", steps.len(), lines.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(steps: &[&Step]) -> Vec<&'static str> {
        steps.iter().map(|step| step.name).collect()
    }

    #[test]
    fn no_flags_select_every_step() {
        assert_eq!(select(STEPS, &CiArgs::default()).len(), STEPS.len());
    }

    #[test]
    fn only_keeps_pipeline_order() {
        let args = CiArgs { only: vec!["build".into(), "fmt".into()], ..CiArgs::default() };
        assert_eq!(names(&select(STEPS, &args)), ["fmt", "build"]);
    }

    #[test]
    fn skip_leaves_steps_out() {
        let args = CiArgs { skip: vec!["test".into(), "coverage".into()], ..CiArgs::default() };
        let selected = names(&select(STEPS, &args));
        assert!(!selected.contains(&"test") && !selected.contains(&"coverage"));
        assert_eq!(selected.len(), STEPS.len() - 2);
    }
}
