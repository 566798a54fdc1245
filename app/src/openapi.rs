//! The OpenAPI 3.1 document, generated from the handlers' and types' annotations, served at
//! `/openapi.json`; `app/openapi.json` is its committed copy, kept fresh by a test and
//! `cargo xtask openapi --check`. Besides what each handler declares, every operation lists what the
//! layers in front of it can answer (`Layers`), all in the one error shape, so that a client
//! generated from the document meets no status it was not told about.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, HeaderBuilder, Object, Ref, RefOr, Type};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::{auth, notes};

#[derive(OpenApi)]
#[openapi(
    info(title = "shipshape", description = "The service shipshape ships: accounts, sessions, API tokens and notes."),
    paths(
        auth::accounts::sign_up,
        auth::accounts::log_in,
        auth::accounts::log_out,
        auth::accounts::change_password,
        auth::api_tokens::create,
        auth::api_tokens::list,
        auth::api_tokens::revoke,
        notes::list,
        notes::create,
        notes::get,
        notes::update,
        notes::delete,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Security, &Layers)
)]
struct ApiDoc;

/// Every error response: `{"error":{"code","message","request_id"}}`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the body http::errors renders")]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the body http::errors renders")]
struct ErrorDetail {
    /// Stable and machine-readable (`invalid_field`, `rate_limited`, …): branch on it.
    code: String,
    /// For people.
    message: String,
    request_id: Option<String>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("__Host-session"))));
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// What an operation can be answered by the layers and extractors, before or around its handler.
struct Layers;

/// Which operations a layer's status applies to.
#[derive(Clone, Copy)]
enum Applies {
    Every,
    /// Needs credentials (not in `auth::PUBLIC`).
    Protected,
    /// Takes a JSON body.
    WithBody,
    /// Unsafe methods, which the CSRF layer checks.
    Unsafe,
    /// Has an `{id}` in its path.
    WithId,
}

const LAYER_STATUSES: &[(&str, Applies, &str)] = &[
    ("400", Applies::Every, "`invalid_host`: the Host is not served here; `malformed_json`: the body is not JSON"),
    ("401", Applies::Protected, "`unauthorized`: no valid session cookie or API token"),
    ("403", Applies::Unsafe, "`csrf_failed`: a cookie-authenticated request from another site"),
    ("404", Applies::WithId, "`not_found`: no such item of the caller's"),
    ("408", Applies::Every, "`request_timeout`: the request took longer than `REQUEST_TIMEOUT`"),
    ("413", Applies::WithBody, "`payload_too_large`: the body is larger than `MAX_BODY_BYTES`"),
    ("415", Applies::WithBody, "`unsupported_media_type`: the body is not `application/json`"),
    (
        "422",
        Applies::WithBody,
        "`invalid_field`: a field is missing, mistyped, out of bounds or holds NUL; the message names it",
    ),
    ("429", Applies::Protected, "`rate_limited`: too many requests; retry after `Retry-After`"),
    ("500", Applies::Every, "`internal_error`: something failed on the service's side (never the client's doing)"),
    ("503", Applies::Every, "`overloaded`: the service is at capacity; retry after `Retry-After`"),
];

fn error_response(description: &str) -> Response {
    let content = Content::new(Some(Ref::from_schema_name("ErrorBody")));
    ResponseBuilder::new().description(description).content("application/json", content).build()
}

fn applies(applies: Applies, path: &str, method: &str, operation: &Operation) -> bool {
    match applies {
        Applies::Every => true,
        Applies::Protected => !auth::PUBLIC
            .iter()
            .any(|(public, public_path)| public.as_str().eq_ignore_ascii_case(method) && *public_path == path),
        Applies::WithBody => operation.request_body.is_some(),
        Applies::Unsafe => method != "get",
        Applies::WithId => path.contains("{id}"),
    }
}

fn operations(item: &mut PathItem) -> [(&'static str, Option<&mut Operation>); 5] {
    [
        ("get", item.get.as_mut()),
        ("post", item.post.as_mut()),
        ("put", item.put.as_mut()),
        ("patch", item.patch.as_mut()),
        ("delete", item.delete.as_mut()),
    ]
}

impl Modify for Layers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let retry_after = HeaderBuilder::new()
            .schema(Object::with_type(Type::Integer))
            .description(Some("seconds to wait before retrying"))
            .build();
        for (path, item) in &mut openapi.paths.paths {
            for (method, operation) in operations(item) {
                let Some(operation) = operation else { continue };
                for (status, rule, description) in LAYER_STATUSES {
                    if !applies(*rule, path, method, operation) {
                        continue;
                    }
                    match operation.responses.responses.get_mut(*status) {
                        None => {
                            operation
                                .responses
                                .responses
                                .insert((*status).to_owned(), error_response(description).into());
                        }
                        // The handler's own reasons first, then the layers'.
                        Some(RefOr::T(declared)) if !declared.description.is_empty() => {
                            declared.description = format!("{}; {description}", declared.description);
                        }
                        Some(RefOr::T(declared)) => declared.description = (*description).to_owned(),
                        Some(RefOr::Ref(_)) => {}
                    }
                }
                for (status, response) in &mut operation.responses.responses {
                    let RefOr::T(response) = response else { continue };
                    if status.starts_with(['4', '5']) && response.content.is_empty() {
                        let description =
                            if response.description.is_empty() { "an error" } else { &response.description };
                        *response = error_response(description);
                    }
                    if matches!(status.as_str(), "429" | "503") {
                        response.headers.insert("Retry-After".to_owned(), retry_after.clone());
                    }
                }
            }
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as committed: pretty JSON with a final newline.
pub fn to_json() -> String {
    let mut json = serde_json::to_string_pretty(&document()).expect("the document serializes");
    json.push('\n');
    json
}

pub async fn serve() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(document())
}
