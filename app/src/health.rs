//! `/healthz` (the process is alive, no I/O) and `/readyz` (it can serve: the database answers).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

/// How long `/readyz` waits for the database before calling it down.
const DB_PING_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(pool): State<PgPool>) -> (StatusCode, Json<Value>) {
    let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&pool);
    match tokio::time::timeout(DB_PING_TIMEOUT, ping).await {
        Ok(Ok(_)) => (StatusCode::OK, Json(json!({ "status": "ready", "checks": { "database": "ok" } }))),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: database ping failed");
            not_ready("database")
        }
        Err(_) => {
            tracing::warn!(timeout = ?DB_PING_TIMEOUT, "readiness: database ping timed out");
            not_ready("database")
        }
    }
}

fn not_ready(check: &str) -> (StatusCode, Json<Value>) {
    let body = json!({ "status": "unavailable", "checks": { check: "failed" } });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}
