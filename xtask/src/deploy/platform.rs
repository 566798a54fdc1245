//! What the platform targets (kubernetes, fly) share: the walk through the machine's states under the
//! deploy lock, their journal and audit records, the undo once the platform has been changed, and
//! their CLI, every command echoed before it runs.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::image::Image;
use super::machine::{Machine, STATES, position};
use super::{lock, records};

/// What a platform target does in each state; states it leaves to the platform are skipped with why.
pub(crate) trait Platform {
    /// The target's name, as `--target` spells it.
    const NAME: &'static str;

    /// PREFLIGHT: the CLI is there, the configuration is rendered for `image` and valid.
    fn preflight(&mut self, image: &Image) -> Result<()>;

    /// Under the lock: the image serving now (none before the first deploy), kept for `undo`.
    fn serving(&mut self) -> Result<Option<String>>;

    /// Why `state` needs no work of ours on this platform, or `None` when `run` does it.
    fn skipped(&self, state: &str) -> Option<&'static str>;

    fn run(&mut self, state: &'static str, image: &Image) -> Result<()>;

    /// Puts back what served before, after `failed_in` (CANDIDATE or later) failed.
    fn undo(&mut self, failed_in: &str) -> Result<()>;
}

/// The deploy in progress, so that the next run can say where a killed one stopped.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    target: String,
    release: String,
    image: String,
    previous: Option<String>,
    state: String,
    pid: u32,
    started: u64,
}

/// Not the host target's `journal.json`, so that the two never read each other's.
fn journal_path(root: &Utf8Path) -> Utf8PathBuf {
    root.join("platform-journal.json")
}

pub(crate) fn deploy<P: Platform>(root: &Utf8Path, release: &str, image: &Image, platform: &mut P) -> Result<()> {
    let mut machine = Machine::new();
    let mut journal = None;
    let result = walk(root, release, image, platform, &mut machine, &mut journal);
    if let (Err(error), Some(journal)) = (&result, journal) {
        // Nothing here may hide the deploy's own error.
        let mut record = record::<P>(release, image, journal.previous.as_deref(), "failed", &machine);
        record["state"] = machine.current.into();
        record["error"] = format!("{error:#}").into();
        let _ = records::audit(root, record);
        let _ = std::fs::remove_file(journal_path(root));
    }
    result
}

fn walk<P: Platform>(
    root: &Utf8Path,
    release: &str,
    image: &Image,
    platform: &mut P,
    machine: &mut Machine,
    journal: &mut Option<Journal>,
) -> Result<()> {
    machine.state("PREFLIGHT", || platform.preflight(image))?;
    let (_lock, previous) = machine.state("LOCK", || {
        std::fs::create_dir_all(root).with_context(|| format!("creating {root}"))?;
        let lock = lock::acquire(root, &format!("deploy {} {release}", P::NAME))?;
        recover(root)?;
        Ok((lock, platform.serving()?))
    })?;
    let journal = journal.insert(Journal {
        target: P::NAME.to_owned(),
        release: release.to_owned(),
        image: image.to_string(),
        previous: previous.clone(),
        state: "LOCK".to_owned(),
        pid: std::process::id(),
        started: records::now(),
    });
    write_journal(root, journal)?;

    machine.skip("STAGE", "the image is in its registry: CI pushed it");
    machine.skip("BACKUP", "no database access from here: rely on the database's own backups");
    for &state in &STATES[position("MIGRATE")..position("FINALIZE")] {
        if let Some(why) = platform.skipped(state) {
            machine.skip(state, why);
            continue;
        }
        journal.state = state.to_owned();
        write_journal(root, journal)?;
        let Err(error) = machine.state(state, || platform.run(state, image)) else {
            continue;
        };
        if position(state) < position("CANDIDATE") {
            return Err(error.context("the new release was not started: the previous one still serves"));
        }
        if previous.is_none() {
            return Err(error.context("this was the first release on the platform: there is nothing to go back to"));
        }
        println!("deploy: undoing: {state} failed after the platform was changed");
        return Err(match platform.undo(state) {
            Ok(()) => error.context("undone: the previous release serves again"),
            Err(undo) => error.context(format!("and the undo failed too, see what serves now: {undo:#}")),
        });
    }
    let record = record::<P>(release, image, previous.as_deref(), "deployed", machine);
    machine.state("FINALIZE", || {
        records::audit(root, record)?;
        std::fs::remove_file(journal_path(root)).context("removing the journal")
    })?;
    println!("deploy: {release} ({image}) serves on {}", P::NAME);
    Ok(())
}

fn write_journal(root: &Utf8Path, journal: &Journal) -> Result<()> {
    records::write_atomically(&journal_path(root), &serde_json::to_string_pretty(journal)?)
}

/// The audit record of a deploy (a recovery writes its own).
fn record<P: Platform>(
    release: &str,
    image: &Image,
    previous: Option<&str>,
    result: &str,
    machine: &Machine,
) -> serde_json::Value {
    serde_json::json!({
        "target": P::NAME, "release": release, "image": image.to_string(), "previous": previous,
        "result": result, "durations": machine.durations,
    })
}

/// A journal left behind: that deploy was killed. The platform finished or abandoned its rollout on its
/// own; what serves now is read next, so the record is all there is to recover.
fn recover(root: &Utf8Path) -> Result<()> {
    let path = journal_path(root);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let journal: Journal = serde_json::from_str(&text).with_context(|| format!("{path} is not valid: remove it"))?;
    println!(
        "deploy: a {} deploy of {} (pid {}) was interrupted in {}; going on from what serves now",
        journal.target, journal.release, journal.pid, journal.state
    );
    records::audit(
        root,
        serde_json::json!({
            "target": journal.target, "release": journal.release, "image": journal.image,
            "result": "interrupted", "stopped_in": journal.state,
        }),
    )?;
    std::fs::remove_file(&path).with_context(|| format!("removing {path}"))
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
        let status = self.command(args).status().with_context(|| format!("starting {}", self.program))?;
        if !status.success() {
            bail!("`{}` failed ({status})", self.line(args));
        }
        Ok(())
    }

    /// Runs a command and returns what it printed; `echo: false` for a command polled in a loop.
    pub(crate) fn output(&self, args: &[&str], echo: bool) -> Result<String> {
        if echo {
            println!("deploy: $ {}", self.line(args));
        }
        let output = self
            .command(args)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("starting {}", self.program))?;
        if !output.status.success() {
            bail!("`{}` failed ({})", self.line(args), output.status);
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
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
