//! A new certificate into the directory nginx reads, all or nothing: the key (0600) and the chain each
//! replaced by a rename, `nginx -t`, and the previous pair put back if nginx refuses the new one. nginx
//! reads certificates only when it loads its configuration, so the running edge keeps serving the old
//! pair until the reload; the reload (a graceful one: old workers finish their connections) happens only
//! when the certificate changed.

use std::process::Command;

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use super::acme::PrivateKeyPem;
use crate::deploy::layout::write_atomically;

/// What the swap did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Swap {
    /// The same certificate was already there: nothing written, no reload.
    Unchanged,
    /// Written, accepted by `nginx -t`, and nginx reloaded.
    Reloaded,
}

/// The nginx that serves the certificate: its configuration file, or nginx's own default.
pub(crate) struct Nginx<'a> {
    pub(crate) conf: Option<&'a Utf8Path>,
}

impl Nginx<'_> {
    fn command(&self, args: &[&str]) -> Result<Command> {
        let program = crate::tools::NGINX.path().context("nginx is not installed")?;
        let mut command = Command::new(program);
        if let Some(conf) = self.conf {
            command.arg("-c").arg(conf);
        }
        command.args(args);
        Ok(command)
    }

    fn test(&self) -> Result<()> {
        let output = self.command(&["-t", "-q"])?.output().context("running nginx -t")?;
        if !output.status.success() {
            bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(())
    }

    fn reload(&self) -> Result<()> {
        crate::process::output(self.command(&["-s", "reload"])?, "nginx -s reload").map(drop)
    }
}

/// The files nginx reads: `ssl_certificate` and `ssl_certificate_key` of deploy/nginx/shipshape.conf.
pub(crate) fn fullchain(cert_dir: &Utf8Path) -> Utf8PathBuf {
    cert_dir.join("fullchain.pem")
}

fn privkey(cert_dir: &Utf8Path) -> Utf8PathBuf {
    cert_dir.join("privkey.pem")
}

/// Puts `fullchain` and `key` where nginx reads them and reloads it, or leaves everything as it was.
pub(crate) fn install(cert_dir: &Utf8Path, fullchain_pem: &str, key: &PrivateKeyPem, nginx: &Nginx) -> Result<Swap> {
    let (chain_file, key_file) = (fullchain(cert_dir), privkey(cert_dir));
    let previous = (std::fs::read_to_string(&chain_file).ok(), std::fs::read_to_string(&key_file).ok());
    if previous.0.as_deref() == Some(fullchain_pem) {
        return Ok(Swap::Unchanged);
    }
    std::fs::create_dir_all(cert_dir).with_context(|| format!("creating {cert_dir}"))?;
    write_atomically(&key_file, &key.0, 0o600)?;
    write_atomically(&chain_file, fullchain_pem, 0o644)?;
    if let Err(refused) = nginx.test() {
        let restored = restore(&chain_file, previous.0.as_deref(), 0o644)
            .and_then(|()| restore(&key_file, previous.1.as_deref(), 0o600));
        let state = match restored {
            Ok(()) => "the previous certificate and key are back in place and nginx was not reloaded".to_owned(),
            Err(error) => format!("putting the previous files back failed too ({error:#}): check {cert_dir}"),
        };
        bail!("nginx -t refused the configuration with the new certificate: {refused}; {state}");
    }
    nginx.reload().context("the new certificate is in place and nginx -t accepts it, but the reload failed")?;
    Ok(Swap::Reloaded)
}

fn restore(file: &Utf8Path, previous: Option<&str>, mode: u32) -> Result<()> {
    match previous {
        Some(text) => write_atomically(file, text, mode),
        None => std::fs::remove_file(file).with_context(|| format!("removing {file}")),
    }
}
