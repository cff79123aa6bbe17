//! The OAuth issuer oracle: a token endpoint with refresh-token rotation, reuse detection and
//! family revocation, plus a resource API that accepts or rejects credentials. Its ledger is
//! the ground truth for token anomalies (`double_redeem`, `stale_token_use`, `dead_credential`).
//!
//! - [`rules`]: the pure token rules (no I/O; reusable by a simulated issuer).
//! - [`server`]: those rules behind a real HTTP/1.1 server on loopback, in a thread or a
//!   forked process, writing the ledger as JSON lines.
//! - [`client`]: pool-core's `Issuer` trait over HTTP, for the pool under test.

pub mod client;
pub mod rules;
pub mod server;

pub use client::HttpIssuer;
pub use rules::{IssuedPair, IssuerConfig, IssuerState, LedgerSink, MemLedger, RefusalReason};
pub use server::{FileLedger, Issuer, IssuerHandle};
