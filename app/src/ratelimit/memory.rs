//! In-process counters: right for a single replica, lost on restart. Each policy has its own lock
//! and its own fixed windows, aligned to the process's clock: when a window ends its whole map is
//! dropped at once (no sweep, no scan), and a map never holds more than `max_keys` subjects, so
//! memory is bounded whatever clients send. A full map is reported as unavailable: login then fails
//! closed and everything else fails open, as when Redis is down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Policy, Unavailable};

/// A subject's key: the first 128 bits of its SHA-256, so every entry has the same small size.
pub(super) type Key = [u8; 16];

#[derive(Debug, Default)]
struct Window {
    /// Which window of the policy's length since `started` this is.
    index: u128,
    counts: HashMap<Key, u32>,
}

#[derive(Debug, Clone)]
pub struct Counters {
    started: Instant,
    max_keys: usize,
    windows: Arc<[Mutex<Window>; Policy::ALL.len()]>,
}

impl Counters {
    pub fn new(max_keys: usize) -> Self {
        Self { started: Instant::now(), max_keys, windows: Arc::new(Default::default()) }
    }

    /// Adds one to `key`'s count in the current window; the count and the time left in the window.
    pub fn hit(&self, policy: Policy, key: Key, window: Duration) -> Result<(u64, Duration), Unavailable> {
        let elapsed = self.started.elapsed();
        let length = window.as_nanos().max(1);
        let index = elapsed.as_nanos() / length;
        let mut current = self.windows[policy as usize].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.index != index {
            // A new map, not `clear`: a burst's capacity is given back with the window.
            *current = Window { index, counts: HashMap::new() };
        }
        if current.counts.len() >= self.max_keys && !current.counts.contains_key(&key) {
            tracing::warn!(policy = policy.as_str(), max_keys = self.max_keys, "rate-limit counters are full");
            return Err(Unavailable);
        }
        let count = current.counts.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        let ends = Duration::from_nanos(u64::try_from((index + 1) * length).unwrap_or(u64::MAX));
        Ok((u64::from(*count), ends.saturating_sub(elapsed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_keep_their_own_windows() {
        let counters = Counters::new(10);
        let hour = Duration::from_secs(3600);
        assert_eq!(counters.hit(Policy::LoginAccount, [1; 16], hour).map(|(count, _)| count), Ok(1));
        // A policy with a short window rolling over does not touch the hourly one.
        counters.hit(Policy::Api, [1; 16], Duration::from_nanos(1)).expect("room");
        counters.hit(Policy::Api, [1; 16], Duration::from_nanos(1)).expect("room");
        let (count, reset) = counters.hit(Policy::LoginAccount, [1; 16], hour).expect("room");
        assert_eq!(count, 2);
        assert!(reset <= hour && reset > Duration::ZERO);
    }

    #[test]
    fn a_full_policy_refuses_new_subjects_but_counts_known_ones() {
        let counters = Counters::new(2);
        let minute = Duration::from_secs(60);
        counters.hit(Policy::LoginNetwork, [1; 16], minute).expect("room");
        counters.hit(Policy::LoginNetwork, [2; 16], minute).expect("room");
        assert_eq!(counters.hit(Policy::LoginNetwork, [3; 16], minute), Err(Unavailable));
        assert_eq!(counters.hit(Policy::LoginNetwork, [1; 16], minute).map(|(count, _)| count), Ok(2));
        assert!(counters.hit(Policy::Signup, [3; 16], minute).is_ok(), "other policies have their own room");
    }
}
