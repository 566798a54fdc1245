//! Redis for the tests of shared rate limits: `REDIS_URL` when set, else a throwaway `redis-server` on
//! a free loopback port, with no persistence, stopped on every way out.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cleanup;

const READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct Redis {
    pub(crate) url: String,
    _stop: Option<cleanup::Guard>,
}

pub(crate) fn provide() -> Result<Redis> {
    if let Ok(url) = std::env::var("REDIS_URL")
        && !url.trim().is_empty()
    {
        println!("redis: using REDIS_URL (nothing started)");
        return Ok(Redis { url, _stop: None });
    }
    let server = crate::programs::find("redis-server").context(
        "no Redis for the tests: set REDIS_URL to a server you run, or install redis-server (`apt-get install redis-server`, `brew install redis`)",
    )?;
    let started = Instant::now();
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(&server)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", server.display()))?;
    let stop = cleanup::register({
        let mut child = child;
        move || {
            let _ = child.kill();
            let _ = child.wait();
        }
    });
    let deadline = Instant::now() + READY_TIMEOUT;
    while !pong(port) {
        if Instant::now() > deadline {
            bail!("redis-server did not answer PING on port {port} within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("redis: throwaway redis-server ready in {:.2} s on 127.0.0.1:{port}", started.elapsed().as_secs_f64());
    Ok(Redis { url: format!("redis://127.0.0.1:{port}"), _stop: Some(stop) })
}

fn pong(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reply = [0_u8; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read(&mut reply).is_ok_and(|n| reply[..n].starts_with(b"+PONG"))
}
