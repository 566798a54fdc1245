//! `cargo xtask deploy`, `deploy status|lock|unlock` and `cargo xtask rollback`: the host target (on
//! this machine or over ssh), kubernetes and fly; without a configured target nothing is deployed.

mod config;
mod fly;
mod host;
mod image;
mod kubernetes;
pub(crate) mod layout;
mod live;
mod lock;
mod machine;
mod platform;
mod records;
mod remote;
mod restorable;
mod slots;
mod state;
mod status;
mod systemd;

use anyhow::{Context as _, Result, bail};
use camino::Utf8PathBuf;
use clap::{Args, Subcommand, ValueEnum};

use layout::{Layout, ReleaseId};
use records::{Origin, Outcome};

use crate::project;

#[derive(Args, Debug)]
pub(crate) struct DeployArgs {
    #[command(subcommand)]
    action: Option<DeployAction>,
    /// Where to deploy (or DEPLOY_TARGET); nothing is deployed without one. With `status`: which
    /// target to ask (default host).
    #[arg(long, value_enum, global = true)]
    target: Option<Target>,
    /// The release id (default: UTC time and the commit, e.g. 20261123T2015-1a2b3c4d): letters,
    /// digits, `.`, `_` and `-`, at most 64.
    #[arg(long, value_parser = parse_release)]
    release: Option<ReleaseId>,
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
    #[command(flatten)]
    origin: OriginArgs,
}

/// Who deploys, from what: recorded in the audit log. Over ssh these are passed on as arguments.
#[derive(Args, Debug, Default)]
pub(crate) struct OriginArgs {
    /// Who deploys (default: GITHUB_ACTOR, else the login name).
    #[arg(long, global = true, hide = true)]
    actor: Option<String>,
    /// The commit deployed (default: GITHUB_SHA).
    #[arg(long, global = true, hide = true)]
    commit: Option<String>,
    /// The workflow run that deploys (default: from GITHUB_SERVER_URL, GITHUB_REPOSITORY, GITHUB_RUN_ID).
    #[arg(long, global = true, hide = true)]
    run_url: Option<String>,
}

impl OriginArgs {
    fn get(&self) -> Origin {
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let run_url = || {
            Some(format!(
                "{}/{}/actions/runs/{}",
                env("GITHUB_SERVER_URL")?,
                env("GITHUB_REPOSITORY")?,
                env("GITHUB_RUN_ID")?
            ))
        };
        Origin {
            who: self.actor.clone().unwrap_or_else(records::who),
            commit: self.commit.clone().or_else(|| env("GITHUB_SHA")),
            run_url: self.run_url.clone().or_else(run_url),
        }
    }
}

fn parse_release(id: &str) -> Result<ReleaseId> {
    ReleaseId::parse(id)
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
    /// What serves now and whether it answers healthy (fails when not), the previous release, a deploy
    /// in progress, the last audit records; where the records and reality disagree.
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
    let layout = Layout::new(&args.root.get());
    let origin = args.root.origin.get();
    let remote = args.root.remote()?;
    if let (Some(remote), Some(action)) = (&remote, &args.action) {
        return match action {
            DeployAction::Status => remote.xtask(&layout, &["deploy", "status"], &origin),
            DeployAction::Lock => remote.xtask(&layout, &["deploy", "lock"], &origin),
            DeployAction::Unlock { yes_stop_the_holder: false } => {
                remote.xtask(&layout, &["deploy", "unlock"], &origin)
            }
            DeployAction::Unlock { yes_stop_the_holder: true } => {
                remote.xtask(&layout, &["deploy", "unlock", "--yes-stop-the-holder"], &origin)
            }
        };
    }
    match &args.action {
        Some(DeployAction::Status) => {
            return match args.target {
                Some(Target::Kubernetes) => kubernetes::status(),
                Some(Target::Fly) => fly::status(),
                Some(Target::Host) | None => status::host(&layout),
            };
        }
        Some(DeployAction::Lock) => {
            let held = lock::is_held(&layout)?;
            println!("deploy lock {}: {}", layout.lock(), if held { "HELD" } else { "free" });
            if held {
                println!("holder: {}", lock::holder(&layout));
            }
            return Ok(());
        }
        Some(DeployAction::Unlock { yes_stop_the_holder }) => {
            if !yes_stop_the_holder && lock::is_held(&layout)? {
                bail!(
                    "unlocking stops the deploy holding the lock ({}): rerun with --yes-stop-the-holder",
                    lock::holder(&layout)
                );
            }
            return lock::force_unlock(&layout);
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
        Some(Target::Kubernetes) => {
            return to_platform(args, origin, kubernetes::Kubernetes::new);
        }
        Some(Target::Fly) => return to_platform(args, origin, |_, release, image| fly::Fly::new(release, image)),
        Some(Target::Host) => {}
    }
    let release = args.release.clone().unwrap_or_else(default_release);
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => build()?,
    };
    match remote {
        Some(remote) => remote.deploy(&layout, &release, &binary, &origin),
        None => {
            let shipment = host::Shipment { release, binary: Some(binary), migrate: true };
            host::deploy(&layout, shipment, origin, Outcome::Deployed)
        }
    }
}

/// The kubernetes and fly targets ship the image CI built and pushed, not a binary; their lock, journal
/// and audit log live where the deploy runs (default target/deploy), since no host of ours is involved.
fn to_platform<T: machine::Target>(
    args: &DeployArgs,
    origin: Origin,
    target: impl FnOnce(&Layout, &ReleaseId, image::Image) -> T,
) -> Result<()> {
    let reference = args.image.clone().or_else(|| std::env::var("DEPLOY_IMAGE").ok().filter(|image| !image.is_empty()));
    let Some(reference) = reference else {
        bail!(
            "the {} target deploys a container image: pass --image REF (or set DEPLOY_IMAGE) with the image CI pushed, \
             e.g. --image ghcr.io/acme/shipshape-app@sha256:<digest>; nothing was deployed",
            T::KIND.name()
        );
    };
    let image = image::Image::release(&reference).context("nothing was deployed")?;
    let release = args.release.clone().unwrap_or_else(default_release);
    let layout = Layout::new(&args.root.get_or(project::target_dir().join("deploy")));
    let mut target = target(&layout, &release, image);
    machine::Machine::new(&layout, &release, origin, Outcome::Deployed).deploy(&mut target)
}

/// Runs this xtask's `args` on the remote host of `root` (its `--root`, who runs it from what).
pub(crate) fn on_remote(root: &RootArg, remote: &remote::Remote, args: &[&str]) -> Result<()> {
    remote.xtask(&Layout::new(&root.get()), args, &root.origin.get())
}

/// The service's environment from the host target's `<root>/deploy.env`.
pub(crate) fn host_service_env(root: &camino::Utf8Path) -> Result<Vec<(String, String)>> {
    Ok(config::HostConfig::load(&Layout::new(root))?.app_env)
}

/// `cargo xtask rollback`: the previous release back into service, through the same machine.
pub(crate) fn rollback(args: &RootArg) -> Result<()> {
    let layout = Layout::new(&args.get());
    let origin = args.origin.get();
    if let Some(remote) = args.remote()? {
        return remote.xtask(&layout, &["rollback"], &origin);
    }
    let Some(state) = records::read_state(&layout)? else {
        bail!("nothing was deployed to {}, so there is nothing to roll back", layout.root());
    };
    let Some(previous) = state.previous else {
        bail!("{} is the only release deployed to {}: there is no previous release", state.release, layout.root());
    };
    println!("rollback: {} → {previous}", state.release);
    let shipment = host::Shipment { release: previous, binary: None, migrate: false };
    host::deploy(&layout, shipment, origin, Outcome::RolledBack)
}

fn default_release() -> ReleaseId {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=8", "HEAD"])
        .current_dir(project::root())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map_or_else(|| "local".to_owned(), |output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    let id = format!("{}-{commit}", crate::backup::timestamp(std::time::SystemTime::now()).replace('.', "-"));
    ReleaseId::parse(&id).unwrap_or_else(|_| ReleaseId::parse("local").expect("a valid id"))
}

fn build() -> Result<Utf8PathBuf> {
    let mut cargo = std::process::Command::new(project::cargo());
    cargo.args(["build", "--release", "--locked", "--package", "app"]).current_dir(project::root());
    crate::process::run(cargo, "`cargo build --release --package app`")?;
    Ok(project::target_dir().join("release/app"))
}
