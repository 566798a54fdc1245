//! Who is calling. Every route passes `Require` unless it is in `PUBLIC` (default deny): a bearer API
//! token or a session cookie, resolved to a `Caller`; every API response (sign-up and login
//! included) is `Cache-Control: no-store`, and each caller's API rate limit is applied here.

pub mod accounts;
pub mod api_tokens;
pub mod attempts;
pub mod passwords;
pub mod sessions;
pub mod sweep;
pub mod tokens;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use uuid::Uuid;

use crate::http::around::{Around, AroundFuture};
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

/// Inside the router: lets public routes through, and everything else only with credentials. Public
/// routes (the probes among them) pass without an allocation; the others are checked in a boxed future,
/// since looking the caller up waits on the database.
#[derive(Debug, Clone)]
pub struct RequireLayer(pub AppState);

impl<S> Layer<S> for RequireLayer {
    type Service = Require<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Require { state: self.0.clone(), inner }
    }
}

#[derive(Debug, Clone)]
pub struct Require<S> {
    state: AppState,
    inner: S,
}

impl<S> Service<Request> for Require<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AroundFuture<NoStore, RequireFuture<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let api = is_api(&request);
        let route = request.extensions().get::<MatchedPath>().map_or("", MatchedPath::as_str);
        let future = if is_public(request.method(), route) {
            RequireFuture::Public { future: self.inner.call(request) }
        } else {
            // The clone that was made ready goes into the future; a fresh one stays for the next request.
            let fresh = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, fresh);
            let state = self.state.clone();
            RequireFuture::Checked { future: Box::pin(async move { authenticated(&state, request, inner).await }) }
        };
        AroundFuture::inner(future, NoStore, api)
    }
}

pin_project! {
    #[project = Projected]
    pub enum RequireFuture<F> {
        Public { #[pin] future: F },
        Checked { future: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for RequireFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::Public { future } => future.poll(cx),
            Projected::Checked { future } => future.as_mut().poll(cx).map(Ok),
        }
    }
}

impl<F> std::fmt::Debug for RequireFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequireFuture")
    }
}

fn is_api(request: &Request) -> bool {
    request.extensions().get::<MatchedPath>().is_some_and(|route| route.as_str().starts_with("/api/"))
}

/// `Cache-Control: no-store` on every API response: personal data and credentials must not linger in
/// shared or browser caches.
#[derive(Debug, Clone, Copy)]
pub struct NoStore;

impl Around for NoStore {
    /// Whether the route is an API route.
    type Carry = bool;

    fn before(&self, request: &mut Request) -> Result<bool, Response> {
        Ok(is_api(request))
    }

    fn after(&self, api: bool, mut response: Response) -> Response {
        if api {
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        response
    }
}

async fn authenticated<S>(state: &AppState, mut request: Request, mut inner: S) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
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
    let Ok(mut response) = inner.call(request).await;
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
