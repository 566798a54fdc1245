//! The Docker fallback: a pinned postgres image on a loopback port, removed on every way out.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Database, MAX_CONNECTIONS, server_settings};
use crate::{cleanup, pins};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// True when a Docker engine answers (a client alone is not enough).
pub(super) fn docker_usable() -> bool {
    which::which("docker").is_ok()
        && docker(&["info", "--format", "{{.ServerVersion}}"]).is_ok_and(|output| output.status.success())
}

fn docker(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("docker").args(args).stdin(Stdio::null()).output()
}

pub(super) fn start() -> Result<Database> {
    let started = Instant::now();
    let name = format!("shipshape-postgres-{}", std::process::id());
    let mut args = vec!["run", "--detach", "--rm", "--name", &name, "--publish", "127.0.0.1::5432"];
    args.extend(["--env", "POSTGRES_HOST_AUTH_METHOD=trust", pins::POSTGRES_IMAGE]);
    let settings = server_settings();
    for setting in &settings {
        args.extend(["-c", setting]);
    }
    let run = docker(&args).context("running docker")?;
    if !run.status.success() {
        bail!("docker run {} failed:\n{}", pins::POSTGRES_IMAGE, String::from_utf8_lossy(&run.stderr));
    }
    let remove = cleanup::register({
        let name = name.clone();
        move || {
            let _ = Command::new("docker")
                .args(["rm", "--force", &name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    });
    let published = docker(&["port", &name, "5432/tcp"])?;
    let published = String::from_utf8_lossy(&published.stdout);
    let port: u16 = published
        .lines()
        .find_map(|line| line.rsplit_once(':')?.1.trim().parse().ok())
        .with_context(|| format!("reading the published port from `docker port`: {published:?}"))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    while !docker(&["exec", &name, "pg_isready", "--quiet", "--username=postgres", "--host=127.0.0.1"])?
        .status
        .success()
    {
        if Instant::now() > deadline {
            bail!("the postgres container {name} was not ready after {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("postgres: container {name} ready in {:.2} s on 127.0.0.1:{port}", started.elapsed().as_secs_f64());
    Ok(Database {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        max_connections: MAX_CONNECTIONS,
        cluster_dir: None,
        _stop: vec![remove],
    })
}
