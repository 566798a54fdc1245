//! The host target's configuration: `<root>/deploy.env`, `KEY=VALUE` lines as systemd's
//! `EnvironmentFile` reads them. `DEPLOY_*` keys set up the deploy; every other key is the service's
//! environment (deploy/env.example), passed to each slot.
//!
//! The slots listen on unix sockets under `<root>/run/`, and nginx connects through the `live.sock` and
//! `standby.sock` links (deploy/nginx/upstream.conf), so the deploy needs no settings for nginx at all.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use super::layout::{Layout, Slot};
use crate::process;

/// The `DEPLOY_*` keys deploy.env may set, with their defaults.
const SETTINGS: [(&str, &str); 8] = [
    ("DEPLOY_BLUE_METRICS_ADDR", "127.0.0.1:9001"),
    ("DEPLOY_GREEN_METRICS_ADDR", "127.0.0.1:9002"),
    ("DEPLOY_KEEP_RELEASES", "5"),
    ("DEPLOY_HEALTH_TIMEOUT", "30"),
    ("DEPLOY_VERIFY_SECONDS", "10"),
    ("DEPLOY_STOP_TIMEOUT", "60"),
    // Empty: the deploy starts the slots as processes; `shipshape@`: as instances of that systemd unit.
    ("DEPLOY_SYSTEMD_UNIT", ""),
    // Backups up to this size are restored into a scratch database before MIGRATE, to prove them.
    ("DEPLOY_VERIFY_BACKUP_MAX", super::restorable::DEFAULT_MAX),
];

/// A socket path longer than this does not fit in `sockaddr_un` (108 bytes with its terminator).
const MAX_SOCKET_PATH: usize = 100;

#[derive(Debug, Clone)]
pub(crate) struct HostConfig {
    pub(crate) layout: Layout,
    pub(crate) app_env: Vec<(String, String)>,
    blue_metrics: String,
    green_metrics: String,
    pub(crate) keep_releases: usize,
    pub(crate) health_timeout: Duration,
    pub(crate) verify_window: Duration,
    pub(crate) stop_timeout: Duration,
    /// The systemd template unit the slots run as (`shipshape@`), if any.
    pub(crate) systemd_unit: Option<String>,
    /// Bytes: a bigger pre-migration backup is not restored to prove it.
    pub(crate) verify_backup_max: u64,
}

impl HostConfig {
    pub(crate) fn load(layout: &Layout) -> Result<Self> {
        let file = layout.deploy_env();
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
            if !key.starts_with("DEPLOY_") {
                app_env.push((key, value));
            } else if SETTINGS.iter().any(|(known, _)| *known == key) {
                deploy.insert(key, value);
            } else {
                let known: Vec<&str> = SETTINGS.iter().map(|(known, _)| *known).collect();
                bail!("{file}:{}: {key} is not a deploy setting; the settings are {}", number + 1, known.join(", "));
            }
        }
        let get = |key: &str| {
            deploy.get(key).cloned().unwrap_or_else(|| {
                SETTINGS
                    .iter()
                    .find(|(known, _)| *known == key)
                    .map(|(_, default)| (*default).to_owned())
                    .unwrap_or_default()
            })
        };
        let seconds = |key: &str| -> Result<Duration> {
            let value = get(key);
            let parsed: f64 =
                value.parse().with_context(|| format!("{file}: {key}={value} is not a number of seconds"))?;
            Ok(Duration::from_secs_f64(parsed))
        };
        let config = Self {
            layout: layout.clone(),
            app_env,
            blue_metrics: get("DEPLOY_BLUE_METRICS_ADDR"),
            green_metrics: get("DEPLOY_GREEN_METRICS_ADDR"),
            keep_releases: get("DEPLOY_KEEP_RELEASES")
                .parse()
                .with_context(|| format!("{file}: DEPLOY_KEEP_RELEASES is not a number"))?,
            health_timeout: seconds("DEPLOY_HEALTH_TIMEOUT")?,
            verify_window: seconds("DEPLOY_VERIFY_SECONDS")?,
            stop_timeout: seconds("DEPLOY_STOP_TIMEOUT")?,
            systemd_unit: Some(get("DEPLOY_SYSTEMD_UNIT")).filter(|unit| !unit.is_empty()),
            verify_backup_max: super::restorable::parse_size(&get("DEPLOY_VERIFY_BACKUP_MAX")).with_context(|| {
                format!("{file}: DEPLOY_VERIFY_BACKUP_MAX is not a size (bytes, or e.g. 512MiB, 1GiB)")
            })?,
        };
        let longest = layout.socket(Slot::Green);
        if longest.as_str().len() > MAX_SOCKET_PATH {
            bail!(
                "{longest} is too long for a unix socket path: use a --root of at most {} bytes",
                MAX_SOCKET_PATH - 15
            );
        }
        Ok(config)
    }

    /// `program` with the service's environment: exactly deploy.env's keys, none of the deploying
    /// shell's (PATH and the locale aside), for the slots, the pre-deploy check and the migrations.
    pub(crate) fn service(&self, program: &camino::Utf8Path) -> std::process::Command {
        process::service(program, self.app_env.iter().map(|(key, value)| (key, value)))
    }

    /// The slot's metrics address.
    pub(crate) fn metrics_addr(&self, slot: Slot) -> &str {
        match slot {
            Slot::Blue => &self.blue_metrics,
            Slot::Green => &self.green_metrics,
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
