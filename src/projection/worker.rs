//! Keeps the projection tables current: after each ledger commit, fold what
//! is new, on the ledger writer's thread and connection (see
//! [`crate::ledger::writer::AfterCommit`]).

use std::path::Path;

use tokio::sync::watch;

use super::store::{self, ProjectionError};
use crate::ledger::writer::AfterCommit;
use crate::ledger::LedgerWriter;
use crate::metrics::Metrics;

/// A ledger writer that keeps the projections current: catches them up,
/// then folds every commit in after answering its callers. What the
/// service runs, and what the CLI commands that append use too.
///
/// # Errors
/// When the database cannot be opened or the first catch-up fails.
pub fn start_writer(
    db: &Path,
    group_commit: bool,
    metrics: std::sync::Arc<Metrics>,
) -> Result<(LedgerWriter, watch::Receiver<u64>, std::thread::JoinHandle<()>), ProjectionError> {
    let (project, projected) = start(db)?;
    let (writer, thread) = LedgerWriter::start_with(db, group_commit, metrics, Some(project))?;
    Ok((writer, projected, thread))
}

/// How many events one projection transaction takes.
const BATCH: usize = 2_000;

/// Catches the projections up now (start-up) and returns the hook that
/// keeps them current after each commit, with a watch of how far they got.
///
/// # Errors
/// When the database cannot be opened or the first catch-up fails.
pub fn start(db: &Path) -> Result<(AfterCommit, watch::Receiver<u64>), ProjectionError> {
    let mut conn = crate::ledger::open(db)?;
    let first = store::catch_up(&mut conn, BATCH)?;
    drop(conn);
    let (tx, projected) = watch::channel(first);
    let hook: AfterCommit = Box::new(move |conn, _committed| match store::catch_up(conn, BATCH) {
        Ok(seq) => {
            tx.send_replace(seq);
        }
        Err(e) => tracing::error!(error = %e, "projection catch-up failed; it will be retried after the next commit"),
    });
    Ok((hook, projected))
}
