//! `cargo xtask ci` run as a user runs it, on scratch workspaces: a broken thing fails the step that
//! checks it, which is named with its fix; on GitHub Actions the output is grouped, annotated and
//! summarised.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::Run;

const FORMATTED: &str = "pub fn answer() -> u32 {\n    42\n}\n";

struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let scratch = Self { dir };
        // `[workspace]` keeps cargo from looking for an enclosing workspace.
        scratch.write(
            "Cargo.toml",
            "[package]\nname = \"scratch\"\nversion = \"0.0.0\"\nedition = \"2024\"\nlicense = \"MIT\"\npublish = false\n\n[workspace]\n",
        );
        scratch.write("src/lib.rs", FORMATTED);
        scratch.write("Cargo.lock", "version = 4\n\n[[package]]\nname = \"scratch\"\nversion = \"0.0.0\"\n");
        scratch
    }

    fn write(&self, path: &str, contents: &str) {
        let path = self.dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.dir.join(path)).expect("read")
    }

    fn coverage(&self, percent: f64) {
        let json = format!(r#"{{"data":[{{"totals":{{"lines":{{"count":100,"covered":0,"percent":{percent}}}}}}}]}}"#);
        self.write("target/coverage/summary.json", &json);
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        // A test never installs anything: the outer run's preflight did.
        command.args(args).env("XTASK_WORKSPACE", &self.dir).env("XTASK_NO_INSTALL", "1").current_dir(&self.dir);
        support::without_outer_build(&mut command);
        command
    }

    fn xtask(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().expect("xtask runs"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn an_unformatted_file_fails_fmt_which_is_named_with_its_fix_and_nothing_is_rewritten() {
    let scratch = Scratch::new("fmt");
    let messy = "pub fn answer()->u32{42}\n";
    scratch.write("src/lib.rs", messy);
    let run = scratch.xtask(&["ci", "--only", "fmt"]);
    assert!(!run.succeeded(), "{}", run.text());
    assert!(run.text().contains("ci failed at step `fmt`"), "{}", run.text());
    assert!(run.text().contains("cargo fmt --all"), "{}", run.text());
    assert_eq!(scratch.read("src/lib.rs"), messy, "fmt must only check");
}

#[test]
fn formatted_code_passes_fmt_with_a_line_and_a_table() {
    let scratch = Scratch::new("fmt-ok");
    let run = scratch.xtask(&["ci", "--only", "fmt"]);
    assert!(run.succeeded(), "{}", run.text());
    assert!(run.text().lines().any(|line| line.starts_with("✔ fmt ok (")), "{}", run.text());
    assert!(run.text().lines().any(|line| line.starts_with("fmt ") && line.contains("ok") && line.ends_with(" s")));
}

#[test]
fn a_clippy_warning_fails_clippy_with_an_annotation_and_a_summary_on_github() {
    let scratch = Scratch::new("clippy");
    scratch.write("src/lib.rs", "pub fn answer() -> u32 {\n    let unused = 1;\n    42\n}\n");
    let summary = scratch.dir.join("summary.md");
    let run = Run(scratch
        .command(&["ci", "--only", "clippy"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .expect("xtask runs"));
    let text = run.text();
    assert!(!run.succeeded(), "{text}");
    assert!(text.contains("::group::clippy") && text.contains("::endgroup::"), "{text}");
    assert!(text.contains("::error file=src/lib.rs,line=2,title=error%3A unused_variables::"), "{text}");
    assert!(text.contains("ci failed at step `clippy`"), "{text}");
    let summary = std::fs::read_to_string(summary).expect("summary written");
    assert!(summary.contains("| `clippy` | ❌ FAILED |"), "{summary}");
}

#[test]
fn coverage_under_the_gate_fails_and_at_the_gate_passes() {
    let scratch = Scratch::new("coverage");
    scratch.coverage(79.9);
    let run = scratch.xtask(&["ci", "--only", "coverage"]);
    assert!(!run.succeeded());
    assert!(run.text().contains("ci failed at step `coverage`"), "{}", run.text());
    assert!(run.text().contains("79.9 % is under the gate of 80 %"), "{}", run.text());

    scratch.coverage(80.0);
    let run = scratch.xtask(&["ci", "--only", "coverage"]);
    assert!(run.succeeded(), "{}", run.text());
    assert!(run.text().contains("line coverage: 80.0 %"));
}

#[test]
fn github_summary_has_the_step_table_and_the_coverage_figure() {
    let scratch = Scratch::new("summary");
    scratch.coverage(91.5);
    let summary = scratch.dir.join("summary.md");
    let output = scratch
        .command(&["ci", "--only", "fmt", "--only", "coverage"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .expect("xtask runs");
    assert!(output.status.success());
    let summary = std::fs::read_to_string(summary).expect("summary written");
    assert!(summary.contains("| `fmt` | ✅ ok |") && summary.contains("| `coverage` | ✅ ok |"), "{summary}");
    assert!(summary.contains("line coverage: 91.5 %"), "{summary}");
}

#[test]
fn keep_going_runs_every_step_and_reports_every_failure() {
    let scratch = Scratch::new("keep-going");
    scratch.write("src/lib.rs", "pub fn answer()->u32{42}\n");
    scratch.coverage(10.0);
    let stopped = scratch.xtask(&["ci", "--only", "fmt", "--only", "coverage"]);
    assert!(
        stopped.text().lines().any(|line| line.starts_with("coverage") && line.contains("not run")),
        "{}",
        stopped.text()
    );

    let all = scratch.xtask(&["ci", "--only", "fmt", "--only", "coverage", "--keep-going"]);
    assert!(!all.succeeded());
    assert!(all.text().contains("ci failed at 2 steps"), "{}", all.text());
    assert!(all.text().contains("  fmt: ") && all.text().contains("  coverage: "), "{}", all.text());
}

#[test]
fn the_workflow_check_fails_after_a_hand_edit() {
    let scratch = Scratch::new("workflows");
    assert!(scratch.xtask(&["workflows"]).succeeded());
    assert!(scratch.xtask(&["workflows", "--check"]).succeeded());
    let edited = scratch.read(".github/workflows/ci.yml").replace("timeout-minutes: 60", "timeout-minutes: 90");
    scratch.write(".github/workflows/ci.yml", &edited);
    let run = scratch.xtask(&["workflows", "--check"]);
    assert!(!run.succeeded());
    assert!(
        run.text().contains("stale or was edited by hand") && run.text().contains("cargo xtask workflows"),
        "{}",
        run.text()
    );
    let ci = scratch.xtask(&["ci", "--only", "workflows"]);
    assert!(ci.text().contains("ci failed at step `workflows`"), "{}", ci.text());
}

#[test]
fn help_lists_every_step_with_one_line_each() {
    let scratch = Scratch::new("help");
    for args in [&["--help"][..], &["ci", "--help"][..]] {
        let help = scratch.xtask(args).text();
        for step in ["fmt", "clippy", "test", "restore-drill", "migrations", "coverage", "audit", "workflows", "build"]
        {
            assert!(
                help.lines().any(|line| line.trim_start().starts_with(step)),
                "{step} missing from {args:?}:\n{help}"
            );
        }
    }
}

#[test]
fn deploy_refuses_without_a_target() {
    let scratch = Scratch::new("deploy");
    let run = scratch.xtask(&["deploy"]);
    assert!(!run.succeeded());
    assert!(run.text().contains("no deploy target is configured"), "{}", run.text());
}

#[test]
fn an_unreadable_advisory_database_fails_the_audit_loudly() {
    let scratch = Scratch::new("audit");
    let run = Run(scratch
        .command(&["ci", "--only", "audit"])
        .env("ADVISORY_DB", scratch.dir.join("no-such-bundle"))
        .output()
        .expect("xtask runs"));
    assert!(!run.succeeded());
    assert!(run.text().contains("ADVISORY_DB=") && run.text().contains("does not exist"), "{}", run.text());
}

/// A one-advisory RustSec database as a git repository, for auditing without network access.
fn advisory_db(dir: &Path) {
    let advisory = dir.join("crates/left-pad-rs/RUSTSEC-2099-0001.md");
    std::fs::create_dir_all(advisory.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &advisory,
        "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"left-pad-rs\"\ndate = \"2099-01-01\"\n\n[versions]\npatched = []\n```\n\n# An advisory for a crate nobody uses\n\nIt exists so the database is not empty.\n",
    )
    .expect("advisory");
    commit_all(dir);
}

/// Makes `dir` a git repository with one commit holding everything in it.
fn commit_all(dir: &Path) {
    for args in [
        &["init", "--quiet", "--initial-branch=main"][..],
        &["add", "."],
        &["-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "--quiet", "-m", "snapshot"],
    ] {
        assert!(Command::new("git").args(args).current_dir(dir).status().expect("git").success());
    }
}

#[test]
fn the_audit_reads_an_offline_advisory_database() {
    let scratch = Scratch::new("audit-offline");
    scratch.write(
        "deny.toml",
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deny.toml")).expect("deny.toml"),
    );
    let db = scratch.dir.join("advisory-db");
    advisory_db(&db);
    // Its own CARGO_HOME, so the database lands in the scratch directory, not the user's.
    let run = Run(scratch
        .command(&["ci", "--only", "audit"])
        .env("ADVISORY_DB", &db)
        .env("CARGO_HOME", scratch.dir.join("cargo-home"))
        .output()
        .expect("xtask runs"));
    assert!(run.succeeded(), "{}", run.text());
    assert!(run.text().contains("advisories: OFFLINE") && run.text().contains("1 advisories"), "{}", run.text());
    assert!(scratch.dir.join("cargo-home/advisory-dbs/advisory-db-3157b0e258782691/crates").is_dir());
}

#[test]
fn a_directory_that_is_not_an_advisory_database_is_refused() {
    let scratch = Scratch::new("audit-bogus");
    let bogus = scratch.dir.join("bogus");
    std::fs::create_dir_all(&bogus).expect("mkdir");
    std::fs::write(bogus.join("README"), "not a database").expect("write");
    commit_all(&bogus);
    let run = Run(scratch
        .command(&["ci", "--only", "audit"])
        .env("ADVISORY_DB", &bogus)
        .env("CARGO_HOME", scratch.dir.join("cargo-home"))
        .output()
        .expect("xtask runs"));
    assert!(!run.succeeded());
    assert!(run.text().contains("not the RustSec advisory-db"), "{}", run.text());
}
