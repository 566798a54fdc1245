//! `cargo xtask deploy status`: what the records say and what is true. On a host it follows the live
//! and standby links, asks each slot's socket for `/readyz` and the release it runs, and says where the
//! records and reality disagree; it fails when the live release does not answer healthy.

use anyhow::{Result, bail};

use super::config::HostConfig;
use super::layout::{Layout, Slot};
use super::records::{self, Kind};
use super::{live, lock, slots};

/// The host's status, printed; an error when the live release is not healthy.
pub(crate) fn host(layout: &Layout) -> Result<()> {
    let state = records::read_state(layout)?;
    match &state {
        Some(state) => println!(
            "serving: {} in the {} slot (previous: {})",
            state.release,
            state.active.name(),
            state.previous.as_ref().map_or("none", |previous| previous.as_str())
        ),
        None => println!("serving: nothing deployed to {} yet", layout.root()),
    }
    let journal = records::read_journal(layout, Kind::Host)?;
    if let Some(journal) = &journal {
        let running = lock::is_held(layout)?;
        println!(
            "in progress: {} in {} ({})",
            journal.release,
            journal.state,
            if running { "running" } else { "interrupted: the next deploy recovers it" }
        );
    }
    let audit = std::fs::read_to_string(layout.audit()).unwrap_or_default();
    let last: Vec<&str> = audit.lines().rev().take(5).collect();
    if !last.is_empty() {
        println!("last records (newest first):");
        for line in last {
            println!("  {line}");
        }
    }
    let Some(state) = state else {
        return Ok(());
    };

    // Reality: the links nginx follows and what answers behind them.
    let live = live::live(layout);
    for slot in [Slot::Blue, Slot::Green] {
        let role = if live == Some(slot) { "live" } else { "standby" };
        match slots::probe(layout, slot) {
            Ok(release) => println!("{} slot ({role}): ready, release {release}", slot.name()),
            Err(why) => println!("{} slot ({role}): not ready: {why}", slot.name()),
        }
    }
    let mut disagreements = Vec::new();
    match live {
        Some(slot) if slot == state.active => {}
        Some(slot) => disagreements.push(format!(
            "run/live.sock names the {} slot, the records the {} slot",
            slot.name(),
            state.active.name()
        )),
        None => disagreements.push("run/live.sock names no slot".to_owned()),
    }
    let live_slot = live.unwrap_or(state.active);
    let healthy = match slots::probe(layout, live_slot) {
        Ok(release) if release == state.release.as_str() => true,
        Ok(release) => {
            disagreements.push(format!("the live slot runs {release}, the records say {}", state.release));
            true
        }
        Err(_) => false,
    };
    let deploying = journal.is_some() && lock::is_held(layout)?;
    for disagreement in &disagreements {
        println!(
            "records and reality disagree: {disagreement}{}",
            if deploying { " (a deploy is running)" } else { "" }
        );
    }
    if !healthy {
        bail!(
            "the live release {} in the {} slot does not answer /readyz: `cargo xtask rollback` puts the previous release back, see {} for why",
            state.release,
            live_slot.name(),
            HostConfig::load(layout)
                .map_or_else(|_| layout.log(live_slot).to_string(), |config| slots::logs(&config, live_slot))
        );
    }
    println!("live: {} answers ready in the {} slot", state.release, live_slot.name());
    Ok(())
}
