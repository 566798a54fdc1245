//! The cargo tools the pipeline runs, pinned in one table; `cargo xtask setup` installs the missing ones.

use anyhow::{Result, bail};
use xshell::{Shell, cmd};

use crate::project;
use crate::steps::STEPS;

#[derive(Debug)]
pub(crate) struct Tool {
    /// The cargo subcommand, e.g. `llvm-cov` for `cargo llvm-cov`.
    pub(crate) subcommand: &'static str,
    pub(crate) krate: &'static str,
    pub(crate) version: &'static str,
}

pub(crate) const LLVM_COV: Tool = Tool { subcommand: "llvm-cov", krate: "cargo-llvm-cov", version: "0.9.1" };
pub(crate) const DENY: Tool = Tool { subcommand: "deny", krate: "cargo-deny", version: "0.20.2" };

impl Tool {
    fn installed_version(&self) -> Option<String> {
        let output = std::process::Command::new(project::cargo()).args([self.subcommand, "--version"]).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Fails with the install command when the tool is missing.
    pub(crate) fn require(&self) -> Result<()> {
        if self.installed_version().is_none() {
            bail!(
                "`cargo {}` is not installed: run `cargo xtask setup` (or `cargo install --locked {}@{}`)",
                self.subcommand,
                self.krate,
                self.version
            );
        }
        Ok(())
    }
}

/// nextest is optional: the tests run under it when it is there, under libtest otherwise.
pub(crate) fn nextest_installed() -> bool {
    std::process::Command::new(project::cargo())
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Every tool some step needs, once each, in step order.
pub(crate) fn required() -> Vec<&'static Tool> {
    let mut tools: Vec<&'static Tool> = Vec::new();
    for tool in STEPS.iter().flat_map(|step| step.tools.iter().copied()) {
        if !tools.iter().any(|known| known.krate == tool.krate) {
            tools.push(tool);
        }
    }
    tools
}

/// `cargo xtask setup`: installs what is missing, leaves what is there.
pub(crate) fn setup() -> Result<()> {
    let sh = Shell::new()?;
    let cargo = project::cargo();
    for tool in required() {
        match tool.installed_version() {
            Some(found) if found.contains(tool.version) => println!("{}: {found} (installed)", tool.krate),
            Some(found) => println!("{}: {found} installed; the pipeline is tested with {}", tool.krate, tool.version),
            None => {
                let spec = format!("{}@{}", tool.krate, tool.version);
                cmd!(sh, "{cargo} install --locked {spec}").run()?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_tools_are_deduplicated_and_pinned() {
        let tools = required();
        assert!(tools.iter().any(|tool| tool.krate == "cargo-llvm-cov"));
        assert!(tools.iter().any(|tool| tool.krate == "cargo-deny"));
        let mut names: Vec<_> = tools.iter().map(|tool| tool.krate).collect();
        names.dedup();
        assert_eq!(names.len(), tools.len());
        assert!(tools.iter().all(|tool| tool.version.split('.').count() == 3));
    }
}
