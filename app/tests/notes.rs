//! The notes API: CRUD, stable pagination, validation, and no way to reach another account's notes.

mod support;

use axum::Router;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use support::api::{Auth, call, signed_in};
use support::service::{config, router_for};

async fn api(db: &support::TestDb) -> Router {
    router_for(app::state::AppState::new(config(&[]), db.pool.clone()), Router::new())
}

async fn create(router: &Router, auth: &Auth, title: &str) -> Value {
    let reply =
        call(router, Method::POST, "/api/v1/notes", Some(json!({ "title": title, "body": "text" })), auth).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.json()
}

#[tokio::test]
async fn notes_are_created_read_updated_and_deleted() {
    let db = support::TestDb::new().await;
    let router = api(&db).await;
    let (_, me) = signed_in(&router, "crud").await;
    let note = create(&router, &me, "first").await;
    for field in ["id", "title", "body", "created_at", "updated_at"] {
        assert!(!note[field].is_null(), "{field} missing: {note}");
    }
    let path = format!("/api/v1/notes/{}", note["id"].as_str().expect("id"));
    assert_eq!(call(&router, Method::GET, &path, None, &me).await.json()["title"], "first");
    let patched = call(&router, Method::PATCH, &path, Some(json!({ "body": "changed" })), &me).await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!((patched.json()["title"].clone(), patched.json()["body"].clone()), (json!("first"), json!("changed")));
    assert_eq!(call(&router, Method::DELETE, &path, None, &me).await.status, StatusCode::NO_CONTENT);
    assert_eq!(call(&router, Method::GET, &path, None, &me).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pages_are_stable_and_complete() {
    let db = support::TestDb::new().await;
    let router = api(&db).await;
    let (_, me) = signed_in(&router, "pages").await;
    let mut made = Vec::new();
    for index in 0..5 {
        made.push(create(&router, &me, &format!("note {index}")).await["id"].clone());
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/notes?limit=2".to_owned();
    loop {
        let page = call(&router, Method::GET, &path, None, &me).await.json();
        let items = page["items"].as_array().expect("items").clone();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|note| note["id"].clone()));
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/notes?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, made, "every note once, in creation order");
    for bad in ["/api/v1/notes?limit=0", "/api/v1/notes?limit=101", "/api/v1/notes?limit=many"] {
        assert_eq!(call(&router, Method::GET, bad, None, &me).await.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    // A cursor is what the service gave, for this account: not a bare note id, not another's cursor.
    let (_, other) = signed_in(&router, "pager-other").await;
    let first = call(&router, Method::GET, "/api/v1/notes?limit=1", None, &me).await.json();
    let cursor = first["next"].as_str().expect("a next page").to_owned();
    let id = first["items"][0]["id"].as_str().expect("id").to_owned();
    for (who, after) in [(&me, "not-a-cursor"), (&me, id.as_str()), (&other, cursor.as_str())] {
        let reply = call(&router, Method::GET, &format!("/api/v1/notes?after={after}"), None, who).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{after}");
        assert_eq!(reply.json()["error"]["code"], "invalid_cursor");
    }
}

#[tokio::test]
async fn another_accounts_note_is_not_found_on_every_route() {
    let db = support::TestDb::new().await;
    let router = api(&db).await;
    let (_, owner) = signed_in(&router, "owner").await;
    let (_, intruder) = signed_in(&router, "intruder").await;
    let note = create(&router, &owner, "private").await;
    let path = format!("/api/v1/notes/{}", note["id"].as_str().expect("id"));

    let missing = format!("/api/v1/notes/{}", uuid::Uuid::now_v7());
    let not_found_body = call(&router, Method::GET, &missing, None, &intruder).await.json()["error"]["message"].clone();
    for (method, body) in
        [(Method::GET, None), (Method::PATCH, Some(json!({ "title": "mine now" }))), (Method::DELETE, None)]
    {
        let reply = call(&router, method.clone(), &path, body, &intruder).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(reply.json()["error"]["message"], not_found_body, "no hint that the note exists");
    }
    let theirs = call(&router, Method::GET, "/api/v1/notes", None, &intruder).await.json();
    assert_eq!(theirs["items"], json!([]));
    let mine = call(&router, Method::GET, &path, None, &owner).await.json();
    assert_eq!(mine["title"], "private", "untouched by the intruder");
}

#[tokio::test]
async fn invalid_notes_are_refused_naming_the_field() {
    let db = support::TestDb::new().await;
    let router = api(&db).await;
    let (_, me) = signed_in(&router, "invalid").await;
    let post = |body: Value| call(&router, Method::POST, "/api/v1/notes", Some(body), &me);
    for (body, field) in [
        (json!({ "title": "", "body": "x" }), "title"),
        (json!({ "title": "t".repeat(201), "body": "x" }), "title"),
        (json!({ "title": "ok", "body": "b".repeat(10_001) }), "body"),
        (json!({ "title": "ok" }), "body"),
        (json!({ "title": 5, "body": "x" }), "title"),
        (json!({ "title": "ok", "body": "x", "owner": "someone" }), "owner"),
    ] {
        let reply = post(body).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
        assert!(reply.json()["error"]["message"].as_str().expect("message").contains(field), "{field}: {}", reply.body);
    }
    let huge = json!({ "title": "big", "body": "x".repeat(2 * 1024 * 1024) });
    assert_eq!(post(huge).await.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn cookie_writes_from_a_foreign_origin_are_refused_and_bearer_writes_are_not() {
    let db = support::TestDb::new().await;
    let router = router_for(
        app::state::AppState::new(config(&[("CSRF_TRUSTED_ORIGINS", "https://admin.example.com")]), db.pool.clone()),
        Router::new(),
    );
    let (_, me) = signed_in(&router, "csrf").await;
    let Auth::Cookie(cookie) = &me else { unreachable!() };
    let post = |origin: &str| {
        axum::http::Request::post("/api/v1/notes")
            .header("host", "localhost")
            .header("cookie", cookie.as_str())
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(r#"{"title":"t","body":"b"}"#))
            .expect("request")
    };
    let foreign = support::service::send(&router, post("https://evil.example")).await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    assert_eq!(foreign.json()["error"]["code"], "csrf_failed");
    assert_eq!(support::service::send(&router, post("https://admin.example.com")).await.status, StatusCode::CREATED);
    let token = support::api::token(&router, &me).await;
    let bearer =
        call(&router, Method::POST, "/api/v1/notes", Some(json!({ "title": "t", "body": "b" })), &Auth::Bearer(token))
            .await;
    assert_eq!(bearer.status, StatusCode::CREATED);
}
