//! The ledger as a running process holds it: the store's writer (a
//! thread for SQLite, a task for PostgreSQL) and this process's projector.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::LedgerLocation;
use crate::ledger::postgres::PgLedger;
use crate::ledger::replica::Replica;
use crate::ledger::LedgerWriter;
use crate::ledger::{Ledger, LedgerMetrics, LedgerStore};
use crate::projection::projector::{ProjectionHealth, Projector};

/// The ledger as a running process writes it: the writer thread (group
/// commit) and the projector thread that folds each commit, started
/// together and stopped together. What `serve` runs, and what the commands
/// that append (`resolve`, `reconcile --once`) use, so what they append is
/// folded at once and `status` shows it.
pub struct LiveLedger {
    pub ledger: Ledger,
    /// How far the projections have got.
    pub projected: tokio::sync::watch::Receiver<u64>,
    /// Whether they are caught up, or failing.
    pub health: Arc<ProjectionHealth>,
    /// Changes when a fold makes work due: wakes the reconciler.
    pub due: tokio::sync::watch::Receiver<u64>,
    /// The SQLite writer's thread; with a PostgreSQL ledger, the task that
    /// wakes the projector on commits (this instance's, and others' it
    /// polls for).
    driver: Driver,
    projector: Projector,
}

enum Driver {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

/// How often an instance looks for what other instances appended to a
/// shared PostgreSQL ledger (its own appends wake it at once).
const POLL: Duration = Duration::from_millis(200);

impl LiveLedger {
    /// Opens (creating and migrating) the ledger at `location`, and starts
    /// its writer and the projector of this process's projections, beside
    /// `local` (the SQLite ledger, or the PostgreSQL ledger's replica); the
    /// projector catches up on its own (see [`ProjectionHealth`]).
    ///
    /// # Errors
    /// When the ledger cannot be opened or a thread started.
    pub async fn open(
        location: &LedgerLocation,
        local: &std::path::Path,
        group_commit: bool,
        metrics: Arc<LedgerMetrics>,
    ) -> anyhow::Result<Self> {
        match location {
            LedgerLocation::Sqlite(db) => {
                // The writer first: it creates and migrates the ledger the
                // projector reads. Its hook, how the projector learns of
                // commits, is handed over once the projector runs.
                let path = db.clone();
                let (writer, writer_thread) =
                    tokio::task::spawn_blocking(move || LedgerWriter::start_with(&path, group_commit, metrics, None))
                        .await?
                        .map_err(|e| e.on_file(&db.display().to_string()))
                        .with_context(|| format!("opening the ledger {}", db.display()))?;
                let started = Projector::start(db, None)?;
                writer.after_commit(started.hook).await;
                Ok(Self {
                    ledger: Ledger::Sqlite(writer),
                    projected: started.projected,
                    health: started.health,
                    due: started.due,
                    driver: Driver::Thread(writer_thread),
                    projector: started.projector,
                })
            }
            LedgerLocation::Postgres(url) => {
                let pg = PgLedger::connect(url).await?;
                let replica = Replica::new(pg.clone(), local, tokio::runtime::Handle::current());
                let started = Projector::start(local, Some(replica))?;
                let mut hook = started.hook;
                let watched = pg.clone();
                let wake = tokio::spawn(async move {
                    let mut committed = watched.committed();
                    loop {
                        tokio::select! {
                            changed = committed.changed() => if changed.is_err() { return },
                            () = tokio::time::sleep(POLL) => {
                                let _ = watched.refresh().await;
                                continue;
                            }
                        }
                        let head = *committed.borrow_and_update();
                        hook(head);
                    }
                });
                Ok(Self {
                    ledger: Ledger::Postgres(pg),
                    projected: started.projected,
                    health: started.health,
                    due: started.due,
                    driver: Driver::Task(wake),
                    projector: started.projector,
                })
            }
        }
    }

    /// [`open`](Self::open) for a command: the projections are caught up
    /// before it returns, or the reason they cannot be is the error.
    ///
    /// # Errors
    /// As [`open`](Self::open), and when the projections cannot be folded.
    pub async fn open_caught_up(db: &crate::config::DbArgs) -> anyhow::Result<Self> {
        let location = db.location()?;
        let local = db.local();
        let live = Self::open(&location, &local, true, Default::default()).await?;
        let mut projected = live.projected.clone();
        let head = live.ledger.head().await?.0;
        let caught_up = async {
            loop {
                if live.health.caught_up() && *projected.borrow_and_update() >= head {
                    return Ok(());
                }
                if live.health.failing() {
                    let file = crate::projection::store::path(&local).display().to_string();
                    return Err(anyhow::anyhow!("the projections at {file} cannot be written (see the log)"));
                }
                if projected.changed().await.is_err() {
                    return Err(anyhow::anyhow!("the projector stopped"));
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(600), caught_up).await {
            Ok(Ok(())) => Ok(live),
            Ok(Err(e)) => {
                live.close().await?;
                Err(e)
            }
            Err(_) => {
                live.close().await?;
                Err(anyhow::anyhow!("the projections did not catch up with the ledger within ten minutes"))
            }
        }
    }

    /// Commits what is queued, refuses later appends (even from clones of
    /// the writer still alive elsewhere), folds the last commits and waits
    /// for the writer and the projector.
    ///
    /// # Errors
    /// When a thread panicked.
    pub async fn close(self) -> anyhow::Result<()> {
        let Self { ledger, driver, projector, .. } = self;
        if let Ledger::Sqlite(writer) = &ledger {
            writer.stop().await;
        }
        drop(ledger);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            match driver {
                Driver::Thread(t) => t.join().map_err(|_| anyhow::anyhow!("the ledger writer thread panicked"))?,
                // The task holds the projector's hook: gone with it.
                Driver::Task(t) => t.abort(),
            }
            // The hook is gone: the projector folds the last commits and ends.
            projector.join()?;
            Ok(())
        })
        .await?
    }
}
