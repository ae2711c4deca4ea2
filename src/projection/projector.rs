//! Keeps the projections current: a projector thread, woken by each ledger
//! commit, folds what is new into the projection file. Whoever runs the
//! ledger writer owns both lifetimes (the service's `LiveLedger`).
//!
//! The projections live in a file of their own, so the projector writes
//! beside the ledger writer rather than after it: a fold never delays the
//! next group commit, and folds can take many commits at once.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::store::{self, ProjectionError};
use crate::ledger::replica::Replica;
use crate::ledger::writer::AfterCommit;

/// How many events one projection transaction takes.
const BATCH: usize = 5_000;

/// Pages the projector's connection keeps in memory (`cache_size`, negative:
/// KiB). SQLite's default, 2 MiB, was 128 of the projection file's 16 KiB
/// pages (512 of today's 4 KiB ones): under
/// load the projector read most pages of its six B-trees back through
/// `read()` for every batch. With 64 MiB its CPU per webhook fell from
/// about 44 to 35 µs (wrk, 10 s, interleaved runs); the cost is up to
/// 64 MiB more memory.
const CACHE_KIB: i64 = -65_536;

/// Shortest time between the starts of two folds while commits keep
/// coming: the first commit after a quiet spell is folded at once, a
/// stream of them in batches. Each fold writes the pages it changes, and
/// pages shared by the events of a batch are written once: at 1,000
/// claims/s, 5 ms against the earlier 1 ms took the service's CPU per
/// claim from 887 to 722 µs and its bytes written from 579 to 414 KB, for
/// about 3 ms more between a claim's 200 and its payment request (p50
/// 5.7 ms, bench claim-latency, interleaved runs). At 6,000 webhooks/s
/// the webhook p99 did not move beyond the noise.
const GAP: Duration = Duration::from_millis(5);

/// How long the projector waits before folding again after a failure (a
/// full disk, a locked file), when no commit wakes it sooner: derived
/// state catches up by itself once the cause is gone, not only after the
/// next webhook.
const RETRY: Duration = Duration::from_millis(500);

/// How long the projector sleeps without a commit before it looks at the
/// ledger anyway: a safety net (another process's appends, a missed wake).
const IDLE: Duration = Duration::from_secs(1);

/// How the projections are doing, for readiness and for reads: while they
/// fail or have not caught up since start, what they say may be behind
/// what the ledger acknowledged.
#[derive(Debug, Default)]
pub struct ProjectionHealth {
    failing: AtomicBool,
    caught_up: AtomicBool,
}

impl ProjectionHealth {
    /// The last fold failed (and is retried).
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Every event committed before the start has been folded.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }

    /// Why reads may not be trusted now, in a sentence; `None` when they can.
    pub fn lagging(&self) -> Option<&'static str> {
        if !self.caught_up() {
            Some("the projections are being folded from the ledger since the start; ask again shortly")
        } else if self.failing() {
            Some("the projections cannot be written right now (see the log); what they say may be behind the ledger")
        } else {
            None
        }
    }
}

/// The projector thread. It folds every commit the ledger writer reports
/// through the hook [`Projector::start`] hands out, retries on its own
/// after a failure, and ends once that hook is dropped (the writer has
/// stopped), after folding the last commits.
pub struct Projector {
    thread: std::thread::JoinHandle<()>,
}

/// What [`Projector::start`] gives: the thread, the hook for the ledger
/// writer, how far the projections have got (updated after every fold),
/// and how they are doing.
pub struct Started {
    pub projector: Projector,
    pub hook: AfterCommit,
    pub projected: watch::Receiver<u64>,
    pub health: Arc<ProjectionHealth>,
    /// Changes each time a fold makes work due (a claim to pay, an
    /// invitation to fetch): what wakes the reconciler at once.
    pub due: watch::Receiver<u64>,
}

impl Projector {
    /// Starts the thread, which opens the projections (creating or emptying
    /// them as needed) and catches them up with the ledger, retrying until
    /// it can: nothing here waits for the disk.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(db: &Path, replica: Option<Replica>) -> Result<Started, ProjectionError> {
        let (projected_tx, projected) = watch::channel(0);
        let (due_tx, due) = watch::channel(0);
        let health = Arc::new(ProjectionHealth::default());
        let wake = Arc::new(Wake::default());
        let hook = wake.hook();
        let db = db.to_owned();
        let shared = health.clone();
        let thread = std::thread::Builder::new()
            .name("projector".into())
            .spawn(move || {
                lower_priority();
                let mut folder = Folder {
                    db,
                    conn: None,
                    replica: replica.map(|r| (r, None)),
                    failing_since: None,
                    health: shared,
                    projected: projected_tx,
                    due: due_tx,
                };
                let mut seen = 0;
                loop {
                    let started = std::time::Instant::now();
                    let ok = folder.fold();
                    match wake.wait_past(seen, if ok { IDLE } else { RETRY }) {
                        Woken::Head(head) => seen = head,
                        Woken::Timeout => {}
                        Woken::Gone => break,
                    }
                    // At most one fold per GAP: a commit after a quiet
                    // spell is folded at once, a stream of them together.
                    std::thread::sleep(GAP.saturating_sub(started.elapsed()));
                }
                // The writer's last commits.
                folder.fold();
            })
            .map_err(ProjectionError::Thread)?;
        Ok(Started { projector: Self { thread }, hook, projected, health, due })
    }

    /// Waits for the thread to end (the writer must be stopping).
    ///
    /// # Errors
    /// When the thread panicked.
    pub fn join(self) -> Result<(), ProjectionError> {
        self.thread.join().map_err(|_| ProjectionError::Panicked("projector"))
    }
}

/// The projector's side of the folding: its connection (opened when it
/// can be) and what it reports.
struct Folder {
    db: std::path::PathBuf,
    conn: Option<rusqlite::Connection>,
    /// With a PostgreSQL ledger: the replica `db` is, copied from the
    /// database before each fold, and its writing connection.
    replica: Option<(Replica, Option<rusqlite::Connection>)>,
    /// When folds started failing, and how many have failed since: logged
    /// once when it starts and once when it ends.
    failing_since: Option<(std::time::Instant, u64)>,
    health: Arc<ProjectionHealth>,
    projected: watch::Sender<u64>,
    /// Counts the folds that made work due.
    due: watch::Sender<u64>,
}

impl Folder {
    /// Folds what is new; whether it succeeded.
    fn fold(&mut self) -> bool {
        match self.try_fold() {
            Ok(store::CaughtUp { checkpoint: seq, newly_due }) => {
                // The health first: whoever the new seq wakes reads it.
                self.health.caught_up.store(true, Ordering::Relaxed);
                self.health.failing.store(false, Ordering::Relaxed);
                self.projected.send_replace(seq);
                if newly_due {
                    self.due.send_modify(|n| *n += 1);
                }
                if let Some((since, failures)) = self.failing_since.take() {
                    tracing::warn!(
                        failures,
                        seconds = since.elapsed().as_secs(),
                        folded = seq,
                        "the projections are written again and caught up"
                    );
                }
                true
            }
            Err(e) => {
                self.health.failing.store(true, Ordering::Relaxed);
                // Wakes whoever waits for a fold to end, failed or not.
                self.projected.send_modify(|_| {});
                match self.failing_since.as_mut() {
                    Some((_, failures)) => {
                        *failures += 1;
                        tracing::debug!(error = %e, failures = *failures, "the projections still cannot be written");
                    }
                    None => {
                        let file = store::path(&self.db).display().to_string();
                        tracing::error!(error = %e.on_file(&file), "the projections cannot be written; retrying every {} ms until they can", RETRY.as_millis());
                        self.failing_since = Some((std::time::Instant::now(), 1));
                    }
                }
                // A connection that failed may hold a broken state (a
                // failed open of the file): open it afresh next time.
                if self.conn.as_ref().is_some_and(|c| !c.is_autocommit()) {
                    self.conn = None;
                }
                false
            }
        }
    }

    fn try_fold(&mut self) -> Result<store::CaughtUp, ProjectionError> {
        if let Some((replica, open)) = &mut self.replica {
            replica.mirror(open)?;
        }
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                let c = store::open(&self.db)?;
                c.pragma_update(None, "cache_size", CACHE_KIB)?;
                self.conn.insert(c)
            }
        };
        store::catch_up_noting_work(conn, BATCH)
    }
}

/// Why [`Wake::wait_past`] returned.
enum Woken {
    Head(u64),
    Timeout,
    Gone,
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

    /// Waits for a head beyond `seen`, at most `timeout`.
    fn wait_past(&self, seen: u64, timeout: Duration) -> Woken {
        let guard = self.state.lock().expect("wake lock");
        let waiting = |s: &mut (u64, bool)| s.0 <= seen && !s.1;
        let guard = self.changed.wait_timeout_while(guard, timeout, waiting).expect("wake lock").0;
        match *guard {
            (_, true) => Woken::Gone,
            (head, false) if head > seen => Woken::Head(head),
            _ => Woken::Timeout,
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
