//! Shared helpers of the criterion benches live in `benches/ops.rs`; this crate has no library API.
