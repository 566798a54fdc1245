//! What a deploy writes down, as types: the host's committed state (`state.json`: which slot serves
//! which release), the journal of the deploy in progress (so the next run recovers a killed one) and
//! the audit record, one JSON line per deploy, rollback or recovery in `audit.log`, never rewritten.
//! The machine writes the journal and the audit log; the targets fill in their parts.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use camino::Utf8Path;
use serde::{Deserialize, Serialize};

use super::layout::{Layout, ReleaseId, Slot, write_atomically};
use super::state::State;

/// The host's committed state: changed only at SWITCH and when switching back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Committed {
    pub(crate) active: Slot,
    pub(crate) release: ReleaseId,
    /// The release before it, still on disk: what `rollback` goes back to.
    pub(crate) previous: Option<ReleaseId>,
}

/// Where a deploy goes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Host,
    Kubernetes,
    Fly,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Kubernetes => "kubernetes",
            Self::Fly => "fly",
        }
    }
}

/// What a target starts from, taken under the lock and kept in the journal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Plan {
    /// What served before (a release id on a host, an image on a platform).
    pub(crate) previous: Option<String>,
    /// The platform targets' image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) image: Option<String>,
    /// The host's slots: the candidate, and what a recovery goes back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<HostPlan>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HostPlan {
    /// The slot the release starts in; from SWITCH on, what the live link is meant to name (and the
    /// standby link the other slot): recorded before the first rename, so a recovery can finish or undo it.
    pub(crate) candidate: Slot,
    /// The committed state when the deploy began: what a recovery goes back to.
    pub(crate) before: Option<Committed>,
}

/// The deploy in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Journal {
    pub(crate) target: Kind,
    pub(crate) release: ReleaseId,
    pub(crate) state: State,
    pub(crate) pid: u32,
    pub(crate) started: u64,
    #[serde(flatten)]
    pub(crate) plan: Plan,
}

/// What a record says happened.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Outcome {
    #[serde(rename = "deployed")]
    Deployed,
    /// `cargo xtask rollback`: an operator put the previous release back.
    #[serde(rename = "rolled back")]
    RolledBack,
    /// The machine put the previous release back after the new one failed.
    #[serde(rename = "rolled back automatically")]
    RolledBackAutomatically,
    /// A host deploy that died was put back into a consistent state.
    #[serde(rename = "recovered")]
    Recovered,
    /// A platform deploy that died: the platform finished or abandoned it on its own.
    #[serde(rename = "interrupted")]
    Interrupted,
    #[serde(rename = "failed")]
    Failed,
}

/// Who started a deploy and from what: in CI the actor, the commit and the workflow run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) who: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) run_url: Option<String>,
}

/// One line of `audit.log`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) at: u64,
    #[serde(flatten)]
    pub(crate) origin: Origin,
    pub(crate) target: Kind,
    pub(crate) release: ReleaseId,
    pub(crate) result: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) previous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slot: Option<Slot>,
    /// Where a failed deploy stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) state: Option<State>,
    /// Where a deploy that died stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stopped_in: Option<State>,
    /// What serves after a recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) serving: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Seconds per state.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) durations: BTreeMap<State, f64>,
}

impl Record {
    pub(crate) fn new(target: Kind, release: &ReleaseId, result: Outcome) -> Self {
        Self {
            at: now(),
            origin: Origin::default(),
            target,
            release: release.clone(),
            result,
            previous: None,
            image: None,
            slot: None,
            state: None,
            stopped_in: None,
            serving: None,
            error: None,
            durations: BTreeMap::new(),
        }
    }
}

pub(crate) fn read_state(layout: &Layout) -> Result<Option<Committed>> {
    read(&layout.state())
}

pub(crate) fn write_state(layout: &Layout, state: &Committed) -> Result<()> {
    write_atomically(&layout.state(), &serde_json::to_string_pretty(state)?, 0o644)
}

pub(crate) fn read_journal(layout: &Layout, target: Kind) -> Result<Option<Journal>> {
    read(&layout.journal(target == Kind::Host))
}

pub(crate) fn write_journal(layout: &Layout, journal: &Journal) -> Result<()> {
    write_atomically(&layout.journal(journal.target == Kind::Host), &serde_json::to_string_pretty(journal)?, 0o644)
}

pub(crate) fn clear_journal(layout: &Layout, target: Kind) -> Result<()> {
    match fs::remove_file(layout.journal(target == Kind::Host)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
        _ => Ok(()),
    }
}

/// Appends one record to the audit log.
pub(crate) fn append(layout: &Layout, record: &Record) -> Result<()> {
    let path = layout.audit();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(&path)
        .with_context(|| format!("opening {path}"))?;
    writeln!(file, "{}", serde_json::to_string(record)?).with_context(|| format!("appending to {path}"))?;
    Ok(())
}

fn read<T: for<'de> Deserialize<'de>>(path: &Utf8Path) -> Result<Option<T>> {
    match fs::read_to_string(path) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| format!("{path} is not valid: fix or remove it"))?))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading {path}")),
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// Who runs this: the GitHub actor in Actions, else the login name.
pub(crate) fn who() -> String {
    ["GITHUB_ACTOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .or_else(|| {
            let output = std::process::Command::new("id").arg("-un").output().ok()?;
            Some(String::from_utf8_lossy(&output.stdout).trim().to_owned()).filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_say_what_happened_in_words() {
        let release = ReleaseId::parse("r1").expect("valid");
        let mut record = Record::new(Kind::Host, &release, Outcome::RolledBackAutomatically);
        record.durations.insert(State::Healthy, 1.5);
        let line = serde_json::to_value(&record).expect("JSON");
        assert_eq!(line["result"], "rolled back automatically");
        assert_eq!(line["target"], "host");
        assert_eq!(line["durations"]["HEALTHY"], 1.5);
        assert!(line.get("error").is_none());
    }
}
