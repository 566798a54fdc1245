//! The built `app` binary as a process, the way production runs it (`APP_ENV=production`, behind a
//! TLS proxy on loopback), with its log lines captured; and one-shot HTTP/1.1 exchanges over raw
//! sockets, so that tests can send what no well-behaved client library would.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A secret the service is configured with and sent by clients; no log line or body may hold it.
pub const SENTINEL: &str = "sentinel-7d1c0e9a4b-never-logged-never-echoed-0123456789abcdef";

pub struct Service {
    pub addr: SocketAddr,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port()
}

impl Service {
    /// Starts `app serve` on `database_url` with production settings plus `overrides`; waits for /healthz.
    pub fn start(database_url: &str, overrides: &[(&str, &str)]) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_app"));
        command
            .arg("serve")
            .env_clear()
            .env("APP_ENV", "production")
            .env("DATABASE_URL", database_url)
            .env("SECRET_KEY", SENTINEL)
            .env("ALLOWED_HOSTS", "127.0.0.1")
            .env("TRUSTED_PROXIES", "127.0.0.1/32")
            .env("SILENCED_CHECKS", "security.W021")
            .env("LISTEN_ADDR", addr.to_string())
            .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("DRAIN_DELAY", "0s")
            .env("API_LIMIT_PER_CALLER", "1000000/1m")
            // Where the coverage run wants the binary's profile written.
            .envs(std::env::vars().filter(|(key, _)| key.starts_with("LLVM_PROFILE")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in overrides {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("starting the app binary");
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().expect("logs").push(line);
                }
            });
        }
        let service = Self { addr, child, logs };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the app did not listen within 20 s: {:?}", service.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        service
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status().expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// The exit status, waiting at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Fails if the sentinel secret appears in any line the process wrote.
    pub fn assert_no_secret_logged(&self) {
        let logs = self.logs();
        assert!(!logs.is_empty(), "the service logged nothing, so this check would prove nothing");
        if let Some(line) = logs.iter().find(|line| line.contains(SENTINEL)) {
            panic!("a log line carries the secret: {line}");
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What came back over the socket.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The service's error shape: `{"error":{"code",…}}`.
    pub fn is_json_error(&self) -> bool {
        serde_json::from_str::<serde_json::Value>(&self.body).is_ok_and(|body| body["error"]["code"].is_string())
    }
}

/// Sends `bytes` on a fresh connection and reads until the server closes it (send `Connection: close`).
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Raw> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(bytes).await?;
    let mut received = Vec::new();
    match stream.read_to_end(&mut received).await {
        Ok(_) => {}
        // A reset after a full answer (the server closed with unread input) still counts as the answer.
        Err(error) if !received.is_empty() => drop(error),
        Err(error) => return Err(error),
    }
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no response: {text:?}")))?;
    Ok(Raw { status, head: head.to_owned(), body: body.to_owned() })
}

/// A request as the TLS proxy in front of the service would pass it on.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Vec<u8> {
    let mut text =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        text.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body.unwrap_or_default());
    text.into_bytes()
}

/// An account with an API token, straight in the database: the bearer token.
pub async fn account_with_token(pool: &sqlx::PgPool) -> String {
    let account = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO accounts (id, email, password_hash) VALUES ($1, $2, 'not a hash')")
        .bind(account)
        .bind(format!("{account}@example.com"))
        .execute(pool)
        .await
        .expect("account");
    let token = app::auth::tokens::generate("ss_");
    sqlx::query("INSERT INTO api_tokens (id, account_id, name, token_hash) VALUES ($1, $2, 'reliability', $3)")
        .bind(uuid::Uuid::now_v7())
        .bind(account)
        .bind(app::auth::tokens::digest(&token))
        .execute(pool)
        .await
        .expect("token");
    token
}
