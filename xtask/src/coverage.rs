//! The coverage reports and the gate. The threshold lives here and only goes up.

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

use crate::project;

/// Minimum line coverage, in percent, of the workspace's code under test. Never lower it.
pub(crate) const LINE_COVERAGE_MIN: f64 = 80.0;
const _: () = assert!(LINE_COVERAGE_MIN >= 80.0, "the coverage gate is never lowered below 80 %");

/// Where the reports go: `lcov.info`, `html/`, `summary.json`.
pub(crate) fn dir() -> Utf8PathBuf {
    project::target_dir().join("coverage")
}

/// Turns the profiles of the instrumented test run into lcov, HTML and a JSON summary.
pub(crate) fn write_reports(sh: &Shell, cargo: &str, out: &Utf8Path) -> Result<()> {
    let lcov = out.join("lcov.info");
    let summary = out.join("summary.json");
    std::fs::create_dir_all(out).with_context(|| format!("creating {out}"))?;
    cmd!(sh, "{cargo} llvm-cov report --lcov --output-path {lcov}").run()?;
    cmd!(sh, "{cargo} llvm-cov report --html --output-dir {out}").run()?;
    cmd!(sh, "{cargo} llvm-cov report --json --summary-only --output-path {summary}").run()?;
    cmd!(sh, "{cargo} llvm-cov report --summary-only").run()?;
    println!("coverage reports: {lcov}, {out}/html/index.html, {summary}");
    Ok(())
}

/// Line coverage in percent, from `cargo llvm-cov report --json --summary-only`.
pub(crate) fn line_percent(summary: &Utf8Path) -> Result<f64> {
    let text = std::fs::read_to_string(summary).with_context(|| {
        format!("reading {summary}: no coverage report; run the test step first (`cargo xtask ci --only test`)")
    })?;
    parse_line_percent(&text).with_context(|| format!("reading the line coverage from {summary}"))
}

fn parse_line_percent(json: &str) -> Result<f64> {
    let value: serde_json::Value = serde_json::from_str(json)?;
    value
        .pointer("/data/0/totals/lines/percent")
        .and_then(serde_json::Value::as_f64)
        .context("no data[0].totals.lines.percent in the summary")
}

pub(crate) fn gate(percent: f64) -> Result<()> {
    println!("line coverage: {percent:.1} % (gate: {LINE_COVERAGE_MIN} %)");
    if percent < LINE_COVERAGE_MIN {
        bail!("line coverage {percent:.1} % is under the gate of {LINE_COVERAGE_MIN} %");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_line_percentage() {
        let json = r#"{"data":[{"totals":{"lines":{"count":200,"covered":170,"percent":85.0}}}]}"#;
        assert!((parse_line_percent(json).expect("valid summary") - 85.0).abs() < f64::EPSILON);
    }

    #[test]
    fn a_summary_without_lines_is_an_error() {
        assert!(parse_line_percent(r#"{"data":[]}"#).is_err());
        assert!(parse_line_percent("not json").is_err());
    }

    #[test]
    fn the_gate_holds_at_the_threshold_and_fails_below() {
        assert!(gate(LINE_COVERAGE_MIN).is_ok());
        assert!(gate(LINE_COVERAGE_MIN - 0.1).is_err());
    }
}
