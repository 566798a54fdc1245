//! One log line and one set of metrics per request: method, path (never the query, where secrets
//! hide), route, status, latency, client IP; the request id comes from the request's span.

use std::net::IpAddr;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, Uri};
use axum::response::Response;

use super::around::Around;
use super::proxy::Client;
use crate::metrics;

/// The route template that served a request, carried out on the response for the layers above
/// (a shared string: copying it costs no allocation).
#[derive(Debug, Clone)]
pub struct Route(pub MatchedPath);

/// Inside the router: copies the matched route onto the response.
#[derive(Debug, Clone, Copy)]
pub struct CaptureRoute;

impl Around for CaptureRoute {
    type Carry = Option<MatchedPath>;

    fn before(&self, request: &mut Request) -> Result<Option<MatchedPath>, Response> {
        Ok(request.extensions().get::<MatchedPath>().cloned())
    }

    fn after(&self, route: Option<MatchedPath>, mut response: Response) -> Response {
        if let Some(route) = route {
            response.extensions_mut().insert(Route(route));
        }
        response
    }
}

/// What the line needs from the request, kept until its response.
#[derive(Debug)]
pub struct Started {
    at: Instant,
    method: Method,
    /// Shares the request's buffer: the path is read after the response, without a copy.
    uri: Uri,
    remote_ip: Option<IpAddr>,
    in_flight: metrics::InFlight,
}

#[derive(Debug, Clone, Copy)]
pub struct Record;

impl Around for Record {
    type Carry = Started;

    fn before(&self, request: &mut Request) -> Result<Started, Response> {
        Ok(Started {
            at: Instant::now(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            remote_ip: request.extensions().get::<Client>().and_then(|client| client.ip),
            in_flight: metrics::InFlight::start(),
        })
    }

    fn after(&self, started: Started, response: Response) -> Response {
        let Started { at, method, uri, remote_ip, in_flight } = started;
        drop(in_flight);
        let latency = at.elapsed();
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
}
