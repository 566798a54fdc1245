//! `app serve | migrate | check [--deploy] | healthcheck`: the same binary in every environment.
//! Wiring only; the work lives in the library.

use std::process::ExitCode;

use anyhow::Context;
use app::checks::{self, Report};
use app::config::{Config, ConfigError, Problem};
use app::state::AppState;
use app::traces::Traces;
use app::{db, error_reports, healthcheck, server, telemetry};
use clap::{Parser, Subcommand, ValueEnum};

// jemalloc gives freed blocks of 8 MiB and more (every argon2 hash holds 19 MiB) back to the OS at once;
// glibc's malloc kept a login storm's 250 MiB resident for good (measured: see README).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(version, about = "The service shipshape ships. Configured by environment variables: see deploy/env.example.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP on LISTEN_ADDR and metrics on METRICS_ADDR until SIGTERM/SIGINT.
    Serve,
    /// Apply pending database migrations (waiting at most MIGRATION_LOCK_TIMEOUT for a lock), then exit.
    Migrate {
        /// Apply nothing: print the migrations the database lacks, one `version description` per line.
        #[arg(long)]
        pending: bool,
    },
    /// Validate the configuration; with --deploy, run the deployment checks too.
    Check {
        /// Django's deployment checks (security.W001 …): exit 1 on any error or unsilenced warning.
        #[arg(long)]
        deploy: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Probe the local server's /healthz (for a container HEALTHCHECK); exit 0 when healthy.
    Healthcheck,
    /// Print the OpenAPI document (what `cargo xtask openapi` commits as app/openapi.json).
    Openapi,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Openapi) {
        // Needs no configuration: it describes the code.
        print!("{}", app::openapi::to_json());
        return ExitCode::SUCCESS;
    }
    let (config, problems) = Config::read_env();
    // `check --deploy` reports unreadable variables beside every other finding; the rest stop here.
    if !problems.is_empty() && !matches!(cli.command, Command::Check { deploy: true, .. }) {
        eprintln!("{}", ConfigError(problems));
        return ExitCode::from(2);
    }
    // Started before the runtime: both create their clients outside it, and the error reports' client
    // belongs to the main thread's hub, which the workers' hubs derive from. Dropped last: they flush.
    let serving = matches!(cli.command, Command::Serve);
    let observability = if serving {
        error_reports::init(&config).and_then(|reports| Ok((reports, Traces::init(&config)?)))
    } else {
        Ok((None, None))
    };
    let (_reports, traces) = match observability {
        Ok(started) => started,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("the tokio runtime starts");
    match runtime.block_on(run(cli.command, config, &problems, traces.as_ref())) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    command: Command,
    config: Config,
    problems: &[Problem],
    traces: Option<&Traces>,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { deploy, format } => {
            if !deploy {
                println!("the configuration is valid ({} environment)", config.environment.as_str());
                return Ok(ExitCode::SUCCESS);
            }
            let report = Report::new(&config, problems, checks::probe(&config).await?);
            let observability = config.observability.summary();
            match format {
                Format::Text => {
                    print!("{}", report.to_text());
                    for (name, state) in observability {
                        println!("{name}: {state}");
                    }
                }
                Format::Json => {
                    let mut json = serde_json::to_value(&report)?;
                    json["observability"] = observability
                        .into_iter()
                        .map(|(name, state)| (name.to_owned(), serde_json::Value::from(state)))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&json)?);
                }
            }
            Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Healthcheck => match healthcheck::probe(&config).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(error) => {
                eprintln!("unhealthy: {error:#}");
                Ok(ExitCode::FAILURE)
            }
        },
        // Printed before the configuration was read.
        Command::Openapi => Ok(ExitCode::SUCCESS),
        Command::Migrate { pending: true } => {
            for migration in db::pending(&config.database).await? {
                println!("{migration}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { pending: false } => {
            let _logs = telemetry::init(&config, None)?;
            db::migrate(&config.database).await?;
            tracing::info!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            let _logs = telemetry::init(&config, traces)?;
            if config.environment.is_deployed() {
                // A deployed service refuses to run with a configuration `check --deploy` fails.
                let report = Report::new(&config, &[], checks::probe(&config).await?);
                if !report.passed() {
                    eprint!("refusing to start in {}:\n{}", config.environment.as_str(), report.to_text());
                    return Ok(ExitCode::FAILURE);
                }
            }
            let pool = db::pool(&config.database)?;
            if config.database.migrate_on_start {
                let mut connection = pool.acquire().await.context("connecting to migrate (MIGRATE_ON_START)")?;
                db::apply(&mut connection).await.context("MIGRATE_ON_START")?;
            }
            server::run(AppState::new(config, pool)).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
