//! `cargo xtask`: shipshape's pipeline, deploy and operations tool. This file only dispatches.
#![forbid(unsafe_code)]

mod audit;
mod ci;
mod cleanup;
mod cli;
mod coverage;
mod deploy;
mod dev;
mod diagnostics;
mod generated;
mod openapi;
mod pins;
mod postgres;
mod project;
mod redis;
mod report;
mod steps;
mod tools;
mod workflows;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    cleanup::install_signal_handler();
    let result = match cli::parse() {
        Command::Ci(args) => ci::run(&args),
        Command::Test { args } => steps::test_without_coverage(&args),
        Command::Dev => dev::run(),
        Command::Postgres => postgres::serve_until_interrupted(),
        Command::Workflows { check } => workflows::run(check),
        Command::Openapi { check } => openapi::run(check),
        Command::Setup => tools::setup(),
        Command::Deploy => deploy::run(),
    };
    cleanup::run_all();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
