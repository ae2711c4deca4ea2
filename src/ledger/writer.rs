//! The single ledger writer and its group commit.
//!
//! One OS thread owns the writing connection. Callers send appends over a
//! channel and wait for their answer; the thread takes everything waiting,
//! writes it in one transaction, commits (one fsync for all of them) and only
//! then answers each caller. A caller's `Ok` therefore means "on disk".

use std::path::Path;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};

use super::hash::{self, Chained};
use super::{LedgerError, NewEvent};
use crate::metrics::Metrics;

/// Most appends one transaction takes; bounds a commit's latency.
const MAX_BATCH: usize = 4096;

/// Work to do on the writer's own connection after each commit, once the
/// callers have their answers: the service folds new events into the
/// projections here. Doing it on this thread, rather than on a connection of
/// its own, means no second writer competes for SQLite's write lock and the
/// writer's page cache is not invalidated by another connection's writes.
pub type AfterCommit = Box<dyn FnMut(&mut Connection, u64) + Send>;

/// The answer to one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// The key was already in the ledger; `seq` is the original event's.
    pub duplicate: bool,
    /// Another event shares this one's `sibling_prefix` (same Lightspark
    /// event id, other bytes). Both are kept; this is counted and logged.
    pub sibling_exists: bool,
}

enum Job {
    Append(Vec<NewEvent>, oneshot::Sender<Result<Vec<Appended>, LedgerError>>),
    Probe(oneshot::Sender<Result<(), LedgerError>>),
    /// Finish what is queued, then stop: later appends fail with
    /// [`LedgerError::WriterStopped`] (a 503, which Lightspark retries).
    Stop,
}

/// A cheap, cloneable handle to the writer thread. The thread stops once
/// every handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct LedgerWriter {
    jobs: mpsc::Sender<Job>,
    committed: watch::Receiver<u64>,
}

impl LedgerWriter {
    /// Opens the ledger (migrating it) and starts the writer thread.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated.
    pub fn start(path: &Path) -> Result<(Self, std::thread::JoinHandle<()>), LedgerError> {
        Self::start_with(path, true, Arc::default(), None)
    }

    /// As [`start`](Self::start); `group_commit = false` commits each append
    /// alone, which exists to measure the difference.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated.
    pub fn start_with(
        path: &Path,
        group_commit: bool,
        metrics: Arc<Metrics>,
        after_commit: Option<AfterCommit>,
    ) -> Result<(Self, std::thread::JoinHandle<()>), LedgerError> {
        let conn = super::open(path)?;
        let (head_seq, _) = super::head(&conn)?;
        let (jobs, rx) = mpsc::channel(16 * 1024);
        let (committed_tx, committed) = watch::channel(head_seq);
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || run(conn, rx, committed_tx, &metrics, group_commit, after_commit))
            .map_err(|e| LedgerError::Folder { path: "thread".into(), source: Arc::new(e) })?;
        Ok((Self { jobs, committed }, handle))
    }

    /// Appends one event and waits until it is committed.
    ///
    /// # Errors
    /// When the transaction fails (disk full, read-only file, …): nothing of
    /// the batch was stored.
    pub async fn append(&self, event: NewEvent) -> Result<Appended, LedgerError> {
        let mut v = self.append_all(vec![event]).await?;
        Ok(v.pop().expect("one answer per event"))
    }

    /// Appends events atomically, in order, and waits for the commit.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub async fn append_all(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(Job::Append(events, tx)).await.map_err(|_| LedgerError::WriterStopped)?;
        rx.await.map_err(|_| LedgerError::WriterStopped)?
    }

    /// Commits a tiny write to prove the database is writable now.
    ///
    /// # Errors
    /// When it is not.
    pub async fn probe(&self) -> Result<(), LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(Job::Probe(tx)).await.map_err(|_| LedgerError::WriterStopped)?;
        rx.await.map_err(|_| LedgerError::WriterStopped)?
    }

    /// Stops the writer after the appends already queued, even while other
    /// handles still exist (a connection lingering past shutdown).
    pub async fn stop(&self) {
        let _ = self.jobs.send(Job::Stop).await;
    }

    /// The highest committed `seq`; changes wake projection and reconciler.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

}

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    committed: watch::Sender<u64>,
    metrics: &Metrics,
    group_commit: bool,
    mut after_commit: Option<AfterCommit>,
) {
    let limit = if group_commit { MAX_BATCH } else { 1 };
    let mut batch: Vec<Job> = Vec::with_capacity(limit);
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.blocking_recv() else { break };
        batch.push(first);
        while batch.len() < limit {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let mut appends = Vec::new();
        let mut probes = Vec::new();
        for job in batch.drain(..) {
            match job {
                Job::Append(events, reply) => appends.push((events, reply)),
                Job::Probe(reply) => probes.push(reply),
                Job::Stop => stopping = true,
            }
        }
        if !appends.is_empty() {
            let refs: Vec<&[NewEvent]> = appends.iter().map(|(e, _)| e.as_slice()).collect();
            match write_batch(&mut conn, &refs) {
                Ok((answers, last)) => {
                    metrics.commit_batch_size.observe(answers.iter().map(Vec::len).sum::<usize>() as f64);
                    metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
                    for a in answers.iter().flatten().filter(|a| !a.duplicate) {
                        metrics.ledger_appends.inc();
                        if a.sibling_exists {
                            metrics.same_id_other_body.inc();
                        }
                    }
                    committed.send_if_modified(|v| {
                        let changed = *v != last;
                        *v = last;
                        changed
                    });
                    for ((_, reply), answer) in appends.into_iter().zip(answers) {
                        let _ = reply.send(Ok(answer));
                    }
                    // After the answers: the callers are not kept waiting.
                    if let Some(hook) = after_commit.as_mut() {
                        hook(&mut conn, last);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, events = refs.len(), "ledger batch failed; nothing of it was stored");
                    for (_, reply) in appends {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
        for reply in probes {
            let _ = reply.send(probe(&conn));
        }
    }
}

fn probe(conn: &Connection) -> Result<(), LedgerError> {
    conn.execute(
        "INSERT INTO health_probe (id, probed_at) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
        [now_rfc3339()],
    )?;
    Ok(())
}

/// `recorded_at` format: RFC 3339 UTC with microseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn write_batch(conn: &mut Connection, jobs: &[&[NewEvent]]) -> Result<(Vec<Vec<Appended>>, u64), LedgerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read the head inside the transaction: another process (`resolve`) may
    // have appended since our last batch.
    let (mut seq, mut prev) = super::head(&tx)?;
    let recorded_at = now_rfc3339();
    let mut answers = Vec::with_capacity(jobs.len());
    {
        let mut find = tx.prepare_cached("SELECT seq FROM events WHERE event_key = ?1")?;
        let mut sibling = tx.prepare_cached(
            "SELECT 1 FROM events WHERE event_key >= ?1 AND event_key < ?2 AND event_key <> ?3 LIMIT 1",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (seq, event_key, kind, stream, recorded_at, body, signature, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for events in jobs {
            let mut out = Vec::with_capacity(events.len());
            for e in events.iter() {
                let sibling_exists = match &e.sibling_prefix {
                    Some(prefix) => {
                        let upper = format!("{prefix}\u{10FFFF}");
                        sibling.query_row(params![prefix, upper, e.event_key], |_| Ok(())).optional()?.is_some()
                    }
                    None => false,
                };
                if let Some(existing) = find.query_row([&e.event_key], |r| r.get::<_, i64>(0)).optional()? {
                    out.push(Appended { seq: existing as u64, duplicate: true, sibling_exists });
                    continue;
                }
                seq += 1;
                let h = hash::chain(
                    &prev,
                    &Chained {
                        seq,
                        event_key: &e.event_key,
                        kind: &e.kind,
                        stream: e.stream.as_deref(),
                        recorded_at: &recorded_at,
                        body: &e.body,
                        signature: e.signature.as_deref(),
                    },
                );
                insert.execute(params![
                    seq as i64,
                    e.event_key,
                    e.kind,
                    e.stream,
                    recorded_at,
                    e.body,
                    e.signature,
                    &prev[..],
                    &h[..]
                ])?;
                if sibling_exists {
                    tracing::warn!(event_key = %e.event_key, seq, "same Lightspark event id arrived with a different body; kept both");
                }
                prev = h;
                out.push(Appended { seq, duplicate: false, sibling_exists });
            }
            answers.push(out);
        }
    }
    tx.commit()?;
    Ok((answers, seq))
}
