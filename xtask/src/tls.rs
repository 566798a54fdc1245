//! `cargo xtask tls expiry`: when the certificate the edge serves expires, as the
//! `shipshape_tls_certificate_expiry_timestamp_seconds{domain}` textfile metric that the expiry alerts
//! read. The date comes from `openssl x509 -enddate`, which every host with nginx has.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use camino::Utf8PathBuf;
use clap::{Args, Subcommand};

use crate::postgres::client;
use crate::textfile;

#[derive(Args, Debug)]
pub(crate) struct TlsArgs {
    #[command(subcommand)]
    action: TlsAction,
}

#[derive(Subcommand, Debug)]
enum TlsAction {
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

pub(crate) fn run(args: &TlsArgs) -> Result<()> {
    let TlsAction::Expiry { cert, domain, metrics_dir } = &args.action;
    if !domain.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*')) {
        bail!("--domain {domain:?} is not a host name");
    }
    let mut openssl = std::process::Command::new(crate::tools::OPENSSL.path().context("openssl is not installed")?);
    openssl.args(["x509", "-enddate", "-noout", "-in", cert.as_str()]);
    let out = client::output(openssl, &format!("openssl x509 -enddate of {cert}"))
        .with_context(|| format!("{cert} is not a readable PEM certificate"))?;
    let expires = not_after(&out).with_context(|| format!("openssl printed no date for {cert}: {out}"))?;
    let label = format!("domain=\"{domain}\"");
    textfile::set(metrics_dir.as_std_path(), "tls", textfile::CERTIFICATE_EXPIRY, &label, expires as f64)
        .with_context(|| format!("writing metrics into {metrics_dir}"))?;
    let left =
        (UNIX_EPOCH + Duration::from_secs(expires)).duration_since(std::time::SystemTime::now()).unwrap_or_default();
    println!(
        "tls: {domain}: {cert} expires {} ({} days left)",
        out.trim().trim_start_matches("notAfter="),
        left.as_secs() / 86_400
    );
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
