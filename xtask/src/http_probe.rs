//! One HTTP request at a time, for probing a deployed service: plain HTTP/1.1 over a `TcpStream` for
//! `http://` or over a unix socket, the `curl` command for `https://` (the xtask carries no TLS stack).
//! Redirects are not followed: the probes look at exactly what the server answered.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Where requests go: scheme, host and port of a base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) https: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            bail!("{url} is not an http:// or https:// URL");
        };
        let authority = rest.split('/').next().unwrap_or_default();
        // The port follows the last colon, unless that colon sits inside an IPv6 literal.
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse().with_context(|| format!("the port of {url} is not a number"))?)
            }
            _ => (authority, if https { 443 } else { 80 }),
        };
        if host.is_empty() {
            bail!("{url} has no host");
        }
        Ok(Self { https, host: host.to_owned(), port })
    }

    /// The same host over plain HTTP on `port` (80 in production), where the redirect to HTTPS lives.
    pub(crate) fn http_twin(&self, port: u16) -> Self {
        Self { https: false, host: self.host.clone(), port }
    }

    /// `host[:port]`, the port left out when it is the scheme's default, as a `Host` header says it.
    pub(crate) fn authority(&self) -> String {
        if self.port == if self.https { 443 } else { 80 } {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}://{}:{}{path}", if self.https { "https" } else { "http" }, self.host, self.port)
    }
}

pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    /// The `Host` header.
    pub(crate) host: &'a str,
    /// Over https, the TLS server name when it is not the Host's name (a request for another host
    /// inside a connection made for the service).
    pub(crate) server_name: Option<&'a str>,
    pub(crate) headers: &'a [(&'a str, &'a str)],
}

/// What came back: a response, or a connection closed without one (nginx's 444).
#[derive(Debug)]
pub(crate) enum Reply {
    Response(Response),
    Closed,
}

#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    /// As received (no chunked decoding: the probes only read small, sized bodies).
    pub(crate) body: String,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// Sends `request` to `target`; `insecure` accepts any TLS certificate (test stacks).
pub(crate) fn send(target: &Target, request: &Request<'_>, insecure: bool) -> Result<Reply> {
    if target.https { send_with_curl(target, request, insecure) } else { send_plain(target, request, None) }
}

/// Sends `request` with a JSON `body` over plain HTTP.
pub(crate) fn send_json(target: &Target, request: &Request<'_>, body: &str) -> Result<Reply> {
    if target.https {
        bail!("JSON requests are sent over plain HTTP only, not to {}", target.url(request.path));
    }
    send_plain(target, request, Some(body))
}

fn send_plain(target: &Target, request: &Request<'_>, body: Option<&str>) -> Result<Reply> {
    let address = (target.host.trim_start_matches('[').trim_end_matches(']'), target.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", target.host))?
        .next()
        .with_context(|| format!("{} resolves to no address", target.host))?;
    let stream = TcpStream::connect_timeout(&address, TIMEOUT).with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    exchange(stream, request, body).with_context(|| format!("sending to {address}"))
}

/// Sends `request` to the server listening on the unix socket `path`.
pub(crate) fn send_unix(path: &camino::Utf8Path, request: &Request<'_>) -> Result<Reply> {
    let stream = UnixStream::connect(path).with_context(|| format!("connecting to {path}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    exchange(stream, request, None).with_context(|| format!("sending to {path}"))
}

fn exchange(mut stream: impl Read + Write, request: &Request<'_>, body: Option<&str>) -> Result<Reply> {
    let mut head =
        format!("{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", request.method, request.path, request.host);
    for (name, value) in request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or_default());
    stream.write_all(head.as_bytes())?;
    let mut received = Vec::new();
    // A reset after a complete head (or before any byte) still tells us what we need.
    let _ = stream.read_to_end(&mut received);
    if received.is_empty() {
        return Ok(Reply::Closed);
    }
    parse_head(&String::from_utf8_lossy(&received)).map(Reply::Response)
}

/// The name in a `Host` value, without its port (an IPv6 literal keeps its brackets).
pub(crate) fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') && port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

fn send_with_curl(target: &Target, request: &Request<'_>, insecure: bool) -> Result<Reply> {
    let mut curl = Command::new("curl");
    curl.args(["--silent", "--show-error", "--include", "--max-time", "10", "--request", request.method]);
    curl.args(["--header", &format!("Host: {}", request.host)]);
    // The Host's name is also the TLS server name (SNI), as a browser would send it, while the
    // connection goes to the URL's address: a server that refuses unknown names in the handshake is
    // then probed as it is really used.
    let name = request.server_name.unwrap_or_else(|| host_name(request.host));
    let url = Target { https: true, host: name.to_owned(), port: target.port }.url(request.path);
    curl.args(["--connect-to", &format!("{name}:{}:{}:{}", target.port, target.host, target.port)]);
    for (name, value) in request.headers {
        curl.args(["--header", &format!("{name}: {value}")]);
    }
    if insecure {
        curl.arg("--insecure");
    }
    curl.arg(&url);
    let output = curl.output().context("https:// needs the `curl` command: install it (`apt-get install curl`)")?;
    // 52: empty reply, 56: connection reset, 35: the TLS handshake refused (nginx's
    // `ssl_reject_handshake` for an unknown name); each means the server closed without answering.
    match output.status.code() {
        Some(0) => parse_head(&String::from_utf8_lossy(&output.stdout)).map(Reply::Response),
        Some(35 | 52 | 56) => Ok(Reply::Closed),
        _ => bail!("curl {url}: {}", String::from_utf8_lossy(&output.stderr).trim()),
    }
}

/// Whether the server resumes a TLS session made for `server_name`: `openssl s_client` connects once
/// and keeps the session, then connects again offering it.
pub(crate) fn tls_resumes(target: &Target, server_name: &str) -> Result<bool> {
    // The session holds its secrets: a directory only this user can enter, removed afterwards.
    let dir = std::env::temp_dir().join(format!("xtask-tls-{}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let session = dir.join("session.pem");
    // TLS 1.3 sends the session ticket after the handshake: a client that hung up at once may never
    // read it. So each connection asks for a page and reads until the server closes (`-ign_eof`).
    let request = format!("HEAD / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n");
    let connect = |option: &str| {
        let mut openssl = Command::new("openssl");
        openssl
            .args(["s_client", "-connect", &format!("{}:{}", target.host, target.port), "-servername", server_name])
            .args(["-ign_eof", option])
            .arg(&session)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = openssl
            .spawn()
            .context("TLS session checks need the `openssl` command: install it (`apt-get install openssl`)")?;
        // Dropping stdin after the request is the end of input that `-ign_eof` then waits past.
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(request.as_bytes()).context("sending a request through openssl s_client")?;
        }
        child.wait_with_output().context("waiting for openssl s_client")
    };
    let outcome = connect("-sess_out").and_then(|first| {
        if !first.status.success() || !session.is_file() {
            bail!("openssl s_client could not connect: {}", String::from_utf8_lossy(&first.stderr).trim());
        }
        let second = connect("-sess_in")?;
        Ok(String::from_utf8_lossy(&second.stdout).lines().any(|line| line.starts_with("Reused,")))
    });
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// The status and headers of an HTTP/1.x or HTTP/2 response as printed on the wire or by `curl -i`.
fn parse_head(text: &str) -> Result<Response> {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP response: {status_line:?}"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Ok(Response { status, headers, body: body.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_scheme_host_and_port() {
        let target = Target::parse("https://app.example.com/base").expect("url");
        assert_eq!(target, Target { https: true, host: "app.example.com".into(), port: 443 });
        assert_eq!(target.authority(), "app.example.com");
        assert_eq!(target.http_twin(80).authority(), "app.example.com");
        assert_eq!(target.http_twin(8080).authority(), "app.example.com:8080");
        assert_eq!(
            (host_name("app.test:8443"), host_name("app.test"), host_name("[::1]")),
            ("app.test", "app.test", "[::1]")
        );
        assert_eq!(host_name("[::1]:443"), "[::1]");
        let local = Target::parse("http://127.0.0.1:8001").expect("url");
        assert_eq!((local.port, local.authority().as_str()), (8001, "127.0.0.1:8001"));
        assert_eq!(Target::parse("http://[::1]").expect("url").host, "[::1]");
        assert_eq!(Target::parse("http://[::1]:9").expect("url").port, 9);
        assert!(Target::parse("ftp://x").is_err() && Target::parse("http://x:y").is_err());
    }

    #[test]
    fn heads_are_parsed_from_the_wire_and_from_curl() {
        let wire =
            parse_head("HTTP/1.1 308 Permanent Redirect\r\nLocation: https://a/\r\nX-A: 1\r\n\r\nbody").expect("head");
        assert_eq!((wire.status, wire.header("location")), (308, Some("https://a/")));
        let h2 = parse_head("HTTP/2 200\r\nstrict-transport-security: max-age=63072000\r\n\r\n{}").expect("head");
        assert_eq!(h2.header("Strict-Transport-Security"), Some("max-age=63072000"));
        assert_eq!(h2.body, "{}");
        assert!(parse_head("garbage").is_err());
    }
}
