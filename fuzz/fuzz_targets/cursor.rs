//! Any query string of the notes list and any `after` cursor: a page or a refusal, never a panic, and
//! no cursor opens unless this service sealed it.
#![no_main]

use app::notes::{Page, cursor};
use axum::extract::Query;
use axum::http::Uri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, [u8; 16])| {
    let (text, account) = input;
    let account = uuid::Uuid::from_bytes(account);
    assert_eq!(cursor::open(b"fuzz key", account, text), None);
    if let Ok(uri) = format!("/api/v1/notes?after={text}").parse::<Uri>() {
        let _ = Query::<Page>::try_from_uri(&uri);
    }
});
