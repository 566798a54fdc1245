//! The tools the pipeline runs, pinned in one table; `cargo xtask setup` installs the missing ones.

use anyhow::{Result, bail};
use xshell::{Shell, cmd};

use crate::project;
use crate::steps::STEPS;

/// Where a tool comes from, which says how it is installed and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A crate: `cargo install --locked package@version`, run as `cargo <command>`.
    Cargo,
    /// A PyPI package (a binary in a wheel): `python3 -m pip install package==version`, run as `<command>`.
    Pip,
}

#[derive(Debug)]
pub(crate) struct Tool {
    pub(crate) kind: Kind,
    /// The cargo subcommand (`llvm-cov` for `cargo llvm-cov`), or the program a pip package installs.
    pub(crate) command: &'static str,
    pub(crate) package: &'static str,
    pub(crate) version: &'static str,
}

pub(crate) const LLVM_COV: Tool =
    Tool { kind: Kind::Cargo, command: "llvm-cov", package: "cargo-llvm-cov", version: "0.9.1" };
pub(crate) const DENY: Tool = Tool { kind: Kind::Cargo, command: "deny", package: "cargo-deny", version: "0.20.2" };
pub(crate) const SQUAWK: Tool = Tool { kind: Kind::Pip, command: "squawk", package: "squawk-cli", version: "2.70.0" };

impl Tool {
    fn installed_version(&self) -> Option<String> {
        let mut command = match self.kind {
            Kind::Cargo => {
                let mut cargo = std::process::Command::new(project::cargo());
                cargo.arg(self.command);
                cargo
            }
            Kind::Pip => std::process::Command::new(self.command),
        };
        let output = command.arg("--version").output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// How to run it, for messages.
    fn invocation(&self) -> String {
        match self.kind {
            Kind::Cargo => format!("cargo {}", self.command),
            Kind::Pip => self.command.to_owned(),
        }
    }

    /// The command that installs the pinned version.
    fn install_command(&self) -> String {
        match self.kind {
            Kind::Cargo => format!("cargo install --locked {}@{}", self.package, self.version),
            Kind::Pip => format!("python3 -m pip install {}=={}", self.package, self.version),
        }
    }

    /// Fails with the install command when the tool is missing.
    pub(crate) fn require(&self) -> Result<()> {
        if self.installed_version().is_none() {
            bail!(
                "`{}` is not installed: run `cargo xtask setup` (or `{}`)",
                self.invocation(),
                self.install_command()
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
        if !tools.iter().any(|known| known.package == tool.package) {
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
            Some(found) if found.contains(tool.version) => println!("{}: {found} (installed)", tool.package),
            Some(found) => {
                println!("{}: {found} installed; the pipeline is tested with {}", tool.package, tool.version);
            }
            None => match tool.kind {
                Kind::Cargo => {
                    let spec = format!("{}@{}", tool.package, tool.version);
                    cmd!(sh, "{cargo} install --locked {spec}").run()?;
                }
                Kind::Pip => {
                    let spec = format!("{}=={}", tool.package, tool.version);
                    cmd!(sh, "python3 -m pip install --quiet --disable-pip-version-check {spec}").run()?;
                }
            },
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
        assert!(tools.iter().any(|tool| tool.package == "cargo-llvm-cov"));
        assert!(tools.iter().any(|tool| tool.package == "cargo-deny"));
        assert!(tools.iter().any(|tool| tool.package == "squawk-cli" && tool.kind == Kind::Pip));
        let mut names: Vec<_> = tools.iter().map(|tool| tool.package).collect();
        names.dedup();
        assert_eq!(names.len(), tools.len());
        assert!(tools.iter().all(|tool| tool.version.split('.').count() == 3));
    }
}
