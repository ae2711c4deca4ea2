//! What every store of the ledger promises, whatever keeps it: the storage
//! seam. The service, the reconciler and the operator's commands append and
//! read through it; `tests/ledger_contract.rs` holds one suite, written
//! against this trait, that every store must pass.
//!
//! The promises:
//! - **Idempotent.** An event whose key the ledger holds is not stored
//!   again: the append answers that key's `seq`, marked duplicate. Keys are
//!   unique in the store itself, checked in the append's own transaction,
//!   so nothing in front of it (a cache, an index file) can make a key
//!   appear held when it is not, or be stored twice.
//! - **Conditional.** An append that follows a decision carries the
//!   [`Expected`] stream version the decision saw (its invitation's last
//!   `seq`); the store refuses it with a [`Conflict`] when the stream has
//!   moved on. Of two contradictory decisions taken on the same version,
//!   one is stored and the other refused. A key the ledger holds is a
//!   duplicate whatever the version: the same decision taken again (a
//!   retried step) is answered, not refused.
//! - **Atomic per call, in order.** The events of one call are stored
//!   together or not at all, at consecutive `seq`s, gapless, each chained
//!   to the one before; an `Ok` means they are durable.

use std::future::Future;

use super::{Appended, Hash, LedgerError, LedgerEvent, NewEvent};
use crate::vocab::StreamId;

/// The version of one stream a decision was taken on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub stream: StreamId,
    /// The stream's last `seq` as the decision saw it; 0 for a stream with
    /// no event yet.
    pub last_seq: u64,
    /// The hash of that last event, when the decision knows it: a ledger
    /// restored to an older copy and grown again can hold another event
    /// at the same `seq`, and a decision taken on the first must not pass
    /// on the second.
    pub last_hash: Option<Hash>,
}

impl Expected {
    pub fn new(stream: impl Into<StreamId>, last_seq: u64) -> Self {
        Self { stream: stream.into(), last_seq, last_hash: None }
    }

    /// The same version, naming the hash of the stream's last event too.
    pub fn with_hash(mut self, hash: Option<Hash>) -> Self {
        self.last_hash = hash;
        self
    }
}

/// A conditional append refused: its stream holds events its decision did
/// not see. Nothing of the call was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stream} changed meanwhile: the decision saw it at seq {expected}, the ledger has it at seq {actual}")]
pub struct Conflict {
    pub stream: StreamId,
    pub expected: u64,
    pub actual: u64,
}

/// The storage seam: the ledger's operations, as every store provides them.
pub trait LedgerStore: Send + Sync {
    /// Appends `events` in order, atomically; an event whose key the ledger
    /// holds is answered as a duplicate with that key's `seq`.
    ///
    /// # Errors
    /// [`LedgerError`] when the store cannot write: nothing of the call
    /// was stored.
    fn append_all(&self, events: Vec<NewEvent>) -> impl Future<Output = Result<Vec<Appended>, LedgerError>> + Send;

    /// As [`append_all`](Self::append_all), only while `expected` still
    /// holds (checked after duplicates: a call whose every event is held is
    /// answered, not refused).
    ///
    /// # Errors
    /// [`LedgerError::Conflict`] when the stream moved on; otherwise as
    /// [`append_all`](Self::append_all).
    fn append_if(
        &self,
        expected: Expected,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<Vec<Appended>, LedgerError>> + Send;

    /// The last event's `seq` and hash; `(0, GENESIS)` when empty.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn head(&self) -> impl Future<Output = Result<(u64, Hash), LedgerError>> + Send;

    /// Up to `limit` events with `seq > after`, in order.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn read_range(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LedgerEvent>, LedgerError>> + Send;

    /// The events of `stream` with `seq > after`, in order.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn read_stream(
        &self,
        stream: &StreamId,
        after: u64,
    ) -> impl Future<Output = Result<Vec<LedgerEvent>, LedgerError>> + Send;
}
