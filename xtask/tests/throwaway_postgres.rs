//! `cargo xtask postgres` end to end: the throwaway cluster never outlives the xtask, whether it is
//! interrupted or killed outright, and `DATABASE_URL` starts nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

struct Running {
    child: Child,
    data: PathBuf,
    postmaster: u32,
    _stdout: BufReader<ChildStdout>,
}

fn xtask() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.arg("postgres").env_remove("DATABASE_URL").stdout(Stdio::piped());
    command
}

/// Starts `xtask postgres` and waits for it to print where the cluster lives.
fn start() -> Running {
    let mut child = xtask().spawn().expect("xtask starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
    let mut data = None;
    let mut line = String::new();
    while stdout.read_line(&mut line).expect("reading stdout") > 0 {
        if let Some(dir) = line.trim().strip_prefix("PGDATA=") {
            data = Some(PathBuf::from(dir));
            break;
        }
        line.clear();
    }
    let data = data.expect("xtask postgres printed PGDATA");
    let postmaster = std::fs::read_to_string(data.join("postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("a pid");
    assert!(alive(postmaster), "the server runs once PGDATA is printed");
    Running { child, data, postmaster, _stdout: stdout }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().expect("kill");
    assert!(status.success());
}

fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cluster_dir(data: &Path) -> PathBuf {
    data.parent().expect("data sits in the cluster directory").to_path_buf()
}

#[test]
fn an_interrupt_stops_the_server_and_removes_the_cluster() {
    let mut running = start();
    signal(running.child.id(), "INT");
    let status = running.child.wait().expect("xtask exits");
    assert_eq!(status.code(), Some(130), "exit status after SIGINT");
    assert!(!alive(running.postmaster), "postgres outlived the xtask");
    assert!(!cluster_dir(&running.data).exists(), "the cluster directory was left behind");
}

#[test]
fn a_terminate_stops_the_server_and_removes_the_cluster() {
    let mut running = start();
    signal(running.child.id(), "TERM");
    running.child.wait().expect("xtask exits");
    assert!(!alive(running.postmaster));
    assert!(!cluster_dir(&running.data).exists());
}

#[test]
fn a_killed_xtask_takes_its_server_along_and_the_next_run_sweeps_the_directory() {
    let mut killed = start();
    killed.child.kill().expect("SIGKILL");
    killed.child.wait().expect("reaped");
    eventually("the orphaned postgres exits", || !alive(killed.postmaster));
    assert!(cluster_dir(&killed.data).exists(), "nothing could remove it yet");

    let mut next = start();
    assert!(!cluster_dir(&killed.data).exists(), "the next run swept the leftover cluster");
    signal(next.child.id(), "INT");
    next.child.wait().expect("xtask exits");
    assert!(!alive(next.postmaster));
}

#[test]
fn database_url_is_used_and_nothing_is_started() {
    let output = xtask().env("DATABASE_URL", "postgres://app:secret@db.invalid:5432/app").output().expect("xtask runs");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("DATABASE_URL=postgres://app:secret@db.invalid:5432/app"), "{stdout}");
    assert!(stdout.contains("using DATABASE_URL=postgres://app:***@db.invalid"), "{stdout}");
    assert!(!stdout.contains("PGDATA="), "a cluster was started: {stdout}");
}
