//! Redis counters shared by every replica. One Lua script increments and sets the expiry in a single
//! atomic step, so concurrent replicas can never both see the last allowed slot.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Client, Script};
use tokio::sync::OnceCell;

use super::Unavailable;

const INCREMENT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
";
/// A Redis that does not answer within this is treated as down.
const TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Counters {
    client: Client,
    connection: std::sync::Arc<OnceCell<ConnectionManager>>,
    script: std::sync::Arc<Script>,
}

impl std::fmt::Debug for Counters {
    // The client holds the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("redis::Counters")
    }
}

impl Counters {
    /// Parses the URL; the connection is made on first use, so the service starts while Redis is down.
    pub fn new(url: &str) -> redis::RedisResult<Self> {
        Ok(Self {
            client: Client::open(url)?,
            connection: Default::default(),
            script: std::sync::Arc::new(Script::new(INCREMENT)),
        })
    }

    pub async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration), Unavailable> {
        let attempt = async {
            let connection = self.connection.get_or_try_init(|| ConnectionManager::new(self.client.clone())).await?;
            let mut connection = connection.clone();
            let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
            let (count, ttl_ms): (u64, u64) = self
                .script
                .key(format!("shipshape:ratelimit:{key}"))
                .arg(window_ms)
                .invoke_async(&mut connection)
                .await?;
            redis::RedisResult::Ok((count, Duration::from_millis(ttl_ms)))
        };
        match tokio::time::timeout(TIMEOUT, attempt).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "redis rate-limit counters failed");
                Err(Unavailable)
            }
            Err(_) => {
                tracing::warn!(timeout_ms = TIMEOUT.as_millis(), "redis rate-limit counters timed out");
                Err(Unavailable)
            }
        }
    }
}
