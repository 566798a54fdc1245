//! Any `Host` value: a plain lower-case name or a refusal, and never allowed by a list that cannot match it.
#![no_main]

use app::http::hosts::{allowed, host_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &str| {
    if let Some(name) = host_name(value) {
        assert_eq!(name, name.to_ascii_lowercase());
        assert!(!name.is_empty());
    }
    assert!(!allowed(value, &[]));
    let _ = allowed(value, &["example.com".to_owned(), ".example.org".to_owned()]);
});
