//! The load generator: `wrk` (Debian's package, pinned in `tools.rs`), closed-loop, on keep-alive
//! connections, with its latency distribution; its report parsed into a `Sample`.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// wrk's threads and connections: two threads like the machine's two cores, enough connections to
/// keep both server workers busy.
pub(crate) const THREADS: u32 = 2;
pub(crate) const CONNECTIONS: u32 = 32;

/// One run of one server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

/// The command line of one run, also printed in docs/benchmarks.md.
pub(crate) fn args(seconds: u32, headers: &[(&str, &str)], url: &str) -> Vec<String> {
    let mut args = vec![
        format!("-t{THREADS}"),
        format!("-c{CONNECTIONS}"),
        format!("-d{seconds}s"),
        // wrk's default of 2 s counts a request stalled by a busy machine as failed; 10 s still catches a hang.
        "--timeout".to_owned(),
        "10s".to_owned(),
        "--latency".to_owned(),
    ];
    for (name, value) in headers {
        args.push("-H".to_owned());
        args.push(format!("{name}: {value}"));
    }
    args.push(url.to_owned());
    args
}

/// Runs wrk; fails when any answer was not 2xx or any socket failed, since that figure would lie.
pub(crate) fn run(args: &[String]) -> Result<Sample> {
    let output = Command::new("wrk").args(args).output().context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("wrk failed ({}): {}{}", output.status, text, String::from_utf8_lossy(&output.stderr));
    }
    parse(&text).with_context(|| format!("reading wrk's report:\n{text}"))
}

fn parse(report: &str) -> Result<Sample> {
    if let Some(line) = report.lines().find(|line| line.trim_start().starts_with("Non-2xx or 3xx responses:")) {
        bail!("the server refused requests under load ({}): fix the benchmark's setup", line.trim());
    }
    if let Some(line) = report.lines().find(|line| line.trim_start().starts_with("Socket errors:")) {
        // Timeouts and resets mean lost requests, which a throughput figure must not hide.
        bail!("connections failed under load ({})", line.trim());
    }
    let field = |prefix: &str| -> Result<&str> {
        report
            .lines()
            .find_map(|line| line.trim_start().strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no `{prefix}` line"))
    };
    Ok(Sample {
        rps: field("Requests/sec:")?.parse().context("Requests/sec")?,
        p50_ms: millis(field("50%")?)?,
        p99_ms: millis(field("99%")?)?,
    })
}

/// wrk's durations: `812.00us`, `2.21ms`, `1.02s`, `1.5m`.
fn millis(value: &str) -> Result<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic()).with_context(|| format!("{value} has no unit"))?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().with_context(|| format!("{value} is not a duration"))?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        _ => bail!("{value}: unknown unit {unit}"),
    };
    Ok(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://127.0.0.1:8000/healthz
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.25ms    1.10ms  24.19ms   91.30%
    Req/Sec    13.02k     1.07k   15.10k    71.00%
  Latency Distribution
     50%  812.00us
     75%    1.42ms
     90%    2.31ms
     99%    5.60ms
  129533 requests in 5.00s, 36.19MB read
Requests/sec:  25905.16
Transfer/sec:      7.24MB
";

    #[test]
    fn reads_throughput_and_percentiles() {
        let sample = parse(REPORT).expect("parses");
        assert_eq!(sample.rps, 25905.16);
        assert!((sample.p50_ms - 0.812).abs() < 1e-9);
        assert_eq!(sample.p99_ms, 5.6);
    }

    #[test]
    fn refused_requests_and_socket_errors_fail_the_run() {
        let refused = REPORT.replace("Requests/sec", "  Non-2xx or 3xx responses: 12\nRequests/sec");
        assert!(parse(&refused).expect_err("refused").to_string().contains("Non-2xx"));
        let errors =
            REPORT.replace("Requests/sec", "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec");
        assert!(parse(&errors).is_err());
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(millis("2.5s").expect("s"), 2500.0);
        assert_eq!(millis("1m").expect("m"), 60_000.0);
        assert!(millis("12").is_err() && millis("3h").is_err());
    }

    #[test]
    fn headers_become_dash_h_arguments() {
        let args = args(3, &[("Authorization", "Bearer x")], "http://h/");
        assert_eq!(args[..6], ["-t2", "-c32", "-d3s", "--timeout", "10s", "--latency"]);
        assert_eq!(args[6..], ["-H", "Authorization: Bearer x", "http://h/"]);
    }
}
