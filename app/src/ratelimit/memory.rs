//! In-process fixed-window counters: right for a single replica, lost on restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Above this many keys, expired windows are swept before adding another.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Default)]
pub struct Counters(Arc<Mutex<HashMap<String, (Instant, u64)>>>);

impl Counters {
    /// Adds one to `key`'s window; returns the count so far and the time left in the window.
    pub fn hit(&self, key: &str, window: Duration) -> (u64, Duration) {
        let mut counters = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if counters.len() > SWEEP_ABOVE {
            counters.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = counters.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        (entry.1, window.saturating_sub(now.duration_since(entry.0)))
    }
}
