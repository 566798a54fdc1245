//! The hardened service that shipshape ships: configuration, checks, HTTP layers, health, telemetry.
#![forbid(unsafe_code)]

pub mod auth;
pub mod checks;
pub mod config;
pub mod contract;
pub mod db;
pub mod error_reports;
pub mod health;
pub mod healthcheck;
pub mod http;
pub mod listen;
pub mod log_writer;
pub mod metrics;
pub mod notes;
pub mod openapi;
pub mod ratelimit;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod traces;
