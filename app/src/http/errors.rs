//! One JSON shape for every error: `{"error":{"code","message","request_id"}}`. Handlers return
//! `ApiError`; bare error responses from layers and the router (404, 405, 408, 413, 503, a panic's
//! 500) get the same shape here, so no error body ever carries internals.

use std::borrow::Cow;

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::around::Around;
use super::request_id::RequestId;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable: clients branch on it.
    pub code: &'static str,
    /// For people; never holds internals (SQL, paths, error chains).
    pub message: Cow<'static, str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// The generic 500: what went wrong is logged, never sent.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "something went wrong on our side")
    }
}

/// A database failure reaches the caller only as its kind; the cause goes to the log. An unreachable
/// database is a 503 the client may retry (answered as soon as the pool gives up, never a hang); a
/// value PostgreSQL cannot store (SQLSTATE class 22, e.g. a NUL character) is the client's 422; the
/// rest is the generic 500.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        let code = error.as_database_error().and_then(|db| db.code()).map(|code| code.into_owned());
        let unavailable =
            matches!(
                error,
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
            ) || code.as_deref().is_some_and(|code| code.starts_with("08") || code == "57P01" || code == "57P03");
        if unavailable {
            tracing::warn!(error = %error, "the database is unavailable");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database cannot be reached; retry shortly",
            );
        }
        if code.as_deref().is_some_and(|code| code.starts_with("22")) {
            tracing::info!(error = %error, "a value the database cannot store");
            return Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_value",
                "a value in the request cannot be stored",
            );
        }
        tracing::error!(error = %error, "database error");
        Self::internal()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The body is written by `render`, which knows the request id.
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// The error for a status when no handler said more.
fn canonical(status: StatusCode) -> ApiError {
    let (code, message) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed"),
        StatusCode::UNAUTHORIZED => ("unauthorized", "authentication is required"),
        StatusCode::FORBIDDEN => ("forbidden", "this request is not allowed"),
        StatusCode::NOT_FOUND => ("not_found", "there is nothing at this path"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this path does not accept that method"),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send the body as application/json"),
        StatusCode::UNPROCESSABLE_ENTITY => ("unprocessable_entity", "the request body is not valid"),
        StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests; retry later"),
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "the service cannot take this request now"),
        status if status.is_client_error() => ("client_error", "the request cannot be served"),
        _ => return ApiError::internal(),
    };
    ApiError::new(status, code, message)
}

/// Gives every error response the one JSON shape, with the request id.
#[derive(Debug, Clone, Copy)]
pub struct Render;

impl Around for Render {
    type Carry = Option<RequestId>;

    fn before(&self, request: &mut Request) -> Result<Option<RequestId>, Response> {
        Ok(request.extensions().get::<RequestId>().cloned())
    }

    fn after(&self, request_id: Option<RequestId>, response: Response) -> Response {
        let status = response.status();
        if !(status.is_client_error() || status.is_server_error()) {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        let error = match parts.extensions.remove::<ApiError>() {
            Some(error) => error,
            // A handler's own JSON (e.g. /readyz's report) is already what clients expect.
            None if is_json(&parts.headers) => return Response::from_parts(parts, body),
            None => canonical(status),
        };
        crate::metrics::error_rendered(error.code);
        let request_id = request_id.as_ref().map(RequestId::as_str);
        let body = Json(json!({ "error": { "code": error.code, "message": error.message, "request_id": request_id } }));
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Response::from_parts(parts, body.into_response().into_body())
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// A panic becomes the generic 500; the payload is logged, not sent.
#[allow(clippy::needless_pass_by_value, reason = "CatchPanicLayer hands the payload over by value")]
pub fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    tracing::error!(panic = detail, "a handler panicked");
    let mut response = ApiError::internal().into_response();
    // For the error report (error_reports.rs), which scrubs it.
    response.extensions_mut().insert(crate::error_reports::Panicked(detail.to_owned()));
    response
}
