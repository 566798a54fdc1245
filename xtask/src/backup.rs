//! `cargo xtask backup`: a `pg_dump -Fc` of `DATABASE_URL`, verified with `pg_restore --list`, with a
//! `sha256sum`-compatible checksum beside it; old backups rotated by count and age. Also the checks a
//! dump must pass before anything restores it.

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use clap::Args;

use crate::offsite;
use crate::postgres::client::{self, program};

/// Backups are named `db-<UTC time>.dump`, so that names sort in time order.
const PREFIX: &str = "db-";
const EXTENSION: &str = ".dump";
const CHECKSUM_EXTENSION: &str = ".sha256";

#[derive(Args, Debug)]
pub(crate) struct BackupArgs {
    /// Where backups are kept (created when missing).
    #[arg(long, default_value = "backups")]
    pub(crate) dir: Utf8PathBuf,
    /// How many backups to keep, the newest first.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) keep: u32,
    /// Remove backups older than this many days (the newest is always kept).
    #[arg(long, default_value_t = 30)]
    pub(crate) max_age_days: u64,
    #[command(flatten)]
    pub(crate) offsite: offsite::UploadArgs,
}

pub(crate) fn run(args: &BackupArgs) -> Result<()> {
    offsite::reported(offsite::Job::Backup, args.offsite.metrics_dir.as_deref(), || take(args))
}

fn take(args: &BackupArgs) -> Result<()> {
    let url = database_url()?;
    let file = create(&url, &args.dir)?;
    let max_age = Duration::from_secs(args.max_age_days * 86_400);
    for removed in rotate(&args.dir, args.keep as usize, max_age)? {
        println!("backup: rotated out {removed}");
    }
    println!("backup: {file} (checksum in {})", checksum_path(&file));
    if args.offsite.upload {
        offsite::upload(&file, &args.offsite)?;
    }
    Ok(())
}

/// The database to work on: `DATABASE_URL`, required.
pub(crate) fn database_url() -> Result<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Ok(url),
        _ => bail!("DATABASE_URL is not set: set it to the database to work on, e.g. postgres://user@host:5432/app"),
    }
}

/// Dumps the database of `url` into `dir`, verifies the dump and writes its checksum; returns the dump.
pub(crate) fn create(url: &str, dir: &Utf8Path) -> Result<Utf8PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating the backup directory {dir}"))?;
    let file = dir.join(format!("{PREFIX}{}{EXTENSION}", timestamp(SystemTime::now())));
    // Written under another name first: a dump cut short never looks like a backup.
    let partial = Utf8PathBuf::from(format!("{file}.partial"));
    let mut pg_dump = program("pg_dump")?;
    pg_dump.args(["--format=custom", "--file", partial.as_str(), "--dbname", url]);
    let dumped = client::output(pg_dump, &format!("pg_dump into {partial}"));
    if let Err(error) = dumped.and_then(|_| list(&partial)) {
        let _ = fs::remove_file(&partial);
        return Err(error);
    }
    fs::rename(&partial, &file).with_context(|| format!("renaming {partial} to {file}"))?;
    let line = format!("{}  {}\n", sha256(&file)?, file.file_name().unwrap_or_default());
    fs::write(checksum_path(&file), line).with_context(|| format!("writing {}", checksum_path(&file)))?;
    Ok(file)
}

/// What a dump must pass before it is restored: it exists, matches its checksum, and is a dump.
pub(crate) fn verify(file: &Utf8Path) -> Result<()> {
    if !file.is_file() {
        bail!(
            "{file} does not exist: name a backup in the backups directory (`ls backups/`) or take one with `cargo xtask backup`"
        );
    }
    let checksum_file = checksum_path(file);
    let expected = fs::read_to_string(&checksum_file).with_context(|| {
        format!("{checksum_file} is missing, so {file} cannot be checked: restore only dumps written by `cargo xtask backup`, which writes it")
    })?;
    let expected = expected.split_whitespace().next().unwrap_or_default();
    let actual = sha256(file)?;
    if expected != actual {
        bail!(
            "{file} does not match its checksum in {checksum_file} (sha256 {actual}, expected {expected}): the file is damaged or was changed; restore another backup"
        );
    }
    list(file)
}

/// `pg_restore --list`: reads the whole table of contents, so truncated or foreign files fail here.
fn list(file: &Utf8Path) -> Result<()> {
    let mut pg_restore = program("pg_restore")?;
    pg_restore.args(["--list", file.as_str()]);
    client::output(pg_restore, "pg_restore --list").map(drop).with_context(|| {
        format!("{file} is not a readable PostgreSQL custom-format dump: use a `.dump` written by `cargo xtask backup`")
    })
}

pub(crate) fn sha256(file: &Utf8Path) -> Result<String> {
    let mut sha256sum = std::process::Command::new("sha256sum");
    sha256sum.arg(file);
    let out = client::output(sha256sum, &format!("sha256sum {file}"))?;
    out.split_whitespace().next().map(str::to_owned).context("sha256sum printed nothing")
}

pub(crate) fn checksum_path(file: &Utf8Path) -> Utf8PathBuf {
    Utf8PathBuf::from(format!("{file}{CHECKSUM_EXTENSION}"))
}

/// Removes all but the `keep` newest backups, and any but the newest older than `max_age`; returns
/// what it removed.
pub(crate) fn rotate(dir: &Utf8Path, keep: usize, max_age: Duration) -> Result<Vec<Utf8PathBuf>> {
    let mut backups: Vec<Utf8PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {dir}"))?
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with(PREFIX) && name.ends_with(EXTENSION))
        .map(|name| dir.join(name))
        .collect();
    backups.sort_unstable_by(|a, b| b.cmp(a));
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for (index, file) in backups.into_iter().enumerate() {
        let modified = fs::metadata(&file).and_then(|meta| meta.modified()).unwrap_or(now);
        let too_old = now.duration_since(modified).unwrap_or_default() > max_age;
        if index >= keep.max(1) || (index > 0 && too_old) {
            fs::remove_file(&file).with_context(|| format!("removing {file}"))?;
            let _ = fs::remove_file(checksum_path(&file));
            removed.push(file);
        }
    }
    Ok(removed)
}

/// `YYYYMMDDTHHMMSS.mmmZ` in UTC.
pub(crate) fn timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (year, month, day) = civil_date(seconds / 86_400);
    let of_day = seconds % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// The Gregorian date `days` after 1970-01-01, counting in 400-year eras that start on 1 March so
/// that leap days fall at the end of a year.
fn civil_date(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_and_sort_in_time_order() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000.000Z");
        // 2024-02-29 23:59:59.5 and the next second: a leap day and a month boundary.
        let leap = UNIX_EPOCH + Duration::from_millis(1_709_251_199_500);
        assert_eq!(timestamp(leap), "20240229T235959.500Z");
        assert_eq!(timestamp(leap + Duration::from_secs(1)), "20240301T000000.500Z");
        assert_eq!(timestamp(UNIX_EPOCH + Duration::from_secs(1_795_478_400)), "20261124T000000.000Z");
        assert!(timestamp(leap) < timestamp(leap + Duration::from_millis(1)));
    }

    #[test]
    fn rotation_keeps_the_newest_by_count_and_age() {
        let dir = crate::project::target_dir().join(format!("tmp/rotate-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        let names = ["db-20260101T000000.000Z.dump", "db-20260102T000000.000Z.dump", "db-20260103T000000.000Z.dump"];
        for name in names {
            fs::write(dir.join(name), "x").expect("write");
            fs::write(checksum_path(&dir.join(name)), "x").expect("write");
        }
        fs::write(dir.join("notes.txt"), "not a backup").expect("write");
        let removed = rotate(&dir, 2, Duration::from_secs(3600)).expect("rotate");
        assert_eq!(removed, [dir.join(names[0])]);
        assert!(!checksum_path(&dir.join(names[0])).exists());
        for name in [names[1], names[2]] {
            let aged = std::process::Command::new("touch").args(["-d", "2 days ago"]).arg(dir.join(name)).status();
            assert!(aged.expect("touch").success());
        }
        // The newest stays even when it is too old: a backup is better than none.
        let removed = rotate(&dir, 5, Duration::from_secs(86_400)).expect("rotate");
        assert_eq!(removed, [dir.join(names[1])]);
        fs::write(dir.join("db-20260104T000000.000Z.dump"), "x").expect("write");
        let removed = rotate(&dir, 5, Duration::from_secs(86_400)).expect("rotate");
        assert_eq!(removed, [dir.join(names[2])]);
        assert!(dir.join("db-20260104T000000.000Z.dump").exists() && dir.join("notes.txt").exists());
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
