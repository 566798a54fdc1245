//! `cargo xtask ci --only migrations` on scratch copies of this repository: lock-taking and destructive
//! migrations fail naming the file, bad input fails with one clear line, an expand-only migration passes
//! with the base's release proven on the new schema, and a dropped column the base reads fails through
//! that round trip even with the linter opted out. The worked example of docs/migrations.md (fixtures
//! under `tests/fixtures/migrations/`) is linted step by step and applied on PostgreSQL.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Run, psql};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/migrations");

/// A copy of this checkout (tracked files and new ones git does not ignore) committed as `main`, with a
/// branch `change` checked out on top, where the tests add migrations.
struct Repo {
    dir: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(["-c", "user.name=ci", "-c", "user.email=ci@localhost", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        // Fixed dates: the same files give the same commit, so the base's build is reused across runs.
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Repo {
    fn new(name: &str) -> Self {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("migrations-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = git(source, &["ls-files", "-z", "--cached", "--others", "--exclude-standard"]);
        for file in files.split('\0').filter(|file| !file.is_empty()) {
            let from = source.join(file);
            if from.is_file() {
                let to = dir.join(file);
                std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
                std::fs::copy(&from, &to).expect("copy");
            }
        }
        git(&dir, &["init", "--quiet", "--initial-branch=main"]);
        git(&dir, &["add", "."]);
        git(&dir, &["commit", "--quiet", "-m", "release"]);
        git(&dir, &["checkout", "--quiet", "-b", "change"]);
        Self { dir }
    }

    fn add_migration(&self, name: &str, sql: &str) -> String {
        let path = format!("app/migrations/{name}");
        std::fs::write(self.dir.join(&path), sql).expect("write");
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command.args(args).env("XTASK_WORKSPACE", &self.dir).current_dir(&self.dir).env_remove("MIGRATIONS_BASE");
        support::without_outer_build(&mut command);
        command
    }

    fn migrations(&self, extra: &[&str]) -> Run {
        let mut args = vec!["ci", "--only", "migrations"];
        args.extend_from_slice(extra);
        Run(self.command(&args).output().expect("xtask runs"))
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(step: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(Path::new(FIXTURES).join(step))
        .expect("fixtures")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).expect("read"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn no_changed_migration_is_one_line() {
    let repo = Repo::new("none");
    let run = repo.migrations(&[]).ok();
    assert!(run.text().lines().any(|line| line.starts_with("migrations: none differ from ")), "{}", run.text());
    assert!(!repo.dir.join("target/migrations-base").exists(), "nothing was built");
}

#[test]
fn lock_taking_and_destructive_migrations_fail_naming_file_line_rule_and_the_safe_way() {
    let repo = Repo::new("lint");
    for (sql, rule, safe) in [
        ("ALTER TABLE notes DROP COLUMN body;\n", "ban-drop-column", "later migration"),
        ("CREATE INDEX notes_title ON notes (title);\n", "require-concurrent-index-creation", "CONCURRENTLY"),
        ("ALTER TABLE notes RENAME COLUMN title TO heading;\n", "renaming-column", "three-deploy rename"),
    ] {
        let file = repo.add_migration("20990101000000_change.sql", sql);
        let run = repo.migrations(&[]).failed(&[&format!("{file}:1: {rule}:"), safe, "ci failed at step `migrations`"]);
        assert!(run.text().contains("docs/migrations.md"), "{}", run.text());
    }
}

#[test]
fn an_opt_out_without_a_reason_and_invalid_sql_are_refused_with_one_line_each() {
    let repo = Repo::new("bad-input");
    let file = repo.add_migration(
        "20990101000000_drop.sql",
        "-- squawk-ignore ban-drop-column\nALTER TABLE notes DROP COLUMN body;\n",
    );
    repo.migrations(&[]).failed(&[&format!("{file}:1: opt-out: an opt-out needs a `-- reason:"), "at least 10"]);

    std::fs::remove_file(repo.dir.join(&file)).expect("rm");
    let file = repo.add_migration("20990101000000_typo.sql", "ALTER TABLE notes ADD COLUM pinned boolean;\n");
    let run = repo.migrations(&[]).failed(&[&format!("{file}:1: syntax-error: not valid SQL")]);
    assert_eq!(run.text().matches("syntax-error").count(), 1, "{}", run.text());

    repo.migrations(&["--base", "no-such-release"])
        .failed(&["the base `no-such-release` (--base no-such-release) is not a commit of this repository"]);
}

#[test]
fn a_shipped_migration_that_changed_is_refused() {
    let repo = Repo::new("edited");
    let shipped = repo.dir.join("app/migrations/20260101000000_init.sql");
    let text = std::fs::read_to_string(&shipped).expect("read");
    std::fs::write(&shipped, text.replace("64", "65")).expect("write");
    repo.migrations(&[]).failed(&[
        "app/migrations/20260101000000_init.sql: changed since",
        "sqlx refuses a database whose applied migration changed",
    ]);
}

#[test]
fn the_worked_rename_passes_the_linter_at_every_step_and_the_naive_rename_is_refused() {
    let repo = Repo::new("rename");
    for step in ["rename-1-expand", "rename-2-migrate-data", "rename-3-contract"] {
        for (name, sql) in fixture(step) {
            repo.add_migration(&name, &sql);
        }
        // The lint alone: the whole example is valid only with the code changes of each deploy.
        let base = git(&repo.dir, &["rev-parse", "HEAD"]);
        let run = Run(repo.command(&["lint-migrations", "--base", base.trim()]).output().expect("runs")).ok();
        assert!(run.text().contains("no problem found"), "{step}: {}", run.text());
        git(&repo.dir, &["add", "."]);
        git(&repo.dir, &["commit", "--quiet", "-m", step]);
    }
    let repo = Repo::new("rename-naive");
    for (name, sql) in fixture("rename-naive") {
        let file = repo.add_migration(&name, &sql);
        repo.migrations(&[]).failed(&[&format!("{file}:2: renaming-column:")]);
    }
}

#[test]
fn the_worked_rename_keeps_both_columns_in_step_on_postgresql_and_is_quoted_in_the_guide() {
    let server = std::env::var("DATABASE_URL").expect("set DATABASE_URL (cargo xtask test does)");
    let database = format!("xtask_migrations_rename_{}", std::process::id());
    psql(&server, &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
    psql(&server, &format!("CREATE DATABASE {database}"));
    let (base, _) = server.rsplit_once('/').expect("a database name");
    let url = format!("{base}/{database}");
    let apply = |sql: &str| psql(&url, sql);
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("../app/migrations");
    let mut shipped: Vec<PathBuf> =
        std::fs::read_dir(migrations).expect("migrations").map(|entry| entry.expect("entry").path()).collect();
    shipped.sort();
    for path in shipped {
        apply(&std::fs::read_to_string(path).expect("read"));
    }
    apply(
        "INSERT INTO accounts (id, email, password_hash) VALUES ('00000000-0000-0000-0000-000000000001', 'a@b.c', 'x');
         INSERT INTO notes (id, account_id, title, body) VALUES
           ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 'written before', '')",
    );
    let guide = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/migrations.md"))
        .expect("docs/migrations.md");
    for step in ["rename-1-expand", "rename-2-migrate-data", "rename-3-contract"] {
        for (name, sql) in fixture(step) {
            assert!(guide.contains(sql.trim_end()), "docs/migrations.md does not quote {step}/{name}");
            apply(&sql);
        }
        match step {
            // The release before deploy 1 writes `title` only; deploy 2's release `heading` only.
            "rename-1-expand" => {
                apply(
                    "INSERT INTO notes (id, account_id, title, body) VALUES
                       ('00000000-0000-0000-0000-00000000000b', '00000000-0000-0000-0000-000000000001', 'old release', '');
                     UPDATE notes SET title = 'old release, edited' WHERE id = '00000000-0000-0000-0000-00000000000b'",
                );
            }
            "rename-2-migrate-data" => {
                apply(
                    "INSERT INTO notes (id, account_id, heading, body) VALUES
                       ('00000000-0000-0000-0000-00000000000c', '00000000-0000-0000-0000-000000000001', 'new release', '')",
                );
                assert_eq!(
                    psql(&url, "SELECT string_agg(title || '=' || heading, ',' ORDER BY id) FROM notes"),
                    "written before=written before,old release, edited=old release, edited,new release=new release"
                );
            }
            _ => {}
        }
    }
    let headings = psql(&url, "SELECT string_agg(heading, ',' ORDER BY id) FROM notes");
    psql(&server, &format!("DROP DATABASE {database} WITH (FORCE)"));
    assert_eq!(headings, "written before,old release, edited,new release");
    let naive = &fixture("rename-naive")[0].1;
    assert!(guide.contains(naive.trim_end()), "docs/migrations.md does not quote the naive rename");
}

#[test]
fn the_base_release_is_proven_on_the_new_schema_and_a_dropped_column_it_reads_fails_the_round_trip() {
    let repo = Repo::new("round-trip");
    // Builds persist between runs (one target directory for these scratch copies), so only the
    // service's crate compiles on a warm machine.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("migrations-scratch-target");
    std::fs::create_dir_all(&target).expect("mkdir");
    std::os::unix::fs::symlink(&target, repo.dir.join("target")).expect("symlink");

    let file = repo.add_migration("20990101000000_pinned.sql", "ALTER TABLE notes ADD COLUMN pinned boolean;\n");
    let run = repo.migrations(&[]).ok();
    let text = run.text();
    assert!(text.contains(&format!("migrations: linting {file}")), "{text}");
    assert!(text.contains("the base's release passed the round trip on the new schema"), "{text}");
    assert!(text.lines().any(|line| line.starts_with("migrations: 1 changed, checked in ")), "{text}");
    assert!(!target.join("migrations-base/checkout").exists(), "the worktree was left behind");
    let leftover = psql(
        &std::env::var("DATABASE_URL").expect("DATABASE_URL"),
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'migrations_round_trip_%'",
    );
    assert_eq!(leftover, "0", "a throwaway database was left behind");

    // The linter is told this is fine, but the base release still selects `body`.
    std::fs::remove_file(repo.dir.join(&file)).expect("rm");
    let file = repo.add_migration(
        "20990101000000_drop_body.sql",
        "-- reason: a contract step shipped too early, to prove the round trip catches it\n\
         -- squawk-ignore ban-drop-column\nALTER TABLE notes DROP COLUMN body;\n",
    );
    let run = repo.migrations(&[]).failed(&[
        "does not work on the new schema",
        "the base release, serving across the migration",
        "POST /api/v1/notes",
        "answered 500, expected 201",
    ]);
    assert!(!run.text().contains(&format!("{file}:")), "the linter let it through:\n{}", run.text());
    assert!(!target.join("migrations-base/checkout").exists(), "the worktree was left behind");

    // Ctrl-C in the middle of the round trip: the database and the base's server go too.
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let throwaway = "SELECT count(*) FROM pg_database WHERE datname LIKE 'migrations_round_trip_%'";
    let mut running = repo
        .command(&["ci", "--only", "migrations"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("xtask runs");
    let deadline = Instant::now() + Duration::from_secs(120);
    while psql(&server, throwaway) == "0" {
        assert!(
            Instant::now() < deadline && running.try_wait().expect("wait").is_none(),
            "the round trip never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(Command::new("kill").args(["-INT", &running.id().to_string()]).status().expect("kill").success());
    assert!(!running.wait().expect("exits").success());
    assert_eq!(psql(&server, throwaway), "0", "the throwaway database outlived Ctrl-C");
    let base_app = target.join("migrations-base/app");
    let survivors = Command::new("pgrep").arg("-f").arg(&base_app).output().expect("pgrep");
    assert!(survivors.stdout.is_empty(), "the base's server outlived Ctrl-C");

    // A base whose service does not compile: one line says so, and how to pick another.
    git(&repo.dir, &["stash", "--include-untracked", "--quiet"]);
    git(&repo.dir, &["checkout", "--quiet", "-b", "broken", "main"]);
    std::fs::write(repo.dir.join("app/src/lib.rs"), "compile_error!(\"a release that does not build\");\n")
        .expect("write");
    git(&repo.dir, &["commit", "--quiet", "-am", "broken"]);
    git(&repo.dir, &["checkout", "--quiet", "change"]);
    git(&repo.dir, &["stash", "pop", "--quiet"]);
    repo.migrations(&["--base", "broken"])
        .failed(&["(--base broken) does not build: cargo's errors are above (fix: pass --base REF"]);
    assert!(!target.join("migrations-base/checkout").exists(), "the worktree was left behind");
}
