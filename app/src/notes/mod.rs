//! The example domain: notes owned by accounts. Every query is scoped to the caller, so another
//! account's note is indistinguishable from one that does not exist (404). Pages continue from an
//! opaque cursor (see `cursor`) that only the service can make. Replace it with your own.

pub mod cursor;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Caller;
use crate::http::errors::ApiError;
use crate::http::extract::{Json, invalid};
use crate::state::AppState;

const TITLE_MAX: usize = 200;
const BODY_MAX: usize = 10_000;
const PAGE_DEFAULT: u32 = 20;
const PAGE_MAX: u32 = 100;

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Note {
    pub id: Uuid,
    pub title: String,
    pub body: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    /// 1–200 characters, not all spaces, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub title: String,
    #[schema(max_length = 10000, pattern = r"^[^\x00]*$")]
    pub body: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteChanges {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub title: Option<String>,
    #[schema(max_length = 10000, pattern = r"^[^\x00]*$")]
    pub body: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// At most this many notes (1–100, default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The previous page's `next`, to continue after it; anything else is refused (422).
    #[param(value_type = Option<String>, pattern = "^[A-Za-z0-9_-]{38}$")]
    pub after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotePage {
    pub items: Vec<Note>,
    /// Pass as `after` for the next page; null on the last one.
    #[schema(pattern = "^[A-Za-z0-9_-]{38}$")]
    pub next: Option<String>,
}

fn check_title(title: &str) -> Result<(), ApiError> {
    let length = title.trim().chars().count();
    if length == 0 || length > TITLE_MAX || title.chars().any(char::is_control) {
        Err(invalid("title", "must be 1 to 200 characters, not all spaces, without control characters"))
    } else {
        Ok(())
    }
}

fn check_body(body: &str) -> Result<(), ApiError> {
    if body.chars().count() > BODY_MAX { Err(invalid("body", "must be at most 10000 characters")) } else { Ok(()) }
}

/// Refused by what only the service knows (its key), so the schema cannot say it: its own code.
fn invalid_cursor() -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_cursor", "after: is not a cursor this service gave you")
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "there is no such note")
}

/// A note id from the path; anything that is not a UUID is simply not found.
fn note_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| not_found())
}

const COLUMNS: &str = "id, title, body, created_at, updated_at";

#[utoipa::path(get, path = "/api/v1/notes", tag = "notes", params(Page),
    responses((status = 200, body = NotePage), (status = 422, description = "`invalid_cursor`: `after` is not a `next` this service gave; or `limit` is invalid")),
    security(("session" = []), ("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Result<axum::Json<NotePage>, ApiError> {
    let limit = match page.limit.as_deref() {
        None => PAGE_DEFAULT,
        Some(limit) => limit
            .parse()
            .ok()
            .filter(|limit| (1..=PAGE_MAX).contains(limit))
            .ok_or_else(|| invalid("limit", "must be between 1 and 100"))?,
    };
    let key = state.config.security.secret_key.expose_secret().as_bytes();
    let after = match page.after.as_deref() {
        None => None,
        Some(after) => Some(cursor::open(key, caller.account, after).ok_or_else(invalid_cursor)?),
    };
    // Ids are UUIDv7 (time-ordered), so keyset pagination on id is stable while notes are added.
    let mut items: Vec<Note> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notes WHERE account_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(caller.account)
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(&state.pool)
    .await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more { items.last().map(|note| cursor::seal(key, caller.account, note.id)) } else { None };
    Ok(axum::Json(NotePage { items, next }))
}

#[utoipa::path(post, path = "/api/v1/notes", tag = "notes", request_body = NewNote, responses((status = 201, body = Note)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewNote>,
) -> Result<Response, ApiError> {
    check_title(&new.title)?;
    check_body(&new.body)?;
    let note: Note = sqlx::query_as(&format!(
        "INSERT INTO notes (id, account_id, title, body) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(caller.account)
    .bind(new.title.trim())
    .bind(&new.body)
    .fetch_one(&state.pool)
    .await?;
    Ok((StatusCode::CREATED, axum::Json(note)).into_response())
}

#[utoipa::path(get, path = "/api/v1/notes/{id}", tag = "notes", params(("id" = Uuid, Path)),
    responses((status = 200, body = Note), (status = 404)), security(("session" = []), ("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Note>, ApiError> {
    let note = sqlx::query_as(&format!("SELECT {COLUMNS} FROM notes WHERE id = $1 AND account_id = $2"))
        .bind(note_id(&id)?)
        .bind(caller.account)
        .fetch_optional(&state.pool)
        .await?;
    note.map(axum::Json).ok_or_else(not_found)
}

#[utoipa::path(patch, path = "/api/v1/notes/{id}", tag = "notes", params(("id" = Uuid, Path)), request_body = NoteChanges,
    responses((status = 200, body = Note), (status = 404)), security(("session" = []), ("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(changes): Json<NoteChanges>,
) -> Result<axum::Json<Note>, ApiError> {
    let id = note_id(&id)?;
    if let Some(title) = &changes.title {
        check_title(title)?;
    }
    if let Some(body) = &changes.body {
        check_body(body)?;
    }
    let note = sqlx::query_as(&format!(
        "UPDATE notes SET title = COALESCE($3, title), body = COALESCE($4, body), updated_at = now()
         WHERE id = $1 AND account_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(caller.account)
    .bind(changes.title.as_deref().map(str::trim))
    .bind(changes.body)
    .fetch_optional(&state.pool)
    .await?;
    note.map(axum::Json).ok_or_else(not_found)
}

#[utoipa::path(delete, path = "/api/v1/notes/{id}", tag = "notes", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404)), security(("session" = []), ("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let deleted = sqlx::query("DELETE FROM notes WHERE id = $1 AND account_id = $2")
        .bind(note_id(&id)?)
        .bind(caller.account)
        .execute(&state.pool)
        .await?;
    if deleted.rows_affected() == 0 { Err(not_found()) } else { Ok(StatusCode::NO_CONTENT) }
}
