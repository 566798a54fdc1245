//! A throwaway cluster: `initdb` into `target/postgres/<pid>-<n>`, a free loopback port and a unix
//! socket, speed over durability, run as an unprivileged user when we are root (PostgreSQL refuses
//! root), and gone again on every way out. A server whose xtask was killed outright dies with it
//! (a parent-death signal); its directory is swept by the next run.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use super::{Database, MAX_CONNECTIONS, server_settings};
use crate::{cleanup, project};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The file in a cluster directory naming the xtask process that owns it.
const OWNER_FILE: &str = "owner.pid";
/// `sun_path` holds 108 bytes; leave room for `/.s.PGSQL.NNNNN`.
const MAX_SOCKET_DIR: usize = 90;
/// A directory without an owner yet may be one another run is creating right now.
const UNOWNED_GRACE: Duration = Duration::from_secs(60);

static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);

/// A directory holding `initdb`, `pg_ctl` and `postgres`.
#[derive(Debug, Clone)]
pub(super) struct Binaries {
    dir: Utf8PathBuf,
}

impl Binaries {
    /// `pg_ctl` where `programs::find` finds it first, then every versioned PostgreSQL directory,
    /// newest first.
    pub(super) fn find() -> Option<Self> {
        let found = crate::programs::find("pg_ctl")
            .and_then(|path| path.canonicalize().ok())
            .and_then(|path| path.parent().map(std::path::Path::to_path_buf));
        found
            .into_iter()
            .chain(crate::programs::postgres_dirs())
            .filter_map(|dir| Utf8PathBuf::from_path_buf(dir).ok())
            .map(|dir| Self { dir })
            .find(Self::complete)
    }

    fn complete(&self) -> bool {
        ["initdb", "pg_ctl", "postgres"].iter().all(|name| self.path(name).is_file())
    }

    pub(super) fn path(&self, name: &str) -> Utf8PathBuf {
        self.dir.join(name)
    }
}

/// How the cluster's processes are started: as another user when we are root, and on Linux with a
/// parent-death signal so the server cannot outlive a killed xtask.
#[derive(Debug, Clone)]
struct Launcher {
    setpriv: Option<Utf8PathBuf>,
    user: Option<(String, String)>,
}

impl Launcher {
    fn detect() -> Result<Self> {
        let setpriv = which::which("setpriv").ok().and_then(|path| Utf8PathBuf::from_path_buf(path).ok());
        if id(&["-u"]).as_deref() != Some("0") {
            return Ok(Self { setpriv, user: None });
        }
        let Some(setpriv) = setpriv else {
            bail!("running as root needs `setpriv` (util-linux) to start PostgreSQL as an unprivileged user");
        };
        let user = ["postgres", "nobody"]
            .iter()
            .find_map(|name| Some((id(&["-u", name])?, id(&["-g", name])?)))
            .context("running as root, and no `postgres` or `nobody` user exists to run PostgreSQL (it refuses root); create one with `useradd --system postgres`")?;
        Ok(Self { setpriv: Some(setpriv), user: Some(user) })
    }

    fn command(&self, program: &Utf8Path, die_with_parent: bool) -> Command {
        let Some(setpriv) = &self.setpriv else {
            return Command::new(program);
        };
        if self.user.is_none() && !die_with_parent {
            return Command::new(program);
        }
        let mut command = Command::new(setpriv);
        if let Some((uid, gid)) = &self.user {
            command.args(["--reuid", uid, "--regid", gid, "--clear-groups"]);
        }
        if die_with_parent {
            // SIGINT is PostgreSQL's fast shutdown: clients are cut off and the server exits at once.
            command.args(["--pdeathsig", "INT"]);
        }
        command.arg("--").arg(program);
        command
    }

    fn chown(&self, dir: &Utf8Path) -> Result<()> {
        if let Some((uid, gid)) = &self.user {
            let status = Command::new("chown").arg("-R").arg(format!("{uid}:{gid}")).arg(dir).status()?;
            if !status.success() {
                bail!("chown -R {uid}:{gid} {dir} failed");
            }
        }
        Ok(())
    }
}

fn id(args: &[&str]) -> Option<String> {
    let output = Command::new("id").args(args).stderr(Stdio::null()).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

pub(super) fn start(binaries: &Binaries) -> Result<Database> {
    let started = Instant::now();
    let launcher = Launcher::detect()?;
    let base = base_dir(launcher.user.is_some())?;
    sweep(&base, binaries, &launcher);
    let dir = base.join(format!("{}-{}", std::process::id(), NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed)));
    let data = dir.join("data");
    let socket_dir = dir.join("sock");
    fs::create_dir_all(&socket_dir).with_context(|| format!("creating {socket_dir}"))?;
    fs::write(dir.join(OWNER_FILE), std::process::id().to_string())?;
    launcher.chown(&dir)?;
    // From here on the directory is ours to remove, whatever happens next.
    let remove_dir = cleanup::register({
        let dir = dir.clone();
        move || {
            let _ = fs::remove_dir_all(&dir);
        }
    });

    let initdb = launcher
        .command(&binaries.path("initdb"), false)
        .args(["--no-sync", "--no-instructions", "--auth=trust", "--username=postgres", "--encoding=UTF8"])
        .arg("--locale=C")
        .arg("--pgdata")
        .arg(&data)
        .output()
        .with_context(|| format!("running {}", binaries.path("initdb")))?;
    if !initdb.status.success() {
        bail!("initdb failed:\n{}", String::from_utf8_lossy(&initdb.stderr));
    }

    let port = free_port()?;
    let log = fs::File::create(dir.join("postgres.log"))?;
    let mut postgres = launcher.command(&binaries.path("postgres"), true);
    postgres.arg("-D").arg(&data).arg("-p").arg(port.to_string()).arg("-k").arg(&socket_dir);
    for setting in server_settings() {
        postgres.arg("-c").arg(setting);
    }
    // Its own process group: a Ctrl-C reaches the xtask, which stops the server in order.
    postgres.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
    let child = postgres.spawn().with_context(|| format!("starting {}", binaries.path("postgres")))?;
    let pid = child.id();
    let stop_server = cleanup::register({
        let (pg_ctl, data) = (binaries.path("pg_ctl"), data.clone());
        move || stop(&launcher, &pg_ctl, &data, child)
    });

    wait_until_ready(&data, pid, &dir)?;
    let version = fs::read_to_string(data.join("PG_VERSION")).unwrap_or_default();
    println!(
        "postgres: throwaway PostgreSQL {} ready in {:.2} s on 127.0.0.1:{port} and {socket_dir} ({dir})",
        version.trim(),
        started.elapsed().as_secs_f64()
    );
    Ok(Database {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        max_connections: MAX_CONNECTIONS,
        cluster_dir: Some(dir),
        // Newest first: the server stops, then its directory goes.
        _stop: vec![stop_server, remove_dir],
    })
}

fn stop(launcher: &Launcher, pg_ctl: &Utf8Path, data: &Utf8Path, mut child: Child) {
    let stopped = launcher
        .command(pg_ctl, false)
        .args(["stop", "--mode=fast", "--wait", "--timeout=20", "--pgdata"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !stopped {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// `target/postgres`, unless the cluster user cannot reach it or its socket path would be too long.
fn base_dir(as_other_user: bool) -> Result<Utf8PathBuf> {
    let preferred = project::target_dir().join("postgres");
    fs::create_dir_all(&preferred).with_context(|| format!("creating {preferred}"))?;
    let reachable = !as_other_user || preferred.ancestors().all(world_traversable);
    let base = if reachable && preferred.as_str().len() + "/4294967295-99/sock".len() <= MAX_SOCKET_DIR {
        preferred
    } else {
        let fallback = Utf8PathBuf::from_path_buf(std::env::temp_dir())
            .map_err(|path| anyhow::anyhow!("temporary directory {} is not UTF-8", path.display()))?
            .join("shipshape-postgres");
        fs::create_dir_all(&fallback)?;
        fallback
    };
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755))?;
    Ok(base)
}

fn world_traversable(dir: &Utf8Path) -> bool {
    fs::metadata(dir).is_ok_and(|meta| meta.permissions().mode() & 0o001 != 0)
}

/// Removes clusters whose xtask is gone (killed before it could clean up), stopping any server left.
fn sweep(base: &Utf8Path, binaries: &Binaries, launcher: &Launcher) {
    let Ok(entries) = fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let Ok(dir) = Utf8PathBuf::from_path_buf(entry.path()) else { continue };
        let owner = fs::read_to_string(dir.join(OWNER_FILE)).ok().and_then(|pid| pid.trim().parse().ok());
        let in_use = match owner {
            Some(pid) => process_alive(pid),
            None => age(&dir).is_some_and(|age| age < UNOWNED_GRACE),
        };
        if in_use {
            continue;
        }
        let data = dir.join("data");
        if postmaster_pid(&data).is_some_and(process_alive) {
            let _ = launcher
                .command(&binaries.path("pg_ctl"), false)
                .args(["stop", "--mode=immediate", "--wait", "--pgdata"])
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if fs::remove_dir_all(&dir).is_ok() {
            println!("postgres: removed a cluster left by an interrupted run ({dir})");
        }
    }
}

fn age(path: &Utf8Path) -> Option<Duration> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    SystemTime::now().duration_since(modified).ok()
}

/// The postmaster's pid: the first line of `postmaster.pid`.
fn postmaster_pid(data: &Utf8Path) -> Option<u32> {
    fs::read_to_string(data.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

/// True for a running process (a zombie counts as gone).
pub(crate) fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) if Utf8Path::new("/proc/self/stat").exists() => false,
        Err(_) => Command::new("ps")
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success()),
    }
}

/// A port on 127.0.0.1 that nothing listens on (a race with another process is possible, and rare).
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Waits for the status line of `postmaster.pid` (its eighth) to say `ready`.
fn wait_until_ready(data: &Utf8Path, pid: u32, dir: &Utf8Path) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let status = fs::read_to_string(data.join("postmaster.pid")).ok();
        if status.as_deref().and_then(|text| text.lines().nth(7)).is_some_and(|line| line.trim() == "ready") {
            return Ok(());
        }
        if !process_alive(pid) || Instant::now() > deadline {
            let log = fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            bail!("PostgreSQL did not become ready; its log says:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_bogus_pid_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX - 1));
    }
}
