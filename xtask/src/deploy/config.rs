//! The host target's configuration: `<root>/deploy.env`, `KEY=VALUE` lines as systemd's
//! `EnvironmentFile` reads them. `DEPLOY_*` keys set up the deploy; every other key is the service's
//! environment (deploy/env.example), passed to each slot.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use super::slots::Slot;

#[derive(Debug, Clone)]
pub(crate) struct HostConfig {
    pub(crate) root: Utf8PathBuf,
    pub(crate) app_env: Vec<(String, String)>,
    blue: (String, String),
    green: (String, String),
    /// The file nginx includes for the upstream (deploy/nginx/upstream.conf's shape).
    pub(crate) upstream_file: Utf8PathBuf,
    /// The command that makes nginx read it again.
    pub(crate) nginx_reload: Vec<String>,
    /// nginx's master pid file, to find the workers that must exit before the old slot stops.
    pub(crate) nginx_pid_file: Utf8PathBuf,
    pub(crate) keep_releases: usize,
    pub(crate) health_timeout: Duration,
    pub(crate) verify_window: Duration,
    pub(crate) stop_timeout: Duration,
}

impl HostConfig {
    pub(crate) fn load(root: &Utf8Path) -> Result<Self> {
        let file = root.join("deploy.env");
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!("{file} is missing: the host target reads the service's environment and DEPLOY_* settings from it (see deploy/host.env.example)")
        })?;
        let mut deploy = std::collections::BTreeMap::new();
        let mut app_env = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                bail!("{file}:{}: not KEY=VALUE: {line}", number + 1);
            };
            let (key, value) = (key.trim().to_owned(), value.trim().to_owned());
            if key.starts_with("DEPLOY_") {
                deploy.insert(key, value);
            } else {
                app_env.push((key, value));
            }
        }
        let get = |key: &str, default: &str| deploy.get(key).cloned().unwrap_or_else(|| default.to_owned());
        let seconds = |key: &str, default: &str| -> Result<Duration> {
            let value = get(key, default);
            let parsed: f64 =
                value.parse().with_context(|| format!("{file}: {key}={value} is not a number of seconds"))?;
            Ok(Duration::from_secs_f64(parsed))
        };
        Ok(Self {
            root: root.to_owned(),
            app_env,
            blue: (get("DEPLOY_BLUE_ADDR", "127.0.0.1:8001"), get("DEPLOY_BLUE_METRICS_ADDR", "127.0.0.1:9001")),
            green: (get("DEPLOY_GREEN_ADDR", "127.0.0.1:8002"), get("DEPLOY_GREEN_METRICS_ADDR", "127.0.0.1:9002")),
            upstream_file: get("DEPLOY_UPSTREAM_FILE", "/etc/nginx/shipshape/upstream.conf").into(),
            nginx_reload: get("DEPLOY_NGINX_RELOAD", "nginx -s reload").split_whitespace().map(str::to_owned).collect(),
            nginx_pid_file: get("DEPLOY_NGINX_PID_FILE", "/run/nginx.pid").into(),
            keep_releases: get("DEPLOY_KEEP_RELEASES", "5").parse().context("DEPLOY_KEEP_RELEASES is not a number")?,
            health_timeout: seconds("DEPLOY_HEALTH_TIMEOUT", "30")?,
            verify_window: seconds("DEPLOY_VERIFY_SECONDS", "10")?,
            stop_timeout: seconds("DEPLOY_STOP_TIMEOUT", "60")?,
        })
    }

    /// The slot's listen address and metrics address.
    pub(crate) fn addresses(&self, slot: Slot) -> &(String, String) {
        match slot {
            Slot::Blue => &self.blue,
            Slot::Green => &self.green,
        }
    }

    /// The service's `DATABASE_URL`, read as the service reads it (also from `DATABASE_URL_FILE`).
    pub(crate) fn database_url(&self) -> Result<String> {
        let find = |key: &str| self.app_env.iter().find(|(name, _)| name == key).map(|(_, value)| value.clone());
        if let Some(url) = find("DATABASE_URL") {
            return Ok(url);
        }
        let path = find("DATABASE_URL_FILE").context("deploy.env sets neither DATABASE_URL nor DATABASE_URL_FILE")?;
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading DATABASE_URL_FILE={path}"))?
            .trim()
            .to_owned())
    }
}
