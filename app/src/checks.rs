//! `app check --deploy`: Django's deployment checks, with Django's IDs so operators recognise them,
//! and the service's own (`config`, `proxy`, `csrf`, `ratelimit`, `csp`). Each finding has an ID, a
//! level, a message and a hint. Everything is reported at once: variables that could not be read
//! are `config.E001` findings beside the rest, judged on their defaults. The header (W001) and CSRF
//! (W003) checks probe the real router in-process, which needs no database.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use secrecy::ExposeSecret;
use serde::Serialize;
use tower::ServiceExt;

use crate::config::{Config, DEFAULT_CSP, Problem};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub level: Level,
    pub message: String,
    pub hint: String,
}

fn finding(id: &'static str, level: Level, message: impl Into<String>, hint: impl Into<String>) -> Finding {
    Finding { id, level, message: message.into(), hint: hint.into() }
}

/// What the router did with the probe requests.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub headers_mounted: bool,
    pub csrf_enforced: bool,
}

const MIN_SECRET_LEN: usize = 50;
const MIN_SECRET_UNIQUE: usize = 5;
const PLACEHOLDERS: &[&str] =
    &["change-me", "changeme", "replace-me", "secret", "django-insecure", "dev-only-", "example"];
const REFERRER_POLICIES: &[&str] = &[
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
];
const OPENER_POLICIES: &[&str] = &["same-origin", "same-origin-allow-popups", "unsafe-none", "noopener-allow-popups"];

fn weak_secret(secret: &str) -> Option<&'static str> {
    let unique = secret.chars().collect::<std::collections::BTreeSet<_>>().len();
    let lower = secret.to_ascii_lowercase();
    if secret.is_empty() {
        Some("is not set")
    } else if secret.chars().count() < MIN_SECRET_LEN {
        Some("is shorter than 50 characters")
    } else if unique < MIN_SECRET_UNIQUE {
        Some("has fewer than 5 distinct characters")
    } else if PLACEHOLDERS.iter().any(|placeholder| lower.starts_with(placeholder)) {
        Some("is a known placeholder")
    } else {
        None
    }
}

/// Every finding for `config`, given what the router did with the probes.
pub fn findings(config: &Config, probe: Probe) -> Vec<Finding> {
    use Level::{Error, Warning};
    let security = &config.security;
    let mut out = Vec::new();
    if !probe.headers_mounted {
        out.push(finding(
            "security.W001",
            Warning,
            "the security-header layer is not on every response",
            "mount http::headers::Apply outside every other layer",
        ));
    }
    if security.x_frame_options.is_empty() {
        out.push(finding("security.W002", Warning, "X-Frame-Options is empty", "set X_FRAME_OPTIONS=DENY"));
    } else if security.x_frame_options != "DENY" {
        out.push(finding(
            "security.W019",
            Warning,
            format!("X-Frame-Options is {:?}, not DENY", security.x_frame_options),
            "set X_FRAME_OPTIONS=DENY unless pages of this site frame each other",
        ));
    }
    if !probe.csrf_enforced {
        out.push(finding(
            "security.W003",
            Warning,
            "cookie-authenticated cross-site requests are not refused",
            "mount http::csrf::Protect",
        ));
    }
    if security.hsts_seconds == 0 {
        out.push(finding(
            "security.W004",
            Warning,
            "HSTS is off (SECURE_HSTS_SECONDS=0)",
            "set SECURE_HSTS_SECONDS=63072000 once the whole site is served over HTTPS",
        ));
    } else {
        if !security.hsts_include_subdomains {
            out.push(finding(
                "security.W005",
                Warning,
                "HSTS does not cover subdomains",
                "set SECURE_HSTS_INCLUDE_SUBDOMAINS=true",
            ));
        }
        if !security.hsts_preload {
            out.push(finding("security.W021", Warning, "HSTS preload is not requested", "set SECURE_HSTS_PRELOAD=true to submit the domain to browsers' preload lists (hard to undo), or silence security.W021"));
        }
    }
    if !security.ssl_redirect {
        out.push(finding(
            "security.W008",
            Warning,
            "plain HTTP is served instead of redirected",
            "set SECURE_SSL_REDIRECT=true (and TRUSTED_PROXIES to the proxy that terminates TLS)",
        ));
    }
    if let Some(problem) = weak_secret(security.secret_key.expose_secret()) {
        out.push(finding(
            "security.W009",
            Warning,
            format!("SECRET_KEY {problem}"),
            "generate one: `openssl rand -base64 48` (keep it out of source control)",
        ));
    }
    for (index, key) in security.secret_key_fallbacks.iter().enumerate() {
        if let Some(problem) = weak_secret(key.expose_secret()) {
            out.push(finding(
                "security.W025",
                Warning,
                format!("SECRET_KEY_FALLBACKS entry {} {problem}", index + 1),
                "remove it, or replace it with a strong key",
            ));
        }
    }
    if !security.session_cookie_secure {
        out.push(finding(
            "security.W012",
            Warning,
            "the session cookie is sent over plain HTTP",
            "set SESSION_COOKIE_SECURE=true",
        ));
    }
    if !security.session_cookie_httponly {
        out.push(finding(
            "security.W015",
            Warning,
            "scripts can read the session cookie",
            "set SESSION_COOKIE_HTTPONLY=true",
        ));
    }
    if security.debug {
        out.push(finding("security.W018", Warning, "DEBUG is on", "set DEBUG=false in deployed environments"));
    }
    if security.allowed_hosts.is_empty() || security.allowed_hosts.iter().any(|host| host == "*") {
        out.push(finding(
            "security.W020",
            Warning,
            "ALLOWED_HOSTS is empty or allows any host",
            "list the host names the service answers to, e.g. ALLOWED_HOSTS=app.example.com",
        ));
    }
    if security.referrer_policy.is_empty() {
        out.push(finding("security.W022", Warning, "no Referrer-Policy is sent", "set REFERRER_POLICY=no-referrer"));
    } else if !security.referrer_policy.split(',').all(|token| REFERRER_POLICIES.contains(&token.trim())) {
        out.push(finding(
            "security.E023",
            Error,
            format!("REFERRER_POLICY {:?} is not a valid policy", security.referrer_policy),
            format!("use one of: {}", REFERRER_POLICIES.join(", ")),
        ));
    }
    if !OPENER_POLICIES.contains(&security.cross_origin_opener_policy.as_str()) {
        out.push(finding(
            "security.E024",
            Error,
            format!("CROSS_ORIGIN_OPENER_POLICY {:?} is not a valid policy", security.cross_origin_opener_policy),
            "use same-origin",
        ));
    }
    if security.cors_allowed_origins.iter().any(|origin| origin == "*") {
        out.push(finding(
            "cors.E001",
            Error,
            "CORS_ALLOWED_ORIGINS allows every origin",
            "list the origins of your front-ends",
        ));
    }
    let broad = |network: &&ipnet::IpNet| match network {
        ipnet::IpNet::V4(v4) => v4.prefix_len() < 8,
        ipnet::IpNet::V6(v6) => v6.prefix_len() < 32,
    };
    if security.trusted_proxies.is_empty() {
        out.push(finding(
            "proxy.W001",
            Warning,
            "TRUSTED_PROXIES is empty: behind a proxy every client has the proxy's address, and per-client limits hit everyone at once",
            "set it to the address or network of the proxy in front (e.g. TRUSTED_PROXIES=10.0.0.0/8), or silence proxy.W001 if clients connect directly",
        ));
    } else if let Some(network) = security.trusted_proxies.iter().find(broad) {
        out.push(finding(
            "proxy.W002",
            Warning,
            format!("TRUSTED_PROXIES trusts {network}: anyone in it can claim any client address with X-Forwarded-For"),
            "name only the proxies' own addresses or network (narrower than /8 for IPv4, /32 for IPv6)",
        ));
    }
    if config.environment.is_deployed() {
        if let Some(origin) = security.csrf_trusted_origins.iter().find(|origin| origin.starts_with("http://")) {
            out.push(finding(
                "csrf.W001",
                Warning,
                format!(
                    "CSRF_TRUSTED_ORIGINS trusts {origin} over plain HTTP: anyone on the network path can post as it"
                ),
                "list https:// origins only",
            ));
        }
        if security.csp_report_only {
            out.push(finding(
                "csp.W002",
                Warning,
                "the Content-Security-Policy is only reported, not enforced (CSP_REPORT_ONLY=true)",
                "set CSP_REPORT_ONLY=false once the reports are clean",
            ));
        }
    }
    if config.rate_limits.replicas > 1 && config.rate_limits.redis_url.is_none() {
        out.push(finding(
            "ratelimit.E001",
            Error,
            format!(
                "REPLICAS={} but no REDIS_URL: each replica counts its own limits, multiplying every one of them",
                config.rate_limits.replicas
            ),
            "set REDIS_URL (or REDIS_URL_FILE) so that the replicas share their counters",
        ));
    }
    if let Some(host) = crate::db::unencrypted_remote_host(config.database.url.expose_secret()) {
        out.push(finding(
            "database.W001",
            Warning,
            format!("DATABASE_URL reaches {host} without requiring TLS"),
            "add sslmode=verify-full to DATABASE_URL (with sslrootcert=<the server's CA file> unless the system trusts it), or at least sslmode=require",
        ));
    }
    if security.content_security_policy.trim().is_empty() {
        out.push(finding(
            "csp.W001",
            Warning,
            "CONTENT_SECURITY_POLICY is empty",
            format!("leave it unset for the API default: {DEFAULT_CSP}"),
        ));
    }
    out
}

/// Whether `id` (e.g. `security.W021`) is silenced by SILENCED_CHECKS, which may also say just `W021`.
fn silenced(id: &str, silenced: &[String]) -> bool {
    silenced.iter().any(|entry| entry == id || id.rsplit('.').next() == Some(entry.as_str()))
}

/// Every variable that could not be read, as a finding.
fn unreadable(problems: &[Problem]) -> impl Iterator<Item = Finding> + '_ {
    problems.iter().map(|problem| {
        finding("config.E001", Level::Error, format!("{}: {}", problem.variable, problem.message), &problem.fix)
    })
}

/// Sends two requests through the real router: one to see the security headers, one cross-site
/// cookie POST that the CSRF layer must refuse. The probe config skips the HTTPS redirect and
/// allows the probe's host, so that the layers under test are the ones that answer; neither request
/// reaches the database, so the pool never connects (and `DATABASE_URL` may be missing).
pub async fn probe(config: &Config) -> anyhow::Result<Probe> {
    let mut config = config.clone();
    config.security.ssl_redirect = false;
    config.security.allowed_hosts = vec!["probe.invalid".to_owned()];
    let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy_with(sqlx::postgres::PgConnectOptions::new());
    let router = crate::http::router(AppState::new(config, pool))?;
    let get = Request::get("/check-deploy-probe").header(header::HOST, "probe.invalid").body(Body::empty())?;
    let response = router.clone().oneshot(get).await?;
    let headers_mounted = response.headers().contains_key(header::X_CONTENT_TYPE_OPTIONS)
        && response.headers().contains_key(header::X_FRAME_OPTIONS);
    let post = Request::builder()
        .method(Method::POST)
        .uri(crate::http::headers::CSP_REPORT_PATH)
        .header(header::HOST, "probe.invalid")
        .header(header::COOKIE, "session=probe")
        .header(header::ORIGIN, "https://cross-site.invalid")
        .body(Body::from("{}"))?;
    let csrf_enforced = router.oneshot(post).await?.status() == StatusCode::FORBIDDEN;
    Ok(Probe { headers_mounted, csrf_enforced })
}

/// The result of `check --deploy`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub silenced: Vec<Finding>,
}

impl Report {
    /// The findings for `config`, with `problems` (the variables that could not be read) first.
    pub fn new(config: &Config, problems: &[Problem], probe: Probe) -> Self {
        let (silenced, findings) = unreadable(problems)
            .chain(findings(config, probe))
            .partition(|finding| silenced(finding.id, &config.security.silenced_checks));
        Self { findings, silenced }
    }

    /// Any error, or any warning nobody silenced, fails the check.
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (level, title) in [(Level::Error, "ERRORS"), (Level::Warning, "WARNINGS")] {
            let found: Vec<&Finding> = self.findings.iter().filter(|finding| finding.level == level).collect();
            if found.is_empty() {
                continue;
            }
            out.push_str(&format!("{title}:\n"));
            for finding in found {
                out.push_str(&format!("({}) {}\n\tHINT: {}\n", finding.id, finding.message, finding.hint));
            }
        }
        out.push_str(&format!(
            "System check identified {} issue(s) ({} silenced).\n",
            self.findings.len(),
            self.silenced.len()
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const GOOD_KEY: &str = "Zq8x1Lr4Vt7Yb2Nc5Md9Kf3Hg6Jw0Pa8Se1Ru4Ti7Oy2Uz5Xv9Qm3";

    fn config(overrides: &[(&str, &str)]) -> Config {
        let mut vars: HashMap<String, String> = [
            ("APP_ENV", "production"),
            ("DATABASE_URL", "postgres://app@db/app?sslmode=verify-full"),
            ("SECRET_KEY", GOOD_KEY),
            ("ALLOWED_HOSTS", "app.example.com"),
            ("SECURE_HSTS_PRELOAD", "true"),
            ("TRUSTED_PROXIES", "10.0.0.0/8"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in overrides {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        Config::from_lookup(&move |name| vars.get(name).cloned()).expect("parses")
    }

    const PROBE_OK: Probe = Probe { headers_mounted: true, csrf_enforced: true };

    fn ids(config: &Config, probe: Probe) -> Vec<&'static str> {
        findings(config, probe).into_iter().map(|finding| finding.id).collect()
    }

    #[test]
    fn a_hardened_production_config_passes() {
        let report = Report::new(&config(&[]), &[], PROBE_OK);
        assert!(report.passed(), "{}", report.to_text());
    }

    #[test]
    fn each_check_fires_on_its_own_problem() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("security.W019", &[("X_FRAME_OPTIONS", "SAMEORIGIN")]),
            ("security.W004", &[("SECURE_HSTS_SECONDS", "0")]),
            ("security.W005", &[("SECURE_HSTS_INCLUDE_SUBDOMAINS", "false")]),
            ("security.W021", &[("SECURE_HSTS_PRELOAD", "false")]),
            ("security.W008", &[("SECURE_SSL_REDIRECT", "false")]),
            ("security.W009", &[("SECRET_KEY", "too-short")]),
            ("security.W009", &[("SECRET_KEY", &"ab".repeat(40))]),
            ("security.W009", &[("SECRET_KEY", "change-me-0123456789012345678901234567890123456789012")]),
            ("security.W025", &[("SECRET_KEY_FALLBACKS", "old")]),
            ("security.W012", &[("SESSION_COOKIE_SECURE", "false")]),
            ("security.W015", &[("SESSION_COOKIE_HTTPONLY", "false")]),
            ("security.W018", &[("DEBUG", "true")]),
            ("security.W020", &[("ALLOWED_HOSTS", "*")]),
            ("security.E023", &[("REFERRER_POLICY", "everywhere")]),
            ("security.E024", &[("CROSS_ORIGIN_OPENER_POLICY", "open")]),
            ("cors.E001", &[("CORS_ALLOWED_ORIGINS", "*")]),
            ("proxy.W001", &[("TRUSTED_PROXIES", "")]),
            ("proxy.W002", &[("TRUSTED_PROXIES", "10.0.0.0/8,0.0.0.0/0")]),
            ("proxy.W002", &[("TRUSTED_PROXIES", "::/0")]),
            ("csrf.W001", &[("CSRF_TRUSTED_ORIGINS", "https://a.example.com,http://b.example.com")]),
            ("csp.W002", &[("CSP_REPORT_ONLY", "true")]),
            ("ratelimit.E001", &[("REPLICAS", "2")]),
        ];
        for (id, overrides) in cases {
            let found = ids(&config(overrides), PROBE_OK);
            assert_eq!(found, [*id], "{overrides:?}");
        }
    }

    #[test]
    fn empty_values_fire_their_checks() {
        // The environment cannot produce these (blank means "default"), but code changes can.
        let mut config = config(&[]);
        config.security.allowed_hosts.clear();
        assert_eq!(ids(&config, PROBE_OK), ["security.W020"]);
        let mut config = self::config(&[]);
        config.security.x_frame_options.clear();
        assert_eq!(ids(&config, PROBE_OK), ["security.W002"]);
        let mut config = self::config(&[]);
        config.security.referrer_policy.clear();
        assert_eq!(ids(&config, PROBE_OK), ["security.W022"]);
    }

    #[test]
    fn the_probes_decide_w001_and_w003() {
        let config = config(&[]);
        assert_eq!(ids(&config, Probe { headers_mounted: false, csrf_enforced: true }), ["security.W001"]);
        assert_eq!(ids(&config, Probe { headers_mounted: true, csrf_enforced: false }), ["security.W003"]);
    }

    #[test]
    fn silenced_warnings_pass_and_are_counted() {
        let report =
            Report::new(&config(&[("SECURE_HSTS_PRELOAD", "false"), ("SILENCED_CHECKS", "W021")]), &[], PROBE_OK);
        assert!(report.passed());
        assert_eq!(report.silenced.len(), 1);
        let report = Report::new(
            &config(&[("SECURE_HSTS_PRELOAD", "false"), ("SILENCED_CHECKS", "security.W021")]),
            &[],
            PROBE_OK,
        );
        assert!(report.passed());
        assert!(report.to_text().contains("0 issue(s) (1 silenced)"));
    }

    #[test]
    fn the_text_report_names_id_and_hint() {
        let report = Report::new(&config(&[("DEBUG", "true"), ("REFERRER_POLICY", "x")]), &[], PROBE_OK);
        assert!(!report.passed());
        let text = report.to_text();
        assert!(
            text.contains("ERRORS:\n(security.E023)")
                && text.contains("WARNINGS:\n(security.W018) DEBUG is on\n\tHINT:"),
            "{text}"
        );
    }

    #[test]
    fn replicas_with_redis_and_staging_rules_pass() {
        assert!(ids(&config(&[("REPLICAS", "3"), ("REDIS_URL", "redis://cache:6379")]), PROBE_OK).is_empty());
        let development =
            config(&[("APP_ENV", "development"), ("CSP_REPORT_ONLY", "true"), ("SECURE_HSTS_SECONDS", "1")]);
        assert!(!ids(&development, PROBE_OK).contains(&"csp.W002"), "report-only is fine while developing");
    }

    #[test]
    fn unreadable_variables_are_findings_beside_the_rest() {
        let (config, problems) = Config::read(&|name| (name == "APP_ENV").then(|| "production".to_owned()));
        let report = Report::new(&config, &problems, PROBE_OK);
        let ids: Vec<&str> = report.findings.iter().map(|finding| finding.id).collect();
        assert_eq!(ids[0], "config.E001");
        assert!(report.findings[0].message.starts_with("DATABASE_URL:"), "{}", report.to_text());
        for id in ["security.W009", "security.W020", "proxy.W001"] {
            assert!(ids.contains(&id), "{id} missing: {ids:?}");
        }
    }

    #[test]
    fn the_secret_itself_never_appears_in_findings() {
        let weak = "placeholder-secret";
        let report = Report::new(&config(&[("SECRET_KEY", weak)]), &[], PROBE_OK);
        assert!(!serde_json::to_string(&report).expect("json").contains(weak));
    }

    #[test]
    fn a_remote_database_without_tls_is_a_warning() {
        let plain = config(&[("DATABASE_URL", "postgres://app:pw@db.example.com/app")]);
        assert_eq!(ids(&plain, PROBE_OK), ["database.W001"]);
        let report = findings(&plain, PROBE_OK);
        assert!(report[0].message.contains("db.example.com") && !report[0].message.contains("pw"));
        assert!(ids(&config(&[("DATABASE_URL", "postgres://app@127.0.0.1/app")]), PROBE_OK).is_empty());
    }
}
