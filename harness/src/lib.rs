//! # harness
//!
//! The library behind `poolcheck`: it drives pool-core with real processes against a real
//! loopback OAuth issuer ([`issuer`], [`drive`]), records every run as a [`history::History`],
//! judges it with the anomaly checkers in [`check`], and renders [`report`]s.

pub mod bench;
pub mod campaign;
pub mod check;
pub mod cli;
pub mod drive;
pub mod expect;
pub mod explore;
pub mod gate;
pub mod history;
pub mod issuer;
pub mod lifeline;
pub mod plan;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod target;

#[cfg(test)]
mod testing;
