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
    /// A distribution package: `apt-get install package` (through `sudo -n` unless root), run as `<command>`.
    /// The version is the one tested (Debian bookworm's); apt versions differ between distributions
    /// (GitHub's Ubuntu runners), so the distribution's own is installed and a different one is reported.
    Apt,
}

#[derive(Debug)]
pub(crate) struct Tool {
    pub(crate) kind: Kind,
    /// The cargo subcommand (`llvm-cov` for `cargo llvm-cov`), or the program a package installs.
    pub(crate) command: &'static str,
    pub(crate) package: &'static str,
    pub(crate) version: &'static str,
}

pub(crate) const LLVM_COV: Tool =
    Tool { kind: Kind::Cargo, command: "llvm-cov", package: "cargo-llvm-cov", version: "0.9.1" };
pub(crate) const DENY: Tool = Tool { kind: Kind::Cargo, command: "deny", package: "cargo-deny", version: "0.20.2" };
pub(crate) const SQUAWK: Tool = Tool { kind: Kind::Pip, command: "squawk", package: "squawk-cli", version: "2.70.0" };
/// `promtool check` and `promtool test rules` for deploy/monitoring.
pub(crate) const PROMETHEUS: Tool =
    Tool { kind: Kind::Apt, command: "promtool", package: "prometheus", version: "2.42.0+ds-5+deb12u1" };
/// Encrypts off-site backups for the operator's key (the reference implementation); the backup tests use it.
pub(crate) const AGE: Tool = Tool { kind: Kind::Apt, command: "age", package: "age", version: "1.1.1-1+b3" };
/// An S3-compatible server the off-site backup tests start.
pub(crate) const MOTO: Tool =
    Tool { kind: Kind::Pip, command: "moto_server", package: "moto[server]", version: "5.1.18" };

impl Tool {
    fn installed_version(&self) -> Option<String> {
        let mut command = match self.kind {
            Kind::Cargo => {
                let mut cargo = std::process::Command::new(project::cargo());
                cargo.arg(self.command);
                cargo
            }
            Kind::Pip | Kind::Apt => std::process::Command::new(self.command),
        };
        let output = command.arg("--version").output().ok()?;
        if output.status.success() {
            return Some(String::from_utf8_lossy(&output.stdout).trim().to_owned());
        }
        // Some programs (moto_server) have no --version: being on PATH is all that can be told.
        (self.kind != Kind::Cargo && which::which(self.command).is_ok()).then(|| "found, version unknown".to_owned())
    }

    /// How to run it, for messages.
    fn invocation(&self) -> String {
        match self.kind {
            Kind::Cargo => format!("cargo {}", self.command),
            Kind::Pip | Kind::Apt => self.command.to_owned(),
        }
    }

    /// The command that installs the pinned version.
    fn install_command(&self) -> String {
        match self.kind {
            Kind::Cargo => format!("cargo install --locked {}@{}", self.package, self.version),
            Kind::Pip => format!("python3 -m pip install '{}=={}'", self.package, self.version),
            Kind::Apt => format!("apt-get install {}", self.package),
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
    let mut apt = Vec::new();
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
                    // A distribution's own Python refuses packages (PEP 668); these are self-contained
                    // binaries in wheels, which break nothing it manages.
                    cmd!(sh, "python3 -m pip install --quiet --disable-pip-version-check {spec}")
                        .env("PIP_BREAK_SYSTEM_PACKAGES", "1")
                        .run()?;
                }
                Kind::Apt => apt.push(tool.package),
            },
        }
    }
    if apt.is_empty() {
        return Ok(());
    }
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    let (program, sudo): (&str, &[&str]) = if root { ("apt-get", &[]) } else { ("sudo", &["-n", "apt-get"]) };
    cmd!(sh, "{program} {sudo...} update -qq").run()?;
    cmd!(sh, "{program} {sudo...} install -y -qq --no-install-recommends {apt...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
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
        assert!(tools.iter().any(|tool| tool.package == "prometheus" && tool.kind == Kind::Apt));
    }
}
