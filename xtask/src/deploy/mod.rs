//! `cargo xtask deploy`, `deploy status|lock|unlock` and `cargo xtask rollback`: the host target (on
//! this machine or over ssh), kubernetes and fly; without a configured target nothing is deployed.

mod config;
mod fly;
mod host;
mod image;
mod kubernetes;
mod live;
mod lock;
mod machine;
mod platform;
mod records;
mod remote;
mod restorable;
mod slots;
mod systemd;

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
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
    /// For kubernetes and fly: the container image CI pushed, by digest or a fixed tag (or DEPLOY_IMAGE).
    #[arg(long)]
    image: Option<String>,
    #[command(flatten)]
    root: RootArg,
}

#[derive(Args, Debug)]
pub(crate) struct RootArg {
    /// The deploy's directory: lock, journal, audit log; for the host target also deploy.env, releases/,
    /// state (or DEPLOY_ROOT; default /srv/shipshape, and target/deploy for kubernetes and fly).
    #[arg(long, global = true)]
    root: Option<Utf8PathBuf>,
    /// Run on this host over ssh, `user@host` or a Host of the ssh configuration (or DEPLOY_SSH;
    /// DEPLOY_SSH_CONFIG names an ssh configuration file).
    #[arg(long, global = true, value_name = "DEST")]
    ssh: Option<String>,
}

impl RootArg {
    pub(crate) fn get(&self) -> Utf8PathBuf {
        self.get_or("/srv/shipshape".into())
    }

    fn get_or(&self, default: Utf8PathBuf) -> Utf8PathBuf {
        self.root
            .clone()
            .or_else(|| std::env::var("DEPLOY_ROOT").ok().filter(|root| !root.is_empty()).map(Utf8PathBuf::from))
            .unwrap_or(default)
    }

    pub(crate) fn remote(&self) -> Result<Option<remote::Remote>> {
        self.ssh
            .clone()
            .or_else(|| std::env::var("DEPLOY_SSH").ok())
            .filter(|destination| !destination.is_empty())
            .map(remote::Remote::new)
            .transpose()
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
pub(crate) enum Target {
    Host,
    Kubernetes,
    Fly,
}

pub(crate) fn run(args: &DeployArgs) -> Result<()> {
    let root = args.root.get();
    let remote = args.root.remote()?;
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
    let target = match (args.target, std::env::var("DEPLOY_TARGET").ok().filter(|name| !name.is_empty())) {
        (Some(target), _) => Some(target),
        (None, Some(name)) => Some(Target::from_str(&name, true).map_err(|_| {
            anyhow::anyhow!("DEPLOY_TARGET={name} is not a target: use host, kubernetes or fly; nothing was deployed")
        })?),
        (None, None) => None,
    };
    match target {
        None => bail!(
            "no deploy target is configured: nothing was deployed. Pass --target host (or set DEPLOY_TARGET) with --root DIR; see README.md"
        ),
        Some(Target::Kubernetes | Target::Fly) if remote.is_some() => {
            bail!(
                "--ssh (DEPLOY_SSH) goes with --target host: kubernetes and fly are driven from here; nothing was deployed"
            )
        }
        Some(Target::Kubernetes) => return to_platform(args, kubernetes::Kubernetes::new),
        Some(Target::Fly) => return to_platform(args, |_| fly::Fly::new()),
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

/// The kubernetes and fly targets ship the image CI built and pushed, not a binary; their lock, journal
/// and audit log live where the deploy runs (default target/deploy), since no host of ours is involved.
fn to_platform<P: platform::Platform>(args: &DeployArgs, target: impl FnOnce(&Utf8Path) -> P) -> Result<()> {
    let reference = args.image.clone().or_else(|| std::env::var("DEPLOY_IMAGE").ok().filter(|image| !image.is_empty()));
    let Some(reference) = reference else {
        bail!(
            "the {} target deploys a container image: pass --image REF (or set DEPLOY_IMAGE) with the image CI pushed, \
             e.g. --image ghcr.io/acme/shipshape-app@sha256:<digest>; nothing was deployed",
            P::NAME
        );
    };
    let image = image::Image::release(&reference).context("nothing was deployed")?;
    let release = args.release.clone().unwrap_or_else(default_release);
    let root = args.root.get_or(project::target_dir().join("deploy"));
    platform::deploy(&root, &release, &image, &mut target(&root))
}

/// The service's environment from the host target's `<root>/deploy.env`.
pub(crate) fn host_service_env(root: &Utf8Path) -> Result<Vec<(String, String)>> {
    Ok(config::HostConfig::load(root)?.app_env)
}

/// `cargo xtask rollback`: the previous release back into service, through the same machine.
pub(crate) fn rollback(args: &RootArg) -> Result<()> {
    let root = args.get();
    if let Some(remote) = args.remote()? {
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
