//! What the process-level tests share: an xtask run's output, psql, free ports and the service binary.
#![allow(dead_code)] // each test crate uses its own part

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

// The xtask's own lookup, so a test finds a program exactly where the preflight reported it.
#[path = "../../src/programs.rs"]
mod programs;

/// A command for a system program, found as the xtask finds it: `PATH`, then `/usr/sbin` and the other
/// places distributions use (a normal user's `PATH` lacks `/usr/sbin`, where nginx and sshd live).
pub(crate) fn program(name: &str) -> Command {
    let path = programs::find(name)
        .unwrap_or_else(|| panic!("`{name}` is not installed: `cargo xtask test` installs what the tests need"));
    Command::new(path)
}

/// The output of one xtask run.
pub(crate) struct Run(pub(crate) Output);

impl Run {
    pub(crate) fn text(&self) -> String {
        format!("{}{}", String::from_utf8_lossy(&self.0.stdout), String::from_utf8_lossy(&self.0.stderr))
    }

    pub(crate) fn succeeded(&self) -> bool {
        self.0.status.success()
    }

    pub(crate) fn ok(self) -> Self {
        assert!(self.0.status.success(), "{}", self.text());
        self
    }

    /// Asserts a failure whose output names every one of `expected`.
    pub(crate) fn failed(self, expected: &[&str]) -> Self {
        assert!(!self.0.status.success(), "succeeded: {}", self.text());
        for part in expected {
            assert!(self.text().contains(part), "missing {part:?} in:\n{}", self.text());
        }
        self
    }
}

/// Runs `sql` on `url`; the rows, trimmed, columns separated by `|`.
pub(crate) fn psql(url: &str, sql: &str) -> String {
    let output = program("psql")
        .args(["--no-psqlrc", "--quiet", "--tuples-only", "--no-align", "--set", "ON_ERROR_STOP=1"])
        .args(["--dbname", url, "--command", sql])
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// The service binary, built beside the xtask by a workspace test run (built here otherwise).
pub(crate) fn app_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_xtask")).with_file_name("app");
    if !path.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        assert!(Command::new(cargo).args(["build", "--package", "app"]).status().expect("cargo runs").success());
    }
    path
}
