//! `xtask smoke URL` against the real service in production mode, and against a careless server: each
//! check passes or fails for the right reason, and any failure fails the command with the list.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{app_binary, free_port};

/// `app serve`, stopped when dropped.
struct Service {
    child: Child,
    port: u16,
}

impl Service {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new(app_binary())
            .arg("serve")
            .env("APP_ENV", "production")
            .env("DATABASE_URL", std::env::var("DATABASE_URL").expect("set DATABASE_URL (cargo xtask test does)"))
            .env("SECRET_KEY", "smoke-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
            .env("ALLOWED_HOSTS", "app.test")
            .env("SILENCED_CHECKS", "security.W021")
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("DRAIN_DELAY", "0s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("app starts");
        let service = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the service did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        service
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
            ("the protected route answers 401", false),
            ("CORS refuses an unknown origin", true),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("2 of 9 checks failed"), "{stderr}");
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
