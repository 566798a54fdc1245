//! Rate limits: fixed-window counters keyed by policy and subject (a client network, an account, a
//! token), kept in process (one replica) or in Redis (`REDIS_URL`: one limit shared by every
//! replica, counted atomically). When the counters cannot be used, login fails closed and everything
//! else fails open with a warning (`hit` versus `hit_or_allow`). Clients are counted by network:
//! an IPv4 address, or an IPv6 prefix (`RATE_LIMIT_IPV6_PREFIX`, /64 by default), since one
//! customer's /64 would otherwise give unlimited tries.

mod memory;
mod redis;

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::config::{Limit, RateLimits};
use crate::http::errors::ApiError;

/// What is counted. Each policy has its own window (and, in process, its own lock and map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Password attempts from one client network, whatever the account.
    LoginNetwork,
    /// Password attempts on one account from one client network: a stranger cannot lock the owner out.
    LoginAccountNetwork,
    /// Password attempts on one account from anywhere, hourly (ASVS 2.2.1).
    LoginAccount,
    /// Sign-ups from one client network.
    Signup,
    /// Authenticated requests per user or token.
    Api,
}

impl Policy {
    pub const ALL: [Self; 5] =
        [Self::LoginNetwork, Self::LoginAccountNetwork, Self::LoginAccount, Self::Signup, Self::Api];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginNetwork => "login-ip",
            Self::LoginAccountNetwork => "login-account-network",
            Self::LoginAccount => "login-account-hourly",
            Self::Signup => "signup-ip",
            Self::Api => "api",
        }
    }
}

/// The network a client is counted in: its IPv4 address, or its IPv6 address cut to `ipv6_prefix`.
pub fn network(ip: Option<IpAddr>, ipv6_prefix: u8) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => ipnet::Ipv6Net::new(v6, ipv6_prefix.min(128))
            .map_or_else(|_| v6.to_string(), |network| network.trunc().to_string()),
    }
}

/// The outcome of counting one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: Limit,
    pub remaining: u32,
    /// Until the window starts over.
    pub reset: Duration,
}

impl Decision {
    fn new(count: u64, limit: Limit, reset: Duration) -> Self {
        let allowed = count <= u64::from(limit.count);
        let remaining = u64::from(limit.count).saturating_sub(count);
        Self { allowed, limit, remaining: u32::try_from(remaining).unwrap_or(u32::MAX), reset }
    }

    /// What is assumed when the counters are unreachable and the policy fails open.
    fn open(limit: Limit) -> Self {
        Self { allowed: true, limit, remaining: limit.count, reset: limit.window }
    }
}

/// The shared counters could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

#[derive(Debug, Clone)]
pub enum Limiter {
    Memory(memory::Counters),
    Redis(redis::Counters),
    /// `REDIS_URL` could not be used: treated as Redis being down.
    Unusable,
}

impl Limiter {
    pub fn from_config(config: &RateLimits) -> Self {
        match &config.redis_url {
            None => Self::Memory(memory::Counters::new(config.max_keys)),
            Some(url) => redis::Counters::new(url.expose_secret()).map_or_else(
                |_| {
                    tracing::error!("REDIS_URL is not a usable Redis URL: logins are refused until it is fixed");
                    Self::Unusable
                },
                Self::Redis,
            ),
        }
    }

    /// Counts one event for `subject` under `policy`; `Err` when the counters are unreachable.
    pub async fn hit(&self, policy: Policy, subject: &str, limit: Limit) -> Result<Decision, Unavailable> {
        // Subjects can be email addresses: keep them out of Redis (and memory) in the clear.
        let digest = Sha256::digest(subject.as_bytes());
        let (count, reset) = match self {
            Self::Memory(counters) => {
                let key = digest[..16].try_into().expect("a SHA-256 digest has 32 bytes");
                counters.hit(policy, key, limit.window)
            }
            Self::Redis(counters) => counters.hit(&format!("{}:{digest:x}", policy.as_str()), limit.window).await?,
            Self::Unusable => return Err(Unavailable),
        };
        Ok(Decision::new(count, limit, reset))
    }

    /// Like `hit`, but an unreachable counter lets the request through (with a warning).
    pub async fn hit_or_allow(&self, policy: Policy, subject: &str, limit: Limit) -> Decision {
        match self.hit(policy, subject, limit).await {
            Ok(decision) => decision,
            Err(Unavailable) => {
                tracing::warn!(policy = policy.as_str(), "rate limit counters unreachable: allowing the request");
                Decision::open(limit)
            }
        }
    }
}

fn seconds(duration: Duration) -> HeaderValue {
    HeaderValue::from(duration.as_secs().max(1))
}

/// `RateLimit-*` headers (limit, remaining, seconds to reset, policy) on a response.
pub fn annotate(response: &mut Response, decision: &Decision) {
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(decision.limit.count));
    headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("ratelimit-reset", seconds(decision.reset));
    let policy = format!("{};w={}", decision.limit.count, decision.limit.window.as_secs());
    headers.insert("ratelimit-policy", HeaderValue::from_str(&policy).expect("digits"));
}

/// The 429: JSON, `Retry-After` and the `RateLimit-*` headers.
pub fn too_many(decision: &Decision) -> Response {
    let mut response =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; retry later").into_response();
    response.headers_mut().insert(header::RETRY_AFTER, seconds(decision.reset));
    annotate(&mut response, decision);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Limit = Limit { count: 3, window: Duration::from_secs(60) };

    #[tokio::test]
    async fn the_memory_limiter_allows_exactly_the_limit() {
        let limiter = Limiter::Memory(memory::Counters::new(100));
        let login = Policy::LoginAccount;
        for remaining in [2, 1, 0] {
            let decision = limiter.hit(login, "a@example.com", LIMIT).await.expect("room");
            assert!(decision.allowed);
            assert_eq!(decision.remaining, remaining);
        }
        assert!(!limiter.hit(login, "a@example.com", LIMIT).await.expect("room").allowed);
        assert!(limiter.hit(login, "b@example.com", LIMIT).await.expect("room").allowed, "subjects are separate");
        assert!(limiter.hit(Policy::Signup, "a@example.com", LIMIT).await.expect("room").allowed, "policies too");
    }

    #[test]
    fn clients_are_counted_by_network() {
        let ip = |text: &str| Some(text.parse::<IpAddr>().expect("ip"));
        assert_eq!(network(ip("2001:db8:1:2:aaaa::1"), 64), "2001:db8:1:2::/64");
        assert_eq!(network(ip("2001:db8:1:2:ffff::9"), 64), network(ip("2001:db8:1:2::1"), 64));
        assert_ne!(network(ip("2001:db8:1:3::1"), 64), network(ip("2001:db8:1:2::1"), 64));
        assert_eq!(network(ip("2001:db8:1:2::1"), 128), "2001:db8:1:2::1/128");
        assert_eq!(network(ip("::ffff:192.0.2.7"), 64), "192.0.2.7", "IPv4-mapped is IPv4");
        assert_eq!(network(None, 64), "unknown");
    }

    #[test]
    fn a_429_carries_retry_after_and_ratelimit_headers() {
        let response = too_many(&Decision::new(4, LIMIT, Duration::from_secs(42)));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(header("retry-after").as_deref(), Some("42"));
        assert_eq!(header("ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(header("ratelimit-remaining").as_deref(), Some("0"));
        assert_eq!(header("ratelimit-policy").as_deref(), Some("3;w=60"));
    }
}
