//! `cargo xtask deploy`, `deploy status|lock|unlock` and `cargo xtask rollback`. Only the host target
//! exists, on this machine or over ssh; without a configured target nothing is deployed.

mod config;
mod host;
mod live;
mod lock;
mod machine;
mod records;
mod remote;
mod slots;

use anyhow::{Result, bail};
use camino::Utf8PathBuf;
use clap::{Args, Subcommand, ValueEnum};

use crate::project;

#[derive(Args, Debug)]
pub(crate) struct DeployArgs {
    #[command(subcommand)]
    action: Option<DeployAction>,
    /// Where to deploy (or DEPLOY_TARGET); nothing is deployed without one.
    #[arg(long, value_enum)]
    target: Option<Target>,
    /// The release id (default: UTC time and the commit, e.g. 20261123T2015-1a2b3c4d).
    #[arg(long)]
    release: Option<String>,
    /// The service binary to ship (default: target/release/app, built first).
    #[arg(long)]
    binary: Option<Utf8PathBuf>,
    #[command(flatten)]
    root: RootArg,
}

#[derive(Args, Debug)]
pub(crate) struct RootArg {
    /// The host target's directory: deploy.env, releases/, state, journal, audit log (or DEPLOY_ROOT).
    #[arg(long, global = true)]
    root: Option<Utf8PathBuf>,
    /// Run on this host over ssh, `user@host` or a Host of the ssh configuration (or DEPLOY_SSH;
    /// DEPLOY_SSH_CONFIG names an ssh configuration file).
    #[arg(long, global = true, value_name = "DEST")]
    ssh: Option<String>,
}

impl RootArg {
    fn get(&self) -> Utf8PathBuf {
        self.root
            .clone()
            .or_else(|| std::env::var("DEPLOY_ROOT").ok().map(Utf8PathBuf::from))
            .unwrap_or_else(|| "/srv/shipshape".into())
    }

    fn remote(&self) -> Option<remote::Remote> {
        self.ssh
            .clone()
            .or_else(|| std::env::var("DEPLOY_SSH").ok())
            .filter(|destination| !destination.is_empty())
            .map(remote::Remote::new)
    }
}

#[derive(Subcommand, Debug)]
enum DeployAction {
    /// What serves now, the previous release, a deploy in progress, the last audit records.
    Status,
    /// Who holds the deploy lock.
    Lock,
    /// Stop the process holding the deploy lock (the next deploy recovers what it left).
    Unlock {
        /// Confirm: the holder is terminated.
        #[arg(long)]
        yes_stop_the_holder: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Target {
    Host,
    Kubernetes,
    Fly,
}

pub(crate) fn run(args: &DeployArgs) -> Result<()> {
    let root = args.root.get();
    let remote = args.root.remote();
    if let (Some(remote), Some(action)) = (&remote, &args.action) {
        return match action {
            DeployAction::Status => remote.xtask(&root, &["deploy", "status"]),
            DeployAction::Lock => remote.xtask(&root, &["deploy", "lock"]),
            DeployAction::Unlock { yes_stop_the_holder: false } => remote.xtask(&root, &["deploy", "unlock"]),
            DeployAction::Unlock { yes_stop_the_holder: true } => {
                remote.xtask(&root, &["deploy", "unlock", "--yes-stop-the-holder"])
            }
        };
    }
    match &args.action {
        Some(DeployAction::Status) => return status(&root),
        Some(DeployAction::Lock) => {
            let held = lock::is_held(&root)?;
            println!("deploy lock {}: {}", lock::path(&root), if held { "HELD" } else { "free" });
            if held {
                println!("holder: {}", lock::holder(&root));
            }
            return Ok(());
        }
        Some(DeployAction::Unlock { yes_stop_the_holder }) => {
            if !yes_stop_the_holder && lock::is_held(&root)? {
                bail!(
                    "unlocking stops the deploy holding the lock ({}): rerun with --yes-stop-the-holder",
                    lock::holder(&root)
                );
            }
            return lock::force_unlock(&root);
        }
        None => {}
    }
    let target = match args.target {
        Some(target) => Some(target),
        None => std::env::var("DEPLOY_TARGET").ok().and_then(|name| Target::from_str(&name, true).ok()),
    };
    match target {
        None => bail!(
            "no deploy target is configured: nothing was deployed. Pass --target host (or set DEPLOY_TARGET) with --root DIR; see README.md"
        ),
        Some(Target::Kubernetes | Target::Fly) => {
            bail!("the {target:?} target is not implemented yet: nothing was deployed; only --target host exists")
        }
        Some(Target::Host) => {}
    }
    let release = args.release.clone().unwrap_or_else(default_release);
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => build()?,
    };
    match remote {
        Some(remote) => remote.deploy(&root, &release, &binary),
        None => host::deploy(&root, &host::Shipment { release, binary: Some(binary), migrate: true }),
    }
}

/// `cargo xtask rollback`: the previous release back into service, through the same machine.
pub(crate) fn rollback(args: &RootArg) -> Result<()> {
    let root = args.get();
    if let Some(remote) = args.remote() {
        return remote.xtask(&root, &["rollback"]);
    }
    let Some(state) = records::read_state(&root)? else {
        bail!("nothing was deployed to {root}, so there is nothing to roll back");
    };
    let Some(previous) = state.previous else {
        bail!("{} is the only release deployed to {root}: there is no previous release", state.release);
    };
    println!("rollback: {} → {previous}", state.release);
    host::deploy(&root, &host::Shipment { release: previous, binary: None, migrate: false })
}

fn status(root: &Utf8PathBuf) -> Result<()> {
    match records::read_state(root)? {
        Some(state) => println!(
            "serving: {} in the {} slot (previous: {})",
            state.release,
            state.active.name(),
            state.previous.as_deref().unwrap_or("none")
        ),
        None => println!("serving: nothing deployed to {root} yet"),
    }
    if let Some(journal) = records::read_journal(root)? {
        let live = lock::is_held(root)?;
        println!(
            "in progress: {} in {} ({})",
            journal.release,
            journal.state,
            if live { "running" } else { "interrupted: the next deploy recovers it" }
        );
    }
    let audit = std::fs::read_to_string(records::audit_path(root)).unwrap_or_default();
    let last: Vec<&str> = audit.lines().rev().take(5).collect();
    if !last.is_empty() {
        println!("last records (newest first):");
        for line in last {
            println!("  {line}");
        }
    }
    Ok(())
}

fn default_release() -> String {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=8", "HEAD"])
        .current_dir(project::root())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map_or_else(|| "local".to_owned(), |output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    format!("{}-{commit}", crate::backup::timestamp(std::time::SystemTime::now()).replace('.', "-"))
}

fn build() -> Result<Utf8PathBuf> {
    duct::cmd(project::cargo(), ["build", "--release", "--locked", "--package", "app"]).dir(project::root()).run()?;
    Ok(project::target_dir().join("release/app"))
}
