//! `/healthz` (the process is alive, no I/O) and `/readyz` (it can take traffic: not draining, and
//! the database answers within a short timeout).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

/// Paths that orchestrators probe over plain HTTP, by IP: exempt from the host check and the redirect.
pub const PROBE_PATHS: &[&str] = &["/healthz", "/readyz"];

/// How long `/readyz` waits for the database before calling it down: Kubernetes' default probe
/// timeout, and short of the pool's acquire timeout, so a stopped database shows within a second.
const DB_PING_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn healthz(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "status": "ok", "release": state.config.release }))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (status, body) = readiness(&state).await;
    // What the last probe answered, so that an instance going in and out of readiness shows as flapping.
    metrics::gauge!("app_ready").set(if status == StatusCode::OK { 1.0 } else { 0.0 });
    (status, body)
}

async fn readiness(state: &AppState) -> (StatusCode, Json<Value>) {
    if state.is_draining() {
        return not_ready("draining", "the service is shutting down");
    }
    let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool);
    match tokio::time::timeout(DB_PING_TIMEOUT, ping).await {
        Ok(Ok(_)) => {
            let body = json!({ "status": "ready", "release": state.config.release, "checks": { "database": "ok" } });
            (StatusCode::OK, Json(body))
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness: the database ping failed");
            not_ready("database", "the database did not answer")
        }
        Err(_) => {
            tracing::warn!(timeout_ms = DB_PING_TIMEOUT.as_millis(), "readiness: the database ping timed out");
            not_ready("database", "the database did not answer in time")
        }
    }
}

fn not_ready(check: &str, message: &str) -> (StatusCode, Json<Value>) {
    let body = json!({ "status": "unavailable", "failed": check, "message": message, "checks": { check: "failed" } });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}
