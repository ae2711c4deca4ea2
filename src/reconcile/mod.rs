//! The reconciler: what is owed (a pure function of the projection) against
//! what the ledger says was done, and the exactly-once protocol that does
//! the rest.
//!
//! - [`decide`]: the next action for one obligation — pure, tested
//!   given/when/then.
//! - [`request`]: what is sent for an obligation — pure; a retry repeats
//!   the first request byte for byte.
//! - `protocol`: the events of requested → call → outcome, and of the
//!   in-doubt record — pure.
//! - [`endpoint`]: the HTTP calls behind a trait, and the outcome rules.
//! - `fetch`: the fetching collaborator — clients and schedule for
//!   invitations a webhook named without data.
//! - [`clock`]: time and jitter behind traits; backoff.
//! - [`config`]: its settings, as the command line validated them.
//! - [`reconciler`]: the one type owning a pass (`try_execute_once`), and
//!   the trivial loop around it.

pub mod cancel;
pub mod clock;
pub mod config;
pub mod decide;
pub mod endpoint;
pub mod fetch;
pub mod metrics;
mod outcome;
mod protocol;
pub mod reconciler;
pub mod register;
pub mod request;

pub use config::ReconcileConfig;
pub use outcome::{Outcome, ReconcileError};
pub use reconciler::{run, Reconciler, Seams};
