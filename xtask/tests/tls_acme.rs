//! `xtask tls issue|renew` against pebble, the ACME test server, on loopback: the HTTP-01 challenge is
//! answered by real nginx running deploy/nginx/ in front of the real service, the certificate pebble
//! issues is the one nginx then serves, a forced renewal swaps in another one while a client keeps
//! making new TLS connections (each verified against pebble's root) and none fails, and a renewal that
//! `nginx -t` refuses leaves the previous certificate in place.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod support;
use support::edge::Edge;
use support::{Run, await_listening, free_port, program};

/// A name that resolves to loopback for pebble's validation with no DNS server of the test's own.
const NAME: &str = "localhost";

fn openssl(args: &[&str]) {
    let output = program("openssl").args(args).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// pebble on free loopback ports, validating HTTP-01 on nginx's port; stopped when dropped (also when
/// the test fails).
struct Pebble {
    child: Child,
    dir: PathBuf,
    port: u16,
    management: u16,
}

impl Pebble {
    fn start(dir: &Path, http_port: u16) -> Self {
        std::fs::create_dir_all(dir).expect("mkdir");
        let file = |name: &str| utf8(&dir.join(name)).to_owned();
        // pebble's own HTTPS (the directory) under a CA made here, which the xtask is told to trust.
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"];
        let ca = ["-subj", "/CN=directory CA", "-keyout", &file("ca.key"), "-out", &file("ca.pem")];
        openssl(&[&["req", "-x509"][..], &ec, &ca].concat());
        let leaf = [
            "-CA",
            &file("ca.pem"),
            "-CAkey",
            &file("ca.key"),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            &file("key.pem"),
            "-out",
            &file("cert.pem"),
        ];
        openssl(&[&["req", "-x509"][..], &ec, &leaf].concat());
        let (port, management) = (free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": file("cert.pem"),
            "privateKey": file("key.pem"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).expect("write");
        let log = std::fs::File::create(dir.join("pebble.log")).expect("log");
        let child = program("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            // Validate at once, and accept every nonce: the test is about the client, not pebble's chaos.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("pebble starts");
        let pebble = Self { child, dir: dir.to_owned(), port, management };
        let log =
            || format!("pebble did not start: {}", std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default());
        await_listening(port, Duration::from_secs(20), log);
        await_listening(management, Duration::from_secs(20), log);
        pebble
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    fn directory_ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The root pebble issues under (made anew at each start), from its management interface.
    fn issuing_root(&self) -> PathBuf {
        let path = self.dir.join("issuing-root.pem");
        let url = format!("https://127.0.0.1:{}/roots/0", self.management);
        let fetched = program("curl")
            .args(["--silent", "--show-error", "--fail", "--cacert", utf8(&self.directory_ca()), "--output"])
            .arg(&path)
            .arg(&url)
            .output()
            .expect("curl runs");
        assert!(fetched.status.success(), "{url}: {}", String::from_utf8_lossy(&fetched.stderr));
        path
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The certificate nginx serves for NAME: its serial and issuer.
fn served(edge: &Edge) -> (String, String) {
    let connect = format!("127.0.0.1:{}", edge.https);
    let handshake = program("openssl")
        .args(["s_client", "-connect", &connect, "-servername", NAME])
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    let shown = String::from_utf8_lossy(&handshake.stdout).into_owned();
    let mut x509 = program("openssl")
        .args(["x509", "-noout", "-serial", "-issuer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    x509.stdin.take().expect("stdin").write_all(shown.as_bytes()).expect("write");
    let output = x509.wait_with_output().expect("openssl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "no certificate in: {shown}{}", String::from_utf8_lossy(&handshake.stderr));
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_owned()
    };
    (field("serial="), field("issuer="))
}

/// The certificate nginx serves once it is no longer `old`: `nginx -s reload` only signals the master,
/// which then starts new workers.
fn served_after_reload(edge: &Edge, old: &(String, String)) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = served(edge);
        if now != *old || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request over a new TLS connection for NAME, the chain verified against `root`; its failure if any.
fn request(https: u16, root: &Path) -> Option<String> {
    let url = format!("https://{NAME}:{https}/healthz");
    let output = program("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "10", "--output", "/dev/null"])
        .args(["--resolve", &format!("{NAME}:{https}:127.0.0.1"), "--cacert", utf8(root), &url])
        .output()
        .expect("curl runs");
    (!output.status.success()).then(|| String::from_utf8_lossy(&output.stderr).trim().to_owned())
}

#[test]
fn a_certificate_from_pebble_is_served_by_nginx_and_renewed_without_a_failed_request() {
    let edge = Edge::start_with(NAME, |conf| conf);
    let pebble = Pebble::start(&edge.dir.join("pebble"), edge.http);
    let (state, metrics) = (edge.dir.join("acme-state"), edge.dir.join("metrics"));
    let (directory, directory_ca) = (pebble.directory(), pebble.directory_ca());
    let (conf, cert_dir) = (edge.nginx_conf(), edge.cert_dir());
    let tls = |action: &str, extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["tls", action, "--domain", NAME, "--directory", &directory, "--directory-ca", utf8(&directory_ca)])
            .args(["--root", utf8(&edge.dir), "--cert-dir", utf8(&cert_dir), "--state-dir", utf8(&state)])
            .args(["--metrics-dir", utf8(&metrics), "--nginx-conf", utf8(&conf)])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("xtask runs");
        Run(output)
    };

    let placeholder = served(&edge);
    assert!(!placeholder.1.contains("Pebble"), "{placeholder:?}");
    let issue = tls("issue", &[]).ok();
    assert!(issue.text().contains("nginx -t passed, nginx reloaded"), "{}", issue.text());
    let issued = served_after_reload(&edge, &placeholder);
    assert!(issued.1.contains("Pebble Intermediate CA"), "nginx serves {issued:?}");
    assert_ne!(issued.0, placeholder.0);
    let root = pebble.issuing_root();
    assert_eq!(request(edge.https, &root), None, "the served chain verifies against pebble's root");

    // The key is the owner's alone; the account key too; no challenge response is left behind.
    let mode = |path: PathBuf| std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(cert_dir.join("privkey.pem")), 0o600);
    let accounts: Vec<PathBuf> =
        std::fs::read_dir(&state).expect("state").map(|entry| entry.expect("entry").path()).collect();
    assert!(accounts.len() == 1 && mode(accounts[0].clone()) == 0o600, "{accounts:?}");
    let challenges = edge.dir.join("acme/.well-known/acme-challenge");
    assert_eq!(std::fs::read_dir(&challenges).expect("the challenge directory").count(), 0);

    // The expiry metric is the served certificate's.
    let metric = std::fs::read_to_string(metrics.join("shipshape_tls.prom")).expect("the metrics file");
    let expires: f64 = metric
        .lines()
        .find_map(|line| {
            line.strip_prefix(&format!("shipshape_tls_certificate_expiry_timestamp_seconds{{domain=\"{NAME}\"}} "))
        })
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no expiry sample in {metric}"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("time").as_secs_f64();
    assert!(expires > now + 86_400.0, "expires at {expires}, now {now}");

    // Not due: nothing is ordered, nothing reloaded.
    let early = tls("renew", &["--days", "1"]).ok();
    assert!(early.text().contains("not due for renewal"), "{}", early.text());
    assert_eq!(served(&edge), issued);

    // A forced renewal while a client keeps opening TLS connections through nginx.
    let (stop, sent, failures) = (AtomicBool::new(false), AtomicUsize::new(0), Mutex::new(Vec::new()));
    let wait_for = |count: usize| {
        while sent.load(Ordering::SeqCst) < count {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                if let Some(failure) = request(edge.https, &root) {
                    failures.lock().expect("lock").push(failure);
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
        });
        wait_for(5);
        let renew = tls("renew", &["--force"]);
        // Requests after the reload too, through the new workers.
        wait_for(sent.load(Ordering::SeqCst) + 20);
        stop.store(true, Ordering::SeqCst);
        let renew = renew.ok();
        assert!(renew.text().contains("nginx reloaded"), "{}", renew.text());
    });
    let failures = failures.into_inner().expect("lock");
    println!("{} requests during and after the renewal", sent.load(Ordering::SeqCst));
    assert!(failures.is_empty(), "{} of {} requests failed: {failures:?}", failures.len(), sent.into_inner());
    let renewed = served_after_reload(&edge, &issued);
    assert!(renewed.1.contains("Pebble Intermediate CA"), "{renewed:?}");
    assert_ne!(renewed.0, issued.0, "the renewal put a new certificate in service");

    // A renewal nginx -t refuses (here a broken snippet): the previous pair stays, nginx is not reloaded.
    let before = (
        std::fs::read(cert_dir.join("fullchain.pem")).expect("read"),
        std::fs::read(cert_dir.join("privkey.pem")).expect("read"),
    );
    let snippet = edge.dir.join("conf/shipshape/snippets/errors.conf");
    std::fs::write(&snippet, "this is not nginx;\n").expect("write");
    tls("renew", &["--force"]).failed(&["nginx -t refused", "the previous certificate and key are back in place"]);
    let after = (
        std::fs::read(cert_dir.join("fullchain.pem")).expect("read"),
        std::fs::read(cert_dir.join("privkey.pem")).expect("read"),
    );
    assert!(before == after, "the files nginx reads changed");
    assert_eq!(served(&edge), renewed);
}
