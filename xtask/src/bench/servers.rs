//! The servers under test as processes: started on a free loopback port with their environment, timed
//! until their probe answers 200, measured (RSS from `/proc`), stopped with SIGTERM on every way out.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use camino::Utf8Path;

use crate::{cleanup, http_probe, postgres};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Server {
    pub(crate) name: &'static str,
    pub(crate) addr: SocketAddr,
    /// From spawn to the first 200 of the probe path.
    pub(crate) start_to_ready: Duration,
    child: Arc<Mutex<Child>>,
    _stop: cleanup::Guard,
}

impl Server {
    /// Starts `binary args…` with `env` plus `LISTEN_ADDR`; waits until `probe` (a path, and the
    /// headers to send with it) answers 200.
    pub(crate) fn start(
        name: &'static str,
        binary: &Utf8Path,
        args: &[&str],
        env: &[(String, String)],
        probe: (&str, &[(&str, &str)]),
    ) -> Result<Self> {
        let addr = SocketAddr::from(([127, 0, 0, 1], postgres::free_port()?));
        let started = Instant::now();
        let child = Command::new(binary)
            .args(args)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .env("LISTEN_ADDR", addr.to_string())
            .stdin(Stdio::null())
            // The access log of a million requests is not worth keeping; errors still show.
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        let child = Arc::new(Mutex::new(child));
        let stop = cleanup::register({
            let child = Arc::clone(&child);
            move || terminate(&child)
        });
        loop {
            if answers_ok(addr, probe.0, probe.1) {
                break;
            }
            if let Ok(Some(status)) = lock(&child).try_wait() {
                bail!("{name} exited ({status}) before answering {}", probe.0);
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!("{name} did not answer {} within {READY_TIMEOUT:?}", probe.0);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Self { name, addr, start_to_ready: started.elapsed(), child, _stop: stop })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Resident memory, from `/proc/<pid>/status`.
    pub(crate) fn rss_mib(&self) -> Result<f64> {
        let pid = lock(&self.child).id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc (Linux only)")?;
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/<pid>/status")?;
        Ok(kib / 1024.0)
    }
}

fn answers_ok(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> bool {
    // A refused connection is the common case while the process starts: no need for a request.
    if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        return false;
    }
    let target = http_probe::Target { https: false, host: addr.ip().to_string(), port: addr.port() };
    let host = addr.to_string();
    let request = http_probe::Request { method: "GET", path, host: &host, headers };
    matches!(http_probe::send(&target, &request, false), Ok(http_probe::Reply::Response(response)) if response.status == 200)
}

fn lock(child: &Mutex<Child>) -> std::sync::MutexGuard<'_, Child> {
    child.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// SIGTERM, a few seconds to drain, then SIGKILL.
fn terminate(child: &Mutex<Child>) {
    let mut child = lock(child);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
