//! CSRF defence for cookie-authenticated unsafe requests: allowed when the browser says the request
//! is same-origin (`Sec-Fetch-Site`), or when `Origin` (else `Referer`) is the site itself or in
//! `CSRF_TRUSTED_ORIGINS`. Requests without cookies carry no ambient credentials, and bearer-token
//! requests are exempt.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::around::Around;
use super::errors::ApiError;
use super::proxy::Client;
use crate::state::AppState;

/// Why a request was refused, if it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    MissingOrigin,
    UntrustedOrigin,
}

fn header_str(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The origin part (`scheme://host[:port]`) of a URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{}://{}", scheme.to_ascii_lowercase(), authority.to_ascii_lowercase()))
}

/// Whether a browser may have sent the request on its own: an unsafe method, with cookies, without a
/// bearer token. Only those are judged.
fn ambient(method: &Method, headers: &HeaderMap) -> bool {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE);
    let cookie = headers.contains_key(header::COOKIE);
    let bearer = header_str(headers, header::AUTHORIZATION).is_some_and(|value| value.starts_with("Bearer "));
    !safe && cookie && !bearer
}

pub fn judge(method: &Method, headers: &HeaderMap, own_origin: Option<&str>, trusted: &[String]) -> Verdict {
    if !ambient(method, headers) {
        return Verdict::Allowed;
    }
    if matches!(header_str(headers, "sec-fetch-site"), Some("same-origin" | "none")) {
        return Verdict::Allowed;
    }
    let origin = header_str(headers, header::ORIGIN)
        .filter(|origin| *origin != "null")
        .map(str::to_ascii_lowercase)
        .or_else(|| header_str(headers, header::REFERER).and_then(origin_of));
    match origin {
        None => Verdict::MissingOrigin,
        Some(origin)
            if Some(origin.as_str()) == own_origin
                || trusted.iter().any(|trusted| trusted.eq_ignore_ascii_case(&origin)) =>
        {
            Verdict::Allowed
        }
        Some(_) => Verdict::UntrustedOrigin,
    }
}

/// Refuses cross-site unsafe requests that carry cookies.
#[derive(Debug, Clone)]
pub struct Protect(pub AppState);

impl Around for Protect {
    type Carry = ();

    fn before(&self, request: &mut Request) -> Result<(), Response> {
        if !ambient(request.method(), request.headers()) {
            return Ok(());
        }
        let own_origin = request.extensions().get::<Client>().and_then(|client| {
            let host = client.host.as_deref()?.to_ascii_lowercase();
            Some(format!("{}://{host}", if client.https { "https" } else { "http" }))
        });
        let verdict = judge(
            request.method(),
            request.headers(),
            own_origin.as_deref(),
            &self.0.config.security.csrf_trusted_origins,
        );
        let message = match verdict {
            Verdict::Allowed => return Ok(()),
            Verdict::MissingOrigin => "cross-site request refused: no Origin or Referer header",
            Verdict::UntrustedOrigin => "cross-site request refused: the Origin is not trusted",
        };
        Err(ApiError::new(StatusCode::FORBIDDEN, "csrf_failed", message).into_response())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (axum::http::HeaderName::from_static(name), HeaderValue::from_static(value)))
            .collect()
    }

    const OWN: Option<&str> = Some("https://app.example.com");

    fn trusted() -> Vec<String> {
        vec!["https://admin.example.com".to_owned()]
    }

    #[test]
    fn safe_methods_and_cookieless_or_bearer_requests_pass() {
        assert_eq!(
            judge(&Method::GET, &headers(&[("cookie", "s=1"), ("origin", "https://evil.example")]), OWN, &trusted()),
            Verdict::Allowed
        );
        assert_eq!(
            judge(&Method::POST, &headers(&[("origin", "https://evil.example")]), OWN, &trusted()),
            Verdict::Allowed
        );
        assert_eq!(
            judge(
                &Method::POST,
                &headers(&[("cookie", "s=1"), ("authorization", "Bearer t"), ("origin", "https://evil.example")]),
                OWN,
                &trusted()
            ),
            Verdict::Allowed
        );
    }

    #[test]
    fn cookie_requests_need_a_trusted_origin() {
        let post = |pairs: &[(&'static str, &'static str)]| judge(&Method::POST, &headers(pairs), OWN, &trusted());
        assert_eq!(post(&[("cookie", "s=1"), ("origin", "https://evil.example")]), Verdict::UntrustedOrigin);
        assert_eq!(post(&[("cookie", "s=1"), ("origin", "https://app.example.com")]), Verdict::Allowed);
        assert_eq!(post(&[("cookie", "s=1"), ("origin", "https://admin.example.com")]), Verdict::Allowed);
        assert_eq!(post(&[("cookie", "s=1")]), Verdict::MissingOrigin);
        assert_eq!(post(&[("cookie", "s=1"), ("origin", "null")]), Verdict::MissingOrigin);
        assert_eq!(post(&[("cookie", "s=1"), ("referer", "https://app.example.com/notes?x=1")]), Verdict::Allowed);
        assert_eq!(post(&[("cookie", "s=1"), ("referer", "https://evil.example/")]), Verdict::UntrustedOrigin);
        assert_eq!(post(&[("cookie", "s=1"), ("sec-fetch-site", "same-origin")]), Verdict::Allowed);
        assert_eq!(
            post(&[("cookie", "s=1"), ("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")]),
            Verdict::UntrustedOrigin
        );
    }
}
