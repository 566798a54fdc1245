//! `xtask tls expiry` on a certificate made by openssl for the test: the expiry metric the alerts read
//! carries the certificate's own notAfter; something that is not a certificate is refused by name.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

mod support;
use support::Run;

fn xtask(args: &[&str]) -> Run {
    Run(Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().expect("xtask runs"))
}

#[test]
fn the_served_certificates_expiry_becomes_the_metric_the_alerts_read() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-expiry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (cert, key) = (dir.join("fullchain.pem"), dir.join("privkey.pem"));
    let made = support::program("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
        .args(["-subj", "/CN=app.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let metrics = dir.join("metrics");
    let (cert, metrics_arg) = (cert.to_str().expect("utf-8"), metrics.to_str().expect("utf-8"));
    let run = xtask(&["tls", "expiry", "--cert", cert, "--domain", "app.test", "--metrics-dir", metrics_arg]).ok();
    assert!(run.text().contains("(29 days left)") || run.text().contains("(30 days left)"), "{}", run.text());

    let text = std::fs::read_to_string(metrics.join("shipshape_tls.prom")).expect("the metrics file");
    let line = text
        .lines()
        .find(|line| line.starts_with("shipshape_tls_certificate_expiry_timestamp_seconds{domain=\"app.test\"} "));
    let value: f64 = line.and_then(|line| line.rsplit(' ').next()).and_then(|v| v.parse().ok()).expect("a sample");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("time").as_secs_f64();
    assert!((value - now - 30.0 * 86_400.0).abs() < 120.0, "expires at {value}, now {now}");

    let key = key.to_str().expect("utf-8");
    xtask(&["tls", "expiry", "--cert", key, "--domain", "app.test", "--metrics-dir", metrics_arg])
        .failed(&["privkey.pem is not a readable PEM certificate"]);
    let _ = std::fs::remove_dir_all(&dir);
}
