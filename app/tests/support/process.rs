//! The real `app` binary serving on loopback, as production runs it (behind a trusted proxy, over
//! "HTTPS" as the proxy reports it), its log lines captured, killed when dropped; and a plain HTTP/1.1
//! client for it that can claim any client address through `X-Forwarded-For`, as a botnet behind the
//! proxy would.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::TestDb;

pub const HOST: &str = "app.test";
const KEY: &str = "Zq8x1Lr4Vt7Yb2Nc5Md9Kf3Hg6Jw0Pa8Se1Ru4Ti7Oy2Uz5Xv9Qm3";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub struct Service {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    /// What the process wrote to stdout (its log), line by line.
    logs: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// `app serve` in production mode on `db`'s schema, with `overrides` on top.
    pub async fn start(db: &TestDb, overrides: &[(&str, &str)]) -> Self {
        let (addr, metrics) =
            (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())));
        // `ABUSE_APP_BINARY=$PWD/target/release/app` (an absolute path) measures the build that ships instead of the test build.
        let binary = std::env::var("ABUSE_APP_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_app").to_owned());
        let mut command = Command::new(binary);
        command.arg("serve").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        if let Ok(profile) = std::env::var("LLVM_PROFILE_FILE") {
            command.env("LLVM_PROFILE_FILE", profile);
        }
        let url = db.url_for_schema();
        let (listen, metrics_addr) = (addr.to_string(), metrics.to_string());
        let defaults = [
            ("APP_ENV", "production"),
            ("DATABASE_URL", url.as_str()),
            ("DATABASE_MAX_CONNECTIONS", "3"),
            ("SECRET_KEY", KEY),
            ("ALLOWED_HOSTS", HOST),
            // The mapped form of the proxy's address must match too.
            ("TRUSTED_PROXIES", "::ffff:127.0.0.1"),
            ("SILENCED_CHECKS", "security.W021"),
            ("LISTEN_ADDR", listen.as_str()),
            ("METRICS_ADDR", metrics_addr.as_str()),
            ("DRAIN_DELAY", "0s"),
            ("LOG_LEVEL", "warn"),
        ];
        for (name, value) in defaults.iter().chain(overrides) {
            command.env(name, value);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("app serve starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn({
            let logs = Arc::clone(&logs);
            move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    logs.lock().expect("logs").push(line);
                }
            }
        });
        let mut service = Self { child, addr, metrics, logs };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(service.child.try_wait().expect("wait").is_none(), "app serve exited at start");
            if let Ok(reply) = service.send("GET", "/healthz", "127.0.0.1", &[], None).await {
                assert_eq!(reply.status, 200, "{}", reply.body);
                return service;
            }
            assert!(Instant::now() < deadline, "app serve never answered /healthz");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }

    /// Sends a signal by name (`TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|status| status.success()), "kill -{name}");
    }

    /// The exit status, once the process exits within `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident memory (VmRSS) and its peak so far (VmHWM), in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// One request from `client` (through the trusted proxy), JSON `body` if any.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        client: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> std::io::Result<Reply> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: {client}\r\nX-Forwarded-Proto: https\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        exchange(self.addr, format!("{head}{body}").as_bytes()).await
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The `name=value` of the session cookie set, if any.
    pub fn cookie(&self) -> Option<String> {
        self.header("set-cookie").and_then(|cookie| cookie.split(';').next()).map(str::to_owned)
    }
}

/// Writes `request` on a fresh connection and reads the response to the end.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw).await {
        Ok(_) => {}
        // A reset after a whole answer (the server closed with input unread) still leaves the answer.
        Err(_) if !raw.is_empty() => {}
        Err(error) => return Err(error),
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an HTTP response: {raw:?}"))
    })?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Ok(Reply { status, head: head.to_owned(), body })
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}
