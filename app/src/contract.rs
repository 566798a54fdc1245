//! What a deployed service cannot run without: the variables every staging and production target must
//! provide. Plain data with no dependencies, so that `cargo xtask secrets check` compiles this same file
//! and checks each target's store against it; `tests/required_variables.rs` holds the list to `config.rs` and
//! `check --deploy`.

/// One variable a deployed service requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Required {
    pub name: &'static str,
    /// Kept in the target's secret store, and read from `NAME` or `NAME_FILE`; otherwise plain
    /// configuration, kept with the target's other settings.
    pub secret: bool,
    /// How to produce a value (never a value itself).
    pub how: &'static str,
}

/// Without any of these, `serve` refuses to start in staging or production (or starts as development).
pub const REQUIRED_WHEN_DEPLOYED: &[Required] = &[
    Required { name: "APP_ENV", secret: false, how: "production or staging" },
    Required { name: "DATABASE_URL", secret: true, how: "postgres://USER:PASSWORD@HOST:5432/DB" },
    Required { name: "SECRET_KEY", secret: true, how: "`openssl rand -base64 48`" },
    Required { name: "ALLOWED_HOSTS", secret: false, how: "the host names the service answers to" },
    Required { name: "TRUSTED_PROXIES", secret: false, how: "the address or network of the proxy in front" },
];
