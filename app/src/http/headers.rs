//! Security headers on every response, rejections and errors included (this layer sits outside
//! them all): OWASP's set, HSTS only over HTTPS, the CSP (enforced or report-only), and no server
//! fingerprint.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;

use super::around::Around;
use super::proxy::Client;
use crate::config::SecurityConfig;

/// Where browsers send CSP violation reports.
pub const CSP_REPORT_PATH: &str = "/csp-report";
const PERMISSIONS_POLICY: &str =
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()";

const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");

#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    always: Vec<(HeaderName, HeaderValue)>,
    hsts: Option<HeaderValue>,
}

/// A configured value that cannot be sent as a header.
#[derive(Debug)]
pub struct InvalidHeader(pub &'static str);

impl std::fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} holds characters that cannot appear in an HTTP header (fix: one line of visible ASCII)", self.0)
    }
}

impl std::error::Error for InvalidHeader {}

fn value(variable: &'static str, text: &str) -> Result<HeaderValue, InvalidHeader> {
    HeaderValue::from_str(text).map_err(|_| InvalidHeader(variable))
}

impl SecurityHeaders {
    pub fn from_config(config: &SecurityConfig) -> Result<Self, InvalidHeader> {
        let policy = &config.content_security_policy;
        let policy = if policy.contains("report-uri") || policy.contains("report-to") {
            policy.clone()
        } else {
            format!("{policy}; report-uri {CSP_REPORT_PATH}")
        };
        let csp_name = if config.csp_report_only {
            header::CONTENT_SECURITY_POLICY_REPORT_ONLY
        } else {
            header::CONTENT_SECURITY_POLICY
        };
        let always = vec![
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::X_FRAME_OPTIONS, value("X_FRAME_OPTIONS", &config.x_frame_options)?),
            (header::REFERRER_POLICY, value("REFERRER_POLICY", &config.referrer_policy)?),
            (HeaderName::from_static("permissions-policy"), HeaderValue::from_static(PERMISSIONS_POLICY)),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                value("CROSS_ORIGIN_OPENER_POLICY", &config.cross_origin_opener_policy)?,
            ),
            (HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("same-origin")),
            (csp_name, value("CONTENT_SECURITY_POLICY", &policy)?),
        ];
        let hsts = (config.hsts_seconds > 0).then(|| {
            let mut hsts = format!("max-age={}", config.hsts_seconds);
            if config.hsts_include_subdomains {
                hsts.push_str("; includeSubDomains");
            }
            if config.hsts_preload {
                hsts.push_str("; preload");
            }
            HeaderValue::from_str(&hsts).expect("digits and ASCII")
        });
        Ok(Self { always, hsts })
    }
}

/// The headers on every response that passes this layer.
#[derive(Debug, Clone)]
pub struct Apply(pub Arc<SecurityHeaders>);

impl Around for Apply {
    /// Whether the request came over HTTPS.
    type Carry = bool;

    fn before(&self, request: &mut Request) -> Result<bool, Response> {
        Ok(request.extensions().get::<Client>().is_some_and(|client| client.https))
    }

    fn after(&self, https: bool, mut response: Response) -> Response {
        let headers = &self.0;
        let out = response.headers_mut();
        // Room for all of them at once, rather than the map growing several times per response.
        out.reserve(headers.always.len() + 1);
        for (name, value) in &headers.always {
            out.insert(name.clone(), value.clone());
        }
        // Over plain HTTP the header means nothing, and browsers ignore it.
        if https && let Some(hsts) = &headers.hsts {
            out.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        out.remove(header::SERVER);
        out.remove(X_POWERED_BY);
        response
    }
}
