//! Traces over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: one server span per request, named
//! by method and route template (never the raw path), with the status and the request id. A W3C
//! `traceparent` continues the caller's trace only when the peer is a trusted proxy; anyone else starts
//! a new one. Unset, neither the layer nor the middleware exists.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterFn, Filtered};
use tracing_subscriber::registry::LookupSpan;

use crate::config::Config;
use crate::http::access_log::Route;
use crate::http::request_id::RequestId;
use crate::state::AppState;

/// The target of the request spans: the only spans and events exported.
const TARGET: &str = "app::traces";

/// The exporter; spans still queued are sent when it is dropped.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    pub fn init(config: &Config) -> anyhow::Result<Option<Self>> {
        let Some(endpoint) = &config.observability.otlp_endpoint else {
            return Ok(None);
        };
        crate::tls::install_provider();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{endpoint}/v1/traces"))
            .build()?;
        let resource = Resource::builder()
            .with_service_name("shipshape")
            .with_attributes([
                KeyValue::new("service.version", config.release.clone()),
                KeyValue::new("deployment.environment.name", config.environment.as_str()),
            ])
            .build();
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        Ok(Some(Self { provider }))
    }

    /// The subscriber layer that turns the request spans, and nothing else, into exported spans.
    pub fn layer<S>(
        &self,
    ) -> Filtered<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>, FilterFn, S>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let tracer = self.provider.tracer("shipshape");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(FilterFn::new(|metadata| metadata.target() == TARGET))
    }

    /// Sends what is queued now (tests; shutdown does it too).
    pub fn flush(&self) -> anyhow::Result<()> {
        Ok(self.provider.force_flush()?)
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// The request's span. Mounted only with an endpoint.
pub async fn span(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let request_id = request.extensions().get::<RequestId>().map_or("", RequestId::as_str).to_owned();
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = Empty,
        http.response.status_code = Empty,
        request_id = %request_id,
    );
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    if peer.is_some_and(|peer| crate::http::proxy::trusted(peer, &state.config.security.trusted_proxies)) {
        let _ = span.set_parent(TraceContextPropagator::new().extract(&Headers(request.headers())));
    }
    let response = next.run(request).instrument(span.clone()).await;
    let route = response.extensions().get::<Route>().map_or("unmatched", |route| route.0.as_str());
    // Once started, the span takes a new name only through its context.
    span.context().span().update_name(format!("{method} {route}"));
    span.record("http.route", route);
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// A request's headers, as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}
