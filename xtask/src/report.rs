//! What the pipeline prints: a line per step and a closing table locally; groups, annotations and a
//! job summary on GitHub Actions.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::coverage::LINE_COVERAGE_MIN;
use crate::diagnostics::Annotation;
use crate::junit::TestTime;
use crate::project;

/// GitHub shows only about ten annotations of a kind per step; more is noise.
const MAX_ANNOTATIONS_PER_STEP: usize = 10;
/// The width of the step column in the local table: the longest step name.
pub(crate) const NAME_WIDTH: usize = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Passed,
    Failed,
    NotRun,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Passed => "ok",
            Self::Failed => "FAILED",
            Self::NotRun => "not run",
        }
    }

    fn emoji(self) -> &'static str {
        match self {
            Self::Passed => "✅",
            Self::Failed => "❌",
            Self::NotRun => "⏭️",
        }
    }
}

/// A failure that knows its own fix, shown instead of the step's usual hint (a missing tool is fixed
/// by installing it, not by rerunning the tests).
#[derive(Debug)]
pub(crate) struct Fix {
    problem: String,
    pub(crate) fix: String,
}

impl Fix {
    pub(crate) fn new(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { problem: problem.into(), fix: fix.into() }
    }
}

impl std::fmt::Display for Fix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problem)
    }
}

impl std::error::Error for Fix {}

/// The hint for a failure: the fix the error carries, else the step's own.
pub(crate) fn hint<'a>(error: &'a anyhow::Error, step_hint: &'a str) -> &'a str {
    error.chain().find_map(|cause| cause.downcast_ref::<Fix>()).map_or(step_hint, |fix| fix.fix.as_str())
}

#[derive(Debug, Clone)]
pub(crate) struct StepResult {
    pub(crate) name: &'static str,
    pub(crate) outcome: Outcome,
    pub(crate) elapsed: Duration,
}

#[derive(Debug)]
pub(crate) struct Report {
    github: bool,
    annotations_left: usize,
}

impl Report {
    pub(crate) fn new() -> Self {
        Self { github: project::on_github(), annotations_left: MAX_ANNOTATIONS_PER_STEP }
    }

    pub(crate) fn start(&mut self, name: &str, about: &str) {
        self.annotations_left = MAX_ANNOTATIONS_PER_STEP;
        if self.github {
            println!("::group::{name}: {about}");
        } else {
            println!("\n▶ {name}: {about}");
        }
        flush();
    }

    pub(crate) fn finish(&mut self, result: &StepResult, error: Option<(&anyhow::Error, &str)>) {
        if self.github {
            println!("::endgroup::");
        }
        let seconds = result.elapsed.as_secs_f64();
        match error {
            None => println!("{} {} {} ({seconds:.1} s)", mark(result.outcome), result.name, result.outcome.label()),
            Some((error, hint)) => {
                println!("✘ {} FAILED ({seconds:.1} s): {error:#}", result.name);
                println!("  hint: {hint}");
                if self.github {
                    println!(
                        "::error title={}::{}",
                        escape_property(&format!("step {}", result.name)),
                        escape_data(hint)
                    );
                }
            }
        }
        flush();
    }

    /// Prints an `::error` annotation on GitHub (a bounded number per step); locally the output
    /// already shows the problem.
    pub(crate) fn annotate(&mut self, annotation: &Annotation) {
        if !self.github || self.annotations_left == 0 {
            return;
        }
        self.annotations_left -= 1;
        println!("{}", github_annotation(annotation));
    }

    /// The closing table, and on GitHub the job summary.
    pub(crate) fn summary(&self, results: &[StepResult], coverage: Option<f64>, slowest: &[TestTime]) -> Result<()> {
        print!("\n{}{}", slowest_lines(slowest), table(results, coverage));
        flush();
        if self.github
            && let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY")
            && !path.is_empty()
        {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening GITHUB_STEP_SUMMARY={path}"))?;
            let text = markdown(results, coverage) + &slowest_markdown(slowest);
            file.write_all(text.as_bytes()).with_context(|| format!("writing GITHUB_STEP_SUMMARY={path}"))?;
        }
        Ok(())
    }
}

fn mark(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "✔",
        Outcome::Failed => "✘",
        Outcome::NotRun => "-",
    }
}

fn flush() {
    // Keeps our lines in order with the output of the commands we run.
    let _ = std::io::stdout().flush();
}

fn coverage_line(coverage: Option<f64>) -> Option<String> {
    coverage.map(|percent| format!("line coverage: {percent:.1} % (gate {LINE_COVERAGE_MIN} %)"))
}

fn table(results: &[StepResult], coverage: Option<f64>) -> String {
    let mut out = format!("{:<NAME_WIDTH$} {:<8} {:>8}\n", "step", "result", "time");
    for result in results {
        let time = match result.outcome {
            Outcome::NotRun => String::new(),
            _ => format!("{:.1} s", result.elapsed.as_secs_f64()),
        };
        let _ = writeln!(out, "{:<NAME_WIDTH$} {:<8} {time:>8}", result.name, result.outcome.label());
    }
    if let Some(line) = coverage_line(coverage) {
        let _ = writeln!(out, "{line}");
    }
    out
}

fn slowest_lines(slowest: &[TestTime]) -> String {
    let mut out = String::new();
    if !slowest.is_empty() {
        let _ = writeln!(out, "slowest tests:");
    }
    for test in slowest {
        let _ = writeln!(out, "  {:>7.2} s  {}", test.seconds, test.name);
    }
    out
}

fn slowest_markdown(slowest: &[TestTime]) -> String {
    if slowest.is_empty() {
        return String::new();
    }
    let mut out = format!("### The {} slowest tests\n\n| test | time |\n| --- | ---: |\n", slowest.len());
    for test in slowest {
        // A `|` in a test name would end the cell.
        let _ = writeln!(out, "| `{}` | {:.2} s |", test.name.replace('|', "\\|"), test.seconds);
    }
    out.push('\n');
    out
}

fn markdown(results: &[StepResult], coverage: Option<f64>) -> String {
    let mut out = String::from("## cargo xtask ci\n\n| step | result | time |\n| --- | --- | ---: |\n");
    for result in results {
        let time = match result.outcome {
            Outcome::NotRun => String::new(),
            _ => format!("{:.1} s", result.elapsed.as_secs_f64()),
        };
        let _ = writeln!(out, "| `{}` | {} {} | {time} |", result.name, result.outcome.emoji(), result.outcome.label());
    }
    if let Some(line) = coverage_line(coverage) {
        let _ = writeln!(out, "\n**{line}**");
    }
    out.push('\n');
    out
}

fn github_annotation(annotation: &Annotation) -> String {
    format!(
        "::error file={},line={},title={}::{}",
        escape_property(&annotation.file),
        annotation.line,
        escape_property(&annotation.title),
        escape_data(&annotation.message)
    )
}

/// Workflow-command escaping for the message part.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Workflow-command escaping for `key=value` properties, where `:` and `,` are separators.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> Vec<StepResult> {
        vec![
            StepResult { name: "fmt", outcome: Outcome::Passed, elapsed: Duration::from_millis(400) },
            StepResult { name: "test", outcome: Outcome::Failed, elapsed: Duration::from_secs(12) },
            StepResult { name: "build", outcome: Outcome::NotRun, elapsed: Duration::ZERO },
        ]
    }

    #[test]
    fn annotations_are_escaped_as_github_requires() {
        let annotation = Annotation {
            file: "app/src/a,b.rs".into(),
            line: 3,
            title: "test failed: a::b".into(),
            message: "100% wrong\nsecond line\r".into(),
        };
        assert_eq!(
            github_annotation(&annotation),
            "::error file=app/src/a%2Cb.rs,line=3,title=test failed%3A a%3A%3Ab::100%25 wrong%0Asecond line%0D"
        );
    }

    #[test]
    fn annotations_are_capped_per_step() {
        let mut report = Report { github: true, annotations_left: 2 };
        report.annotate(&Annotation { file: "a".into(), line: 1, title: "t".into(), message: "m".into() });
        report.annotate(&Annotation { file: "a".into(), line: 1, title: "t".into(), message: "m".into() });
        assert_eq!(report.annotations_left, 0);
        report.annotate(&Annotation { file: "a".into(), line: 1, title: "t".into(), message: "m".into() });
        assert_eq!(report.annotations_left, 0);
        report.start("next", "resets the budget");
        assert_eq!(report.annotations_left, MAX_ANNOTATIONS_PER_STEP);
    }

    #[test]
    fn the_table_has_a_row_per_step_and_the_coverage() {
        let table = table(&results(), Some(91.27));
        assert!(table.lines().any(|line| line.starts_with("fmt") && line.contains("ok") && line.contains("0.4 s")));
        assert!(table.lines().any(|line| line.starts_with("test") && line.contains("FAILED")));
        assert!(table.lines().any(|line| line.starts_with("build") && line.contains("not run")));
        assert!(table.contains("line coverage: 91.3 %"));
    }

    #[test]
    fn a_failure_that_knows_its_fix_overrides_the_step_hint() {
        let plain = anyhow::anyhow!("3 tests failed");
        assert_eq!(hint(&plain, "rerun the failing tests"), "rerun the failing tests");
        let missing = anyhow::Error::new(Fix::new("cargo-deny is not installed", "run `cargo install cargo-deny`"))
            .context("preparing the step");
        assert_eq!(hint(&missing, "rerun the failing tests"), "run `cargo install cargo-deny`");
        assert_eq!(format!("{missing:#}"), "preparing the step: cargo-deny is not installed");
    }

    #[test]
    fn the_slowest_tests_are_listed_locally_and_in_the_summary() {
        let slowest = [
            TestTime { name: "app::notes::pages".into(), seconds: 7.5 },
            TestTime { name: "xtask::a|b".into(), seconds: 0.25 },
        ];
        let lines = slowest_lines(&slowest);
        assert!(lines.starts_with("slowest tests:\n") && lines.contains("   7.50 s  app::notes::pages"), "{lines}");
        let markdown = slowest_markdown(&slowest);
        assert!(markdown.contains("### The 2 slowest tests"), "{markdown}");
        assert!(markdown.contains("| `app::notes::pages` | 7.50 s |"), "{markdown}");
        assert!(markdown.contains("| `xtask::a\\|b` | 0.25 s |"), "{markdown}");
        assert!(slowest_lines(&[]).is_empty() && slowest_markdown(&[]).is_empty());
    }

    #[test]
    fn the_markdown_summary_is_a_table() {
        let markdown = markdown(&results(), None);
        assert!(markdown.contains("| step | result | time |"));
        assert!(markdown.contains("| `test` | ❌ FAILED | 12.0 s |"));
        assert!(!markdown.contains("coverage"));
    }
}
