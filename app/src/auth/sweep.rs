//! The periodic deletion of expired sessions and API tokens: they no longer authenticate anyone, but
//! a table that only grows slows every lookup and keeps data nobody needs.

use std::time::Duration;

use sqlx::PgPool;

use super::{api_tokens, sessions};

/// One pass; the numbers deleted (sessions, tokens).
pub async fn once(pool: &PgPool, idle_timeout: Duration) -> Result<(u64, u64), sqlx::Error> {
    Ok((sessions::delete_expired(pool, idle_timeout).await?, api_tokens::delete_expired(pool).await?))
}

/// A pass every `interval` for as long as the service runs; a failed pass is logged and retried next time.
pub async fn forever(pool: PgPool, idle_timeout: Duration, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match once(&pool, idle_timeout).await {
            Ok((sessions, tokens)) => tracing::info!(sessions, tokens, "expired credentials deleted"),
            Err(error) => tracing::warn!(error = %error, "deleting expired credentials failed"),
        }
    }
}
