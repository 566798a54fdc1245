//! The OpenAPI document: served publicly at /openapi.json, committed as app/openapi.json (fresh), and
//! every operation it lists other than the public ones refuses anonymous callers (default deny).

mod support;

use axum::Router;
use axum::http::{Method, StatusCode};
use support::api::{Auth, call};
use support::service::{config, get, router, send};

#[test]
fn the_committed_document_is_fresh() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap_or_default();
    assert!(committed == app::openapi::to_json(), "app/openapi.json is stale: run `cargo xtask openapi` and commit");
}

#[tokio::test]
async fn the_document_is_served_and_describes_the_contract() {
    let reply = send(&router(config(&[]), Router::new()), get("/openapi.json")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let document = reply.json();
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/api/v1/accounts",
        "/api/v1/session",
        "/api/v1/account/password",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/notes",
        "/api/v1/notes/{id}",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is not documented");
    }
    for schema in ["Note", "NewNote", "Credentials", "CreatedToken"] {
        assert!(document["components"]["schemas"][schema].is_object(), "{schema} is not documented");
    }
}

#[tokio::test]
async fn every_operation_but_the_public_ones_needs_credentials() {
    let router = router(config(&[]), Router::new());
    let document = app::openapi::document();
    let mut checked = 0;
    for (path, item) in &document.paths.paths {
        let operations = [
            (Method::GET, item.get.is_some()),
            (Method::POST, item.post.is_some()),
            (Method::PUT, item.put.is_some()),
            (Method::PATCH, item.patch.is_some()),
            (Method::DELETE, item.delete.is_some()),
        ];
        for (method, present) in operations {
            if !present || app::auth::PUBLIC.iter().any(|(m, p)| *m == method && p == path) {
                continue;
            }
            let concrete = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
            let body = matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| serde_json::json!({}));
            let reply = call(&router, method.clone(), &concrete, body, &Auth::None).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path} answered anonymously");
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} operations checked");
}
