//! `cargo xtask`: shipshape's pipeline, deploy and operations tool. This file only dispatches.
#![forbid(unsafe_code)]

mod audit;
mod backup;
mod bench;
mod ci;
mod cleanup;
mod cli;
mod coverage;
mod deploy;
mod dev;
mod diagnostics;
mod dist;
mod fuzz;
mod generated;
mod http_probe;
mod junit;
mod migrations;
mod monitoring;
mod offsite;
mod openapi;
mod pins;
mod postgres;
mod preflight;
mod programs;
mod project;
mod promql;
mod redis;
mod report;
mod restore;
mod restore_drill;
mod secrets;
mod smoke;
mod steps;
mod textfile;
mod tls;
mod tools;
mod workflows;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    cleanup::install_signal_handler();
    let result = match cli::parse() {
        Command::Ci(args) => ci::run(&args),
        Command::Test { install, args } => steps::test_without_coverage(&args, install),
        Command::Dev(install) => dev::run(install),
        Command::Postgres => postgres::serve_until_interrupted(),
        Command::Workflows { check } => workflows::run(check),
        Command::Openapi { check } => openapi::run(check),
        Command::Setup => preflight::setup(),
        Command::LintMigrations { base } => migrations::lint_only(base.as_deref()),
        Command::Deploy(args) => deploy::run(&args),
        Command::Rollback(root) => deploy::rollback(&root),
        Command::Backup(args) => backup::run(&args),
        Command::Restore(args) => restore::run(&args),
        Command::RestoreDrill(args) => restore_drill::run(&args),
        Command::Smoke(args) => smoke::run(&args),
        Command::Secrets(args) => secrets::run(&args),
        Command::Tls(args) => tls::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
    };
    cleanup::run_all();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            // A failure that knows its fix (a missing tool: the command installing it) says it last.
            let fix = report::hint(&error, "");
            if !fix.is_empty() {
                eprintln!("  fix: {fix}");
            }
            ExitCode::FAILURE
        }
    }
}
