//! Every prerequisite of the pipeline in one table, each with its kind: cargo tools and PyPI tools
//! pinned to a version, and system programs with where they are found and the package that brings them
//! on each platform. Steps name what they need from here; `preflight.rs` finds, installs or stops.

use std::path::PathBuf;
use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

use crate::report::Fix;
use crate::{programs, project};

#[derive(Debug)]
pub(crate) struct Tool {
    /// The name the preflight table shows: the program, or what a group of programs is.
    pub(crate) name: &'static str,
    /// What needs it, for the preflight table.
    pub(crate) purpose: &'static str,
    pub(crate) source: Source,
}

#[derive(Debug)]
pub(crate) enum Source {
    /// `cargo install --locked NAME@VERSION`; there when `cargo SUBCOMMAND --version` answers.
    Cargo { version: &'static str },
    /// `pip install PACKAGE==VERSION` into `target/tools/pypi/NAME`; there when `program` is found.
    Pypi { package: &'static str, version: &'static str, program: &'static str },
    /// Programs that come with the system's packages, found by `programs::find`.
    System { programs: &'static [&'static str], packages: Packages, need: Need },
}

/// The package that brings the programs, per package manager; `None` where the platform ships them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packages {
    pub(crate) apt: Option<&'static str>,
    pub(crate) dnf: Option<&'static str>,
    pub(crate) brew: Option<&'static str>,
}

/// When a system program is needed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Always,
    /// Only when running as root (PostgreSQL is then started as another user).
    AsRoot,
    /// Unless this variable names an external server to use instead.
    UnlessSet(&'static str),
}

const fn same(package: &'static str) -> Packages {
    Packages { apt: Some(package), dnf: Some(package), brew: Some(package) }
}

impl Tool {
    const fn cargo(name: &'static str, version: &'static str, purpose: &'static str) -> Self {
        Self { name, purpose, source: Source::Cargo { version } }
    }

    const fn pypi(program: &'static str, package: &'static str, version: &'static str, purpose: &'static str) -> Self {
        Self { name: program, purpose, source: Source::Pypi { package, version, program } }
    }

    const fn system(
        name: &'static str,
        programs: &'static [&'static str],
        packages: Packages,
        purpose: &'static str,
    ) -> Self {
        Self { name, purpose, source: Source::System { programs, packages, need: Need::Always } }
    }

    const fn when(mut self, need: Need) -> Self {
        if let Source::System { need: ref mut slot, .. } = self.source {
            *slot = need;
        }
        self
    }
}

// Cargo tools, installed with `cargo install --locked NAME@VERSION`.
pub(crate) const LLVM_COV: Tool = Tool::cargo("cargo-llvm-cov", "0.9.1", "test coverage");
pub(crate) const NEXTEST: Tool = Tool::cargo("cargo-nextest", "0.9.143", "test runner, JUnit report");
pub(crate) const DENY: Tool = Tool::cargo("cargo-deny", "0.20.2", "supply-chain audit");
pub(crate) const AUDITABLE: Tool = Tool::cargo("cargo-auditable", "0.7.7", "dependency list in the release binary");
/// Run on the nightly toolchain by `cargo xtask fuzz`.
pub(crate) const CARGO_FUZZ: Tool = Tool::cargo("cargo-fuzz", "0.13.2", "fuzz targets");

// PyPI tools, installed with pip into target/tools/pypi.
pub(crate) const ZIZMOR: Tool = Tool::pypi("zizmor", "zizmor", "1.32.0", "workflow security lint");
pub(crate) const SQUAWK: Tool = Tool::pypi("squawk", "squawk-cli", "2.70.0", "migration lint");
pub(crate) const MOTO: Tool = Tool::pypi("moto_server", "moto[server]", "5.1.18", "S3 server for the backup tests");

// System programs, installed with the platform's package manager.
pub(crate) const C_TOOLCHAIN: Tool = Tool::system(
    "C toolchain",
    &["cc", "make"],
    Packages { apt: Some("build-essential"), dnf: Some("make"), brew: None },
    "linking, jemalloc's C build",
);
pub(crate) const POSTGRES_SERVER: Tool = Tool::system(
    "PostgreSQL server",
    &["initdb", "pg_ctl", "postgres"],
    Packages { apt: Some("postgresql"), dnf: Some("postgresql-server"), brew: Some("postgresql@16") },
    "throwaway clusters",
);
pub(crate) const POSTGRES_CLIENT: Tool = Tool::system(
    "PostgreSQL client",
    &["psql", "pg_dump", "pg_restore"],
    Packages { apt: Some("postgresql-client"), dnf: Some("postgresql"), brew: Some("postgresql@16") },
    "queries, backups, restores",
);
pub(crate) const REDIS_SERVER: Tool = Tool::system(
    "redis-server",
    &["redis-server"],
    Packages { apt: Some("redis-server"), dnf: Some("redis"), brew: Some("redis") },
    "shared rate-limit tests",
)
.when(Need::UnlessSet("REDIS_URL"));
pub(crate) const NGINX: Tool = Tool::system("nginx", &["nginx"], same("nginx"), "deploy and smoke tests");
pub(crate) const SSHD: Tool = Tool::system(
    "sshd",
    &["sshd"],
    Packages { apt: Some("openssh-server"), dnf: Some("openssh-server"), brew: None },
    "deploys over ssh, tested",
);
pub(crate) const SSH_CLIENT: Tool = Tool::system(
    "OpenSSH client",
    &["ssh", "scp", "ssh-keygen"],
    Packages { apt: Some("openssh-client"), dnf: Some("openssh-clients"), brew: None },
    "deploys over ssh",
);
pub(crate) const WRK: Tool = Tool::system("wrk", &["wrk"], same("wrk"), "benchmark load generator");
pub(crate) const CURL: Tool =
    Tool::system("curl", &["curl"], Packages { apt: Some("curl"), dnf: Some("curl"), brew: None }, "HTTPS probes");
pub(crate) const LOGROTATE: Tool = Tool::system(
    "logrotate",
    &["logrotate"],
    Packages { apt: Some("logrotate"), dnf: Some("logrotate"), brew: None },
    "the slots' log rotation, tested",
);
pub(crate) const SETPRIV: Tool = Tool::system(
    "setpriv",
    &["setpriv"],
    Packages { apt: Some("util-linux"), dnf: Some("util-linux"), brew: None },
    "PostgreSQL as non-root",
)
.when(Need::AsRoot);
pub(crate) const PROMETHEUS: Tool = Tool::system(
    "promtool",
    &["promtool"],
    Packages { apt: Some("prometheus"), dnf: Some("golang-github-prometheus"), brew: Some("prometheus") },
    "alert rules and their tests",
);
pub(crate) const AGE: Tool = Tool::system("age", &["age", "age-keygen"], same("age"), "off-site backup encryption");
// Debian/Ubuntu `pebble` (tried); the Fedora and Homebrew names are the ones their indexes list, untried here.
pub(crate) const PEBBLE: Tool = Tool::system(
    "pebble",
    &["pebble"],
    Packages { apt: Some("pebble"), dnf: Some("golang-github-letsencrypt-pebble"), brew: Some("pebble") },
    "ACME test server for the certificate tests",
);
pub(crate) const OPENSSL: Tool = Tool::system(
    "openssl",
    &["openssl"],
    same("openssl"),
    "certificate expiry dates, TLS session checks, the tests' certificates",
);

/// What the preflight found for one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// There: its version or where it was found.
    Found(String),
    /// Not needed here, and why.
    NotNeeded(String),
    /// Missing: the programs not found.
    Missing(String),
}

impl Tool {
    /// Finds the tool (runs `--version` for cargo tools).
    pub(crate) fn status(&self) -> Status {
        match &self.source {
            Source::Cargo { version } => match cargo_version(self.name) {
                Some(found) if found.contains(version) => Status::Found(found),
                // cargo-auditable hands `--version` on to cargo, which then names itself.
                Some(found) if !found.contains(self.name.trim_start_matches("cargo-")) => {
                    Status::Found(format!("installed (pinned {version})"))
                }
                Some(found) => Status::Found(format!("{found} (pinned {version})")),
                None => Status::Missing(self.name.to_owned()),
            },
            Source::Pypi { program, .. } => match self.path() {
                Some(path) => Status::Found(path.display().to_string()),
                None => Status::Missing((*program).to_owned()),
            },
            Source::System { programs, need, .. } => {
                if let Some(why) = need.waived() {
                    return Status::NotNeeded(why);
                }
                let found: Vec<Option<PathBuf>> = programs.iter().map(|name| programs::find(name)).collect();
                let missing: Vec<&str> =
                    programs.iter().zip(&found).filter(|(_, path)| path.is_none()).map(|(name, _)| *name).collect();
                match found.first().cloned().flatten() {
                    Some(path) if missing.is_empty() => Status::Found(path.display().to_string()),
                    _ => Status::Missing(missing.join(", ")),
                }
            }
        }
    }

    /// Where a PyPI tool or a system tool's first program is.
    pub(crate) fn path(&self) -> Option<PathBuf> {
        match &self.source {
            Source::Cargo { .. } => None,
            Source::Pypi { program, .. } => {
                let pinned = pypi_dir(self.name).join("bin").join(program).into_std_path_buf();
                if pinned.is_file() { Some(pinned) } else { programs::find(program) }
            }
            Source::System { programs, .. } => programs.first().and_then(|name| programs::find(name)),
        }
    }

    /// A command running a PyPI tool, which may be a Python script living in `target/tools/pypi`.
    pub(crate) fn command(&self) -> Result<Command, Fix> {
        let path = self.path().ok_or_else(|| self.missing())?;
        let mut command = Command::new(path);
        if let Source::Pypi { .. } = self.source {
            command.env("PYTHONPATH", pypi_dir(self.name));
        }
        Ok(command)
    }

    /// Fails with the install command when the tool is missing.
    pub(crate) fn require(&self) -> Result<(), Fix> {
        match self.status() {
            Status::Missing(_) => Err(self.missing()),
            Status::Found(_) | Status::NotNeeded(_) => Ok(()),
        }
    }

    fn missing(&self) -> Fix {
        let install = match &self.source {
            Source::Cargo { version } => format!("cargo install --locked {}@{version}", self.name),
            Source::Pypi { package, version, .. } => format!("python3 -m pip install {package}=={version}"),
            Source::System { packages, .. } => crate::preflight::Platform::detect()
                .map_or_else(|| "your package manager".to_owned(), |platform| platform.install_line(&[*packages])),
        };
        Fix::new(
            format!("{} ({}) is not installed", self.name, self.purpose),
            format!("run `{install}`, or `cargo xtask setup`"),
        )
    }
}

impl Need {
    /// Why the programs are not needed here, if they are not.
    fn waived(self) -> Option<String> {
        match self {
            Self::Always => None,
            Self::AsRoot => (!is_root()).then(|| "not root".to_owned()),
            Self::UnlessSet(var) => {
                std::env::var(var).is_ok_and(|value| !value.trim().is_empty()).then(|| format!("{var} is set"))
            }
        }
    }
}

/// `cargo SUBCOMMAND --version` of a cargo tool named `cargo-SUBCOMMAND`.
fn cargo_version(name: &str) -> Option<String> {
    let subcommand = name.strip_prefix("cargo-").unwrap_or(name);
    let output = Command::new(project::cargo()).args([subcommand, "--version"]).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    output.status.success().then(|| text.lines().next().unwrap_or_default().trim().to_owned())
}

/// Where the pinned PyPI tool `name` is installed: in the xtask's own `target/` (whichever workspace it
/// works on), so nothing outside the checkout changes; one directory per tool, since pip's `--target`
/// replaces a `bin/` that another tool already filled.
pub(crate) fn pypi_dir(name: &str) -> Utf8PathBuf {
    let workspace = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Utf8Path::new(".."));
    workspace.join("target/tools/pypi").join(name)
}

/// Whether this process runs as root (`id -u`: every Unix has it, not every one has `/proc`).
pub(crate) fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_pinned_and_linux_packages_named() {
        for tool in crate::steps::STEPS.iter().flat_map(|step| step.tools) {
            match &tool.source {
                Source::Cargo { version } | Source::Pypi { version, .. } => {
                    assert_eq!(version.split('.').count(), 3, "{}", tool.name);
                    assert!(version.split('.').all(|part| part.parse::<u32>().is_ok()), "{}", tool.name);
                }
                Source::System { programs, packages, .. } => {
                    assert!(!programs.is_empty());
                    assert!(packages.apt.is_some() && packages.dnf.is_some(), "{}: Linux packages", tool.name);
                }
            }
        }
    }

    #[test]
    fn the_image_builds_with_the_pinned_cargo_auditable() {
        let dockerfile = std::fs::read_to_string(project::root().join("deploy/Dockerfile")).expect("deploy/Dockerfile");
        let Source::Cargo { version } = AUDITABLE.source else { panic!("a cargo tool") };
        assert!(dockerfile.contains(&format!("cargo install --locked cargo-auditable@{version}")), "pin differs");
        assert!(dockerfile.contains("cargo auditable build --release --locked --package app"));
    }

    #[test]
    fn a_set_url_waives_the_server_and_a_missing_program_is_named() {
        // SAFETY-free: the variable is read by this test alone.
        let waived = Need::UnlessSet("XTASK_TEST_NEVER_SET_URL").waived();
        assert_eq!(waived, None);
        let missing = Tool::system("nothing", &["sh", "no-such-program-xtask"], same("none"), "a test");
        assert_eq!(missing.status(), Status::Missing("no-such-program-xtask".to_owned()));
        let error = missing.require().expect_err("missing");
        assert!(error.to_string().contains("nothing (a test) is not installed"), "{error}");
    }
}
