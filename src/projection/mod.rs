//! Projections: each invitation's state, derived from the ledger by a pure
//! fold and kept in disposable SQLite tables.
//!
//! - [`state`]: the fold, `apply(state, &event) -> state`, with no I/O.
//! - [`view`]: obligations and the projection JSON, pure functions of state.
//! - [`events`]: the internal event bodies the fold reads (and the
//!   reconciler writes), and the idempotency key.
//! - [`audit`]: the incentive audit and its anomalies, a pure function of
//!   the projected states; [`audit_page`] reads it a page of invitations
//!   at a time, grouped by inviter.
//! - [`store`]: the tables, checkpoint, rebuild, checksum and queries.
//! - [`tally`]: the aggregates the fold keeps beside the rows (counts by
//!   obligation state, the audit's totals, activity per hour).
//! - [`query`]: every question the API, the status page and the CLI ask.
//! - [`trail`]: one invitation's events as an operator reads them, and the
//!   ledger's activity per hour.
//! - [`projector`]: keeps the tables current as the ledger grows.

pub mod audit;
pub mod audit_page;
pub mod events;
pub mod projector;
pub mod query;
pub mod rebuild;
mod records;
pub mod registration;
pub mod state;
pub mod store;
pub mod tally;
pub mod trail;
mod versioned;
pub mod view;

pub use state::{apply, InvitationState};

#[cfg(test)]
mod fold_tests;
pub use store::ProjectionError;
