//! What a host deploy writes down: `state.json` (which slot serves which release), `journal.json` (the
//! deploy in progress, so a killed one is recovered by the next run) and `audit.log` (one JSON line per
//! deploy, rollback or recovery, never rewritten).

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::slots::Slot;

/// The committed state: changed only at SWITCH and when switching back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) active: Slot,
    pub(crate) release: String,
    /// The release before it, still on disk: what `rollback` goes back to.
    pub(crate) previous: Option<String>,
}

/// The deploy in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Journal {
    pub(crate) release: String,
    pub(crate) previous: Option<String>,
    pub(crate) candidate: Slot,
    pub(crate) state: String,
    pub(crate) pid: u32,
    pub(crate) started: u64,
    /// The committed state when the deploy began: what a recovery goes back to.
    pub(crate) before: Option<State>,
}

fn state_path(root: &Utf8Path) -> Utf8PathBuf {
    root.join("state.json")
}

fn journal_path(root: &Utf8Path) -> Utf8PathBuf {
    root.join("journal.json")
}

pub(crate) fn audit_path(root: &Utf8Path) -> Utf8PathBuf {
    root.join("audit.log")
}

pub(crate) fn read_state(root: &Utf8Path) -> Result<Option<State>> {
    read(&state_path(root))
}

pub(crate) fn write_state(root: &Utf8Path, state: &State) -> Result<()> {
    write_atomically(&state_path(root), &serde_json::to_string_pretty(state)?)
}

pub(crate) fn read_journal(root: &Utf8Path) -> Result<Option<Journal>> {
    read(&journal_path(root))
}

pub(crate) fn write_journal(root: &Utf8Path, journal: &Journal) -> Result<()> {
    write_atomically(&journal_path(root), &serde_json::to_string_pretty(journal)?)
}

pub(crate) fn clear_journal(root: &Utf8Path) -> Result<()> {
    match fs::remove_file(journal_path(root)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
        _ => Ok(()),
    }
}

/// Appends one record to the audit log.
pub(crate) fn audit(root: &Utf8Path, mut record: serde_json::Value) -> Result<()> {
    record["at"] = now().into();
    record["who"] = who().into();
    let path = audit_path(root);
    let mut file =
        OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("opening {path}"))?;
    writeln!(file, "{record}").with_context(|| format!("appending to {path}"))?;
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

/// A reader sees the old file or the new one, never half of one.
pub(crate) fn write_atomically(path: &Utf8Path, contents: &str) -> Result<()> {
    let partial = Utf8PathBuf::from(format!("{path}.partial"));
    fs::write(&partial, contents).with_context(|| format!("writing {partial}"))?;
    fs::rename(&partial, path).with_context(|| format!("renaming {partial} to {path}"))
}

/// Points the link `path` at `target` (relative to the link's directory); a reader follows the old
/// link or the new one, never none.
pub(crate) fn link_atomically(path: &Utf8Path, target: &str) -> Result<()> {
    if fs::read_link(path).is_ok_and(|current| current.as_os_str() == target) {
        return Ok(());
    }
    let next = Utf8PathBuf::from(format!("{path}.next"));
    let _ = fs::remove_file(&next);
    std::os::unix::fs::symlink(target, &next).with_context(|| format!("linking {next} to {target}"))?;
    fs::rename(&next, path).with_context(|| format!("replacing {path}"))
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// Who deployed: the GitHub actor in Actions, else the login name.
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
