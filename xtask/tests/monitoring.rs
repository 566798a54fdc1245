//! Every metric deploy/monitoring's alert rules and dashboard read exists: the service's, scraped from
//! a running `app serve` after the requests that create them, or one the scheduled jobs write
//! (`src/textfile.rs`). A renamed metric fails here instead of silencing an alert.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod support;

#[allow(dead_code)]
#[path = "../src/promql.rs"]
mod promql;
#[allow(dead_code)]
#[path = "../src/textfile.rs"]
mod textfile;

/// Series Prometheus itself adds to every scrape.
const SYNTHETIC: &[&str] = &["up"];

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request; the whole response.
fn get(port: u16, path: &str, host: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

fn exported_names() -> BTreeSet<String> {
    let (port, metrics_port) = (support::free_port(), support::free_port());
    let url = std::env::var("DATABASE_URL").expect("set DATABASE_URL (cargo xtask test does)");
    let service = Service(
        Command::new(support::app_binary())
            .arg("serve")
            .env_clear()
            .env("DATABASE_URL", url)
            .env("MIGRATE_ON_START", "false")
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("app serve starts"),
    );
    support::await_listening(port, Duration::from_secs(30), || "the service never listened".to_owned());
    // A success, a probe, an unknown route and a rejection: every family of series appears.
    for (path, host) in [("/healthz", "localhost"), ("/readyz", "localhost"), ("/nope", "localhost"), ("/", "evil")] {
        get(port, path, host);
    }
    let scrape = get(metrics_port, "/metrics", "localhost");
    drop(service);
    let body = scrape.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_read_is_exported() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("read deploy/monitoring");
    let expressions = promql::expressions(&read("alerts.yml"), &read("grafana-dashboard.json")).expect("parse");
    assert!(expressions.len() > 20, "{expressions:?}");

    let exported = exported_names();
    assert!(exported.contains("http_requests_total") && exported.contains("app_ready"), "{exported:?}");
    let known = |name: &str| exported.contains(name) || textfile::NAMES.contains(&name) || SYNTHETIC.contains(&name);
    let unknown: Vec<String> = expressions
        .iter()
        .flat_map(|(place, expr)| {
            metric_names(expr).into_iter().filter(|name| !known(name)).map(move |name| format!("{place}: {name}"))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "not exported by the service nor written by a job: {unknown:?}\nexported: {exported:?}"
    );
}

/// Words of the language that are not metric names; aggregations among them, since `sum by (le) (…)`
/// puts a word between the name and its parenthesis.
#[rustfmt::skip]
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "inf",
    "nan", "sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values",
];

/// The metric names `expr` selects: identifiers that are not functions, keywords, label names (inside
/// `{…}` or a `by (…)`-style list) or parts of strings and durations.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut index = 0;
    // The last word seen, to tell a `by (…)` label list from a function call's parentheses.
    let mut previous = String::new();
    while index < chars.len() {
        let c = chars[index];
        if c == '"' || c == '\'' || c == '`' {
            index = skip_past(&chars, index + 1, c);
        } else if c == '{' {
            index = skip_past(&chars, index + 1, '}');
        } else if c == '(' && ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&&*previous) {
            index = skip_past(&chars, index + 1, ')');
        } else if c.is_ascii_digit() {
            // Numbers and durations (5m, 1e3, 0.99).
            while index < chars.len() && (chars[index].is_ascii_alphanumeric() || chars[index] == '.') {
                index += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = index;
            while index < chars.len() && (chars[index].is_ascii_alphanumeric() || matches!(chars[index], '_' | ':')) {
                index += 1;
            }
            let word: String = chars[start..index].iter().collect();
            let next = chars[index..].iter().find(|c| !c.is_whitespace());
            if next != Some(&'(') && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word.clone());
            }
            previous = word;
            continue;
        } else {
            index += 1;
        }
        if !c.is_whitespace() {
            previous.clear();
        }
    }
    names
}

/// The index after the next `close` from `from` (escapes inside strings skipped).
fn skip_past(chars: &[char], mut from: usize, close: char) -> usize {
    while from < chars.len() && chars[from] != close {
        from += if chars[from] == '\\' { 2 } else { 1 };
    }
    from + 1
}

fn names(expr: &str) -> Vec<String> {
    metric_names(expr).into_iter().collect()
}

#[test]
fn functions_labels_keywords_and_durations_are_not_metrics() {
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{route!~"/a|b"}[5m]))) > 1"#
        ),
        ["http_request_duration_seconds_bucket"]
    );
    assert_eq!(
        names("sum by (instance) (a_total{state=\"x\"}) / max by (instance) (b) >= 0.9 and on() c offset 1h"),
        ["a_total", "b", "c"]
    );
    assert_eq!(names("time() - backup_seconds > 26 * 3600"), ["backup_seconds"]);
    assert_eq!(names("absent(up{job='x'})"), ["up"]);
}
