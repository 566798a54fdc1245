//! Sign-up, login, logout and password change. Login gives one answer for an unknown account and a
//! wrong password, after the same argon2 work, and is rate-limited (see `attempts`) before any
//! password is checked. A password change is an attempt too, and ends every other credential.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::attempts::{self, Refusal};
use super::{Caller, Credential, passwords, sessions};
use crate::http::errors::ApiError;
use crate::http::extract::{Json, invalid};
use crate::http::proxy::Client;
use crate::ratelimit::{self, Policy};
use crate::state::AppState;

/// What sign-up takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    #[schema(
        format = "email",
        min_length = 3,
        max_length = 254,
        pattern = r"^\s*[^\s@\x00-\x1f\x7f-\x9f]+@[^\s@\x00-\x1f\x7f-\x9f]+\.[^\s@\x00-\x1f\x7f-\x9f]+\s*$"
    )]
    pub email: String,
    /// 12–128 characters, and not easy to guess (refused as `weak_password` otherwise).
    #[schema(min_length = 12, max_length = 128, pattern = r"^[^\x00]*$")]
    pub password: String,
}

/// What login takes: any strings (a wrong email or password is a 401, never a 422).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[schema(max_length = 254, pattern = r"^[^\x00]*$")]
    pub email: String,
    #[schema(max_length = 1024, pattern = r"^[^\x00]*$")]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(max_length = 1024, pattern = r"^[^\x00]*$")]
    pub current_password: String,
    /// 12–128 characters, and not easy to guess (refused as `weak_password` otherwise).
    #[schema(min_length = 12, max_length = 128, pattern = r"^[^\x00]*$")]
    pub new_password: String,
}

/// What a password change ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// Other sessions ended (the caller's own session continues under a new cookie).
    pub sessions_revoked: u64,
    /// API tokens revoked: every one the account had.
    pub tokens_revoked: u64,
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
    let plausible = (3..=254).contains(&email.chars().count())
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if plausible { Ok(email) } else { Err(invalid("email", "is not an email address")) }
}

#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = NewAccount,
    responses((status = 201, body = Account), (status = 409, description = "`email_taken`: the email is taken"),
        (status = 422, description = "`weak_password`: the password is too easy to guess; or a field is invalid"),
        (status = 429), (status = 503, description = "`busy`: too many passwords being hashed; retry after `Retry-After`")))]
pub async fn sign_up(
    State(state): State<AppState>,
    client: Option<axum::Extension<Client>>,
    Json(body): Json<NewAccount>,
) -> Result<Response, Refusal> {
    let network = attempts::client_network(&state, client.as_deref());
    let decision = state.limiter.hit_or_allow(Policy::Signup, &network, state.config.rate_limits.signup_per_ip).await;
    if !decision.allowed {
        return Ok(ratelimit::too_many(&decision));
    }
    let email = normalize_email(&body.email)?;
    if let Some(refused) = passwords::refusal("password", &body.password, &email) {
        return Err(refused.into());
    }
    let hash = state.hasher.hash(body.password).await?;
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
        let taken = ApiError::new(StatusCode::CONFLICT, "email_taken", "an account with this email already exists");
        return Err(taken.into());
    };
    Ok((StatusCode::CREATED, axum::Json(Account { id, email, created_at })).into_response())
}

fn invalid_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "the email or the password is wrong")
}

#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = Credentials,
    responses((status = 200, body = Account, description = "signed in; the session cookie is set"),
        (status = 401, description = "`invalid_credentials`: the email or the password is wrong"), (status = 429),
        (status = 503, description = "`busy` (retry after `Retry-After`), or `unavailable`: attempts cannot be counted")))]
pub async fn log_in(
    State(state): State<AppState>,
    client: Option<axum::Extension<Client>>,
    headers: HeaderMap,
    Json(body): Json<Credentials>,
) -> Result<Response, Refusal> {
    let email = body.email.trim().to_lowercase();
    let network = attempts::client_network(&state, client.as_deref());
    let account = sqlx::query_as::<_, (Uuid, String, String, OffsetDateTime)>(
        "SELECT id, email, password_hash, created_at FROM accounts WHERE lower(email) = $1",
    )
    .bind(&email)
    .fetch_optional(&state.pool)
    .await?;
    let stored = account.as_ref().map(|(_, _, hash, _)| hash.clone());
    if !attempts::verify(&state, &email, &network, body.password, stored).await? {
        return Err(invalid_credentials().into());
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
    responses((status = 204, description = "signed out; cookies and site data cleared"),
        (status = 400, description = "`not_a_session`: API tokens are revoked, not logged out")),
    security(("session" = [])))]
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
    responses((status = 200, body = Revoked, description = "changed; every other session and every API token is revoked, and a session caller gets a new session cookie"),
        (status = 422, description = "`wrong_password`: `current_password` is wrong; `weak_password`: `new_password` is too easy to guess"),
        (status = 429), (status = 503, description = "`busy` (retry after `Retry-After`), or `unavailable`: attempts cannot be counted")),
    security(("session" = []), ("bearer" = [])))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    client: Option<axum::Extension<Client>>,
    Json(body): Json<PasswordChange>,
) -> Result<Response, Refusal> {
    let email =
        attempts::reauthenticate(&state, caller.account, client.as_deref(), "current_password", body.current_password)
            .await?;
    if let Some(refused) = passwords::refusal("new_password", &body.new_password, &email) {
        return Err(refused.into());
    }
    let hash = state.hasher.hash(body.new_password).await?;
    let mut transaction = state.pool.begin().await?;
    sqlx::query("UPDATE accounts SET password_hash = $2, updated_at = now() WHERE id = $1")
        .bind(caller.account)
        .bind(hash)
        .execute(&mut *transaction)
        .await?;
    // Every credential made with the old password dies with it; the caller's own session is
    // replaced by a new one, so a copy of its cookie stops working too.
    let current = match &caller.credential {
        Credential::Session(token) => Some(token.as_str()),
        Credential::Token(_) => None,
    };
    let sessions = sessions::delete_all(&mut transaction, caller.account).await?;
    let tokens = super::api_tokens::revoke_all(&mut transaction, caller.account).await?;
    let new_session = match current {
        Some(_) => {
            Some(sessions::create(&mut *transaction, caller.account, state.config.sessions.absolute_timeout).await?)
        }
        None => None,
    };
    transaction.commit().await?;
    let revoked =
        Revoked { sessions_revoked: sessions.saturating_sub(u64::from(current.is_some())), tokens_revoked: tokens };
    let mut response = axum::Json(revoked).into_response();
    if let Some(token) = new_session {
        response.headers_mut().insert(header::SET_COOKIE, sessions::set_cookie(&state.config, &token));
    }
    Ok(response)
}
