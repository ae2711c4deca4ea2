//! Keeps the projection tables current: after each ledger commit, fold what
//! is new. Runs on its own thread with its own connection.

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

use super::store::{self, ProjectionError};

/// How many events one projection transaction takes.
const BATCH: usize = 2_000;
/// A short pause after each catch-up lets bursts of commits share one
/// projection transaction instead of contending for the write lock.
const SETTLE: Duration = Duration::from_millis(5);

/// Handle to the projector thread: `projected` tells how far it got.
pub struct Projector {
    pub projected: watch::Receiver<u64>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Catches up at once (start-up), then follows `committed` until `stop`
/// turns true (after one last catch-up).
///
/// # Errors
/// When the database cannot be opened or the first catch-up fails.
pub fn start(
    db: &Path,
    mut committed: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) -> Result<Projector, ProjectionError> {
    let mut conn = crate::ledger::open(db)?;
    let first = store::catch_up(&mut conn, BATCH)?;
    let (tx, projected) = watch::channel(first);
    let handle = tokio::runtime::Handle::current();
    let thread = std::thread::Builder::new()
        .name("projector".into())
        .spawn(move || loop {
            let stopping = handle.block_on(async {
                tokio::select! {
                    r = committed.changed() => r.is_err(),
                    _ = stop.wait_for(|s| *s) => true,
                }
            });
            if !stopping {
                std::thread::sleep(SETTLE);
            }
            match store::catch_up(&mut conn, BATCH) {
                Ok(seq) => {
                    tx.send_replace(seq);
                }
                Err(e) => {
                    tracing::error!(error = %e, "projection catch-up failed; will retry on the next commit");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            if stopping {
                return;
            }
        })
        .expect("spawn projector thread");
    Ok(Projector { projected, thread })
}
