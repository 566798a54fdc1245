//! Where the service listens (`LISTEN_ADDR`): a TCP address, or `unix:/path` for a proxy on the same
//! host. Behind a unix socket the host deploy switches releases by renaming a link that nginx connects
//! through, so nginx is never reloaded: a reload closes every idle client keep-alive connection, and a
//! client that had just sent a request on one (a POST is not retried) sees it fail.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context as _, Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.strip_prefix("unix:") {
            Some(path) if Path::new(path).is_absolute() => Ok(Self::Unix(path.into())),
            Some(_) => Err("a unix socket needs an absolute path".to_owned()),
            None => value.parse().map(Self::Tcp).map_err(|_| "not an address".to_owned()),
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The peer address the proxy layer judges. A process at the other end of a unix socket runs on this
/// host, like a proxy on loopback: it counts as 127.0.0.1, trusted when TRUSTED_PROXIES says so.
pub trait Peer {
    fn socket_addr(&self) -> SocketAddr;
}

impl Peer for SocketAddr {
    fn socket_addr(&self) -> SocketAddr {
        *self
    }
}

impl Peer for tokio::net::unix::SocketAddr {
    fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }
}

/// Binds a unix socket at `path`, replacing a socket left by a process that died. Mode 0660: nginx
/// connects as a member of the socket's group (give the directory nginx's group, setgid).
pub fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener> {
    if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket()) {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another process listens on {}: stop it first", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener =
        tokio::net::UnixListener::bind(path).with_context(|| format!("binding LISTEN_ADDR=unix:{}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_absolute_socket_paths() {
        assert_eq!("127.0.0.1:8000".parse(), Ok(Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 8000)))));
        assert_eq!("unix:/run/app.sock".parse(), Ok(Listen::Unix("/run/app.sock".into())));
        assert!("unix:app.sock".parse::<Listen>().is_err());
        assert!("localhost".parse::<Listen>().is_err());
        assert_eq!(Listen::Unix("/run/app.sock".into()).to_string(), "unix:/run/app.sock");
    }
}
