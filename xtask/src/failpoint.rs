//! Faults injected where a crash is hardest to survive, so that tests can show it is survived:
//! `XTASK_FAILPOINT=<point>:<error|term|kill>` makes the named point return an error, or deliver SIGTERM
//! or SIGKILL to this process, the first time it is reached. Unset, a point does nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::process::{self, Signal};

static FIRED: AtomicBool = AtomicBool::new(false);

/// Reaching `point`: fails here if `XTASK_FAILPOINT` names it.
pub(crate) fn reach(point: &str) -> Result<()> {
    let Ok(setting) = std::env::var("XTASK_FAILPOINT") else {
        return Ok(());
    };
    let Some((name, action)) = setting.split_once(':') else {
        return Ok(());
    };
    if name != point || FIRED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let signal = match action {
        "term" => Signal::Term,
        "kill" => Signal::Kill,
        _ => bail!("injected failure at {point} (XTASK_FAILPOINT)"),
    };
    process::signal_pid(std::process::id(), signal);
    // The signal ends the process; this thread only waits for it.
    std::thread::sleep(Duration::from_secs(60));
    bail!("injected {action} at {point} did not end the process")
}
