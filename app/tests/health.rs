//! `/healthz` and `/readyz` through the real router against a real PostgreSQL.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

async fn get(router: axum::Router, path: &str) -> (StatusCode, Value) {
    let response = router.oneshot(Request::get(path).body(Body::empty()).expect("request")).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024).await.expect("body");
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

#[tokio::test]
async fn healthz_answers_without_touching_the_database() {
    // A pool that points nowhere: /healthz must not care.
    let pool = app::db::pool("postgres://nobody@127.0.0.1:1/none").expect("lazy pool");
    let (status, body) = get(app::http::router(pool), "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_is_ok_when_the_database_answers() {
    let db = support::TestDb::new().await;
    let (status, body) = get(app::http::router(db.pool.clone()), "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["checks"]["database"], "ok");
}

#[tokio::test]
async fn readyz_is_503_naming_the_database_when_it_is_unreachable() {
    let pool = app::db::pool("postgres://nobody@127.0.0.1:1/none").expect("lazy pool");
    let (status, body) = get(app::http::router(pool), "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["checks"]["database"], "failed");
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let pool = app::db::pool("postgres://nobody@127.0.0.1:1/none").expect("lazy pool");
    let response = app::http::router(pool)
        .oneshot(Request::get("/nope").body(Body::empty()).expect("request"))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
