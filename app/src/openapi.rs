//! The OpenAPI 3.1 document, generated from the handlers' and types' annotations, served at
//! `/openapi.json`; `app/openapi.json` is its committed copy, kept fresh by a test and
//! `cargo xtask openapi --check`.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
    modifiers(&Security)
)]
struct ApiDoc;

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
