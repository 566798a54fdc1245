//! What every handler and layer can reach: the configuration, the pool, the rate limiter, the
//! password-hashing budget, and whether we are draining.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgPool;

use crate::auth::passwords::Hasher;
use crate::config::Config;
use crate::http::csp_report::ReportBudget;
use crate::ratelimit::Limiter;

/// Cloned by several layers on every request, so one reference count rather than one per field.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Parts>);

#[derive(Debug)]
pub struct Parts {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub csp_reports: ReportBudget,
    pub limiter: Limiter,
    /// The argon2 budget: how many hashes run at once, how many wait.
    pub hasher: Hasher,
    draining: AtomicBool,
}

impl Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, pool: PgPool) -> Self {
        let csp_reports = ReportBudget::new(config.limits.csp_reports_per_minute);
        let limiter = Limiter::from_config(&config.rate_limits);
        let hasher = Hasher::new(config.password_hashing);
        let draining = AtomicBool::new(false);
        Self(Arc::new(Parts { config: Arc::new(config), pool, csp_reports, limiter, hasher, draining }))
    }

    /// From now on `/readyz` answers 503 so that load balancers stop sending traffic here.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
