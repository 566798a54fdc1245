//! The pre-migration backup, proven restorable before MIGRATE: restored into a scratch database on the
//! same server, each table's row count compared with what the dump holds (the live database keeps
//! changing under the serving release, the dump does not). A backup that does not restore stops the
//! deploy before any schema change. Dumps over `DEPLOY_VERIFY_BACKUP_MAX` are not restored, said so.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use camino::Utf8Path;

use crate::postgres::client::{ScratchDatabase, program};
use crate::{restore, restore_drill};

/// `DEPLOY_VERIFY_BACKUP_MAX`'s default: restoring more would hold the deploy for long.
pub(crate) const DEFAULT_MAX: &str = "1GiB";

/// Restores `dump` (taken from `url`) into a scratch database and compares row counts per table.
pub(crate) fn prove(url: &str, dump: &Utf8Path, max_bytes: u64) -> Result<()> {
    let size = std::fs::metadata(dump).with_context(|| format!("reading {dump}"))?.len();
    if size > max_bytes {
        println!(
            "deploy: the backup is not restored to prove it: {size} bytes is over DEPLOY_VERIFY_BACKUP_MAX ({max_bytes} bytes); \
             it passed `pg_restore --list` only"
        );
        return Ok(());
    }
    let started = Instant::now();
    let expected = rows_in_dump(dump)?;
    let scratch = ScratchDatabase::create(url, &format!("deploy_verify_backup_{}", std::process::id())).context(
        "creating a scratch database to prove the backup restores (the role needs CREATEDB; \
         DEPLOY_VERIFY_BACKUP_MAX=0 skips the proof)",
    )?;
    restore::restore_into(&scratch.url, dump).with_context(|| format!("the backup {dump} does not restore"))?;
    let restored: BTreeMap<String, u64> =
        restore_drill::fingerprint(&scratch.url)?.into_iter().map(|(table, (rows, _))| (table, rows)).collect();
    let differences = differences(&expected, &restored);
    if !differences.is_empty() {
        bail!("the backup {dump} does not restore what it holds:\n  {}", differences.join("\n  "));
    }
    println!(
        "deploy: the backup restores: {} tables, {} rows as in the dump ({:.2} s)",
        expected.len(),
        expected.values().sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Rows per table in the dump: the data lines of each `COPY … FROM stdin;` block of its SQL.
fn rows_in_dump(dump: &Utf8Path) -> Result<BTreeMap<String, u64>> {
    let mut pg_restore = program("pg_restore")?;
    pg_restore.args(["--data-only", "--file=-", dump.as_str()]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = pg_restore.spawn().context("starting pg_restore")?;
    let stdout = child.stdout.take().context("pg_restore's output")?;
    let counts = count_copy_rows(BufReader::new(stdout).lines().map_while(Result::ok));
    let output = child.wait_with_output().context("waiting for pg_restore")?;
    if !output.status.success() {
        bail!("pg_restore cannot read {dump}: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(counts)
}

fn count_copy_rows(lines: impl Iterator<Item = String>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let mut table: Option<String> = None;
    for line in lines {
        match &table {
            Some(_) if line == "\\." => table = None,
            Some(name) => *counts.entry(name.clone()).or_insert(0) += 1,
            None => {
                if let Some(rest) = line.strip_prefix("COPY ").filter(|_| line.ends_with("FROM stdin;")) {
                    let name = rest.split(" (").next().unwrap_or(rest).trim_end_matches(" FROM stdin;").to_owned();
                    counts.entry(name.clone()).or_insert(0);
                    table = Some(name);
                }
            }
        }
    }
    counts
}

fn differences(expected: &BTreeMap<String, u64>, restored: &BTreeMap<String, u64>) -> Vec<String> {
    expected
        .iter()
        .filter_map(|(table, rows)| match restored.get(table) {
            None => Some(format!("{table}: missing after the restore")),
            Some(got) if got != rows => Some(format!("{table}: {rows} rows in the dump, {got} after the restore")),
            Some(_) => None,
        })
        .collect()
}

/// `1073741824`, `512MiB`, `1GiB`: a size in bytes.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_counted_per_copy_block() {
        let sql = [
            "SET statement_timeout = 0;",
            "COPY public.notes (id, title, body) FROM stdin;",
            "1\ta\tline one\\nline two",
            "2\tb\t\\N",
            "\\.",
            "COPY public.\"Empty\" (id) FROM stdin;",
            "\\.",
            "SELECT pg_catalog.setval('public.seq', 1, true);",
        ];
        let counts = count_copy_rows(sql.iter().map(|line| (*line).to_owned()));
        assert_eq!(counts, BTreeMap::from([("public.notes".to_owned(), 2), ("public.\"Empty\"".to_owned(), 0)]));
        let restored = BTreeMap::from([("public.notes".to_owned(), 1)]);
        assert_eq!(
            differences(&counts, &restored),
            ["public.\"Empty\": missing after the restore", "public.notes: 2 rows in the dump, 1 after the restore"]
        );
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size(DEFAULT_MAX), Some(1 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("10 KiB"), Some(10 << 10));
        assert_eq!((parse_size("1GB"), parse_size("lots"), parse_size("")), (None, None, None));
    }
}
