//! The service under abuse, black-box: the real `app` binary in production mode on loopback, behind
//! a trusted proxy (`X-Forwarded-For` gives each request the client address an attacker would
//! have), driven over HTTP. A login storm stays within memory bounds and answers everyone; rate
//! limits stop attackers without locking the owner out; credentials die with the password; weak
//! passwords, NUL text and junk methods are refused or contained; `check --deploy` reports all.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::TestDb;
use support::api::{PASSWORD, email};
use support::process::{Reply, Service, exchange};

const MIB: u64 = 1024;
const NEW_PASSWORD: &str = "tangerine vessel 42";

async fn sign_up(service: &Service, address: &str) {
    let body = json!({ "email": address, "password": PASSWORD });
    let reply = service.send("POST", "/api/v1/accounts", "192.0.2.1", &[], Some(&body)).await.expect("sign-up");
    assert_eq!(reply.status, 201, "{}", reply.body);
}

async fn log_in(service: &Service, client: &str, address: &str, password: &str) -> Reply {
    let body = json!({ "email": address, "password": password });
    service.send("POST", "/api/v1/session", client, &[], Some(&body)).await.expect("login answered")
}

/// A session cookie's headers for `send`.
fn with_cookie(cookie: &str) -> [(&str, &str); 2] {
    [("Cookie", cookie), ("Sec-Fetch-Site", "same-origin")]
}

#[tokio::test]
async fn a_login_storm_from_200_addresses_stays_within_memory_bounds_and_answers_everyone() {
    let db = TestDb::new().await;
    let service = Service::start(&db, &[]).await;
    let victim = email("storm");
    sign_up(&service, &victim).await;
    let service = std::sync::Arc::new(service);
    let sampler = {
        let service = std::sync::Arc::clone(&service);
        tokio::spawn(async move {
            let mut peak = 0;
            for _ in 0..400 {
                peak = peak.max(service.memory_kib().0);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            peak
        })
    };
    let storm: Vec<_> = (0..200)
        .map(|n| {
            let service = std::sync::Arc::clone(&service);
            // Half on the real account, half on unknown ones: both cost a hash.
            let target = if n % 2 == 0 { victim.clone() } else { email("nobody") };
            tokio::spawn(async move {
                let client = format!("198.51.{}.{}", n / 250, n % 250 + 1);
                let body = json!({ "email": target, "password": "not the password at all" });
                let send = service.send("POST", "/api/v1/session", &client, &[], Some(&body));
                tokio::time::timeout(Duration::from_secs(10), send).await
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for request in storm {
        let reply = request.await.expect("joined").expect("answered within 10 s").expect("an HTTP answer");
        assert!([401, 429, 503].contains(&reply.status), "{} {}", reply.status, reply.body);
        if reply.status == 503 {
            assert_eq!(reply.header("retry-after"), Some("1"), "{}", reply.head);
        }
        *statuses.entry(reply.status).or_insert(0) += 1;
    }
    let (_, high_water) = service.memory_kib();
    let sampled = sampler.await.expect("sampler");
    let peak = high_water.max(sampled);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (after, _) = service.memory_kib();
    let mut service = std::sync::Arc::into_inner(service).expect("the only owner now");
    eprintln!("login storm: answers {statuses:?}, peak RSS {} MiB, 10 s later {} MiB", peak / MIB, after / MIB);
    assert!(service.alive(), "the service died");
    assert!(peak <= 256 * MIB, "peak RSS {} MiB", peak / MIB);
    assert!(after <= 64 * MIB, "RSS 10 s after the burst {} MiB", after / MIB);
    assert!(statuses.get(&401).is_some_and(|n| *n > 0), "some logins were really checked: {statuses:?}");
}

#[tokio::test]
async fn wrong_guesses_from_one_network_never_lock_the_owner_out() {
    let db = TestDb::new().await;
    let service = Service::start(&db, &[]).await;
    let victim = email("lockout");
    sign_up(&service, &victim).await;
    let mut last = 0;
    for _ in 0..11 {
        last = log_in(&service, "203.0.113.66", &victim, "guess guess guess").await.status;
    }
    assert_eq!(last, 429, "the attacker's network is stopped");
    let owner = log_in(&service, "192.0.2.44", &victim, PASSWORD).await;
    assert_eq!(owner.status, 200, "{}", owner.body);
    assert_eq!(owner.header("cache-control"), Some("no-store"));
    assert!(owner.cookie().is_some_and(|cookie| cookie.starts_with("__Host-session=")));
}

#[tokio::test]
async fn one_ipv6_64_is_one_client() {
    let db = TestDb::new().await;
    // The default 30 a minute, over an hour: a slow machine cannot see a window end mid-test.
    let service = Service::start(&db, &[("LOGIN_LIMIT_PER_IP", "30/1h")]).await;
    let mut statuses = Vec::new();
    for n in 0..31_u32 {
        let client = format!("2001:db8:7:9:{:x}:{:x}::1", n * 7919 % 65_536, n + 1);
        statuses.push(log_in(&service, &client, &email("spray"), "guess guess guess").await.status);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(statuses[..30].iter().all(|status| *status == 401), "{statuses:?}");
    let elsewhere = log_in(&service, "2001:db8:7:a::1", &email("spray"), "guess guess guess").await;
    assert_eq!(elsewhere.status, 401, "the next /64 is another client");
}

#[tokio::test]
async fn credentials_die_with_the_password_and_tokens_need_it() {
    let db = TestDb::new().await;
    let service = Service::start(&db, &[]).await;
    let address = email("rotate");
    sign_up(&service, &address).await;
    let cookie = log_in(&service, "192.0.2.9", &address, PASSWORD).await.cookie().expect("cookie");
    let other = log_in(&service, "192.0.2.10", &address, PASSWORD).await.cookie().expect("cookie");
    let session = with_cookie(&cookie);
    let create = |password: Option<&str>| {
        let mut body = json!({ "name": "deploy bot" });
        if let Some(password) = password {
            body["password"] = Value::from(password);
        }
        body
    };
    for refused in [create(None), create(Some("not my password"))] {
        let reply = service.send("POST", "/api/v1/tokens", "192.0.2.9", &session, Some(&refused)).await.expect("ok");
        assert_eq!(reply.status, 422, "a token without the password: {}", reply.body);
    }
    let created =
        service.send("POST", "/api/v1/tokens", "192.0.2.9", &session, Some(&create(Some(PASSWORD)))).await.expect("ok");
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(created.json()["expires_at"].is_string(), "tokens expire by default: {}", created.body);
    let bearer = format!("Bearer {}", created.json()["token"].as_str().expect("token"));
    let notes = |headers: Vec<(&'static str, String)>| {
        let service = &service;
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            service.send("GET", "/api/v1/notes", "192.0.2.9", &headers, None).await.expect("ok").status
        }
    };
    assert_eq!(notes(vec![("Authorization", bearer.clone())]).await, 200);

    let change = json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD });
    let changed =
        service.send("PUT", "/api/v1/account/password", "192.0.2.9", &session, Some(&change)).await.expect("ok");
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.json(), json!({ "sessions_revoked": 1, "tokens_revoked": 1 }));
    let rotated = changed.cookie().expect("a new session cookie");
    assert_ne!(rotated, cookie);
    assert_eq!(notes(vec![("Authorization", bearer)]).await, 401, "the token died with the password");
    assert_eq!(notes(vec![("Cookie", cookie)]).await, 401, "the old cookie of this session too");
    assert_eq!(notes(vec![("Cookie", other)]).await, 401, "and every other session");
    assert_eq!(notes(vec![("Cookie", rotated)]).await, 200, "the caller goes on under the new cookie");
}

#[tokio::test]
async fn password_change_guesses_count_like_logins() {
    let db = TestDb::new().await;
    let service = Service::start(&db, &[("LOGIN_LIMIT_PER_ACCOUNT_NETWORK", "3/15m")]).await;
    let address = email("guesser");
    sign_up(&service, &address).await;
    let cookie = log_in(&service, "192.0.2.20", &address, PASSWORD).await.cookie().expect("cookie");
    let guess = json!({ "current_password": "guess guess guess", "new_password": NEW_PASSWORD });
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let reply = service
            .send("PUT", "/api/v1/account/password", "192.0.2.20", &with_cookie(&cookie), Some(&guess))
            .await
            .expect("ok");
        statuses.push(reply.status);
    }
    // The login counted as the first attempt from this network.
    assert_eq!(statuses, [422, 422, 429]);
}

#[tokio::test]
async fn weak_passwords_and_nul_text_are_refused_naming_the_field() {
    let db = TestDb::new().await;
    let service = Service::start(&db, &[("SIGNUP_LIMIT_PER_IP", "100/1h")]).await;
    for weak in ["password1234", "aaaaaaaaaaaa", "qwertyuiopasdf"] {
        let body = json!({ "email": email("weak"), "password": weak });
        let reply = service.send("POST", "/api/v1/accounts", "192.0.2.30", &[], Some(&body)).await.expect("ok");
        assert_eq!(reply.status, 422, "{weak}: {}", reply.body);
        assert_eq!(reply.json()["error"]["code"], "weak_password", "{weak}");
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
    let nul_email = json!({ "email": "a\u{0}b@example.com", "password": PASSWORD });
    let reply = service.send("POST", "/api/v1/accounts", "192.0.2.30", &[], Some(&nul_email)).await.expect("ok");
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.json()["error"]["message"].as_str().is_some_and(|m| m.starts_with("email:")), "{}", reply.body);

    let address = email("nul");
    sign_up(&service, &address).await;
    let cookie = log_in(&service, "192.0.2.30", &address, PASSWORD).await.cookie().expect("cookie");
    let note = json!({ "title": "a\u{0}b", "body": "fine" });
    let reply =
        service.send("POST", "/api/v1/notes", "192.0.2.30", &with_cookie(&cookie), Some(&note)).await.expect("ok");
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.json()["error"]["message"].as_str().is_some_and(|m| m.starts_with("title:")), "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let forged = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let path = format!("/api/v1/notes?after={forged}");
    let reply = service.send("GET", &path, "192.0.2.30", &with_cookie(&cookie), None).await.expect("ok");
    assert_eq!((reply.status, reply.json()["error"]["code"].clone()), (422, json!("invalid_cursor")));
}

#[tokio::test]
async fn random_methods_do_not_grow_the_metrics_labels() {
    let db = TestDb::new().await;
    let service = Service::start(&db, &[]).await;
    for n in 0..50_u32 {
        let method = format!("X{}{n}", uuid::Uuid::new_v4().simple());
        let _ = service.send(&method, "/api/v1/notes", "192.0.2.40", &[], None).await;
    }
    let scrape = exchange(service.metrics, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("metrics");
    let methods: BTreeSet<&str> = scrape
        .body
        .lines()
        .filter(|line| line.starts_with("http_requests_total{"))
        .filter_map(|line| line.split("method=\"").nth(1)?.split('"').next())
        .collect();
    let closed =
        BTreeSet::from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "other"]);
    assert!(methods.contains("other"), "the random methods were counted: {methods:?}");
    assert!(methods.is_subset(&closed), "{methods:?}");
}

#[tokio::test]
async fn the_metrics_listener_drops_a_client_that_never_finishes_its_headers() {
    let db = TestDb::new().await;
    let service = Service::start(&db, &[("HEADER_READ_TIMEOUT", "500ms")]).await;
    let mut stream = tokio::net::TcpStream::connect(service.metrics).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET /metrics HTTP/1.1\r\nHost: loc").await.expect("write");
    let mut rest = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest);
    let closed = tokio::time::timeout(Duration::from_secs(5), read).await;
    assert!(closed.is_ok(), "the half-sent request still holds the connection");
    let text = String::from_utf8_lossy(&rest);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[test]
fn check_deploy_on_an_empty_production_environment_lists_every_finding() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_app"))
        .args(["check", "--deploy"])
        .env_clear()
        .env("APP_ENV", "production")
        .envs(std::env::var("LLVM_PROFILE_FILE").map(|profile| ("LLVM_PROFILE_FILE", profile)))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    for expected in ["(config.E001) DATABASE_URL: is not set", "security.W009", "security.W020", "proxy.W001"] {
        assert!(stdout.contains(expected), "{expected} missing:\n{stdout}");
    }
}
