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
/// `cargo xtask fuzz` (run on the nightly toolchain).
pub(crate) const CARGO_FUZZ: Tool = Tool { subcommand: "fuzz", krate: "cargo-fuzz", version: "0.13.2" };

/// A program from the distribution (Debian's package names), with the upstream version it was tested with.
#[derive(Debug)]
pub(crate) struct Package {
    pub(crate) program: &'static str,
    pub(crate) debian: &'static str,
    pub(crate) version: &'static str,
}

/// `cargo xtask bench`'s load generator.
pub(crate) const WRK: Package = Package { program: "wrk", debian: "wrk", version: "4.1.0" };

impl Package {
    /// Installs the package with apt-get (through `sudo -n` unless root) when the program is missing.
    pub(crate) fn ensure(&self) -> Result<()> {
        if which::which(self.program).is_err() {
            let root = std::process::Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
            let mut apt = duct::cmd("apt-get", ["install", "-y", "-qq", self.debian]);
            if !root {
                apt = duct::cmd("sudo", ["-n", "apt-get", "install", "-y", "-qq", self.debian]);
            }
            println!("{}: not installed; installing the Debian package {}", self.program, self.debian);
            apt.env("DEBIAN_FRONTEND", "noninteractive").run().map_err(|error| {
                anyhow::anyhow!(
                    "`{}` is missing and could not be installed ({error}): install {} {} (`apt-get install {}`)",
                    self.program,
                    self.debian,
                    self.version,
                    self.debian
                )
            })?;
        }
        Ok(())
    }
}

impl Tool {
    fn installed_version(&self) -> Option<String> {
        let output = std::process::Command::new(project::cargo()).args([self.subcommand, "--version"]).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Installs the pinned version when the tool is missing.
    pub(crate) fn ensure(&self) -> Result<()> {
        if self.installed_version().is_none() {
            let spec = format!("{}@{}", self.krate, self.version);
            duct::cmd(project::cargo(), ["install", "--locked", spec.as_str()]).run()?;
        }
        Ok(())
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
