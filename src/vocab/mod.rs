//! The ledger's vocabulary as types, with no I/O: what kinds of event it
//! holds ([`EventKind`]), the keys that make an append idempotent
//! ([`EventKey`], one constructor per family, and the [`IdempotencyKey`]
//! of an obligation), and the streams events belong to ([`StreamId`]: one
//! invitation each).
//!
//! Every stage speaks it: the sources build webhook keys and streams, the
//! ledger stores and compares them, the fold reads kinds, the reconciler
//! and the operator build the keys of what they append. Nothing here
//! depends on a stage.

mod key;
mod kind;

pub use key::{EventKey, IdempotencyKey, StreamId};
pub use kind::{EventKind, ObligationKind};
