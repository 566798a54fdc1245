//! The hardened service that shipshape ships.
#![forbid(unsafe_code)]

pub mod config;
pub mod db;
pub mod health;
pub mod http;
