//! The example domain: notes owned by accounts. Every query is scoped to the caller, so another
//! account's note is indistinguishable from one that does not exist (404). Replace it with your own.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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
    pub title: String,
    pub body: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteChanges {
    pub title: Option<String>,
    pub body: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct Page {
    /// At most this many notes (1–100, default 20).
    pub limit: Option<u32>,
    /// Continue after this note id (the previous page's `next`).
    pub after: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotePage {
    pub items: Vec<Note>,
    /// Pass as `after` for the next page; absent on the last one.
    pub next: Option<Uuid>,
}

fn check_title(title: &str) -> Result<(), ApiError> {
    let length = title.trim().chars().count();
    if length == 0 || length > TITLE_MAX { Err(invalid("title", "must be 1 to 200 characters")) } else { Ok(()) }
}

fn check_body(body: &str) -> Result<(), ApiError> {
    if body.chars().count() > BODY_MAX { Err(invalid("body", "must be at most 10000 characters")) } else { Ok(()) }
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "there is no such note")
}

/// A note id from the path; anything that is not a UUID is simply not found.
fn note_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| not_found())
}

const COLUMNS: &str = "id, title, body, created_at, updated_at";

#[utoipa::path(get, path = "/api/v1/notes", tag = "notes", params(Page), responses((status = 200, body = NotePage), (status = 401)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Result<axum::Json<NotePage>, ApiError> {
    let limit = page.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(invalid("limit", "must be between 1 and 100"));
    }
    // Ids are UUIDv7 (time-ordered), so keyset pagination on id is stable while notes are added.
    let mut items: Vec<Note> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notes WHERE account_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(caller.account)
    .bind(page.after)
    .bind(i64::from(limit) + 1)
    .fetch_all(&state.pool)
    .await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more { items.last().map(|note| note.id) } else { None };
    Ok(axum::Json(NotePage { items, next }))
}

#[utoipa::path(post, path = "/api/v1/notes", tag = "notes", request_body = NewNote,
    responses((status = 201, body = Note), (status = 401), (status = 413), (status = 415), (status = 422)),
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
    responses((status = 200, body = Note), (status = 404), (status = 422)), security(("session" = []), ("bearer" = [])))]
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
