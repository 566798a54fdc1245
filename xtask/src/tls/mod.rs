//! `cargo xtask tls`: certificates for the host target's nginx edge.
//!
//! - `issue` / `renew`: an ACME certificate (Let's Encrypt by default) through HTTP-01, the challenge
//!   answered by nginx from the deploy root's `acme/` directory, swapped in with `nginx -t` and a reload
//!   only when it changed (`swap.rs`), and its expiry written as the metric below. `renew` orders only
//!   within `--days` of expiry (or with `--force`); `deploy/systemd/shipshape-tls-renew.timer` runs it daily.
//! - `expiry`: when the certificate expires, as the `shipshape_tls_certificate_expiry_timestamp_seconds{domain}`
//!   textfile metric the expiry alerts read; the date comes from `openssl x509 -enddate`.
//!
//! The ACME client is instant-acme without its hyper client: its requests go through the ureq (rustls,
//! ring) the xtask already has for S3 (`transport.rs`), so the protocol, the account and the nonce
//! handling come from a maintained crate and the xtask gains no async HTTP stack. Its tokio dependency
//! compiles only the `time` feature, which nothing here calls (the polls sleep on the thread).
//! Cost, `cargo build -p xtask` from scratch on 2 cores: 59.7 s CPU (user + system) before, 69.6 s after.
//! certbot or lego would cost no build time, but a program to install, keep and parse on every host,
//! where now the xtask the deploy already copies is all a host needs.

mod acme;
mod swap;
mod transport;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, Subcommand};

use crate::deploy::layout::Layout;
use crate::textfile;

#[derive(Args, Debug)]
pub(crate) struct TlsArgs {
    #[command(subcommand)]
    action: TlsAction,
}

#[derive(Subcommand, Debug)]
enum TlsAction {
    /// Obtain a certificate from the ACME directory and put it in service (nginx -t, reload).
    Issue(AcmeArgs),
    /// Renew the certificate nginx serves when it expires within --days (or with --force).
    Renew {
        #[command(flatten)]
        acme: AcmeArgs,
        /// Renew when the served certificate expires within this many days.
        #[arg(long, default_value_t = 30)]
        days: u64,
        /// Renew whatever the date.
        #[arg(long)]
        force: bool,
    },
    /// Print when the certificate expires and write it to node_exporter's textfile directory.
    Expiry {
        /// The certificate (PEM), e.g. nginx's fullchain.pem: its first certificate is the server's.
        #[arg(long)]
        cert: Utf8PathBuf,
        /// The name it serves, the metric's `domain` label.
        #[arg(long)]
        domain: String,
        /// node_exporter's textfile directory.
        #[arg(long, value_name = "DIR")]
        metrics_dir: Utf8PathBuf,
    },
}

/// Let's Encrypt's production directory.
const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Args, Debug)]
struct AcmeArgs {
    /// A name the certificate is for (repeat for more); the first is the subject and the metric's label.
    #[arg(long = "domain", value_name = "NAME", required = true)]
    domains: Vec<String>,
    /// The account's contact address, for the CA's notices.
    #[arg(long)]
    email: Option<String>,
    /// The ACME directory URL (e.g. Let's Encrypt's staging one while trying things out).
    #[arg(long, value_name = "URL", default_value = LETS_ENCRYPT)]
    directory: String,
    /// Trust only these PEM roots for the directory's HTTPS (a private or test CA).
    #[arg(long, value_name = "PEM")]
    directory_ca: Option<Utf8PathBuf>,
    /// The deploy root: the challenges go to <root>/acme/.well-known/acme-challenge/, which nginx serves.
    #[arg(long, value_name = "DIR", default_value = "/srv/shipshape")]
    root: Utf8PathBuf,
    /// Where nginx reads fullchain.pem and privkey.pem (shipshape.conf's `tls/`).
    #[arg(long, value_name = "DIR", default_value = "/etc/nginx/tls")]
    cert_dir: Utf8PathBuf,
    /// Where the ACME account's key is kept.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/shipshape-tls")]
    state_dir: Utf8PathBuf,
    /// node_exporter's textfile directory, for the expiry metric.
    #[arg(long, value_name = "DIR")]
    metrics_dir: Utf8PathBuf,
    /// nginx's configuration file, for `nginx -t` and the reload (default: nginx's own).
    #[arg(long, value_name = "FILE")]
    nginx_conf: Option<Utf8PathBuf>,
}

pub(crate) fn run(args: &TlsArgs) -> Result<()> {
    match &args.action {
        TlsAction::Issue(acme) => obtain(acme),
        TlsAction::Renew { acme, days, force } => {
            let cert = swap::fullchain(&acme.cert_dir);
            let due = match expires_at(&cert) {
                Ok((expires, _)) if !force => {
                    let left = expires.saturating_sub(now());
                    println!("tls: {cert} expires in {} days", left / 86_400);
                    left < days * 86_400
                }
                Ok(_) => true,
                Err(error) => {
                    println!("tls: no certificate to renew yet ({error:#}): issuing one");
                    true
                }
            };
            if due {
                return obtain(acme);
            }
            println!("tls: not due for renewal (renews within {days} days of expiry)");
            expiry(&cert, &acme.domains[0], &acme.metrics_dir)
        }
        TlsAction::Expiry { cert, domain, metrics_dir } => expiry(cert, domain, metrics_dir),
    }
}

/// Orders a certificate, swaps it in and publishes its expiry.
fn obtain(args: &AcmeArgs) -> Result<()> {
    for domain in &args.domains {
        check_domain(domain)?;
        if domain.contains('*') {
            bail!("--domain {domain}: a wildcard needs a DNS-01 challenge, and this orders through HTTP-01");
        }
    }
    let webroot = Layout::new(&args.root).acme_webroot();
    let client = acme::Client {
        directory: &args.directory,
        directory_ca: args.directory_ca.as_deref(),
        email: args.email.as_deref(),
        state_dir: &args.state_dir,
        webroot: &webroot,
    };
    println!("tls: ordering a certificate for {} from {}", args.domains.join(", "), args.directory);
    let issued = client.order(&args.domains)?;
    let nginx = swap::Nginx { conf: args.nginx_conf.as_deref() };
    match swap::install(&args.cert_dir, &issued.fullchain, &issued.key, &nginx)? {
        swap::Swap::Unchanged => println!("tls: the certificate is the one already served: nginx not reloaded"),
        swap::Swap::Reloaded => println!("tls: new certificate in {}, nginx -t passed, nginx reloaded", args.cert_dir),
    }
    expiry(&swap::fullchain(&args.cert_dir), &args.domains[0], &args.metrics_dir)
}

fn check_domain(domain: &str) -> Result<()> {
    if domain.is_empty() || !domain.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*')) {
        bail!("--domain {domain:?} is not a host name");
    }
    Ok(())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// When `cert` expires, in Unix seconds and as openssl prints it.
fn expires_at(cert: &Utf8Path) -> Result<(u64, String)> {
    let mut openssl = std::process::Command::new(crate::tools::OPENSSL.path().context("openssl is not installed")?);
    openssl.args(["x509", "-enddate", "-noout", "-in", cert.as_str()]);
    let out = crate::process::output(openssl, &format!("openssl x509 -enddate of {cert}"))
        .with_context(|| format!("{cert} is not a readable PEM certificate"))?;
    let expires = not_after(&out).with_context(|| format!("openssl printed no date for {cert}: {out}"))?;
    Ok((expires, out.trim().trim_start_matches("notAfter=").to_owned()))
}

/// Prints when `cert` expires and writes it as the expiry metric of `domain`.
fn expiry(cert: &Utf8Path, domain: &str, metrics_dir: &Utf8Path) -> Result<()> {
    check_domain(domain)?;
    let (expires, date) = expires_at(cert)?;
    let label = format!("domain=\"{domain}\"");
    textfile::set(metrics_dir.as_std_path(), "tls", textfile::CERTIFICATE_EXPIRY, &label, expires as f64)
        .with_context(|| format!("writing metrics into {metrics_dir}"))?;
    let left = (UNIX_EPOCH + Duration::from_secs(expires)).duration_since(SystemTime::now()).unwrap_or_default();
    println!("tls: {domain}: {cert} expires {date} ({} days left)", left.as_secs() / 86_400);
    Ok(())
}

/// Unix seconds of `notAfter=Dec  1 12:00:00 2027 GMT`.
fn not_after(text: &str) -> Option<u64> {
    let date = text.trim().strip_prefix("notAfter=")?.strip_suffix(" GMT")?;
    let words: Vec<&str> = date.split_whitespace().collect();
    let [month, day, time, year] = words.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = u32::try_from(MONTHS.iter().position(|name| name == month)? + 1).ok()?;
    let mut clock = time.split(':').map(|part| part.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    let days = crate::offsite::days_since_epoch((year.parse().ok()?, month, day.parse().ok()?));
    Some(u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_dates_become_unix_seconds() {
        assert_eq!(not_after("notAfter=Jan  1 00:00:00 1970 GMT\n"), Some(0));
        assert_eq!(not_after("notAfter=Dec  1 12:30:15 2027 GMT"), Some(1_827_664_215));
        assert_eq!(not_after("notAfter=Foo  1 12:30:15 2027 GMT"), None);
        assert_eq!(not_after("garbage"), None);
    }
}
