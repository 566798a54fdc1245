//! Every path under the deploy root, the one place that spells them, with the writes a reader may never
//! see half-done; and the release id, checked before it becomes part of any path.
//!
//! ```text
//! <root>/deploy.env            the service's environment and the DEPLOY_* settings
//! <root>/releases/<id>/app     each release's binary
//! <root>/run/<slot>.sock|.pid  the slots' sockets and processes; live.sock, standby.sock: the links nginx uses
//! <root>/slots/<slot>[.env]    systemd mode: the release link and the environment file of each instance
//! <root>/logs/<slot>.log       process mode: each slot's output
//! <root>/backups/              the dumps taken before migrations
//! <root>/acme/.well-known/acme-challenge/   ACME HTTP-01 responses (`xtask tls`), which nginx serves on port 80
//! <root>/state.json, journal.json, platform-journal.json, audit.log, deploy.lock
//! <root>/bin/xtask, incoming/<id>/app   over ssh: the xtask and an uploaded release
//! ```

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

/// The two slots a host runs releases in, one serving and one standing by.
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

/// A release id: a letter or digit, then up to 63 letters, digits, `.`, `_` or `-`. It names a directory
/// under `releases/`, goes into environment files and over ssh, so nothing else is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct ReleaseId(String);

impl ReleaseId {
    pub(crate) fn parse(id: &str) -> Result<Self> {
        let valid = id.len() <= 64
            && id.chars().next().is_some_and(|first| first.is_ascii_alphanumeric())
            && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            bail!(
                "{id:?} is not a release id: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
            );
        }
        Ok(Self(id.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ReleaseId {
    type Error = anyhow::Error;

    fn try_from(id: String) -> Result<Self> {
        Self::parse(&id)
    }
}

impl From<ReleaseId> for String {
    fn from(id: ReleaseId) -> Self {
        id.0
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for ReleaseId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// The deploy root and everything in it.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: Utf8PathBuf,
}

impl Layout {
    pub(crate) fn new(root: &Utf8Path) -> Self {
        Self { root: root.to_owned() }
    }

    pub(crate) fn root(&self) -> &Utf8Path {
        &self.root
    }

    pub(crate) fn deploy_env(&self) -> Utf8PathBuf {
        self.root.join("deploy.env")
    }

    pub(crate) fn releases(&self) -> Utf8PathBuf {
        self.root.join("releases")
    }

    pub(crate) fn release(&self, id: &ReleaseId) -> Utf8PathBuf {
        self.releases().join(id.as_str())
    }

    pub(crate) fn binary(&self, id: &ReleaseId) -> Utf8PathBuf {
        self.release(id).join("app")
    }

    pub(crate) fn run(&self) -> Utf8PathBuf {
        self.root.join("run")
    }

    /// The unix socket the slot's service listens on.
    pub(crate) fn socket(&self, slot: Slot) -> Utf8PathBuf {
        self.run().join(format!("{}.sock", slot.name()))
    }

    /// The link nginx connects through: it names the socket of the slot that serves.
    pub(crate) fn live_socket(&self) -> Utf8PathBuf {
        self.run().join("live.sock")
    }

    /// The link nginx falls back to when the live slot refuses: it names the other slot's socket.
    pub(crate) fn standby_socket(&self) -> Utf8PathBuf {
        self.run().join("standby.sock")
    }

    pub(crate) fn pid_file(&self, slot: Slot) -> Utf8PathBuf {
        self.run().join(format!("{}.pid", slot.name()))
    }

    pub(crate) fn logs(&self) -> Utf8PathBuf {
        self.root.join("logs")
    }

    pub(crate) fn log(&self, slot: Slot) -> Utf8PathBuf {
        self.logs().join(format!("{}.log", slot.name()))
    }

    pub(crate) fn slots(&self) -> Utf8PathBuf {
        self.root.join("slots")
    }

    /// systemd mode: the link to the release the slot's instance runs.
    pub(crate) fn slot_release(&self, slot: Slot) -> Utf8PathBuf {
        self.slots().join(slot.name())
    }

    /// systemd mode: the environment file the slot's instance reads after deploy.env.
    pub(crate) fn slot_env(&self, slot: Slot) -> Utf8PathBuf {
        self.slots().join(format!("{}.env", slot.name()))
    }

    pub(crate) fn backups(&self) -> Utf8PathBuf {
        self.root.join("backups")
    }

    /// nginx's `root` for `/.well-known/acme-challenge/` (deploy/nginx/shipshape.conf).
    pub(crate) fn acme_webroot(&self) -> Utf8PathBuf {
        self.root.join("acme")
    }

    pub(crate) fn state(&self) -> Utf8PathBuf {
        self.root.join("state.json")
    }

    /// The deploy in progress; the platform targets keep theirs apart, so that the two never meet.
    pub(crate) fn journal(&self, host: bool) -> Utf8PathBuf {
        self.root.join(if host { "journal.json" } else { "platform-journal.json" })
    }

    pub(crate) fn audit(&self) -> Utf8PathBuf {
        self.root.join("audit.log")
    }

    pub(crate) fn lock(&self) -> Utf8PathBuf {
        self.root.join("deploy.lock")
    }

    /// The kubernetes target's rendered manifests.
    pub(crate) fn kubernetes_manifests(&self) -> Utf8PathBuf {
        self.root.join("kubernetes.yaml")
    }

    /// Over ssh: the xtask kept on the host for status and rollback.
    pub(crate) fn xtask(&self) -> Utf8PathBuf {
        self.root.join("bin/xtask")
    }

    /// Over ssh: where a release is uploaded before the deploy stages it.
    pub(crate) fn incoming(&self, id: &ReleaseId) -> Utf8PathBuf {
        self.root.join("incoming").join(id.as_str())
    }
}

/// A reader sees the old file or the new one, never half of one; `mode` for a new file (0600 for
/// anything a secret may reach).
pub(crate) fn write_atomically(path: &Utf8Path, contents: &str, mode: u32) -> Result<()> {
    let partial = Utf8PathBuf::from(format!("{path}.partial"));
    let _ = fs::remove_file(&partial);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&partial)
        .with_context(|| format!("writing {partial}"))?;
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).with_context(|| format!("writing {partial}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_ids_are_names_not_paths() {
        for good in ["r1", "20261123T2015-1a2b3c4d", "v1.2.3_rc", &"a".repeat(64)] {
            assert_eq!(ReleaseId::parse(good).expect(good).as_str(), good);
        }
        for bad in ["", "../x", ".hidden", "-x", "a/b", "a b", "x\nAPP=1", "é", &"a".repeat(65), "r1;rm"] {
            assert!(ReleaseId::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(serde_json::from_str::<ReleaseId>("\"../x\"").is_err(), "a journal cannot smuggle one in");
    }
}
