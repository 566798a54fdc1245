//! Passwords: argon2id (m = 19 MiB, t = 2, p = 1, OWASP's minimum), hashed on the blocking pool so the
//! async workers keep serving; a policy (length bounds, a bundled list of common passwords); and a
//! dummy hash so that an unknown account costs as much time as a wrong password.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 128;

const COMMON: &str = include_str!("common_passwords.txt");

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

/// Hashes on the blocking pool.
pub async fn hash(password: String) -> String {
    tokio::task::spawn_blocking(move || hash_now(&password)).await.expect("hashing does not panic")
}

/// Verifies on the blocking pool; with no stored hash (unknown account) it checks the dummy hash and
/// fails, taking the same time.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match stored {
        Some(hash) => verify_now(&password, &hash),
        None => {
            let _ = verify_now(&password, &DUMMY_HASH);
            false
        }
    })
    .await
    .expect("verifying does not panic")
}

/// Why a new password is refused, in words fit for the client.
pub fn policy_violation(password: &str, email: &str) -> Option<String> {
    let length = password.chars().count();
    if length < MIN_LEN {
        return Some(format!("password must be at least {MIN_LEN} characters"));
    }
    if length > MAX_LEN {
        return Some(format!("password must be at most {MAX_LEN} characters"));
    }
    let lower = password.to_lowercase();
    if COMMON.lines().any(|common| common.eq_ignore_ascii_case(&lower)) {
        return Some("password is too common; choose another".to_owned());
    }
    if lower == email.to_lowercase() {
        return Some("password must not be the email address".to_owned());
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
    fn the_policy_bounds_length_and_refuses_common_passwords() {
        assert!(policy_violation("short", "a@b.c").is_some_and(|why| why.contains("at least 12")));
        assert!(policy_violation(&"x".repeat(129), "a@b.c").is_some_and(|why| why.contains("at most 128")));
        assert!(policy_violation("Password123!", "a@b.c").is_some_and(|why| why.contains("common")));
        assert!(policy_violation("CorrectHorseBatteryStaple", "a@b.c").is_some_and(|why| why.contains("common")));
        assert!(policy_violation("someone@example.com", "someone@example.com").is_some());
        assert_eq!(policy_violation("plum kettle orbit 7", "a@b.c"), None);
    }
}
