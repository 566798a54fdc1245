//! Request-body extraction with the one error shape: a wrong content type is 415, malformed JSON is
//! 400, a missing or mistyped field is 422 naming it, an oversized body is 413, and text with a NUL
//! character (which PostgreSQL cannot store) is 422 naming the field.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::errors::ApiError;

/// `axum::Json`, with its rejections turned into `ApiError`s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<Value>::from_request(request, state).await.map_err(|r| rejected(&r))?;
        if let Some(field) = nul_in(&value) {
            return Err(invalid(if field.is_empty() { "body" } else { &field }, "must not contain NUL characters"));
        }
        let bytes = serde_json::to_vec(&value).expect("a JSON value serializes");
        axum::Json::<T>::from_bytes(&bytes).map(|axum::Json(value)| Self(value)).map_err(|r| rejected(&r))
    }
}

/// The path (`title`, `items[2]`) of the first string or key holding U+0000.
fn nul_in(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => text.contains('\0').then(String::new),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| nul_in(item).map(|inner| format!("[{index}]{}", join(&inner)))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(key.replace('\0', "\\u0000"));
            }
            nul_in(item).map(|inner| format!("{key}{}", join(&inner)))
        }),
        _ => None,
    }
}

fn join(inner: &str) -> String {
    if inner.is_empty() || inner.starts_with('[') { inner.to_owned() } else { format!(".{inner}") }
}

fn rejected(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", "the body is not valid JSON")
        }
        // serde's message names the field and what was expected; it speaks only of the client's input.
        JsonRejection::JsonDataError(error) => {
            let detail = error.body_text();
            let detail = detail.rsplit_once("target type: ").map_or(detail.as_str(), |(_, detail)| detail).to_owned();
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail)
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        }
        _ => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "the request body could not be read"),
    }
}

/// A 422 for a field that parsed but is not acceptable.
pub fn invalid(field: &str, why: &str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("{field}: {why}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_characters_are_found_with_their_path() {
        assert_eq!(nul_in(&json!({ "title": "fine", "body": "a\u{0}b" })).as_deref(), Some("body"));
        assert_eq!(nul_in(&json!({ "a": { "b": ["x", "\u{0}"] } })).as_deref(), Some("a.b[1]"));
        assert_eq!(nul_in(&json!("\u{0}")).as_deref(), Some(""));
        assert_eq!(nul_in(&json!({ "title": "tab\tand\nnewline", "n": 1 })), None);
    }
}
