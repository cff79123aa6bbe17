//! Drivers: the ways a scenario is run. `fork` runs real processes against real files and a
//! real loopback issuer; every driver produces a [`crate::history::History`] for the checkers.

pub mod fork;
pub mod hooks;
pub mod log;
pub mod rendezvous;
pub mod roles;
pub mod setup;
pub mod subject;
pub mod user_store;
