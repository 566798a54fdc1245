//! Router assembly: the routes, and the middleware stack in one place, in order.

pub mod access_log;
pub mod around;
pub mod cors;
pub mod csp_report;
pub mod csrf;
pub mod errors;
pub mod extract;
pub mod headers;
pub mod hosts;
pub mod https;
pub mod proxy;
pub mod request_id;
pub mod shed;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, post, put};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::state::AppState;
use crate::{auth, error_reports, health, notes, openapi, traces};
use around::around;
use headers::SecurityHeaders;

/// Every route, guarded. Which of them answer without credentials is declared in one place,
/// `auth::PUBLIC`; `auth::Require` refuses the others without credentials (default deny).
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(headers::CSP_REPORT_PATH, post(csp_report::receive))
        .route("/openapi.json", get(openapi::serve))
        .route("/api/v1/accounts", post(auth::accounts::sign_up))
        .route("/api/v1/session", post(auth::accounts::log_in).delete(auth::accounts::log_out))
        .route("/api/v1/account/password", put(auth::accounts::change_password))
        .route("/api/v1/tokens", get(auth::api_tokens::list).post(auth::api_tokens::create))
        .route("/api/v1/tokens/{id}", delete(auth::api_tokens::revoke))
        .route("/api/v1/notes", get(notes::list).post(notes::create))
        .route("/api/v1/notes/{id}", get(notes::get).patch(notes::update).delete(notes::delete))
        // After routing, so that it knows the matched route.
        .route_layer(auth::RequireLayer(state.clone()))
}

/// The public router: every route behind every layer.
pub fn router(state: AppState) -> Result<Router, headers::InvalidHeader> {
    wrap(routes(&state), state)
}

/// Puts `routes` behind the middleware stack, listed here outermost first.
pub fn wrap(routes: Router<AppState>, state: AppState) -> Result<Router, headers::InvalidHeader> {
    crate::metrics::install();
    let config = &state.config;
    let security_headers = Arc::new(SecurityHeaders::from_config(&config.security)?);
    // `around(…)` layers cost no allocation per request (see around.rs).
    let stack = ServiceBuilder::new()
        // The request id first, so that every log line and error body below can carry it.
        .layer(request_id::layer())
        // Who is asking (IP, scheme, host) through trusted proxies only; used by everything below.
        .layer(around(proxy::Identify(state.clone())))
        // Security headers outside every rejection, so 400/404/408/413/500/503 get them too.
        .layer(around(headers::Apply(security_headers)))
        // One JSON error shape for whatever the layers below refuse.
        .layer(around(errors::Render))
        // Only when configured: a span per request, and a report of every 5xx (a panic's included).
        // Above the access log, whose responses have the same body type, as `option_layer` needs.
        .option_layer(
            config.observability.otlp_endpoint.is_some().then(|| from_fn_with_state(state.clone(), traces::span)),
        )
        .option_layer(config.observability.sentry_dsn.is_some().then(|| from_fn(error_reports::capture)))
        // Logged and measured with their final status, rejections included.
        .layer(around(access_log::Record))
        // A panic becomes a 500, never a dropped connection.
        .layer(CatchPanicLayer::custom(errors::panic_response))
        // Past the concurrency cap, 503 at once.
        .layer(shed::layer(config.limits.max_concurrent_requests))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, config.limits.request_timeout))
        // Unknown hosts never reach the redirect or a handler.
        .layer(around(hosts::Enforce(state.clone())))
        .layer(around(https::Redirect(state.clone())))
        .layer(cors::layer(&config.security.cors_allowed_origins))
        .layer(around(csrf::Protect(state.clone())))
        // Innermost because it changes the request body type, which the layers above do not take.
        .layer(RequestBodyLimitLayer::new(config.limits.max_body_bytes));
    let routes = match config.observability.sentry_dsn {
        Some(_) => routes.route_layer(from_fn(error_reports::note_route)),
        None => routes,
    };
    Ok(routes
        .route_layer(around(access_log::CaptureRoute))
        // The body limit above is the one that counts.
        .layer(DefaultBodyLimit::disable())
        .layer(stack)
        .with_state(state))
}
