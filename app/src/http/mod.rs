//! Router assembly.

use axum::Router;
use axum::routing::get;
use sqlx::PgPool;

use crate::health;

/// The public router.
pub fn router(pool: PgPool) -> Router {
    Router::new().route("/healthz", get(health::healthz)).route("/readyz", get(health::readyz)).with_state(pool)
}
