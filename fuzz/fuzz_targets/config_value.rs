//! Any value of any variable: the configuration is read or refused with problems, never a panic.
#![no_main]

use app::config::Config;
use libfuzzer_sys::fuzz_target;

const VARIABLES: &[&str] = &[
    "APP_ENV", "LISTEN_ADDR", "METRICS_ADDR", "DATABASE_MAX_CONNECTIONS", "DATABASE_ACQUIRE_TIMEOUT",
    "ALLOWED_HOSTS", "CORS_ALLOWED_ORIGINS", "CSRF_TRUSTED_ORIGINS", "TRUSTED_PROXIES", "SECURE_HSTS_SECONDS",
    "CONTENT_SECURITY_POLICY", "API_LIMIT_PER_CALLER", "LOGIN_LIMIT_PER_ACCOUNT", "MAX_BODY_BYTES", "REQUEST_TIMEOUT",
    "SESSION_IDLE_TIMEOUT", "LOG_LEVEL", "SILENCED_CHECKS", "DEBUG",
];

fuzz_target!(|input: (u8, &str)| {
    let (which, value) = input;
    let name = VARIABLES[usize::from(which) % VARIABLES.len()];
    let _ = app::config::parse_duration(value);
    let lookup = |key: &str| match key {
        "DATABASE_URL" => Some("postgres://fuzz@localhost/fuzz".to_owned()),
        key if key == name => Some(value.to_owned()),
        _ => None,
    };
    if let Err(problems) = Config::from_lookup(&lookup) {
        // Every refusal names a variable.
        assert!(!problems.to_string().is_empty());
    }
});
