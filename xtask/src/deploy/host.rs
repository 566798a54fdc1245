//! The host target: releases in `<root>/releases/<id>/app`, two slots behind nginx on one machine, and
//! the state machine's work for each state. Anything that fails before SWITCH leaves the old release
//! serving; a failure during VERIFY switches back to the old release, still warm in its slot.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use super::config::HostConfig;
use super::machine::{Machine, position};
use super::records::{self, Journal, State};
use super::slots::{self, Slot};
use super::{live, lock};
use crate::postgres::client;
use crate::{backup, cleanup};

/// What to ship: a release id and the binary to stage (none: already staged, as for a rollback).
pub(crate) struct Shipment {
    pub(crate) release: String,
    pub(crate) binary: Option<Utf8PathBuf>,
    /// A rollback runs no migrations: expand-only migrations keep the old release working.
    pub(crate) migrate: bool,
}

pub(crate) fn deploy(root: &Utf8Path, shipment: &Shipment) -> Result<()> {
    let mut machine = Machine::new();
    let result = walk(root, shipment, &mut machine);
    let failed_in = machine.current;
    if let Err(error) = &result {
        // Nothing here may hide the deploy's own error.
        let record = serde_json::json!({
            "release": shipment.release, "result": "failed", "state": failed_in,
            "error": format!("{error:#}"), "durations": machine.durations,
        });
        if machine.journal.is_some() {
            let _ = records::audit(root, record);
            let _ = records::clear_journal(root);
        }
    }
    result
}

fn walk(root: &Utf8Path, shipment: &Shipment, machine: &mut Machine) -> Result<()> {
    let release = shipment.release.as_str();
    let config = machine.state("PREFLIGHT", || preflight(root, shipment))?;
    let _lock = machine.state("LOCK", || lock::acquire(root, &format!("deploy {release}")))?;
    recover(&config)?;
    let before = records::read_state(root)?;
    let candidate = before.as_ref().map_or(Slot::Blue, |state| state.active.other());
    let journal = Journal {
        release: release.to_owned(),
        previous: before.as_ref().map(|state| state.release.clone()),
        candidate,
        state: "LOCK".to_owned(),
        pid: std::process::id(),
        started: records::now(),
        before: before.clone(),
    };
    machine.journal = Some((root.to_owned(), journal));

    match &shipment.binary {
        Some(binary) => machine.state("STAGE", || stage(root, release, binary))?,
        None => machine.skip("STAGE", "already staged"),
    }
    let pending = if shipment.migrate { pending_migrations(&config, release)? } else { 0 };
    if pending == 0 {
        machine.skip("BACKUP", "no pending migration");
        machine.skip("MIGRATE", "no pending migration");
    } else {
        let url = config.database_url()?;
        machine.state("BACKUP", || {
            let dir = root.join("backups");
            let file = backup::create(&url, &dir)?;
            backup::rotate(&dir, config.keep_releases, Duration::from_secs(30 * 86_400))?;
            println!("deploy: backed up to {file} before {pending} migration(s)");
            super::restorable::prove(&url, &file, config.verify_backup_max)
        })?;
        machine.state("MIGRATE", || migrate(&config, release))?;
    }

    // From here until the verified switch, a failure or an interrupt stops the candidate.
    let keep_candidate = Arc::new(AtomicBool::new(false));
    let pid = machine.state("CANDIDATE", || {
        slots::stop(&config, candidate)?;
        slots::start(&config, candidate, release)
    })?;
    let _stop_candidate = cleanup::register({
        let (config, keep) = (config.clone(), Arc::clone(&keep_candidate));
        move || {
            if !keep.load(Ordering::SeqCst) {
                let _ = slots::stop(&config, candidate);
            }
        }
    });
    machine.state("HEALTHY", || slots::wait_healthy(&config, candidate, release, pid))?;

    let after = State {
        active: candidate,
        release: release.to_owned(),
        previous: before.as_ref().map(|state| state.release.clone()),
    };
    machine.state("SWITCH", || {
        live::switch(&config, candidate)?;
        records::write_state(root, &after)
    })?;
    if let Err(error) = machine.state("VERIFY", || verify(&config, candidate, release, pid)) {
        switch_back(&config, before.as_ref())?;
        return Err(error.context("the release was rolled back automatically: the previous release serves again"));
    }
    keep_candidate.store(true, Ordering::SeqCst);

    // The old release drains (/readyz 503, DRAIN_DELAY, in-flight requests finish) and exits.
    machine.state("DRAIN", || if before.is_some() { slots::stop(&config, candidate.other()) } else { Ok(()) })?;
    machine.state("FINALIZE", || {
        prune_releases(&config, &after)?;
        Ok(())
    })?;
    let record = serde_json::json!({
        "release": release, "previous": after.previous, "slot": candidate.name(), "result": "deployed",
        "durations": machine.durations,
    });
    records::audit(root, record)?;
    records::clear_journal(root)?;
    println!("deploy: {release} serves from the {} slot", candidate.name());
    Ok(())
}

fn preflight(root: &Utf8Path, shipment: &Shipment) -> Result<HostConfig> {
    let config = HostConfig::load(root)?;
    crate::secrets::host(&config.app_env)?;
    let binary = match &shipment.binary {
        Some(binary) => binary.clone(),
        None => root.join(format!("releases/{}/app", shipment.release)),
    };
    if !binary.is_file() {
        bail!("{binary} does not exist: build it with `cargo build --release --package app` or pass --binary");
    }
    let mut check = std::process::Command::new(&binary);
    check.args(["check", "--deploy"]).envs(config.app_env.iter().map(|(key, value)| (key, value)));
    client::output(check, "`app check --deploy` with deploy.env")
        .context("the service's configuration fails its deployment checks")?;
    Ok(config)
}

/// Copies the binary into `releases/<id>/app` under a temporary name, checks the copy's sha256, renames.
fn stage(root: &Utf8Path, release: &str, binary: &Utf8Path) -> Result<()> {
    let dir = root.join(format!("releases/{release}"));
    let staged = dir.join("app");
    let expected = backup::sha256(binary)?;
    if staged.is_file() {
        if backup::sha256(&staged)? == expected {
            return Ok(());
        }
        bail!("release {release} already exists with another binary: give this one another --release");
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    let partial = dir.join("app.partial");
    fs::copy(binary, &partial).with_context(|| format!("copying {binary} to {partial}"))?;
    if backup::sha256(&partial)? != expected {
        bail!("the copy {partial} does not match {binary}: the disk or the copy failed");
    }
    fs::set_permissions(&partial, fs::Permissions::from_mode(0o755))?;
    fs::rename(&partial, &staged).with_context(|| format!("renaming {partial}"))
}

/// The migrations the new release carries that the database has not applied (`app migrate --pending`):
/// the release binary is the truth, not whatever checkout runs the deploy.
fn pending_migrations(config: &HostConfig, release: &str) -> Result<usize> {
    let pending = release_command(config, release, &["migrate", "--pending"]);
    Ok(client::output(pending, "`app migrate --pending`")?.lines().count())
}

/// `releases/<release>/app ARGS` with the service's environment.
fn release_command(config: &HostConfig, release: &str, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(config.root.join(format!("releases/{release}/app")));
    command.args(args).envs(config.app_env.iter().map(|(key, value)| (key, value)));
    command
}

/// Expand-only migrations (the old release keeps working on the new schema), each waiting at most the
/// service's MIGRATION_LOCK_TIMEOUT for its locks.
fn migrate(config: &HostConfig, release: &str) -> Result<()> {
    client::output(release_command(config, release, &["migrate"]), "`app migrate`").map(drop)
}

/// The window after the switch with the old release still warm: any failed probe or exit fails it.
fn verify(config: &HostConfig, slot: Slot, release: &str, pid: u32) -> Result<()> {
    let deadline = Instant::now() + config.verify_window;
    while Instant::now() < deadline {
        if !crate::postgres::process_alive(pid) {
            bail!("the new release (pid {pid}) exited after the switch; see {}", slots::logs(config, slot));
        }
        if let Err(why) = slots::ready(config, slot, release) {
            bail!("the new release failed a probe after the switch: {why}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Back to the state before this deploy: nginx to the old slot, then the new one stops.
fn switch_back(config: &HostConfig, before: Option<&State>) -> Result<()> {
    let Some(before) = before else {
        // A first deploy has nothing to go back to.
        return Ok(());
    };
    live::switch(config, before.active)?;
    records::write_state(&config.root, before)?;
    slots::stop(config, before.active.other())?;
    records::audit(
        &config.root,
        serde_json::json!({"release": before.release, "result": "rolled back automatically"}),
    )?;
    println!("deploy: switched back to {} in the {} slot", before.release, before.active.name());
    Ok(())
}

/// A deploy that died left a journal: put back a consistent state before going on.
pub(crate) fn recover(config: &HostConfig) -> Result<()> {
    let root = &config.root;
    let Some(journal) = records::read_journal(root)? else {
        return Ok(());
    };
    println!("deploy: recovering: a deploy of {} (pid {}) stopped in {}", journal.release, journal.pid, journal.state);
    let reached = position(&journal.state);
    let verified = reached >= position("DRAIN");
    let state = match (&journal.before, records::read_state(root)?) {
        // Not verified, and the old release can still serve: it serves.
        (Some(before), _) if !verified && slots::running(config, before.active).is_some() => Some(before.clone()),
        (_, current) => current,
    };
    match &state {
        Some(state) => {
            live::switch(config, state.active)?;
            records::write_state(root, state)?;
            slots::stop(config, state.active.other())?;
        }
        None => slots::stop(config, journal.candidate)?,
    }
    let serving = state.as_ref().map(|state| state.release.clone());
    records::audit(
        root,
        serde_json::json!({"release": journal.release, "result": "recovered", "stopped_in": journal.state, "serving": serving}),
    )?;
    records::clear_journal(root)?;
    println!("deploy: recovered; serving: {}", serving.as_deref().unwrap_or("nothing"));
    Ok(())
}

/// Keeps the newest `keep_releases` releases, and always the active and previous ones.
fn prune_releases(config: &HostConfig, state: &State) -> Result<()> {
    let dir = config.root.join("releases");
    let mut releases: Vec<(std::time::SystemTime, String)> = fs::read_dir(&dir)?
        .flatten()
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.file_name().into_string().ok()?)))
        .collect();
    releases.sort_by(|a, b| b.cmp(a));
    for (_, name) in releases.into_iter().skip(config.keep_releases.max(2)) {
        if name != state.release && Some(&name) != state.previous.as_ref() {
            fs::remove_dir_all(dir.join(&name)).with_context(|| format!("removing release {name}"))?;
            println!("deploy: removed old release {name}");
        }
    }
    Ok(())
}
