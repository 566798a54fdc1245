//! The environment contract: every variable the service reads, parsed once into a typed `Config`.
//! Parsing collects every problem (variable, what is wrong, how to fix it) instead of stopping at the
//! first, and secrets may come from `NAME_FILE` (Docker and Kubernetes secrets).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};

use crate::listen::Listen;

/// Where the service runs. Staging and production are *deployed*: they get the strict defaults and
/// refuse to start on an unsafe configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Test,
    Staging,
    Production,
}

impl Environment {
    pub fn is_deployed(self) -> bool {
        matches!(self, Self::Staging | Self::Production)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = ();

    fn from_str(value: &str) -> Result<Self, ()> {
        match value {
            "development" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "staging" => Ok(Self::Staging),
            "production" => Ok(Self::Production),
            _ => Err(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: SecretString,
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub statement_timeout: Duration,
    /// How long a migration waits for a table lock before it fails, instead of queueing every request
    /// that touches the table behind it.
    pub migration_lock_timeout: Duration,
    /// PgBouncer in transaction mode: no server-side prepared statement cache.
    pub pgbouncer: bool,
    /// Apply pending migrations when `serve` starts (off in deployed environments).
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone)]
pub struct SecurityConfig {
    pub secret_key: SecretString,
    /// Earlier keys, still accepted while rotating.
    pub secret_key_fallbacks: Vec<SecretString>,
    pub allowed_hosts: Vec<String>,
    pub csrf_trusted_origins: Vec<String>,
    pub cors_allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub ssl_redirect: bool,
    pub hsts_seconds: u64,
    pub hsts_include_subdomains: bool,
    pub hsts_preload: bool,
    pub content_security_policy: String,
    pub csp_report_only: bool,
    pub x_frame_options: String,
    pub referrer_policy: String,
    pub cross_origin_opener_policy: String,
    pub session_cookie_secure: bool,
    pub session_cookie_httponly: bool,
    /// Error bodies carry the cause; never in a deployed environment (W018).
    pub debug: bool,
    /// `check --deploy` IDs to leave out, e.g. `security.W021`.
    pub silenced_checks: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_concurrent_requests: usize,
    /// Requests the CSP report endpoint accepts per minute.
    pub csp_reports_per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct Sessions {
    /// A session unused for this long is over.
    pub idle_timeout: Duration,
    /// A session is over this long after login, however active.
    pub absolute_timeout: Duration,
    /// How often expired sessions and API tokens are deleted.
    pub sweep_interval: Duration,
}

/// At most `count` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub count: u32,
    pub window: Duration,
}

impl FromStr for Limit {
    type Err = ();

    /// `10/15m`: ten per fifteen minutes.
    fn from_str(value: &str) -> Result<Self, ()> {
        let (count, window) = value.split_once('/').ok_or(())?;
        let count = count.trim().parse().map_err(|_| ())?;
        let window = parse_duration(window).filter(|window| !window.is_zero()).ok_or(())?;
        if count == 0 {
            return Err(());
        }
        Ok(Self { count, window })
    }
}

#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Shared counters for every replica; in-process counters when unset.
    pub redis_url: Option<SecretString>,
    /// Password attempts per account from one client network (a stranger elsewhere cannot lock the
    /// owner out), and per account from anywhere, hourly (ASVS 2.2.1: at most 100 an hour).
    pub login_per_account_network: Limit,
    pub login_per_account_hourly: Limit,
    pub login_per_ip: Limit,
    pub signup_per_ip: Limit,
    /// Authenticated API requests per user (session) or per token.
    pub api_per_caller: Limit,
    /// IPv6 clients are counted per network of this prefix length: one customer usually holds a /64.
    pub ipv6_prefix: u8,
    /// The in-process limiter keeps at most this many subjects per policy (a hard memory bound).
    pub max_keys: usize,
    /// Replicas serving the same users (`REPLICAS`); above one, limits need `REDIS_URL`.
    pub replicas: u32,
}

/// How many argon2 hashes run at once, and how many more may wait; past that, 503 at once.
#[derive(Debug, Clone, Copy)]
pub struct PasswordHashing {
    pub concurrency: usize,
    pub queue: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct ApiTokens {
    /// Days a token works when its creator names no expiry.
    pub default_days: u32,
    /// Live tokens an account may hold.
    pub max_per_account: u32,
}

#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// After SIGTERM, how long `/readyz` says 503 while still serving, so balancers stop routing here.
    pub drain_delay: Duration,
    /// Then how long in-flight requests get to finish.
    pub shutdown_timeout: Duration,
}

/// Error reports and traces, each off (and costing nothing) unless configured.
#[derive(Debug, Clone)]
pub struct Observability {
    /// A Sentry-compatible DSN (`SENTRY_DSN`): panics and 5xx answers are reported there. A secret,
    /// since it lets anyone send events.
    pub sentry_dsn: Option<SecretString>,
    /// An OTLP/HTTP collector (`OTEL_EXPORTER_OTLP_ENDPOINT`): one span per request to `…/v1/traces`.
    pub otlp_endpoint: Option<String>,
}

impl Observability {
    /// What `check --deploy` reports: each integration and whether it is on (never the DSN itself).
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "error reports",
                if self.sentry_dsn.is_some() {
                    "Sentry (SENTRY_DSN)".to_owned()
                } else {
                    "off (SENTRY_DSN unset)".to_owned()
                },
            ),
            (
                "traces",
                self.otlp_endpoint.as_ref().map_or_else(
                    || "off (OTEL_EXPORTER_OTLP_ENDPOINT unset)".to_owned(),
                    |endpoint| format!("OTLP/HTTP to {endpoint}"),
                ),
            ),
        ]
    }
}

/// What the service runs with. Built once at start-up, then passed down.
#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    /// Which release this process is (`APP_RELEASE`), reported by the health endpoints so that a
    /// deploy can tell the candidate from the old release.
    pub release: String,
    pub listen_addr: Listen,
    pub metrics_addr: SocketAddr,
    pub database: DatabaseConfig,
    pub security: SecurityConfig,
    pub limits: Limits,
    pub sessions: Sessions,
    pub rate_limits: RateLimits,
    pub password_hashing: PasswordHashing,
    pub api_tokens: ApiTokens,
    pub lifecycle: Lifecycle,
    pub observability: Observability,
    pub log_format: LogFormat,
    pub log_level: String,
}

/// The JSON API's policy: nothing may load, frame or submit anything.
pub const DEFAULT_CSP: &str = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/// One thing wrong with the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.variable, self.message, self.fix)
    }
}

/// Every problem found, reported together.
#[derive(Debug, Clone)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the configuration has {} problem(s):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads variables and records what is wrong with them.
struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

impl Reader<'_> {
    fn problem(&mut self, variable: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Problem { variable: variable.to_owned(), message: message.into(), fix: fix.into() });
    }

    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|value| !value.trim().is_empty())
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    fn parse<T: FromStr>(&mut self, name: &str, default: T, example: &str) -> T {
        match self.raw(name) {
            None => default,
            Some(value) => value.trim().parse().unwrap_or_else(|_| {
                self.problem(name, format!("{value:?} is not valid"), format!("use e.g. {name}={example}"));
                default
            }),
        }
    }

    fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.raw(name).map(|value| value.trim().to_ascii_lowercase()) {
            None => default,
            Some(value) => match value.as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    self.problem(name, format!("{value:?} is not a boolean"), "use true or false");
                    default
                }
            },
        }
    }

    fn duration(&mut self, name: &str, default: Duration) -> Duration {
        match self.raw(name) {
            None => default,
            Some(value) => parse_duration(&value).unwrap_or_else(|| {
                self.problem(
                    name,
                    format!("{value:?} is not a duration"),
                    "use e.g. 500ms, 30s, 5m or a number of seconds",
                );
                default
            }),
        }
    }

    fn list(&self, name: &str, default: &[&str]) -> Vec<String> {
        match self.raw(name) {
            None => default.iter().map(|item| (*item).to_owned()).collect(),
            Some(value) => split_list(&value),
        }
    }

    /// `NAME` or the contents of the file named by `NAME_FILE`, never both.
    fn secret(&mut self, name: &str) -> Option<SecretString> {
        let file_var = format!("{name}_FILE");
        match (self.raw(name), self.raw(&file_var)) {
            (Some(_), Some(_)) => {
                self.problem(
                    name,
                    format!("both {name} and {file_var} are set"),
                    format!("set only one of {name} and {file_var}"),
                );
                None
            }
            (Some(value), None) => Some(SecretString::from(value)),
            (None, Some(path)) => match std::fs::read_to_string(path.trim()) {
                Ok(contents) => Some(SecretString::from(contents.trim_end_matches(['\r', '\n']).to_owned())),
                Err(error) => {
                    self.problem(
                        &file_var,
                        format!("cannot read {path:?}: {error}"),
                        "point it at a readable file holding the secret",
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }
}

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

/// `500ms`, `30s`, `5m`, `1h`, or plain seconds.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit.trim() {
        "" | "s" => Some(Duration::from_secs(number)),
        "ms" => Some(Duration::from_millis(number)),
        "m" => Some(Duration::from_secs(number.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(number.checked_mul(3600)?)),
        _ => None,
    }
}

impl Config {
    /// Reads the process environment, carrying on past problems (see `read`).
    pub fn read_env() -> (Self, Vec<Problem>) {
        Self::read(&|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`, so tests can supply their own environment.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let (config, problems) = Self::read(lookup);
        if problems.is_empty() { Ok(config) } else { Err(ConfigError(problems)) }
    }

    /// The configuration with defaults in place of whatever is wrong, and the list of what is wrong:
    /// `check --deploy` reports both at once.
    pub fn read(lookup: &dyn Fn(&str) -> Option<String>) -> (Self, Vec<Problem>) {
        let mut env = Reader { lookup, problems: Vec::new() };
        let environment = match env.raw("APP_ENV") {
            None => Environment::Development,
            Some(value) => value.trim().parse().unwrap_or_else(|()| {
                env.problem(
                    "APP_ENV",
                    format!("{value:?} is not an environment"),
                    "use development, test, staging or production",
                );
                Environment::Development
            }),
        };
        let deployed = environment.is_deployed();
        let release = env.string("APP_RELEASE", env!("CARGO_PKG_VERSION"));

        let listen_addr =
            env.parse("LISTEN_ADDR", Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 8000))), "0.0.0.0:8000");
        let metrics_addr = env.parse("METRICS_ADDR", SocketAddr::from(([127, 0, 0, 1], 9090)), "127.0.0.1:9090");
        if listen_addr == Listen::Tcp(metrics_addr) {
            env.problem(
                "METRICS_ADDR",
                "is the same address as LISTEN_ADDR",
                "metrics need a listener of their own, e.g. 127.0.0.1:9090",
            );
        }

        let database_url = env.secret("DATABASE_URL").unwrap_or_else(|| {
            env.problem(
                "DATABASE_URL",
                "is not set",
                "set it (or DATABASE_URL_FILE) to e.g. postgres://app@localhost:5432/app",
            );
            SecretString::from(String::new())
        });
        let database = DatabaseConfig {
            url: database_url,
            max_connections: env.parse("DATABASE_MAX_CONNECTIONS", 10, "10"),
            min_connections: env.parse("DATABASE_MIN_CONNECTIONS", 0, "1"),
            acquire_timeout: env.duration("DATABASE_ACQUIRE_TIMEOUT", Duration::from_secs(5)),
            idle_timeout: env.duration("DATABASE_IDLE_TIMEOUT", Duration::from_secs(600)),
            max_lifetime: env.duration("DATABASE_MAX_LIFETIME", Duration::from_secs(1800)),
            statement_timeout: env.duration("DATABASE_STATEMENT_TIMEOUT", Duration::from_secs(15)),
            migration_lock_timeout: env.duration("MIGRATION_LOCK_TIMEOUT", Duration::from_secs(5)),
            pgbouncer: env.bool("DATABASE_PGBOUNCER", false),
            migrate_on_start: env.bool("MIGRATE_ON_START", !deployed),
        };
        if database.min_connections > database.max_connections {
            env.problem(
                "DATABASE_MIN_CONNECTIONS",
                "is above DATABASE_MAX_CONNECTIONS",
                "lower it or raise the maximum",
            );
        }
        if database.max_connections == 0 {
            env.problem("DATABASE_MAX_CONNECTIONS", "is 0", "allow at least one connection");
        }

        let secret_key = env.secret("SECRET_KEY").unwrap_or_else(|| {
            if deployed {
                // Left empty: `check --deploy` (W009) names it with the rest.
                SecretString::from(String::new())
            } else {
                SecretString::from(format!(
                    "dev-only-{}-{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                ))
            }
        });
        let secret_key_fallbacks = env
            .secret("SECRET_KEY_FALLBACKS")
            .map(|keys| split_list(keys.expose_secret()).into_iter().map(SecretString::from).collect())
            .unwrap_or_default();

        let default_hosts: &[&str] = if deployed { &[] } else { &["localhost", "127.0.0.1", "[::1]"] };
        let mut trusted_proxies = Vec::new();
        for cidr in env.list("TRUSTED_PROXIES", &[]) {
            match parse_network(&cidr) {
                Some(network) => trusted_proxies.push(network),
                None => env.problem(
                    "TRUSTED_PROXIES",
                    format!("{cidr:?} is not an IP address or CIDR"),
                    "use e.g. 10.0.0.0/8,127.0.0.1",
                ),
            }
        }
        let csrf_trusted_origins = env.list("CSRF_TRUSTED_ORIGINS", &[]);
        let cors_allowed_origins = env.list("CORS_ALLOWED_ORIGINS", &[]);
        for (variable, origins) in
            [("CSRF_TRUSTED_ORIGINS", &csrf_trusted_origins), ("CORS_ALLOWED_ORIGINS", &cors_allowed_origins)]
        {
            for origin in origins.iter().filter(|origin| origin.as_str() != "*" && !is_origin(origin)) {
                env.problem(
                    variable,
                    format!("{origin:?} is not an origin"),
                    "use scheme://host[:port] with no path, e.g. https://app.example.com",
                );
            }
        }
        if csrf_trusted_origins.iter().any(|origin| origin == "*") {
            env.problem(
                "CSRF_TRUSTED_ORIGINS",
                "\"*\" would trust every site",
                "list the origins that may post to the service",
            );
        }

        let security = SecurityConfig {
            secret_key,
            secret_key_fallbacks,
            allowed_hosts: env
                .list("ALLOWED_HOSTS", default_hosts)
                .into_iter()
                .map(|host| host.to_ascii_lowercase())
                .collect(),
            csrf_trusted_origins,
            cors_allowed_origins,
            trusted_proxies,
            ssl_redirect: env.bool("SECURE_SSL_REDIRECT", deployed),
            hsts_seconds: env.parse("SECURE_HSTS_SECONDS", if deployed { 63_072_000 } else { 0 }, "63072000"),
            hsts_include_subdomains: env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", true),
            hsts_preload: env.bool("SECURE_HSTS_PRELOAD", false),
            content_security_policy: env.string("CONTENT_SECURITY_POLICY", DEFAULT_CSP),
            csp_report_only: env.bool("CSP_REPORT_ONLY", false),
            x_frame_options: env.string("X_FRAME_OPTIONS", "DENY").to_ascii_uppercase(),
            referrer_policy: env.string("REFERRER_POLICY", "no-referrer"),
            cross_origin_opener_policy: env.string("CROSS_ORIGIN_OPENER_POLICY", "same-origin"),
            session_cookie_secure: env.bool("SESSION_COOKIE_SECURE", deployed),
            session_cookie_httponly: env.bool("SESSION_COOKIE_HTTPONLY", true),
            debug: env.bool("DEBUG", false),
            silenced_checks: env.list("SILENCED_CHECKS", &[]),
        };

        let limits = Limits {
            max_body_bytes: env.parse("MAX_BODY_BYTES", 1024 * 1024, "1048576"),
            request_timeout: env.duration("REQUEST_TIMEOUT", Duration::from_secs(30)),
            header_read_timeout: env.duration("HEADER_READ_TIMEOUT", Duration::from_secs(10)),
            max_concurrent_requests: env.parse("MAX_CONCURRENT_REQUESTS", 512, "512"),
            csp_reports_per_minute: env.parse("CSP_REPORTS_PER_MINUTE", 60, "60"),
        };
        for (name, zero) in [
            ("REQUEST_TIMEOUT", limits.request_timeout.is_zero()),
            ("HEADER_READ_TIMEOUT", limits.header_read_timeout.is_zero()),
            ("MAX_CONCURRENT_REQUESTS", limits.max_concurrent_requests == 0),
            ("MAX_BODY_BYTES", limits.max_body_bytes == 0),
        ] {
            if zero {
                env.problem(name, "is 0, which would refuse every request", "leave it unset for the default");
            }
        }
        let sessions = Sessions {
            idle_timeout: env.duration("SESSION_IDLE_TIMEOUT", Duration::from_secs(30 * 60)),
            absolute_timeout: env.duration("SESSION_ABSOLUTE_TIMEOUT", Duration::from_secs(12 * 3600)),
            sweep_interval: env.duration("CREDENTIAL_SWEEP_INTERVAL", Duration::from_secs(15 * 60)),
        };
        if sessions.sweep_interval.is_zero() {
            env.problem("CREDENTIAL_SWEEP_INTERVAL", "is 0", "leave it unset for the default, 15m");
        }
        let limit = |count: u32, minutes: u64| Limit { count, window: Duration::from_secs(minutes * 60) };
        let rate_limits = RateLimits {
            redis_url: env.secret("REDIS_URL"),
            login_per_account_network: env.parse("LOGIN_LIMIT_PER_ACCOUNT_NETWORK", limit(10, 15), "10/15m"),
            login_per_account_hourly: env.parse("LOGIN_LIMIT_PER_ACCOUNT_HOURLY", limit(100, 60), "100/1h"),
            login_per_ip: env.parse("LOGIN_LIMIT_PER_IP", limit(30, 1), "30/1m"),
            signup_per_ip: env.parse("SIGNUP_LIMIT_PER_IP", limit(5, 60), "5/1h"),
            api_per_caller: env.parse("API_LIMIT_PER_CALLER", limit(600, 1), "600/1m"),
            ipv6_prefix: env.parse("RATE_LIMIT_IPV6_PREFIX", 64, "64"),
            max_keys: env.parse("RATE_LIMIT_MAX_KEYS", 100_000, "100000"),
            replicas: env.parse("REPLICAS", 1, "2"),
        };
        if !(32..=128).contains(&rate_limits.ipv6_prefix) {
            env.problem("RATE_LIMIT_IPV6_PREFIX", "is outside 32–128", "leave it unset for /64");
        }
        if rate_limits.max_keys == 0 || rate_limits.replicas == 0 {
            let name = if rate_limits.max_keys == 0 { "RATE_LIMIT_MAX_KEYS" } else { "REPLICAS" };
            env.problem(name, "is 0", "leave it unset for the default");
        }
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let concurrency = env.parse("PASSWORD_HASH_CONCURRENCY", cpus, "2");
        let password_hashing =
            PasswordHashing { concurrency, queue: env.parse("PASSWORD_HASH_QUEUE", concurrency * 4, "8") };
        if password_hashing.concurrency == 0 {
            env.problem("PASSWORD_HASH_CONCURRENCY", "is 0, which would refuse every login", "leave it unset");
        }
        let api_tokens = ApiTokens {
            default_days: env.parse("API_TOKEN_DEFAULT_DAYS", 90, "90"),
            max_per_account: env.parse("API_TOKENS_PER_ACCOUNT", 20, "20"),
        };
        if !(1..=365).contains(&api_tokens.default_days) {
            env.problem("API_TOKEN_DEFAULT_DAYS", "is outside 1–365", "leave it unset for 90");
        }
        let hourly = rate_limits.login_per_account_hourly;
        // More than 100 in any hour: a longer window with proportionally more attempts counts too.
        if u128::from(hourly.count) * 3600 > 100 * u128::from(hourly.window.as_secs().max(1)) {
            env.problem(
                "LOGIN_LIMIT_PER_ACCOUNT_HOURLY",
                "allows more than 100 attempts an hour",
                "keep it at 100/1h or below (ASVS 2.2.1)",
            );
        }
        let lifecycle = Lifecycle {
            drain_delay: env.duration("DRAIN_DELAY", if deployed { Duration::from_secs(5) } else { Duration::ZERO }),
            shutdown_timeout: env.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(20)),
        };
        let log_format = match env.raw("LOG_FORMAT").map(|value| value.trim().to_ascii_lowercase()).as_deref() {
            None => {
                if deployed {
                    LogFormat::Json
                } else {
                    LogFormat::Pretty
                }
            }
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                env.problem("LOG_FORMAT", format!("{other:?} is not a log format"), "use json or pretty");
                LogFormat::Json
            }
        };
        let log_level = env.string("LOG_LEVEL", "info,sqlx=warn");
        let observability = observability(&mut env);

        let config = Self {
            environment,
            release,
            listen_addr,
            metrics_addr,
            database,
            security,
            limits,
            sessions,
            rate_limits,
            password_hashing,
            api_tokens,
            lifecycle,
            observability,
            log_format,
            log_level,
        };
        (config, env.problems)
    }

    /// Every secret's value, so logs can blank them wherever they appear.
    pub fn secret_values(&self) -> Vec<String> {
        let mut values: Vec<String> = std::iter::once(&self.security.secret_key)
            .chain(&self.security.secret_key_fallbacks)
            .map(|secret| secret.expose_secret().to_owned())
            .collect();
        let urls = std::iter::once(&self.database.url).chain(self.rate_limits.redis_url.as_ref());
        values.extend(self.observability.sentry_dsn.as_ref().map(|dsn| dsn.expose_secret().to_owned()));
        values.extend(urls.filter_map(|url| database_password(url.expose_secret())));
        // Short values would blank ordinary words.
        values.retain(|value| value.len() >= 8);
        values
    }
}

fn observability(env: &mut Reader<'_>) -> Observability {
    let sentry_dsn = env.secret("SENTRY_DSN");
    if sentry_dsn.as_ref().is_some_and(|dsn| !is_url(dsn.expose_secret()) || !dsn.expose_secret().contains('@')) {
        env.problem("SENTRY_DSN", "is not a DSN", "use the project's DSN, https://KEY@HOST/PROJECT_ID");
    }
    let otlp_endpoint = env.raw("OTEL_EXPORTER_OTLP_ENDPOINT").map(|url| url.trim().trim_end_matches('/').to_owned());
    if otlp_endpoint.as_deref().is_some_and(|url| !is_url(url)) {
        env.problem(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "is not an http(s) URL",
            "use the collector's OTLP/HTTP base URL, e.g. http://otel-collector:4318",
        );
    }
    Observability { sentry_dsn, otlp_endpoint }
}

fn is_url(value: &str) -> bool {
    value.strip_prefix("https://").or_else(|| value.strip_prefix("http://")).is_some_and(|rest| !rest.is_empty())
}

/// The password in a `scheme://user:password@host/…` URL.
fn database_password(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let (credentials, _) = rest.rsplit_once('@')?;
    let (_, password) = credentials.split_once(':')?;
    Some(password.to_owned())
}

/// An address or CIDR; IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`) becomes the IPv4 network it names,
/// since clients' addresses are compared in their canonical form.
fn parse_network(value: &str) -> Option<IpNet> {
    let network: IpNet = value.parse().ok().or_else(|| value.parse::<std::net::IpAddr>().ok().map(IpNet::from))?;
    match network {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).ok().map(IpNet::V4),
            None => Some(network),
        },
        other => Some(other),
    }
}

/// `scheme://host[:port]` with nothing after it.
pub fn is_origin(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains(['/', '?', '#', '@', ' '])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_lookup(&move |name| vars.get(name).cloned())
    }

    fn problems(vars: &[(&str, &str)]) -> Vec<String> {
        config(vars).expect_err("invalid").0.into_iter().map(|problem| problem.variable).collect()
    }

    #[test]
    fn development_needs_nothing_but_a_database() {
        let config = config(&[("DATABASE_URL", "postgres://localhost/app")]).expect("valid");
        assert_eq!(config.environment, Environment::Development);
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(config.metrics_addr.to_string(), "127.0.0.1:9090");
        assert!(config.security.allowed_hosts.contains(&"localhost".to_owned()));
        assert!(config.security.secret_key.expose_secret().len() >= 50);
        assert!(config.database.migrate_on_start);
        assert_eq!(config.log_format, LogFormat::Pretty);
    }

    #[test]
    fn production_defaults_are_strict() {
        let config = config(&[("APP_ENV", "production"), ("DATABASE_URL", "postgres://db/app")]).expect("parses");
        assert!(config.security.ssl_redirect);
        assert_eq!(config.security.hsts_seconds, 63_072_000);
        assert!(config.security.session_cookie_secure);
        assert!(config.security.allowed_hosts.is_empty());
        assert!(!config.database.migrate_on_start);
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let found = problems(&[
            ("APP_ENV", "prod"),
            ("LISTEN_ADDR", "nowhere"),
            ("DATABASE_MAX_CONNECTIONS", "many"),
            ("REQUEST_TIMEOUT", "soon"),
            ("SECURE_SSL_REDIRECT", "maybe"),
            ("TRUSTED_PROXIES", "10.0.0.0/8,not-a-net"),
        ]);
        for variable in [
            "APP_ENV",
            "LISTEN_ADDR",
            "DATABASE_URL",
            "DATABASE_MAX_CONNECTIONS",
            "REQUEST_TIMEOUT",
            "SECURE_SSL_REDIRECT",
            "TRUSTED_PROXIES",
        ] {
            assert!(found.iter().any(|found| found == variable), "{variable} not reported in {found:?}");
        }
    }

    #[test]
    fn problems_name_the_fix() {
        let error = config(&[("LISTEN_ADDR", "nowhere")]).expect_err("invalid");
        let text = error.to_string();
        assert!(text.contains("LISTEN_ADDR") && text.contains("fix:") && text.contains("DATABASE_URL"), "{text}");
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = std::env::temp_dir().join(format!("app-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("secret_key");
        std::fs::write(&file, "k".repeat(60) + "\n").expect("write");
        let path = file.to_string_lossy().into_owned();
        let config = config(&[("DATABASE_URL", "postgres://db/app"), ("SECRET_KEY_FILE", &path)]).expect("valid");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(config.security.secret_key.expose_secret(), &"k".repeat(60));
    }

    #[test]
    fn a_secret_and_its_file_together_is_an_error() {
        assert!(
            problems(&[("DATABASE_URL", "postgres://db/app"), ("SECRET_KEY", "x"), ("SECRET_KEY_FILE", "/x")])
                .contains(&"SECRET_KEY".to_owned())
        );
        assert!(problems(&[("DATABASE_URL_FILE", "/does/not/exist")]).contains(&"DATABASE_URL_FILE".to_owned()));
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let config =
            config(&[("DATABASE_URL", "postgres://app:hunter2-db-password@db/app"), ("SECRET_KEY", &"s".repeat(64))])
                .expect("valid");
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2") && !debug.contains(&"s".repeat(64)), "{debug}");
        assert!(config.secret_values().contains(&"hunter2-db-password".to_owned()));
    }

    #[test]
    fn rate_limits_parse_and_respect_the_hourly_ceiling() {
        assert_eq!("10/15m".parse(), Ok(Limit { count: 10, window: Duration::from_secs(900) }));
        assert!("0/1m".parse::<Limit>().is_err() && "5".parse::<Limit>().is_err() && "5/0s".parse::<Limit>().is_err());
        assert!(
            problems(&[("DATABASE_URL", "x"), ("LOGIN_LIMIT_PER_ACCOUNT_HOURLY", "500/1h")])
                .contains(&"LOGIN_LIMIT_PER_ACCOUNT_HOURLY".to_owned())
        );
        assert!(
            problems(&[("DATABASE_URL", "x"), ("LOGIN_LIMIT_PER_ACCOUNT_HOURLY", "1000/2h")])
                .contains(&"LOGIN_LIMIT_PER_ACCOUNT_HOURLY".to_owned()),
            "a longer window does not hide the rate"
        );
        assert!(config(&[("DATABASE_URL", "x"), ("LOGIN_LIMIT_PER_ACCOUNT_HOURLY", "200/2h")]).is_ok());
        let config =
            config(&[("DATABASE_URL", "x"), ("REDIS_URL", "redis://:r3dis-pass-word@cache:6379")]).expect("valid");
        assert!(config.secret_values().contains(&"r3dis-pass-word".to_owned()));
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5 days"), None);
    }

    #[test]
    fn origins_are_validated() {
        assert!(is_origin("https://app.example.com"));
        assert!(is_origin("http://localhost:3000"));
        assert!(!is_origin("https://app.example.com/path"));
        assert!(!is_origin("app.example.com"));
        assert!(
            problems(&[("DATABASE_URL", "x"), ("CORS_ALLOWED_ORIGINS", "example.com")])
                .contains(&"CORS_ALLOWED_ORIGINS".to_owned())
        );
        assert!(
            problems(&[("DATABASE_URL", "x"), ("CSRF_TRUSTED_ORIGINS", "*")])
                .contains(&"CSRF_TRUSTED_ORIGINS".to_owned())
        );
    }

    #[test]
    fn trusted_proxies_take_addresses_and_networks() {
        let config =
            config(&[("DATABASE_URL", "x"), ("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1, ::1")]).expect("valid");
        assert_eq!(config.security.trusted_proxies.len(), 3);
        let mapped =
            self::config(&[("DATABASE_URL", "x"), ("TRUSTED_PROXIES", "::ffff:10.0.0.0/104,::ffff:127.0.0.1")])
                .expect("valid");
        let proxies: Vec<String> = mapped.security.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(proxies, ["10.0.0.0/8", "127.0.0.1/32"]);
    }

    #[test]
    fn abuse_limits_have_safe_defaults_and_refuse_nonsense() {
        let config = config(&[("DATABASE_URL", "x")]).expect("valid");
        assert!(config.password_hashing.concurrency >= 1 && config.password_hashing.queue >= 1);
        assert_eq!(config.rate_limits.ipv6_prefix, 64);
        assert_eq!((config.api_tokens.default_days, config.api_tokens.max_per_account), (90, 20));
        let found = problems(&[
            ("DATABASE_URL", "x"),
            ("PASSWORD_HASH_CONCURRENCY", "0"),
            ("RATE_LIMIT_IPV6_PREFIX", "8"),
            ("API_TOKEN_DEFAULT_DAYS", "0"),
            ("CREDENTIAL_SWEEP_INTERVAL", "0"),
        ]);
        for variable in [
            "PASSWORD_HASH_CONCURRENCY",
            "RATE_LIMIT_IPV6_PREFIX",
            "API_TOKEN_DEFAULT_DAYS",
            "CREDENTIAL_SWEEP_INTERVAL",
        ] {
            assert!(found.iter().any(|found| found == variable), "{variable} not reported in {found:?}");
        }
    }

    #[test]
    fn reading_never_stops_at_the_first_problem() {
        let (config, problems) = Config::read(&|name| (name == "APP_ENV").then(|| "production".to_owned()));
        assert!(config.environment.is_deployed());
        assert_eq!(problems.iter().map(|problem| problem.variable.as_str()).collect::<Vec<_>>(), ["DATABASE_URL"]);
    }

    #[test]
    fn same_listener_for_metrics_and_service_is_refused() {
        assert!(
            problems(&[("DATABASE_URL", "x"), ("LISTEN_ADDR", "127.0.0.1:9090")]).contains(&"METRICS_ADDR".to_owned())
        );
    }
}
