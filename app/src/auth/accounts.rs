//! Sign-up, login, logout and password change. Login gives one answer for an unknown account and a
//! wrong password, after the same argon2 work, and is rate-limited per account and per client IP
//! before any password is checked.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Caller, Credential, passwords, sessions};
use crate::http::errors::ApiError;
use crate::http::extract::{Json, invalid};
use crate::http::proxy::Client;
use crate::ratelimit;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Account {
    pub id: Uuid,
    pub email: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

fn normalize_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let plausible = (3..=254).contains(&email.len())
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(char::is_whitespace);
    if plausible { Ok(email) } else { Err(invalid("email", "is not an email address")) }
}

fn client_ip(client: Option<&Client>) -> String {
    client.and_then(|client| client.ip).map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = Credentials,
    responses((status = 201, body = Account), (status = 409, description = "the email is taken"), (status = 422), (status = 429)))]
pub async fn sign_up(
    State(state): State<AppState>,
    client: Option<axum::Extension<Client>>,
    Json(body): Json<Credentials>,
) -> Result<Response, ApiError> {
    let ip = client_ip(client.as_deref());
    let decision = state.limiter.hit_or_allow("signup-ip", &ip, state.config.rate_limits.signup_per_ip).await;
    if !decision.allowed {
        return Ok(ratelimit::too_many(&decision));
    }
    let email = normalize_email(&body.email)?;
    if let Some(why) = passwords::policy_violation(&body.password, &email) {
        return Err(invalid("password", &why));
    }
    let hash = passwords::hash(body.password).await;
    let inserted = sqlx::query_as::<_, (Uuid, String, OffsetDateTime)>(
        "INSERT INTO accounts (id, email, password_hash) VALUES ($1, $2, $3)
         ON CONFLICT ((lower(email))) DO NOTHING RETURNING id, email, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(&email)
    .bind(hash)
    .fetch_optional(&state.pool)
    .await?;
    let Some((id, email, created_at)) = inserted else {
        return Err(ApiError::new(StatusCode::CONFLICT, "email_taken", "an account with this email already exists"));
    };
    Ok((StatusCode::CREATED, axum::Json(Account { id, email, created_at })).into_response())
}

fn invalid_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "the email or the password is wrong")
}

#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = Credentials,
    responses((status = 200, body = Account, description = "signed in; the session cookie is set"), (status = 401), (status = 429), (status = 503)))]
pub async fn log_in(
    State(state): State<AppState>,
    client: Option<axum::Extension<Client>>,
    headers: HeaderMap,
    Json(body): Json<Credentials>,
) -> Result<Response, ApiError> {
    let limits = &state.config.rate_limits;
    let email = body.email.trim().to_lowercase();
    let ip = client_ip(client.as_deref());
    // Counted before the password is checked, and refused (fail closed) when the counters are down.
    for (policy, subject, limit) in [
        ("login-ip", ip.as_str(), limits.login_per_ip),
        ("login-account", email.as_str(), limits.login_per_account),
        ("login-account-hourly", email.as_str(), limits.login_per_account_hourly),
    ] {
        let decision = state.limiter.hit(policy, subject, limit).await.map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "signing in is unavailable for a moment; retry shortly",
            )
        })?;
        if !decision.allowed {
            return Ok(ratelimit::too_many(&decision));
        }
    }
    let account = sqlx::query_as::<_, (Uuid, String, String, OffsetDateTime)>(
        "SELECT id, email, password_hash, created_at FROM accounts WHERE lower(email) = $1",
    )
    .bind(&email)
    .fetch_optional(&state.pool)
    .await?;
    let stored = account.as_ref().map(|(_, _, hash, _)| hash.clone());
    if !passwords::verify(body.password, stored).await {
        return Err(invalid_credentials());
    }
    let (id, email, _, created_at) = account.ok_or_else(invalid_credentials)?;
    // Whatever session the browser had is dropped: the token always changes at login.
    if let Some(old) = sessions::from_cookies(&headers, &state.config.security) {
        sessions::delete(&state.pool, &old).await?;
    }
    let token = sessions::create(&state.pool, id, state.config.sessions.absolute_timeout).await?;
    let mut response = axum::Json(Account { id, email, created_at }).into_response();
    response.headers_mut().insert(header::SET_COOKIE, sessions::set_cookie(&state.config, &token));
    Ok(response)
}

#[utoipa::path(delete, path = "/api/v1/session", tag = "session",
    responses((status = 204, description = "signed out; cookies and site data cleared"), (status = 401)))]
pub async fn log_out(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let Credential::Session(token) = &caller.credential else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "not_a_session", "API tokens are revoked, not logged out"));
    };
    sessions::delete(&state.pool, token).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::SET_COOKIE, sessions::clear_cookie(&state.config));
    headers.insert("clear-site-data", HeaderValue::from_static("\"cache\", \"cookies\", \"storage\""));
    Ok(response)
}

#[utoipa::path(put, path = "/api/v1/account/password", tag = "accounts", request_body = PasswordChange,
    responses((status = 204, description = "changed; every other session is ended"), (status = 401), (status = 422)))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<PasswordChange>,
) -> Result<Response, ApiError> {
    let (email, stored): (String, String) = sqlx::query_as("SELECT email, password_hash FROM accounts WHERE id = $1")
        .bind(caller.account)
        .fetch_one(&state.pool)
        .await?;
    if !passwords::verify(body.current_password, Some(stored)).await {
        return Err(invalid("current_password", "is wrong"));
    }
    if let Some(why) = passwords::policy_violation(&body.new_password, &email) {
        return Err(invalid("new_password", &why));
    }
    let hash = passwords::hash(body.new_password).await;
    sqlx::query("UPDATE accounts SET password_hash = $2, updated_at = now() WHERE id = $1")
        .bind(caller.account)
        .bind(hash)
        .execute(&state.pool)
        .await?;
    let keep = match &caller.credential {
        Credential::Session(token) => Some(token.as_str()),
        Credential::Token(_) => None,
    };
    sessions::delete_others(&state.pool, caller.account, keep).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
