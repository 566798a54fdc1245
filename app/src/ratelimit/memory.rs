//! In-process counters: right for a single replica, lost on restart. Each policy has its own lock
//! and its own fixed windows, aligned to the process's clock: when a window ends its whole map is
//! dropped at once (no sweep, no scan), and a map never holds more than `max_keys` subjects, so
//! memory is bounded whatever clients send. A full map forgets its least-counted subjects first: a
//! flood of new keys neither erases the counters of the accounts under attack nor stops every login.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Policy;

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
    pub fn hit(&self, policy: Policy, key: Key, window: Duration) -> (u64, Duration) {
        let elapsed = self.started.elapsed();
        let length = window.as_nanos().max(1);
        let index = elapsed.as_nanos() / length;
        let mut current = self.windows[policy as usize].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.index != index {
            // A new map, not `clear`: a burst's capacity is given back with the window.
            *current = Window { index, counts: HashMap::new() };
        }
        if current.counts.len() >= self.max_keys && !current.counts.contains_key(&key) {
            tracing::warn!(
                policy = policy.as_str(),
                max_keys = self.max_keys,
                "rate-limit counters full: forgetting the least counted"
            );
            make_room(&mut current.counts, self.max_keys);
        }
        let count = current.counts.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        let ends = Duration::from_nanos(u64::try_from((index + 1) * length).unwrap_or(u64::MAX));
        (u64::from(*count), ends.saturating_sub(elapsed))
    }
}

/// Drops the subjects with the fewest hits until there is room for one more. Rare (a full map), so
/// a few passes over the map are fine; the most-counted, the ones limits are stopping, stay.
fn make_room(counts: &mut HashMap<Key, u32>, max_keys: usize) {
    let mut at_most = 1_u32;
    while counts.len() >= max_keys {
        counts.retain(|_, count| *count > at_most);
        at_most = at_most.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_keep_their_own_windows() {
        let counters = Counters::new(10);
        let hour = Duration::from_secs(3600);
        assert_eq!(counters.hit(Policy::LoginAccount, [1; 16], hour).0, 1);
        // A policy with a short window rolling over does not touch the hourly one.
        counters.hit(Policy::Api, [1; 16], Duration::from_nanos(1));
        counters.hit(Policy::Api, [1; 16], Duration::from_nanos(1));
        let (count, reset) = counters.hit(Policy::LoginAccount, [1; 16], hour);
        assert_eq!(count, 2);
        assert!(reset <= hour && reset > Duration::ZERO);
    }

    #[test]
    fn a_flood_of_new_subjects_forgets_the_least_counted_and_keeps_the_attacked() {
        let counters = Counters::new(100);
        let minute = Duration::from_secs(60);
        for _ in 0..5 {
            counters.hit(Policy::LoginAccount, [0; 16], minute);
        }
        for n in 1..=1000_u16 {
            let [high, low] = n.to_be_bytes();
            let mut key = [0; 16];
            key[..2].copy_from_slice(&[high, low]);
            counters.hit(Policy::LoginAccount, key, minute);
        }
        let windows = &counters.windows[Policy::LoginAccount as usize];
        assert!(windows.lock().expect("lock").counts.len() <= 100, "the bound holds");
        assert_eq!(counters.hit(Policy::LoginAccount, [0; 16], minute).0, 6, "the attacked subject kept its count");
        assert_eq!(counters.hit(Policy::Signup, [0; 16], minute).0, 1, "other policies have their own maps");
    }
}
