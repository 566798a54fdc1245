//! `/readyz` follows the database: a real PostgreSQL behind a TCP relay that the test cuts and
//! restores, as a network partition or a database restart would.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use support::service::{config, get, send};

/// Forwards connections to the database until cut; while cut, refuses them and kills the open ones.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (flag, open) = (Arc::clone(&cut), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let upstream = upstream.clone();
                open.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { port, cut, connections }
    }

    async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for connection in self.connections.lock().await.drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// `DATABASE_URL` with its host and port replaced by the relay's.
fn through(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (credentials, rest) = rest.rsplit_once('@').map_or(("", rest), |(credentials, rest)| (credentials, rest));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let at = if credentials.is_empty() { String::new() } else { format!("{credentials}@") };
    (format!("{scheme}://{at}127.0.0.1:{port}/{path}"), authority.to_owned())
}

#[tokio::test]
async fn readyz_turns_503_when_the_database_goes_away_and_recovers_when_it_returns() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL (run through `cargo xtask test`)");
    let (_, upstream) = through(&url, 0);
    let relay = Relay::start(upstream).await;
    let (relayed, _) = through(&url, relay.port);
    let router = support::service::router(
        config(&[("DATABASE_URL", &relayed), ("DATABASE_ACQUIRE_TIMEOUT", "1s")]),
        axum::Router::new(),
    );

    assert_eq!(send(&router, get("/readyz")).await.status, StatusCode::OK);

    relay.cut().await;
    let down = send(&router, get("/readyz")).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{}", down.body);
    assert_eq!(down.json()["failed"], "database");
    assert_eq!(send(&router, get("/healthz")).await.status, StatusCode::OK, "liveness does not depend on the database");

    relay.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if send(&router, get("/readyz")).await.status == StatusCode::OK {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
