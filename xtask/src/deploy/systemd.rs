//! Slots as instances of a systemd template unit (`DEPLOY_SYSTEMD_UNIT=shipshape@`, deploy/systemd/):
//! restarted when they crash, started at boot, sandboxed. Before starting an instance the deploy points
//! `slots/<slot>` at the release and writes `slots/<slot>.env` (socket, metrics address, release id);
//! the unit reads deploy.env and that file, so the service gets what a slot started as a plain process
//! gets. Only instances that serve stay enabled: a reboot brings back what served. The deploy runs as
//! an unprivileged user; starting and stopping the instances is all it does as root, through sudo.

use std::process::Command;

use anyhow::{Context as _, Result};

use super::config::HostConfig;
use super::layout::{ReleaseId, Slot, link_atomically, write_atomically};
use crate::process;

/// `shipshape@blue.service` for the template `shipshape@`.
pub(crate) fn instance(unit: &str, slot: Slot) -> String {
    format!("{unit}{}.service", slot.name())
}

/// Starts the slot's instance on `release`; its main pid.
pub(crate) fn start(config: &HostConfig, unit: &str, slot: Slot, release: &ReleaseId) -> Result<u32> {
    let layout = &config.layout;
    let slots = layout.slots();
    std::fs::create_dir_all(&slots).with_context(|| format!("creating {slots}"))?;
    link_atomically(&layout.slot_release(slot), &format!("../releases/{release}"))?;
    let env = format!(
        "# Written by `cargo xtask deploy` for {}: what this slot runs.\nLISTEN_ADDR=unix:{}\nMETRICS_ADDR={}\nAPP_RELEASE={release}\n",
        instance(unit, slot),
        layout.socket(slot),
        config.metrics_addr(slot)
    );
    write_atomically(&layout.slot_env(slot), &env, 0o644)?;
    let instance = instance(unit, slot);
    systemctl(&["enable", "--quiet", &instance])?;
    systemctl(&["restart", &instance])?;
    main_pid(unit, slot)
        .with_context(|| format!("{instance} is not running after its start: see `journalctl -u {instance}`"))
}

/// The main pid systemd knows for the slot's instance; none when it does not run.
pub(crate) fn main_pid(unit: &str, slot: Slot) -> Option<u32> {
    let shown = systemctl(&["show", "--property", "MainPID", "--value", &instance(unit, slot)]).ok()?;
    shown.trim().parse().ok().filter(|pid| *pid != 0)
}

/// Stops the slot's instance (systemd waits for the drain, up to the unit's TimeoutStopSec).
pub(crate) fn stop(unit: &str, slot: Slot) -> Result<()> {
    let instance = instance(unit, slot);
    systemctl(&["disable", "--quiet", &instance])?;
    systemctl(&["stop", &instance]).map(drop)
}

/// `systemctl ARGS`, through `sudo -n` unless we are root: the deploy user may run exactly these
/// command lines as root (deploy/sudo/shipshape), and is never prompted.
fn systemctl(args: &[&str]) -> Result<String> {
    let privileged = !matches!(args.first(), Some(&"show"));
    let mut command = if privileged && !crate::tools::is_root() {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "systemctl"]);
        sudo
    } else {
        Command::new("systemctl")
    };
    command.args(args);
    process::output(command, &format!("`systemctl {}`", args.join(" "))).with_context(|| {
        if privileged && !crate::tools::is_root() {
            "the deploy user may not run it: install deploy/sudo/shipshape as /etc/sudoers.d/shipshape".to_owned()
        } else {
            format!("see `journalctl -u {}`", args.last().unwrap_or(&""))
        }
    })
}
