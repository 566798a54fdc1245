//! Before anything compiles: every prerequisite of the command in one table, found or missing. Missing
//! pinned tools are installed (unless `--no-install` or `XTASK_NO_INSTALL=1`); missing system programs
//! are installed where the xtask may (root with a package manager, CI with passwordless sudo, or
//! `--install-system`); otherwise it stops at once with the one command that installs them all.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Args;
use xshell::{Shell, cmd};

use crate::report::Fix;
use crate::steps::STEPS;
use crate::tools::{self, Packages, Source, Status, Tool};
use crate::{programs, project};

#[derive(Args, Debug, Default, Clone, Copy)]
pub(crate) struct InstallArgs {
    /// Install nothing: stop with the install command when something is missing (also XTASK_NO_INSTALL=1).
    #[arg(long)]
    pub(crate) no_install: bool,
    /// Install missing system packages, through sudo when not root (done anyway as root, and in CI with
    /// passwordless sudo).
    #[arg(long, conflicts_with = "no_install")]
    pub(crate) install_system: bool,
}

impl InstallArgs {
    fn installs(self) -> bool {
        !self.no_install && !std::env::var("XTASK_NO_INSTALL").is_ok_and(|value| !matches!(value.as_str(), "" | "0"))
    }
}

/// The package manager of this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Platform {
    Apt,
    Dnf,
    Brew,
}

impl Platform {
    pub(crate) fn detect() -> Option<Self> {
        [(Self::Apt, "apt-get"), (Self::Dnf, "dnf"), (Self::Brew, "brew")]
            .into_iter()
            .find(|(_, program)| programs::find(program).is_some())
            .map(|(platform, _)| platform)
    }

    fn package(self, packages: Packages) -> Option<&'static str> {
        match self {
            Self::Apt => packages.apt,
            Self::Dnf => packages.dnf,
            Self::Brew => packages.brew,
        }
    }

    /// The packages to install, each once, in table order.
    fn packages(self, wanted: &[Packages]) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for name in wanted.iter().filter_map(|packages| self.package(*packages)) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// The commands that install `packages`, each an argv; `sudo` prefixed where needed.
    fn commands(self, packages: &[&str], sudo: Option<&[&str]>) -> Vec<Vec<String>> {
        let prefix: Vec<String> = sudo.unwrap_or_default().iter().map(|word| (*word).to_owned()).collect();
        let with = |words: &[&str]| -> Vec<String> {
            let mut argv = prefix.clone();
            argv.extend(words.iter().map(|word| (*word).to_owned()));
            argv
        };
        let mut install = match self {
            Self::Apt => with(&["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q"]),
            Self::Dnf => with(&["dnf", "install", "-y"]),
            Self::Brew => vec!["brew".to_owned(), "install".to_owned()],
        };
        install.extend(packages.iter().map(|name| (*name).to_owned()));
        match self {
            Self::Apt => vec![with(&["apt-get", "update", "-q"]), install],
            Self::Dnf | Self::Brew => vec![install],
        }
    }

    /// One line for a person to type: `sudo apt-get update && sudo apt-get install -y …`.
    pub(crate) fn install_line(self, wanted: &[Packages]) -> String {
        let packages = self.packages(wanted);
        let sudo: &[&str] = if tools::is_root() { &[] } else { &["sudo"] };
        let lines: Vec<String> = self
            .commands(&packages, Some(sudo))
            .iter()
            .map(|argv| {
                argv.iter()
                    .filter(|word| !word.starts_with("DEBIAN_FRONTEND") && *word != "env")
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        lines.join(" && ")
    }
}

/// How missing system packages may be installed here, if at all: the platform and the sudo prefix.
fn system_installer(args: InstallArgs) -> Option<(Platform, Vec<&'static str>)> {
    if !args.installs() {
        return None;
    }
    let platform = Platform::detect()?;
    if platform == Platform::Brew {
        return args.install_system.then_some((platform, Vec::new()));
    }
    if tools::is_root() {
        return Some((platform, Vec::new()));
    }
    let passwordless = programs::find("sudo").is_some()
        && std::process::Command::new("sudo").args(["-n", "true"]).output().is_ok_and(|out| out.status.success());
    let in_ci = std::env::var("CI").is_ok_and(|value| value == "true");
    match (args.install_system, passwordless) {
        (_, true) if args.install_system || in_ci => Some((platform, vec!["sudo", "-n"])),
        (true, false) => Some((platform, vec!["sudo"])),
        _ => None,
    }
}

/// `cargo xtask setup`: every prerequisite of every step, system packages included.
pub(crate) fn setup() -> Result<()> {
    run(&unique(STEPS.iter().flat_map(|step| step.tools)), InstallArgs { no_install: false, install_system: true })
}

/// Every tool `needs` names, once each, in order.
pub(crate) fn unique<'a>(needs: impl IntoIterator<Item = &'a &'static Tool>) -> Vec<&'static Tool> {
    let mut tools: Vec<&'static Tool> = Vec::new();
    for tool in needs {
        if !tools.iter().any(|known| known.name == tool.name) {
            tools.push(tool);
        }
    }
    tools
}

/// Finds every tool of `needs`, prints the table, installs what is missing where allowed, and fails with
/// the one install command for whatever is still missing.
pub(crate) fn run(needs: &[&'static Tool], args: InstallArgs) -> Result<()> {
    if needs.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let rows: Vec<(&Tool, Status)> = needs.iter().map(|tool| (*tool, tool.status())).collect();
    print!("{}", table(&rows));
    let missing: Vec<&'static Tool> =
        rows.iter().filter(|(_, status)| matches!(status, Status::Missing(_))).map(|(tool, _)| *tool).collect();
    if missing.is_empty() {
        println!("preflight: all {} found ({:.1} s)", rows.len(), started.elapsed().as_secs_f64());
        return Ok(());
    }
    let plan = Plan::new(&missing);
    let installer = if plan.system.is_empty() { None } else { system_installer(args) };
    // Stop before any install when some of it could not be done anyway.
    let refusal = if !args.installs() {
        Some("installing is off: --no-install or XTASK_NO_INSTALL")
    } else if !plan.system.is_empty() && installer.is_none() {
        Some("system packages are installed only as root, in CI with passwordless sudo, or with --install-system")
    } else {
        None
    };
    if let Some(why) = refusal {
        return Err(Fix::new(
            format!("missing: {} ({why})", names(&missing)),
            format!("install them with `{}`", install_line(&missing)),
        )
        .into());
    }
    install(&plan, installer)?;
    let still: Vec<&Tool> =
        missing.iter().copied().filter(|tool| matches!(tool.status(), Status::Missing(_))).collect();
    if still.is_empty() {
        println!("preflight: {} installed ({:.1} s)", names(&missing), started.elapsed().as_secs_f64());
        return Ok(());
    }
    Err(Fix::new(format!("missing: {}", names(&still)), format!("install them with `{}`", install_line(&still))).into())
}

fn names(tools: &[&Tool]) -> String {
    tools.iter().map(|tool| tool.name).collect::<Vec<_>>().join(", ")
}

/// What is missing, by how it is installed.
#[derive(Debug, Default)]
struct Plan {
    /// `NAME@VERSION` for `cargo install --locked`.
    cargo: Vec<String>,
    /// The tool's name and `PACKAGE==VERSION` for pip.
    pypi: Vec<(&'static str, String)>,
    system: Vec<Packages>,
}

impl Plan {
    fn new(missing: &[&'static Tool]) -> Self {
        let mut plan = Self::default();
        for tool in missing {
            match tool.source {
                Source::Cargo { version } => plan.cargo.push(format!("{}@{version}", tool.name)),
                Source::Pypi { package, version, .. } => plan.pypi.push((tool.name, format!("{package}=={version}"))),
                Source::System { packages, .. } => plan.system.push(packages),
            }
        }
        plan
    }
}

/// Installs what `plan` lists; system packages with `installer` (the platform and a sudo prefix).
fn install(plan: &Plan, installer: Option<(Platform, Vec<&str>)>) -> Result<()> {
    let sh = Shell::new()?;
    let cargo = project::cargo();
    for spec in &plan.cargo {
        println!("preflight: installing {spec}");
        cmd!(sh, "{cargo} install --locked {spec}").run().with_context(|| format!("installing {spec}"))?;
    }
    if !plan.pypi.is_empty() {
        let python = programs::find("python3").ok_or_else(|| {
            Fix::new("python3 is not installed (it installs the PyPI tools)", "install python3 and python3-pip")
        })?;
        for (name, spec) in &plan.pypi {
            let dir = tools::pypi_dir(name);
            println!("preflight: installing {spec} into {dir}");
            cmd!(sh, "{python} -m pip install --quiet --disable-pip-version-check --upgrade --target {dir} {spec}")
                .run()
                .with_context(|| format!("installing {spec} (needs pip: python3-pip)"))?;
        }
    }
    let Some((platform, sudo)) = installer else {
        return Ok(());
    };
    let packages = platform.packages(&plan.system);
    println!("preflight: installing system packages: {}", packages.join(" "));
    for argv in platform.commands(&packages, Some(&sudo)) {
        let (program, rest) = argv.split_first().context("an install command")?;
        cmd!(sh, "{program} {rest...}").run().with_context(|| format!("installing {}", packages.join(" ")))?;
    }
    Ok(())
}

/// The one command that installs every tool of `missing`.
fn install_line(missing: &[&'static Tool]) -> String {
    let plan = Plan::new(missing);
    let mut parts = Vec::new();
    if !plan.system.is_empty() {
        parts.push(Platform::detect().map_or_else(
            || format!("install the packages bringing {}", names(missing)),
            |platform| platform.install_line(&plan.system),
        ));
    }
    if !plan.cargo.is_empty() {
        parts.push(format!("cargo install --locked {}", plan.cargo.join(" ")));
    }
    if !plan.pypi.is_empty() {
        for (name, spec) in &plan.pypi {
            parts.push(format!("python3 -m pip install --target {} {spec}", tools::pypi_dir(name)));
        }
    }
    parts.join(" && ")
}

fn table(rows: &[(&Tool, Status)]) -> String {
    let width = rows.iter().map(|(tool, _)| tool.name.len()).max().unwrap_or(0);
    let mut out = format!("preflight: {} prerequisites\n", rows.len());
    for (tool, status) in rows {
        let kind = match tool.source {
            Source::Cargo { .. } => "cargo",
            Source::Pypi { .. } => "pypi",
            Source::System { .. } => "system",
        };
        let (state, detail) = match status {
            Status::Found(detail) => ("found", detail.as_str()),
            Status::NotNeeded(why) => ("skipped", why.as_str()),
            Status::Missing(what) => ("MISSING", what.as_str()),
        };
        let _ = writeln!(out, "  {:<width$}  {kind:<6}  {state:<7}  {detail}  [{}]", tool.name, tool.purpose);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Packages = Packages { apt: Some("nginx"), dnf: Some("nginx"), brew: Some("nginx") };
    const B: Packages = Packages { apt: Some("openssh-server"), dnf: Some("openssh-server"), brew: None };

    #[test]
    fn apt_updates_then_installs_every_package_once() {
        let packages = Platform::Apt.packages(&[A, B, A]);
        assert_eq!(packages, ["nginx", "openssh-server"]);
        let commands = Platform::Apt.commands(&packages, Some(&["sudo", "-n"]));
        assert_eq!(commands[0], ["sudo", "-n", "apt-get", "update", "-q"]);
        assert_eq!(commands[1].first().map(String::as_str), Some("sudo"));
        assert!(commands[1].ends_with(&["nginx".to_owned(), "openssh-server".to_owned()]));
        assert_eq!(Platform::Brew.packages(&[A, B]), ["nginx"], "macOS ships sshd");
        assert_eq!(Platform::Dnf.commands(&["redis"], None), [["dnf", "install", "-y", "redis"]]);
    }

    #[test]
    fn the_table_shows_every_row_with_its_state() {
        let rows = [
            (&tools::NGINX, Status::Found("/usr/sbin/nginx".into())),
            (&tools::REDIS_SERVER, Status::NotNeeded("REDIS_URL is set".into())),
            (&tools::DENY, Status::Missing("cargo-deny".into())),
        ];
        let table = table(&rows.iter().map(|(tool, status)| (*tool, status.clone())).collect::<Vec<_>>());
        assert!(
            table.lines().any(|line| line.contains("nginx") && line.contains("found") && line.contains("/usr/sbin"))
        );
        assert!(table.lines().any(|line| line.contains("redis-server") && line.contains("skipped")));
        assert!(table.lines().any(|line| line.contains("cargo-deny") && line.contains("MISSING")));
    }

    #[test]
    fn one_line_installs_every_kind() {
        let line = install_line(&[&tools::DENY, &tools::LLVM_COV, &tools::ZIZMOR]);
        assert!(line.contains("cargo install --locked cargo-deny@0.20.2 cargo-llvm-cov@0.9.1"), "{line}");
        assert!(line.contains("pip install --target") && line.contains("zizmor==1.32.0"), "{line}");
        assert!(!line.contains("apt-get"), "{line}");
    }

    static ABSENT: Tool = Tool {
        name: "absent",
        purpose: "a test",
        source: Source::System { programs: &["no-such-program-xtask"], packages: A, need: tools::Need::Always },
    };

    #[test]
    fn no_install_stops_with_the_command() {
        let error = run(&[&ABSENT], InstallArgs { no_install: true, install_system: false }).expect_err("stops");
        assert!(error.to_string().contains("installing is off"), "{error}");
        assert!(crate::report::hint(&error, "step hint").starts_with("install them with `"));
    }
}
