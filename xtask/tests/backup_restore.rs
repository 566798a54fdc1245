//! `xtask backup`, `restore` and `restore-drill` as an operator runs them, each test on its own database
//! of the server in `DATABASE_URL` (which `cargo xtask test` and `cargo xtask ci` set).

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;
use support::s3::{KEY_ID, S3Server, SECRET_KEY};
use support::{Run, program, psql};

/// A database of its own on the test server, dropped with this value.
struct TestDatabase {
    server: String,
    name: String,
    url: String,
    dir: PathBuf,
}

impl TestDatabase {
    fn new(test: &str) -> Self {
        let server = std::env::var("DATABASE_URL").expect("set DATABASE_URL (cargo xtask test does)");
        let name = format!("xtask_{test}_{}", std::process::id());
        let (base, _) = server.rsplit_once('/').expect("a URL with a database name");
        let url = format!("{base}/{name}");
        psql(&server, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        psql(&server, &format!("CREATE DATABASE {name}"));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        Self { server, name, url, dir }
    }

    fn seeded(test: &str) -> Self {
        let database = Self::new(test);
        database.sql("CREATE TABLE notes (id INT PRIMARY KEY, body TEXT); INSERT INTO notes SELECT n, 'note ' || n FROM generate_series(1, 50) n");
        database
    }

    fn sql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }

    fn xtask(&self, args: &[&str]) -> Run {
        self.xtask_with(args, &[])
    }

    fn xtask_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        Run(Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .envs(env.iter().copied())
            .env("DATABASE_URL", &self.url)
            .env_remove("APP_ENV")
            .current_dir(Path::new(env!("CARGO_TARGET_TMPDIR")))
            .output()
            .expect("xtask runs"))
    }

    fn backups(&self) -> Vec<PathBuf> {
        let mut dumps: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
            .unwrap_or_default();
        dumps.retain(|path| path.extension().is_some_and(|ext| ext == "dump"));
        dumps.sort();
        dumps
    }

    fn dir_arg(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        psql(&self.server, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn backups_are_verified_checksummed_and_rotated_by_count() {
    let database = TestDatabase::seeded("backup");
    for _ in 0..3 {
        database.xtask(&["backup", "--dir", database.dir_arg(), "--keep", "2"]).ok();
    }
    let backups = database.backups();
    assert_eq!(backups.len(), 2, "{backups:?}");
    for dump in &backups {
        let checksum = format!("{}.sha256", dump.display());
        let check = Command::new("sha256sum").arg("--check").arg(&checksum).current_dir(&database.dir).output();
        assert!(check.expect("sha256sum").status.success(), "{checksum} does not verify its dump");
        let list = program("pg_restore").arg("--list").arg(dump).output().expect("pg_restore");
        assert!(String::from_utf8_lossy(&list.stdout).contains("TABLE DATA public notes"));
    }
    assert!(!database.dir.read_dir().expect("dir").flatten().any(|e| e.path().to_string_lossy().ends_with(".partial")));
}

#[test]
fn a_restore_needs_confirmation_twice_for_production_and_saves_the_data_it_replaces() {
    let database = TestDatabase::seeded("restore");
    database.xtask(&["backup", "--dir", database.dir_arg()]).ok();
    let dump = database.backups().pop().expect("a backup");
    let dump = dump.to_str().expect("utf-8");
    database.sql("DELETE FROM notes WHERE id > 10; INSERT INTO notes VALUES (1000, 'after the backup')");

    database.xtask(&["restore", dump]).failed(&[dump, "--yes"]);
    database.xtask(&["restore", dump, "--yes", "--production"]).failed(&["--i-know-this-is-production"]);
    let production = Run(Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["restore", dump, "--yes"])
        .env("DATABASE_URL", &database.url)
        .env("APP_ENV", "production")
        .output()
        .expect("xtask runs"));
    production.failed(&["--i-know-this-is-production"]);
    assert_eq!(database.sql("SELECT count(*) FROM notes"), "11", "a refused restore changed the data");

    let run = database.xtask(&["restore", dump, "--yes", "--dir", database.dir_arg()]).ok();
    assert!(run.text().contains("to go back: cargo xtask restore"), "{}", run.text());
    assert_eq!(database.sql("SELECT count(*), max(id) FROM notes"), "50|50");

    // The pre-restore backup holds the data the restore replaced.
    let before = database.backups().pop().expect("pre-restore backup");
    let list = program("pg_restore").arg("--data-only").arg("--file=-").arg(&before).output().expect("pg_restore");
    assert!(String::from_utf8_lossy(&list.stdout).contains("after the backup"));
}

#[test]
fn a_missing_damaged_or_foreign_file_is_refused_with_the_file_and_the_fix() {
    let database = TestDatabase::seeded("badinput");
    let missing = database.dir.join("db-nope.dump");
    let missing = missing.to_str().expect("utf-8");
    database.xtask(&["restore", missing, "--yes"]).failed(&[missing, "does not exist", "cargo xtask backup"]);

    database.xtask(&["backup", "--dir", database.dir_arg()]).ok();
    let dump = database.backups().pop().expect("a backup");
    let mut bytes = std::fs::read(&dump).expect("read");
    bytes.push(b'!');
    std::fs::write(&dump, &bytes).expect("write");
    let name = dump.to_str().expect("utf-8");
    database.xtask(&["restore", name, "--yes"]).failed(&[
        name,
        "does not match its checksum",
        "restore another backup",
    ]);

    let text = database.dir.join("db-notes.dump");
    std::fs::write(&text, "just some text\n").expect("write");
    let text_name = text.to_str().expect("utf-8");
    database.xtask(&["restore", text_name, "--yes"]).failed(&[&format!("{text_name}.sha256 is missing")]);
    let sum = Command::new("sha256sum").arg(&text).output().expect("sha256sum");
    std::fs::write(format!("{text_name}.sha256"), &sum.stdout).expect("write");
    database
        .xtask(&["restore", text_name, "--yes"])
        .failed(&[text_name, "not a readable PostgreSQL custom-format dump"]);
    assert_eq!(database.sql("SELECT count(*) FROM notes"), "50");
}

#[test]
fn the_drill_restores_an_identical_copy_reports_the_time_and_leaves_nothing_behind() {
    let database = TestDatabase::seeded("drill");
    let run = database.xtask(&["restore-drill"]).ok();
    assert!(run.text().contains("1 tables, 50 rows identical after restore; time to restore: "), "{}", run.text());
    let leftovers = psql(&database.server, "SELECT count(*) FROM pg_database WHERE datname LIKE 'restore_drill_%'");
    assert_eq!(leftovers, "0", "the scratch database was not dropped");
}

#[test]
fn the_drill_refuses_a_database_without_tables_and_backups_need_a_database_url() {
    let database = TestDatabase::new("drillempty");
    database.xtask(&["restore-drill"]).failed(&["no tables", "app migrate"]);
    let run =
        Run(Command::new(env!("CARGO_BIN_EXE_xtask")).arg("backup").env_remove("DATABASE_URL").output().expect("runs"));
    run.failed(&["DATABASE_URL is not set"]);
}

/// Off-site storage for a test: a real S3 server, an age key pair, and the environment the backup and
/// the drill read.
struct Offsite {
    server: S3Server,
    identity: PathBuf,
    recipient: String,
    metrics: PathBuf,
}

const BUCKET: &str = "backups";

impl Offsite {
    fn new(database: &TestDatabase) -> Self {
        let server = S3Server::start(BUCKET);
        std::fs::create_dir_all(&database.dir).expect("mkdir");
        let identity = database.dir.join("operator.key");
        assert!(
            Command::new("age-keygen").arg("-o").arg(&identity).output().expect("age-keygen runs").status.success()
        );
        let public = Command::new("age-keygen").arg("-y").arg(&identity).output().expect("age-keygen -y runs");
        let recipient = String::from_utf8(public.stdout).expect("utf-8").trim().to_owned();
        Self { server, identity, recipient, metrics: database.dir.join("metrics") }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("BACKUP_S3_ENDPOINT", &self.server.endpoint),
            ("BACKUP_S3_BUCKET", BUCKET),
            ("BACKUP_S3_PREFIX", "prod"),
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("BACKUP_AGE_RECIPIENT", &self.recipient),
            ("BACKUP_AGE_IDENTITY_FILE", self.identity.to_str().expect("utf-8")),
        ]
    }

    fn metrics_arg(&self) -> &str {
        self.metrics.to_str().expect("utf-8")
    }

    fn metrics(&self, job: &str) -> String {
        std::fs::read_to_string(self.metrics.join(format!("shipshape_{job}.prom"))).unwrap_or_default()
    }

    fn keys(&self) -> Vec<String> {
        self.server.keys(BUCKET, "prod/")
    }
}

fn assert_no_secret(run: &Run) {
    assert!(!run.text().contains(SECRET_KEY) && !run.text().contains("X-Amz-Signature"), "{}", run.text());
}

#[test]
fn an_offsite_backup_is_encrypted_verified_pruned_and_restored_by_the_drill() {
    let database = TestDatabase::seeded("offsite");
    let offsite = Offsite::new(&database);
    // Stored earlier: two in January, one in February, and something that is not a backup.
    for name in
        ["db-20260105T030000.000Z.dump.age", "db-20260120T030000.000Z.dump.age", "db-20260210T030000.000Z.dump.age"]
    {
        offsite.server.put_object(BUCKET, &format!("prod/{name}"), b"older backup");
        offsite.server.put_object(BUCKET, &format!("prod/{name}.sha256"), b"x");
    }
    offsite.server.put_object(BUCKET, "prod/README", b"not a backup");

    let args = ["backup", "--dir", database.dir_arg(), "--upload", "--keep-daily", "1", "--keep-weekly", "1"];
    let run = database
        .xtask_with(
            &[&args[..], &["--keep-monthly", "3", "--metrics-dir", offsite.metrics_arg()]].concat(),
            &offsite.env(),
        )
        .ok();
    assert_no_secret(&run);
    assert!(run.text().contains("verified by reading it back"), "{}", run.text());
    // Months: this one (the new backup), February, January's newest; 5 January is pruned.
    let keys = offsite.keys();
    let stored: Vec<&String> = keys.iter().filter(|key| key.ends_with(".dump.age")).collect();
    assert_eq!(stored.len(), 3, "{keys:?}");
    assert!(
        stored[0].ends_with("db-20260120T030000.000Z.dump.age")
            && stored[1].ends_with("db-20260210T030000.000Z.dump.age")
    );
    assert!(!keys.iter().any(|key| key.contains("20260105")), "{keys:?}");
    assert!(keys.contains(&"prod/README".to_owned()) && keys.contains(&format!("{}.sha256", stored[2])));
    let object = offsite.server.get_object(BUCKET, stored[2]);
    assert!(object.starts_with(b"age-encryption.org/v1\n"), "not an age file");
    assert!(offsite.metrics("backup").contains("shipshape_backup_last_success_timestamp_seconds "));

    database.sql("INSERT INTO notes VALUES (51, 'written after the backup')");
    let drill = database
        .xtask_with(&["restore-drill", "--from-latest", "--metrics-dir", offsite.metrics_arg()], &offsite.env())
        .ok();
    assert_no_secret(&drill);
    for expected in ["restored in", "taken 0.0 h ago", "1 tables, 50 rows", "public.notes: 50 rows"] {
        assert!(drill.text().contains(expected), "missing {expected:?} in:\n{}", drill.text());
    }
    let metrics = offsite.metrics("restore_drill");
    assert!(
        metrics.contains("shipshape_restore_drill_last_success_timestamp_seconds ")
            && metrics.contains("shipshape_restore_drill_backup_timestamp_seconds "),
        "{metrics}"
    );
}

#[test]
fn a_damaged_stored_backup_is_refused_and_a_failed_upload_alerts_once() {
    let database = TestDatabase::seeded("offsite_damaged");
    let offsite = Offsite::new(&database);
    database.xtask_with(&["backup", "--dir", database.dir_arg(), "--upload"], &offsite.env()).ok();
    let stored = offsite.keys().into_iter().find(|key| key.ends_with(".dump.age")).expect("stored");
    let mut object = offsite.server.get_object(BUCKET, &stored);
    let last = object.len() - 1;
    object[last] ^= 0x01;
    offsite.server.put_object(BUCKET, &stored, &object);

    let drill = database
        .xtask_with(&["restore-drill", "--from-latest", "--metrics-dir", offsite.metrics_arg()], &offsite.env());
    let drill = drill.failed(&[
        "does not match its stored sha256",
        "nothing was restored",
        "ALERT shipshape restore-drill failed",
    ]);
    assert_no_secret(&drill);
    assert!(offsite.metrics("restore_drill").contains("shipshape_restore_drill_last_failure_timestamp_seconds "));

    let mut env = offsite.env();
    env.retain(|(name, _)| *name != "BACKUP_S3_BUCKET");
    env.push(("BACKUP_S3_BUCKET", "no-such-bucket"));
    let run = database
        .xtask_with(&["backup", "--dir", database.dir_arg(), "--upload", "--metrics-dir", offsite.metrics_arg()], &env);
    let run = run.failed(&["404"]);
    assert_no_secret(&run);
    let text = run.text();
    let alerts: Vec<&str> = text.lines().filter(|line| line.starts_with("ALERT ")).collect();
    assert_eq!(alerts.len(), 1, "{}", run.text());
    assert!(alerts[0].starts_with("ALERT shipshape backup failed: uploading prod/db-"), "{}", alerts[0]);
    assert!(offsite.metrics("backup").contains("shipshape_backup_last_failure_timestamp_seconds "));
}
