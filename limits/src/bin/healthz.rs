//! The limit for `/healthz`: axum alone, answering the service's JSON body.

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

#[tokio::main]
async fn main() {
    let release = std::env::var("APP_RELEASE").unwrap_or_else(|_| env!("CARGO_PKG_VERSION").to_owned());
    let healthz = move || {
        let release = release.clone();
        async move { axum::Json::<Value>(json!({ "status": "ok", "release": release })) }
    };
    limits::serve(Router::new().route("/healthz", get(healthz))).await;
}
