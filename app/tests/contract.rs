//! The OpenAPI document is the contract the service keeps: for every operation it lists, requests
//! generated from the document itself (proptest strategies built from each parameter's and body's
//! schema: types, lengths, patterns, formats, bounds, required fields) are sent to the real router
//! with a signed-in session. The run fails on any status the operation does not declare, any 5xx,
//! and any schema-valid request refused as invalid (400, 413, 415, or 422 with a code other than
//! the refusals a schema cannot express: a weak or wrong password, a cursor the service did not make).

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use proptest::string::string_regex;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value};
use support::api::{Auth, signed_in};
use support::service::{config, router_for, send};

/// Generated inputs per operation: enough to reach every branch of the schemas, quick in CI.
const CASES: u32 = 48;

/// Refusals of a schema-valid request that only the service's state or secrets can decide.
const SEMANTIC: &[&str] = &["weak_password", "wrong_password", "invalid_cursor"];

fn resolve<'a>(schema: &'a Value, document: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.rsplit('/').next().expect("a schema name");
            resolve(&document["components"]["schemas"][name], document)
        }
        None => schema,
    }
}

fn length(schema: &Value, key: &str, default: usize) -> usize {
    schema.get(key).and_then(Value::as_u64).map_or(default, |n| usize::try_from(n).expect("small"))
}

fn string(schema: &Value) -> BoxedStrategy<Value> {
    let (min, max) = (length(schema, "minLength", 0), length(schema, "maxLength", 300));
    if schema["format"] == "uuid" {
        return any::<u128>().prop_map(|n| Value::from(uuid::Uuid::from_u128(n).to_string())).boxed();
    }
    let text = match schema.get("pattern").and_then(Value::as_str) {
        // The generator takes no anchors; every pattern of the document spans the whole string.
        Some(pattern) => string_regex(pattern.trim_start_matches('^').trim_end_matches('$'))
            .expect("the document's patterns are regular")
            .boxed(),
        None => proptest::collection::vec(any::<char>(), min..=max).prop_map(String::from_iter).boxed(),
    };
    text.prop_filter("within the length bounds", move |text| (min..=max).contains(&text.chars().count()))
        .prop_map(Value::from)
        .boxed()
}

fn of_type(kind: &str, schema: &Value, document: &Value) -> BoxedStrategy<Value> {
    match kind {
        "null" => Just(Value::Null).boxed(),
        "boolean" => any::<bool>().prop_map(Value::from).boxed(),
        "string" => string(schema),
        "integer" => {
            let min = schema.get("minimum").and_then(Value::as_i64).unwrap_or(i64::from(i32::MIN));
            let max = schema.get("maximum").and_then(Value::as_i64).unwrap_or(i64::from(i32::MAX));
            (min..=max).prop_map(Value::from).boxed()
        }
        "array" => proptest::collection::vec(value(&schema["items"], document), 0..3).prop_map(Value::from).boxed(),
        "object" => object(schema, document),
        other => panic!("the generator does not know type {other:?}"),
    }
}

/// Any value the schema allows.
fn value(schema: &Value, document: &Value) -> BoxedStrategy<Value> {
    let schema = resolve(schema, document);
    if let Some(choices) = schema.get("oneOf").or_else(|| schema.get("anyOf")).and_then(Value::as_array) {
        return proptest::strategy::Union::new(choices.iter().map(|choice| value(choice, document))).boxed();
    }
    match &schema["type"] {
        Value::String(kind) => of_type(kind, schema, document),
        Value::Array(kinds) => proptest::strategy::Union::new(
            kinds.iter().map(|kind| of_type(kind.as_str().expect("a type name"), schema, document)),
        )
        .boxed(),
        _ if schema.get("properties").is_some() => object(schema, document),
        _ => Just(Value::Null).boxed(),
    }
}

/// An object with every required property and any of the optional ones.
fn object(schema: &Value, document: &Value) -> BoxedStrategy<Value> {
    let required: Vec<&str> =
        schema["required"].as_array().map(|names| names.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let properties: Vec<BoxedStrategy<Option<(String, Value)>>> = schema["properties"]
        .as_object()
        .map(|properties| {
            properties
                .iter()
                .map(|(name, property)| {
                    let needed = required.contains(&name.as_str());
                    let name = name.clone();
                    let field = value(property, document).prop_map(move |value| (name.clone(), value));
                    if needed { field.prop_map(Some).boxed() } else { proptest::option::of(field).boxed() }
                })
                .collect()
        })
        .unwrap_or_default();
    properties.prop_map(|fields| Value::Object(fields.into_iter().flatten().collect::<Map<_, _>>())).boxed()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(byte).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// One generated request: path parameters, query parameters (name, value or absent), body.
type Generated = (Vec<(String, Value)>, Vec<(String, Value)>, Option<Value>);

fn request_strategy(operation: &Value, document: &Value) -> BoxedStrategy<Generated> {
    let mut path = Vec::new();
    let mut query = Vec::new();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        let name = parameter["name"].as_str().expect("a parameter name").to_owned();
        let strategy = value(&parameter["schema"], document).prop_map(move |value| (name.clone(), value));
        match parameter["in"].as_str() {
            Some("path") => path.push(strategy.boxed()),
            Some("query") if parameter["required"] == true => query.push(strategy.boxed()),
            Some("query") => query.push(
                proptest::option::of(strategy)
                    .prop_map(|field| field.unwrap_or_else(|| (String::new(), Value::Null)))
                    .boxed(),
            ),
            other => panic!("parameters in {other:?} are not generated"),
        }
    }
    let body = match operation["requestBody"]["content"]["application/json"]["schema"] {
        Value::Null => Just(None).boxed(),
        ref schema => value(schema, document).prop_map(Some).boxed(),
    };
    (path, query, body).boxed()
}

fn build(method: &str, template: &str, (path, query, body): &Generated, auth: &Auth) -> Request<Body> {
    let mut uri = template.to_owned();
    for (name, value) in path {
        uri = uri.replace(&format!("{{{name}}}"), &encode(value.as_str().expect("path parameters are strings")));
    }
    let pairs: Vec<String> = query
        .iter()
        .filter(|(name, value)| !name.is_empty() && !value.is_null())
        .map(|(name, value)| match value {
            Value::String(text) => format!("{name}={}", encode(text)),
            other => format!("{name}={}", encode(&other.to_string())),
        })
        .collect();
    if !pairs.is_empty() {
        uri = format!("{uri}?{}", pairs.join("&"));
    }
    let method = axum::http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("a method");
    support::api::request(method, &uri, body.clone(), auth)
}

#[test]
fn every_operation_keeps_the_contract_for_generated_inputs() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let db = runtime.block_on(support::TestDb::new());
    let limits = [
        ("SIGNUP_LIMIT_PER_IP", "1000000/1m"),
        ("LOGIN_LIMIT_PER_IP", "1000000/1m"),
        ("LOGIN_LIMIT_PER_ACCOUNT_NETWORK", "1000000/1m"),
        ("API_LIMIT_PER_CALLER", "1000000/1m"),
    ];
    let router: Router = router_for(app::state::AppState::new(config(&limits), db.pool.clone()), Router::new());
    let document = serde_json::to_value(app::openapi::document()).expect("the document is JSON");
    let mut operations = 0;
    for (template, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("an item") {
            operations += 1;
            let declared: Vec<String> =
                operation["responses"].as_object().expect("responses").keys().cloned().collect();
            // A session of its own for each operation: logging out ends only this one.
            let (_, session) = runtime.block_on(signed_in(&router, "contract"));
            let mut runner = TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
            let seen = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
            let outcome = runner.run(&request_strategy(operation, &document), |generated| {
                let request = build(method, template, &generated, &session);
                let reply = runtime.block_on(send(&router, request));
                let status = reply.status.as_u16();
                *seen.borrow_mut().entry(status).or_default() += 1;
                let case = format!("{} {template} with {generated:?}: {status} {}", method.to_uppercase(), reply.body);
                prop_assert!(declared.contains(&status.to_string()), "undeclared status: {case}");
                prop_assert!(status < 500, "a server error: {case}");
                if [400, 413, 415, 422].contains(&status) {
                    let code = serde_json::from_str::<Value>(&reply.body).map(|body| body["error"]["code"].clone());
                    let semantic =
                        code.as_ref().ok().and_then(Value::as_str).is_some_and(|code| SEMANTIC.contains(&code));
                    prop_assert!(semantic, "a schema-valid request refused: {case}");
                }
                Ok::<(), TestCaseError>(())
            });
            if let Err(failure) = outcome {
                panic!("{failure}");
            }
            eprintln!("{} {template}: {:?}", method.to_uppercase(), seen.into_inner());
        }
    }
    assert!(operations >= 12, "only {operations} operations in the document");
}
