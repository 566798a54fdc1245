//! The deploy as a state machine, one for every target: the states in order, one progress line per
//! state with its duration, the journal updated on entering each state so that the next run knows
//! where a killed one stopped, and the audit record of what happened. A target says what each state
//! does on it (the `Target` trait); the machine does the rest.

use std::collections::BTreeMap;
use std::time::Instant;

use super::layout::{Layout, ReleaseId};
use super::lock;
use super::records::{self, Journal, Kind, Origin, Outcome, Plan, Record};
use super::state::State;
use anyhow::{Context as _, Result};

/// What a state did on a target.
pub(crate) enum Work {
    Done,
    /// Nothing to do this time (or never, on this target), and why.
    Skipped(&'static str),
}

/// What undoing a failed state achieved.
pub(crate) enum Undo {
    /// Nothing had changed what serves.
    NothingChanged,
    /// The previous release serves again.
    Undone,
    /// Not undone: the journal stays for the next deploy to recover from.
    LeftForRecovery,
}

/// One place a deploy goes to. Adding a target is implementing this; adding a state is a variant of
/// `State`, which every target's `run` then has to place.
pub(crate) trait Target {
    const KIND: Kind;

    /// The work of one state. PREFLIGHT checks without changing anything; LOCK (under the deploy lock)
    /// reads what serves now.
    fn run(&mut self, state: State) -> Result<Work>;

    /// After LOCK: what the deploy starts from, for the journal.
    fn plan(&self) -> Plan;

    /// `failed_in` failed with `error`: put back what served, and say so in the error.
    fn undo(&mut self, failed_in: State, error: anyhow::Error) -> (Undo, anyhow::Error);

    /// Under the lock, before anything else: a deploy that died left `journal`; make things consistent.
    fn recover(&mut self, journal: &Journal) -> Result<Record>;

    /// Last, still under the lock: let go of what the deploy held (an unverified candidate stops).
    fn settle(&mut self) {}

    /// This target's part of every record of the deploy (previous release, slot, image).
    fn describe(&self, record: &mut Record);

    /// The last line of a deploy that succeeded.
    fn done(&self) -> String;
}

pub(crate) struct Machine {
    layout: Layout,
    release: ReleaseId,
    origin: Origin,
    /// A rollback is the same walk, recorded as one.
    outcome: Outcome,
    /// Written once the deploy holds the lock.
    journal: Option<Journal>,
    /// Held until the machine is dropped: an undo after a failure runs under it too.
    lock: Option<lock::Lock>,
    durations: BTreeMap<State, f64>,
    current: State,
}

impl Machine {
    pub(crate) fn new(layout: &Layout, release: &ReleaseId, origin: Origin, outcome: Outcome) -> Self {
        Self {
            layout: layout.clone(),
            release: release.clone(),
            origin,
            outcome,
            journal: None,
            lock: None,
            durations: BTreeMap::new(),
            current: State::Preflight,
        }
    }

    /// Walks `target` through every state; a failure is undone as far as the target can, and recorded.
    /// The lock is held until the target has let go of everything (an unverified candidate stopped).
    pub(crate) fn deploy<T: Target>(mut self, target: &mut T) -> Result<()> {
        let result = self.walk(target).or_else(|error| self.fail(target, error));
        target.settle();
        result
    }

    fn fail<T: Target>(&self, target: &mut T, error: anyhow::Error) -> Result<()> {
        let Some(journal) = &self.journal else {
            return Err(error);
        };
        let failed_in = self.current;
        let (undo, error) = target.undo(failed_in, error);
        // Nothing here may hide the deploy's own error.
        if matches!(undo, Undo::Undone) {
            let mut record = self.record(target, Outcome::RolledBackAutomatically);
            record.state = Some(failed_in);
            record.serving = journal.plan.previous.clone();
            let _ = self.append(record);
        }
        let mut record = self.record(target, Outcome::Failed);
        record.state = Some(failed_in);
        record.error = Some(format!("{error:#}"));
        let _ = self.append(record);
        if !matches!(undo, Undo::LeftForRecovery) {
            let _ = records::clear_journal(&self.layout, T::KIND);
        }
        Err(error)
    }

    fn walk<T: Target>(&mut self, target: &mut T) -> Result<()> {
        self.state(target, State::Preflight)?;
        let holder = match T::KIND {
            Kind::Host => format!("deploy {}", self.release),
            other => format!("deploy {} {}", other.name(), self.release),
        };
        self.current = State::Lock;
        let started = Instant::now();
        let locked = self.lock(target, &holder).map(|lock| self.lock = Some(lock));
        self.report(State::Lock, started, locked)?;
        let journal = Journal {
            target: T::KIND,
            release: self.release.clone(),
            state: State::Lock,
            pid: std::process::id(),
            started: records::now(),
            plan: target.plan(),
        };
        records::write_journal(&self.layout, &journal)?;
        self.journal = Some(journal);
        for state in State::ALL.into_iter().filter(|state| *state > State::Lock) {
            self.state(target, state)?;
        }
        let record = self.record(target, self.outcome);
        self.append(record)?;
        records::clear_journal(&self.layout, T::KIND)?;
        println!("{}", target.done());
        Ok(())
    }

    /// Enters `state`: the journal first, then the target's work, then the progress line.
    fn state<T: Target>(&mut self, target: &mut T, state: State) -> Result<()> {
        self.current = state;
        if let Some(journal) = &mut self.journal {
            journal.state = state;
            records::write_journal(&self.layout, journal)?;
        }
        let started = Instant::now();
        let result = target.run(state);
        match result {
            Ok(Work::Skipped(why)) => {
                println!("deploy: [{:>2}/{}] {:<9} skipped ({why})", state.number(), State::ALL.len(), state.name());
                Ok(())
            }
            other => self.report(state, started, other.map(drop)),
        }
    }

    /// LOCK: the deploy lock, a recovery of whatever a deploy that died left, then what serves now.
    fn lock<T: Target>(&self, target: &mut T, holder: &str) -> Result<lock::Lock> {
        std::fs::create_dir_all(self.layout.root()).with_context(|| format!("creating {}", self.layout.root()))?;
        let lock = lock::acquire(&self.layout, holder)?;
        if let Some(journal) = records::read_journal(&self.layout, T::KIND)? {
            let record = target.recover(&journal)?;
            self.append(record)?;
            records::clear_journal(&self.layout, T::KIND)?;
        }
        target.run(State::Lock)?;
        Ok(lock)
    }

    fn report(&mut self, state: State, started: Instant, result: Result<()>) -> Result<()> {
        let seconds = started.elapsed().as_secs_f64();
        self.durations.insert(state, (seconds * 1000.0).round() / 1000.0);
        let (number, total, name) = (state.number(), State::ALL.len(), state.name());
        match &result {
            Ok(()) => println!("deploy: [{number:>2}/{total}] {name:<9} ok      {seconds:>7.2} s"),
            Err(_) => println!("deploy: [{number:>2}/{total}] {name:<9} FAILED  {seconds:>7.2} s"),
        }
        result.with_context(|| format!("{name} failed"))
    }

    fn record<T: Target>(&self, target: &T, outcome: Outcome) -> Record {
        let mut record = Record::new(T::KIND, &self.release, outcome);
        target.describe(&mut record);
        record.durations = self.durations.clone();
        record
    }

    fn append(&self, mut record: Record) -> Result<()> {
        record.origin = self.origin.clone();
        records::append(&self.layout, &record)
    }
}
