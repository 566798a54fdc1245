//! Rate limits through the real router: brute force stops exactly at the limit, per account and
//! network, per account hourly and per client network; the owner elsewhere still gets in; sign-ups
//! and API calls are limited too; with Redis (a real redis-server), two app instances share one
//! limit; with Redis down, login fails closed and the API fails open.

mod support;

use axum::Router;
use axum::http::{Method, StatusCode};
use support::api::{PASSWORD, call, email, log_in_from, sign_up, signed_in};
use support::service::{config, router_for};

fn api(db: &support::TestDb, overrides: &[(&str, &str)]) -> Router {
    router_for(app::state::AppState::new(config(overrides), db.pool.clone()), Router::new())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .expect("REDIS_URL is not set: run the tests with `cargo xtask test` (it starts a throwaway redis-server)")
}

fn assert_limited(reply: &support::service::Reply) {
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", reply.body);
    assert_eq!(reply.json()["error"]["code"], "rate_limited");
    assert!(reply.header("retry-after").is_some_and(|seconds| seconds.parse::<u64>().is_ok_and(|s| s >= 1)));
    assert_eq!(reply.header("ratelimit-remaining"), Some("0"));
    assert!(reply.header("ratelimit-limit").is_some() && reply.header("ratelimit-policy").is_some());
}

#[tokio::test]
async fn brute_force_from_one_network_stops_exactly_at_the_limit_and_the_owner_gets_in() {
    let db = support::TestDb::new().await;
    let router = api(&db, &[("LOGIN_LIMIT_PER_ACCOUNT_NETWORK", "5/15m")]);
    let victim = email("victim");
    sign_up(&router, &victim).await;
    for attempt in 1..=5 {
        // Different ports of one address: one client.
        let peer = format!("198.51.100.7:{}", 4000 + attempt);
        let reply = log_in_from(&router, &peer, &victim, "guess guess guess").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    assert_limited(&log_in_from(&router, "198.51.100.7:4999", &victim, "guess guess guess").await);
    assert_limited(&log_in_from(&router, "198.51.100.7:4999", &victim, PASSWORD).await);
    // From another network the owner signs in: the attacker cannot lock them out.
    assert_eq!(log_in_from(&router, "192.0.2.200:1", &victim, PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_hourly_cap_per_account_holds_across_networks() {
    let db = support::TestDb::new().await;
    let router = api(&db, &[("LOGIN_LIMIT_PER_ACCOUNT_HOURLY", "5/1h")]);
    let victim = email("botnet");
    sign_up(&router, &victim).await;
    for attempt in 1..=5 {
        let peer = format!("198.51.100.{attempt}:4000");
        let reply = log_in_from(&router, &peer, &victim, "guess guess guess").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    assert_limited(&log_in_from(&router, "198.51.100.99:4000", &victim, "guess guess guess").await);
    let other = email("bystander");
    sign_up(&router, &other).await;
    assert_eq!(log_in_from(&router, "198.51.100.97:4000", &other, PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn one_address_trying_many_accounts_is_limited() {
    let db = support::TestDb::new().await;
    let router = api(&db, &[("LOGIN_LIMIT_PER_IP", "3/1m")]);
    for _ in 0..3 {
        assert_eq!(
            log_in_from(&router, "192.0.2.7:1", &email("spray"), "guess guess guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_limited(&log_in_from(&router, "192.0.2.7:1", &email("spray"), "guess guess guess").await);
    assert_eq!(
        log_in_from(&router, "192.0.2.8:1", &email("spray"), "guess").await.status,
        StatusCode::UNAUTHORIZED,
        "other addresses go on"
    );
}

#[tokio::test]
async fn sign_ups_and_api_calls_are_limited() {
    let db = support::TestDb::new().await;
    let router = api(&db, &[("SIGNUP_LIMIT_PER_IP", "2/1h"), ("API_LIMIT_PER_CALLER", "3/1m")]);
    let (_, session) = signed_in(&router, "api").await;
    assert_eq!(sign_up(&router, &email("second")).await.status, StatusCode::CREATED);
    assert_limited(&sign_up(&router, &email("third")).await);
    for remaining in ["2", "1", "0"] {
        let reply = call(&router, Method::GET, "/api/v1/notes", None, &session).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("ratelimit-remaining"), Some(remaining));
    }
    assert_limited(&call(&router, Method::GET, "/api/v1/notes", None, &session).await);
}

#[tokio::test]
async fn two_instances_share_one_limit_through_redis() {
    let db = support::TestDb::new().await;
    let url = redis_url();
    let settings = [("REDIS_URL", url.as_str()), ("LOGIN_LIMIT_PER_ACCOUNT_NETWORK", "4/15m")];
    let (first, second) = (api(&db, &settings), api(&db, &settings));
    let victim = email("shared");
    sign_up(&first, &victim).await;
    for attempt in 0..4 {
        let instance = if attempt % 2 == 0 { &first } else { &second };
        assert_eq!(
            log_in_from(instance, "198.51.100.1:1", &victim, "wrong wrong wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_limited(&log_in_from(&first, "198.51.100.1:1", &victim, "wrong wrong wrong").await);
    assert_limited(&log_in_from(&second, "198.51.100.1:1", &victim, "wrong wrong wrong").await);
}

#[tokio::test]
async fn with_redis_down_login_fails_closed_and_the_api_fails_open() {
    let db = support::TestDb::new().await;
    let healthy = api(&db, &[]);
    let (address, session) = signed_in(&healthy, "outage").await;
    // Nothing listens on port 1.
    let broken = api(&db, &[("REDIS_URL", "redis://127.0.0.1:1")]);
    let login = log_in_from(&broken, "198.51.100.1:1", &address, PASSWORD).await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE, "{}", login.body);
    assert_eq!(call(&broken, Method::GET, "/api/v1/notes", None, &session).await.status, StatusCode::OK);
}
