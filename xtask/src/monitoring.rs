//! The `monitoring` step: deploy/monitoring is valid for Prometheus (`promtool check config`, which
//! checks the rules too), every alert has a unit test and `promtool test rules` passes, and every
//! dashboard query is valid PromQL. That the metrics they name exist is `tests/monitoring.rs`.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, bail};
use camino::Utf8PathBuf;
use xshell::{Shell, cmd};

use crate::{project, promql};

/// The unit tests of the alert rules: the service's alerts by the minute, the scheduled jobs' by the hour
/// (evaluating those every minute for weeks would take half a minute).
const TESTS: &[&str] = &["alerts.test.yml", "alerts-operations.test.yml"];

fn dir() -> Utf8PathBuf {
    project::root().join("deploy/monitoring")
}

fn read(name: &str) -> Result<String> {
    let path = dir().join(name);
    std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
}

pub(crate) fn check(sh: &Shell) -> Result<()> {
    let dir = dir();
    let _in_dir = sh.push_dir(&dir);
    cmd!(sh, "promtool check config prometheus.yml").run()?;
    cmd!(sh, "promtool test rules {TESTS...}").run()?;
    untested_alerts(&read("alerts.yml")?, &tests()?)?;

    // promtool checks PromQL in rule files only: the dashboard's queries become recording rules of a
    // scratch file.
    let expressions =
        promql::expressions("groups: []", &read("grafana-dashboard.json")?).map_err(anyhow::Error::msg)?;
    let rules: Vec<serde_json::Value> = expressions
        .iter()
        .enumerate()
        .map(|(index, (_, expr))| serde_json::json!({ "record": format!("dashboard:query_{index}"), "expr": expr }))
        .collect();
    let scratch = project::target_dir().join("monitoring");
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {scratch}"))?;
    let file = scratch.join("dashboard-queries.yml");
    let groups = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(&file, serde_yaml_ng::to_string(&groups)?).with_context(|| format!("writing {file}"))?;
    cmd!(sh, "promtool check rules {file}").run().context("a query of grafana-dashboard.json is not valid PromQL")?;
    Ok(())
}

/// The test files' contents.
fn tests() -> Result<Vec<String>> {
    TESTS.iter().map(|name| read(name)).collect()
}

/// Every alert of the rules has a test case expecting it to fire, in one of the test files.
fn untested_alerts(rules: &str, tests: &[String]) -> Result<()> {
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(rules).context("alerts.yml is not YAML")?;
    let tests: Vec<serde_yaml_ng::Value> = tests
        .iter()
        .map(|text| serde_yaml_ng::from_str(text))
        .collect::<Result<_, _>>()
        .context("a test file is not YAML")?;
    let fired: BTreeSet<&str> = tests
        .iter()
        .flat_map(|file| file["tests"].as_sequence().into_iter().flatten())
        .flat_map(|test| test["alert_rule_test"].as_sequence().into_iter().flatten())
        .filter(|case| case["exp_alerts"].as_sequence().is_some_and(|alerts| !alerts.is_empty()))
        .filter_map(|case| case["alertname"].as_str())
        .collect();
    let untested: Vec<&str> = rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_sequence().into_iter().flatten())
        .filter_map(|rule| rule["alert"].as_str())
        .filter(|alert| !fired.contains(alert))
        .collect();
    if !untested.is_empty() {
        bail!("no test in {} expects these alerts to fire: {}", TESTS.join(" or "), untested.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_committed_alert_has_a_firing_test() {
        untested_alerts(&read("alerts.yml").expect("rules"), &tests().expect("tests")).expect("every alert tested");
    }

    #[test]
    fn an_alert_tested_only_for_silence_counts_as_untested() {
        let rules = "groups: [{name: g, rules: [{alert: A, expr: up == 0}, {alert: B, expr: up == 1}]}]";
        let tests = "tests: [{alert_rule_test: [{alertname: A, exp_alerts: [{}]}, {alertname: B}]}]";
        let error = untested_alerts(rules, &[tests.to_owned()]).expect_err("B untested").to_string();
        assert!(error.ends_with(": B"), "{error}");
    }
}
