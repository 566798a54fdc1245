//! The deploy as a state machine: the states in order, one progress line per state with its duration,
//! and the journal updated on entering each state so that the next run knows where a killed one stopped.

use std::time::Instant;

use anyhow::{Context as _, Result};
use camino::Utf8PathBuf;

use super::records::{self, Journal};

pub(crate) const STATES: [&str; 11] = [
    "PREFLIGHT",
    "LOCK",
    "STAGE",
    "BACKUP",
    "MIGRATE",
    "CANDIDATE",
    "HEALTHY",
    "SWITCH",
    "VERIFY",
    "DRAIN",
    "FINALIZE",
];

/// Position of `state` in the machine (for "has the deploy got past SWITCH?").
pub(crate) fn position(state: &str) -> usize {
    STATES.iter().position(|known| *known == state).unwrap_or(0)
}

pub(crate) struct Machine {
    /// Where the journal lives once the deploy holds the lock.
    pub(crate) journal: Option<(Utf8PathBuf, Journal)>,
    pub(crate) durations: serde_json::Map<String, serde_json::Value>,
    pub(crate) current: &'static str,
}

impl Machine {
    pub(crate) fn new() -> Self {
        Self { journal: None, durations: serde_json::Map::new(), current: STATES[0] }
    }

    /// Runs one state: journal, then the work, then its progress line.
    pub(crate) fn state<T>(&mut self, name: &'static str, work: impl FnOnce() -> Result<T>) -> Result<T> {
        self.current = name;
        if let Some((root, journal)) = &mut self.journal {
            journal.state = name.to_owned();
            records::write_journal(root, journal)?;
        }
        let started = Instant::now();
        let result = work();
        let seconds = started.elapsed().as_secs_f64();
        self.durations.insert(name.to_owned(), serde_json::json!((seconds * 1000.0).round() / 1000.0));
        let number = position(name) + 1;
        match &result {
            Ok(_) => println!("deploy: [{number:>2}/{}] {name:<9} ok      {seconds:>7.2} s", STATES.len()),
            Err(_) => println!("deploy: [{number:>2}/{}] {name:<9} FAILED  {seconds:>7.2} s", STATES.len()),
        }
        result.with_context(|| format!("{name} failed"))
    }

    /// A state with nothing to do this time, said so.
    pub(crate) fn skip(&mut self, name: &'static str, why: &str) {
        self.current = name;
        println!("deploy: [{:>2}/{}] {name:<9} skipped ({why})", position(name) + 1, STATES.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_in_the_documented_order() {
        assert_eq!(position("PREFLIGHT"), 0);
        assert!(position("HEALTHY") < position("SWITCH") && position("SWITCH") < position("VERIFY"));
        assert_eq!(position("FINALIZE"), STATES.len() - 1);
    }
}
