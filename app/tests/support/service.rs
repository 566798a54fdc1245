//! Building the service for a test: a configuration from a few variables, the real router (with
//! extra routes when a test needs a slow or panicking handler), and requests sent the way a
//! client's would arrive (with a peer address).

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use app::config::Config;
use app::state::AppState;

/// A development configuration with `overrides` on top; the database need not exist.
pub fn config(overrides: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> =
        [("APP_ENV", "test"), ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    for (key, value) in overrides {
        vars.insert((*key).to_owned(), (*value).to_owned());
    }
    Config::from_lookup(&move |name| vars.get(name).cloned()).expect("test configuration parses")
}

pub fn state(config: Config) -> AppState {
    let pool = app::db::pool(&config.database).expect("pool");
    AppState::new(config, pool)
}

/// The real router, with `extra` (unguarded, test-only) routes behind the same layers.
pub fn router(config: Config, extra: Router<AppState>) -> Router {
    router_for(state(config), extra)
}

pub fn router_for(state: AppState, extra: Router<AppState>) -> Router {
    app::http::wrap(app::http::routes(&state).merge(extra), state).expect("router")
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// Sends `request` as if from `peer`.
pub async fn send_from(router: &Router, peer: &str, request: Request<Body>) -> Reply {
    let peer: SocketAddr = peer.parse().expect("peer address");
    // What the server's accept loop attaches to every request.
    let response = router.clone().layer(axum::Extension(ConnectInfo(peer))).oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 4 * 1024 * 1024).await.expect("body");
    Reply { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

/// Sends `request` from an ordinary, untrusted client.
pub async fn send(router: &Router, request: Request<Body>) -> Reply {
    send_from(router, "203.0.113.10:50000", request).await
}

/// A GET for `path` on host `localhost`.
pub fn get(path: &str) -> Request<Body> {
    Request::get(path).header("host", "localhost").body(Body::empty()).expect("request")
}
