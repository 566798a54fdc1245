//! An open-loop client at a fixed rate (wrk only knows "as fast as possible"): a few keep-alive
//! connections, each sending on its own schedule, for measuring the footprint at a given load.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

const CONNECTIONS: u32 = 4;

/// Sends `rate` requests per second for `duration`; returns the rate reached.
pub(crate) fn run(addr: SocketAddr, request: &str, rate: u32, duration: Duration) -> Result<f64> {
    let interval = Duration::from_secs(1) * CONNECTIONS / rate;
    let started = Instant::now();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|index| {
            let request = request.to_owned();
            // Staggered, so that the connections do not send in bursts.
            let first = started + interval * index / CONNECTIONS;
            std::thread::spawn(move || connection(addr, &request, first, interval, started + duration))
        })
        .collect();
    let mut sent = 0;
    for worker in workers {
        sent += worker.join().map_err(|_| anyhow::anyhow!("a steady-load thread panicked"))??;
    }
    Ok(f64::from(sent) / started.elapsed().as_secs_f64())
}

fn connection(addr: SocketAddr, request: &str, first: Instant, interval: Duration, end: Instant) -> Result<u32> {
    let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let (mut next, mut sent) = (first, 0);
    while next < end {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        writer.write_all(request.as_bytes())?;
        let status = read_response(&mut reader)?;
        if !(200..300).contains(&status) {
            bail!("the server answered {status} under steady load");
        }
        sent += 1;
        next += interval;
    }
    Ok(sent)
}

/// Reads one response with a `Content-Length` body; returns its status.
fn read_response(reader: &mut impl BufRead) -> Result<u16> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).context("no status line")?;
    let mut length = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("the connection closed mid-response");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().context("Content-Length")?;
        }
    }
    std::io::copy(&mut reader.take(length), &mut std::io::sink())?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_sized_response_and_leaves_the_next_one() {
        let two = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
        let mut reader = BufReader::new(two.as_bytes());
        assert_eq!(read_response(&mut reader).expect("first"), 200);
        assert_eq!(read_response(&mut reader).expect("second"), 503);
        assert!(read_response(&mut reader).is_err());
    }
}
