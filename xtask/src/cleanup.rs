//! Undoing what the xtask started (servers, containers, scratch directories) on every way out:
//! a normal return, an error, a panic, and Ctrl-C / SIGTERM / SIGHUP.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

type Action = Box<dyn FnOnce() + Send>;

static ACTIONS: Mutex<Vec<(u64, Action)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
/// Held while actions run, so that a thread finding nothing left to do still waits until the clean-up
/// another thread started is complete (the process must not exit half-way through it).
static RUNNING: Mutex<()> = Mutex::new(());

/// A pending clean-up; runs when dropped, unless a signal ran it first.
#[must_use = "the clean-up runs when this is dropped"]
pub(crate) struct Guard(u64);

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cleanup::Guard({})", self.0)
    }
}

/// Registers `action` to run exactly once: when the guard drops or the process is interrupted.
pub(crate) fn register(action: impl FnOnce() + Send + 'static) -> Guard {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    lock().push((id, Box::new(action)));
    Guard(id)
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _running = RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let action = {
            let mut actions = lock();
            actions.iter().position(|(id, _)| *id == self.0).map(|index| actions.remove(index).1)
        };
        if let Some(action) = action {
            action();
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(u64, Action)>> {
    // A panic inside an action must not stop the others from running.
    ACTIONS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs every pending action, newest first.
pub(crate) fn run_all() {
    let _running = RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let actions = std::mem::take(&mut *lock());
    for (_, action) in actions.into_iter().rev() {
        action();
    }
}

/// On SIGINT, SIGTERM or SIGHUP: clean up, then exit with 128 + the signal, as a shell would.
pub(crate) fn install_signal_handler() {
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("warning: no signal handler ({error}); an interrupt may leave servers behind");
            return;
        }
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            eprintln!("\ninterrupted: stopping what the xtask started");
            run_all();
            std::process::exit(128 + signal);
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn a_dropped_guard_runs_its_action_once() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let guard = register(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        drop(guard);
        run_all();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_second_run_all_waits_until_the_first_has_finished() {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let _guard = register(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            flag.store(true, Ordering::SeqCst);
        });
        // As on Ctrl-C: the signal thread starts cleaning up while the main thread is on its way out.
        let signal_thread = std::thread::spawn(run_all);
        std::thread::sleep(std::time::Duration::from_millis(50));
        run_all();
        assert!(done.load(Ordering::SeqCst), "returned while the clean-up was still running");
        signal_thread.join().expect("no panic");
    }
}
