//! The tools the pipeline runs, pinned in tables: cargo tools, and programs from the distribution's
//! packages; `cargo xtask setup` installs the missing ones.

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

/// Where a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The distribution (Debian), through `apt-get`.
    Debian,
    /// PyPI, through `pip`.
    PyPi,
}

/// A program from a package, at the version the pipeline is tested with.
#[derive(Debug)]
pub(crate) struct Package {
    pub(crate) program: &'static str,
    pub(crate) package: &'static str,
    pub(crate) version: &'static str,
    pub(crate) source: Source,
}

/// `promtool check` / `promtool test rules` for deploy/monitoring.
pub(crate) const PROMETHEUS: Package =
    Package { program: "promtool", package: "prometheus", version: "2.42.0+ds-5+deb12u1", source: Source::Debian };
/// Encrypts off-site backups for the operator's key (the reference implementation).
pub(crate) const AGE: Package =
    Package { program: "age", package: "age", version: "1.1.1-1+b3", source: Source::Debian };
/// An S3-compatible server for the off-site backup tests.
pub(crate) const MOTO: Package =
    Package { program: "moto_server", package: "moto[server]", version: "5.1.18", source: Source::PyPi };

/// Every package the pipeline, its tests or the operations commands use.
pub(crate) const PACKAGES: &[&Package] = &[&PROMETHEUS, &AGE, &MOTO];

impl Package {
    fn installed(&self) -> bool {
        which::which(self.program).is_ok()
    }

    /// Fails with the install command when the program is missing.
    pub(crate) fn require(&self) -> Result<()> {
        if !self.installed() {
            bail!("`{}` is not installed: run `cargo xtask setup` (or `{}`)", self.program, self.install_line());
        }
        Ok(())
    }

    fn pinned(&self) -> String {
        match self.source {
            Source::Debian => format!("{}={}", self.package, self.version),
            Source::PyPi => format!("{}=={}", self.package, self.version),
        }
    }

    fn install_line(&self) -> String {
        match self.source {
            Source::Debian => format!("apt-get install {}", self.pinned()),
            Source::PyPi => format!("python3 -m pip install '{}'", self.pinned()),
        }
    }
}

/// Installs the missing packages: `apt-get` (through `sudo -n` unless we are root), then `pip`.
fn install_packages(sh: &Shell) -> Result<()> {
    for package in PACKAGES.iter().filter(|package| package.installed()) {
        println!("{}: {} found", package.package, package.program);
    }
    let missing = |source: Source| -> Vec<String> {
        PACKAGES
            .iter()
            .filter(|package| package.source == source && !package.installed())
            .map(|package| package.pinned())
            .collect()
    };
    let python = missing(Source::PyPi);
    if !python.is_empty() {
        cmd!(sh, "python3 -m pip install --quiet --disable-pip-version-check {python...}").run()?;
    }
    let missing = missing(Source::Debian);
    if missing.is_empty() {
        return Ok(());
    }
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    let (program, sudo): (&str, &[&str]) = if root { ("apt-get", &[]) } else { ("sudo", &["-n", "apt-get"]) };
    cmd!(sh, "{program} {sudo...} update -qq").run()?;
    cmd!(sh, "{program} {sudo...} install -y -qq --no-install-recommends {missing...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
    Ok(())
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
    install_packages(&sh)
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
        assert!(PACKAGES.iter().all(|package| package.version.contains('.') && !package.program.is_empty()));
    }
}
