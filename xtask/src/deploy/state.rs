//! The deploy's states, in the order the machine walks them; the journal and the records name them.

use serde::{Deserialize, Serialize};

/// The states, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum State {
    Preflight,
    Lock,
    Stage,
    Backup,
    Migrate,
    Candidate,
    Healthy,
    Switch,
    Verify,
    Drain,
    Finalize,
}

impl State {
    pub(crate) const ALL: [Self; 11] = [
        Self::Preflight,
        Self::Lock,
        Self::Stage,
        Self::Backup,
        Self::Migrate,
        Self::Candidate,
        Self::Healthy,
        Self::Switch,
        Self::Verify,
        Self::Drain,
        Self::Finalize,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Preflight => "PREFLIGHT",
            Self::Lock => "LOCK",
            Self::Stage => "STAGE",
            Self::Backup => "BACKUP",
            Self::Migrate => "MIGRATE",
            Self::Candidate => "CANDIDATE",
            Self::Healthy => "HEALTHY",
            Self::Switch => "SWITCH",
            Self::Verify => "VERIFY",
            Self::Drain => "DRAIN",
            Self::Finalize => "FINALIZE",
        }
    }

    /// 1 for PREFLIGHT, as the progress lines count.
    pub(crate) fn number(self) -> usize {
        Self::ALL.iter().position(|state| *state == self).map_or(0, |index| index + 1)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_in_the_documented_order_and_named_as_the_journal_spells_them() {
        assert_eq!(State::Preflight.number(), 1);
        assert!(State::Healthy < State::Switch && State::Switch < State::Verify);
        assert_eq!(State::Finalize.number(), State::ALL.len());
        for state in State::ALL {
            assert_eq!(serde_json::to_value(state).expect("JSON"), state.name());
        }
        assert!(serde_json::from_str::<State>("\"NOT-A-STATE\"").is_err(), "an unknown state is not PREFLIGHT");
    }
}
