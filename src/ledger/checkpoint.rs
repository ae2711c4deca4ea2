//! The ledger's WAL checkpoints, on a thread of their own beside the
//! writer's.

use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::LedgerError;

/// The checkpointer's busy handler: about 2 ms, then give up until the
/// next commit. A restarting checkpoint holds back every writer while it
/// waits for readers to leave the WAL; under load the projector, catching
/// up, reads thousands of events in one snapshot, and waiting for it (with
/// the other connections' five seconds) held the webhooks of those
/// moments for up to 480 ms: p99 120–200 ms over 60 s of wrk, against
/// 12–27 ms with this (interleaved runs, `bench wrk --duration 60s`).
fn brief_wait(attempt: i32) -> bool {
    if attempt >= 10 {
        return false;
    }
    std::thread::sleep(std::time::Duration::from_micros(200));
    true
}

/// WAL frames beyond which the checkpointer forces the WAL back to its
/// start (about 64 MiB of 4 KiB pages), briefly holding back the writer.
const RESTART_FRAMES: i64 = 16_384;

/// Shortest pause between two checkpoints while commits keep coming.
const CHECKPOINT_GAP: std::time::Duration = std::time::Duration::from_millis(20);

/// Copies committed WAL frames back into the database file on a thread of
/// its own. SQLite's automatic checkpoint would run inside whichever commit
/// crossed the threshold: writing hundreds of pages and syncing the file
/// there held every webhook of that batch for several milliseconds.
///
/// A passive checkpoint never blocks the writer; because the writer keeps
/// appending, the WAL may then not restart from its beginning, so past
/// [`RESTART_FRAMES`] a restarting checkpoint bounds its size.
pub(super) struct Checkpointer {
    /// (a commit since the last checkpoint, stop requested)
    state: Mutex<(bool, bool)>,
    wake: std::sync::Condvar,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Checkpointer {
    pub(super) fn start(conn: Connection) -> Result<Arc<Self>, LedgerError> {
        conn.busy_handler(Some(brief_wait))?;
        let me = Arc::new(Self {
            state: Mutex::new((false, false)),
            wake: std::sync::Condvar::new(),
            thread: Mutex::new(None),
        });
        let worker = me.clone();
        let thread = std::thread::Builder::new()
            .name("ledger-checkpoint".into())
            .spawn(move || worker.run(&conn))
            .map_err(thread_error)?;
        *me.thread.lock().expect("checkpointer lock") = Some(thread);
        Ok(me)
    }

    pub(super) fn committed(&self) {
        self.state.lock().expect("checkpointer lock").0 = true;
        self.wake.notify_one();
    }

    pub(super) fn stop(&self) {
        self.state.lock().expect("checkpointer lock").1 = true;
        self.wake.notify_one();
        if let Some(t) = self.thread.lock().expect("checkpointer lock").take() {
            let _ = t.join();
        }
    }

    fn run(&self, conn: &Connection) {
        let mut frames = 0i64;
        loop {
            {
                let guard = self.state.lock().expect("checkpointer lock");
                let mut guard =
                    self.wake.wait_while(guard, |(dirty, stop)| !*dirty && !*stop).expect("checkpointer lock");
                if guard.1 {
                    return;
                }
                guard.0 = false;
            }
            let mode = if frames > RESTART_FRAMES { "RESTART" } else { "PASSIVE" };
            match conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get::<_, i64>(1)) {
                Ok(log) => frames = log,
                Err(e) => tracing::warn!(error = %e, "ledger checkpoint failed; retrying after the next commit"),
            }
            std::thread::sleep(CHECKPOINT_GAP);
        }
    }
}

pub(super) fn thread_error(e: std::io::Error) -> LedgerError {
    LedgerError::Folder { path: "thread".into(), source: Arc::new(e) }
}
