//! What the process-level tests share: an xtask run's output, psql, free ports and the service binary.
#![allow(dead_code)] // each test crate uses its own part

pub(crate) mod edge;
pub(crate) mod s3;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
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

/// Whether the tests run as root.
pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|own| std::os::unix::fs::MetadataExt::uid(&own) == 0)
}

/// `name` run as root: directly when this process is root, else through `sudo -n` (a CI runner's
/// passwordless sudo); `None` when neither can.
pub(crate) fn as_root(name: &str) -> Option<Command> {
    let path = programs::find(name)
        .unwrap_or_else(|| panic!("`{name}` is not installed: `cargo xtask test` installs what the tests need"));
    if is_root() {
        return Some(Command::new(path));
    }
    let sudo = Command::new("sudo").args(["-n", "true"]).output().is_ok_and(|out| out.status.success());
    sudo.then(|| {
        let mut command = Command::new("sudo");
        command.arg("-n").arg(path);
        command
    })
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

/// PATH with the fake `kubectl`, `flyctl` and `systemctl` of `tests/fakes` first.
pub(crate) fn fakes_first_on_path() -> String {
    let fakes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes");
    format!("{}:{}", fakes.display(), std::env::var("PATH").unwrap_or_default())
}

/// A scratch workspace's xtask: the outer (coverage) build's settings and GitHub's must not leak into it.
pub(crate) fn without_outer_build(command: &mut Command) {
    for var in [
        "GITHUB_ACTIONS",
        "GITHUB_STEP_SUMMARY",
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(var);
    }
}

/// Waits until something listens on loopback `port`; past `within`, fails with `failure()` (which may
/// read the server's log).
pub(crate) fn await_listening(port: u16, within: std::time::Duration, failure: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{}", failure());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
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

/// A release with one migration more than the service, numbered `version` (far in the future, unknown
/// to `app`): the real binary, whose `migrate --pending` also lists the migration while the database
/// lacks it, and whose `migrate` applies it (the column `column` added to notes) and records it in
/// `_sqlx_migrations` as sqlx does. `serve` is `serve_script`, or the service.
pub(crate) fn release_with_a_migration(
    dir: &Path,
    name: &str,
    version: u64,
    column: &str,
    serve_script: &str,
) -> PathBuf {
    let path = dir.join(name);
    let app = app_binary();
    let app = app.display();
    let applied = format!("SELECT 1 FROM _sqlx_migrations WHERE version = {version}");
    let migration = format!(
        "BEGIN; ALTER TABLE notes ADD COLUMN IF NOT EXISTS {column} boolean; \
         INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ({version}, 'notes {column}', true, '\\x00', 1); COMMIT"
    );
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nset -e\ncase \"$1 $2\" in\n\
             'migrate --pending') {app} migrate --pending\n  \
               psql --no-psqlrc -Atc \"{applied}\" \"$DATABASE_URL\" | grep -q 1 || echo '{version} notes {column}' ;;\n\
             'migrate ') {app} migrate\n  psql --no-psqlrc -v ON_ERROR_STOP=1 -qc \"{migration}\" \"$DATABASE_URL\" ;;\n\
             'serve ') {serve}\n;;\n\
             *) exec {app} \"$@\" ;;\nesac\n",
            serve = if serve_script.is_empty() { format!("exec {app} serve") } else { serve_script.to_owned() },
        ),
    )
    .expect("write");
    assert!(Command::new("chmod").arg("+x").arg(&path).status().expect("chmod").success());
    path
}
