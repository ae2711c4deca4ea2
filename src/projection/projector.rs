//! Keeps the projections current: a projector thread, woken by each ledger
//! commit, folds what is new into the projection file. Whoever runs the
//! ledger writer owns both lifetimes (the service's `LiveLedger`).
//!
//! The projections live in a file of their own, so the projector writes
//! beside the ledger writer rather than after it: a fold never delays the
//! next group commit, and folds can take many commits at once.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::store::{self, ProjectionError};
use crate::ledger::writer::AfterCommit;

/// How many events one projection transaction takes.
const BATCH: usize = 5_000;

/// Pages the projector's connection keeps in memory (`cache_size`, negative:
/// KiB). SQLite's default, 2 MiB, is 128 of the projection file's 16 KiB pages: under
/// load the projector read most pages of its six B-trees back through
/// `read()` for every batch. With 64 MiB its CPU per webhook fell from
/// about 44 to 35 µs (wrk, 10 s, interleaved runs); the cost is up to
/// 64 MiB more memory.
const CACHE_KIB: i64 = -65_536;

/// Shortest pause between two folds while commits keep coming: the first
/// commit after a quiet spell is folded at once, a stream of them in small
/// batches. Measured at 8,500 webhooks/s: 1 ms gave the lowest webhook
/// latency; longer gaps make each fold a longer burst of CPU taken from the
/// request path on two cores.
const GAP: Duration = Duration::from_millis(1);

/// The projector thread. It folds every commit the ledger writer reports
/// through the hook [`Projector::start`] hands out, and ends once that hook
/// is dropped (the writer has stopped), after folding the last commits.
pub struct Projector {
    thread: std::thread::JoinHandle<()>,
}

impl Projector {
    /// Catches the projections up with the ledger, then starts the thread.
    /// Returns it, the after-commit hook to give the ledger writer, and how
    /// far the projections have got (updated after every fold).
    ///
    /// # Errors
    /// When a database cannot be opened or the first catch-up fails.
    pub fn start(db: &Path) -> Result<(Self, AfterCommit, watch::Receiver<u64>), ProjectionError> {
        let mut conn = store::open(db)?;
        conn.pragma_update(None, "cache_size", CACHE_KIB)?;
        let first = store::catch_up(&mut conn, BATCH)?;
        let (projected_tx, projected) = watch::channel(first);
        let wake = Arc::new(Wake::default());
        let hook = wake.hook();
        let thread = std::thread::Builder::new()
            .name("projector".into())
            .spawn(move || {
                lower_priority();
                let mut fold = || match store::catch_up(&mut conn, BATCH) {
                    Ok(seq) => {
                        projected_tx.send_replace(seq);
                        Some(seq)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "projection catch-up failed; retried after the next commit, or at the next start");
                        None
                    }
                };
                let mut seen = first;
                while let Some(head) = wake.wait_past(seen) {
                    // After a failure, wait for the next commit rather than spin.
                    seen = fold().map_or(head, |seq| seq.max(head));
                    std::thread::sleep(GAP);
                }
                // The writer's last commits, and anything a failure left behind.
                fold();
            })
            .map_err(ProjectionError::Thread)?;
        Ok((Self { thread }, hook, projected))
    }

    /// Waits for the thread to end (the writer must be stopping).
    ///
    /// # Errors
    /// When the thread panicked.
    pub fn join(self) -> Result<(), ProjectionError> {
        self.thread.join().map_err(|_| ProjectionError::Panicked("projector"))
    }
}

/// The ledger head as the writer last reported it, and whether the writer
/// has gone.
#[derive(Default)]
struct Wake {
    state: Mutex<(u64, bool)>,
    changed: Condvar,
}

impl Wake {
    /// The writer's after-commit hook: records the head and wakes the
    /// projector; marks the writer gone when the hook is dropped.
    fn hook(self: &Arc<Self>) -> AfterCommit {
        struct Notify(Arc<Wake>);
        impl Drop for Notify {
            fn drop(&mut self) {
                self.0.state.lock().expect("wake lock").1 = true;
                self.0.changed.notify_all();
            }
        }
        let notify = Notify(self.clone());
        Box::new(move |head| {
            notify.0.state.lock().expect("wake lock").0 = head;
            notify.0.changed.notify_all();
        })
    }

    /// Waits for a head beyond `seen`; `None` once the writer is gone.
    fn wait_past(&self, seen: u64) -> Option<u64> {
        let guard = self.state.lock().expect("wake lock");
        let guard = self.changed.wait_while(guard, |(head, gone)| *head <= seen && !*gone).expect("wake lock");
        let (head, gone) = *guard;
        if gone {
            None
        } else {
            Some(head)
        }
    }
}

/// Runs the calling thread at a lower CPU priority (nice 10), so on a busy
/// machine the request path and the ledger writer get the cores first and
/// the fold catches up in the gaps. Measured at 8,500 webhooks/s on two
/// cores: webhook p99 5.4-6.6 ms without, 4.8-5.0 ms with.
#[allow(unsafe_code)] // setpriority: no safe wrapper in std
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread's own id; no memory is
    // shared with the kernel.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}
