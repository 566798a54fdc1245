//! `cargo xtask restore-drill`: proves the backups can be restored. Backs up `DATABASE_URL`, restores the
//! dump into a scratch database on the same server, compares every table's row count and checksum,
//! drops the scratch database and reports the time the restore took. Also the `restore-drill` CI step,
//! which drills a freshly migrated and seeded database.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use camino::Utf8PathBuf;

use crate::postgres::client::{self, ScratchDatabase};
use crate::{backup, cleanup, offsite, project, restore};

/// Row count and md5 of the rows in a stable order, per `schema.table`.
pub(crate) type Fingerprint = BTreeMap<String, (u64, String)>;

pub(crate) struct Drill {
    pub(crate) tables: usize,
    pub(crate) rows: u64,
    pub(crate) restore: Duration,
}

impl std::fmt::Display for Drill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "restore-drill: ok: {} tables, {} rows identical after restore; time to restore: {:.2} s",
            self.tables,
            self.rows,
            self.restore.as_secs_f64()
        )
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct RestoreDrillArgs {
    /// Drill the newest off-site backup instead of a fresh one: download, check, decrypt, restore into a
    /// scratch database, report its age and row counts (BACKUP_S3_*, BACKUP_AGE_IDENTITY_FILE).
    #[arg(long)]
    from_latest: bool,
    /// With --from-latest: node_exporter's textfile directory for the drill's result.
    #[arg(long, value_name = "DIR", requires = "from_latest")]
    metrics_dir: Option<Utf8PathBuf>,
}

pub(crate) fn run(args: &RestoreDrillArgs) -> Result<()> {
    if args.from_latest {
        let metrics_dir = args.metrics_dir.as_deref();
        return offsite::reported(offsite::Job::RestoreDrill, metrics_dir, || offsite::drill_latest(metrics_dir));
    }
    println!("{}", drill(&backup::database_url()?)?);
    Ok(())
}

/// Rows per `schema.table` of the database at `url`.
pub(crate) fn row_counts(url: &str) -> Result<BTreeMap<String, u64>> {
    Ok(fingerprint(url)?.into_iter().map(|(table, (rows, _))| (table, rows)).collect())
}

/// Backup, restore into a scratch database, compare; the dump and the scratch database are removed.
pub(crate) fn drill(url: &str) -> Result<Drill> {
    let source = fingerprint(url)?;
    if source.is_empty() {
        bail!("the database has no tables, so a drill would prove nothing: migrate it first (`app migrate`)");
    }
    let dir = project::target_dir().join(format!("restore-drill/{}", std::process::id()));
    let _remove_dir = cleanup::register({
        let dir = dir.clone();
        move || {
            let _ = std::fs::remove_dir_all(&dir);
        }
    });
    let dump = backup::create(url, &dir)?;
    backup::verify(&dump)?;
    let scratch = ScratchDatabase::create(url, &format!("restore_drill_{}", std::process::id()))?;
    let started = Instant::now();
    restore::restore_into(&scratch.url, &dump)?;
    let restore = started.elapsed();
    let copy = fingerprint(&scratch.url)?;
    let differences = compare(&source, &copy);
    if !differences.is_empty() {
        bail!(
            "the restored copy differs from the database (was it written to during the drill?):\n  {}",
            differences.join("\n  ")
        );
    }
    Ok(Drill { tables: source.len(), rows: source.values().map(|(rows, _)| rows).sum(), restore })
}

pub(crate) fn fingerprint(url: &str) -> Result<Fingerprint> {
    let tables = client::query(
        url,
        "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )?;
    if tables.is_empty() {
        return Ok(Fingerprint::new());
    }
    // One round trip for all tables; rows are compared as text, in text order, so the physical order
    // a restore produces does not matter.
    let selects: Vec<String> = tables
        .iter()
        .map(|table| {
            format!(
                "SELECT {literal}, count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {table} t",
                literal = quote_literal(table)
            )
        })
        .collect();
    let mut out = Fingerprint::new();
    for row in client::query(url, &selects.join(" UNION ALL "))? {
        let mut columns = row.rsplitn(3, '|');
        let (Some(md5), Some(count), Some(table)) = (columns.next(), columns.next(), columns.next()) else {
            bail!("unexpected psql output: {row}");
        };
        out.insert(table.to_owned(), (count.parse().with_context(|| format!("row count of {table}"))?, md5.to_owned()));
    }
    Ok(out)
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// One line per table that is missing or differs.
fn compare(source: &Fingerprint, copy: &Fingerprint) -> Vec<String> {
    let mut differences = Vec::new();
    for (table, (rows, md5)) in source {
        match copy.get(table) {
            None => differences.push(format!("{table}: missing from the restored copy")),
            Some((copy_rows, _)) if copy_rows != rows => {
                differences.push(format!("{table}: {rows} rows, {copy_rows} after restore"));
            }
            Some((_, copy_md5)) if copy_md5 != md5 => {
                differences.push(format!("{table}: same {rows} rows, different contents"));
            }
            Some(_) => {}
        }
    }
    differences.extend(
        copy.keys()
            .filter(|table| !source.contains_key(*table))
            .map(|table| format!("{table}: only in the restored copy")),
    );
    differences
}

/// The CI step: a scratch database on the pipeline's server, migrated with the service's migrations,
/// seeded with awkward rows, then drilled.
pub(crate) fn ci_step(server_url: &str) -> Result<()> {
    let source = ScratchDatabase::create(server_url, "restore_drill_source")?;
    let migrations = client::apply_migrations(&source.url)?;
    client::query(&source.url, SEED)?;
    let drill = drill(&source.url)?;
    println!("restore-drill: {migrations} migrations applied, seeded");
    println!("{drill}");
    Ok(())
}

/// Rows a careless dump or restore would change: NULLs, quotes, newlines, non-ASCII, binary, JSON.
const SEED: &str = "
CREATE TABLE restore_drill_samples (
    id      BIGINT PRIMARY KEY,
    label   TEXT,
    payload BYTEA,
    doc     JSONB,
    at      TIMESTAMPTZ
);
INSERT INTO restore_drill_samples
SELECT n,
       CASE WHEN n % 7 = 0 THEN NULL ELSE format(E'row %s: it''s \\u00e9t\\u00e9\\n|tab\\t', n) END,
       decode(md5(n::text), 'hex'),
       jsonb_build_object('n', n, 'even', n % 2 = 0),
       timestamptz '2026-01-01 00:00:00+00' + n * interval '1 minute'
FROM generate_series(1, 500) AS n;
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_table_and_what_differs() {
        let source = Fingerprint::from([
            ("public.a".to_owned(), (2, "x".to_owned())),
            ("public.b".to_owned(), (1, "y".to_owned())),
            ("public.c".to_owned(), (1, "z".to_owned())),
        ]);
        let copy = Fingerprint::from([
            ("public.a".to_owned(), (2, "x".to_owned())),
            ("public.b".to_owned(), (1, "changed".to_owned())),
            ("public.d".to_owned(), (0, String::new())),
        ]);
        assert_eq!(
            compare(&source, &copy),
            [
                "public.b: same 1 rows, different contents",
                "public.c: missing from the restored copy",
                "public.d: only in the restored copy"
            ]
        );
        let fewer = Fingerprint::from([("public.a".to_owned(), (1, "x".to_owned()))]);
        assert_eq!(
            compare(&fewer, &Fingerprint::from([("public.a".to_owned(), (3, "x".to_owned()))])),
            ["public.a: 1 rows, 3 after restore"]
        );
    }
}
