//! With `SENTRY_DSN` pointing at a local receiver, a panic and a 500 arrive as events carrying the
//! request id, route, release and environment, and none of what the requests carried: the sentinel
//! secret, a cookie, an Authorization header, a password, an email. Without a DSN nothing is sent.

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use serde_json::Value;

use app::http::errors::ApiError;
use support::receiver::{Received, Receiver};
use support::service::{config, router, send};

const SENTINEL: &str = "sentinel-3b9f0c1d7e2a4f6b8c0d2e4f6a8b0c1d3e5f7a9b";
const EMAIL: &str = "ada.lovelace@example.com";

async fn panics() -> &'static str {
    panic!("failed with key {SENTINEL} for {EMAIL} password={SENTINEL}")
}

async fn fails() -> Result<&'static str, ApiError> {
    Err(ApiError::internal())
}

fn request(path: &str, id: &str) -> Request<Body> {
    Request::post(path)
        .header("host", "localhost")
        .header("x-request-id", id)
        .header("cookie", format!("session={SENTINEL}"))
        .header("authorization", format!("Bearer {SENTINEL}"))
        .header("content-type", "application/json")
        .body(Body::from(format!("{{\"email\":\"{EMAIL}\",\"password\":\"{SENTINEL}\"}}")))
        .expect("request")
}

/// The events of the envelopes that arrived (each envelope: a header line, then item header and
/// payload lines).
fn events(received: &[Received]) -> Vec<Value> {
    let mut events = Vec::new();
    for envelope in received {
        let lines: Vec<Value> = String::from_utf8_lossy(&envelope.body)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        for pair in lines.windows(2) {
            if pair[0]["type"] == "event" {
                events.push(pair[1].clone());
            }
        }
    }
    events
}

#[tokio::test]
async fn a_panic_and_a_500_arrive_with_the_request_id_and_without_the_sentinel() {
    let receiver = Receiver::start();
    let config = config(&[
        ("SECRET_KEY", SENTINEL),
        ("APP_RELEASE", "2026-12-01.1"),
        ("SENTRY_DSN", &format!("http://public0key@127.0.0.1:{}/42", receiver.port)),
    ]);
    let guard = app::error_reports::init(&config).expect("init").expect("a DSN is configured");
    let extra = Router::new().route("/panics", get(panics).post(panics)).route("/fails", get(fails).post(fails));
    let router = router(config, extra);
    assert_eq!(send(&router, request("/panics", "req-panic-1")).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(send(&router, request("/fails", "req-fail-2")).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(send(&router, support::service::get("/healthz")).await.status, StatusCode::OK);
    drop(guard);

    let received = receiver.wait_for(2);
    assert!(received.iter().all(|envelope| envelope.path == "/api/42/envelope/"), "{received:?}");
    let raw: String = received.iter().map(|envelope| String::from_utf8_lossy(&envelope.body).into_owned()).collect();
    for leak in [SENTINEL, EMAIL, "Bearer", "session="] {
        assert!(!raw.contains(leak), "{leak} was sent: {raw}");
    }
    let events = events(&received);
    assert_eq!(events.len(), 2, "{raw}");
    let by_id = |id: &str| {
        events
            .iter()
            .find(|event| event["tags"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no event for {id}: {raw}"))
    };
    let panic = by_id("req-panic-1");
    let message = panic["message"].as_str().or_else(|| panic["logentry"]["message"].as_str()).unwrap_or_default();
    assert!(message.starts_with("panic in POST /panics: failed with key [redacted]"), "{panic}");
    let failure = by_id("req-fail-2");
    assert_eq!(failure["tags"]["http.route"], "/fails");
    assert_eq!(failure["tags"]["http.status_code"], "500");
    for event in [panic, failure] {
        assert_eq!((&event["release"], &event["environment"]), (&"2026-12-01.1".into(), &"test".into()), "{event}");
        assert!(event.get("request").is_none() && event.get("user").is_none(), "{event}");
    }
}

#[tokio::test]
async fn without_a_dsn_nothing_is_started() {
    let config = config(&[]);
    assert!(app::error_reports::init(&config).expect("init").is_none());
}
