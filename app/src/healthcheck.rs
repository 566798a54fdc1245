//! `app healthcheck`: asks the local server's `/healthz`, for a container `HEALTHCHECK` (the image
//! needs no curl). Plain HTTP/1.1 over TCP or the unix socket is all it takes.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::config::Config;
use crate::listen::Listen;
use crate::server::local_address;

const TIMEOUT: Duration = Duration::from_secs(3);

/// A host the server answers to: the first concrete ALLOWED_HOSTS entry.
fn host(config: &Config) -> String {
    config
        .security
        .allowed_hosts
        .iter()
        .find(|host| host.as_str() != "*")
        .map_or_else(|| "localhost".to_owned(), |host| host.trim_start_matches('.').to_owned())
}

pub async fn probe(config: &Config) -> Result<()> {
    let address = match &config.listen_addr {
        Listen::Tcp(addr) => Listen::Tcp(local_address(*addr)),
        unix @ Listen::Unix(_) => unix.clone(),
    };
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: app-healthcheck\r\n\r\n",
        host(config)
    );
    let exchange = async {
        let head = match &address {
            Listen::Tcp(addr) => exchange(TcpStream::connect(addr).await, &request).await,
            Listen::Unix(path) => exchange(UnixStream::connect(path).await, &request).await,
        };
        head.with_context(|| format!("asking {address}"))
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .with_context(|| format!("{address} did not answer within {TIMEOUT:?}"))??;
    let status = response.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        bail!("{address}/healthz answered {status:?}");
    }
    Ok(())
}

/// Sends `request` and returns the start of the response.
async fn exchange(
    stream: std::io::Result<impl AsyncRead + AsyncWrite + Unpin>,
    request: &str,
) -> std::io::Result<String> {
    let mut stream = stream?;
    stream.write_all(request.as_bytes()).await?;
    let mut head = vec![0; 512];
    let read = stream.read(&mut head).await?;
    Ok(String::from_utf8_lossy(&head[..read]).into_owned())
}
