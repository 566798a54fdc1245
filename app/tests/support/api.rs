//! Talking to the API as a client would: JSON requests with a session cookie or a bearer token.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{Value, json};

use super::service::{Reply, send, send_from};

pub const PASSWORD: &str = "plum kettle orbit 7";

#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// The `Cookie` header value, e.g. `session=…`.
    Cookie(String),
    Bearer(String),
}

pub fn request(method: Method, path: &str, body: Option<Value>, auth: &Auth) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path).header("host", "localhost");
    match auth {
        Auth::None => {}
        // A same-origin browser request, as far as the CSRF layer can tell.
        Auth::Cookie(cookie) => builder = builder.header("cookie", cookie).header("sec-fetch-site", "same-origin"),
        Auth::Bearer(token) => builder = builder.header("authorization", format!("Bearer {token}")),
    }
    match body {
        Some(body) => builder.header("content-type", "application/json").body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("request")
}

pub async fn call(router: &Router, method: Method, path: &str, body: Option<Value>, auth: &Auth) -> Reply {
    send(router, request(method, path, body, auth)).await
}

/// What a protected route answers to `auth`: 200 while it is valid, 401 once it is not.
pub async fn protected_status(router: &Router, auth: &Auth) -> axum::http::StatusCode {
    call(router, Method::GET, "/api/v1/notes", None, auth).await.status
}

/// A unique address, so tests sharing a database (or a Redis) never collide.
pub fn email(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid::Uuid::new_v4().simple())
}

pub async fn sign_up(router: &Router, email: &str) -> Reply {
    call(router, Method::POST, "/api/v1/accounts", Some(json!({ "email": email, "password": PASSWORD })), &Auth::None)
        .await
}

pub async fn log_in_from(router: &Router, peer: &str, email: &str, password: &str) -> Reply {
    let body = json!({ "email": email, "password": password });
    send_from(router, peer, request(Method::POST, "/api/v1/session", Some(body), &Auth::None)).await
}

/// The `name=value` part of the reply's session cookie.
pub fn session_cookie(reply: &Reply) -> String {
    let set_cookie = reply.header("set-cookie").expect("a session cookie is set");
    set_cookie.split(';').next().expect("name=value").to_owned()
}

/// A new account, signed in: its cookie.
pub async fn signed_in(router: &Router, tag: &str) -> (String, Auth) {
    let email = email(tag);
    assert_eq!(sign_up(router, &email).await.status, 201);
    let reply = log_in_from(router, "203.0.113.10:50000", &email, PASSWORD).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    (email, Auth::Cookie(session_cookie(&reply)))
}

/// An API token made from `session` (whose password is `PASSWORD`).
pub async fn token(router: &Router, session: &Auth) -> String {
    let body = json!({ "name": "ci", "password": PASSWORD });
    let reply = call(router, Method::POST, "/api/v1/tokens", Some(body), session).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["token"].as_str().expect("token").to_owned()
}
