//! Error reports to a Sentry-compatible service when `SENTRY_DSN` is set: every panic and 5xx answer,
//! with the request id, route, method, status, release and environment, and nothing taken from the
//! request itself. `scrub` runs last on every event (as `before_send`), so what a message happens to
//! carry (a secret, an email, a credential) never leaves either. Unset, nothing is mounted.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use secrecy::ExposeSecret;
use sentry::protocol::{Event, Level};

use crate::config::Config;
use crate::http::access_log::Route;
use crate::http::request_id::RequestId;
use crate::telemetry::{REDACTED, SENSITIVE};

/// What a handler's panic said; the panic handler leaves it on its 500 for this layer.
#[derive(Debug, Clone)]
pub struct Panicked(pub String);

/// Where `note_route` leaves the matched route: a panic unwinds past the layer that would carry it out
/// on the response.
#[derive(Debug, Clone, Default)]
struct RouteSlot(Arc<OnceLock<String>>);

/// Starts the client when `SENTRY_DSN` is set; events are sent until the guard is dropped (which
/// flushes what is queued).
pub fn init(config: &Config) -> anyhow::Result<Option<sentry::ClientInitGuard>> {
    let Some(dsn) = &config.observability.sentry_dsn else {
        return Ok(None);
    };
    crate::tls::install_provider();
    let secrets = config.secret_values();
    let mut options = sentry::ClientOptions::new();
    options.dsn = Some(dsn.expose_secret().parse().map_err(|_| anyhow::anyhow!("SENTRY_DSN is not a valid DSN"))?);
    options.release = Some(Cow::Owned(config.release.clone()));
    options.environment = Some(Cow::Borrowed(config.environment.as_str()));
    options.send_default_pii = false;
    options.before_send = Some(Arc::new(move |event| scrub(event, &secrets)));
    Ok(Some(sentry::init(options)))
}

/// Reports every 5xx this request ends with, a panic's message included. Mounted only with a DSN.
pub async fn capture(mut request: Request, next: Next) -> Response {
    let request_id = request.extensions().get::<RequestId>().map(|id| id.as_str().to_owned());
    let method = request.method().to_string();
    let slot = RouteSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() {
        let route = response.extensions().get::<Route>().map(|route| route.0.as_str());
        let route = route.or_else(|| slot.0.get().map(String::as_str)).unwrap_or("unmatched");
        let message = match response.extensions().get::<Panicked>() {
            Some(Panicked(detail)) => format!("panic in {method} {route}: {detail}"),
            None => format!("{method} {route} answered {}", status.as_u16()),
        };
        let mut event = Event { message: Some(message), level: Level::Error, ..Default::default() };
        event.tags.insert("request_id".into(), request_id.unwrap_or_default());
        event.tags.insert("http.route".into(), route.to_owned());
        event.tags.insert("http.method".into(), method);
        event.tags.insert("http.status_code".into(), status.as_u16().to_string());
        sentry::capture_event(event);
    }
    response
}

/// Inside the router (mounted with a DSN): notes the matched route for `capture`.
pub async fn note_route(request: Request, next: Next) -> Response {
    if let (Some(slot), Some(path)) =
        (request.extensions().get::<RouteSlot>(), request.extensions().get::<MatchedPath>())
    {
        let _ = slot.0.set(path.as_str().to_owned());
    }
    next.run(request).await
}

/// Drops what may hold personal data or credentials (the request, the user, breadcrumbs, extra data)
/// and redacts secrets, emails and `key=value` credentials from every text that stays.
pub fn scrub(mut event: Event<'static>, secrets: &[String]) -> Option<Event<'static>> {
    event.request = None;
    event.user = None;
    event.breadcrumbs.values.clear();
    event.extra.clear();
    event.server_name = None;
    let clean = |text: &str| redact(text, secrets);
    event.message = event.message.as_deref().map(clean);
    if let Some(entry) = &mut event.logentry {
        entry.message = clean(&entry.message);
        entry.params.clear();
    }
    for exception in &mut event.exception.values {
        exception.value = exception.value.as_deref().map(clean);
    }
    for value in event.tags.values_mut() {
        *value = clean(value);
    }
    Some(event)
}

/// `text` with every secret, email address, bearer token and sensitive `key=value` replaced.
fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        text = text.replace(secret.as_str(), REDACTED);
    }
    let mut previous = "";
    let words: Vec<String> = text
        .split(' ')
        .map(|word| {
            let lower = word.to_ascii_lowercase();
            let credential = previous.eq_ignore_ascii_case("bearer")
                || previous.eq_ignore_ascii_case("basic")
                || lower.split_once(['=', ':']).is_some_and(|(key, value)| {
                    !value.is_empty() && SENSITIVE.iter().any(|sensitive| key.contains(sensitive))
                });
            let email = word.split_once('@').is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
            previous = word;
            if credential || email { REDACTED.to_owned() } else { word.to_owned() }
        })
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_emails_and_credentials_are_redacted() {
        let secrets = vec!["s3cret-value-123".to_owned()];
        let text = "failed for ada@example.com with s3cret-value-123: password=hunter2 Authorization: Bearer abc.def token:xyz ok";
        assert_eq!(
            redact(text, &secrets),
            "failed for [redacted] with [redacted]: [redacted] Authorization: Bearer [redacted] [redacted] ok"
        );
    }

    #[test]
    fn the_request_and_the_user_never_leave() {
        let mut event = Event { message: Some("boom".into()), ..Default::default() };
        event.request =
            Some(sentry::protocol::Request { data: Some("{\"password\":\"x\"}".into()), ..Default::default() });
        event.user = Some(sentry::User { email: Some("ada@example.com".into()), ..Default::default() });
        event.extra.insert("body".into(), "x".into());
        let event = scrub(event, &[]).expect("kept");
        assert!(event.request.is_none() && event.user.is_none() && event.extra.is_empty());
        assert_eq!(event.message.as_deref(), Some("boom"));
    }
}
