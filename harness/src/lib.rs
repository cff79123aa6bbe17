//! # harness
//!
//! The library behind `poolcheck`: it drives pool-core with real processes against a real
//! loopback OAuth issuer, records every run as a [`history::History`], and judges it with the
//! anomaly checkers in [`check`].

pub mod history;
pub mod issuer;
