//! `cargo xtask smoke URL`: the checks a deployed service must pass from the outside: health, the
//! redirect to HTTPS, HSTS and the security headers, no server version, unknown hosts refused (also
//! inside a TLS connection made for the service's name), TLS sessions resumed, a protected route closed
//! to anonymous clients, CORS closed to unknown origins. Every check runs; the
//! command fails with the list of those that did not pass.

use anyhow::{Result, bail};
use clap::Args;

use crate::http_probe::{self, Reply, Request, Response, Target};

/// A host and an origin no deployment allows.
const UNKNOWN_HOST: &str = "smoke-check.invalid";
const UNKNOWN_ORIGIN: &str = "https://smoke-check.invalid";
/// The least HSTS lifetime accepted: a year (REFERENCES §2 recommends two).
const HSTS_MIN_SECONDS: u64 = 31_536_000;

#[derive(Args, Debug)]
pub(crate) struct SmokeArgs {
    /// The service's base URL, e.g. https://app.example.com (over https, its http:// twin is probed for the redirect).
    pub(crate) url: String,
    /// Send this Host header (and, over https, this TLS server name) instead of the URL's: a service
    /// reached by its address before DNS points at it.
    #[arg(long)]
    pub(crate) host: Option<String>,
    /// The plain-HTTP port probed for the redirect when the URL is https://.
    #[arg(long, default_value_t = 80)]
    pub(crate) http_port: u16,
    /// A route that must refuse anonymous clients with 401.
    #[arg(long, default_value = "/api/v1/notes")]
    pub(crate) protected_path: String,
    /// Accept any TLS certificate (test stacks with self-signed certificates).
    #[arg(long)]
    pub(crate) insecure: bool,
}

struct Probe<'a> {
    target: Target,
    host: String,
    args: &'a SmokeArgs,
}

impl Probe<'_> {
    fn send(
        &self,
        target: &Target,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        self.send_named(target, &Request { method, path, host, server_name: None, headers })
    }

    fn send_named(&self, target: &Target, request: &Request<'_>) -> Result<Reply, String> {
        let (method, path) = (request.method, request.path);
        http_probe::send(target, request, self.args.insecure).map_err(|error| format!("{method} {path}: {error:#}"))
    }

    /// A request to the service that must be answered.
    fn response(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
        match self.send(&self.target, method, path, &self.host, headers)? {
            Reply::Response(response) => Ok(response),
            Reply::Closed => Err(format!("{method} {path}: the connection closed without a response")),
        }
    }
}

type Check = fn(&Probe<'_>) -> Result<(), String>;

const CHECKS: &[(&str, Check)] = &[
    ("/healthz answers 200", healthz),
    ("/readyz answers 200", readyz),
    ("plain HTTP redirects to HTTPS with 308", https_redirect),
    ("HSTS for at least a year, with includeSubDomains", hsts),
    ("the security headers are present", security_headers),
    ("no server version is disclosed", no_server_version),
    ("an unknown Host is refused", unknown_host),
    ("TLS sessions are resumed", tls_resumption),
    ("the protected route answers 401 without credentials", protected_route),
    ("CORS refuses an unknown origin", cors),
];

pub(crate) fn run(args: &SmokeArgs) -> Result<()> {
    let target = Target::parse(&args.url)?;
    let host = args.host.clone().unwrap_or_else(|| target.authority());
    let probe = Probe { target, host, args };
    let mut failures = Vec::new();
    for (name, check) in CHECKS {
        match check(&probe) {
            Ok(()) => println!("✔ {name}"),
            Err(why) => {
                println!("✘ {name}: {why}");
                failures.push(format!("{name}: {why}"));
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "smoke: {} of {} checks failed against {}:\n  {}",
            failures.len(),
            CHECKS.len(),
            args.url,
            failures.join("\n  ")
        );
    }
    println!("smoke: all {} checks passed against {}", CHECKS.len(), args.url);
    Ok(())
}

fn expect_status(response: &Response, expected: u16, what: &str) -> Result<(), String> {
    if response.status == expected {
        Ok(())
    } else {
        Err(format!("{what} answered {}, expected {expected}", response.status))
    }
}

fn healthz(probe: &Probe<'_>) -> Result<(), String> {
    expect_status(&probe.response("GET", "/healthz", &[])?, 200, "GET /healthz")
}

fn readyz(probe: &Probe<'_>) -> Result<(), String> {
    expect_status(&probe.response("GET", "/readyz", &[])?, 200, "GET /readyz")
}

fn https_redirect(probe: &Probe<'_>) -> Result<(), String> {
    let (plain, host) = if probe.target.https {
        // The twin's Host carries no port, as a browser following an https:// link on port 80 sends it.
        (probe.target.http_twin(probe.args.http_port), http_probe::host_name(&probe.host))
    } else {
        (probe.target.clone(), probe.host.as_str())
    };
    let Reply::Response(response) = probe.send(&plain, "GET", "/", host, &[])? else {
        return Err(format!("http://{}/ closed the connection instead of redirecting", plain.authority()));
    };
    expect_status(&response, 308, &format!("GET http://{}/", plain.authority()))?;
    match response.header("location") {
        Some(location) if location.starts_with("https://") => Ok(()),
        other => Err(format!("the redirect goes to {other:?}, not to an https:// URL")),
    }
}

fn hsts(probe: &Probe<'_>) -> Result<(), String> {
    let response = probe.response("GET", "/healthz", &[])?;
    let Some(value) = response.header("strict-transport-security") else {
        let why = if probe.target.https { "" } else { " (it is sent over HTTPS only: smoke the https:// URL)" };
        return Err(format!("no Strict-Transport-Security header{why}"));
    };
    let max_age = value
        .split(';')
        .find_map(|part| part.trim().strip_prefix("max-age="))
        .and_then(|seconds| seconds.trim_matches('"').parse::<u64>().ok())
        .unwrap_or(0);
    if max_age < HSTS_MIN_SECONDS || !value.to_ascii_lowercase().contains("includesubdomains") {
        return Err(format!(
            "Strict-Transport-Security is {value:?}: want max-age ≥ {HSTS_MIN_SECONDS} and includeSubDomains"
        ));
    }
    Ok(())
}

fn security_headers(probe: &Probe<'_>) -> Result<(), String> {
    let response = probe.response("GET", "/healthz", &[])?;
    let expected: [(&str, Option<&str>); 6] = [
        ("x-content-type-options", Some("nosniff")),
        ("x-frame-options", Some("DENY")),
        ("content-security-policy", None),
        ("referrer-policy", None),
        ("permissions-policy", None),
        ("cross-origin-opener-policy", Some("same-origin")),
    ];
    let mut problems: Vec<String> = expected
        .iter()
        .filter_map(|(name, want)| match (response.header(name), want) {
            (None, _) => Some(format!("{name} missing")),
            (Some(value), Some(want)) if !value.eq_ignore_ascii_case(want) => {
                Some(format!("{name} is {value:?}, want {want:?}"))
            }
            _ => None,
        })
        .collect();
    if let Some(powered) = response.header("x-powered-by") {
        problems.push(format!("X-Powered-By is sent ({powered:?})"));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

fn no_server_version(probe: &Probe<'_>) -> Result<(), String> {
    let response = probe.response("GET", "/healthz", &[])?;
    match response.header("server") {
        Some(server) if server.chars().any(|c| c.is_ascii_digit()) => {
            Err(format!("Server: {server} (nginx: `server_tokens off;`)"))
        }
        _ => Ok(()),
    }
}

fn unknown_host(probe: &Probe<'_>) -> Result<(), String> {
    // Not a health route: those are exempt from the host check so orchestrators can probe by IP.
    refused(probe.send(&probe.target, "GET", "/", UNKNOWN_HOST, &[])?, "")?;
    if probe.target.https {
        // The handshake for the service's own name succeeds; the Host inside it must still be refused.
        let name = http_probe::host_name(&probe.host);
        let request = Request { method: "GET", path: "/", host: UNKNOWN_HOST, server_name: Some(name), headers: &[] };
        refused(probe.send_named(&probe.target, &request)?, &format!(" in a TLS connection for {name}"))?;
    }
    Ok(())
}

fn refused(reply: Reply, context: &str) -> Result<(), String> {
    match reply {
        Reply::Closed => Ok(()),
        Reply::Response(response) if matches!(response.status, 400 | 421) => Ok(()),
        Reply::Response(response) => Err(format!(
            "GET / with Host: {UNKNOWN_HOST}{context} answered {}, expected 400 or a closed connection",
            response.status
        )),
    }
}

fn tls_resumption(probe: &Probe<'_>) -> Result<(), String> {
    if !probe.target.https {
        return Err("plain HTTP has no TLS session: smoke the https:// URL".to_owned());
    }
    let name = http_probe::host_name(&probe.host);
    match http_probe::tls_resumes(&probe.target, name) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "a second connection for {name} did not resume the first one's session: every TLS handshake is a full one \
             (nginx: ssl_session_cache in the default server for the port too)"
        )),
        Err(error) => Err(format!("{error:#}")),
    }
}

fn protected_route(probe: &Probe<'_>) -> Result<(), String> {
    let path = probe.args.protected_path.as_str();
    let response = probe.response("GET", path, &[])?;
    match response.status {
        401 => Ok(()),
        404 => Err(format!(
            "GET {path} answered 404: the route does not exist in this release, so its protection cannot be checked (pass --protected-path)"
        )),
        308 if !probe.target.https => {
            Err(format!("GET {path} answered 308: plain HTTP is redirected, so smoke the https:// URL"))
        }
        status => Err(format!("GET {path} without credentials answered {status}, expected 401")),
    }
}

fn cors(probe: &Probe<'_>) -> Result<(), String> {
    let path = probe.args.protected_path.as_str();
    let headers = [("Origin", UNKNOWN_ORIGIN), ("Access-Control-Request-Method", "GET")];
    let response = probe.response("OPTIONS", path, &headers)?;
    match response.header("access-control-allow-origin") {
        Some(allowed) if allowed == "*" || allowed == UNKNOWN_ORIGIN => {
            Err(format!("a preflight from {UNKNOWN_ORIGIN} got Access-Control-Allow-Origin: {allowed}"))
        }
        _ => Ok(()),
    }
}
