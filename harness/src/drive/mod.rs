//! Drivers: the ways a scenario is run. `fork` runs real processes against real files and a
//! real loopback issuer, each playing its role ([`worker`]) on pool-core or on an external
//! [`subject`]; `loom` and `shuttle` run the same pool code on the simulated kernel
//! ([`crate::sim`]) under a model checker ([`model`] is their shared front). Every driver
//! takes its run plan (initial world, keys, role loops) from [`crate::plan`] and produces a
//! [`crate::history::History`] for the checkers.

pub mod fork;
pub mod hooks;
pub mod log;
pub mod loom;
pub mod model;
pub mod rendezvous;
pub mod setup;
pub mod shuttle;
pub mod subject;
pub mod user_store;
pub mod worker;
