//! The server over real sockets: slow clients are cut off, shutdown drains (readyz 503, still
//! serving), then in-flight requests finish before the process stops listening.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use app::server::{Timeouts, drain_after, serve};
use support::service::config;

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(overrides: &[(&str, &str)]) -> Running {
    let config = config(overrides);
    let state = support::service::state(config.clone());
    let slow = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            "done"
        }),
    );
    let routes =
        app::http::routes(&state).route("/echo", axum::routing::post(|body: String| async move { body })).merge(slow);
    let router = app::http::wrap(routes, state.clone()).expect("router");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let signal = async move {
        let _ = stopped.await;
    };
    let timeouts =
        Timeouts { header_read: config.limits.header_read_timeout, shutdown: config.lifecycle.shutdown_timeout };
    let server =
        tokio::spawn(serve(listener, router, timeouts, drain_after(signal, state, config.lifecycle.drain_delay)));
    Running { addr, stop: Some(stop), server }
}

/// One HTTP/1.1 exchange over a fresh connection; the raw response.
async fn exchange(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

#[tokio::test]
async fn a_client_that_sends_headers_too_slowly_is_disconnected() {
    let running = start(&[("HEADER_READ_TIMEOUT", "300ms")]).await;
    let mut stream = TcpStream::connect(running.addr).await.expect("connect");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: local").await.expect("write");
    let mut buffer = [0_u8; 256];
    let read =
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.expect("closed well before 5 s");
    // hyper may answer 408 before closing, or just close: either way the slot is freed.
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => assert!(
            String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&buffer[..n])
        ),
    }
    // A prompt client on the same server is served.
    assert!(exchange(running.addr, "/healthz").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_with_413() {
    let running = start(&[("MAX_BODY_BYTES", "1024")]).await;
    let mut stream = TcpStream::connect(running.addr).await.expect("connect");
    let chunk = "x".repeat(800);
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"payload_too_large\""));
}

#[tokio::test]
async fn shutdown_drains_then_lets_in_flight_requests_finish() {
    let mut running = start(&[("DRAIN_DELAY", "300ms"), ("SHUTDOWN_TIMEOUT", "5s")]).await;
    let slow = tokio::spawn(exchange(running.addr, "/slow"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.stop.take().expect("once").send(()).expect("server listening");
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Draining: not ready, but still serving.
    let ready = exchange(running.addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503") && ready.contains("draining"), "{ready}");
    assert!(exchange(running.addr, "/healthz").await.starts_with("HTTP/1.1 200"));

    let slow = slow.await.expect("joined");
    assert!(slow.starts_with("HTTP/1.1 200") && slow.ends_with("done"), "the in-flight request completed: {slow}");
    tokio::time::timeout(Duration::from_secs(5), running.server).await.expect("the server stops").expect("no panic");
    assert!(TcpStream::connect(running.addr).await.is_err(), "the listener is closed");
}
