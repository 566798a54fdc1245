//! Prometheus metrics: what is recorded, and the router for the separate metrics listener
//! (`METRICS_ADDR`), which the public router never exposes.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

const LATENCY: &str = "http_request_duration_seconds";
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; later calls reuse it.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(LATENCY.to_owned()), LATENCY_BUCKETS)
            .expect("static, non-empty buckets")
            .install_recorder()
            .expect("the metrics recorder is installed once per process")
    })
}

/// Counts a request as in flight until dropped.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        gauge!("http_requests_in_flight").increment(1.0);
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!("http_requests_in_flight").decrement(1.0);
    }
}

/// The `method` label: one of the standard methods, else `other`, so clients cannot mint series.
/// (`route` is already closed: a matched route template or `unmatched`.)
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.into_iter().find(|known| *known == method).unwrap_or("other")
}

pub fn request_finished(method: &str, route: &str, status: u16, latency: Duration) {
    let method = method_label(method);
    let labels = [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())];
    counter!("http_requests_total", &labels).increment(1);
    histogram!(LATENCY, "method" => method, "route" => route.to_owned()).record(latency.as_secs_f64());
}

/// Every error response, by its code: rejections by reason (invalid_host, csrf_failed, overloaded…).
pub fn error_rendered(code: &'static str) {
    counter!("http_rejections_total", "reason" => code).increment(1);
}

pub fn router(state: AppState) -> Router {
    Router::new().route("/metrics", get(render)).with_state(state)
}

async fn render(State(state): State<AppState>) -> String {
    let size = f64::from(state.pool.size());
    let idle = f64::from(u32::try_from(state.pool.num_idle()).unwrap_or(u32::MAX));
    gauge!("db_pool_connections", "state" => "idle").set(idle);
    gauge!("db_pool_connections", "state" => "in_use").set(size - idle);
    gauge!("db_pool_max_connections").set(f64::from(state.config.database.max_connections));
    install().render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("PATCH"), "PATCH");
        assert_eq!(method_label("FOOBAR"), "other");
        assert_eq!(method_label("get"), "other", "methods are case-sensitive");
    }
}
