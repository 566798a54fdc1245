//! `X-Request-Id`: taken from the client when it is sane (short, plain characters), generated
//! otherwise; echoed on the response, and attached to every log line of the request (the request's
//! span, entered around everything below, carries it).

use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use tower::layer::util::Stack;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::instrument::Instrumented;

use super::around::{Around, AroundLayer, around};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_LEN: usize = 64;

/// The request's id: a header value that is known to be sane, so also a string.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Sane ids are plain ASCII: the conversion cannot fail.
        self.0.to_str().unwrap_or_default()
    }
}

/// Letters, digits and `-_.:`, at most 64 of them: safe to log, to echo, and to search for.
pub fn is_sane(value: &str) -> bool {
    (1..=MAX_LEN).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The client's id when sane (sharing the request's buffer), else a fresh UUIDv7.
fn assign_id(request: &Request) -> HeaderValue {
    if let Some(value) = request.headers().get(&HEADER)
        && value.to_str().is_ok_and(is_sane)
    {
        return value.clone();
    }
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text))
        .expect("a UUID is a valid header value")
}

/// The id on the request (header and extension) and, on the way out, on the response.
#[derive(Debug, Clone, Copy)]
pub struct Assign;

impl Around for Assign {
    type Carry = HeaderValue;

    fn before(&self, request: &mut Request) -> Result<HeaderValue, Response> {
        let id = assign_id(request);
        request.headers_mut().insert(HEADER, id.clone());
        request.extensions_mut().insert(RequestId(id.clone()));
        Ok(id)
    }

    fn after(&self, id: HeaderValue, mut response: Response) -> Response {
        response.headers_mut().insert(HEADER, id);
        response
    }
}

/// The id assigned, then everything below (its synchronous part included) in the request's span.
pub fn layer() -> Stack<InSpanLayer, AroundLayer<Assign>> {
    Stack::new(InSpanLayer, around(Assign))
}

#[derive(Debug, Clone, Copy)]
pub struct InSpanLayer;

impl<S> Layer<S> for InSpanLayer {
    type Service = InSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InSpan(inner)
    }
}

#[derive(Debug, Clone)]
pub struct InSpan<S>(S);

impl<S: Service<Request>> Service<Request> for InSpan<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let id = request.extensions().get::<RequestId>().map_or("", RequestId::as_str);
        // `user_id` is filled in once authentication knows who is asking.
        let span = tracing::info_span!("request", request_id = id, user_id = tracing::field::Empty);
        let future = span.in_scope(|| self.0.call(request));
        future.instrument(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_short_and_plain() {
        assert!(is_sane("3f2b9c1e-0d4a-4c1e-9e1f-6a7b8c9d0e1f"));
        assert!(is_sane("req_123.abc:1"));
        assert!(!is_sane(""));
        assert!(!is_sane(&"a".repeat(65)));
        assert!(!is_sane("id with spaces"));
        assert!(!is_sane("id\r\nX-Injected: 1"));
        assert!(!is_sane("<script>"));
    }
}
