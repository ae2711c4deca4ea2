//! A PostgreSQL ledger's local replica: its events copied verbatim (same
//! seqs, times and hashes) into a SQLite ledger file beside this instance's
//! projections, so that the projections fold, and the pages read, as they
//! do beside a SQLite ledger. Derived state: the database is the ledger.
//! A replica that no longer matches the database (a restored database) is
//! dropped and copied again.

use std::path::{Path, PathBuf};

use super::postgres::PgLedger;
use super::{LedgerError, LedgerStore};

/// How many events one copy reads from the database at a time.
const BATCH: usize = 5_000;

/// Copies the database's events into the replica file.
#[derive(Clone, Debug)]
pub struct Replica {
    pg: PgLedger,
    path: PathBuf,
    /// The runtime the database's connections run on: the copy runs on a
    /// thread of its own (the projector's) and waits on it.
    runtime: tokio::runtime::Handle,
}

impl Replica {
    /// The replica of `pg` at `path`, read through `runtime`.
    pub fn new(pg: PgLedger, path: &Path, runtime: tokio::runtime::Handle) -> Self {
        Self { pg, path: path.to_owned(), runtime }
    }

    /// The replica file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies every event the database holds beyond the replica's head;
    /// the replica's head after. A replica whose last event the database
    /// holds with another hash (or not at all) is emptied first.
    ///
    /// # Errors
    /// When the database or the file cannot be read or written.
    pub fn mirror(&self, open: &mut Option<rusqlite::Connection>) -> Result<u64, LedgerError> {
        let mut conn = match open.take() {
            Some(c) => c,
            None => super::open(&self.path)?,
        };
        let (mut seq, hash) = super::head(&conn)?;
        if seq > 0 {
            let theirs = self.runtime.block_on(self.pg.read_range(seq - 1, 1))?;
            if theirs.first().is_none_or(|e| e.seq != seq || e.hash != hash) {
                tracing::warn!(replica = %self.path.display(), seq, "the replica of the ledger does not match the database (a restored database?); copying it again");
                drop(conn);
                remove(&self.path)?;
                conn = super::open(&self.path)?;
                seq = 0;
            }
        }
        loop {
            let events = self.runtime.block_on(self.pg.read_range(seq, BATCH))?;
            let Some(last) = events.last().map(|e| e.seq) else {
                *open = Some(conn);
                return Ok(seq);
            };
            super::import(&mut conn, &events)?;
            seq = last;
        }
    }
}

/// Removes a replica file and what SQLite keeps beside it, and the
/// projections folded from it.
fn remove(path: &Path) -> Result<(), LedgerError> {
    for suffix in ["", "-wal", "-shm", "-projections", "-projections-wal", "-projections-shm"] {
        let file = super::suffixed(path, suffix);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(LedgerError::Folder { path: file.display().to_string(), source: std::sync::Arc::new(e) })
            }
        }
    }
    Ok(())
}
