//! The limit for `GET /api/v1/notes?limit=50`: axum and sqlx alone, running the service's SQL (the
//! bearer token's lookup, then one page of notes) and answering the same JSON; no middleware, no write.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use sqlx::PgPool;
use uuid::Uuid;

use app::auth::tokens;
use app::notes::{Note, NotePage, cursor};

const PAGE: i64 = 50;

async fn list(State(pool): State<PgPool>, headers: HeaderMap) -> Result<axum::Json<NotePage>, StatusCode> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let account: Uuid = sqlx::query_scalar(
        "SELECT account_id FROM api_tokens WHERE token_hash = $1 AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(tokens::digest(token))
    .fetch_optional(&pool)
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
    .ok_or(StatusCode::UNAUTHORIZED)?;
    let mut items: Vec<Note> = sqlx::query_as(
        "SELECT id, title, body, created_at, updated_at FROM notes
         WHERE account_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(account)
    .bind(None::<Uuid>)
    .bind(PAGE + 1)
    .fetch_all(&pool)
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let more = items.len() > PAGE as usize;
    items.truncate(PAGE as usize);
    // As the service does, a sealed cursor for the next page (never needed with the benchmark's 50 notes).
    let next = if more { items.last().map(|note| cursor::seal(b"limit", account, note.id)) } else { None };
    Ok(axum::Json(NotePage { items, next }))
}

#[tokio::main]
async fn main() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL names the database to read");
    let max: u32 = std::env::var("DATABASE_MAX_CONNECTIONS").ok().and_then(|value| value.parse().ok()).unwrap_or(10);
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(max).connect_lazy(&url).expect("DATABASE_URL parses");
    limits::serve(Router::new().route("/api/v1/notes", get(list)).with_state(pool)).await;
}
