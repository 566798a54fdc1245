//! Passwords: argon2id (m = 19 MiB, t = 2, p = 1, OWASP's minimum) on the blocking pool, under a
//! budget: each hash holds 19 MiB while it runs, so at most `PASSWORD_HASH_CONCURRENCY` run at once
//! and `PASSWORD_HASH_QUEUE` more wait; past that the caller gets `Busy` (a fast 503), never
//! unbounded memory. A dummy hash makes an unknown account cost what a wrong password costs, through
//! the same budget. New passwords are judged by zxcvbn (a strength estimator with the common and
//! breached password lists, names and words built in).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::config::PasswordHashing;
use crate::http::errors::ApiError;
use crate::http::extract::invalid;

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 128;
/// zxcvbn's "safely unguessable" (about 10^10 guesses): offline attacks on a stolen hash stay slow.
const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP's argon2id parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Verified when the account does not exist, so the answer takes as long as for a real one.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash_now("a password no account has, used for timing"));

fn hash_now(password: &str) -> String {
    let mut salt = [0_u8; 16];
    getrandom::fill(&mut salt).expect("the OS random number generator works");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    argon2().hash_password(password.as_bytes(), &salt).expect("hashing cannot fail with valid parameters").to_string()
}

fn verify_now(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|hash| argon2().verify_password(password.as_bytes(), &hash).is_ok())
}

/// Every hashing slot is taken and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl IntoResponse for Busy {
    fn into_response(self) -> Response {
        let mut response =
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many sign-ins at once; retry in a second")
                .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }
}

/// The hashing budget, shared by every request of the process.
#[derive(Debug, Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    queue: usize,
}

/// One place in the queue, given back however the wait ends (a client that hangs up included).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hasher {
    pub fn new(config: PasswordHashing) -> Self {
        Self { slots: Arc::new(Semaphore::new(config.concurrency)), waiting: Arc::default(), queue: config.queue }
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(Busy);
                }
                let _waiting = Waiting(&self.waiting);
                Arc::clone(&self.slots).acquire_owned().await.expect("the semaphore is never closed")
            }
        };
        // The slot goes with the work: it is freed when the hash ends, even if the request is gone.
        let done = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        });
        Ok(done.await.expect("hashing does not panic"))
    }

    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        self.run(move || hash_now(&password)).await
    }

    /// With no stored hash (unknown account) it checks the dummy hash and fails, after the same work.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Busy> {
        self.run(move || match stored {
            Some(hash) => verify_now(&password, &hash),
            None => {
                let _ = verify_now(&password, &DUMMY_HASH);
                false
            }
        })
        .await
    }
}

/// Why a new password in `field` is refused: out of bounds (`invalid_field`), or easy to guess
/// (`weak_password`, which no schema can express).
pub fn refusal(field: &str, password: &str, email: &str) -> Option<ApiError> {
    let length = password.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&length) {
        return Some(invalid(field, &format!("must be {MIN_LEN} to {MAX_LEN} characters")));
    }
    let local_part = email.split('@').next().unwrap_or_default();
    let estimate = zxcvbn::zxcvbn(password, &[email, local_part]);
    if estimate.score() < MIN_SCORE {
        let why = estimate.feedback().and_then(|feedback| feedback.warning()).map(|warning| format!(" ({warning})"));
        let message = format!("{field}: too easy to guess{}; choose another", why.unwrap_or_default());
        return Some(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "weak_password", message));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let hash = hash_now("correct horse battery");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_now("correct horse battery", &hash));
        assert!(!verify_now("wrong horse battery", &hash));
        assert!(!verify_now("anything", "not a hash"));
    }

    #[test]
    fn the_policy_bounds_length_and_refuses_guessable_passwords() {
        let code = |password: &str, email: &str| refusal("password", password, email).map(|error| error.code);
        assert_eq!(code("short", "a@b.c"), Some("invalid_field"));
        assert_eq!(code(&"x".repeat(129), "a@b.c"), Some("invalid_field"));
        for weak in ["password1234", "aaaaaaaaaaaa", "qwertyuiopasdf", "Password123!", "iloveyou2024"] {
            assert_eq!(code(weak, "a@b.c"), Some("weak_password"), "{weak} accepted");
        }
        assert_eq!(code("someone.somewhere@example.com", "someone.somewhere@example.com"), Some("weak_password"));
        assert_eq!(code("plum kettle orbit 7", "a@b.c"), None);
        let message = refusal("new_password", "aaaaaaaaaaaa", "a@b.c").expect("refused").message;
        assert!(message.starts_with("new_password: too easy to guess ("), "{message}");
    }

    #[tokio::test]
    async fn past_the_slots_and_the_queue_callers_are_turned_away_at_once() {
        let hasher = Hasher::new(PasswordHashing { concurrency: 1, queue: 1 });
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let holding = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.run(move || hold.recv().is_ok()).await })
        };
        while hasher.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let queued = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.run(|| true).await })
        };
        while hasher.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(hasher.run(|| true).await, Err(Busy), "the queue holds one");
        release.send(()).expect("the holder waits");
        assert_eq!(holding.await.expect("joins"), Ok(true));
        assert_eq!(queued.await.expect("joins"), Ok(true), "the queued caller ran");
        assert_eq!(hasher.waiting.load(Ordering::SeqCst), 0);
        assert!(hasher.verify("x".to_owned(), None).await.is_ok_and(|ok| !ok), "unknown accounts fail");
    }
}
