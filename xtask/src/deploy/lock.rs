//! The deploy lock: an exclusive `flock` on `deploy.lock`, which the kernel releases when the holder
//! dies however it dies, so a killed deploy never leaves a stale lock. The file records the holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::layout::Layout;
use crate::process::{self, Signal};

/// Held while the value lives.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

/// Who holds (or last held) the lock, as the holder wrote it.
pub(crate) fn holder(layout: &Layout) -> String {
    std::fs::read_to_string(layout.lock()).map(|text| text.trim().to_owned()).unwrap_or_default()
}

fn open(layout: &Layout) -> Result<File> {
    let path = layout.lock();
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {path}"))
}

/// Takes the lock without waiting; a held lock is refused with its holder.
pub(crate) fn acquire(layout: &Layout, what: &str) -> Result<Lock> {
    let mut file = open(layout)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            bail!(
                "another deploy holds the lock ({}): wait for it to finish; `cargo xtask deploy lock` shows the holder",
                holder(layout)
            )
        }
        Err(TryLockError::Error(error)) => return Err(error).with_context(|| format!("locking {}", layout.lock())),
    }
    let record = serde_json::json!({
        "pid": std::process::id(),
        "who": super::records::who(),
        "what": what,
        "since": super::records::now(),
    });
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{record}")?;
    Ok(Lock { _file: file })
}

/// True when some process holds the lock now.
pub(crate) fn is_held(layout: &Layout) -> Result<bool> {
    let file = open(layout)?;
    match file.try_lock() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(error)) => Err(error.into()),
    }
}

/// `cargo xtask deploy unlock`: ends the holder (SIGTERM, so it cleans up) and waits for the lock.
pub(crate) fn force_unlock(layout: &Layout) -> Result<()> {
    if !is_held(layout)? {
        println!("deploy: the lock is free (a deploy that died released it with its process)");
        return Ok(());
    }
    let mut text = String::new();
    open(layout)?.read_to_string(&mut text)?;
    let pid = serde_json::from_str::<serde_json::Value>(text.trim())
        .ok()
        .and_then(|record| record["pid"].as_u64())
        .context("the lock is held but its file names no holder pid: find the process with `fuser deploy.lock`")?;
    println!("deploy: stopping the lock holder, pid {pid} ({})", text.trim());
    process::signal_pid(u32::try_from(pid)?, Signal::Term);
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_held(layout)? {
        if Instant::now() > deadline {
            bail!("pid {pid} still holds the lock after 30 s: `kill -KILL {pid}` frees it");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("deploy: the lock is free; the next deploy recovers what the stopped one left");
    Ok(())
}
