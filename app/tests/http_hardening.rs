//! The middleware stack through the real router: headers on every response, hosts, proxy trust,
//! HTTPS redirect, limits, CORS, CSRF, request ids and the one error shape.

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::{get, post};
use support::service::{config, get as get_request, router, send, send_from};

const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

fn test_routes() -> Router<app::state::AppState> {
    Router::new()
        .route("/panic", get(explode))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "slow"
            }),
        )
        .route("/echo", post(|body: String| async move { body }))
}

async fn explode() -> &'static str {
    panic!("internal detail: connection string postgres://secret")
}

fn assert_hardened(reply: &support::service::Reply) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(reply.header(name), Some(*value), "{name} on a {}", reply.status);
    }
    let csp = reply.header("content-security-policy").expect("CSP");
    assert!(csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(reply.header("permissions-policy").is_some_and(|policy| policy.contains("camera=()")));
    assert!(reply.header("server").is_none() && reply.header("x-powered-by").is_none());
}

fn assert_error(reply: &support::service::Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{}", reply.body);
    assert!(body["error"]["message"].as_str().is_some_and(|message| !message.is_empty()));
    assert_eq!(body["error"]["request_id"].as_str(), reply.header("x-request-id"), "the body names the request");
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn every_response_is_hardened_including_errors_and_rejections() {
    let limits = config(&[("MAX_BODY_BYTES", "1024"), ("REQUEST_TIMEOUT", "100ms")]);
    let router = router(limits, test_routes());
    let ok = send(&router, get_request("/healthz")).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_hardened(&ok);

    let not_found = send(&router, get_request("/nope")).await;
    assert_error(&not_found, StatusCode::NOT_FOUND, "not_found");
    assert_hardened(&not_found);

    let wrong_method =
        send(&router, Request::get("/echo").header("host", "localhost").body(Body::empty()).expect("req")).await;
    assert_error(&wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_hardened(&wrong_method);

    let big = Request::post("/echo")
        .header("host", "localhost")
        .header("content-length", "4096")
        .body(Body::from(vec![b'x'; 4096]))
        .expect("req");
    let too_large = send(&router, big).await;
    assert_error(&too_large, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_hardened(&too_large);

    let timed_out = send(&router, get_request("/slow")).await;
    assert_error(&timed_out, StatusCode::REQUEST_TIMEOUT, "request_timeout");
    assert_hardened(&timed_out);

    let panicked = send(&router, get_request("/panic")).await;
    assert_error(&panicked, StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
    assert_hardened(&panicked);
    assert!(!panicked.body.contains("internal detail") && !panicked.body.contains("postgres://"), "{}", panicked.body);

    let bad_host =
        send(&router, Request::get("/nope").header("host", "evil.example").body(Body::empty()).expect("req")).await;
    assert_error(&bad_host, StatusCode::BAD_REQUEST, "invalid_host");
    assert_hardened(&bad_host);
}

#[tokio::test]
async fn unknown_hosts_are_refused_and_ports_and_ipv6_literals_are_understood() {
    let router = router(config(&[("ALLOWED_HOSTS", "app.example.com,.example.org,::1")]), Router::new());
    for (host, status) in [
        ("app.example.com", StatusCode::OK),
        ("APP.example.com:8443", StatusCode::OK),
        ("api.example.org", StatusCode::OK),
        ("[::1]:8000", StatusCode::OK),
        ("example.com", StatusCode::BAD_REQUEST),
        ("app.example.com.evil.net", StatusCode::BAD_REQUEST),
        ("app.example.com:notaport", StatusCode::BAD_REQUEST),
    ] {
        let reply = send(&router, Request::get("/nope").header("host", host).body(Body::empty()).expect("req")).await;
        // An allowed host reaches the router (404: nothing there); others are refused before it.
        let expected = if status == StatusCode::OK { StatusCode::NOT_FOUND } else { status };
        assert_eq!(reply.status, expected, "Host: {host}");
    }
    let no_host = send(&router, Request::get("/nope").body(Body::empty()).expect("req")).await;
    assert_error(&no_host, StatusCode::BAD_REQUEST, "invalid_host");
    // Probes come by IP from the orchestrator and are answered whatever the Host.
    let probe =
        send(&router, Request::get("/healthz").header("host", "10.1.2.3:8000").body(Body::empty()).expect("req")).await;
    assert_eq!(probe.status, StatusCode::OK);
}

fn proxied(proto: &str) -> Request<Body> {
    Request::get("/notes?page=2")
        .header("host", "app.example.com")
        .header("x-forwarded-proto", proto)
        .header("x-forwarded-for", "198.51.100.7")
        .body(Body::empty())
        .expect("req")
}

#[tokio::test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let production_like = config(&[
        ("ALLOWED_HOSTS", "app.example.com"),
        ("SECURE_SSL_REDIRECT", "true"),
        ("SECURE_HSTS_SECONDS", "63072000"),
        ("TRUSTED_PROXIES", "10.0.0.0/8"),
    ]);
    let router = router(production_like, Router::new());

    // A spoofed X-Forwarded-Proto from the internet is ignored: still plain HTTP, so redirected.
    let spoofed = send_from(&router, "203.0.113.10:4000", proxied("https")).await;
    assert_eq!(spoofed.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(spoofed.header("location"), Some("https://app.example.com/notes?page=2"));
    assert!(spoofed.header("strict-transport-security").is_none(), "no HSTS over plain HTTP");

    // The same header from the proxy is honoured: HTTPS, so served (404 here) with HSTS.
    let honoured = send_from(&router, "10.0.0.5:4000", proxied("https")).await;
    assert_eq!(honoured.status, StatusCode::NOT_FOUND);
    assert_eq!(honoured.header("strict-transport-security"), Some("max-age=63072000; includeSubDomains"));

    // Plain HTTP through the proxy is redirected; health probes never are.
    assert_eq!(send_from(&router, "10.0.0.5:4000", proxied("http")).await.status, StatusCode::PERMANENT_REDIRECT);
    let probe = Request::get("/healthz").header("host", "app.example.com").body(Body::empty()).expect("req");
    assert_eq!(send_from(&router, "10.0.0.6:4000", probe).await.status, StatusCode::OK);
}

#[tokio::test]
async fn cors_allows_listed_origins_with_credentials_and_nobody_else() {
    let router = router(config(&[("CORS_ALLOWED_ORIGINS", "https://app.example.com")]), Router::new());
    let from = |origin: &str| {
        Request::get("/healthz").header("host", "localhost").header("origin", origin).body(Body::empty()).expect("req")
    };
    let listed = send(&router, from("https://app.example.com")).await;
    assert_eq!(listed.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(listed.header("access-control-allow-credentials"), Some("true"));
    let unknown = send(&router, from("https://evil.example")).await;
    assert!(unknown.header("access-control-allow-origin").is_none());

    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/healthz")
        .header("host", "localhost")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .body(Body::empty())
        .expect("req");
    assert!(send(&router, preflight).await.header("access-control-allow-origin").is_none());

    let any = router_any();
    let reply = send(&any, from("https://whoever.example")).await;
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    assert!(reply.header("access-control-allow-credentials").is_none(), "never * with credentials");
}

fn router_any() -> Router {
    router(config(&[("CORS_ALLOWED_ORIGINS", "*")]), Router::new())
}

#[tokio::test]
async fn csrf_refuses_cookie_posts_from_foreign_origins_and_allows_trusted_ones() {
    let router = router(config(&[("CSRF_TRUSTED_ORIGINS", "https://admin.example.com")]), test_routes());
    let post = |origin: &str| {
        Request::post("/echo")
            .header("host", "localhost")
            .header("cookie", "session=abc")
            .header("origin", origin)
            .body(Body::from("hi"))
            .expect("req")
    };
    let foreign = send(&router, post("https://evil.example")).await;
    assert_error(&foreign, StatusCode::FORBIDDEN, "csrf_failed");
    assert!(foreign.body.contains("Origin is not trusted"));
    assert_eq!(send(&router, post("https://admin.example.com")).await.status, StatusCode::OK);
    assert_eq!(send(&router, post("http://localhost")).await.status, StatusCode::OK, "the site itself");
    let bearer = Request::post("/echo")
        .header("host", "localhost")
        .header("cookie", "session=abc")
        .header("authorization", "Bearer token")
        .header("origin", "https://evil.example")
        .body(Body::from("hi"))
        .expect("req");
    assert_eq!(send(&router, bearer).await.status, StatusCode::OK, "bearer requests are exempt");
}

#[tokio::test]
async fn request_ids_are_echoed_when_sane_and_generated_otherwise() {
    let router = router(config(&[]), Router::new());
    let with_id = |id: &str| {
        Request::get("/healthz")
            .header("host", "localhost")
            .header("x-request-id", id)
            .body(Body::empty())
            .expect("req")
    };
    assert_eq!(send(&router, with_id("trace-123.abc")).await.header("x-request-id"), Some("trace-123.abc"));
    let replaced = send(&router, with_id("bad id <script>")).await;
    let generated = replaced.header("x-request-id").expect("an id");
    assert!(generated != "bad id <script>" && app::http::request_id::is_sane(generated));
    let fresh = send(&router, get_request("/healthz")).await;
    assert!(fresh.header("x-request-id").is_some_and(app::http::request_id::is_sane));
}

#[tokio::test]
async fn excess_concurrency_is_shed_with_retry_after() {
    let router = router(config(&[("MAX_CONCURRENT_REQUESTS", "1")]), test_routes());
    let slow = tokio::spawn({
        let router = router.clone();
        async move { send(&router, get_request("/slow")).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shed = send(&router, get_request("/healthz")).await;
    assert_error(&shed, StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_hardened(&shed);
    assert_eq!(slow.await.expect("joined").status, StatusCode::OK);
    assert_eq!(send(&router, get_request("/healthz")).await.status, StatusCode::OK, "capacity is back");
}

#[tokio::test]
async fn csp_can_report_only_and_reports_are_rate_limited() {
    let router = router(config(&[("CSP_REPORT_ONLY", "true"), ("CSP_REPORTS_PER_MINUTE", "2")]), Router::new());
    let reply = send(&router, get_request("/healthz")).await;
    assert!(reply.header("content-security-policy").is_none());
    assert!(
        reply.header("content-security-policy-report-only").is_some_and(|csp| csp.contains("report-uri /csp-report"))
    );
    let report = || {
        Request::post("/csp-report")
            .header("host", "localhost")
            .header("content-type", "application/csp-report")
            .body(Body::from("{\"csp-report\":{}}"))
            .expect("req")
    };
    assert_eq!(send(&router, report()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(send(&router, report()).await.status, StatusCode::NO_CONTENT);
    let limited = send(&router, report()).await;
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(limited.header("retry-after"), Some("60"));
}

#[tokio::test]
async fn metrics_are_not_on_the_public_router_but_on_their_own() {
    let config = config(&[]);
    let router = router(config.clone(), Router::new());
    assert_eq!(send(&router, get_request("/healthz")).await.status, StatusCode::OK);
    assert_eq!(send(&router, get_request("/metrics")).await.status, StatusCode::NOT_FOUND);
    let metrics = app::metrics::router(support::service::state(config));
    let text = send(&metrics, get_request("/metrics")).await.body;
    assert!(text.contains("http_requests_total") && text.contains("route=\"/healthz\""), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"));
    assert!(text.contains("http_rejections_total") && text.contains("db_pool_connections"), "{text}");
}
