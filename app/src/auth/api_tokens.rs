//! API tokens: created from a signed-in browser session with the password entered again, shown
//! once, stored hashed, named, listable, revocable, always expiring (`API_TOKEN_DEFAULT_DAYS` unless
//! the creator says otherwise), at most `API_TOKENS_PER_ACCOUNT` live per account, all revoked by a
//! password change; sent as `Authorization: Bearer ss_…`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::attempts::{self, Refusal};
use super::{Caller, Credential, tokens};
use crate::http::errors::ApiError;
use crate::http::extract::{Json, invalid};
use crate::http::proxy::Client;
use crate::state::AppState;

const PREFIX: &str = "ss_";
const MAX_DAYS: u32 = 365;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1–100 characters, not all spaces, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// The account's password, entered again: a stolen session alone cannot mint lasting credentials.
    #[schema(max_length = 1024, pattern = r"^[^\x00]*$")]
    pub password: String,
    /// Days until the token stops working (1–365); without it, the service's default (90 days).
    #[schema(minimum = 1, maximum = 365)]
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The secret: shown this once, never again.
    pub token: String,
}

/// The caller a live bearer token stands for. `last_used_at` is written at most once a minute per
/// token: a write on every request would queue a caller's concurrent requests on the row's lock and
/// make every read cost a WAL record. So the lookup is a plain read, the same as a bare server's, and
/// the conditional update runs only when the mark is a minute old (its `WHERE` keeps concurrent
/// requests from writing it twice).
pub async fn authenticate(pool: &PgPool, token: &str) -> Result<Option<Caller>, sqlx::Error> {
    let row: Option<(Uuid, Uuid, bool)> = sqlx::query_as(
        "SELECT id, account_id, last_used_at IS NULL OR last_used_at < now() - interval '1 minute'
         FROM api_tokens WHERE token_hash = $1 AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(tokens::digest(token))
    .fetch_optional(pool)
    .await?;
    let Some((id, account, stale)) = row else {
        return Ok(None);
    };
    if stale {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = now()
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        )
        .bind(id)
        .execute(pool)
        .await?;
    }
    Ok(Some(Caller { account, credential: Credential::Token(id) }))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 403, description = "`session_required`: tokens are created from a session"),
        (status = 409, description = "`too_many_tokens`: the account holds the most live tokens allowed"),
        (status = 422, description = "`wrong_password`: `password` is wrong; or a field is invalid"), (status = 429),
        (status = 503, description = "`busy` (retry after `Retry-After`), or `unavailable`: attempts cannot be counted")),
    security(("session" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    client: Option<axum::Extension<Client>>,
    Json(body): Json<NewToken>,
) -> Result<Response, Refusal> {
    if !matches!(caller.credential, Credential::Session(_)) {
        let forbidden =
            ApiError::new(StatusCode::FORBIDDEN, "session_required", "API tokens are created from a signed-in session");
        return Err(forbidden.into());
    }
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(invalid("name", "must be 1 to 100 characters, without control characters").into());
    }
    let days = body.expires_in_days.unwrap_or(state.config.api_tokens.default_days);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(invalid("expires_in_days", "must be between 1 and 365").into());
    }
    attempts::reauthenticate(&state, caller.account, client.as_deref(), "password", body.password).await?;
    let mut transaction = state.pool.begin().await?;
    // The account row's lock makes the count and the insert one step for concurrent creations.
    sqlx::query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE")
        .bind(caller.account)
        .execute(&mut *transaction)
        .await?;
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_tokens WHERE account_id = $1 AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(caller.account)
    .fetch_one(&mut *transaction)
    .await?;
    let max = state.config.api_tokens.max_per_account;
    if live >= i64::from(max) {
        let message = format!("an account holds at most {max} live API tokens; revoke one first");
        return Err(ApiError::new(StatusCode::CONFLICT, "too_many_tokens", message).into());
    }
    let token = tokens::generate(PREFIX);
    let info: TokenInfo = sqlx::query_as(
        "INSERT INTO api_tokens (id, account_id, name, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(days => $5))
         RETURNING id, name, created_at, expires_at, last_used_at",
    )
    .bind(Uuid::now_v7())
    .bind(caller.account)
    .bind(name)
    .bind(tokens::digest(&token))
    .bind(i32::try_from(days).unwrap_or(i32::MAX))
    .fetch_one(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(CreatedToken { info, token })).into_response())
}

/// Revokes every token of `account` (after a password change); how many there were.
pub async fn revoke_all(connection: &mut PgConnection, account: Uuid) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM api_tokens WHERE account_id = $1").bind(account).execute(connection).await?;
    Ok(deleted.rows_affected())
}

/// Deletes expired tokens; how many.
pub async fn delete_expired(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM api_tokens WHERE expires_at <= now()").execute(pool).await?;
    Ok(deleted.rows_affected())
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = [TokenInfo])),
    security(("session" = []), ("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<axum::Json<Vec<TokenInfo>>, ApiError> {
    let tokens = sqlx::query_as(
        "SELECT id, name, created_at, expires_at, last_used_at FROM api_tokens WHERE account_id = $1 ORDER BY id",
    )
    .bind(caller.account)
    .fetch_all(&state.pool)
    .await?;
    Ok(axum::Json(tokens))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = Uuid, Path)),
    responses((status = 204, description = "revoked"), (status = 404)), security(("session" = []), ("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let deleted = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND account_id = $2")
        .bind(id)
        .bind(caller.account)
        .execute(&state.pool)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "there is no such token")
}
