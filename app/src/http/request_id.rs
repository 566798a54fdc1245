//! `X-Request-Id`: taken from the client when it is sane (short, plain characters), generated
//! otherwise; echoed on the response, and attached to every log line of the request.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_LEN: usize = 64;

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Letters, digits and `-_.:`, at most 64 of them: safe to log, to echo, and to search for.
pub fn is_sane(value: &str) -> bool {
    (1..=MAX_LEN).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_sane(value))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let value = HeaderValue::from_str(&id).expect("a sane request id is a valid header value");
    request.headers_mut().insert(HEADER, value.clone());
    request.extensions_mut().insert(RequestId(id.clone()));
    // `user_id` is filled in once authentication knows who is asking.
    let span = tracing::info_span!("request", request_id = id.as_str(), user_id = tracing::field::Empty);
    let mut response = next.run(request).instrument(span).await;
    response.headers_mut().insert(HEADER, value);
    response
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
