//! Who is calling. Every route passes `require` unless it is in `PUBLIC` (default deny): a bearer API
//! token or a session cookie, resolved to a `Caller`; every API response (sign-up and login
//! included) is `Cache-Control: no-store`, and each caller's API rate limit is applied here.

pub mod accounts;
pub mod api_tokens;
pub mod attempts;
pub mod passwords;
pub mod sessions;
pub mod sweep;
pub mod tokens;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::http::errors::ApiError;
use crate::ratelimit::{self, Policy};
use crate::state::AppState;

/// The only routes that answer without credentials.
pub const PUBLIC: &[(Method, &str)] = &[
    (Method::GET, "/healthz"),
    (Method::GET, "/readyz"),
    (Method::POST, "/csp-report"),
    (Method::POST, "/api/v1/accounts"),
    (Method::POST, "/api/v1/session"),
    (Method::GET, "/openapi.json"),
];

fn is_public(method: &Method, route: &str) -> bool {
    let method = if method == Method::HEAD { &Method::GET } else { method };
    PUBLIC.iter().any(|(public_method, path)| public_method == method && *path == route)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The session cookie's token, to end or keep that session.
    Session(String),
    /// The API token's id.
    Token(Uuid),
}

#[derive(Debug, Clone)]
pub struct Caller {
    pub account: Uuid,
    pub credential: Credential,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Self>().cloned().ok_or_else(unauthorized)
    }
}

pub fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "sign in, or send an API token as `Authorization: Bearer …`",
    )
}

async fn identify(state: &AppState, parts: &axum::http::HeaderMap) -> Result<Option<Caller>, sqlx::Error> {
    if let Some(authorization) = parts.get(header::AUTHORIZATION) {
        let Some(token) = authorization.to_str().ok().and_then(|value| value.strip_prefix("Bearer ")) else {
            return Ok(None);
        };
        return api_tokens::authenticate(&state.pool, token.trim()).await;
    }
    let Some(token) = sessions::from_cookies(parts, &state.config.security) else {
        return Ok(None);
    };
    let account = sessions::authenticate(&state.pool, &token, state.config.sessions.idle_timeout).await?;
    Ok(account.map(|account| Caller { account, credential: Credential::Session(token) }))
}

/// Inside the router: lets public routes through, and everything else only with credentials.
pub async fn require(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("", MatchedPath::as_str);
    let mut response = if is_public(request.method(), route) {
        next.run(request).await
    } else {
        authenticated(&state, request, next).await
    };
    if route.starts_with("/api/") {
        // Personal data and credentials must not linger in shared or browser caches.
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn authenticated(state: &AppState, mut request: Request, next: Next) -> Response {
    let caller = match identify(state, request.headers()).await {
        Ok(Some(caller)) => caller,
        Ok(None) => return unauthorized().into_response(),
        // Logged there; an unreachable database is a 503, not a 500.
        Err(error) => return ApiError::from(error).into_response(),
    };
    tracing::Span::current().record("user_id", tracing::field::display(caller.account));
    let subject = match &caller.credential {
        Credential::Session(_) => format!("account:{}", caller.account),
        Credential::Token(id) => format!("token:{id}"),
    };
    let decision = state.limiter.hit_or_allow(Policy::Api, &subject, state.config.rate_limits.api_per_caller).await;
    if !decision.allowed {
        return ratelimit::too_many(&decision);
    }
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    ratelimit::annotate(&mut response, &decision);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_declared_routes_are_public() {
        assert!(is_public(&Method::GET, "/healthz"));
        assert!(is_public(&Method::HEAD, "/readyz"));
        assert!(is_public(&Method::POST, "/api/v1/session"));
        assert!(!is_public(&Method::DELETE, "/api/v1/session"));
        assert!(!is_public(&Method::GET, "/api/v1/notes"));
        assert!(!is_public(&Method::GET, "/api/v1/accounts"));
    }
}
