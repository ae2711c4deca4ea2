//! The single ledger writer and its group commit: the SQLite store of the
//! ledger contract ([`super::contract`]).
//!
//! One OS thread owns the writing connection. Callers send appends over a
//! channel and wait for their answer; the thread takes everything waiting,
//! writes it in one transaction, commits (one fsync for all of them) and only
//! then answers each caller. A caller's `Ok` therefore means "on disk".
//! Inside that transaction each key is looked up in the ledger's own unique
//! index, and each conditional call's stream version in its index of
//! streams: what the answer says is what the ledger holds.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};

use super::checkpoint::{thread_error, Checkpointer};
use super::contract::{Conflict, Expected, LedgerStore};
use super::hash::{self, Chained, Hash};
use super::metrics::LedgerMetrics;
use super::{LedgerError, LedgerEvent, NewEvent};
use crate::vocab::StreamId;

/// Most appends one transaction takes; bounds a commit's latency.
const MAX_BATCH: usize = 4096;

/// Called on the writer's thread after each commit with the new head `seq`,
/// once the callers have their answers. It must return at once: the next
/// batch waits for it. The service uses it to wake the projector.
pub type AfterCommit = Box<dyn FnMut(u64) + Send>;

/// The answer to one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// The event's hash: with `seq`, the version of its stream it made
    /// (what an append conditional on it names).
    pub hash: Hash,
    /// The key was already in the ledger; `seq` is the original event's.
    pub duplicate: bool,
    /// Another event shares this one's `sibling_prefix` (same Lightspark
    /// event id, other bytes). Both are kept; this is counted and logged.
    pub sibling_exists: bool,
}

/// One caller's answer: its events' answers, or why none was stored.
type Reply = oneshot::Sender<Result<Vec<Appended>, LedgerError>>;

enum Job {
    /// Events to append together, and the stream version they were
    /// decided from, when they follow a decision.
    Append(Vec<NewEvent>, Option<Expected>, Reply),
    Probe(oneshot::Sender<Result<(), LedgerError>>),
    /// From now on, call this after each commit.
    Hook(AfterCommit),
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
    /// The ledger's folder, whose free space the readiness probe checks.
    folder: Arc<std::path::PathBuf>,
    /// Read-only connections for the contract's reads (head, ranges,
    /// streams), reused across calls.
    reads: Arc<Readers>,
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
        metrics: Arc<LedgerMetrics>,
        after_commit: Option<AfterCommit>,
    ) -> Result<(Self, std::thread::JoinHandle<()>), LedgerError> {
        let conn = super::open(path)?;
        super::remove_legacy_index(path)?;
        // Checkpoints run on their own thread (below), not inside a commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Checkpointer::start(super::open(path)?)?;
        let (head_seq, _) = super::head(&conn)?;
        let (jobs, rx) = mpsc::channel(16 * 1024);
        let writer_file = path.to_owned();
        let (committed_tx, committed) = watch::channel(head_seq);
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                let file = writer_file.display().to_string();
                run(conn, rx, committed_tx, &metrics, group_commit, after_commit, &checkpointer, &file);
                checkpointer.stop();
            })
            .map_err(thread_error)?;
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
        let reads = Arc::new(Readers { path: path.to_owned(), idle: Mutex::default() });
        Ok((Self { jobs, committed, folder: Arc::new(folder), reads }, handle))
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
        self.submit(events, None).await
    }

    /// Appends events decided from `expected`, atomically, and waits for
    /// the commit.
    ///
    /// # Errors
    /// As [`append_if`](Self::append_if).
    pub async fn append_if_all(&self, expected: Expected, events: Vec<NewEvent>) -> Result<Vec<Appended>, LedgerError> {
        self.submit(events, Some(expected)).await
    }

    /// Appends one event decided from `expected`, and waits for the commit.
    ///
    /// # Errors
    /// [`LedgerError::Conflict`] when the stream moved on since; otherwise
    /// as [`append`](Self::append).
    pub async fn append_if(&self, expected: Expected, event: NewEvent) -> Result<Appended, LedgerError> {
        let mut v = self.submit(vec![event], Some(expected)).await?;
        Ok(v.pop().expect("one answer per event"))
    }

    async fn submit(&self, events: Vec<NewEvent>, expected: Option<Expected>) -> Result<Vec<Appended>, LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(Job::Append(events, expected, tx)).await.map_err(|_| LedgerError::WriterStopped)?;
        rx.await.map_err(|_| LedgerError::WriterStopped)?
    }

    /// Runs `f` on a pooled read-only connection of the ledger, off the
    /// async workers.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let reads = self.reads.clone();
        tokio::task::spawn_blocking(move || reads.with(f)).await.map_err(|_| LedgerError::WriterStopped)?
    }

    /// Commits a tiny write to prove the database is writable now, and
    /// checks that the disk has room for more.
    ///
    /// The space check matters because the tiny write alone can succeed on
    /// a full disk: once checkpointed, the WAL is rewritten from its start,
    /// in space the file already has, while an append that needs the file
    /// to grow fails.
    ///
    /// # Errors
    /// When the commit fails or less than [`MIN_FREE_BYTES`] are free.
    pub async fn probe(&self) -> Result<(), LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(Job::Probe(tx)).await.map_err(|_| LedgerError::WriterStopped)?;
        rx.await.map_err(|_| LedgerError::WriterStopped)??;
        match free_bytes(&self.folder) {
            Some(free) if free < MIN_FREE_BYTES => {
                Err(LedgerError::LowSpace { folder: self.folder.display().to_string(), free })
            }
            _ => Ok(()),
        }
    }

    /// Calls `hook` after each commit from now on (see [`AfterCommit`]),
    /// for a folder started after the writer.
    pub async fn after_commit(&self, hook: AfterCommit) {
        let _ = self.jobs.send(Job::Hook(hook)).await;
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

impl LedgerStore for LedgerWriter {
    async fn append_all(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, LedgerError> {
        self.submit(events, None).await
    }

    async fn append_if(&self, expected: Expected, events: Vec<NewEvent>) -> Result<Vec<Appended>, LedgerError> {
        self.append_if_all(expected, events).await
    }

    async fn head(&self) -> Result<(u64, Hash), LedgerError> {
        self.read(super::head).await
    }

    async fn read_range(&self, after: u64, limit: usize) -> Result<Vec<LedgerEvent>, LedgerError> {
        self.read(move |c| super::read_after(c, after, limit)).await
    }

    async fn read_stream(&self, stream: &StreamId, after: u64) -> Result<Vec<LedgerEvent>, LedgerError> {
        let stream = stream.clone();
        self.read(move |c| super::read_stream(c, stream.as_str(), after)).await
    }
}

/// Read-only connections to the ledger, opened when first needed and kept.
struct Readers {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, LedgerError>) -> Result<T, LedgerError> {
        let conn = self.idle.lock().expect("readers lock").pop();
        let conn = match conn {
            Some(c) => c,
            None => super::open_read_only(&self.path)?,
        };
        let out = f(&conn);
        self.idle.lock().expect("readers lock").push(conn);
        out
    }
}

/// Below this much free space beside the ledger, the service reports itself
/// not ready: appends are about to fail.
pub const MIN_FREE_BYTES: u64 = 1 << 20;

/// Bytes available to this process on the file system holding `dir`.
#[allow(unsafe_code)] // statvfs: no safe wrapper in std
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statvfs` only writes into `st`, a plain C struct for which
    // all-zero bytes are a valid value, and reads the NUL-terminated `path`.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (rc == 0).then(|| (st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// A stretch of time during which batches fail: logged once when it
/// starts and once when it ends, with how much was refused, instead of a
/// line per refused webhook.
struct Outage {
    since: std::time::Instant,
    batches: u64,
    events: u64,
}

#[allow(clippy::too_many_arguments)]
fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    committed: watch::Sender<u64>,
    metrics: &LedgerMetrics,
    group_commit: bool,
    mut after_commit: Option<AfterCommit>,
    checkpointer: &Checkpointer,
    file: &str,
) {
    let limit = if group_commit { MAX_BATCH } else { 1 };
    let mut batch: Vec<Job> = Vec::with_capacity(limit);
    let mut stopping = false;
    // Whether the last batch failed: a probe then tries an append too, so
    // that readiness tells whether appends work, not only commits.
    let mut failing = false;
    let mut outage: Option<Outage> = None;
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
                Job::Append(events, expected, reply) => appends.push((events, expected, reply)),
                Job::Probe(reply) => probes.push(reply),
                Job::Hook(hook) => after_commit = Some(hook),
                Job::Stop => stopping = true,
            }
        }
        if !appends.is_empty() {
            let calls: Vec<Call<'_>> = appends.iter().map(|(e, x, _)| (e.as_slice(), x.as_ref())).collect();
            match write_batch(&mut conn, &calls) {
                Ok((answers, last)) => {
                    failing = false;
                    if let Some(o) = outage.take() {
                        tracing::warn!(
                            refused_batches = o.batches,
                            refused_events = o.events,
                            seconds = o.since.elapsed().as_secs(),
                            "the ledger can be written again"
                        );
                    }
                    let stored = answers.iter().flatten().flatten();
                    metrics.commit_batch_size.observe(stored.clone().count() as f64);
                    metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
                    for a in stored.filter(|a| !a.duplicate) {
                        metrics.appends.inc();
                        if a.sibling_exists {
                            metrics.same_id_other_body.inc();
                        }
                    }
                    committed.send_if_modified(|v| {
                        let changed = *v != last;
                        *v = last;
                        changed
                    });
                    for ((_, _, reply), answer) in appends.into_iter().zip(answers) {
                        let _ = reply.send(answer.map_err(LedgerError::from));
                    }
                    checkpointer.committed();
                    // After the answers: the callers are not kept waiting.
                    if let Some(hook) = after_commit.as_mut() {
                        hook(last);
                    }
                }
                Err(e) => {
                    failing = true;
                    let e = e.on_file(file);
                    let events = calls.iter().map(|(e, _)| e.len() as u64).sum::<u64>();
                    match outage.as_mut() {
                        Some(o) => {
                            o.batches += 1;
                            o.events += events;
                        }
                        None => {
                            tracing::error!(error = %e, "the ledger cannot be written; nothing of the refused batches is stored, and webhooks are answered 503 until it can");
                            outage = Some(Outage { since: std::time::Instant::now(), batches: 1, events });
                        }
                    }
                    for (_, _, reply) in appends {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
        for reply in probes {
            let result = probe(&mut conn, failing);
            if result.is_ok() {
                failing = false;
            }
            let _ = reply.send(result);
        }
    }
}

/// Commits a tiny write; after a failed batch, also tries an append of the
/// next `seq` and rolls it back: a commit alone can succeed where an append
/// fails (a damaged page of the events table or one of its indexes).
fn probe(conn: &mut Connection, after_failure: bool) -> Result<(), LedgerError> {
    conn.execute(
        "INSERT INTO health_probe (id, probed_at) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
        [crate::time::now_rfc3339()],
    )?;
    if after_failure {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (seq, prev) = super::head(&tx)?;
        tx.execute(
            "INSERT INTO events (seq, event_key, kind, stream, recorded_at, body, signature, prev_hash, hash)
             VALUES (?1, ' probe', 'probe', NULL, '', x'', NULL, ?2, ?2)",
            params![seq as i64 + 1, &prev.0[..]],
        )?;
        // Dropped: rolled back.
    }
    Ok(())
}

/// One caller's events, and the stream version they were decided from.
type Call<'a> = (&'a [NewEvent], Option<&'a Expected>);

/// What the ledger holds of a key about to be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    /// The `seq` already holding this very key, and that event's hash.
    seq: Option<(u64, Hash)>,
    /// Another key starts with the event's `sibling_prefix`.
    sibling: bool,
}

/// Looks `event_key` up in the ledger's unique index of keys and, given the
/// `sibling_prefix` it starts with, the other keys sharing it, in one range
/// read (the range holds the key itself too, anywhere among them).
fn known(conn: &Connection, event_key: &str, sibling_prefix: Option<&str>) -> Result<Known, LedgerError> {
    let Some(prefix) = sibling_prefix.filter(|p| event_key.starts_with(p)) else {
        let seq = conn
            .prepare_cached("SELECT seq, hash FROM events WHERE event_key = ?1")?
            .query_row([event_key], |r| Ok((r.get::<_, i64>(0)? as u64, super::blob32(r.get_ref(1)?))))
            .optional()?;
        return Ok(Known { seq, sibling: false });
    };
    let upper = format!("{prefix}\u{10FFFF}");
    let mut stmt =
        conn.prepare_cached("SELECT event_key, seq, hash FROM events WHERE event_key >= ?1 AND event_key < ?2")?;
    let mut rows = stmt.query(params![prefix, upper])?;
    let mut known = Known { seq: None, sibling: false };
    while let Some(row) = rows.next()? {
        if row.get_ref(0)?.as_bytes().map_err(rusqlite::Error::from)? == event_key.as_bytes() {
            known.seq = Some((row.get::<_, i64>(1)? as u64, super::blob32(row.get_ref(2)?)));
        } else {
            known.sibling = true;
        }
    }
    Ok(known)
}

/// Writes every call of a batch in one transaction: each call's answers,
/// or the conflict that refused it, and the head after the commit.
#[allow(clippy::type_complexity)]
fn write_batch(
    conn: &mut Connection,
    calls: &[Call<'_>],
) -> Result<(Vec<Result<Vec<Appended>, Conflict>>, u64), LedgerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read the head inside the transaction: another process (`resolve`) may
    // have appended since our last batch.
    let (mut seq, mut prev) = super::head(&tx)?;
    let recorded_at = crate::time::now_rfc3339();
    let mut answers = Vec::with_capacity(calls.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (seq, event_key, kind, stream, recorded_at, body, signature, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for (events, expected) in calls {
            // A call is checked against its expected version before its
            // first new event: until then it has stored nothing, so a
            // refusal leaves nothing of it behind.
            let mut checked = expected.is_none();
            let mut out = Vec::with_capacity(events.len());
            let mut refused = None;
            for e in events.iter() {
                let known = known(&tx, e.event_key.as_str(), e.sibling_prefix.as_deref())?;
                let sibling_exists = known.sibling;
                if let Some((existing, hash)) = known.seq {
                    out.push(Appended { seq: existing, hash, duplicate: true, sibling_exists });
                    continue;
                }
                if !checked {
                    let x = expected.expect("unchecked only with an expectation");
                    let head = super::stream_head(&tx, x.stream.as_str())?;
                    let actual = head.map_or(0, |(seq, _)| seq);
                    let same_event = match (x.last_hash, head) {
                        (Some(h), Some((_, held))) => h == held,
                        _ => true,
                    };
                    if actual != x.last_seq || !same_event {
                        refused = Some(Conflict { stream: x.stream.clone(), expected: x.last_seq, actual });
                        break;
                    }
                    checked = true;
                }
                seq += 1;
                let stream = e.stream.as_ref().map(StreamId::as_str);
                let h = hash::chain(
                    &prev,
                    &Chained {
                        seq,
                        event_key: e.event_key.as_str(),
                        kind: e.kind.as_str(),
                        stream,
                        recorded_at: &recorded_at,
                        body: &e.body,
                        signature: e.signature.as_deref(),
                    },
                );
                insert.execute(params![
                    seq as i64,
                    e.event_key.as_str(),
                    e.kind.as_str(),
                    stream,
                    recorded_at,
                    e.body,
                    e.signature,
                    &prev.0[..],
                    &h.0[..]
                ])?;
                if sibling_exists {
                    tracing::warn!(event_key = %e.event_key, seq, "same Lightspark event id arrived with a different body; kept both");
                }
                prev = h;
                out.push(Appended { seq, hash: h, duplicate: false, sibling_exists });
            }
            answers.push(match refused {
                Some(conflict) => Err(conflict),
                None => Ok(out),
            });
        }
    }
    let first = seq - answers.iter().flatten().flatten().filter(|a| !a.duplicate).count() as u64;
    match tx.commit() {
        Ok(()) => Ok((answers, seq)),
        // The answer follows the ledger: a commit that reports a failure
        // after its frames reached the log holds every event of the batch,
        // and answering 503 for them would send a stored event again.
        Err(e) if seq > first && super::head(conn).is_ok_and(|head| head == (seq, prev)) => {
            tracing::warn!(error = %e, seq, "a commit reported a failure, but the ledger holds the batch: answered as stored");
            Ok((answers, seq))
        }
        Err(e) => Err(e.into()),
    }
}
