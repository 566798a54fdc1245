//! The one way the deploy and the database tools run other programs: run with output shown, capture
//! stdout, check whether a process is alive, identify it beyond its pid, signal it, and give a service
//! exactly the environment it is configured with.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use camino::Utf8Path;

/// Runs `command` with this terminal's output; a failure names `what` it was doing.
pub(crate) fn run(mut command: Command, what: &str) -> Result<()> {
    let status = command.status().with_context(|| format!("{what}: could not start {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs `command`, returning its stdout; a failure carries its stderr and `what` it was doing.
pub(crate) fn output(mut command: Command, what: &str) -> Result<String> {
    let output = command.output().with_context(|| format!("{what}: could not start {:?}", command.get_program()))?;
    if !output.status.success() {
        bail!("{what} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The variables a service keeps from the deploy's own environment: where programs are, and the locale.
const KEPT: [&str; 3] = ["PATH", "LANG", "LC_ALL"];

/// `program` with a clean environment: `env` and nothing else (PATH and the locale aside), so what the
/// service sees does not depend on who runs the deploy from which shell.
pub(crate) fn service<K: AsRef<OsStr>, V: AsRef<OsStr>>(
    program: impl AsRef<OsStr>,
    env: impl IntoIterator<Item = (K, V)>,
) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    for name in KEPT {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(env);
    command
}

/// True for a running process (a zombie counts as gone).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) if Utf8Path::new("/proc/self/stat").exists() => false,
        Err(_) => Command::new("ps")
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success()),
    }
}

/// A process as more than its pid: the pid and when it started (clock ticks since boot, from
/// `/proc/<pid>/stat`). A pid reused by another process after an exit or a reboot has another start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    pub(crate) start: u64,
}

impl Identity {
    /// The process running as `pid` now, if any.
    pub(crate) fn of(pid: u32) -> Option<Self> {
        alive(pid).then(|| Self { pid, start: start_time(pid).unwrap_or(0) })
    }

    /// True while this very process runs (not another one that got its pid).
    pub(crate) fn running(&self) -> bool {
        alive(self.pid) && start_time(self.pid).unwrap_or(0) == self.start
    }

    /// `PID START`, as a pid file holds it.
    pub(crate) fn to_line(self) -> String {
        format!("{} {}\n", self.pid, self.start)
    }

    /// Reads `PID START`; a file with a bare pid (an older deploy's) identifies nothing.
    pub(crate) fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let pid = words.next()?.parse().ok()?;
        let start = words.next()?.parse().ok()?;
        Some(Self { pid, start })
    }
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses) start at field 3.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Signal {
    Term,
    Kill,
}

/// Sends `signal` to `process`, only if it is still that process.
pub(crate) fn signal(process: Identity, signal: Signal) {
    if !process.running() {
        return;
    }
    signal_pid(process.pid, signal);
}

/// Sends `signal` to whatever runs as `pid` (for a pid a live lock holder wrote just now).
pub(crate) fn signal_pid(pid: u32, signal: Signal) {
    let name = match signal {
        Signal::Term => "-TERM",
        Signal::Kill => "-KILL",
    };
    let _ = Command::new("kill").args([name, &pid.to_string()]).stderr(Stdio::null()).status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_known_by_its_pid_and_start() {
        let me = Identity::of(std::process::id()).expect("this process runs");
        assert!(me.running() && me.start > 0);
        assert_eq!(Identity::parse(&me.to_line()), Some(me));
        let impostor = Identity { start: me.start + 1, ..me };
        assert!(!impostor.running(), "another start time is another process");
        assert_eq!(Identity::parse("1234"), None);
    }

    #[test]
    fn a_service_gets_only_its_own_environment() {
        let mut command = service("env", [("ONLY", "this")]);
        command.env_remove("LANG").env_remove("LC_ALL");
        let out = output(command, "env").expect("env runs");
        let names: Vec<&str> = out.lines().filter_map(|line| line.split_once('=').map(|(name, _)| name)).collect();
        assert!(names.iter().all(|name| ["ONLY", "PATH"].contains(name)), "{names:?}");
        assert!(out.contains("ONLY=this\n"));
    }
}
