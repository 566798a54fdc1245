//! Moving traffic between the slots: rewrite the upstream file (active slot first, the other as
//! `backup`), `nginx -s reload`, and know which worker processes still route by the old file. Those
//! keep sending requests to the old slot for ~100–170 ms after the reload returns (REFERENCES §5), so
//! the old slot may stop only once they have exited.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::config::HostConfig;
use super::records::write_atomically;
use super::slots::Slot;
use crate::postgres::{client, process_alive};

/// The upstream with `active` taking the traffic and `standby` behind it as a warm `backup`.
pub(crate) fn upstream(config: &HostConfig, active: Slot) -> String {
    let (primary, _) = config.addresses(active);
    let (backup, _) = config.addresses(active.other());
    format!(
        "# Written by `cargo xtask deploy`: the {active} slot serves, the {standby} slot is the backup.\n\
         upstream shipshape_app {{\n    server {primary} max_fails=1 fail_timeout=5s;  # {active}\n    server {backup} backup;  # {standby}\n    keepalive 32;\n    keepalive_timeout 20s;\n}}\n",
        active = active.name(),
        standby = active.other().name(),
    )
}

/// Points nginx at `active`; returns the workers that were routing by the previous file.
pub(crate) fn switch(config: &HostConfig, active: Slot) -> Result<Vec<u32>> {
    let wanted = upstream(config, active);
    // Every reload resets idle client keep-alive connections: none when nothing changes.
    if std::fs::read_to_string(&config.upstream_file).is_ok_and(|current| current == wanted) {
        return Ok(Vec::new());
    }
    write_atomically(&config.upstream_file, &wanted)?;
    let workers = workers(config)?;
    let (program, args) = config.nginx_reload.split_first().context("DEPLOY_NGINX_RELOAD is empty")?;
    let mut reload = std::process::Command::new(program);
    reload.args(args);
    client::output(reload, &format!("`{}`", config.nginx_reload.join(" ")))?;
    Ok(workers)
}

/// The children of nginx's master process.
fn workers(config: &HostConfig) -> Result<Vec<u32>> {
    let path = &config.nginx_pid_file;
    let master: u32 = std::fs::read_to_string(path)
        .with_context(|| format!("reading nginx's pid file {path} (DEPLOY_NGINX_PID_FILE): is nginx running?"))?
        .trim()
        .parse()
        .with_context(|| format!("{path} holds no pid"))?;
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the parenthesised name: state, then the parent pid.
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if parent == Some(master) {
            children.push(pid);
        }
    }
    Ok(children)
}

/// Waits until every process in `workers` has exited.
pub(crate) fn wait_for_exit(workers: &[u32], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while let Some(pid) = workers.iter().find(|pid| process_alive(**pid)) {
        if Instant::now() > deadline {
            bail!("nginx worker {pid} from before the reload is still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
