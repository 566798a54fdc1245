//! The built binary under faults, black-box over real sockets with a real PostgreSQL: the database
//! stopping under load and coming back, SIGTERM under load, `kill -9` during acknowledged writes, a
//! corpus of bad input, slowloris, and a secret that must never show. Each test prints its figures
//! (`reliability: …`); the assertions are on outcomes, never on speed.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::process::{HOST, Reply, Service, exchange};
use support::relay::Relay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// A secret the service is configured with and clients send; no log line or body may hold it.
const SENTINEL: &str = "sentinel-7d1c0e9a4b-never-logged-never-echoed-0123456789abcdef";

/// The service as production runs it, with the sentinel as its key, access logs on, and no API limit
/// in the way of the load; `overrides` on top.
async fn start(db: &support::TestDb, overrides: &[(&str, &str)]) -> Service {
    let settings = [("SECRET_KEY", SENTINEL), ("LOG_LEVEL", "info"), ("API_LIMIT_PER_CALLER", "1000000/1m")];
    let settings: Vec<(&str, &str)> = settings.into_iter().chain(overrides.iter().copied()).collect();
    Service::start(db, &settings).await
}

/// Fails if the sentinel appears in any line the process wrote.
fn assert_no_secret_logged(service: &Service) {
    let logs = service.logs();
    assert!(!logs.is_empty(), "the service logged nothing, so this check would prove nothing");
    if let Some(line) = logs.iter().find(|line| line.contains(SENTINEL)) {
        panic!("a log line carries the secret: {line}");
    }
}

/// The service's error shape: `{"error":{"code",…}}`.
fn is_json_error(reply: &Reply) -> bool {
    serde_json::from_str::<serde_json::Value>(&reply.body).is_ok_and(|body| body["error"]["code"].is_string())
}

/// A request as the TLS proxy in front of the service passes it on.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Vec<u8> {
    let mut text =
        format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        text.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body.unwrap_or_default());
    text.into_bytes()
}

/// An account with an API token, straight in the database: the bearer token.
async fn account_with_token(pool: &sqlx::PgPool) -> String {
    let account = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO accounts (id, email, password_hash) VALUES ($1, $2, 'not a hash')")
        .bind(account)
        .bind(format!("{account}@example.com"))
        .execute(pool)
        .await
        .expect("account");
    let token = app::auth::tokens::generate("ss_");
    sqlx::query("INSERT INTO api_tokens (id, account_id, name, token_hash) VALUES ($1, $2, 'reliability', $3)")
        .bind(uuid::Uuid::now_v7())
        .bind(account)
        .bind(app::auth::tokens::digest(&token))
        .execute(pool)
        .await
        .expect("token");
    token
}

/// What a load client saw: one entry per request it sent.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    statuses: Vec<(u16, Duration)>,
    /// Requests whose connection was accepted but that got no complete answer.
    failed: usize,
}

impl Tally {
    fn count(&self, status: u16) -> usize {
        self.statuses.iter().filter(|(code, _)| *code == status).count()
    }

    fn server_errors(&self) -> usize {
        self.statuses.iter().filter(|(code, _)| *code >= 500).count()
    }
}

/// `clients` loops sending `make(n)` until `stop`; each request on a fresh connection.
async fn load(
    addr: SocketAddr,
    clients: usize,
    stop: Arc<AtomicBool>,
    make: impl Fn(usize, usize) -> Vec<u8> + Send + Sync + 'static,
) -> (Tally, Vec<(Vec<u8>, u16)>) {
    let make = Arc::new(make);
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        let (stop, make) = (Arc::clone(&stop), Arc::clone(&make));
        tasks.spawn(async move {
            let (mut tally, mut answered) = (Tally::default(), Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let bytes = make(client, n);
                n += 1;
                let started = Instant::now();
                let Ok(mut stream) = TcpStream::connect(addr).await else {
                    // Refused: nothing was in flight. A load balancer would have stopped sending.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                tally.sent += 1;
                let mut received = Vec::new();
                let outcome = async {
                    stream.write_all(&bytes).await?;
                    stream.read_to_end(&mut received).await
                };
                match tokio::time::timeout(Duration::from_secs(15), outcome).await {
                    Ok(Ok(_)) if received.starts_with(b"HTTP/1.1 ") => {
                        let status = String::from_utf8_lossy(&received[9..12]).parse().unwrap_or(0);
                        tally.statuses.push((status, started.elapsed()));
                        answered.push((bytes, status));
                    }
                    _ => tally.failed += 1,
                }
            }
            (tally, answered)
        });
    }
    let mut total = (Tally::default(), Vec::new());
    while let Some(result) = tasks.join_next().await {
        let (tally, answered) = result.expect("a load client panicked");
        total.0.sent += tally.sent;
        total.0.failed += tally.failed;
        total.0.statuses.extend(tally.statuses);
        total.1.extend(answered);
    }
    total
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    exchange(addr, &request("GET", path, headers, None)).await.expect("an answer")
}

fn postgres_addr(url: &str) -> SocketAddr {
    let authority = url.split("://").nth(1).and_then(|rest| rest.split('/').next()).expect("a postgres:// URL");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    host_port.replace("localhost", "127.0.0.1").parse().expect("the server's address")
}

/// `url` pointed at `addr`, with the sentinel as its password when it has none (the test server
/// trusts loopback, so it is sent and ignored: a leak would still show).
fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (credentials, after) = rest.split_once('@').map_or(("postgres", rest), |(user, after)| (user, after));
    let path = &after[after.find(['/', '?']).unwrap_or(after.len())..];
    let credentials =
        if credentials.contains(':') { credentials.to_owned() } else { format!("{credentials}:{SENTINEL}") };
    format!("{scheme}://{credentials}@{addr}{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_answered_503_fast_and_recovered_without_restart() {
    let db = support::TestDb::new().await;
    let token = account_with_token(&db.pool).await;
    let url = db.url_for_schema();
    let mut relay = Relay::start(postgres_addr(&url)).await;
    let relayed = through(&url, relay.addr);
    let service = start(&db, &[("DATABASE_URL", &relayed), ("DATABASE_ACQUIRE_TIMEOUT", "1s")]).await;
    let bearer = format!("Bearer {token}");
    assert_eq!(get(service.addr, "/api/v1/notes", &[("Authorization", &bearer)]).await.status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let auth = bearer.clone();
    let clients = tokio::spawn(load(service.addr, 4, Arc::clone(&stop), move |_, _| {
        request("GET", "/api/v1/notes", &[("Authorization", &auth)], None)
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;

    relay.cut();
    let cut = Instant::now();
    let not_ready = loop {
        if get(service.addr, "/readyz", &[]).await.status == 503 {
            break cut.elapsed();
        }
        assert!(cut.elapsed() < Duration::from_secs(5), "/readyz kept answering 200 without a database");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = get(service.addr, "/api/v1/notes", &[("Authorization", &bearer)]).await;
    assert_eq!(during.status, 503, "{during:?}");
    assert!(is_json_error(&during) && during.body.contains("database_unavailable"), "{}", during.body);

    relay.restore().await;
    let back = Instant::now();
    while get(service.addr, "/readyz", &[]).await.status != 200 {
        assert!(back.elapsed() < Duration::from_secs(10), "no recovery within 10 s of the database's return");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = back.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (tally, _) = clients.await.expect("load");
    let slowest_refusal = tally.statuses.iter().filter(|(code, _)| *code == 503).map(|(_, took)| *took).max();
    println!(
        "reliability: database outage: {} requests sent, {} failed, {} × 200, {} × 503, {} other 5xx; \
         /readyz 503 after {:?}; slowest 503 {:?}; ready again {:?} after the database returned",
        tally.sent,
        tally.failed,
        tally.count(200),
        tally.count(503),
        tally.server_errors() - tally.count(503),
        not_ready,
        slowest_refusal,
        recovered
    );
    assert!(not_ready <= Duration::from_secs(2), "/readyz took {not_ready:?} to notice");
    assert_eq!(tally.failed, 0, "every request got an answer");
    assert_eq!(tally.server_errors(), tally.count(503), "only 503s while the database was away");
    assert!(tally.count(503) > 0 && tally.count(200) > 0);
    // Bounded by DATABASE_ACQUIRE_TIMEOUT (1 s here), never a hang.
    assert!(slowest_refusal.is_some_and(|took| took < Duration::from_secs(3)), "{slowest_refusal:?}");
    assert_eq!(get(service.addr, "/api/v1/notes", &[("Authorization", &bearer)]).await.status, 200);
    assert_no_secret_logged(&service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_fails_no_request_in_flight_and_exits_0() {
    let db = support::TestDb::new().await;
    let token = account_with_token(&db.pool).await;
    let mut service = start(&db, &[("DRAIN_DELAY", "1s"), ("SHUTDOWN_TIMEOUT", "10s")]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let bearer = format!("Bearer {token}");
    let clients = tokio::spawn(load(service.addr, 8, Arc::clone(&stop), move |client, n| {
        let body = format!(r#"{{"title":"drain {client}-{n}","body":"written while the service stops"}}"#);
        request("POST", "/api/v1/notes", &[("Authorization", &bearer)], Some(&body))
    }));
    tokio::time::sleep(Duration::from_millis(700)).await;
    service.signal("TERM");
    // As a load balancer does: keep sending until /readyz says 503, then stop sending new requests.
    let signalled = Instant::now();
    while get(service.addr, "/readyz", &[]).await.status != 503 {
        assert!(signalled.elapsed() < Duration::from_secs(2), "/readyz did not turn 503 on SIGTERM");
    }
    stop.store(true, Ordering::SeqCst);
    let (tally, answered) = clients.await.expect("load");
    let status = service.wait(Duration::from_secs(15)).expect("the service exits after draining");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM notes").fetch_one(&db.pool).await.expect("count");
    println!(
        "reliability: SIGTERM under load: {} requests sent, {} failed, {} × 201, {} 5xx, {stored} rows stored; exit {status}",
        tally.sent,
        tally.failed,
        tally.count(201),
        tally.server_errors()
    );
    assert_eq!(tally.failed, 0, "a request in flight at SIGTERM got no answer");
    assert_eq!(tally.server_errors(), 0);
    assert_eq!(answered.iter().filter(|(_, status)| *status == 201).count(), tally.sent);
    assert!(status.success(), "exit {status}");
    assert!(stored >= i64::try_from(tally.count(201)).expect("small"));
    assert_no_secret_logged(&service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_no_acknowledged_write() {
    let db = support::TestDb::new().await;
    let token = account_with_token(&db.pool).await;
    let service = start(&db, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let bearer = format!("Bearer {token}");
    let clients = tokio::spawn(load(service.addr, 8, Arc::clone(&stop), move |client, n| {
        let body = format!(r#"{{"title":"ack {client}-{n}","body":"must survive kill -9"}}"#);
        request("POST", "/api/v1/notes", &[("Authorization", &bearer)], Some(&body))
    }));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    service.signal("KILL");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (tally, answered) = clients.await.expect("load");
    let acknowledged: Vec<String> = answered
        .iter()
        .filter(|(_, status)| *status == 201)
        .map(|(bytes, _)| {
            let text = String::from_utf8_lossy(bytes);
            let title = text.split(r#""title":""#).nth(1).and_then(|rest| rest.split('"').next()).expect("a title");
            title.to_owned()
        })
        .collect();
    let stored: Vec<String> = sqlx::query_scalar("SELECT title FROM notes").fetch_all(&db.pool).await.expect("titles");
    let lost: Vec<&String> = acknowledged.iter().filter(|title| !stored.contains(title)).collect();
    println!(
        "reliability: kill -9 during writes: {} requests sent, {} without an answer (the kill), {} acknowledged, \
         {} stored, {} acknowledged but lost, {} 5xx",
        tally.sent,
        tally.failed,
        acknowledged.len(),
        stored.len(),
        lost.len(),
        tally.server_errors()
    );
    assert!(acknowledged.len() > 10, "too few writes to prove anything");
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert_eq!(tally.server_errors(), 0);
}

/// Requests no client should send. Each: a name and the raw bytes.
fn corpus(bearer: &str) -> Vec<(&'static str, Vec<u8>)> {
    let auth = [("Authorization", bearer)];
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // Hand-written requests name the service's host as `{HOST}`.
    let raw = |text: &str| text.replace("{HOST}", HOST).into_bytes();
    let with_length = |path: &str, content_type: &str, length: usize, body: &[u8]| {
        let mut bytes = format!(
            "POST {path} HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\
             Authorization: {bearer}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        bytes
    };
    let with_body = |path: &str, content_type: &str, body: &[u8]| with_length(path, content_type, body.len(), body);
    vec![
        // Announced, not sent: the answer comes before the body, and a client still writing would see a reset.
        ("oversized JSON", with_length("/api/v1/notes", "application/json", 2 * 1024 * 1024, b"{\"title\":\"")),
        ("malformed JSON", request("POST", "/api/v1/notes", &auth, Some(r#"{"title": "x", "body": "#))),
        ("deeply nested JSON", request("POST", "/api/v1/notes", &auth, Some(&nested))),
        ("JSON of the wrong shape", request("POST", "/api/v1/notes", &auth, Some(r#"{"title": 1, "body": []}"#))),
        ("unknown JSON fields", request("POST", "/api/v1/notes", &auth, Some(r#"{"title":"t","body":"b","x":1}"#))),
        ("wrong content type", with_body("/api/v1/notes", "text/plain", b"title=x")),
        ("form content type", with_body("/api/v1/session", "application/x-www-form-urlencoded", b"email=a&password=b")),
        (
            "invalid UTF-8 body",
            with_body("/api/v1/notes", "application/json", b"{\"title\":\"\xff\xfe\",\"body\":\"x\"}"),
        ),
        ("NUL in JSON", request("POST", "/api/v1/notes", &auth, Some(r#"{"title":"a\u0000b","body":""}"#))),
        ("invalid UTF-8 header", {
            let mut bytes = raw(
                "GET /api/v1/notes HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-Proto: https\r\nConnection: close\r\nX-Request-Id: ",
            );
            bytes.extend_from_slice(b"\xff\xfe\xfd\r\n\r\n");
            bytes
        }),
        ("huge header", request("GET", "/api/v1/notes", &[("X-Padding", &"a".repeat(64 * 1024))], None)),
        ("repeated headers", request("GET", "/api/v1/notes", &[("X-Forwarded-For", "1.2.3.4"); 90], None)),
        ("too many headers", {
            let names: Vec<String> = (0..200).map(|n| format!("X-H{n}")).collect();
            let headers: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "v")).collect();
            request("GET", "/healthz", &headers, None)
        }),
        (
            "two Host headers",
            raw(
                "GET /api/v1/notes HTTP/1.1\r\nHost: {HOST}\r\nHost: evil.example\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
            ),
        ),
        (
            "CR in a header value",
            raw(
                "GET /api/v1/notes HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-Proto: https\r\nX-Test: a\rAuthorization: Bearer x\r\nConnection: close\r\n\r\n",
            ),
        ),
        // A bare LF ends a header line for HTTP parsers: the "injected" header is just a header.
        (
            "LF in a header value",
            raw(
                "GET /api/v1/notes HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-Proto: https\r\nX-Test: a\nAuthorization: Bearer x\r\nConnection: close\r\n\r\n",
            ),
        ),
        ("path traversal", request("GET", "/../../../etc/passwd", &[], None)),
        ("encoded path traversal", request("GET", "/api/v1/notes/..%2F..%2F..%2Fetc%2Fpasswd", &auth, None)),
        ("dot segments to a private route", request("GET", "/healthz/../api/v1/tokens", &[], None)),
        (
            "SQL in a login",
            request(
                "POST",
                "/api/v1/session",
                &[],
                Some(r#"{"email":"' OR 1=1 --@x.com","password":"x'; DROP TABLE accounts; --"}"#),
            ),
        ),
        ("SQL in a cursor", request("GET", "/api/v1/notes?after=%27%20OR%201%3D1%20--", &auth, None)),
        ("SQL in an id", request("GET", "/api/v1/notes/1%20OR%201=1", &auth, None)),
        ("a huge limit", request("GET", "/api/v1/notes?limit=99999999999999999999", &auth, None)),
        (
            "a bad Host",
            raw(
                "GET /api/v1/notes HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
            ),
        ),
        (
            "a Host with a path",
            raw(
                "GET /api/v1/notes HTTP/1.1\r\nHost: {HOST}/evil\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
            ),
        ),
        ("no Host", raw("GET /api/v1/notes HTTP/1.1\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n")),
        (
            "an unknown method",
            raw("BREW /api/v1/notes HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"),
        ),
        ("a bad bearer", request("GET", "/api/v1/notes", &[("Authorization", "Bearer ' OR ''='")], None)),
        ("a bad cookie", request("GET", "/api/v1/notes", &[("Cookie", "__Host-session=%00%ff; session=../../")], None)),
        ("TLS sent to plain HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_of_bad_input_gets_4xx_answers_and_the_process_stays_up() {
    let db = support::TestDb::new().await;
    let token = account_with_token(&db.pool).await;
    let mut service = start(&db, &[]).await;
    let bearer = format!("Bearer {token}");
    let (mut json, mut refused_by_the_parser, mut failures) = (0, 0, Vec::new());
    let corpus = corpus(&bearer);
    for (name, bytes) in &corpus {
        let reply = match exchange(service.addr, bytes).await {
            Ok(reply) => reply,
            Err(error) => {
                failures.push(format!("{name}: no answer ({error})"));
                continue;
            }
        };
        if !(400..500).contains(&reply.status) {
            failures.push(format!("{name}: {} {}", reply.status, reply.body));
        } else if is_json_error(&reply) {
            json += 1;
        } else if reply.header("x-request-id").is_none() && reply.body.is_empty() {
            // hyper refused the bytes before they were an HTTP request (no route, no layer ran).
            refused_by_the_parser += 1;
        } else {
            failures.push(format!("{name}: {} without the JSON error shape: {:?}", reply.status, reply.body));
        }
    }
    let alive = get(service.addr, "/healthz", &[]).await.status == 200 && service.alive();
    println!(
        "reliability: bad input: {} requests, {json} × 4xx JSON, {refused_by_the_parser} × 4xx from the HTTP parser \
         (not yet a request), {} failures, 0 5xx allowed; process up: {alive}",
        corpus.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(alive, "the process went down");
    assert_no_secret_logged(&service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_cut_while_normal_clients_are_served() {
    let db = support::TestDb::new().await;
    let service = start(&db, &[("HEADER_READ_TIMEOUT", "1s")]).await;
    let mut slow = JoinSet::new();
    for _ in 0..50 {
        let addr = service.addr;
        slow.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let started = Instant::now();
            for byte in b"GET /healthz HTTP/1.1\r\nHost: app.test\r\nX-Slow: "
                .iter()
                .chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
            {
                if stream.write_all(&[*byte]).await.is_err() {
                    return started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                if started.elapsed() > Duration::from_secs(8) {
                    break;
                }
            }
            let mut buffer = [0_u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
            started.elapsed()
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let clients = tokio::spawn(load(service.addr, 2, Arc::clone(&stop), |_, _| request("GET", "/healthz", &[], None)));
    let mut cut = Vec::new();
    while let Some(lasted) = slow.join_next().await {
        cut.push(lasted.expect("slow client"));
    }
    stop.store(true, Ordering::SeqCst);
    let (tally, _) = clients.await.expect("load");
    let longest = cut.iter().max().copied().unwrap_or_default();
    println!(
        "reliability: slowloris: {} slow connections, the longest lasted {longest:?} (header timeout 1 s); \
         meanwhile {} normal requests sent, {} failed, {} × 200",
        cut.len(),
        tally.sent,
        tally.failed,
        tally.count(200)
    );
    assert!(longest < Duration::from_secs(4), "a slow client held its connection for {longest:?}");
    assert!(tally.sent > 10 && tally.failed == 0 && tally.count(200) == tally.sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_secret_never_shows_in_a_log_line_or_a_body() {
    let db = support::TestDb::new().await;
    let service = start(&db, &[("LOG_LEVEL", "debug")]).await;
    let cookie = format!("__Host-session={SENTINEL}");
    let bearer = format!("Bearer {SENTINEL}");
    let login = format!(r#"{{"email":"someone@example.com","password":"{SENTINEL}"}}"#);
    let signup = format!(r#"{{"email":"{SENTINEL}","password":"{SENTINEL}"}}"#);
    let query = format!("/api/v1/notes?token={SENTINEL}&password={SENTINEL}");
    let requests = [
        request("GET", "/api/v1/notes", &[("Authorization", &bearer)], None),
        request("GET", "/api/v1/notes", &[("Cookie", &cookie)], None),
        request("GET", &query, &[], None),
        request("POST", "/api/v1/session", &[], Some(&login)),
        request("POST", "/api/v1/accounts", &[], Some(&signup)),
        request("GET", "/healthz", &[("X-Api-Key", SENTINEL), ("X-Forwarded-For", SENTINEL)], None),
        request("GET", &format!("/{SENTINEL}"), &[], None),
    ];
    let mut bodies = Vec::new();
    for bytes in &requests {
        let reply = exchange(service.addr, bytes).await.expect("an answer");
        assert!(reply.status < 500, "{reply:?}");
        bodies.push(format!("{}\r\n\r\n{}", reply.head, reply.body));
    }
    // The log writer runs on a thread of its own: give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = service.logs();
    println!(
        "reliability: sentinel secret: {} requests carrying it, {} log lines, {} bodies and heads checked",
        requests.len(),
        logs.len(),
        bodies.len()
    );
    for body in &bodies {
        assert!(!body.contains(SENTINEL), "a response carries the secret: {body}");
    }
    assert!(logs.iter().any(|line| line.contains("\"status\"")), "no access log line to check: {logs:?}");
    assert_no_secret_logged(&service);
}
