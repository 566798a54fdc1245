//! The two release slots of the host target, blue and green: starting a release in a slot as a process
//! that outlives the deploy (its own process group, output to `logs/<slot>.log`) or as an instance of a
//! systemd unit (systemd.rs), its pid file, its health, and a graceful stop (SIGTERM: the service
//! drains, then exits 0).

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::config::HostConfig;
use super::layout::{Layout, ReleaseId, Slot};
use super::systemd;
use crate::http_probe::{self, Reply, Request};
use crate::process::{self, Identity, Signal};

/// How many consecutive ready answers make a candidate healthy.
const HEALTHY_STREAK: u32 = 3;
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// The process serving in `slot`, if it still runs: the one the pid file names, started when it says
/// (a pid reused after a crash or a reboot is somebody else's process), or systemd's main pid.
pub(crate) fn running(config: &HostConfig, slot: Slot) -> Option<Identity> {
    if let Some(unit) = &config.systemd_unit {
        return systemd::main_pid(unit, slot).and_then(Identity::of);
    }
    let recorded = Identity::parse(&fs::read_to_string(config.layout.pid_file(slot)).ok()?)?;
    recorded.running().then_some(recorded)
}

fn record(config: &HostConfig, slot: Slot, pid: u32) -> Result<Identity> {
    let identity =
        Identity::of(pid).with_context(|| format!("the {} slot's process (pid {pid}) is gone", slot.name()))?;
    let path = config.layout.pid_file(slot);
    fs::write(&path, identity.to_line()).with_context(|| format!("writing {path}"))?;
    Ok(identity)
}

/// Where the slot's output goes, for error messages.
pub(crate) fn logs(config: &HostConfig, slot: Slot) -> String {
    match &config.systemd_unit {
        Some(unit) => format!("`journalctl -u {}`", systemd::instance(unit, slot)),
        None => config.layout.log(slot).to_string(),
    }
}

/// Starts `releases/<release>/app serve` in `slot`; returns its process.
pub(crate) fn start(config: &HostConfig, slot: Slot, release: &ReleaseId) -> Result<Identity> {
    let layout = &config.layout;
    fs::create_dir_all(layout.run())?;
    if let Some(unit) = &config.systemd_unit {
        let pid = systemd::start(config, unit, slot, release)?;
        return record(config, slot, pid);
    }
    let binary = layout.binary(release);
    fs::create_dir_all(layout.logs())?;
    let log_path = layout.log(slot);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {log_path}"))?;
    let child = config
        .service(&binary)
        .arg("serve")
        .env("LISTEN_ADDR", format!("unix:{}", layout.socket(slot)))
        .env("METRICS_ADDR", config.metrics_addr(slot))
        .env("APP_RELEASE", release.as_str())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C aimed at the deploy must not reach the service.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {binary} in the {} slot", slot.name()))?;
    // Not waited for: the service outlives the deploy (once we exit, init reaps it). Until then a
    // slot that exits stays a zombie, which `process::alive` counts as gone.
    let identity = record(config, slot, child.id());
    drop(child);
    identity
}

/// SIGTERM, then wait until the process is gone; SIGKILL after the stop timeout. (systemd does the
/// same for an instance of its unit.)
pub(crate) fn stop(config: &HostConfig, slot: Slot) -> Result<()> {
    let pid_file = config.layout.pid_file(slot);
    if let Some(unit) = &config.systemd_unit {
        systemd::stop(unit, slot)?;
        let _ = fs::remove_file(&pid_file);
        return Ok(());
    }
    let Some(process) = running(config, slot) else {
        let _ = fs::remove_file(&pid_file);
        return Ok(());
    };
    process::signal(process, Signal::Term);
    let deadline = Instant::now() + config.stop_timeout;
    while process.running() {
        if Instant::now() > deadline {
            process::signal(process, Signal::Kill);
            bail!(
                "the {} slot (pid {}) did not stop within {:?}; it was killed",
                slot.name(),
                process.pid,
                config.stop_timeout
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = fs::remove_file(&pid_file);
    Ok(())
}

/// `/readyz` of the slot: the release it reports when it answers 200, else why not.
pub(crate) fn probe(layout: &Layout, slot: Slot) -> Result<String, String> {
    // The probe paths answer whatever the Host header says.
    let request = Request { method: "GET", path: "/readyz", host: "localhost", server_name: None, headers: &[] };
    match http_probe::send_unix(&layout.socket(slot), &request) {
        Ok(Reply::Response(response)) if response.status == 200 => {
            serde_json::from_str::<serde_json::Value>(&response.body)
                .ok()
                .and_then(|body| body["release"].as_str().map(str::to_owned))
                .ok_or_else(|| "/readyz reports no release".to_owned())
        }
        Ok(Reply::Response(response)) => Err(format!("/readyz answered {}", response.status)),
        Ok(Reply::Closed) => Err("/readyz closed the connection".to_owned()),
        Err(error) => Err(format!("{error:#}")),
    }
}

/// `/readyz` of the slot: 200 and the expected release.
pub(crate) fn ready(config: &HostConfig, slot: Slot, release: &ReleaseId) -> Result<(), String> {
    let reported = probe(&config.layout, slot)?;
    if reported == release.as_str() {
        Ok(())
    } else {
        Err(format!("reports release {reported:?}, expected {:?}", release.as_str()))
    }
}

/// Waits for several consecutive ready answers; fails early when the process dies.
pub(crate) fn wait_healthy(config: &HostConfig, slot: Slot, release: &ReleaseId, process: Identity) -> Result<()> {
    let deadline = Instant::now() + config.health_timeout;
    let mut streak = 0;
    let mut last = String::from("no answer yet");
    while streak < HEALTHY_STREAK {
        if !process.running() {
            bail!("the candidate (pid {}) exited before it was healthy; see {}", process.pid, logs(config, slot));
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
