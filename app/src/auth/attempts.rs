//! Password attempts (login, password change, token creation): counted before any password is
//! checked, per client network, per account from that network (the short window: a stranger cannot
//! lock the owner out) and per account from anywhere (the hourly cap, ASVS 2.2.1), failing closed
//! when the counters cannot be used; then verified through the hashing budget. `Refusal` is every
//! way such a request can end other than success.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::passwords::Busy;
use crate::http::errors::ApiError;
use crate::http::proxy::Client;
use crate::ratelimit::{self, Decision, Policy};
use crate::state::AppState;

#[derive(Debug)]
pub enum Refusal {
    Error(ApiError),
    Limited(Decision),
    Busy,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self::Error(error)
    }
}

impl From<sqlx::Error> for Refusal {
    fn from(error: sqlx::Error) -> Self {
        Self::Error(error.into())
    }
}

impl From<Busy> for Refusal {
    fn from(_: Busy) -> Self {
        Self::Busy
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Error(error) => error.into_response(),
            Self::Limited(decision) => ratelimit::too_many(&decision),
            Self::Busy => Busy.into_response(),
        }
    }
}

/// The network a request's client is counted in.
pub fn client_network(state: &AppState, client: Option<&Client>) -> String {
    ratelimit::network(client.and_then(|client| client.ip), state.config.rate_limits.ipv6_prefix)
}

/// Counts one password attempt on `account` (its normalised email) from `network`.
pub async fn count(state: &AppState, account: &str, network: &str) -> Result<(), Refusal> {
    let limits = &state.config.rate_limits;
    let account_network = format!("{account}\n{network}");
    for (policy, subject, limit) in [
        (Policy::LoginNetwork, network, limits.login_per_ip),
        (Policy::LoginAccountNetwork, account_network.as_str(), limits.login_per_account_network),
        (Policy::LoginAccount, account, limits.login_per_account_hourly),
    ] {
        let decision = state.limiter.hit(policy, subject, limit).await.map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "signing in is unavailable for a moment; retry shortly",
            )
        })?;
        if !decision.allowed {
            return Err(Refusal::Limited(decision));
        }
    }
    Ok(())
}

/// Counts the attempt, then checks `password` against `stored` (the dummy hash when `None`).
pub async fn verify(
    state: &AppState,
    account: &str,
    network: &str,
    password: String,
    stored: Option<String>,
) -> Result<bool, Refusal> {
    count(state, account, network).await?;
    Ok(state.hasher.verify(password, stored).await?)
}

/// Checks a signed-in caller's password again (in `field`), as an attempt on their account; their email.
pub async fn reauthenticate(
    state: &AppState,
    account: Uuid,
    client: Option<&Client>,
    field: &str,
    password: String,
) -> Result<String, Refusal> {
    let (email, stored): (String, String) = sqlx::query_as("SELECT email, password_hash FROM accounts WHERE id = $1")
        .bind(account)
        .fetch_one(&state.pool)
        .await?;
    let network = client_network(state, client);
    if !verify(state, &email.to_lowercase(), &network, password, Some(stored)).await? {
        let message = format!("{field}: is wrong");
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "wrong_password", message).into());
    }
    Ok(email)
}
