//! Any query string of the notes list: a page (limit, `after` cursor) or a refusal, never a panic.
#![no_main]

use app::notes::Page;
use axum::extract::Query;
use axum::http::Uri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|query: &str| {
    let Ok(uri) = format!("/api/v1/notes?{query}").parse::<Uri>() else {
        return;
    };
    if let Ok(Query(page)) = Query::<Page>::try_from_uri(&uri) {
        // A cursor that parsed is a real UUID, printed back the same way.
        if let Some(after) = page.after {
            assert_eq!(after.to_string().len(), 36);
        }
    }
});
