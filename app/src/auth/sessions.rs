//! Server-side sessions in PostgreSQL: a new random token at every login (no fixation), stored
//! hashed, with an idle and an absolute timeout; the cookie is `__Host-session` (Secure, HttpOnly,
//! SameSite=Lax, Path=/) wherever cookies are secure, and `session` over plain-HTTP development.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::tokens;
use crate::config::{Config, SecurityConfig};

pub fn cookie_name(security: &SecurityConfig) -> &'static str {
    // The __Host- prefix makes browsers insist on Secure, Path=/ and no Domain.
    if security.session_cookie_secure { "__Host-session" } else { "session" }
}

/// The session token a request's cookies carry, if any.
pub fn from_cookies(headers: &HeaderMap, security: &SecurityConfig) -> Option<String> {
    let name = cookie_name(security);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

fn cookie(security: &SecurityConfig, value: &str, max_age: Duration) -> HeaderValue {
    let mut cookie = format!("{}={value}; Path=/; SameSite=Lax; Max-Age={}", cookie_name(security), max_age.as_secs());
    if security.session_cookie_httponly {
        cookie.push_str("; HttpOnly");
    }
    if security.session_cookie_secure {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).expect("a token is URL-safe base64")
}

pub fn set_cookie(config: &Config, token: &str) -> HeaderValue {
    cookie(&config.security, token, config.sessions.absolute_timeout)
}

pub fn clear_cookie(config: &Config) -> HeaderValue {
    cookie(&config.security, "", Duration::ZERO)
}

/// Starts a session for `account`; returns the token for the cookie.
pub async fn create(
    executor: impl PgExecutor<'_>,
    account: Uuid,
    absolute_timeout: Duration,
) -> Result<String, sqlx::Error> {
    let token = tokens::generate("");
    sqlx::query(
        "INSERT INTO sessions (token_hash, account_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(tokens::digest(&token))
    .bind(account)
    .bind(absolute_timeout.as_secs_f64())
    .execute(executor)
    .await?;
    Ok(token)
}

/// The account of a live session; `None` once it expired or idled out. `last_seen_at` is written at
/// most once a minute per session (as `last_used_at` of tokens: a plain read, and the conditional
/// update only when the mark is a minute old), so the idle timeout is exact to within that minute and a
/// busy session takes no row lock per request.
pub async fn authenticate(pool: &PgPool, token: &str, idle_timeout: Duration) -> Result<Option<Uuid>, sqlx::Error> {
    let hash = tokens::digest(token);
    let row: Option<(Uuid, bool)> = sqlx::query_as(
        "SELECT account_id, last_seen_at < now() - interval '1 minute' FROM sessions
         WHERE token_hash = $1 AND expires_at > now() AND last_seen_at > now() - make_interval(secs => $2)",
    )
    .bind(&hash)
    .bind(idle_timeout.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    let Some((account, stale)) = row else {
        return Ok(None);
    };
    if stale {
        sqlx::query(
            "UPDATE sessions SET last_seen_at = now()
             WHERE token_hash = $1 AND last_seen_at < now() - interval '1 minute'",
        )
        .bind(&hash)
        .execute(pool)
        .await?;
    }
    Ok(Some(account))
}

pub async fn delete(pool: &PgPool, token: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(tokens::digest(token)).execute(pool).await?;
    Ok(())
}

/// Ends every session of `account` (after a password change); how many there were.
pub async fn delete_all(connection: &mut PgConnection, account: Uuid) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM sessions WHERE account_id = $1").bind(account).execute(connection).await?;
    Ok(deleted.rows_affected())
}

/// Deletes sessions past their absolute or idle timeout; how many.
pub async fn delete_expired(pool: &PgPool, idle_timeout: Duration) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(
        "DELETE FROM sessions WHERE expires_at <= now() OR last_seen_at <= now() - make_interval(secs => $1)",
    )
    .bind(idle_timeout.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}
