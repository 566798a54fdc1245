//! Sign-up, login, logout and password change against a real PostgreSQL: cookie attributes, session
//! fixation, timeouts, one answer for unknown accounts and wrong passwords, input errors.

mod support;

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{Method, StatusCode};
use serde_json::json;
use support::api::{Auth, PASSWORD, call, email, log_in_from, protected_status, session_cookie, sign_up, signed_in};
use support::service::{config, router_for};

const PEER: &str = "203.0.113.10:50000";

async fn api(db: &support::TestDb, overrides: &[(&str, &str)]) -> Router {
    router_for(app::state::AppState::new(config(overrides), db.pool.clone()), Router::new())
}

#[tokio::test]
async fn sign_up_log_in_use_and_log_out() {
    let db = support::TestDb::new().await;
    let router = api(&db, &[]).await;
    let address = email("flow");
    let created = sign_up(&router, &address).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.json()["email"], address.as_str());
    assert!(!created.body.contains("password"), "{}", created.body);

    let login = log_in_from(&router, PEER, &address, PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK);
    let set_cookie = login.header("set-cookie").expect("cookie");
    assert!(
        set_cookie.starts_with("session=") && set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax")
    );
    assert!(set_cookie.contains("Path=/"), "{set_cookie}");
    let session = Auth::Cookie(session_cookie(&login));

    let notes = call(&router, Method::GET, "/api/v1/notes", None, &session).await;
    assert_eq!(notes.status, StatusCode::OK);
    assert_eq!(notes.header("cache-control"), Some("no-store"));

    let out = call(&router, Method::DELETE, "/api/v1/session", None, &session).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(out.header("clear-site-data"), Some("\"cache\", \"cookies\", \"storage\""));
    assert!(out.header("set-cookie").is_some_and(|cookie| cookie.contains("Max-Age=0")));
    assert_eq!(protected_status(&router, &session).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn secure_deployments_use_the_host_prefixed_secure_cookie() {
    let db = support::TestDb::new().await;
    let router = api(&db, &[("SESSION_COOKIE_SECURE", "true")]).await;
    let address = email("secure");
    sign_up(&router, &address).await;
    let login = log_in_from(&router, PEER, &address, PASSWORD).await;
    let cookie = login.header("set-cookie").expect("cookie");
    assert!(
        cookie.starts_with("__Host-session=") && cookie.contains("; Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
}

#[tokio::test]
async fn the_session_token_changes_at_every_login() {
    let db = support::TestDb::new().await;
    let router = api(&db, &[]).await;
    let (address, first) = signed_in(&router, "fixation").await;
    let Auth::Cookie(first_cookie) = &first else { unreachable!() };
    // Logging in again while presenting the old session: a new token, and the old one is dead.
    let body = json!({ "email": address, "password": PASSWORD });
    let again = call(&router, Method::POST, "/api/v1/session", Some(body), &first).await;
    assert_eq!(again.status, StatusCode::OK);
    let second = session_cookie(&again);
    assert_ne!(&second, first_cookie);
    assert_eq!(protected_status(&router, &first).await, StatusCode::UNAUTHORIZED);
    assert_eq!(protected_status(&router, &Auth::Cookie(second)).await, StatusCode::OK);
    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM sessions").fetch_all(&db.pool).await.expect("query");
    assert!(stored.iter().all(|hash| hash.len() == 32), "only SHA-256 hashes are stored");
}

#[tokio::test]
async fn idle_and_absolute_timeouts_end_sessions() {
    let db = support::TestDb::new().await;
    let router = api(&db, &[("SESSION_IDLE_TIMEOUT", "1s"), ("SESSION_ABSOLUTE_TIMEOUT", "1h")]).await;
    let (_, session) = signed_in(&router, "idle").await;
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '5 seconds'")
        .execute(&db.pool)
        .await
        .expect("age");
    assert_eq!(protected_status(&router, &session).await, StatusCode::UNAUTHORIZED);

    let (_, session) = signed_in(&router, "absolute").await;
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'")
        .execute(&db.pool)
        .await
        .expect("expire");
    assert_eq!(protected_status(&router, &session).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_accounts_and_wrong_passwords_get_the_same_answer_after_the_same_work() {
    let db = support::TestDb::new().await;
    let router = api(&db, &[("LOGIN_LIMIT_PER_IP", "100/1m")]).await;
    let address = email("timing");
    sign_up(&router, &address).await;
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let reply = log_in_from(&router, PEER, &address, "not the password at all").await;
        wrong.push((started.elapsed(), reply));
        let started = Instant::now();
        let reply = log_in_from(&router, PEER, &email("nobody"), "not the password at all").await;
        unknown.push((started.elapsed(), reply));
    }
    for (_, reply) in wrong.iter().chain(&unknown) {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.json()["error"]["code"], "invalid_credentials");
        assert_eq!(reply.json()["error"]["message"], wrong[0].1.json()["error"]["message"]);
    }
    // Same code path: the unknown account is verified against the dummy hash, so it is not
    // answered in a fraction of the time (a generous bound, not a benchmark).
    let median = |runs: &mut Vec<(Duration, support::service::Reply)>| {
        runs.sort_by_key(|(elapsed, _)| *elapsed);
        runs[1].0
    };
    let (wrong, unknown) = (median(&mut wrong), median(&mut unknown));
    assert!(unknown * 3 >= wrong, "unknown account answered in {unknown:?}, wrong password in {wrong:?}");
}

#[tokio::test]
async fn bad_sign_ups_are_refused_naming_the_problem() {
    let db = support::TestDb::new().await;
    let router = api(&db, &[("SIGNUP_LIMIT_PER_IP", "100/1h")]).await;
    let post = |body: serde_json::Value| call(&router, Method::POST, "/api/v1/accounts", Some(body), &Auth::None);
    let short = post(json!({ "email": email("short"), "password": "short" })).await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short.json()["error"]["message"].as_str().expect("message").starts_with("password:"));
    let common = post(json!({ "email": email("common"), "password": "Password123!" })).await;
    assert_eq!(common.json()["error"]["code"], "weak_password", "{}", common.body);
    assert_eq!(common.header("cache-control"), Some("no-store"));
    let bad_email = post(json!({ "email": "not-an-email", "password": PASSWORD })).await;
    assert!(bad_email.json()["error"]["message"].as_str().expect("message").starts_with("email:"));
    let missing = post(json!({ "email": email("missing") })).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(missing.body.contains("password"), "{}", missing.body);

    let address = email("twice");
    assert_eq!(sign_up(&router, &address).await.status, StatusCode::CREATED);
    let again = sign_up(&router, &address.to_uppercase()).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.json()["error"]["code"], "email_taken");

    let text = axum::http::Request::post("/api/v1/accounts")
        .header("host", "localhost")
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("hi"))
        .expect("req");
    assert_eq!(support::service::send(&router, text).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let malformed = axum::http::Request::post("/api/v1/accounts")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{nope"))
        .expect("req");
    let malformed = support::service::send(&router, malformed).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json()["error"]["code"], "malformed_json");
}

#[tokio::test]
async fn changing_the_password_ends_every_other_credential_and_rotates_the_session() {
    let db = support::TestDb::new().await;
    let router = api(&db, &[]).await;
    let (address, here) = signed_in(&router, "change").await;
    let elsewhere = Auth::Cookie(session_cookie(&log_in_from(&router, PEER, &address, PASSWORD).await));
    let bearer = Auth::Bearer(support::api::token(&router, &here).await);
    let change = |current: &str, new: &str| json!({ "current_password": current, "new_password": new });

    let wrong = call(
        &router,
        Method::PUT,
        "/api/v1/account/password",
        Some(change("nope nope nope", "tangerine vessel 42")),
        &here,
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong.json()["error"]["code"], "wrong_password");
    let weak =
        call(&router, Method::PUT, "/api/v1/account/password", Some(change(PASSWORD, "password1234")), &here).await;
    assert_eq!(weak.json()["error"]["code"], "weak_password", "{}", weak.body);
    let ok =
        call(&router, Method::PUT, "/api/v1/account/password", Some(change(PASSWORD, "tangerine vessel 42")), &here)
            .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.json(), json!({ "sessions_revoked": 1, "tokens_revoked": 1 }));
    let rotated = Auth::Cookie(session_cookie(&ok));

    assert_eq!(protected_status(&router, &rotated).await, StatusCode::OK);
    for (what, auth) in [("the old cookie", &here), ("another session", &elsewhere), ("a token", &bearer)] {
        assert_eq!(protected_status(&router, auth).await, StatusCode::UNAUTHORIZED, "{what} outlived the change");
    }
    assert_eq!(log_in_from(&router, PEER, &address, PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(log_in_from(&router, PEER, &address, "tangerine vessel 42").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_changing_the_password_revokes_itself_too() {
    let db = support::TestDb::new().await;
    let router = api(&db, &[]).await;
    let (_, session) = signed_in(&router, "token-change").await;
    let bearer = Auth::Bearer(support::api::token(&router, &session).await);
    let body = json!({ "current_password": PASSWORD, "new_password": "tangerine vessel 42" });
    let ok = call(&router, Method::PUT, "/api/v1/account/password", Some(body), &bearer).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.json(), json!({ "sessions_revoked": 1, "tokens_revoked": 1 }));
    assert!(ok.header("set-cookie").is_none(), "a token caller gets no session");
    assert_eq!(protected_status(&router, &bearer).await, StatusCode::UNAUTHORIZED);
    assert_eq!(protected_status(&router, &session).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_needs_a_session() {
    let db = support::TestDb::new().await;
    let router = api(&db, &[]).await;
    assert_eq!(
        call(&router, Method::DELETE, "/api/v1/session", None, &Auth::None).await.status,
        StatusCode::UNAUTHORIZED
    );
}
