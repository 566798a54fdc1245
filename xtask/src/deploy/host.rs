//! The host target: releases in `<root>/releases/<id>/app`, two slots behind nginx on one machine, and
//! its work in each state. Anything that fails before SWITCH leaves the old release serving; a failure
//! in SWITCH or VERIFY (an error, or a signal) puts the links back on the old release, still warm in its
//! slot; what cannot be put back is left in the journal for the next deploy to recover.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use super::config::HostConfig;
use super::layout::{Layout, ReleaseId, Slot};
use super::machine::{Machine, Target, Undo, Work};
use super::records::{self, Committed, HostPlan, Journal, Kind, Origin, Outcome, Plan, Record};
use super::state::State;
use super::{live, slots};
use crate::process::{self, Identity};
use crate::{backup, checksum, cleanup};

/// What to ship: a release id and the binary to stage (none: already staged, as for a rollback).
pub(crate) struct Shipment {
    pub(crate) release: ReleaseId,
    pub(crate) binary: Option<Utf8PathBuf>,
    /// A rollback runs no migrations: expand-only migrations keep the old release working.
    pub(crate) migrate: bool,
}

/// Deploys `shipment` on this machine; `outcome` is what a success is recorded as (a rollback is one).
pub(crate) fn deploy(layout: &Layout, shipment: Shipment, origin: Origin, outcome: Outcome) -> Result<()> {
    let machine = Machine::new(layout, &shipment.release, origin, outcome);
    let mut host = Host {
        layout: layout.clone(),
        shipment,
        config: None,
        before: None,
        candidate: Slot::Blue,
        process: None,
        pending: 0,
        phase: Arc::new(AtomicU8::new(STARTED)),
        candidate_guard: None,
    };
    machine.deploy(&mut host)
}

/// Where the candidate is, for what an error or a signal leaves behind: started (stop it), switching
/// or switched (put the links back first), or kept (verified, or left for a recovery).
const STARTED: u8 = 0;
const SWITCHING: u8 = 1;
const KEPT: u8 = 2;

struct Host {
    layout: Layout,
    shipment: Shipment,
    config: Option<HostConfig>,
    /// What served when the deploy took the lock.
    before: Option<Committed>,
    candidate: Slot,
    process: Option<Identity>,
    pending: usize,
    phase: Arc<AtomicU8>,
    candidate_guard: Option<cleanup::Guard>,
}

impl Host {
    fn config(&self) -> Result<&HostConfig> {
        self.config.as_ref().context("PREFLIGHT did not run")
    }

    fn release(&self) -> &ReleaseId {
        &self.shipment.release
    }

    fn process(&self) -> Result<Identity> {
        self.process.context("CANDIDATE did not run")
    }

    /// From here until the verified switch, an error or an interrupt stops the candidate, and puts the
    /// links back on the old slot first once SWITCH has begun.
    fn guard_candidate(&mut self) -> Result<()> {
        let (config, candidate, phase) = (self.config()?.clone(), self.candidate, Arc::clone(&self.phase));
        let old = self.before.as_ref().map(|before| before.active);
        self.candidate_guard = Some(cleanup::register(move || match phase.load(Ordering::SeqCst) {
            KEPT => {}
            SWITCHING => {
                if let Some(old) = old
                    && live::restore(&config.layout, old).is_err()
                {
                    // The links may still name the candidate: it keeps serving until a recovery.
                    return;
                }
                let _ = slots::stop(&config, candidate);
            }
            _ => {
                let _ = slots::stop(&config, candidate);
            }
        }));
        Ok(())
    }

    /// Back to the state before this deploy: nginx to the old slot, then the new one stops. False when
    /// there was nothing before.
    fn switch_back(&self) -> Result<bool> {
        let Some(before) = &self.before else {
            return Ok(false);
        };
        let config = self.config()?;
        live::restore(&self.layout, before.active)?;
        records::write_state(&self.layout, before)?;
        slots::stop(config, before.active.other())?;
        println!("deploy: switched back to {} in the {} slot", before.release, before.active.name());
        Ok(true)
    }
}

impl Target for Host {
    const KIND: Kind = Kind::Host;

    fn run(&mut self, state: State) -> Result<Work> {
        match state {
            State::Preflight => {
                self.config = Some(preflight(&self.layout, &self.shipment)?);
            }
            State::Lock => {
                self.before = records::read_state(&self.layout)?;
                self.candidate = self.before.as_ref().map_or(Slot::Blue, |state| state.active.other());
            }
            State::Stage => match &self.shipment.binary {
                Some(binary) => stage(&self.layout, self.release(), binary)?,
                None => return Ok(Work::Skipped("already staged")),
            },
            State::Backup => {
                if self.shipment.migrate {
                    self.pending = pending_migrations(self.config()?, self.release())?;
                }
                if self.pending == 0 {
                    return Ok(Work::Skipped("no pending migration"));
                }
                let url = self.config()?.database_url()?;
                let dir = self.layout.backups();
                let file = backup::create(&url, &dir)?;
                backup::rotate(&dir, self.config()?.keep_releases, Duration::from_secs(30 * 86_400))?;
                println!("deploy: backed up to {file} before {} migration(s)", self.pending);
                super::restorable::prove(&url, &file, self.config()?.verify_backup_max)?;
            }
            State::Migrate => {
                if self.pending == 0 {
                    return Ok(Work::Skipped("no pending migration"));
                }
                migrate(self.config()?, self.release())?;
            }
            State::Candidate => {
                let config = self.config()?;
                slots::stop(config, self.candidate)?;
                self.process = Some(slots::start(config, self.candidate, self.release())?);
                self.guard_candidate()?;
            }
            State::Healthy => slots::wait_healthy(self.config()?, self.candidate, self.release(), self.process()?)?,
            State::Switch => {
                // The journal names the candidate, so the intended links are on disk before the first rename.
                self.phase.store(SWITCHING, Ordering::SeqCst);
                live::switch(&self.layout, self.candidate)?;
                let after = Committed {
                    active: self.candidate,
                    release: self.release().clone(),
                    previous: self.before.as_ref().map(|state| state.release.clone()),
                };
                records::write_state(&self.layout, &after)?;
            }
            State::Verify => {
                verify(self.config()?, self.candidate, self.release(), self.process()?)?;
                self.phase.store(KEPT, Ordering::SeqCst);
            }
            // The old release drains (/readyz 503, DRAIN_DELAY, in-flight requests finish) and exits.
            State::Drain => {
                if self.before.is_some() {
                    slots::stop(self.config()?, self.candidate.other())?;
                }
            }
            State::Finalize => prune_releases(self.config()?, self.release(), self.before.as_ref())?,
        }
        Ok(Work::Done)
    }

    fn plan(&self) -> Plan {
        Plan {
            previous: self.before.as_ref().map(|state| state.release.to_string()),
            image: None,
            host: Some(HostPlan { candidate: self.candidate, before: self.before.clone() }),
        }
    }

    fn undo(&mut self, failed_in: State, error: anyhow::Error) -> (Undo, anyhow::Error) {
        match failed_in {
            State::Switch | State::Verify => match self.switch_back() {
                Ok(true) => (
                    Undo::Undone,
                    error.context("the release was rolled back automatically: the previous release serves again"),
                ),
                Ok(false) => (Undo::NothingChanged, error),
                Err(undo) => {
                    // Whatever the links name keeps running; the journal says what to finish.
                    self.phase.store(KEPT, Ordering::SeqCst);
                    let why =
                        format!("and switching back failed ({undo:#}): the next deploy recovers from the journal");
                    (Undo::LeftForRecovery, error.context(why))
                }
            },
            // Before SWITCH the candidate's guard stops it; after VERIFY the new release serves.
            State::Preflight
            | State::Lock
            | State::Stage
            | State::Backup
            | State::Migrate
            | State::Candidate
            | State::Healthy
            | State::Drain
            | State::Finalize => (Undo::NothingChanged, error),
        }
    }

    fn recover(&mut self, journal: &Journal) -> Result<Record> {
        println!(
            "deploy: recovering: a deploy of {} (pid {}) stopped in {}",
            journal.release, journal.pid, journal.state
        );
        let config = self.config()?;
        let (before, candidate) = match &journal.plan.host {
            Some(plan) => (plan.before.clone(), Some(plan.candidate)),
            None => (None, None),
        };
        let verified = journal.state >= State::Drain;
        let state = match (before, records::read_state(&self.layout)?) {
            // Not verified, and the old release can still serve: it serves.
            (Some(before), _) if !verified && slots::running(config, before.active).is_some() => Some(before),
            (_, current) => current,
        };
        match &state {
            Some(state) => {
                live::restore(&self.layout, state.active)?;
                records::write_state(&self.layout, state)?;
                slots::stop(config, state.active.other())?;
            }
            None => {
                if let Some(candidate) = candidate {
                    slots::stop(config, candidate)?;
                }
            }
        }
        let serving = state.as_ref().map(|state| state.release.to_string());
        println!("deploy: recovered; serving: {}", serving.as_deref().unwrap_or("nothing"));
        let mut record = Record::new(Kind::Host, &journal.release, Outcome::Recovered);
        record.stopped_in = Some(journal.state);
        record.serving = serving;
        Ok(record)
    }

    fn settle(&mut self) {
        self.candidate_guard = None;
    }

    fn describe(&self, record: &mut Record) {
        record.previous = self.before.as_ref().map(|state| state.release.to_string());
        record.slot = Some(self.candidate);
    }

    fn done(&self) -> String {
        format!("deploy: {} serves from the {} slot", self.release(), self.candidate.name())
    }
}

fn preflight(layout: &Layout, shipment: &Shipment) -> Result<HostConfig> {
    let config = HostConfig::load(layout)?;
    crate::secrets::host(&config.app_env)?;
    let binary = shipment.binary.clone().unwrap_or_else(|| layout.binary(&shipment.release));
    if !binary.is_file() {
        bail!("{binary} does not exist: build it with `cargo build --release --package app` or pass --binary");
    }
    let mut check = config.service(&binary);
    check.args(["check", "--deploy"]);
    process::output(check, "`app check --deploy` with deploy.env")
        .context("the service's configuration fails its deployment checks")?;
    Ok(config)
}

/// Copies the binary into `releases/<id>/app` under a temporary name, checks the copy's sha256, renames.
fn stage(layout: &Layout, release: &ReleaseId, binary: &Utf8Path) -> Result<()> {
    let dir = layout.release(release);
    let staged = layout.binary(release);
    let expected = checksum::sha256(binary)?;
    if staged.is_file() {
        if checksum::sha256(&staged)? == expected {
            return Ok(());
        }
        bail!("release {release} already exists with another binary: give this one another --release");
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    let partial = dir.join("app.partial");
    fs::copy(binary, &partial).with_context(|| format!("copying {binary} to {partial}"))?;
    if checksum::sha256(&partial)? != expected {
        bail!("the copy {partial} does not match {binary}: the disk or the copy failed");
    }
    fs::set_permissions(&partial, fs::Permissions::from_mode(0o755))?;
    fs::rename(&partial, &staged).with_context(|| format!("renaming {partial}"))
}

/// The migrations the new release carries that the database has not applied (`app migrate --pending`):
/// the release binary is the truth, not whatever checkout runs the deploy.
fn pending_migrations(config: &HostConfig, release: &ReleaseId) -> Result<usize> {
    let pending = release_command(config, release, &["migrate", "--pending"]);
    Ok(process::output(pending, "`app migrate --pending`")?.lines().count())
}

/// `releases/<release>/app ARGS` with the service's environment.
fn release_command(config: &HostConfig, release: &ReleaseId, args: &[&str]) -> std::process::Command {
    let mut command = config.service(&config.layout.binary(release));
    command.args(args);
    command
}

/// Expand-only migrations (the old release keeps working on the new schema), each waiting at most the
/// service's MIGRATION_LOCK_TIMEOUT for its locks.
fn migrate(config: &HostConfig, release: &ReleaseId) -> Result<()> {
    process::output(release_command(config, release, &["migrate"]), "`app migrate`").map(drop)
}

/// The window after the switch with the old release still warm: any failed probe or exit fails it.
fn verify(config: &HostConfig, slot: Slot, release: &ReleaseId, process: Identity) -> Result<()> {
    let deadline = Instant::now() + config.verify_window;
    while Instant::now() < deadline {
        if !process.running() {
            bail!("the new release (pid {}) exited after the switch; see {}", process.pid, slots::logs(config, slot));
        }
        if let Err(why) = slots::ready(config, slot, release) {
            bail!("the new release failed a probe after the switch: {why}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Keeps the newest `keep_releases` releases, and always the active and previous ones.
fn prune_releases(config: &HostConfig, release: &ReleaseId, before: Option<&Committed>) -> Result<()> {
    let dir = config.layout.releases();
    let mut releases: Vec<(std::time::SystemTime, String)> = fs::read_dir(&dir)?
        .flatten()
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.file_name().into_string().ok()?)))
        .collect();
    releases.sort_by(|a, b| b.cmp(a));
    let previous = before.map(|state| state.release.as_str());
    for (_, name) in releases.into_iter().skip(config.keep_releases.max(2)) {
        if name != release.as_str() && Some(name.as_str()) != previous {
            fs::remove_dir_all(dir.join(&name)).with_context(|| format!("removing release {name}"))?;
            println!("deploy: removed old release {name}");
        }
    }
    Ok(())
}
