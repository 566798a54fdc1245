//! The deploy lock: an exclusive `flock` on `deploy.lock`, which the kernel releases when the holder
//! dies however it dies, so a killed deploy never leaves a stale lock. The file records the holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

/// Held while the value lives.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

pub(crate) fn path(root: &Utf8Path) -> Utf8PathBuf {
    root.join("deploy.lock")
}

/// Who holds (or last held) the lock, as the holder wrote it.
pub(crate) fn holder(root: &Utf8Path) -> String {
    std::fs::read_to_string(path(root)).map(|text| text.trim().to_owned()).unwrap_or_default()
}

fn open(root: &Utf8Path) -> Result<File> {
    let path = path(root);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {path}"))
}

/// Takes the lock without waiting; a held lock is refused with its holder.
pub(crate) fn acquire(root: &Utf8Path, what: &str) -> Result<Lock> {
    let mut file = open(root)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            bail!(
                "another deploy holds the lock ({}): wait for it to finish; `cargo xtask deploy lock` shows the holder",
                holder(root)
            )
        }
        Err(TryLockError::Error(error)) => return Err(error).with_context(|| format!("locking {}", path(root))),
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
pub(crate) fn is_held(root: &Utf8Path) -> Result<bool> {
    let file = open(root)?;
    match file.try_lock() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(error)) => Err(error.into()),
    }
}

/// `cargo xtask deploy unlock`: ends the holder (SIGTERM, so it cleans up) and waits for the lock.
pub(crate) fn force_unlock(root: &Utf8Path) -> Result<()> {
    if !is_held(root)? {
        println!("deploy: the lock is free (a deploy that died released it with its process)");
        return Ok(());
    }
    let mut text = String::new();
    open(root)?.read_to_string(&mut text)?;
    let pid = serde_json::from_str::<serde_json::Value>(text.trim())
        .ok()
        .and_then(|record| record["pid"].as_u64())
        .context("the lock is held but its file names no holder pid: find the process with `fuser deploy.lock`")?;
    println!("deploy: stopping the lock holder, pid {pid} ({})", text.trim());
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_held(root)? {
        if Instant::now() > deadline {
            bail!("pid {pid} still holds the lock after 30 s: `kill -KILL {pid}` frees it");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("deploy: the lock is free; the next deploy recovers what the stopped one left");
    Ok(())
}
