//! The projection tables in SQLite, in a file of their own beside the ledger
//! (`<ledger>-projections`, the ledger attached read-only): incremental
//! application with a checkpoint in the same transaction, full rebuild into
//! a fresh file, canonical checksum, and the queries the read API and CLI
//! answer from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use sha2::{Digest, Sha256};

use super::state::{apply, apply_to, InvitationState};
use super::view::{self, work};
use crate::ledger::{self, LedgerError, LedgerEvent};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("projection database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored projection of {id} cannot be read: {source}")]
    Corrupt { id: String, source: serde_json::Error },
    #[error("no projections at {0} yet: start the service (or run `rebuild`) to fold them from the ledger")]
    Missing(String),
    #[error("the projections at {path} have version {found}, this binary reads {expected}: start the service (or run `rebuild`) to fold them again")]
    OtherVersion { path: String, found: u32, expected: u32 },
    #[error("could not replace the projection file {path}: {source}")]
    Swap { path: String, source: std::io::Error },
    #[error("could not start the projector thread: {0}")]
    Thread(std::io::Error),
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
}

/// The projection file's tables; see `schema/projections.sql`.
pub const SCHEMA: &str = include_str!("../../schema/projections.sql");

/// The version of [`SCHEMA`] and of the state encoding, kept in the
/// projection file's `user_version`. A file of another version is emptied
/// and folded again: projections are disposable.
pub const SCHEMA_VERSION: u32 = 2;

/// Page size of a new projection file. A rebuild writes every row once, and
/// with 16 KiB pages it spends about a quarter less time in SQLite's page
/// handling and the file system than with the default 4 KiB (a rebuild of
/// 1,000,000 events, interleaved runs: 4.4 s against 5.7 s); the service's
/// half-rate ingest p99 was the same with either. Only a new, empty file
/// takes it; an existing one keeps the size it was made with.
const PAGE_SIZE: i64 = 16_384;

fn set_page_size(conn: &Connection) -> Result<(), ProjectionError> {
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    Ok(())
}

/// Where the projections of the ledger `ledger` live: a file of their own
/// beside it, so folding never competes with appends for the ledger's
/// write lock, and a rebuild can write a fresh file.
pub fn path(ledger: &Path) -> PathBuf {
    suffixed(ledger, "-projections")
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Opens (creating it, or emptying one of another version) the projection
/// file of `ledger` for folding and reading, with the ledger attached
/// read-only as `ledger`. The ledger is created and migrated first.
///
/// # Errors
/// When either file cannot be opened or SQLite fails.
pub fn open(ledger: &Path) -> Result<Connection, ProjectionError> {
    drop(ledger::open(ledger)?);
    let file = path(ledger);
    remove_orphaned_wal(&file)?;
    let conn = Connection::open(&file)?;
    conn.busy_handler(Some(ledger::wait_for_lock))?;
    set_page_size(&conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.set_prepared_statement_cache_capacity(64);
    let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found != SCHEMA_VERSION {
        if found != 0 {
            tracing::info!(
                found,
                version = SCHEMA_VERSION,
                "projections of another version emptied; folding them again"
            );
        }
        reset(&conn)?;
    }
    guard_unsynced_writes(&conn)?;
    attach_ledger(&conn, ledger)?;
    Ok(conn)
}

/// Sets how this connection syncs its writes to the projection file.
///
/// The file is written without syncs (`synchronous=OFF`): a sync competes
/// with the ledger's own for the disk, and measured at 8,500 webhooks/s it
/// added about 2 ms to the ledger's p99 commit. That is safe while the
/// operating system survives: a killed process loses nothing the kernel
/// already has. Only a crash of the machine can leave the file torn, and
/// then the machine boots again with a new boot id. So the boot id is
/// recorded (with a sync) before any unsynced write, and a file last opened
/// for writing under another boot is emptied and folded again from the
/// ledger. Where the boot id cannot be read, writes are synced as usual
/// (`NORMAL`: a crash may drop the last folds, never tear one).
fn guard_unsynced_writes(conn: &Connection) -> Result<(), ProjectionError> {
    let Some(boot) = boot_id() else {
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        return Ok(());
    };
    conn.pragma_update(None, "synchronous", "FULL")?;
    let recorded: Option<String> =
        conn.query_row("SELECT boot_id FROM projection_boot WHERE id = 1", [], |r| r.get(0)).optional()?;
    if recorded.as_deref().is_some_and(|r| r != boot) {
        tracing::warn!(
            "the machine restarted since the projections were last written without syncs; folding them again"
        );
        reset(conn)?;
    }
    conn.execute(
        "INSERT INTO projection_boot (id, boot_id) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET boot_id = excluded.boot_id",
        [&boot],
    )?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    Ok(())
}

/// This boot of the machine, as Linux names it; `None` elsewhere.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Opens the existing projection file of `ledger` for reading only, with
/// the ledger attached as `ledger`.
///
/// # Errors
/// When there are no projections yet, they are of another version, or
/// SQLite fails.
pub fn open_read_only(ledger: &Path) -> Result<Connection, ProjectionError> {
    drop(ledger::open_read_only(ledger)?);
    let file = path(ledger);
    if !file.exists() {
        return Err(ProjectionError::Missing(file.display().to_string()));
    }
    let conn = Connection::open_with_flags(
        &file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_handler(Some(ledger::wait_for_lock))?;
    let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found != SCHEMA_VERSION {
        return Err(ProjectionError::OtherVersion {
            path: file.display().to_string(),
            found,
            expected: SCHEMA_VERSION,
        });
    }
    attach_ledger(&conn, ledger)?;
    Ok(conn)
}

/// A projection file left without its main file (a rebuild interrupted
/// while swapping files) must not lend its old WAL to a new one.
fn remove_orphaned_wal(file: &Path) -> Result<(), ProjectionError> {
    if file.exists() {
        return Ok(());
    }
    for leftover in [suffixed(file, "-wal"), suffixed(file, "-shm")] {
        remove_if_exists(&leftover)?;
    }
    Ok(())
}

fn remove_if_exists(file: &Path) -> Result<(), ProjectionError> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ProjectionError::Swap { path: file.display().to_string(), source: e })
        }
        _ => Ok(()),
    }
}

/// Empties a projection file of another version (or a new, empty one) and
/// creates the tables of this one.
fn reset(conn: &Connection) -> Result<(), ProjectionError> {
    let tx = conn.unchecked_transaction()?;
    let tables: Vec<String> = tx
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for t in &tables {
        tx.execute_batch(&format!("DROP TABLE \"{}\"", t.replace('"', "\"\"")))?;
    }
    tx.execute_batch(SCHEMA)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Attaches the ledger read-only as `ledger`: the fold reads events, and
/// the read API answers ledger pages, on the same connection. Read-only
/// also keeps `BEGIN IMMEDIATE` from taking the ledger's write lock.
fn attach_ledger(conn: &Connection, ledger: &Path) -> Result<(), ProjectionError> {
    let absolute = std::fs::canonicalize(ledger).unwrap_or_else(|_| ledger.to_owned());
    conn.execute("ATTACH DATABASE ?1 AS ledger", [sqlite_uri(&absolute)])?;
    Ok(())
}

/// `file:` URI of `path`, read-only, every byte that could be taken for URI
/// syntax percent-encoded.
fn sqlite_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?mode=ro");
    uri
}

/// The last ledger seq folded into the projection tables.
///
/// # Errors
/// When SQLite fails.
pub fn checkpoint(conn: &Connection) -> Result<u64, ProjectionError> {
    Ok(conn
        .prepare_cached("SELECT last_seq FROM projection_checkpoint WHERE id = 1")?
        .query_row([], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0) as u64)
}

fn decode(id: &str, json: &str) -> Result<InvitationState, ProjectionError> {
    serde_json::from_str(json).map_err(|source| ProjectionError::Corrupt { id: id.to_owned(), source })
}

/// One invitation's folded state.
///
/// # Errors
/// When SQLite fails or the stored row cannot be read.
pub fn load(conn: &Connection, invitation_id: &str) -> Result<Option<InvitationState>, ProjectionError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT state FROM invitations WHERE invitation_id = ?1")?
        .query_row([invitation_id], |r| r.get(0))
        .optional()?;
    json.map(|j| decode(invitation_id, &j)).transpose()
}

/// By invitation id, else by invitation code.
///
/// # Errors
/// As [`load`].
pub fn find(conn: &Connection, id_or_code: &str) -> Result<Option<InvitationState>, ProjectionError> {
    if let Some(s) = load(conn, id_or_code)? {
        return Ok(Some(s));
    }
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT invitation_id, state FROM invitations WHERE code = ?1 ORDER BY invitation_id LIMIT 1")?
        .query_row([id_or_code], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(id, j)| decode(&id, &j)).transpose()
}

const SAVE: &str = "INSERT INTO invitations (invitation_id, code, status, inviter_uma, invitee_uma, payout_state, work,
                                  last_seq, state, incentive_state, notification_state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (invitation_id) DO UPDATE SET code = excluded.code, status = excluded.status,
             inviter_uma = excluded.inviter_uma, invitee_uma = excluded.invitee_uma,
             payout_state = excluded.payout_state, work = excluded.work,
             incentive_state = excluded.incentive_state, notification_state = excluded.notification_state,
             last_seq = excluded.last_seq, state = excluded.state";

/// Writes one state's row; returns the state JSON it stored.
fn save(conn: &Connection, state: &InvitationState) -> Result<String, ProjectionError> {
    let mut insert = conn.prepare_cached(SAVE)?;
    save_with(&mut insert, state)
}

/// [`save`] through a statement of [`SAVE`] the caller keeps: a rebuild
/// saves hundreds of thousands of rows, and looking the statement up in the
/// cache hashes its text every time.
fn save_with(insert: &mut rusqlite::Statement<'_>, state: &InvitationState) -> Result<String, ProjectionError> {
    use super::events::ObligationKind;
    let json = serde_json::to_string(state).expect("projection state serialises");
    let payout = view::obligation_state(state, ObligationKind::InviteePayment).0.as_str();
    let incentive = view::obligation_state(state, ObligationKind::InviterIncentive).0.as_str();
    let notification = view::obligation_state(state, ObligationKind::InviterNotification).0.as_str();
    fn text(v: &Option<super::state::Versioned<String>>) -> Option<&str> {
        v.as_ref().map(|v| v.value.as_str())
    }
    insert.execute(params![
        state.invitation_id,
        text(&state.code),
        state.status().map(|s| s.as_str()),
        text(&state.inviter_uma),
        text(&state.invitee_uma),
        payout,
        work(state),
        state.last_seq as i64,
        json,
        incentive,
        notification
    ])?;
    Ok(json)
}

/// Folds `events` (which must follow the checkpoint, in order) into the
/// tables and moves the checkpoint, all inside the caller's transaction.
fn fold_into(conn: &Connection, events: &[LedgerEvent]) -> Result<(), ProjectionError> {
    let mut touched: HashMap<&str, InvitationState> = HashMap::new();
    for e in events {
        let Some(id) = e.stream.as_deref() else { continue };
        let state = match touched.remove(id) {
            Some(s) => s,
            None => load(conn, id)?.unwrap_or_else(|| InvitationState::new(id)),
        };
        touched.insert(id, apply(state, e));
    }
    for state in touched.values() {
        save(conn, state)?;
    }
    if let Some(last) = events.last() {
        conn.prepare_cached("UPDATE projection_checkpoint SET last_seq = ?1 WHERE id = 1")?
            .execute([last.seq as i64])?;
    }
    Ok(())
}

/// Applies every event after the checkpoint, `batch` at a time, each batch
/// in one transaction with its checkpoint. Returns the new checkpoint.
///
/// # Errors
/// When SQLite fails; what was committed before stays.
pub fn catch_up(conn: &mut Connection, batch: usize) -> Result<u64, ProjectionError> {
    // Cheap check first: taking the write lock for nothing would only get
    // in the ledger writer's way.
    let current = checkpoint(conn)?;
    if ledger::head(conn)?.0 <= current {
        return Ok(current);
    }
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Read inside the write transaction: no other projector can have
        // applied these events in between.
        let from = checkpoint(&tx)?;
        let events = ledger::read_after(&tx, from, batch)?;
        if events.is_empty() {
            return Ok(from);
        }
        fold_into(&tx, &events)?;
        tx.commit()?;
    }
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildSummary {
    pub events: u64,
    pub invitations: u64,
    pub checksum: [u8; 32],
}

impl std::fmt::Display for RebuildSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rebuilt events={} checksum={}", self.events, hex::encode(self.checksum))
    }
}

/// Folds the whole ledger into a fresh projection file, then puts it in
/// place of the live one. The caller holds the instance lock: no service
/// may be folding into the live file meanwhile.
///
/// # Errors
/// When SQLite or the file system fails; then the live projections are
/// as they were, or (if the swap itself failed) absent and folded again at
/// the next start.
pub fn rebuild(ledger: &Path, progress: impl FnMut(u64, u64)) -> Result<RebuildSummary, ProjectionError> {
    drop(ledger::open(ledger)?);
    let live = path(ledger);
    let fresh = suffixed(&live, "-rebuild");
    remove_if_exists(&fresh)?;
    let mut conn = open_scratch(&fresh, ledger)?;
    let upto = ledger::head(&conn)?.0;
    let summary = replay(&mut conn, ledger, upto, progress)?;
    conn.close().map_err(|(_, e)| e)?;
    swap(&fresh, &live)?;
    Ok(summary)
}

/// Folds the ledger's events up to `upto` into a new scratch projection
/// file at `scratch` (`rebuild --check`); only reads the ledger.
///
/// # Errors
/// When SQLite fails.
pub fn rebuild_scratch(
    ledger: &Path,
    scratch: &Path,
    upto: u64,
    progress: impl FnMut(u64, u64),
) -> Result<RebuildSummary, ProjectionError> {
    let mut conn = open_scratch(scratch, ledger)?;
    replay(&mut conn, ledger, upto, progress)
}

/// A new projection file written without a journal or syncs: until it is
/// complete and synced it is nobody's projections, so a crash only leaves
/// a file to delete.
fn open_scratch(file: &Path, ledger: &Path) -> Result<Connection, ProjectionError> {
    let conn = Connection::open(file)?;
    set_page_size(&conn)?;
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    // Keeps the table's upper pages and the id index in memory while rows
    // stream in; well inside the memory budget.
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    attach_ledger(&conn, ledger)?;
    Ok(conn)
}

/// Puts the complete file `fresh` in place of `live`. The order matters:
/// once the live file is gone its WAL is an orphan (which [`open`] removes),
/// and a WAL must never meet the fresh file. The fresh file is synced while
/// the old one is removed: each takes a tenth of a second or more for a
/// large file, and the old projections are disposable whatever happens next.
fn swap(fresh: &Path, live: &Path) -> Result<(), ProjectionError> {
    let failed = |path: &Path| {
        let path = path.display().to_string();
        move |source| ProjectionError::Swap { path, source }
    };
    std::thread::scope(|scope| {
        let synced = scope.spawn(|| std::fs::File::open(fresh).and_then(|f| f.sync_all()).map_err(failed(fresh)));
        let removed = [live.to_owned(), suffixed(live, "-wal"), suffixed(live, "-shm")]
            .iter()
            .try_for_each(|f| remove_if_exists(f));
        let synced = synced.join().expect("sync thread panicked");
        synced.and(removed)
    })?;
    std::fs::rename(fresh, live).map_err(failed(live))?;
    let dir = live.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(failed(dir))?;
    Ok(())
}

/// Folds the ledger's events up to `upto` into the tables of `conn`, a
/// fresh file from [`open_scratch`] (whose attached ledger is `ledger`).
///
/// Events are read one invitation at a time (through the stream index) by
/// a reader thread that folds each invitation completely and hands over its
/// final state; this thread serialises and inserts. So each row is written
/// once, in invitation-id order, which keeps every insert, and every index
/// update, at the right edge of its B-tree, and the memory used is one
/// invitation's. The fold is per invitation (`apply` ignores other
/// streams), so the result is the same as folding in `seq` order.
fn replay(
    conn: &mut Connection,
    ledger: &Path,
    upto: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildSummary, ProjectionError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let deferred = drop_indexes_built_after_rows(&tx)?;
    let source = ledger::open_read_only(ledger)?;
    // Batches of final states, with how many events were read so far;
    // bounded so the reader cannot run far ahead of the inserts.
    let (states_tx, states_rx) = std::sync::mpsc::sync_channel::<(Vec<InvitationState>, u64)>(16);
    let mut digest = Checksum::default();
    std::thread::scope(|scope| -> Result<(), ProjectionError> {
        let reader = scope.spawn(move || fold_by_stream(&source, upto, &states_tx));
        let mut inserted: Result<(), ProjectionError> = Ok(());
        // Rows arrive in invitation-id order (the stream index's order, the
        // same binary collation), the checksum's order: it is computed as
        // they are written instead of reading 100s of MB back.
        let mut insert = tx.prepare(SAVE)?;
        'batches: for (states, read) in states_rx {
            for state in &states {
                match save_with(&mut insert, state) {
                    Ok(json) => digest.row(&state.invitation_id, &json),
                    Err(e) => {
                        inserted = Err(e);
                        break 'batches;
                    }
                }
            }
            progress(read, upto);
        }
        // Dropping the receiver (above, on error) stops the reader.
        let folded = reader.join().expect("rebuild reader thread panicked");
        inserted.and(folded)
    })?;
    for sql in &deferred {
        tx.execute_batch(sql)?;
    }
    tx.execute("UPDATE projection_checkpoint SET last_seq = ?1 WHERE id = 1", [upto as i64])?;
    progress(upto, upto);
    let summary = RebuildSummary { events: upto, invitations: digest.rows, checksum: digest.finish() };
    tx.commit()?;
    Ok(summary)
}

/// Indexes a replay builds once the rows are in, by one sort, rather than
/// row by row: codes bear no relation to ids, so inserting them as rows
/// arrive in id order lands all over the index (measured on 1,000,000
/// events with random codes: 3.4 s against 3.0 s for the whole rebuild).
/// The other index follows id order and is written along its edge.
const INDEXES_AFTER_ROWS: &[&str] = &["invitations_by_code"];

/// Drops the [`INDEXES_AFTER_ROWS`] of a fresh file and returns the SQL
/// that creates them again, as the schema has it.
fn drop_indexes_built_after_rows(conn: &Connection) -> Result<Vec<String>, ProjectionError> {
    let mut create = Vec::new();
    for name in INDEXES_AFTER_ROWS {
        let sql: String =
            conn.query_row("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1", [name], |r| r.get(0))?;
        // `name` comes from the fixed list above, never from input.
        conn.execute_batch(&format!("DROP INDEX {name}"))?;
        create.push(sql);
    }
    Ok(create)
}

/// The rebuild's reader: folds each invitation's events and sends its
/// final state, with how many events it has read so far.
fn fold_by_stream(
    source: &Connection,
    upto: u64,
    out: &std::sync::mpsc::SyncSender<(Vec<InvitationState>, u64)>,
) -> Result<(), ProjectionError> {
    /// States handed over at a time: one hand-off per state cost more in
    /// thread wake-ups than the insert itself.
    const BATCH: usize = 1024;
    enum Stop {
        /// The receiver has gone: the inserting side failed and says why.
        Receiver,
        Ledger(LedgerError),
    }
    impl From<LedgerError> for Stop {
        fn from(e: LedgerError) -> Self {
            Stop::Ledger(e)
        }
    }
    let mut current: Option<InvitationState> = None;
    let mut done: Vec<InvitationState> = Vec::with_capacity(BATCH);
    let mut read = 0u64;
    let result = ledger::for_each_by_stream(source, upto, |e: ledger::EventView<'_>| -> Result<(), Stop> {
        read += 1;
        let id = e.stream.expect("selected with a stream");
        let next = match &current {
            Some(s) => s.invitation_id != id,
            None => true,
        };
        if next {
            if let Some(finished) = current.replace(InvitationState::new(id)) {
                done.push(finished);
                if done.len() == BATCH {
                    let batch = std::mem::replace(&mut done, Vec::with_capacity(BATCH));
                    out.send((batch, read)).map_err(|_| Stop::Receiver)?;
                }
            }
        }
        apply_to(current.as_mut().expect("set above"), e);
        Ok(())
    });
    match result {
        Ok(()) => {
            done.extend(current);
            let _ = out.send((done, read));
            Ok(())
        }
        Err(Stop::Receiver) => Ok(()),
        Err(Stop::Ledger(e)) => Err(e.into()),
    }
}

/// SHA-256 over every projection row in invitation-id order: `f(id) ‖
/// f(state JSON)` with `f(x) = u32be(len) ‖ x`. Equal projections give equal
/// checksums however they were built.
///
/// # Errors
/// When SQLite fails.
pub fn checksum(conn: &Connection) -> Result<[u8; 32], ProjectionError> {
    let mut h = Checksum::default();
    let mut stmt = conn.prepare("SELECT invitation_id, state FROM invitations ORDER BY invitation_id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let text = |col| {
            r.get_ref(col)?
                .as_bytes()
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e)))
        };
        h.row_bytes(text(0)?, text(1)?);
    }
    Ok(h.finish())
}

/// The running [`checksum`], fed rows in invitation-id order.
#[derive(Default)]
struct Checksum {
    hash: Sha256,
    rows: u64,
}

impl Checksum {
    fn row(&mut self, id: &str, state: &str) {
        self.row_bytes(id.as_bytes(), state.as_bytes());
    }

    fn row_bytes(&mut self, id: &[u8], state: &[u8]) {
        for v in [id, state] {
            self.hash.update((v.len() as u32).to_be_bytes());
            self.hash.update(v);
        }
        self.rows += 1;
    }

    fn finish(self) -> [u8; 32] {
        self.hash.finalize().into()
    }
}

/// Filters of `GET /v1/invitations`; every one is bound as a parameter.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub payout_state: Option<String>,
    pub inviter_uma: Option<String>,
    /// Exclusive cursor: the last invitation id of the previous page.
    pub after: Option<String>,
    pub limit: usize,
}

/// One page of invitations in id order, and the cursor of the next page.
///
/// # Errors
/// When SQLite fails.
pub fn list(conn: &Connection, f: &ListFilter) -> Result<(Vec<InvitationState>, Option<String>), ProjectionError> {
    let mut stmt = conn.prepare_cached(
        "SELECT invitation_id, state FROM invitations
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR payout_state = ?2)
           AND (?3 IS NULL OR inviter_uma = ?3) AND invitation_id > ?4
         ORDER BY invitation_id LIMIT ?5",
    )?;
    let mut out = decode_rows(
        &mut stmt,
        params![f.status, f.payout_state, f.inviter_uma, f.after.as_deref().unwrap_or(""), (f.limit + 1) as i64],
    )?;
    let next = if out.len() > f.limit {
        out.truncate(f.limit);
        out.last().map(|s| s.invitation_id.clone())
    } else {
        None
    };
    Ok((out, next))
}

/// Invitations with work among the bits of `mask` (see
/// [`view::work_bits`]), after the id `after`.
///
/// # Errors
/// When SQLite fails.
pub fn needing_work(
    conn: &Connection,
    mask: i64,
    after: &str,
    limit: usize,
) -> Result<Vec<InvitationState>, ProjectionError> {
    let mut stmt = conn.prepare_cached(
        "SELECT invitation_id, state FROM invitations
         WHERE work <> 0 AND (work & ?1) <> 0 AND invitation_id > ?2 ORDER BY invitation_id LIMIT ?3",
    )?;
    decode_rows(&mut stmt, params![mask, after, limit as i64])
}

/// Every invitation, in id order, for the audit.
///
/// # Errors
/// When SQLite fails.
pub fn all(conn: &Connection, inviter_uma: Option<&str>) -> Result<Vec<InvitationState>, ProjectionError> {
    let mut stmt = conn.prepare_cached(
        "SELECT invitation_id, state FROM invitations WHERE (?1 IS NULL OR inviter_uma = ?1) ORDER BY invitation_id",
    )?;
    decode_rows(&mut stmt, params![inviter_uma])
}

/// The states selected by `sql`, which must select `invitation_id, state`
/// from `invitations`; every value is bound through `params`.
///
/// # Errors
/// When SQLite fails or a stored row cannot be read.
pub fn query(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<InvitationState>, ProjectionError> {
    let mut stmt = conn.prepare_cached(sql)?;
    decode_rows(&mut stmt, params)
}

fn decode_rows(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<InvitationState>, ProjectionError> {
    let rows = stmt.query_map(params, |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, json) = row?;
        out.push(decode(&id, &json)?);
    }
    Ok(out)
}

/// How many obligations are in each state, per kind: `(kind, state, n)`.
///
/// # Errors
/// When SQLite fails.
pub fn obligation_counts(conn: &Connection) -> Result<Vec<(&'static str, String, i64)>, ProjectionError> {
    let mut out = Vec::new();
    for (kind, column) in [
        ("invitee_payment", "payout_state"),
        ("inviter_incentive", "incentive_state"),
        ("inviter_notification", "notification_state"),
    ] {
        // `column` comes from the fixed list above, never from input.
        let mut stmt = conn.prepare_cached(&format!("SELECT {column}, COUNT(*) FROM invitations GROUP BY {column}"))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (state, n) = row?;
            out.push((kind, state, n));
        }
    }
    Ok(out)
}
