//! The append-only, hash-chained event ledger in SQLite.
//!
//! What every store of the ledger promises is [`contract::LedgerStore`]:
//! idempotent appends (a key the ledger holds is answered with its `seq`,
//! never stored twice), conditional on the stream version a decision saw,
//! atomic per caller, gapless, chained. Here SQLite keeps it: appends go
//! through one [`writer::LedgerWriter`] thread that commits every waiting
//! append in one transaction (group commit), checking keys and stream
//! versions against the ledger's own indexes inside it. Reads use their own
//! connections; WAL mode lets them run beside the writer.

mod checkpoint;
pub mod contract;
pub mod hash;
pub mod lock;
pub mod metrics;
pub mod postgres;
pub mod replica;
pub mod store;
pub mod verify;
pub mod writer;

use std::path::Path;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};

pub use contract::{Conflict, Expected, LedgerStore};
pub use hash::Hash;
pub use metrics::LedgerMetrics;
pub use store::Ledger;
pub use writer::{Appended, LedgerWriter};

use crate::vocab::{EventKey, EventKind, StreamId};

/// Registers `c` in `r`: every layer registers its own metrics this way.
///
/// # Panics
/// When a metric of that name is registered already: names are fixed in
/// code, so that is a bug.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(r: &prometheus::Registry, c: C) -> C {
    r.register(Box::new(c.clone())).expect("metric names are unique");
    c
}

/// Numbered migrations, applied in order and recorded in `user_version`.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../../schema/0001_events.sql")),
    (2, include_str!("../../schema/0002_projections.sql")),
    (3, include_str!("../../schema/0003_projections_own_file.sql")),
    (4, include_str!("../../schema/0004_lookups_in_the_index_file.sql")),
    (5, include_str!("../../schema/0005_keys_unique_in_the_ledger.sql")),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

#[derive(Debug, thiserror::Error, Clone)]
pub enum LedgerError {
    #[error("ledger database error: {0}")]
    Sqlite(#[from] Arc<rusqlite::Error>),
    #[error("could not create the folder of the ledger database {path}: {source}")]
    Folder { path: String, source: Arc<std::io::Error> },
    #[error("the ledger database has schema version {found}, newer than the {supported} this binary knows: run a newer invitation-ledger")]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("the ledger writer has stopped")]
    WriterStopped,
    /// The service runs but could not open its ledger yet (it keeps trying).
    #[error("the ledger is not open yet: {0}")]
    NotOpen(String),
    #[error("only {free} bytes are free in {folder}, the ledger's folder: appends would fail")]
    LowSpace { folder: String, free: u64 },
    #[error("another invitation-ledger process holds the database {0} (a running service?): stop it first")]
    Busy(String),
    /// A conditional append found its stream moved on: the decision it
    /// records was taken on what the stream said before.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    #[error("the disk holding {file} is full: nothing more can be written there until space is freed")]
    DiskFull { file: String },
    /// The PostgreSQL ledger failed; the sentence never holds a password.
    #[error("{0}")]
    Postgres(String),
    /// Events to copy verbatim that do not continue the target's chain.
    #[error(
        "seq {seq} does not follow the target ledger's head (seq {head}) with its hashes: nothing of it was copied"
    )]
    NotFollowing { seq: u64, head: u64 },
    /// A reconciler append under an epoch another leader has succeeded.
    #[error("refused: this reconciler led under epoch {held}, and another leads under epoch {current} now")]
    Fenced { held: u64, current: u64 },
    #[error("the ledger holds the event key {key:?} more than once (seq {seqs}): it was written by a version that trusted a damaged dedupe index; keys are unique in the ledger from schema 5 on, so this ledger cannot be migrated: keep it as evidence and start a new one with `copy` of a verified backup")]
    RepeatedKey { key: String, seqs: String },
}

impl LedgerError {
    /// This error, said of `file` when it is a full disk.
    pub fn on_file(self, file: &str) -> Self {
        match &self {
            LedgerError::Sqlite(e) if is_disk_full(e) => LedgerError::DiskFull { file: file.to_owned() },
            LedgerError::Folder { source, .. } if source.raw_os_error() == Some(28) => {
                LedgerError::DiskFull { file: file.to_owned() }
            }
            _ => self,
        }
    }

    /// Whether waiting can mend it: a full disk, a busy or locked database,
    /// an I/O error. Not: a schema too new, a repeated key, a file that is
    /// not a database.
    pub fn is_transient(&self) -> bool {
        match self {
            LedgerError::DiskFull { .. }
            | LedgerError::WriterStopped
            | LedgerError::LowSpace { .. }
            | LedgerError::Postgres(_)
            | LedgerError::NotOpen(_) => true,
            LedgerError::Sqlite(e) => is_transient_sqlite(e),
            LedgerError::Folder { source, .. } => source.raw_os_error() == Some(28),
            _ => false,
        }
    }
}

/// Whether waiting can mend a SQLite failure: a full disk, a busy or
/// locked database, an I/O error, a file it cannot open yet.
pub fn is_transient_sqlite(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(DiskFull | DatabaseBusy | DatabaseLocked | SystemIoFailure | CannotOpen | OutOfMemory)
    )
}

/// Whether SQLite failed for lack of space.
pub fn is_disk_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        LedgerError::Sqlite(Arc::new(e))
    }
}

/// An event to append. The writer assigns `seq`, `recorded_at` and the hashes.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Idempotency key: appending a key that exists answers the existing `seq`.
    pub event_key: EventKey,
    pub kind: EventKind,
    /// The invitation it is about, when it names one.
    pub stream: Option<StreamId>,
    pub body: Vec<u8>,
    pub signature: Option<String>,
    /// When set, the writer notes whether another event's key starts with
    /// this prefix (the same Lightspark event id with different bytes).
    pub sibling_prefix: Option<String>,
}

/// One stored event, as read back: its columns as the ledger holds them,
/// byte for byte, since the chain covers exactly these (a kind written by
/// a newer build is kept as text; [`LedgerEvent::kind`] names known ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEvent {
    pub seq: u64,
    pub event_key: String,
    pub kind: String,
    pub stream: Option<String>,
    pub recorded_at: String,
    pub body: Vec<u8>,
    pub signature: Option<String>,
    pub prev_hash: Hash,
    pub hash: Hash,
}

/// A stored hash column; see [`Hash::from_stored`].
pub(crate) fn blob32(v: rusqlite::types::ValueRef<'_>) -> Hash {
    match v {
        rusqlite::types::ValueRef::Blob(b) => Hash::from_stored(Some(b)),
        _ => Hash::from_stored(None),
    }
}

/// The part of an event that folding it reads, borrowed from wherever the
/// event is: a [`LedgerEvent`], or a row still inside SQLite during a
/// replay, which then copies nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventView<'a> {
    pub seq: u64,
    /// Names the source of a webhook (every source's keys start with its
    /// name), so the fold reads the body the way its source wrote it.
    pub event_key: &'a str,
    pub kind: &'a str,
    pub stream: Option<&'a str>,
    /// When it was appended: the fold keeps the first one of each
    /// invitation (how long it may still be fetched counts from it).
    pub recorded_at: &'a str,
    pub body: &'a [u8],
}

impl LedgerEvent {
    /// Its kind, when this build knows it.
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::parse(&self.kind)
    }

    /// The borrowed view the fold reads.
    pub fn view(&self) -> EventView<'_> {
        EventView {
            seq: self.seq,
            event_key: &self.event_key,
            kind: &self.kind,
            stream: self.stream.as_deref(),
            recorded_at: &self.recorded_at,
            body: &self.body,
        }
    }

    /// This event's hash recomputed from its contents, given the hash of the
    /// event before it. Equal to `hash` unless the event was altered.
    pub fn chain_hash(&self, prev: &Hash) -> Hash {
        hash::chain(
            prev,
            &hash::Chained {
                seq: self.seq,
                event_key: &self.event_key,
                kind: &self.kind,
                stream: self.stream.as_deref(),
                recorded_at: &self.recorded_at,
                body: &self.body,
                signature: self.signature.as_deref(),
            },
        )
    }

    /// The columns [`from_row`](Self::from_row) reads, in its order.
    pub const COLUMNS: &'static str = "seq, event_key, kind, stream, recorded_at, body, signature, prev_hash, hash";

    /// An event from a row of [`COLUMNS`](Self::COLUMNS).
    ///
    /// # Errors
    /// When a column is missing or of a type no stored value can have.
    pub fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: row.get::<_, i64>(0)? as u64,
            event_key: row.get(1)?,
            kind: row.get(2)?,
            stream: row.get(3)?,
            recorded_at: row.get(4)?,
            // The writer stores BLOBs; a body rewritten as TEXT still has its
            // bytes, and `verify` names the seq where the type changed.
            body: row.get_ref(5)?.as_bytes()?.to_vec(),
            signature: row.get(6)?,
            prev_hash: blob32(row.get_ref(7)?),
            hash: blob32(row.get_ref(8)?),
        })
    }
}

/// Opens (creating when missing) the ledger database with the pragmas every
/// connection needs, and brings its schema up to date.
///
/// # Errors
/// When the folder or file cannot be created, the schema is newer than this
/// binary, or SQLite fails.
pub fn open(path: &Path) -> Result<Connection, LedgerError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| LedgerError::Folder { path: parent.display().to_string(), source: Arc::new(e) })?;
    }
    let mut conn = Connection::open(path)?;
    configure(&conn)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens an existing ledger for reading only; never creates or migrates.
///
/// # Errors
/// When the file is missing, unreadable, or of a newer schema.
pub fn open_read_only(path: &Path) -> Result<Connection, LedgerError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_handler(Some(wait_for_lock))?;
    let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(LedgerError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    Ok(conn)
}

/// How many times [`wait_for_lock`] retries a locked database: about five
/// seconds in all.
const LOCK_RETRIES: i32 = 25_000;

/// Busy handler for every connection: the ledger writer, the projector and
/// the reconciler take turns at the write lock many times a second, and
/// SQLite's own busy timeout sleeps in steps of up to 100 ms, which would show
/// up directly in webhook latency. Retrying every 200 µs keeps turns short.
pub(crate) fn wait_for_lock(attempt: i32) -> bool {
    if attempt >= LOCK_RETRIES {
        return false;
    }
    std::thread::sleep(std::time::Duration::from_micros(200));
    true
}

fn configure(conn: &Connection) -> Result<(), LedgerError> {
    conn.busy_handler(Some(wait_for_lock))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before it returns, so a 200 survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), LedgerError> {
    let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(LedgerError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
        // Another process may have migrated while we waited for the lock.
        let now: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if now >= *version {
            continue;
        }
        if *version == 5 {
            refuse_repeated_keys(&tx)?;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "applied ledger schema migration");
    }
    Ok(())
}

/// Schema 5 makes keys unique in the ledger; a ledger that already holds
/// a key twice (only a version trusting a damaged dedupe index could
/// write one) is refused with the key and its seqs, not half migrated.
fn refuse_repeated_keys(conn: &Connection) -> Result<(), LedgerError> {
    let repeated: Option<(String, String)> = conn
        .query_row(
            "SELECT event_key, group_concat(seq, ', ') FROM events GROUP BY event_key HAVING count(*) > 1 LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match repeated {
        Some((key, seqs)) => Err(LedgerError::RepeatedKey { key, seqs }),
        None => Ok(()),
    }
}

/// Removes the dedupe index file that versions with schema 4 kept beside
/// the ledger (`<ledger>-index`, and its journal): keys are looked up in the
/// ledger itself now, and a stale copy must never be read again.
///
/// # Errors
/// When a file exists and cannot be removed.
pub(crate) fn remove_legacy_index(ledger: &Path) -> Result<(), LedgerError> {
    for suffix in ["-index", "-index-journal"] {
        let file = suffixed(ledger, suffix);
        match std::fs::remove_file(&file) {
            Ok(()) => {
                tracing::info!(file = %file.display(), "removed the dedupe index an earlier version kept beside the ledger")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LedgerError::Folder { path: file.display().to_string(), source: Arc::new(e) }),
        }
    }
    Ok(())
}

/// The last event's `seq` and `hash`, or `(0, GENESIS)` for an empty ledger.
///
/// # Errors
/// When SQLite fails.
pub fn head(conn: &Connection) -> Result<(u64, Hash), LedgerError> {
    let row = conn
        .prepare_cached("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)? as u64, blob32(r.get_ref(1)?))))
        .optional()?;
    Ok(row.unwrap_or((0, hash::GENESIS)))
}

/// Up to `limit` events with `seq > after`, in order.
///
/// # Errors
/// When SQLite fails.
pub fn read_after(conn: &Connection, after: u64, limit: usize) -> Result<Vec<LedgerEvent>, LedgerError> {
    let sql = format!("SELECT {} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2", LedgerEvent::COLUMNS);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![after as i64, limit as i64], LedgerEvent::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The events of `stream` with `seq > after`, in order, through the
/// ledger's index of streams.
///
/// # Errors
/// When SQLite fails.
pub fn read_stream(conn: &Connection, stream: &str, after: u64) -> Result<Vec<LedgerEvent>, LedgerError> {
    let sql = format!("SELECT {} FROM events WHERE stream = ?1 AND seq > ?2 ORDER BY seq", LedgerEvent::COLUMNS);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![stream, after as i64], LedgerEvent::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The last `seq` of `stream` (0 when it has no event): its version, which
/// a conditional append compares with the one its decision saw.
///
/// # Errors
/// When SQLite fails.
pub fn stream_version(conn: &Connection, stream: &str) -> Result<u64, LedgerError> {
    Ok(stream_head(conn, stream)?.map_or(0, |(seq, _)| seq))
}

/// The last event of `stream`: its `seq` and hash.
///
/// # Errors
/// When SQLite fails.
pub fn stream_head(conn: &Connection, stream: &str) -> Result<Option<(u64, Hash)>, LedgerError> {
    Ok(conn
        .prepare_cached("SELECT seq, hash FROM events WHERE stream = ?1 ORDER BY seq DESC LIMIT 1")?
        .query_row([stream], |r| Ok((r.get::<_, i64>(0)? as u64, blob32(r.get_ref(1)?))))
        .optional()?)
}

/// Calls `each` for every event with `seq > after`, in order, without holding
/// them all in memory.
///
/// # Errors
/// When SQLite fails or `each` does.
pub fn for_each_after<E: From<LedgerError>>(
    conn: &Connection,
    after: u64,
    mut each: impl FnMut(LedgerEvent) -> Result<(), E>,
) -> Result<(), E> {
    let sql = format!("SELECT {} FROM events WHERE seq > ?1 ORDER BY seq", LedgerEvent::COLUMNS);
    let mut stmt = conn.prepare(&sql).map_err(LedgerError::from)?;
    let mut rows = stmt.query(params![after as i64]).map_err(LedgerError::from)?;
    while let Some(row) = rows.next().map_err(LedgerError::from)? {
        each(LedgerEvent::from_row(row).map_err(LedgerError::from)?)?;
    }
    Ok(())
}

/// Calls `each` for every event with a stream and `seq <= upto`, grouped by
/// stream and in `seq` order within each: one invitation's events at a
/// time, so a replay holds one invitation's state, not all of them.
///
/// The order is made once, in a temporary table of `seq`s that SQLite
/// fills sorted by (stream, seq) (sorting a few bytes per event, in its
/// temporary files, not the bodies); the rows are then read in that order.
/// Works on a read-only connection: the temporary table is the
/// connection's own.
///
/// # Errors
/// When SQLite fails or `each` does.
pub fn for_each_by_stream<E: From<LedgerError>>(
    conn: &Connection,
    upto: u64,
    mut each: impl FnMut(EventView<'_>) -> Result<(), E>,
) -> Result<(), E> {
    conn.execute_batch("DROP TABLE IF EXISTS temp.by_stream").map_err(LedgerError::from)?;
    conn.execute(
        "CREATE TEMP TABLE by_stream AS
         SELECT seq FROM main.events WHERE stream IS NOT NULL AND seq <= ?1 ORDER BY stream, seq",
        params![upto as i64],
    )
    .map_err(LedgerError::from)?;
    let walked = (|| {
        // Only the columns the fold reads, borrowed from the row: a replay
        // reads every event once and keeps none.
        let mut stmt = conn
            .prepare(
                "SELECT e.seq, e.kind, e.stream, e.body, e.event_key, e.recorded_at
                 FROM temp.by_stream o CROSS JOIN main.events e ON e.seq = o.seq ORDER BY o.rowid",
            )
            .map_err(LedgerError::from)?;
        let mut rows = stmt.query([]).map_err(LedgerError::from)?;
        while let Some(row) = rows.next().map_err(LedgerError::from)? {
            each(view_of(row).map_err(LedgerError::from)?)?;
        }
        Ok(())
    })();
    conn.execute_batch("DROP TABLE IF EXISTS temp.by_stream").map_err(LedgerError::from)?;
    walked
}

/// The `seq, kind, stream, body, event_key, recorded_at` of a row, borrowed
/// from it.
fn view_of<'r>(row: &'r rusqlite::Row<'_>) -> rusqlite::Result<EventView<'r>> {
    let text = |col: usize| -> rusqlite::Result<&'r str> {
        std::str::from_utf8(row.get_ref(col)?.as_bytes()?)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e)))
    };
    Ok(EventView {
        seq: row.get::<_, i64>(0)? as u64,
        event_key: text(4)?,
        kind: text(1)?,
        stream: Some(text(2)?),
        recorded_at: text(5)?,
        body: row.get_ref(3)?.as_bytes()?,
    })
}

/// `file:` URI of `path` (made absolute), read-only, every byte that could
/// be taken for URI syntax percent-encoded.
pub(crate) fn read_only_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut uri = String::from("file:");
    for &b in absolute.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?mode=ro");
    uri
}

/// `path` with `suffix` added to its file name: the files beside the
/// ledger (`-index`, `-projections`, SQLite's `-wal`) are named this way.
pub(crate) fn suffixed(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    std::path::PathBuf::from(s)
}

/// This boot of the machine, as Linux names it; `None` elsewhere. Files
/// written without syncs record it, to tell a machine crash afterwards.
pub(crate) fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Appends events verbatim (their seqs, times and hashes) to a SQLite
/// ledger, in one transaction: each must follow the one before and the
/// first the ledger's head, chained. What a replica and `copy` write.
///
/// # Errors
/// When an event does not follow (nothing of the call is kept), or SQLite
/// fails.
pub fn import(conn: &mut Connection, events: &[LedgerEvent]) -> Result<(), LedgerError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (mut seq, mut prev) = head(&tx)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (seq, event_key, kind, stream, recorded_at, body, signature, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for e in events {
            if e.seq != seq + 1 || e.prev_hash != prev || e.chain_hash(&prev) != e.hash {
                return Err(LedgerError::NotFollowing { seq: e.seq, head: seq });
            }
            insert.execute(params![
                e.seq as i64,
                e.event_key,
                e.kind,
                e.stream,
                e.recorded_at,
                e.body,
                e.signature,
                &e.prev_hash.0[..],
                &e.hash.0[..]
            ])?;
            seq = e.seq;
            prev = e.hash;
        }
    }
    tx.commit()?;
    Ok(())
}

/// How many events the ledger holds.
///
/// # Errors
/// When SQLite fails.
pub fn count(conn: &Connection) -> Result<u64, LedgerError> {
    Ok(head(conn)?.0)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
