//! The two release slots of the host target, blue and green: starting a release in a slot as a process
//! that outlives the deploy (its own process group, output to `logs/<slot>.log`) or as an instance of a
//! systemd unit (systemd.rs), its pid file, its health, and a graceful stop (SIGTERM: the service
//! drains, then exits 0).

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use super::config::HostConfig;
use super::systemd;
use crate::http_probe::{self, Reply, Request};
use crate::postgres::process_alive;

/// How many consecutive ready answers make a candidate healthy.
const HEALTHY_STREAK: u32 = 3;
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Slot {
    Blue,
    Green,
}

impl Slot {
    pub(crate) fn other(self) -> Self {
        match self {
            Self::Blue => Self::Green,
            Self::Green => Self::Blue,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Blue => "blue",
            Self::Green => "green",
        }
    }
}

fn pid_file(config: &HostConfig, slot: Slot) -> Utf8PathBuf {
    config.root.join(format!("run/{}.pid", slot.name()))
}

/// The pid of the process serving in `slot`, if it still runs.
pub(crate) fn running(config: &HostConfig, slot: Slot) -> Option<u32> {
    let pid = fs::read_to_string(pid_file(config, slot)).ok()?.trim().parse().ok()?;
    process_alive(pid).then_some(pid)
}

/// Where the slot's output goes, for error messages.
pub(crate) fn logs(config: &HostConfig, slot: Slot) -> String {
    match &config.systemd_unit {
        Some(unit) => format!("`journalctl -u {}`", systemd::instance(unit, slot)),
        None => format!("logs/{}.log", slot.name()),
    }
}

/// Starts `releases/<release>/app serve` in `slot`; returns its pid.
pub(crate) fn start(config: &HostConfig, slot: Slot, release: &str) -> Result<u32> {
    fs::create_dir_all(config.root.join("run"))?;
    if let Some(unit) = &config.systemd_unit {
        let pid = systemd::start(config, unit, slot, release)?;
        fs::write(pid_file(config, slot), pid.to_string())?;
        return Ok(pid);
    }
    let binary = config.root.join(format!("releases/{release}/app"));
    fs::create_dir_all(config.root.join("logs"))?;
    let log_path = config.root.join(format!("logs/{}.log", slot.name()));
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {log_path}"))?;
    let child = Command::new(&binary)
        .arg("serve")
        .envs(config.app_env.iter().map(|(key, value)| (key, value)))
        .env("LISTEN_ADDR", format!("unix:{}", config.socket(slot)))
        .env("METRICS_ADDR", config.metrics_addr(slot))
        .env("APP_RELEASE", release)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C aimed at the deploy must not reach the service.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {binary} in the {} slot", slot.name()))?;
    let pid = child.id();
    fs::write(pid_file(config, slot), pid.to_string())?;
    // Not waited for: the service outlives the deploy (once we exit, init reaps it). Until then a
    // slot that exits stays a zombie, which `process_alive` counts as gone.
    drop(child);
    Ok(pid)
}

/// SIGTERM, then wait until the process is gone; SIGKILL after the stop timeout. (systemd does the
/// same for an instance of its unit.)
pub(crate) fn stop(config: &HostConfig, slot: Slot) -> Result<()> {
    if let Some(unit) = &config.systemd_unit {
        systemd::stop(unit, slot)?;
        let _ = fs::remove_file(pid_file(config, slot));
        return Ok(());
    }
    let Some(pid) = running(config, slot) else {
        let _ = fs::remove_file(pid_file(config, slot));
        return Ok(());
    };
    signal(pid, "TERM");
    let deadline = Instant::now() + config.stop_timeout;
    while process_alive(pid) {
        if Instant::now() > deadline {
            signal(pid, "KILL");
            bail!("the {} slot (pid {pid}) did not stop within {:?}; it was killed", slot.name(), config.stop_timeout);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = fs::remove_file(pid_file(config, slot));
    Ok(())
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status();
}

/// `/readyz` of the slot: 200 and the expected release.
pub(crate) fn ready(config: &HostConfig, slot: Slot, release: &str) -> Result<(), String> {
    // The probe paths answer whatever the Host header says.
    let request = Request { method: "GET", path: "/readyz", host: "localhost", headers: &[] };
    match http_probe::send_unix(&config.socket(slot), &request) {
        Ok(Reply::Response(response)) if response.status == 200 => {
            let reported = serde_json::from_str::<serde_json::Value>(&response.body)
                .ok()
                .and_then(|body| body["release"].as_str().map(str::to_owned));
            if reported.as_deref() == Some(release) {
                Ok(())
            } else {
                Err(format!("reports release {reported:?}, expected {release:?}"))
            }
        }
        Ok(Reply::Response(response)) => Err(format!("/readyz answered {}", response.status)),
        Ok(Reply::Closed) => Err("/readyz closed the connection".to_owned()),
        Err(error) => Err(format!("{error:#}")),
    }
}

/// Waits for several consecutive ready answers; fails early when the process dies.
pub(crate) fn wait_healthy(config: &HostConfig, slot: Slot, release: &str, pid: u32) -> Result<()> {
    let deadline = Instant::now() + config.health_timeout;
    let mut streak = 0;
    let mut last = String::from("no answer yet");
    while streak < HEALTHY_STREAK {
        if !process_alive(pid) {
            bail!("the candidate (pid {pid}) exited before it was healthy; see {}", logs(config, slot));
        }
        if Instant::now() > deadline {
            bail!(
                "the candidate was not healthy within {:?}: {last}; see {}",
                config.health_timeout,
                logs(config, slot)
            );
        }
        match ready(config, slot, release) {
            Ok(()) => streak += 1,
            Err(why) => {
                streak = 0;
                last = why;
            }
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
    Ok(())
}
