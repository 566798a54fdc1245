//! `cargo xtask bench [--check] [--skip-pipeline]`: the release service against the limits in
//! `limits/` (bare axum; bare axum + sqlx running the same SQL), interleaved rounds under `wrk`, the
//! per-test isolation cost, the pipeline's overhead and the footprint; written to
//! `docs/benchmarks.md` and `target/bench/results.json`. Speed is measured here, never asserted by a
//! timed test; `--check` fails when a ratio regressed beyond `report::TOLERANCE`.

mod isolation;
mod pipeline;
mod report;
mod seed;
mod servers;
mod steady;
mod wrk;

use std::time::Duration;

use anyhow::{Context as _, Result};
use camino::{Utf8Path, Utf8PathBuf};
use clap::Args;

use crate::postgres::{self, client};
use crate::preflight::{self, InstallArgs};
use crate::tools::{self, Tool};
use crate::{project, redis};
use report::{Comparison, Footprint, Results, Runs, Stat};
use servers::Server;

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// Compare this run's ratios with the committed docs/benchmarks.md and fail on a regression
    /// (writes only target/bench/results.json).
    #[arg(long)]
    check: bool,
    /// Leave out the slow part: the warm `cargo xtask ci` against the same commands by hand.
    #[arg(long)]
    skip_pipeline: bool,
    /// Interleaved rounds per server and route.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=600))]
    seconds: u32,
    /// Measure this build of the service instead of the one built from this tree (e.g. the previous
    /// release, for a before/after); the limits are still built from this tree.
    #[arg(long, value_name = "BINARY")]
    app: Option<Utf8PathBuf>,
    #[command(flatten)]
    install: InstallArgs,
}

const NOTES_PATH: &str = "/api/v1/notes?limit=50";
/// The rate the footprint is measured at.
const STEADY_RATE: u32 = 1_000;
const STEADY_TIME: Duration = Duration::from_secs(10);
const WARM_UP_SECONDS: u32 = 2;
const STARTS: usize = 5;
const ISOLATION_RUNS: usize = 10;
/// As behind the TLS proxy in production: the app trusts loopback as its proxy here.
const PROXY: (&str, &str) = ("X-Forwarded-Proto", "https");
/// A throwaway key for a throwaway database; `check --deploy` wants 50 varied characters.
const SECRET_KEY: &str = "bench-only-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ";

/// One route, its request headers, and the limit that answers it with the least possible code.
struct Route<'a> {
    key: &'static str,
    path: &'static str,
    headers: &'a [(&'a str, &'a str)],
    limit: &'a Server,
}

pub(crate) fn run(args: &BenchArgs) -> Result<()> {
    let needs: Vec<&Tool> = [&tools::C_TOOLCHAIN, &tools::WRK].into_iter().chain(postgres::needs()).collect();
    preflight::run(&needs, args.install)?;
    duct::cmd(project::cargo(), ["build", "--release", "--locked", "--package", "app", "--package", "limits"])
        .dir(project::root())
        .run()
        .context("building the service and the limits in release")?;
    let release = project::target_dir().join("release");
    let app_binary = args.app.clone().unwrap_or_else(|| release.join("app"));
    let database = postgres::provide()?;
    let bench_db = seed::database(&database.url, &app_binary)?;
    let bearer = format!("Bearer {}", seed::TOKEN);
    let authorized = [("Authorization", bearer.as_str()), PROXY];
    let bare_env = [("DATABASE_URL".to_owned(), bench_db.url.clone())];

    println!("bench: start → ready, {STARTS} fresh starts of the app");
    let mut starts = Vec::new();
    for _ in 0..STARTS {
        let app = start_app(&app_binary, &bench_db.url)?;
        starts.push(app.start_to_ready.as_secs_f64() * 1000.0);
    }
    let app = start_app(&app_binary, &bench_db.url)?;
    println!("bench: RSS at {STEADY_RATE} req/s on {NOTES_PATH} for {STEADY_TIME:?}");
    let request = raw_request(&app, NOTES_PATH, &authorized);
    let steady_rps = steady::run(app.addr, &request, STEADY_RATE, STEADY_TIME)?;
    let rss_steady_mib = app.rss_mib()?;

    let healthz_limit = Server::start("bare axum", &release.join("bare-healthz"), &[], &[], ("/healthz", &[]))?;
    let notes_limit =
        Server::start("bare axum + sqlx", &release.join("bare-notes"), &[], &bare_env, (NOTES_PATH, &authorized))?;
    let routes = [
        Route { key: "healthz", path: "/healthz", headers: &[PROXY], limit: &healthz_limit },
        Route { key: "notes", path: NOTES_PATH, headers: &authorized, limit: &notes_limit },
    ];
    let comparisons = compare(&app, &routes, args)?;
    let rss_after_mib = app.rss_mib()?;
    drop((app, healthz_limit, notes_limit));

    println!("bench: per-test isolation, {ISOLATION_RUNS} runs each");
    let isolation = isolation::measure(&database.url, ISOLATION_RUNS)?;
    let pipeline = if args.skip_pipeline {
        None
    } else {
        println!("bench: the pipeline's overhead (two warm runs of each; minutes)");
        let redis = redis::provide()?;
        Some(pipeline::measure(&database.url, &redis.url)?)
    };
    let binary_mib = std::fs::metadata(&app_binary).with_context(|| format!("reading {app_binary}"))?.len() as f64
        / (1024.0 * 1024.0);
    let results = Results {
        machine: machine(&database.url),
        load: format!("wrk {} threads, {} connections, {} s per run", wrk::THREADS, wrk::CONNECTIONS, args.seconds),
        rounds: args.rounds as usize,
        comparisons,
        isolation,
        pipeline,
        footprint: Footprint {
            steady_rps,
            rss_steady_mib,
            rss_after_mib,
            start_to_ready_ms: Stat::of(&starts),
            binary_mib,
        },
    };
    write_results(&results, args)
}

fn write_results(results: &Results, args: &BenchArgs) -> Result<()> {
    let json = project::target_dir().join("bench/results.json");
    std::fs::create_dir_all(json.parent().context("a parent")?)?;
    std::fs::write(&json, serde_json::to_string_pretty(results)?).with_context(|| format!("writing {json}"))?;
    println!("wrote {json}");
    let page_path = project::root().join("docs/benchmarks.md");
    let page = std::fs::read_to_string(&page_path).unwrap_or_default();
    if args.check {
        return report::check(results, &page);
    }
    std::fs::write(&page_path, report::update_page(&page, results, &commands(args)))
        .with_context(|| format!("writing {page_path}"))?;
    println!("wrote {page_path}");
    Ok(())
}

/// The service as production runs it (strict defaults, `check --deploy` passing), with loopback as
/// its trusted proxy and a rate limit no benchmark reaches.
fn app_env(database_url: &str) -> Result<Vec<(String, String)>> {
    let metrics = format!("127.0.0.1:{}", postgres::free_port()?);
    Ok([
        ("APP_ENV", "production"),
        ("DATABASE_URL", database_url),
        ("SECRET_KEY", SECRET_KEY),
        ("ALLOWED_HOSTS", "127.0.0.1"),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ("SILENCED_CHECKS", "security.W021"),
        ("API_LIMIT_PER_CALLER", "1000000000/1m"),
        ("METRICS_ADDR", metrics.as_str()),
        ("DRAIN_DELAY", "0s"),
    ]
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .into())
}

fn start_app(binary: &Utf8Path, database_url: &str) -> Result<Server> {
    Server::start("app", binary, &["serve"], &app_env(database_url)?, ("/readyz", &[]))
}

fn raw_request(server: &Server, path: &str, headers: &[(&str, &str)]) -> String {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", server.addr);
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// Each route on the app and on its limit, alternating which goes first from round to round.
fn compare(app: &Server, routes: &[Route<'_>], args: &BenchArgs) -> Result<Vec<Comparison>> {
    for route in routes {
        for server in [app, route.limit] {
            wrk::run(&wrk::args(WARM_UP_SECONDS, route.headers, &server.url(route.path)))?;
        }
    }
    let mut samples: Vec<[Vec<wrk::Sample>; 2]> = routes.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    for round in 0..args.rounds {
        for (route, slots) in routes.iter().zip(&mut samples) {
            let mut order = [(0, app), (1, route.limit)];
            if round % 2 == 1 {
                order.reverse();
            }
            for (slot, server) in order {
                let sample = wrk::run(&wrk::args(args.seconds, route.headers, &server.url(route.path)))?;
                println!(
                    "bench: round {}/{} {} {:<16} {:>9.0} req/s  p50 {:.2} ms  p99 {:.2} ms",
                    round + 1,
                    args.rounds,
                    route.path,
                    server.name,
                    sample.rps,
                    sample.p50_ms,
                    sample.p99_ms
                );
                slots[slot].push(sample);
            }
        }
    }
    Ok(routes
        .iter()
        .zip(samples)
        .map(|(route, [app, bare])| Comparison {
            key: route.key.to_owned(),
            route: route.path.to_owned(),
            limit: route.limit.name.to_owned(),
            hardened: runs(&app),
            bare: runs(&bare),
        })
        .collect())
}

fn runs(samples: &[wrk::Sample]) -> Runs {
    let figure = |pick: fn(&wrk::Sample) -> f64| Stat::of(&samples.iter().map(pick).collect::<Vec<_>>());
    Runs { rps: figure(|s| s.rps), p50_ms: figure(|s| s.p50_ms), p99_ms: figure(|s| s.p99_ms) }
}

/// The commands behind the figures, for the page (ports and the token as names).
fn commands(args: &BenchArgs) -> Vec<String> {
    let app_env: Vec<String> = app_env("$BENCH_DATABASE_URL")
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| match key.as_str() {
            "SECRET_KEY" => format!("{key}=$SECRET_KEY"),
            "METRICS_ADDR" => format!("{key}=127.0.0.1:$METRICS_PORT"),
            _ => format!("{key}='{value}'"),
        })
        .collect();
    let wrk_line = |headers: &[(&str, &str)], url: &str| {
        let args = wrk::args(args.seconds, headers, url);
        let quoted: Vec<String> =
            args.iter().map(|arg| if arg.contains(' ') { format!("'{arg}'") } else { arg.clone() }).collect();
        format!("wrk {}", quoted.join(" "))
    };
    let authorized = [("Authorization", "Bearer $TOKEN"), PROXY];
    vec![
        "cargo build --release --locked --package app --package limits".to_owned(),
        "DATABASE_URL=$BENCH_DATABASE_URL target/release/app migrate   # then one account, its API token, 50 notes"
            .to_owned(),
        format!("{} LISTEN_ADDR=127.0.0.1:$APP_PORT target/release/app serve", app_env.join(" ")),
        "LISTEN_ADDR=127.0.0.1:$BARE_PORT target/release/bare-healthz".to_owned(),
        "DATABASE_URL=$BENCH_DATABASE_URL LISTEN_ADDR=127.0.0.1:$BARE_SQLX_PORT target/release/bare-notes".to_owned(),
        wrk_line(&[PROXY], "http://127.0.0.1:$APP_PORT/healthz"),
        wrk_line(&[PROXY], "http://127.0.0.1:$BARE_PORT/healthz"),
        wrk_line(&authorized, &format!("http://127.0.0.1:$APP_PORT{NOTES_PATH}")),
        wrk_line(&authorized, &format!("http://127.0.0.1:$BARE_SQLX_PORT{NOTES_PATH}")),
    ]
}

/// CPU, cores, memory, kernel and PostgreSQL version, as far as this machine tells.
fn machine(database_url: &str) -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split_once(':')).map(|(_, v)| v.trim()))
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    let kernel = read("/proc/sys/kernel/osrelease");
    let postgres = client::query(database_url, "SHOW server_version").ok().and_then(|rows| rows.into_iter().next());
    format!(
        "{cpu}, {cores} cores, {memory_gib:.1} GiB, Linux {}, PostgreSQL {}; load generator on the same cores",
        kernel.trim(),
        postgres.as_deref().unwrap_or("?")
    )
}
