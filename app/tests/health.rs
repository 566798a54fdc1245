//! `/healthz` and `/readyz` through the real router against a real PostgreSQL.

mod support;

use axum::http::StatusCode;
use support::service::{config, get, send};

fn router_on(pool: sqlx::PgPool) -> axum::Router {
    let state = app::state::AppState::new(config(&[]), pool);
    app::http::router(state).expect("router")
}

#[tokio::test]
async fn healthz_answers_without_touching_the_database() {
    // The configured database does not exist: /healthz must not care.
    let router = support::service::router(config(&[]), axum::Router::new());
    let reply = send(&router, get("/healthz")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["status"], "ok");
    assert_eq!(reply.json()["release"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn readyz_is_ok_when_the_database_answers() {
    let db = support::TestDb::new().await;
    let reply = send(&router_on(db.pool.clone()), get("/readyz")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["checks"]["database"], "ok");
}

#[tokio::test]
async fn both_probes_name_the_release() {
    let db = support::TestDb::new().await;
    let state = app::state::AppState::new(config(&[("APP_RELEASE", "r42")]), db.pool.clone());
    let router = app::http::router(state).expect("router");
    assert_eq!(send(&router, get("/healthz")).await.json()["release"], "r42");
    assert_eq!(send(&router, get("/readyz")).await.json()["release"], "r42");
}

#[tokio::test]
async fn readyz_is_503_naming_the_database_when_it_is_unreachable() {
    let router = support::service::router(config(&[("DATABASE_ACQUIRE_TIMEOUT", "500ms")]), axum::Router::new());
    let reply = send(&router, get("/readyz")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["failed"], "database");
    assert_eq!(reply.json()["checks"]["database"], "failed");
}

#[tokio::test]
async fn readyz_is_503_while_draining_even_with_a_healthy_database() {
    let db = support::TestDb::new().await;
    let state = app::state::AppState::new(config(&[]), db.pool.clone());
    let router = app::http::router(state.clone()).expect("router");
    state.start_draining();
    let reply = send(&router, get("/readyz")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["failed"], "draining");
}
