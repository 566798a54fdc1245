//! What the platform targets (kubernetes, fly) share: the `Platform` trait, through which each is a
//! `Target` of the machine with the same journal plan, records and undo once the platform has been
//! changed; and their CLI, every command echoed before it runs.

use std::process::Command;

use anyhow::{Context as _, Result};

use super::image::Image;
use super::layout::ReleaseId;
use super::machine::{Target, Undo, Work};
use super::records::{Journal, Kind, Outcome, Plan, Record};
use super::state::State;
use crate::process;

/// Why STAGE has nothing to do on a platform.
pub(crate) const STAGED: &str = "the image is in its registry: CI pushed it";
/// Why BACKUP has nothing to do on a platform.
pub(crate) const NO_BACKUP: &str = "no database access from here: rely on the database's own backups";

/// What a platform deploy ships, and what served before it.
#[derive(Debug)]
pub(crate) struct Shipped {
    pub(crate) release: ReleaseId,
    pub(crate) image: Image,
    /// The image serving when the deploy took the lock (none before the first deploy).
    pub(crate) previous: Option<String>,
}

/// A platform target (kubernetes, fly): its work in each state and how it puts back what served. The
/// machine's bookkeeping for it (journal plan, records, when to undo) is the same for every platform.
pub(crate) trait Platform {
    const KIND: Kind;

    fn shipped(&self) -> &Shipped;

    /// The work of `state`, as `Target::run`.
    fn work(&mut self, state: State) -> Result<Work>;

    /// Puts back the image that served, after `failed_in` (CANDIDATE or later) failed.
    fn revert(&mut self, failed_in: State) -> Result<()>;
}

impl<P: Platform> Target for P {
    const KIND: Kind = P::KIND;

    fn run(&mut self, state: State) -> Result<Work> {
        self.work(state)
    }

    fn plan(&self) -> Plan {
        let shipped = self.shipped();
        Plan { previous: shipped.previous.clone(), image: Some(shipped.image.to_string()), host: None }
    }

    /// Before CANDIDATE nothing changed; after it `revert` puts back what served.
    fn undo(&mut self, failed_in: State, error: anyhow::Error) -> (Undo, anyhow::Error) {
        if failed_in < State::Candidate {
            let why = "the new release was not started: the previous one still serves";
            return (Undo::NothingChanged, error.context(why));
        }
        if self.shipped().previous.is_none() {
            let why = "this was the first release on the platform: there is nothing to go back to";
            return (Undo::NothingChanged, error.context(why));
        }
        println!("deploy: undoing: {failed_in} failed after the platform was changed");
        match self.revert(failed_in) {
            Ok(()) => (Undo::Undone, error.context("undone: the previous release serves again")),
            Err(undo) => {
                (Undo::NothingChanged, error.context(format!("and the undo failed too, see what serves now: {undo:#}")))
            }
        }
    }

    fn recover(&mut self, journal: &Journal) -> Result<Record> {
        Ok(interrupted(journal))
    }

    fn describe(&self, record: &mut Record) {
        let shipped = self.shipped();
        record.previous.clone_from(&shipped.previous);
        record.image = Some(shipped.image.to_string());
    }

    fn done(&self) -> String {
        let shipped = self.shipped();
        format!("deploy: {} ({}) serves on {}", shipped.release, shipped.image, P::KIND.name())
    }
}

/// A journal left behind: that deploy was killed. The platform finished or abandoned its rollout on its
/// own; what serves now is read next, so the record is all there is to recover.
fn interrupted(journal: &Journal) -> Record {
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
