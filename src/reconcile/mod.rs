//! The reconciler: what is owed (a pure function of the projection) against
//! what the ledger says was done, and the exactly-once protocol that does
//! the rest.
//!
//! - [`decide`]: the next action for one obligation — pure, tested
//!   given/when/then.
//! - [`request`]: what is sent for an obligation — pure; a retry repeats
//!   the first request byte for byte.
//! - [`endpoint`]: the HTTP calls behind a trait, and the outcome rules.
//! - `protocol`: requested → call → outcome, and the in-doubt record.
//! - `fetch`: fetching an invitation a webhook named without data.
//! - [`clock`]: time and jitter behind traits; backoff.
//! - [`worker`]: one pass (`try_execute_once`) and the trivial loop.

pub mod clock;
pub mod decide;
pub mod endpoint;
pub mod fetch;
mod protocol;
pub mod request;
pub mod worker;

pub use worker::{Outcome, Reconciler};
