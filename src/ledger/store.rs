//! The ledger as the service holds it, whichever store keeps it: one
//! handle the webhook path, the reconciler and the operator append through.

use tokio::sync::watch;

use super::contract::{Expected, LedgerStore};
use super::postgres::PgLedger;
use super::writer::{Appended, LedgerWriter};
use super::{Hash, LedgerError, LedgerEvent, NewEvent};
use crate::vocab::StreamId;

/// The ledger, in SQLite (one process writes it) or in PostgreSQL (several
/// instances share it). Cheap to clone.
#[derive(Clone, Debug)]
pub enum Ledger {
    Sqlite(LedgerWriter),
    Postgres(PgLedger),
}

impl std::fmt::Debug for LedgerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LedgerWriter")
    }
}

impl Ledger {
    /// Appends one event and waits until it is durable.
    ///
    /// # Errors
    /// As [`LedgerStore::append_all`].
    pub async fn append(&self, event: NewEvent) -> Result<Appended, LedgerError> {
        let mut v = self.append_all(vec![event]).await?;
        Ok(v.pop().expect("one answer per event"))
    }

    /// Appends one event decided on `expected`, under leadership `epoch`
    /// when one is given (a reconciler's record): refused when the stream
    /// moved on, or another leader holds a later epoch. The SQLite ledger
    /// has one writing process, so no epoch to check.
    ///
    /// # Errors
    /// [`LedgerError::Conflict`], [`LedgerError::Fenced`], or as
    /// [`LedgerStore::append_all`].
    pub async fn append_as(
        &self,
        epoch: Option<u64>,
        expected: Expected,
        event: NewEvent,
    ) -> Result<Appended, LedgerError> {
        let mut v = match (self, epoch) {
            (Ledger::Postgres(pg), Some(epoch)) => pg.append_fenced(epoch, Some(expected), vec![event]).await?,
            _ => self.append_if(expected, vec![event]).await?,
        };
        Ok(v.pop().expect("one answer per event"))
    }

    /// The highest `seq` this process knows is committed; changes wake the
    /// projector and the reconciler.
    pub fn committed(&self) -> watch::Receiver<u64> {
        match self {
            Ledger::Sqlite(w) => w.committed(),
            Ledger::Postgres(pg) => pg.committed(),
        }
    }

    /// Proves the ledger can be written now (`instance` names this process
    /// in a shared database).
    ///
    /// # Errors
    /// When it cannot.
    pub async fn probe(&self, instance: &str) -> Result<(), LedgerError> {
        match self {
            Ledger::Sqlite(w) => w.probe().await,
            Ledger::Postgres(pg) => pg.probe(instance).await,
        }
    }

    /// The SQLite writer, when the ledger is in SQLite.
    pub fn sqlite(&self) -> Option<&LedgerWriter> {
        match self {
            Ledger::Sqlite(w) => Some(w),
            Ledger::Postgres(_) => None,
        }
    }

    /// The PostgreSQL ledger, when the ledger is there.
    pub fn postgres(&self) -> Option<&PgLedger> {
        match self {
            Ledger::Sqlite(_) => None,
            Ledger::Postgres(pg) => Some(pg),
        }
    }
}

impl LedgerStore for Ledger {
    async fn append_all(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, LedgerError> {
        match self {
            Ledger::Sqlite(w) => LedgerStore::append_all(w, events).await,
            Ledger::Postgres(pg) => pg.append_all(events).await,
        }
    }

    async fn append_if(&self, expected: Expected, events: Vec<NewEvent>) -> Result<Vec<Appended>, LedgerError> {
        match self {
            Ledger::Sqlite(w) => w.append_if_all(expected, events).await,
            Ledger::Postgres(pg) => pg.append_if(expected, events).await,
        }
    }

    async fn head(&self) -> Result<(u64, Hash), LedgerError> {
        match self {
            Ledger::Sqlite(w) => w.head().await,
            Ledger::Postgres(pg) => pg.head().await,
        }
    }

    async fn read_range(&self, after: u64, limit: usize) -> Result<Vec<LedgerEvent>, LedgerError> {
        match self {
            Ledger::Sqlite(w) => w.read_range(after, limit).await,
            Ledger::Postgres(pg) => pg.read_range(after, limit).await,
        }
    }

    async fn read_stream(&self, stream: &StreamId, after: u64) -> Result<Vec<LedgerEvent>, LedgerError> {
        match self {
            Ledger::Sqlite(w) => w.read_stream(stream, after).await,
            Ledger::Postgres(pg) => pg.read_stream(stream, after).await,
        }
    }
}
