//! `xtask smoke URL` against the real service in production mode, and against a careless server: each
//! check passes or fails for the right reason, and any failure fails the command with the list.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output};

mod support;
use support::edge::{Edge, serve, substitute};
use support::{as_root, free_port};

/// `app serve` on a loopback port, stopped when dropped.
struct Service {
    child: Child,
    port: u16,
}

impl Service {
    fn start() -> Self {
        let port = free_port();
        // Reached directly, with no proxy in front: nothing to trust.
        let direct = [("SILENCED_CHECKS", "security.W021,proxy.W001")];
        let child = serve(&format!("127.0.0.1:{port}"), &direct, || TcpStream::connect(("127.0.0.1", port)).is_ok());
        Self { child, port }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smoke(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).arg("smoke").args(args).output().expect("xtask runs")
}

/// The checks' lines: (passed, line).
fn lines(output: &Output) -> Vec<(bool, String)> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            line.strip_prefix("✔ ")
                .map(|rest| (true, rest.to_owned()))
                .or_else(|| line.strip_prefix("✘ ").map(|rest| (false, rest.to_owned())))
        })
        .collect()
}

fn assert_checks(output: &Output, expected: &[(&str, bool)]) {
    let found = lines(output);
    assert_eq!(found.len(), expected.len(), "{found:?}");
    for ((passed, line), (name, want)) in found.iter().zip(expected) {
        assert!(line.starts_with(name), "{line} is not {name}");
        assert_eq!(passed, want, "{line}");
    }
}

const ALL_PASS: [(&str, bool); 10] = [
    ("/healthz answers 200", true),
    ("/readyz answers 200", true),
    ("plain HTTP redirects to HTTPS with 308", true),
    ("HSTS for at least a year, with includeSubDomains", true),
    ("the security headers are present", true),
    ("no server version", true),
    ("an unknown Host is refused", true),
    ("TLS sessions are resumed", true),
    ("the protected route answers 401", true),
    ("CORS refuses an unknown origin", true),
];

#[test]
fn the_service_behind_the_production_nginx_passes_every_check() {
    let edge = Edge::start();
    let url = format!("https://127.0.0.1:{}", edge.https);
    let output = smoke(&[&url, "--host", "app.test", "--http-port", &edge.http.to_string(), "--insecure"]);
    assert_checks(&output, &ALL_PASS);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("all 10 checks passed"));
    // Without --host the TLS server name is the bare address, which the default server refuses in the
    // handshake: a service must be smoked by the name it serves.
    let by_address = smoke(&[&url, "--http-port", &edge.http.to_string(), "--insecure"]);
    assert!(!by_address.status.success());
    assert!(lines(&by_address).iter().any(|(passed, line)| !passed && line.starts_with("/healthz answers 200")));
}

#[test]
fn a_default_server_without_the_tls_settings_and_a_return_fails_the_edge_checks() {
    // The default 443 server as nginx's own examples write it: it only refuses unknown names.
    let edge = Edge::start_with("app.test", |conf| {
        substitute(
            &conf,
            "    include shipshape/snippets/tls.conf;\n    ssl_reject_handshake on;\n    return 444;\n",
            "    ssl_reject_handshake on;\n",
        )
    });
    let url = format!("https://127.0.0.1:{}", edge.https);
    let output = smoke(&[&url, "--host", "app.test", "--http-port", &edge.http.to_string(), "--insecure"]);
    let failed: Vec<String> = lines(&output).into_iter().filter(|(passed, _)| !passed).map(|(_, line)| line).collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed[0].contains("Host: smoke-check.invalid in a TLS connection for app.test answered 404"),
        "{failed:?}"
    );
    assert!(
        failed[1].starts_with("TLS sessions are resumed: a second connection for app.test did not resume"),
        "{failed:?}"
    );
}

#[test]
fn the_service_over_plain_http_passes_what_http_can_show_and_names_the_rest() {
    let service = Service::start();
    let url = format!("http://127.0.0.1:{}", service.port);
    let output = smoke(&[&url, "--host", "app.test"]);
    assert_checks(
        &output,
        &[
            ("/healthz answers 200", true),
            ("/readyz answers 200", true),
            ("plain HTTP redirects to HTTPS with 308", true),
            ("HSTS", false),
            ("the security headers are present", true),
            ("no server version", true),
            ("an unknown Host is refused", true),
            ("TLS sessions are resumed", false),
            ("the protected route answers 401", false),
            ("CORS refuses an unknown origin", true),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("3 of 10 checks failed"), "{stderr}");
    assert!(stderr.contains("sent over HTTPS only: smoke the https:// URL"), "{stderr}");
    assert!(stderr.contains("answered 308: plain HTTP is redirected"), "{stderr}");
}

/// Answers everything 200 with a versioned Server header and CORS for anyone; hangs up on one host.
fn careless_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            while reader.read_line(&mut head).is_ok_and(|read| read > 2) {}
            if head.contains("Host: smoke-check.invalid") {
                continue;
            }
            let mut stream = reader.into_inner();
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nAccess-Control-Allow-Origin: *\r\nX-Powered-By: PHP\r\nContent-Length: 0\r\n\r\n",
            );
        }
    });
    port
}

#[test]
fn a_careless_server_fails_with_every_reason_listed() {
    let url = format!("http://127.0.0.1:{}", careless_server());
    let output = smoke(&[&url]);
    assert_checks(
        &output,
        &[
            ("/healthz answers 200", true),
            ("/readyz answers 200", true),
            ("plain HTTP redirects to HTTPS with 308", false),
            ("HSTS", false),
            ("the security headers are present", false),
            ("no server version", false),
            ("an unknown Host is refused", true),
            ("TLS sessions are resumed", false),
            ("the protected route answers 401", false),
            ("CORS refuses an unknown origin", false),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    for reason in
        ["x-frame-options missing", "X-Powered-By is sent", "Server: nginx/1.22.1", "Access-Control-Allow-Origin: *"]
    {
        assert!(stderr.contains(reason), "{reason} missing from: {stderr}");
    }
}

#[test]
fn a_service_that_is_not_there_fails_every_check_and_bad_urls_are_refused() {
    let output = smoke(&[&format!("http://127.0.0.1:{}", free_port())]);
    assert!(lines(&output).iter().all(|(passed, _)| !passed), "{output:?}");
    let output = smoke(&["ftp://example.com"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not an http:// or https:// URL"));
}

/// The runbook's nginx lines (docs/deploy-and-rollback.md, between the `nginx-install` markers), run on a
/// copy of this machine's /etc/nginx as the distribution installed it, then `nginx -t` on its nginx.conf.
#[test]
fn the_runbooks_nginx_steps_work_on_the_distributions_own_configuration() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_owned();
    let runbook = std::fs::read_to_string(repo.join("docs/deploy-and-rollback.md")).expect("the runbook");
    let (_, block) = runbook.split_once("<!-- nginx-install -->").expect("the nginx-install marker");
    let (block, _) = block.split_once("<!-- /nginx-install -->").expect("the closing marker");
    let script: Vec<&str> =
        block.lines().map(str::trim).filter(|line| !line.starts_with("```") && !line.is_empty()).collect();
    assert!(script.last().is_some_and(|line| line.starts_with("nginx -t")), "{script:?}");

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("nginx-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("etc")).expect("mkdir");
    let etc = dir.join("etc/nginx");
    let copied = Command::new("cp").arg("-a").arg("/etc/nginx").arg(dir.join("etc")).status().expect("cp runs");
    assert!(copied.success() && etc.join("sites-enabled").is_dir(), "a Debian/Ubuntu nginx package is installed");
    // The distribution's nginx.conf, pointed at the copy: only its absolute /etc/nginx paths change.
    let nginx_conf = std::fs::read_to_string(etc.join("nginx.conf")).expect("nginx.conf");
    let etc_path = etc.display().to_string();
    std::fs::write(etc.join("nginx.conf"), nginx_conf.replace("/etc/nginx", &etc_path)).expect("write");
    // `nginx -t` binds the configuration's ports, 80 and 443, as the runbook's `sudo nginx -t` may.
    if as_root("nginx").is_none() {
        println!("skipped: `nginx -t` binds ports 80 and 443, which needs root or passwordless sudo");
        return;
    }
    let nginx_t = || {
        as_root("nginx")
            .expect("root or sudo, as checked")
            .arg("-t")
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(etc.join("nginx.conf"))
            .output()
            .expect("nginx runs")
    };

    // Every step but the last (`nginx -t && systemctl reload`), on the copy, from the checkout.
    let steps = script[..script.len() - 1].join("\n").replace("/etc/nginx", &etc_path);
    let run = Command::new("sh").arg("-eu").arg("-c").arg(&steps).current_dir(&repo).output().expect("sh runs");
    assert!(run.status.success(), "{steps}\n{}", String::from_utf8_lossy(&run.stderr));
    // `nginx -t` opens the pid and log files, which only root may write where the package puts them.
    std::fs::create_dir_all(dir.join("log")).expect("mkdir");
    let writable = [("/run/nginx.pid", dir.join("nginx.pid")), ("/var/log/nginx", dir.join("log"))];
    redirect(&etc, &writable.map(|(from, to)| (from, to.display().to_string())));
    let certificate = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=app.example.com", "-keyout"])
        .arg(etc.join("tls/privkey.pem"))
        .arg("-out")
        .arg(etc.join("tls/fullchain.pem"))
        .output()
        .expect("openssl runs");
    assert!(certificate.status.success());
    let tested = nginx_t();
    assert!(tested.status.success(), "nginx -t: {}", String::from_utf8_lossy(&tested.stderr));

    // Without the step that removes the distribution's default site, nginx refuses the configuration.
    std::os::unix::fs::symlink("/etc/nginx/sites-available/default", etc.join("sites-enabled/default")).expect("link");
    let clash = nginx_t();
    assert!(!clash.status.success());
    assert!(String::from_utf8_lossy(&clash.stderr).contains("duplicate default server"), "{clash:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rewrites `from` to `to` in every file under `dir`; links are left alone (the distribution's point
/// outside the copy).
fn redirect(dir: &Path, paths: &[(&str, String)]) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let (path, kind) = (entry.path(), entry.file_type().expect("file type"));
        if kind.is_dir() {
            redirect(&path, paths);
        } else if kind.is_file()
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            let rewritten = paths.iter().fold(text.clone(), |text, (from, to)| text.replace(from, to));
            if rewritten != text {
                std::fs::write(&path, rewritten).expect("write");
            }
        }
    }
}
