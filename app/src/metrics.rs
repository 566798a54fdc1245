//! Prometheus metrics: what is recorded, and the router for the separate metrics listener
//! (`METRICS_ADDR`), which the public router never exposes.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
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

/// The gauge's handle, taken once: the macro would build and look up its key on every request.
fn in_flight() -> &'static Gauge {
    static GAUGE: OnceLock<Gauge> = OnceLock::new();
    GAUGE.get_or_init(|| {
        install();
        gauge!("http_requests_in_flight")
    })
}

impl InFlight {
    pub fn start() -> Self {
        in_flight().increment(1.0);
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        in_flight().decrement(1.0);
    }
}

/// A request's counter and latency histogram, registered on first use of a (method, route, status).
#[derive(Debug)]
struct Handles {
    method: &'static str,
    status: u16,
    requests: Counter,
    latency: Histogram,
}

/// Handles by route template. Lookups borrow the route and method, so a known combination costs a
/// read lock and no allocation; label strings are built once per combination.
type HandleCache = RwLock<HashMap<String, Vec<Handles>>>;

/// Past this many combinations, requests are still counted, only without the cache. Routes are
/// templates, methods normalised and statuses few: a bound that real traffic never reaches.
const MAX_CACHED: usize = 1024;

fn cache() -> &'static HandleCache {
    static CACHE: OnceLock<HandleCache> = OnceLock::new();
    CACHE.get_or_init(HandleCache::default)
}

fn register(method: &'static str, route: &str, status: u16) -> Handles {
    let status_label = status.to_string();
    let labels = [("method", method.to_owned()), ("route", route.to_owned()), ("status", status_label)];
    Handles {
        method,
        status,
        requests: counter!("http_requests_total", &labels),
        latency: histogram!(LATENCY, "method" => method.to_owned(), "route" => route.to_owned()),
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
    let record = |handles: &Handles| {
        handles.requests.increment(1);
        handles.latency.record(latency.as_secs_f64());
    };
    let cache = cache();
    {
        let known = cache.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(handles) = known
            .get(route)
            .and_then(|known| known.iter().find(|handles| handles.status == status && handles.method == method))
        {
            record(handles);
            return;
        }
    }
    let handles = register(method, route, status);
    record(&handles);
    let mut known = cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cached = known.values().map(Vec::len).sum::<usize>();
    let entry = known.entry(route.to_owned()).or_default();
    // Another request may have registered the same combination meanwhile.
    if cached < MAX_CACHED && !entry.iter().any(|known| known.status == status && known.method == method) {
        entry.push(handles);
    }
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
