//! `CORS_ALLOWED_ORIGINS`: an allow-list, with credentials. `*` allows any origin but never with
//! credentials (and `check --deploy` refuses it in deployed environments).

use std::time::Duration;

use axum::http::{HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::request_id;

pub fn layer(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, request_id::HEADER])
        .expose_headers([request_id::HEADER])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|origin| origin == "*") {
        return base.allow_origin(AllowOrigin::any());
    }
    // Origins were validated by the config; an unlisted origin gets no CORS headers at all.
    let list: Vec<HeaderValue> = origins.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()).collect();
    base.allow_origin(AllowOrigin::list(list)).allow_credentials(true)
}
