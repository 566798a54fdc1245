//! Any `X-Request-Id`: accepted only when short and plain, and then safe to echo as a header.
#![no_main]

use app::http::request_id::is_sane;
use axum::http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &str| {
    if is_sane(value) {
        assert!(value.len() <= 64);
        assert!(HeaderValue::from_str(value).is_ok());
        assert!(!value.contains(['\r', '\n', ' ', '"', '<']));
    }
});
