//! # pool-core
//!
//! A small, faithful model of a file-backed OAuth credential pool (the one in
//! NousResearch/hermes-agent, issue #8040), written so that its locking can be changed and
//! tested: every way the pool guards its store is a point in the [`strategy`] space.
//!
//! The pool ([`pool::Pool`]) touches the world only through the traits in [`world`]: [`Os`],
//! [`Issuer`], [`Clock`]. [`real`] implements them on the real system; the harness brings a
//! loopback OAuth issuer and, for model checking, a simulated kernel.
//!
//! What this crate guarantees: the pool code is the same whatever world it runs in, and it
//! reports every read, write, refresh and operation boundary through [`Os::record`], with
//! secrets only as [`digest::tag`]s. What it does not: safety. Most strategies are unsafe on
//! purpose; that is what the harness measures.

pub mod digest;
pub mod external;
pub mod jwt;
pub mod merge;
pub mod pool;
pub mod real;
pub mod store;
pub mod strategy;
pub mod versions;
pub mod world;

pub use pool::{Config, ExternalSource, NewEntry, Pool, PoolError, Selected, Selection};
pub use store::{AuthType, Entry, Status, Store};
pub use strategy::{Strategy, PRESETS};
pub use world::{Clock, Event, Issuer, LockKind, Os, Pause};
