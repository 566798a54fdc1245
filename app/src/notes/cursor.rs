//! Page cursors: the last note's id and a MAC over it and the account (HMAC-SHA256 with
//! `SECRET_KEY`, cut to 96 bits), base64url. A cursor that was not made here for this account is
//! refused rather than silently read as a position, and a note deleted meanwhile still works.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

const MAC_LEN: usize = 12;

fn mac(key: &[u8], account: Uuid, note: Uuid) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(b"notes-cursor");
    mac.update(account.as_bytes());
    mac.update(note.as_bytes());
    mac
}

/// The cursor that continues after `note` for `account`: 38 characters of `[A-Za-z0-9_-]`.
pub fn seal(key: &[u8], account: Uuid, note: Uuid) -> String {
    let mut bytes = note.as_bytes().to_vec();
    bytes.extend_from_slice(&mac(key, account, note).finalize().into_bytes()[..MAC_LEN]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The note a cursor continues after, if this service made it for `account`.
pub fn open(key: &[u8], account: Uuid, cursor: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let (id, tag) = bytes.split_at_checked(16)?;
    let note = Uuid::from_slice(id).ok()?;
    (tag.len() == MAC_LEN && mac(key, account, note).verify_truncated_left(tag).is_ok()).then_some(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_open_only_for_their_account_and_key() {
        let (account, note) = (Uuid::now_v7(), Uuid::now_v7());
        let cursor = seal(b"key", account, note);
        assert_eq!(cursor.len(), 38);
        assert!(cursor.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(open(b"key", account, &cursor), Some(note));
        assert_eq!(open(b"other key", account, &cursor), None);
        assert_eq!(open(b"key", Uuid::now_v7(), &cursor), None, "another account's cursor");
        assert_eq!(open(b"key", account, &note.to_string()), None, "a bare id");
        assert_eq!(open(b"key", account, "A".repeat(38).as_str()), None);
        assert_eq!(open(b"key", account, ""), None);
    }
}
