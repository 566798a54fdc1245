//! Who is asking, and how: the client's IP, whether the request came over HTTPS, and the host it
//! named. `X-Forwarded-For/-Proto/-Host` count only when the peer is in `TRUSTED_PROXIES`; the
//! client is the right-most untrusted hop of `X-Forwarded-For`. Addresses are compared in canonical
//! form: an IPv4-mapped IPv6 peer (`::ffff:127.0.0.1`, what a dual-stack socket reports) is the IPv4
//! address it carries.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, Uri, header};
use axum::response::Response;
use ipnet::IpNet;

use super::around::Around;
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// `None` only when the connection's peer is unknown (in-process requests).
    pub ip: Option<IpAddr>,
    pub https: bool,
    pub host: Option<String>,
}

// Names as constants: a lookup by a string parses the name first, on every request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

pub fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|network| network.contains(&ip))
}

/// The right-most value of a header that proxies append to (over repeated headers too).
fn last_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get_all(name)
        .iter()
        .rev()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.rsplit(','))
        .map(str::trim)
        .find(|value| !value.is_empty())
}

pub fn resolve(peer: Option<IpAddr>, headers: &HeaderMap, uri: &Uri, proxies: &[IpNet]) -> Client {
    let direct_host = || {
        headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .or_else(|| uri.authority().map(|authority| authority.to_string()))
    };
    let peer = peer.map(|peer| peer.to_canonical());
    let Some(peer) = peer.filter(|peer| trusted(*peer, proxies)) else {
        return Client { ip: peer, https: false, host: direct_host() };
    };
    // Right to left: the last header's last hop first.
    let hops = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .rev()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.rsplit(','))
        .map(str::trim);
    let mut ip = peer;
    for hop in hops {
        match hop.parse::<IpAddr>().map(|hop| hop.to_canonical()) {
            Ok(hop) if trusted(hop, proxies) => ip = hop,
            Ok(hop) => {
                ip = hop;
                break;
            }
            // Garbage in the chain: trust nothing to the left of it.
            Err(_) => break,
        }
    }
    let https = last_value(headers, &X_FORWARDED_PROTO).is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let host = last_value(headers, &X_FORWARDED_HOST).map(str::to_owned).or_else(direct_host);
    Client { ip: Some(ip), https, host }
}

/// Puts the `Client` on the request for every layer and handler below.
#[derive(Debug, Clone)]
pub struct Identify(pub AppState);

impl Around for Identify {
    type Carry = ();

    fn before(&self, request: &mut Request) -> Result<(), Response> {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        let client = resolve(peer, request.headers(), request.uri(), &self.0.config.security.trusted_proxies);
        request.extensions_mut().insert(client);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("valid"));
        }
        map
    }

    fn proxies() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().expect("cidr")]
    }

    fn ip(value: &str) -> Option<IpAddr> {
        Some(value.parse().expect("ip"))
    }

    #[test]
    fn an_untrusted_peer_cannot_forward_anything() {
        let h = headers(&[
            ("host", "app.example.com"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ]);
        let client = resolve(ip("203.0.113.9"), &h, &Uri::from_static("/"), &proxies());
        assert_eq!(client, Client { ip: ip("203.0.113.9"), https: false, host: Some("app.example.com".into()) });
    }

    #[test]
    fn a_trusted_proxy_is_believed() {
        let h = headers(&[
            ("host", "10.0.0.2:8000"),
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com"),
        ]);
        let client = resolve(ip("10.0.0.2"), &h, &Uri::from_static("/"), &proxies());
        assert_eq!(client, Client { ip: ip("198.51.100.7"), https: true, host: Some("app.example.com".into()) });
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        // The left-most entries are whatever the client claimed; only the proxies' additions count.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        assert_eq!(resolve(ip("10.0.0.2"), &h, &Uri::from_static("/"), &proxies()).ip, ip("198.51.100.7"));
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(resolve(ip("10.0.0.2"), &h, &Uri::from_static("/"), &proxies()).ip, ip("198.51.100.7"));
    }

    #[test]
    fn garbage_in_the_chain_stops_the_walk() {
        let h = headers(&[("x-forwarded-for", "198.51.100.7, not-an-ip, 10.1.1.1")]);
        assert_eq!(resolve(ip("10.0.0.2"), &h, &Uri::from_static("/"), &proxies()).ip, ip("10.1.1.1"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_selves() {
        let h = headers(&[("x-forwarded-for", "::ffff:198.51.100.7, ::ffff:10.1.1.1")]);
        let client = resolve(ip("::ffff:10.0.0.2"), &h, &Uri::from_static("/"), &proxies());
        assert_eq!(client.ip, ip("198.51.100.7"), "a mapped peer matches an IPv4 proxy network");
        assert_eq!(resolve(ip("::ffff:203.0.113.9"), &h, &Uri::from_static("/"), &proxies()).ip, ip("203.0.113.9"));
    }

    #[test]
    fn without_forwarding_headers_the_peer_is_the_client() {
        let client = resolve(ip("10.0.0.2"), &HeaderMap::new(), &Uri::from_static("/"), &proxies());
        assert_eq!(client.ip, ip("10.0.0.2"));
        assert!(!client.https);
    }
}
