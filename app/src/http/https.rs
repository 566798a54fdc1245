//! `SECURE_SSL_REDIRECT`: plain-HTTP requests get a 308 to the same URL over HTTPS. Whether a
//! request is HTTPS comes from `proxy` (a trusted proxy's `X-Forwarded-Proto`). Health probes are
//! exempt: orchestrators call them over plain HTTP from inside the network.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::proxy::Client;
use crate::state::AppState;

pub async fn redirect(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let client = request.extensions().get::<Client>();
    let plain = client.is_some_and(|client| !client.https);
    if !state.config.security.ssl_redirect || !plain || crate::health::PROBE_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    // The hosts layer has already refused any host not in ALLOWED_HOSTS.
    let host = client.and_then(|client| client.host.clone()).unwrap_or_default();
    let target = format!("https://{host}{}", request.uri().path_and_query().map_or("/", |pq| pq.as_str()));
    match HeaderValue::from_str(&target) {
        Ok(location) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}
