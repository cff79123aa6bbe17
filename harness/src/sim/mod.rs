//! The simulated world the model checkers run the pool in: one kernel model, one issuer model,
//! parameterised by the scheduler's primitives so that loom and shuttle run the same code.
//!
//! - [`facade`]: where Mutex / Condvar / yield / threads come from (loom or shuttle);
//! - [`shuttle_sync`]: the shuttle side's mutex and condition variable (one scheduling point
//!   per critical section);
//! - [`kernel`]: the kernel's state and system calls (inodes, open file descriptions,
//!   `O_TRUNC`, chunked writes, rename, fsync and crash states, `flock`, POSIX record locks);
//! - [`os`]: pool-core's `Os` over the shared kernel, one per simulated process, and the
//!   shared [`os::Recorder`] (history with a logical clock);
//! - [`issuer`]: pool-core's `Issuer` over the real issuer rules, and a logical `Clock`;
//! - [`world`]: one execution of a scenario: initial world, processes, history.

pub mod facade;
pub mod issuer;
pub mod kernel;
pub mod os;
pub mod shuttle_sync;
pub mod world;

pub use facade::{Facade, Loom, Shuttle};
pub use os::{CrashPlan, Pauses};
pub use world::{execute, execute_counting, ModelPlan, World};
