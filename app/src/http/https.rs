//! `SECURE_SSL_REDIRECT`: plain-HTTP requests get a 308 to the same URL over HTTPS. Whether a
//! request is HTTPS comes from `proxy` (a trusted proxy's `X-Forwarded-Proto`). Health probes are
//! exempt: orchestrators call them over plain HTTP from inside the network.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::around::Around;
use super::proxy::Client;
use crate::state::AppState;

/// Sends plain-HTTP requests to HTTPS when `SECURE_SSL_REDIRECT` is on.
#[derive(Debug, Clone)]
pub struct Redirect(pub AppState);

impl Around for Redirect {
    type Carry = ();

    fn before(&self, request: &mut Request) -> Result<(), Response> {
        let client = request.extensions().get::<Client>();
        let plain = client.is_some_and(|client| !client.https);
        if !self.0.config.security.ssl_redirect || !plain || crate::health::PROBE_PATHS.contains(&request.uri().path())
        {
            return Ok(());
        }
        // The hosts layer has already refused any host not in ALLOWED_HOSTS.
        let host = client.and_then(|client| client.host.clone()).unwrap_or_default();
        let target = format!("https://{host}{}", request.uri().path_and_query().map_or("/", |pq| pq.as_str()));
        Err(match HeaderValue::from_str(&target) {
            Ok(location) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response(),
            Err(_) => StatusCode::BAD_REQUEST.into_response(),
        })
    }
}
