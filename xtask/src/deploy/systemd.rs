//! Slots as instances of a systemd template unit (`DEPLOY_SYSTEMD_UNIT=shipshape@`, deploy/systemd/):
//! restarted when they crash, started at boot, sandboxed. Before starting an instance the deploy points
//! `slots/<slot>` at the release and writes `slots/<slot>.env` (socket, metrics address, release id);
//! the unit reads deploy.env and that file, so the service gets what a slot started as a plain process
//! gets. Only instances that serve stay enabled: a reboot brings back what served.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use super::config::HostConfig;
use super::records::{link_atomically, write_atomically};
use super::slots::Slot;
use crate::postgres::client;

/// `shipshape@blue.service` for the template `shipshape@`.
pub(crate) fn instance(unit: &str, slot: Slot) -> String {
    format!("{unit}{}.service", slot.name())
}

/// Starts the slot's instance on `release`; its main pid.
pub(crate) fn start(config: &HostConfig, unit: &str, slot: Slot, release: &str) -> Result<u32> {
    let slots = config.root.join("slots");
    std::fs::create_dir_all(&slots).with_context(|| format!("creating {slots}"))?;
    link_atomically(&slots.join(slot.name()), &format!("../releases/{release}"))?;
    let env = format!(
        "# Written by `cargo xtask deploy` for {}: what this slot runs.\nLISTEN_ADDR=unix:{}\nMETRICS_ADDR={}\nAPP_RELEASE={release}\n",
        instance(unit, slot),
        config.socket(slot),
        config.metrics_addr(slot)
    );
    write_atomically(&slots.join(format!("{}.env", slot.name())), &env)?;
    let instance = instance(unit, slot);
    systemctl(&["enable", "--quiet", &instance])?;
    systemctl(&["restart", &instance])?;
    let pid: u32 = systemctl(&["show", "--property", "MainPID", "--value", &instance])?
        .trim()
        .parse()
        .context("`systemctl show` gave no MainPID")?;
    if pid == 0 {
        bail!("{instance} is not running after its start: see `journalctl -u {instance}`");
    }
    Ok(pid)
}

/// Stops the slot's instance (systemd waits for the drain, up to the unit's TimeoutStopSec).
pub(crate) fn stop(unit: &str, slot: Slot) -> Result<()> {
    let instance = instance(unit, slot);
    systemctl(&["disable", "--quiet", &instance])?;
    systemctl(&["stop", &instance]).map(drop)
}

fn systemctl(args: &[&str]) -> Result<String> {
    let mut command = Command::new("systemctl");
    command.args(args);
    client::output(command, &format!("`systemctl {}`", args.join(" ")))
}
