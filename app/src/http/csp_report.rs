//! Where browsers report CSP violations: logged (truncated), rate-limited so that a flood of
//! reports cannot fill the logs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::errors::ApiError;
use crate::state::AppState;

/// What is logged of one report at most.
const MAX_LOGGED: usize = 2048;
const WINDOW: Duration = Duration::from_secs(60);

/// A fixed one-minute window shared by every client: reports are diagnostics, not traffic.
#[derive(Debug)]
pub struct ReportBudget {
    per_window: u32,
    window: Mutex<(Instant, u32)>,
}

impl ReportBudget {
    pub fn new(per_minute: u32) -> Self {
        Self { per_window: per_minute, window: Mutex::new((Instant::now(), 0)) }
    }

    /// Takes one report from the budget; false when it is spent for this minute.
    pub fn take(&self) -> bool {
        let mut window = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if window.0.elapsed() >= WINDOW {
            *window = (Instant::now(), 0);
        }
        if window.1 >= self.per_window {
            return false;
        }
        window.1 += 1;
        true
    }
}

pub async fn receive(State(state): State<AppState>, body: Bytes) -> Response {
    if !state.csp_reports.take() {
        let mut response =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many CSP reports; retry later")
                .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("60"));
        return response;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_LOGGED)]).into_owned();
    tracing::warn!(report = %text, truncated = body.len() > MAX_LOGGED, "content security policy violation reported");
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_runs_out_within_a_window() {
        let budget = ReportBudget::new(2);
        assert!(budget.take());
        assert!(budget.take());
        assert!(!budget.take());
    }
}
