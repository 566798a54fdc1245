//! With `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a local receiver, each request's span arrives over
//! OTLP/HTTP (protobuf, decoded here) named by its route template, never the raw path, with the status
//! and the request id; a `traceparent` is continued from a trusted proxy only.

mod support;

use axum::body::Body;
use axum::http::Request;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tracing_subscriber::layer::SubscriberExt as _;

use app::traces::Traces;
use support::receiver::Receiver;
use support::service::{config, router, send_from};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const NOTE: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

fn request(id: &str) -> Request<Body> {
    Request::get(format!("/api/v1/notes/{NOTE}"))
        .header("host", "localhost")
        .header("x-request-id", id)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .body(Body::empty())
        .expect("request")
}

fn attribute(span: &Span, key: &str) -> String {
    let value = span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.clone());
    match value {
        Some(Any::StringValue(text)) => text,
        Some(Any::IntValue(number)) => number.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test]
async fn a_requests_span_arrives_with_its_route_template_and_the_callers_trace_only_from_a_proxy() {
    let receiver = Receiver::start();
    let config = config(&[
        ("TRUSTED_PROXIES", "10.0.0.0/8"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://127.0.0.1:{}/", receiver.port)),
    ]);
    let traces = Traces::init(&config).expect("init").expect("an endpoint is configured");
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(traces.layer()));
    let router = router(config, axum::Router::new());
    send_from(&router, "10.0.0.5:40000", request("via-proxy")).await;
    send_from(&router, "203.0.113.10:40000", request("direct")).await;
    traces.flush().expect("flush");

    let received = receiver.wait_for(1);
    assert!(received.iter().all(|export| export.path == "/v1/traces"), "{received:?}");
    let spans: Vec<Span> = received
        .iter()
        .map(|export| ExportTraceServiceRequest::decode(export.body.as_slice()).expect("OTLP protobuf"))
        .flat_map(|export| export.resource_spans)
        .flat_map(|resource| resource.scope_spans)
        .flat_map(|scope| scope.spans)
        .collect();
    assert_eq!(spans.len(), 2, "one span per request, nothing else: {spans:?}");
    let span = |id: &str| spans.iter().find(|span| attribute(span, "request_id") == id).expect("a span per request");
    for span in &spans {
        assert_eq!(span.name, "GET /api/v1/notes/{id}");
        assert_eq!(attribute(span, "http.route"), "/api/v1/notes/{id}");
        assert_eq!(attribute(span, "http.response.status_code"), "401");
        assert!(!format!("{span:?}").contains(NOTE), "the raw path was sent: {span:?}");
    }
    let (proxied, direct) = (span("via-proxy"), span("direct"));
    assert_eq!(
        (hex(&proxied.trace_id), hex(&proxied.parent_span_id)),
        (CALLER_TRACE.to_owned(), CALLER_SPAN.to_owned())
    );
    assert_ne!(hex(&direct.trace_id), CALLER_TRACE, "an untrusted client chose the trace");
    assert!(direct.parent_span_id.is_empty());
}

#[test]
fn without_an_endpoint_nothing_is_started() {
    assert!(Traces::init(&config(&[])).expect("init").is_none());
}
