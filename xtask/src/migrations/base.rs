//! The base the migrations are compared with: which revision it is, which migrations differ from it, and
//! its release built from a git worktree under `target/` with a target directory of its own.

use std::process::Command;

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::{cleanup, project};

/// Where the service's migrations live, relative to the workspace root.
pub(crate) const MIGRATIONS: &str = "app/migrations";
/// `--base` when it is not given: the pull request's base commit, set by the generated workflow.
pub(crate) const BASE_VARIABLE: &str = "MIGRATIONS_BASE";

/// The revision whose release must keep working on the new schema.
#[derive(Debug)]
pub(crate) struct Base {
    pub(crate) sha: String,
    /// How it was chosen, for the messages (`--base main`, `the merge-base with main`, …).
    pub(crate) why: String,
}

impl Base {
    pub(crate) fn short(&self) -> &str {
        &self.sha[..self.sha.len().min(10)]
    }
}

/// How a migration file differs from the base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// New since the base: linted and applied by the round trip.
    Added(Utf8PathBuf),
    /// The base has it too: databases have applied it already, so it must never change.
    Modified(Utf8PathBuf),
    Deleted(Utf8PathBuf),
}

/// `git` in the workspace; its stdout, or an error carrying its stderr.
fn git(args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(project::root())
        .output()
        .context("running git (the migrations step compares with a base revision): install git")?;
    if !output.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn commit_of(rev: &str) -> Option<String> {
    git(&["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")]).ok().map(|sha| sha.trim().to_owned())
}

/// `--base REF`, else `MIGRATIONS_BASE`, else the merge-base with `main` (`HEAD~1` on `main` itself).
/// `None` when there is nothing to compare with (the first commit of `main`).
pub(crate) fn resolve(explicit: Option<&str>) -> Result<Option<Base>> {
    git(&["rev-parse", "--git-dir"]).map_err(|_| {
        anyhow::anyhow!(
            "{} is not a git checkout: the migrations step compares with a base revision (fix: run it in a clone)",
            project::root()
        )
    })?;
    let from_env = std::env::var(BASE_VARIABLE).ok().filter(|value| !value.trim().is_empty());
    let named = explicit.map(|rev| (rev.to_owned(), format!("--base {rev}")));
    if let Some((rev, why)) = named.or_else(|| from_env.map(|rev| (rev.clone(), format!("{BASE_VARIABLE}={rev}")))) {
        let sha = commit_of(&rev).with_context(|| {
            format!(
                "the base `{rev}` ({why}) is not a commit of this repository (fix: name a branch, tag or commit \
                 that exists; in a shallow clone fetch the history first: `git fetch --unshallow`)"
            )
        })?;
        return Ok(Some(Base { sha, why }));
    }
    let branch = git(&["rev-parse", "--abbrev-ref", "HEAD"])?.trim().to_owned();
    if branch == "main" {
        return Ok(commit_of("HEAD~1").map(|sha| Base { sha, why: "HEAD~1 (on main)".to_owned() }));
    }
    for main in ["main", "origin/main"] {
        if commit_of(main).is_some() {
            let sha = git(&["merge-base", "HEAD", main])
                .with_context(|| format!("no merge-base of HEAD and {main} (fix: pass --base REF)"))?;
            return Ok(Some(Base { sha: sha.trim().to_owned(), why: format!("the merge-base with {main}") }));
        }
    }
    bail!("there is no `main` branch to compare the migrations with (fix: pass --base REF, e.g. --base origin/master)")
}

/// The migration files that differ between the base and the working tree (untracked new files too).
pub(crate) fn changes(base: &Base) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    let diff = git(&["diff", "--no-renames", "--name-status", "-z", &base.sha, "--", MIGRATIONS])?;
    let mut fields = diff.split('\0').filter(|field| !field.is_empty());
    while let (Some(status), Some(path)) = (fields.next(), fields.next()) {
        let path = Utf8PathBuf::from(path);
        changes.push(match status {
            "A" => Change::Added(path),
            "D" => Change::Deleted(path),
            _ => Change::Modified(path),
        });
    }
    let untracked = git(&["ls-files", "-z", "--others", "--exclude-standard", "--", MIGRATIONS])?;
    changes.extend(untracked.split('\0').filter(|path| !path.is_empty()).map(|path| Change::Added(path.into())));
    changes.retain(|change| {
        let (Change::Added(path) | Change::Modified(path) | Change::Deleted(path)) = change;
        path.extension() == Some("sql")
    });
    changes.sort_by(|a, b| path_of(a).cmp(path_of(b)));
    Ok(changes)
}

fn path_of(change: &Change) -> &Utf8Path {
    let (Change::Added(path) | Change::Modified(path) | Change::Deleted(path)) = change;
    path
}

/// Where the base is checked out and built. The target directory is the base's own and kept between
/// runs: building the base into `target/` would overwrite this checkout's `target/debug/app` without
/// cargo noticing, so the other steps would run the base's binary.
fn dir() -> Utf8PathBuf {
    project::target_dir().join("migrations-base")
}

/// The base's `app`, built in a worktree that is removed again on every way out.
pub(crate) fn build(base: &Base, cargo: &str) -> Result<Utf8PathBuf> {
    let dir = dir();
    let (checkout, target) = (dir.join("checkout"), dir.join("target"));
    // The last base built, and its commit: a base that has not moved is not built again.
    let (kept, kept_commit) = (dir.join("app"), dir.join("app.commit"));
    if kept.is_file() && std::fs::read_to_string(&kept_commit).is_ok_and(|built| built.trim() == base.sha) {
        println!("migrations: the base's app ({}, {}) is built already", base.short(), base.why);
        return Ok(kept);
    }
    // A run killed outright leaves its worktree behind.
    remove_worktree(&checkout);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    let _worktree = cleanup::register({
        let checkout = checkout.clone();
        move || remove_worktree(&checkout)
    });
    git(&["worktree", "add", "--detach", "--force", checkout.as_str(), &base.sha])
        .with_context(|| format!("checking out the base {} into {checkout}", base.short()))?;
    seed(&target)?;
    println!("migrations: building the base's app ({}, {}) in {checkout}", base.short(), base.why);
    let status = Command::new(cargo)
        .args(["build", "--locked", "--package", "app"])
        .current_dir(&checkout)
        .env("CARGO_TARGET_DIR", &target)
        // A base is built once: an incremental cache would only take disk space.
        .env("CARGO_INCREMENTAL", "0")
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!(
            "the base {} ({}) does not build: cargo's errors are above (fix: pass --base REF naming a release that builds)",
            base.short(),
            base.why
        );
    }
    // The commit is written last, so an interrupted copy is never taken for that commit's binary.
    let _ = std::fs::remove_file(&kept_commit);
    let partial = dir.join("app.partial");
    std::fs::copy(target.join("debug/app"), &partial)
        .with_context(|| format!("copying the base's app to {partial}"))?;
    std::fs::rename(&partial, &kept).with_context(|| format!("renaming {partial}"))?;
    std::fs::write(&kept_commit, &base.sha).with_context(|| format!("writing {kept_commit}"))?;
    Ok(kept)
}

fn remove_worktree(checkout: &Utf8Path) {
    if checkout.exists() {
        let _ = git(&["worktree", "remove", "--force", checkout.as_str()]);
        let _ = std::fs::remove_dir_all(checkout);
    }
    let _ = git(&["worktree", "prune"]);
}

/// A first build into an empty target directory starts from a copy of the dependencies compiled for
/// the xtask's own build, so that only the workspace's crates compile. Left out: the workspace's crates
/// (what differs) and the executables among the dependencies (test binaries, which no build reuses).
pub(crate) fn seed(target: &Utf8Path) -> Result<()> {
    let exe = std::env::current_exe().context("locating the xtask's own build")?;
    let Some(own) = exe.parent().and_then(|dir| Utf8Path::from_path(dir)) else {
        return Ok(());
    };
    let seeded = target.join("debug");
    if seeded.exists() || !own.join("deps").is_dir() {
        return Ok(());
    }
    for part in ["deps", "build", ".fingerprint"] {
        let (from, to) = (own.join(part), seeded.join(part));
        std::fs::create_dir_all(&to).with_context(|| format!("creating {to}"))?;
        let Ok(entries) = from.read_dir_utf8() else {
            continue;
        };
        let wanted: Vec<Utf8PathBuf> = entries
            .flatten()
            .filter(|entry| worth_seeding(part, entry.file_name()))
            .map(|entry| entry.path().to_owned())
            .collect();
        // `cp -a` keeps the modification times cargo compares; in batches, to stay under the argument limit.
        for batch in wanted.chunks(512) {
            let status = Command::new("cp")
                .args(["-a", "-t", to.as_str()])
                .args(batch.iter().map(|path| path.as_str()))
                .status()
                .context("running cp")?;
            if !status.success() {
                bail!("copying {from} to {to} failed");
            }
        }
    }
    Ok(())
}

fn worth_seeding(part: &str, name: &str) -> bool {
    let compiled_library = name.starts_with("lib") || name.ends_with(".d");
    !is_workspace_artifact(name) && (part != "deps" || compiled_library)
}

/// `app-…`, `libapp-…`, `xtask-…`: what cargo builds for the workspace's own crates.
fn is_workspace_artifact(name: &str) -> bool {
    let name = name.strip_prefix("lib").unwrap_or(name);
    ["app", "xtask"]
        .iter()
        .any(|member| name.strip_prefix(member).is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '.'])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_workspace_crates_are_left_out_of_a_seed() {
        for name in ["app-0123abcd", "libapp-0123abcd.rlib", "app", "xtask-99", "libxtask-99.rmeta", "app.d"] {
            assert!(is_workspace_artifact(name), "{name}");
        }
        for name in ["approx-1", "libappendix-2.rlib", "axum-3", "libsqlx-4.rlib", "xtasks-5"] {
            assert!(!is_workspace_artifact(name), "{name}");
        }
        // Test binaries are not worth a copy; libraries, their dep-info and build scripts' outputs are.
        assert!(!worth_seeding("deps", "deploy_host-0123abcd"));
        assert!(worth_seeding("deps", "libsqlx-4.rlib") && worth_seeding("deps", "sqlx-4.d"));
        assert!(worth_seeding("build", "ring-5") && !worth_seeding("build", "app-6"));
    }
}
