//! Secret tokens (session cookies and API tokens): 256 random bits, shown once, stored only as their
//! SHA-256 hash.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A fresh token with `prefix` (e.g. `ss_` for API tokens, so leaked ones are easy to recognise).
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator works");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What the database keeps: a stolen table holds no usable token.
pub fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let (a, b) = (generate("ss_"), generate("ss_"));
        assert_ne!(a, b);
        assert!(a.starts_with("ss_") && a.len() == 3 + 43, "{a}");
        assert_eq!(digest(&a).len(), 32);
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(digest(&a), digest(&a));
    }
}
