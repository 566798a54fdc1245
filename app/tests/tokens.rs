//! API tokens: shown once, stored hashed, listed without the secret, revocable, expiring (90 days
//! unless asked otherwise), capped per account, swept once expired; a revoked or expired token is
//! 401; only a browser session, with the password entered again, can create one.

mod support;

use axum::Router;
use axum::http::{Method, StatusCode};
use serde_json::json;
use support::api::{Auth, PASSWORD, call, protected_status, signed_in, token};
use support::service::{config, router_for};

async fn api(db: &support::TestDb) -> Router {
    with(db, &[])
}

fn with(db: &support::TestDb, overrides: &[(&str, &str)]) -> Router {
    router_for(app::state::AppState::new(config(overrides), db.pool.clone()), Router::new())
}

#[tokio::test]
async fn a_token_works_until_revoked_and_is_never_shown_again() {
    let db = support::TestDb::new().await;
    let router = api(&db).await;
    let (_, session) = signed_in(&router, "tokens").await;
    let secret = token(&router, &session).await;
    assert!(secret.starts_with("ss_"));
    let bearer = Auth::Bearer(secret.clone());
    assert_eq!(protected_status(&router, &bearer).await, StatusCode::OK);

    let listed = call(&router, Method::GET, "/api/v1/tokens", None, &session).await;
    assert!(!listed.body.contains(&secret) && !listed.body.contains("\"token\""), "{}", listed.body);
    let id = listed.json()[0]["id"].as_str().expect("id").to_owned();
    assert!(!listed.json()[0]["last_used_at"].is_null(), "use is recorded");
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT token_hash FROM api_tokens").fetch_one(&db.pool).await.expect("row");
    assert_ne!(stored, secret.as_bytes());

    assert_eq!(
        call(&router, Method::DELETE, &format!("/api/v1/tokens/{id}"), None, &session).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(protected_status(&router, &bearer).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let db = support::TestDb::new().await;
    let router = api(&db).await;
    let (_, session) = signed_in(&router, "expiry").await;
    let reply = call(
        &router,
        Method::POST,
        "/api/v1/tokens",
        Some(json!({ "name": "short", "password": PASSWORD, "expires_in_days": 1 })),
        &session,
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert!(!reply.json()["expires_at"].is_null());
    let bearer = Auth::Bearer(reply.json()["token"].as_str().expect("token").to_owned());
    assert_eq!(protected_status(&router, &bearer).await, StatusCode::OK);
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second'")
        .execute(&db.pool)
        .await
        .expect("expire");
    assert_eq!(protected_status(&router, &bearer).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tokens_cannot_mint_tokens_or_touch_other_accounts_tokens() {
    let db = support::TestDb::new().await;
    let router = api(&db).await;
    let (_, alice) = signed_in(&router, "alice").await;
    let (_, bob) = signed_in(&router, "bob").await;
    let bearer = Auth::Bearer(token(&router, &alice).await);
    let more = json!({ "name": "more", "password": PASSWORD });
    let minted = call(&router, Method::POST, "/api/v1/tokens", Some(more), &bearer).await;
    assert_eq!(minted.status, StatusCode::FORBIDDEN);
    let id = call(&router, Method::GET, "/api/v1/tokens", None, &alice).await.json()[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        call(&router, Method::DELETE, &format!("/api/v1/tokens/{id}"), None, &bob).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(protected_status(&router, &bearer).await, StatusCode::OK, "still valid");
    for body in [
        json!({ "name": "", "password": PASSWORD }),
        json!({ "name": "   ", "password": PASSWORD }),
        json!({ "name": "tab\there", "password": PASSWORD }),
        json!({ "name": "x", "password": PASSWORD, "expires_in_days": 0 }),
        json!({ "name": "x", "password": PASSWORD, "expires_in_days": 366 }),
        json!({ "name": "x" }),
        json!({ "name": "x", "password": "not the password" }),
    ] {
        assert_eq!(
            call(&router, Method::POST, "/api/v1/tokens", Some(body), &alice).await.status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    let garbage = Auth::Bearer("ss_not-a-real-token".to_owned());
    assert_eq!(protected_status(&router, &garbage).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn use_is_written_at_most_once_a_minute_per_token_and_session() {
    let db = support::TestDb::new().await;
    let router = api(&db).await;
    let (_, session) = signed_in(&router, "touch").await;
    let bearer = Auth::Bearer(token(&router, &session).await);
    let stamps = || async {
        let token: time::OffsetDateTime =
            sqlx::query_scalar("SELECT last_used_at FROM api_tokens").fetch_one(&db.pool).await.expect("token");
        let session: time::OffsetDateTime =
            sqlx::query_scalar("SELECT last_seen_at FROM sessions").fetch_one(&db.pool).await.expect("session");
        (token, session)
    };
    assert_eq!(protected_status(&router, &bearer).await, StatusCode::OK);
    assert_eq!(protected_status(&router, &session).await, StatusCode::OK);
    let first = stamps().await;
    for _ in 0..3 {
        assert_eq!(protected_status(&router, &bearer).await, StatusCode::OK);
        assert_eq!(protected_status(&router, &session).await, StatusCode::OK);
    }
    assert_eq!(stamps().await, first, "used again within the minute: nothing written");

    for table in [
        "UPDATE api_tokens SET last_used_at = last_used_at - interval '61 seconds'",
        "UPDATE sessions SET last_seen_at = last_seen_at - interval '61 seconds'",
    ] {
        sqlx::query(table).execute(&db.pool).await.expect("age");
    }
    assert_eq!(protected_status(&router, &bearer).await, StatusCode::OK);
    assert_eq!(protected_status(&router, &session).await, StatusCode::OK);
    let (token_used, session_seen) = stamps().await;
    assert!(token_used >= first.0, "a minute later the use is recorded again");
    assert!(session_seen >= first.1);
}

#[tokio::test]
async fn tokens_expire_by_default_are_capped_and_expired_ones_are_swept() {
    let db = support::TestDb::new().await;
    let router = with(&db, &[("API_TOKENS_PER_ACCOUNT", "2")]);
    let (_, session) = signed_in(&router, "cap").await;
    token(&router, &session).await;
    token(&router, &session).await;
    let listed = call(&router, Method::GET, "/api/v1/tokens", None, &session).await.json();
    let expires = listed[0]["expires_at"].as_str().expect("an expiry").to_owned();
    let days: f64 = sqlx::query_scalar(
        "SELECT (extract(epoch FROM expires_at - created_at) / 86400)::float8 FROM api_tokens LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .expect("query");
    assert!((days - 90.0).abs() < 0.01, "expires {expires}, after {days} days");

    let third =
        call(&router, Method::POST, "/api/v1/tokens", Some(json!({ "name": "3", "password": PASSWORD })), &session)
            .await;
    assert_eq!(third.status, StatusCode::CONFLICT, "{}", third.body);
    assert_eq!(third.json()["error"]["code"], "too_many_tokens");

    // An expired token no longer counts, and the sweep deletes it with expired sessions.
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = (SELECT id FROM api_tokens ORDER BY id LIMIT 1)")
        .execute(&db.pool)
        .await
        .expect("expire");
    sqlx::query("INSERT INTO sessions (token_hash, account_id, expires_at) SELECT '\\x00', id, now() - interval '1 second' FROM accounts")
        .execute(&db.pool)
        .await
        .expect("an expired session");
    assert_eq!(app::auth::sweep::once(&db.pool, std::time::Duration::from_secs(1800)).await.expect("sweep"), (1, 1));
    assert_eq!(protected_status(&router, &session).await, StatusCode::OK, "live sessions stay");
    token(&router, &session).await;
}
