//! A sentinel secret set in the configuration never shows up in a log line, a response body or a
//! `Debug` rendering, whatever the requests carry; and every request leaves one access-log line.

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tracing_subscriber::layer::SubscriberExt;

use app::config::LogFormat;
use app::telemetry::{LogLayer, MemorySink};
use support::service::{config, router, send};

const SENTINEL: &str = "sentinel-7f3a9c2e41d04b5d8a6e0c1f9b2a3d4e5f60718293a4b5c6d";

async fn leak() -> &'static str {
    panic!("failed with key {SENTINEL}")
}

#[tokio::test]
async fn the_sentinel_secret_never_leaks() {
    let config = config(&[
        ("SECRET_KEY", SENTINEL),
        ("DATABASE_URL", &format!("postgres://app:{SENTINEL}@127.0.0.1:1/app")),
        ("DATABASE_ACQUIRE_TIMEOUT", "300ms"),
    ]);
    assert!(!format!("{config:?}").contains(SENTINEL), "Debug shows the secret");

    let logs = MemorySink::default();
    let layer = LogLayer::new(LogFormat::Json, config.secret_values(), logs.sink());
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));

    let leaky = Router::new().route("/leak", get(leak));
    let router = router(config, leaky);
    let requests = [
        Request::get("/healthz")
            .header("host", "localhost")
            .header("authorization", format!("Bearer {SENTINEL}"))
            .body(Body::empty()),
        Request::get("/readyz")
            .header("host", "localhost")
            .header("cookie", format!("session={SENTINEL}"))
            .body(Body::empty()),
        Request::get(format!("/nope?token={SENTINEL}")).header("host", "localhost").body(Body::empty()),
        Request::get("/nope").header("host", "evil.example").body(Body::empty()),
        Request::get("/leak").header("host", "localhost").body(Body::empty()),
        Request::post("/csp-report")
            .header("host", "localhost")
            .body(Body::from(format!("{{\"note\":\"{SENTINEL}\"}}"))),
    ];
    for request in requests {
        let reply = send(&router, request.expect("request")).await;
        assert!(!reply.body.contains(SENTINEL), "{} body leaks: {}", reply.status, reply.body);
        assert!(reply.headers.values().all(|value| !value.to_str().unwrap_or("").contains(SENTINEL)), "headers leak");
    }

    let logs = logs.contents();
    assert!(!logs.contains(SENTINEL), "a log line leaks the secret:\n{logs}");
    let access: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is JSON"))
        .filter(|line: &serde_json::Value| line["target"] == "access")
        .collect();
    assert_eq!(access.len(), 6, "one access line per request:\n{logs}");
    for line in &access {
        for field in ["ts", "level", "request_id", "method", "path", "status", "latency_ms", "remote_ip"] {
            assert!(!line[field].is_null(), "{field} missing from {line}");
        }
        assert!(!line["path"].as_str().expect("path").contains('?'), "the query is never logged");
    }
    assert!(logs.contains("a handler panicked"), "the panic is logged (redacted):\n{logs}");
}
