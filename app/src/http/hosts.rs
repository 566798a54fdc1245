//! `ALLOWED_HOSTS`: a request naming any other host gets 400 and never reaches a handler. Entries
//! are exact names, `.example.com` for a domain and its subdomains, or `*` (refused in deployed
//! environments by `check --deploy`, W020). Health probes are exempt: orchestrators address them
//! by pod or machine IP, and they build nothing from the Host header.

use std::net::Ipv6Addr;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::around::Around;
use super::errors::ApiError;
use super::proxy::Client;
use crate::state::AppState;

/// The host part of a `Host` value, lower-cased, without port or trailing dot; IPv6 literals keep
/// their brackets. `None` for anything that is not a plausible host.
pub fn host_name(value: &str) -> Option<String> {
    let value = value.trim().to_ascii_lowercase();
    let name = if let Some(rest) = value.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        address.parse::<Ipv6Addr>().ok()?;
        format!("[{address}]")
    } else {
        let name = match value.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => value.as_str(),
        };
        name.strip_suffix('.').unwrap_or(name).to_owned()
    };
    let plausible = !name.is_empty()
        && (name.starts_with('[') || name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    plausible.then_some(name)
}

fn is_port(value: &str) -> bool {
    !value.is_empty() && value.len() <= 5 && value.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `host` (already through `host_name`) matches one of the configured entries.
pub fn allowed(host: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|pattern| {
        let pattern = pattern.as_str();
        if pattern == "*" {
            return true;
        }
        if let Some(domain) = pattern.strip_prefix('.') {
            return host == domain || host.ends_with(pattern);
        }
        // An entry written as a bare IPv6 address matches the bracketed form.
        match pattern.parse::<Ipv6Addr>() {
            Ok(address) => host == format!("[{address}]"),
            Err(_) => host_name(pattern).is_some_and(|pattern| pattern == host),
        }
    })
}

/// Refuses requests for hosts outside `ALLOWED_HOSTS`.
#[derive(Debug, Clone)]
pub struct Enforce(pub AppState);

impl Around for Enforce {
    type Carry = ();

    fn before(&self, request: &mut Request) -> Result<(), Response> {
        if crate::health::PROBE_PATHS.contains(&request.uri().path()) {
            return Ok(());
        }
        let host = request.extensions().get::<Client>().and_then(|client| client.host.as_deref()).and_then(host_name);
        match host {
            Some(host) if allowed(&host, &self.0.config.security.allowed_hosts) => Ok(()),
            _ => {
                tracing::warn!(host = ?request.extensions().get::<Client>().and_then(|c| c.host.clone()), "refused a request for a host not in ALLOWED_HOSTS");
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_host",
                    "this service does not answer for that host",
                )
                .into_response())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn host_names_drop_ports_and_case() {
        assert_eq!(host_name("App.Example.com:8443").as_deref(), Some("app.example.com"));
        assert_eq!(host_name("example.com.").as_deref(), Some("example.com"));
        assert_eq!(host_name("[::1]:8000").as_deref(), Some("[::1]"));
        assert_eq!(host_name("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(host_name("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn implausible_hosts_are_refused() {
        for value in [
            "",
            "exa mple.com",
            "example.com:http",
            "[::1",
            "[nope]:80",
            "a@b.com",
            "example.com:99999999",
            "evil.com/path",
        ] {
            assert_eq!(host_name(value), None, "{value}");
        }
    }

    #[test]
    fn exact_domain_wildcard_and_ipv6_entries() {
        let patterns = list(&["app.example.com", ".example.org", "::1"]);
        assert!(allowed("app.example.com", &patterns));
        assert!(!allowed("example.com", &patterns));
        assert!(allowed("example.org", &patterns));
        assert!(allowed("api.example.org", &patterns));
        assert!(!allowed("example.org.evil.com", &patterns));
        assert!(!allowed("badexample.org", &patterns));
        assert!(allowed("[::1]", &patterns));
        assert!(allowed("anything.at.all", &list(&["*"])));
        assert!(!allowed("localhost", &[]));
    }
}
