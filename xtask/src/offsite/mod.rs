//! Off-site backups: `cargo xtask backup --upload` encrypts the verified dump for the operator's age
//! recipient (the private key never comes near the host), uploads it with its sha256 to S3-compatible
//! storage, reads it back to check the stored bytes, and prunes by daily/weekly/monthly retention.
//! `cargo xtask restore-drill --from-latest` restores the newest stored one into a scratch database.
//! Any failure prints one `ALERT` line; with `--metrics-dir` both write node_exporter textfile metrics.

mod retention;
mod s3;

pub(crate) use self::retention::days as days_since_epoch;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use clap::Args;

use self::retention::{Date, Retention};
use self::s3::Store;
use crate::postgres::client::{self, ScratchDatabase};
use crate::{backup, cleanup, restore, restore_drill, textfile};

/// Stored objects: `<prefix>db-<UTC time>.dump.age` and its `.sha256` beside it.
const ENCRYPTED: &str = ".dump.age";
const CHECKSUM: &str = ".sha256";

#[derive(Args, Debug, Default)]
pub(crate) struct UploadArgs {
    /// Also store the backup off-site: encrypted for BACKUP_AGE_RECIPIENT, to BACKUP_S3_ENDPOINT /
    /// BACKUP_S3_BUCKET / BACKUP_S3_PREFIX (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
    /// or their _FILE), then prune the stored ones.
    #[arg(long)]
    pub(crate) upload: bool,
    /// Stored backups kept: the newest of each of this many days…
    #[arg(long, default_value_t = 7)]
    pub(crate) keep_daily: usize,
    /// …of this many ISO weeks…
    #[arg(long, default_value_t = 4)]
    pub(crate) keep_weekly: usize,
    /// …and of this many months.
    #[arg(long, default_value_t = 12)]
    pub(crate) keep_monthly: usize,
    /// node_exporter's textfile directory, for the off-site backup's success and failure times (alerts
    /// read them).
    #[arg(long, value_name = "DIR", requires = "upload")]
    pub(crate) metrics_dir: Option<Utf8PathBuf>,
}

/// Where the backups are stored, from the environment.
struct Offsite {
    store: Store,
    prefix: String,
}

impl Offsite {
    fn from_env() -> Result<Self> {
        let required = |name: &str| {
            env(name)?.with_context(|| {
                format!("{name} is not set: off-site backups need it (see docs/backup-and-restore.md)")
            })
        };
        let endpoint = required("BACKUP_S3_ENDPOINT")?;
        let bucket = required("BACKUP_S3_BUCKET")?;
        let region = env("BACKUP_S3_REGION")?.unwrap_or_else(|| "us-east-1".to_owned());
        let mut prefix = env("BACKUP_S3_PREFIX")?.unwrap_or_else(|| "shipshape/".to_owned());
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let store = Store::new(
            &endpoint,
            &region,
            &bucket,
            required("AWS_ACCESS_KEY_ID")?,
            required("AWS_SECRET_ACCESS_KEY")?,
        )?;
        Ok(Self { store, prefix })
    }

    /// The stored backups, oldest first, by the time in their names.
    fn backups(&self) -> Result<Vec<Stored>> {
        let mut stored: Vec<Stored> =
            self.store.list(&self.prefix)?.iter().filter_map(|key| Stored::parse(key)).collect();
        stored.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(stored)
    }
}

/// A stored backup and when it was taken.
#[derive(Debug, Clone)]
struct Stored {
    key: String,
    date: Date,
    taken: SystemTime,
}

impl Stored {
    /// `…db-YYYYMMDDTHHMMSS.mmmZ.dump.age`; anything else under the prefix is not ours.
    fn parse(key: &str) -> Option<Self> {
        let name = key.rsplit('/').next()?.strip_prefix("db-")?.strip_suffix(ENCRYPTED)?;
        let digits = |range: std::ops::Range<usize>| name.get(range)?.parse::<u64>().ok();
        let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
        let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
        let date = (i64::try_from(year).ok()?, u32::try_from(month).ok()?, u32::try_from(day).ok()?);
        let days = u64::try_from(retention::days(date)).ok()?;
        let taken = UNIX_EPOCH + Duration::from_secs(days * 86_400 + hour * 3600 + minute * 60 + second);
        Some(Self { key: key.to_owned(), date, taken })
    }
}

/// `NAME`, or the contents of the file `NAME_FILE` names; blank is unset.
fn env(name: &str) -> Result<Option<String>> {
    let direct = std::env::var(name).ok().filter(|value| !value.trim().is_empty());
    let file = std::env::var(format!("{name}_FILE")).ok().filter(|value| !value.trim().is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => bail!("both {name} and {name}_FILE are set: keep one"),
        (Some(value), None) => Ok(Some(value.trim().to_owned())),
        (None, Some(path)) => Ok(Some(
            std::fs::read_to_string(path.trim())
                .with_context(|| format!("reading {name}_FILE={path}"))?
                .trim()
                .to_owned(),
        )),
        (None, None) => Ok(None),
    }
}

/// A scheduled job, and the metrics of its last success and failure.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Job {
    Backup,
    RestoreDrill,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::RestoreDrill => "restore-drill",
        }
    }

    fn metrics(self) -> (&'static str, &'static str) {
        match self {
            Self::Backup => (textfile::BACKUP_LAST_SUCCESS, textfile::BACKUP_LAST_FAILURE),
            Self::RestoreDrill => (textfile::RESTORE_DRILL_LAST_SUCCESS, textfile::RESTORE_DRILL_LAST_FAILURE),
        }
    }
}

/// Runs a scheduled job: on failure one `ALERT` line (what a mail or chat hook forwards) and the
/// failure time in the metrics; on success the success time.
pub(crate) fn reported(job: Job, metrics_dir: Option<&Utf8Path>, run: impl FnOnce() -> Result<()>) -> Result<()> {
    let result = run();
    let (success, failure) = job.metrics();
    if let Err(error) = &result {
        eprintln!("ALERT shipshape {} failed: {}", job.name(), format!("{error:#}").replace('\n', " "));
    }
    if let Some(dir) = metrics_dir {
        let metric = if result.is_ok() { success } else { failure };
        set_metric(dir, job, metric, SystemTime::now())?;
    }
    result
}

fn set_metric(dir: &Utf8Path, job: Job, metric: &str, time: SystemTime) -> Result<()> {
    let seconds = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let file = job.name().replace('-', "_");
    textfile::set(dir.as_std_path(), &file, metric, "", seconds).with_context(|| format!("writing metrics into {dir}"))
}

/// Encrypts `dump`, stores it with its checksum, checks the stored bytes, prunes.
pub(crate) fn upload(dump: &Utf8Path, args: &UploadArgs) -> Result<()> {
    let offsite = Offsite::from_env()?;
    let recipient = env("BACKUP_AGE_RECIPIENT")?.context(
        "BACKUP_AGE_RECIPIENT is not set: give the public key (age1…) of the key pair whose private half the operator keeps off this host",
    )?;
    tool_present()?;
    let encrypted = Utf8PathBuf::from(format!("{dump}.age"));
    let _remove = remove_on_exit(&encrypted);
    age(&["--encrypt", "--recipient", &recipient, "--output", encrypted.as_str(), dump.as_str()])?;
    let checksum = backup::sha256(&encrypted)?;
    let key = format!("{}{}", offsite.prefix, encrypted.file_name().unwrap_or_default());
    offsite.store.put(&key, &encrypted)?;
    offsite.store.put_bytes(&format!("{key}{CHECKSUM}"), format!("{checksum}  {}\n", file_name(&key)).as_bytes())?;
    // What the store holds, not what was sent, is what a restore will get.
    let check = Utf8PathBuf::from(format!("{encrypted}.check"));
    let _remove_check = remove_on_exit(&check);
    offsite.store.get(&key, &check)?;
    let stored = backup::sha256(&check)?;
    if stored != checksum {
        bail!(
            "{key} in {} reads back with sha256 {stored}, not {checksum}: the upload is damaged",
            offsite.store.name()
        );
    }
    println!("backup: stored {key} in {} (sha256 {checksum}, verified by reading it back)", offsite.store.name());
    let retention = Retention { daily: args.keep_daily, weekly: args.keep_weekly, monthly: args.keep_monthly };
    prune(&offsite, retention)
}

/// Deletes the stored backups no retention rule keeps, each with its checksum.
fn prune(offsite: &Offsite, retention: Retention) -> Result<()> {
    let stored = offsite.backups()?;
    let dates: Vec<Date> = stored.iter().map(|backup| backup.date).collect();
    let keep = retention::keep(&dates, retention);
    for (index, backup) in stored.iter().enumerate().filter(|(index, _)| !keep.contains(index)) {
        offsite.store.delete(&backup.key)?;
        offsite.store.delete(&format!("{}{CHECKSUM}", backup.key))?;
        println!("backup: pruned {} (index {index}: kept by no daily, weekly or monthly rule)", backup.key);
    }
    println!("backup: {} stored backups kept in {}", keep.len(), offsite.store.name());
    Ok(())
}

/// `restore-drill --from-latest`: the newest stored backup, checked against its sha256, decrypted with
/// BACKUP_AGE_IDENTITY_FILE, restored into a scratch database next to DATABASE_URL; its age and the row
/// count of every table are reported.
pub(crate) fn drill_latest(metrics_dir: Option<&Utf8Path>) -> Result<()> {
    let offsite = Offsite::from_env()?;
    let identity = env("BACKUP_AGE_IDENTITY_FILE")?
        .context("BACKUP_AGE_IDENTITY_FILE is not set: name the file holding the age private key (AGE-SECRET-KEY-…)")?;
    tool_present()?;
    let url = backup::database_url()?;
    let newest = offsite
        .backups()?
        .pop()
        .with_context(|| format!("no backup is stored under {} in {}", offsite.prefix, offsite.store.name()))?;
    let age_of = SystemTime::now().duration_since(newest.taken).unwrap_or_default();
    // Not the checkout's target/: scheduled drills run the xtask binary on a host without one.
    let dir = Utf8PathBuf::try_from(std::env::temp_dir())
        .context("the temporary directory's path is not UTF-8")?
        .join(format!("shipshape-restore-drill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    let _remove = remove_on_exit(&dir);
    let encrypted = dir.join(file_name(&newest.key));
    offsite.store.get(&newest.key, &encrypted)?;
    let expected = offsite.store.get_text(&format!("{}{CHECKSUM}", newest.key))?;
    let expected = expected.split_whitespace().next().unwrap_or_default();
    let actual = backup::sha256(&encrypted)?;
    if actual != expected {
        bail!(
            "{} does not match its stored sha256 ({actual}, expected {expected}): the stored backup is damaged; nothing was restored",
            newest.key
        );
    }
    let dump = dir.join(file_name(&newest.key).trim_end_matches(".age"));
    age(&["--decrypt", "--identity", &identity, "--output", dump.as_str(), encrypted.as_str()])
        .context("decrypting with BACKUP_AGE_IDENTITY_FILE (is it the key BACKUP_AGE_RECIPIENT names?)")?;
    let scratch = ScratchDatabase::create(&url, &format!("restore_drill_offsite_{}", std::process::id()))?;
    let started = std::time::Instant::now();
    restore::restore_into(&scratch.url, &dump)?;
    let took = started.elapsed();
    let tables = restore_drill::row_counts(&scratch.url)?;
    if tables.is_empty() {
        bail!("{} restored no table: it holds no data", newest.key);
    }
    println!(
        "restore-drill: {} restored in {:.2} s; taken {:.1} h ago; {} tables, {} rows:",
        newest.key,
        took.as_secs_f64(),
        age_of.as_secs_f64() / 3600.0,
        tables.len(),
        tables.values().sum::<u64>()
    );
    for (table, rows) in &tables {
        println!("  {table}: {rows} rows");
    }
    match metrics_dir {
        Some(dir) => set_metric(dir, Job::RestoreDrill, textfile::RESTORED_BACKUP_TAKEN, newest.taken),
        None => Ok(()),
    }
}

fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// Removes `path` (file or directory) however the command ends.
fn remove_on_exit(path: &Utf8Path) -> cleanup::Guard {
    let path = path.to_owned();
    cleanup::register(move || {
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir_all(&path);
    })
}

fn tool_present() -> Result<()> {
    Ok(crate::tools::AGE.require()?)
}

/// `age` with `args`; its own messages name the problem (a bad recipient, the wrong key).
fn age(args: &[&str]) -> Result<()> {
    let path = crate::tools::AGE.path().context("age is not installed")?;
    let mut command = std::process::Command::new(path);
    command.args(args);
    client::output(command, "age").map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_give_their_time() {
        let stored = Stored::parse("shipshape/db-20261201T031500.250Z.dump.age").expect("ours");
        assert_eq!(stored.date, (2026, 12, 1));
        assert_eq!(crate::backup::timestamp(stored.taken), "20261201T031500.000Z");
        assert!(Stored::parse("shipshape/db-20261201T031500.250Z.dump.age.sha256").is_none());
        assert!(Stored::parse("shipshape/notes.txt").is_none());
    }
}
