//! What both limits share: the listen address and serving until SIGTERM. Each binary is the least
//! code that answers like the service on one route, so that the service's overhead is the difference.

use axum::Router;
use tokio::net::TcpListener;

/// Serves `router` on `LISTEN_ADDR` (default `127.0.0.1:8000`) until SIGTERM or Ctrl-C.
pub async fn serve(router: Router) {
    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:8000".to_owned());
    let listener = TcpListener::bind(&addr).await.unwrap_or_else(|error| panic!("binding LISTEN_ADDR={addr}: {error}"));
    axum::serve(listener, router).with_graceful_shutdown(app::server::termination()).await.expect("serving");
}
