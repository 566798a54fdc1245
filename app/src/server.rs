//! Serving: an accept loop with a header-read timeout (slow clients cannot hold connections open),
//! the peer address for the proxy layer, and the shutdown sequence. On SIGTERM or SIGINT:
//! `/readyz` turns 503 at once while serving goes on for `DRAIN_DELAY` (load balancers notice and
//! stop routing here), then the listener closes and in-flight requests get up to
//! `SHUTDOWN_TIMEOUT` to finish.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::listen::{self, Listen, Peer};
use crate::state::AppState;

/// How long a slow client may take to send its request head, and how long shutdown waits.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub shutdown: Duration,
}

/// Serves `router` on `listener` until `stop_accepting` resolves, then waits for in-flight requests.
/// (The listener backs off by itself when accepting fails, e.g. when out of file descriptors.)
pub async fn serve<L: Listener>(
    mut listener: L,
    router: Router,
    timeouts: Timeouts,
    stop_accepting: impl Future<Output = ()>,
) where
    L::Addr: Peer,
{
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(timeouts.header_read);
    tokio::pin!(stop_accepting);
    loop {
        tokio::select! {
            (stream, peer) = listener.accept() => {
                let peer = peer.socket_addr();
                let service = router.clone().map_request(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
                let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(error = %error, "connection closed with an error");
                    }
                });
            }
            () = &mut stop_accepting => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(timeouts.shutdown, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            timeout_ms = timeouts.shutdown.as_millis(),
            "in-flight requests did not finish in time and were cut off"
        );
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Marks the service as draining when `signal` fires, keeps serving for the drain delay, then returns.
pub async fn drain_after(signal: impl Future<Output = ()>, state: AppState, delay: Duration) {
    signal.await;
    tracing::info!(drain_delay_ms = delay.as_millis(), "shutting down: /readyz now answers 503");
    state.start_draining();
    tokio::time::sleep(delay).await;
    tracing::info!("no longer accepting connections");
}

/// `app serve`: the public listener and the metrics listener, until a termination signal.
pub async fn run(state: AppState) -> Result<()> {
    let config = state.config.clone();
    let metrics = TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("binding METRICS_ADDR={}", config.metrics_addr))?;
    let router = crate::http::router(state.clone())?;
    let timeouts =
        Timeouts { header_read: config.limits.header_read_timeout, shutdown: config.lifecycle.shutdown_timeout };
    // The metrics listener gets the same header-read timeout: a slow client must not hold it either.
    let metrics_task =
        tokio::spawn(serve(metrics, crate::metrics::router(state.clone()), timeouts, std::future::pending()));
    let sweeper = tokio::spawn(crate::auth::sweep::forever(
        state.pool.clone(),
        config.sessions.idle_timeout,
        config.sessions.sweep_interval,
    ));
    let stop_accepting = drain_after(termination(), state, config.lifecycle.drain_delay);
    match &config.listen_addr {
        Listen::Tcp(addr) => {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("binding LISTEN_ADDR={addr}"))?;
            serving(&config);
            serve(listener, router, timeouts, stop_accepting).await;
        }
        Listen::Unix(path) => {
            let listener = listen::bind_unix(path)?;
            serving(&config);
            serve(listener, router, timeouts, stop_accepting).await;
            // Nothing listens here any more: a proxy connecting through the path is refused at once.
            let _ = std::fs::remove_file(path);
        }
    }
    metrics_task.abort();
    sweeper.abort();
    tracing::info!("stopped");
    Ok(())
}

fn serving(config: &crate::config::Config) {
    tracing::info!(listen = %config.listen_addr, metrics = %config.metrics_addr, environment = config.environment.as_str(), "serving");
}

/// The address to reach a listener bound to `addr` from this host.
pub fn local_address(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], v4.port())),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6.port())),
        other => other,
    }
}
