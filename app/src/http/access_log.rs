//! One log line and one set of metrics per request: method, path (never the query, where secrets
//! hide), route, status, latency, client IP; the request id comes from the request's span.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

use super::proxy::Client;
use crate::metrics;

/// The route template that served a request, carried out on the response for the layers above
/// (a shared string: copying it costs no allocation).
#[derive(Debug, Clone)]
pub struct Route(pub MatchedPath);

/// Inside the router: copies the matched route onto the response.
pub async fn capture_route(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(Route(route));
    }
    response
}

pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // Shares the request's buffer: the path is read after the response, without a copy.
    let uri = request.uri().clone();
    let remote_ip = request.extensions().get::<Client>().and_then(|client| client.ip);
    let in_flight = metrics::InFlight::start();
    let response = next.run(request).await;
    drop(in_flight);
    let latency = started.elapsed();
    // Unmatched paths share one label so that scanners cannot blow up the metric's cardinality.
    let route = response.extensions().get::<Route>().map_or("unmatched", |route| route.0.as_str());
    let status = response.status().as_u16();
    metrics::request_finished(method.as_str(), route, status, latency);
    let remote_ip: &dyn std::fmt::Display = match &remote_ip {
        Some(ip) => ip,
        None => &"unknown",
    };
    tracing::info!(
        target: "access",
        method = method.as_str(),
        path = uri.path(),
        route,
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        remote_ip = %remote_ip,
        "request"
    );
    response
}
