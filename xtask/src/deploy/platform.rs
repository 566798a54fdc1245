//! What the platform targets (kubernetes, fly) share: the states they leave to the platform, their
//! journal plan and records, the undo once the platform has been changed, and their CLI, every command
//! echoed before it runs.

use std::process::Command;

use anyhow::{Context as _, Result};

use super::image::Image;
use super::layout::ReleaseId;
use super::machine::{State, Undo};
use super::records::{Journal, Kind, Outcome, Plan, Record};
use crate::process;

/// Why STAGE has nothing to do on a platform.
pub(crate) const STAGED: &str = "the image is in its registry: CI pushed it";
/// Why BACKUP has nothing to do on a platform.
pub(crate) const NO_BACKUP: &str = "no database access from here: rely on the database's own backups";

/// What a platform deploy starts from: the image serving now (none before the first deploy).
pub(crate) fn plan(previous: Option<&str>, image: &Image) -> Plan {
    Plan { previous: previous.map(str::to_owned), image: Some(image.to_string()), host: None }
}

pub(crate) fn describe(record: &mut Record, previous: Option<&str>, image: &Image) {
    record.previous = previous.map(str::to_owned);
    record.image = Some(image.to_string());
}

pub(crate) fn done(kind: Kind, release: &ReleaseId, image: &Image) -> String {
    format!("deploy: {release} ({image}) serves on {}", kind.name())
}

/// `failed_in` failed: before CANDIDATE nothing changed; after it `revert` puts back what served.
pub(crate) fn undo(
    failed_in: State,
    first_release: bool,
    error: anyhow::Error,
    revert: impl FnOnce() -> Result<()>,
) -> (Undo, anyhow::Error) {
    if failed_in < State::Candidate {
        return (Undo::NothingChanged, error.context("the new release was not started: the previous one still serves"));
    }
    if first_release {
        let why = "this was the first release on the platform: there is nothing to go back to";
        return (Undo::NothingChanged, error.context(why));
    }
    println!("deploy: undoing: {failed_in} failed after the platform was changed");
    match revert() {
        Ok(()) => (Undo::Undone, error.context("undone: the previous release serves again")),
        Err(undo) => {
            (Undo::NothingChanged, error.context(format!("and the undo failed too, see what serves now: {undo:#}")))
        }
    }
}

/// A journal left behind: that deploy was killed. The platform finished or abandoned its rollout on its
/// own; what serves now is read next, so the record is all there is to recover.
pub(crate) fn interrupted(journal: &Journal) -> Record {
    println!(
        "deploy: a {} deploy of {} (pid {}) was interrupted in {}; going on from what serves now",
        journal.target.name(),
        journal.release,
        journal.pid,
        journal.state
    );
    let mut record = Record::new(journal.target, &journal.release, Outcome::Interrupted);
    record.image.clone_from(&journal.plan.image);
    record.stopped_in = Some(journal.state);
    record
}

/// A platform's command-line tool.
#[derive(Debug, Clone)]
pub(crate) struct Cli {
    program: &'static str,
    /// Arguments every command starts with (e.g. the namespace).
    common: Vec<String>,
}

impl Cli {
    /// The tool, found on PATH; `install` says how to get it.
    pub(crate) fn find(program: &'static str, install: &str) -> Result<Self> {
        which::which(program).with_context(|| format!("`{program}` is not on PATH: {install}"))?;
        Ok(Self { program, common: Vec::new() })
    }

    pub(crate) fn with(mut self, common: &[&str]) -> Self {
        self.common = common.iter().map(|arg| (*arg).to_owned()).collect();
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.program);
        command.args(&self.common).args(args);
        command
    }

    /// The command as a shell would read it (no argument here needs quoting).
    fn line(&self, args: &[&str]) -> String {
        let mut words = vec![self.program];
        words.extend(self.common.iter().map(String::as_str));
        words.extend(args);
        words.join(" ")
    }

    /// Runs a command, its output shown as it comes.
    pub(crate) fn run(&self, args: &[&str]) -> Result<()> {
        println!("deploy: $ {}", self.line(args));
        process::run(self.command(args), &format!("`{}`", self.line(args)))
    }

    /// Runs a command and returns what it printed; `echo: false` for a command polled in a loop.
    pub(crate) fn output(&self, args: &[&str], echo: bool) -> Result<String> {
        if echo {
            println!("deploy: $ {}", self.line(args));
        }
        process::output(self.command(args), &format!("`{}`", self.line(args)))
    }

    /// Runs a command that prints JSON; nothing printed is `None` (e.g. `--ignore-not-found`).
    pub(crate) fn json(&self, args: &[&str], echo: bool) -> Result<Option<serde_json::Value>> {
        let text = self.output(args, echo)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        let parsed = serde_json::from_str(&text);
        Ok(Some(parsed.with_context(|| format!("`{}` printed something other than JSON", self.line(args)))?))
    }
}
