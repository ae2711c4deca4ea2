//! The projection tables in SQLite, in a file of their own beside the ledger
//! (`<ledger>-projections`, the ledger attached read-only): opening (and
//! emptying a file that cannot be trusted), saving a state's row, and
//! incremental application with a checkpoint in the same transaction. A
//! full rebuild is in [`super::rebuild`], the queries in [`super::query`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::state::{apply, InvitationState};
use super::tally::{Deltas, Tally};
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
    #[error("the projections at {path} do not belong to this ledger: {why}; start the service (or run `rebuild`) to fold them again")]
    ForeignLedger { path: String, why: String },
    #[error("could not replace the projection file {path}: {source}")]
    Swap { path: String, source: std::io::Error },
    #[error("could not start the projector thread: {0}")]
    Thread(std::io::Error),
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
    #[error("the disk holding {file} is full: nothing more can be written there until space is freed")]
    DiskFull { file: String },
}

impl ProjectionError {
    /// This error, said of `file` when it is a full disk (a full disk
    /// under the ledger keeps the ledger's own file name).
    pub fn on_file(self, file: &str) -> Self {
        match self {
            ProjectionError::Sqlite(e) if ledger::is_disk_full(&e) => {
                ProjectionError::DiskFull { file: file.to_owned() }
            }
            ProjectionError::Ledger(LedgerError::Sqlite(e)) if ledger::is_disk_full(&e) => {
                ProjectionError::DiskFull { file: file.to_owned() }
            }
            ProjectionError::Swap { source, .. } if source.raw_os_error() == Some(28) => {
                ProjectionError::DiskFull { file: file.to_owned() }
            }
            other => other,
        }
    }
}

/// The projection file's tables; see `schema/projections.sql`.
pub const SCHEMA: &str = include_str!("../../schema/projections.sql");

/// The version of [`SCHEMA`] and of the state encoding, kept in the
/// projection file's `user_version`. A file of another version is emptied
/// and folded again: projections are disposable.
pub const SCHEMA_VERSION: u32 = 12;

/// Page size of a new projection file. Each folded event changes a row and
/// a leaf of several indexes at random places, and with synced
/// checkpoints (`set_durability`) every page a fold changes is written to
/// the log and then to the file. With 4 KiB pages the projector writes
/// about half the bytes it wrote with 16 KiB: 60 against 117–137 KB per
/// webhook at 6,000/s, 210 against 424–455 KB per claim paid at 1,000/s
/// (bench ingest and claim-latency, interleaved runs, 2026-12-08). A
/// rebuild is slower with them (1M events: 10.2–10.8 s against
/// 8.9–9.5 s), and where the files outgrow memory so is reading pages
/// back from disk (10M events: rebuild 232 s against 142 s, catch-up
/// after a crash under ingest 13.8 s against 7.6 s). Only a new, empty
/// file takes it (`rebuild` makes one); an existing one keeps the size
/// it was made with.
const PAGE_SIZE: i64 = 4_096;

pub(super) fn set_page_size(conn: &Connection) -> Result<(), ProjectionError> {
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    Ok(())
}

/// Where the projections of the ledger `ledger` live: a file of their own
/// beside it, so folding never competes with appends for the ledger's
/// write lock, and a rebuild can write a fresh file.
pub fn path(ledger: &Path) -> PathBuf {
    suffixed(ledger, "-projections")
}

pub(super) use crate::ledger::suffixed;

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
    set_durability(&conn)?;
    attach_ledger(&conn, ledger)?;
    if let Some(why) = foreign_ledger(&conn)? {
        tracing::warn!(ledger = %ledger.display(), "the projections do not belong to this ledger: {why}; emptying them and folding the ledger again");
        reset(&conn)?;
    }
    Ok(conn)
}

/// Log bytes after which a commit checkpoints the projections (in pages of
/// the file's own size: files made before 2026-12-08 have 16 KiB pages).
const WAL_CHECKPOINT_BYTES: i64 = 2 << 20;

/// Size the projections' WAL file is cut back to after a checkpoint.
const WAL_KEEP_BYTES: i64 = 4 << 20;

/// Sets how this connection syncs its writes to the projection file.
///
/// `synchronous=NORMAL` in WAL mode: a commit is not synced, the WAL is
/// synced before each SQLite checkpoint copies it into the file, and the
/// file after. A power cut can lose the last folds, never tear one: the
/// file comes back consistent, its own checkpoint (the last seq folded, in
/// the same transaction as the rows) at most a few thousand pages behind,
/// and the projector folds only the events after it. The syncs come once
/// per SQLite checkpoint rather than once per fold, so they do not compete
/// with the ledger's own for the disk (measured at 8,500 webhooks/s, a
/// sync per fold added about 2 ms to the ledger's p99 commit).
///
/// Earlier versions wrote without any sync and emptied a file written
/// under another boot of the machine, which made the start after a reboot
/// cost a fold of the whole ledger. The boot is still recorded, to say in
/// the log that the machine restarted since.
fn set_durability(conn: &Connection) -> Result<(), ProjectionError> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // A checkpoint every WAL_CHECKPOINT_BYTES, not SQLite's 1,000 pages:
    // with 16 KiB pages that was a 16 MiB log, and a checkpoint must then grow
    // the file by as much to copy it in. On a nearly full disk the two
    // together were more than freeing the disk gave back, and nothing could
    // be written again. A log grown past WAL_KEEP_BYTES (a stall, a long
    // reader) is cut back once checkpointed. Measured: checkpoints every
    // 100 pages instead of 1,000 cost no throughput (docs/benchmarks.md).
    let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_BYTES / page.max(512))?;
    conn.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES)?;
    let Some(boot) = ledger::boot_id() else { return Ok(()) };
    let recorded: Option<String> =
        conn.query_row("SELECT boot_id FROM projection_boot WHERE id = 1", [], |r| r.get(0)).optional()?;
    if recorded.as_deref().is_some_and(|r| r != boot) {
        tracing::info!(
            folded = checkpoint(conn)?,
            "the machine restarted since the projections were last written; folding the events after their checkpoint"
        );
    }
    if recorded.as_deref() != Some(boot.as_str()) {
        conn.execute(
            "INSERT INTO projection_boot (id, boot_id) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET boot_id = excluded.boot_id",
            [&boot],
        )?;
    }
    Ok(())
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
    if let Some(why) = foreign_ledger(&conn)? {
        return Err(ProjectionError::ForeignLedger { path: file.display().to_string(), why });
    }
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

pub(super) fn remove_if_exists(file: &Path) -> Result<(), ProjectionError> {
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
pub(super) fn attach_ledger(conn: &Connection, ledger: &Path) -> Result<(), ProjectionError> {
    conn.execute("ATTACH DATABASE ?1 AS ledger", [ledger::read_only_uri(ledger)])?;
    Ok(())
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

/// The states a prepared statement selects (`invitation_id, state` from
/// `invitations`), decoded: what every read of whole states goes through.
pub(super) fn decode_rows(
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

pub(super) fn decode(id: &str, json: &str) -> Result<InvitationState, ProjectionError> {
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

/// Every column of an invitation's row, as stored: the state JSON and the
/// copies of it the service queries (lookups, list filters, the work
/// queue, obligation counts, the audit). A checksum covers all of them, so
/// `rebuild --check` sees a hand-edited filter column as surely as an
/// edited state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub invitation_id: String,
    pub code: Option<String>,
    pub status: Option<String>,
    pub inviter_uma: Option<String>,
    pub invitee_uma: Option<String>,
    pub payout_state: String,
    pub incentive_state: String,
    pub notification_state: String,
    pub failure_notice_state: String,
    pub work: i64,
    pub last_seq: i64,
    pub audit_inviter: Option<String>,
    pub source: &'static str,
    pub awaiting_data: i64,
    /// When the oldest of its obligations being retried was first
    /// requested (Unix microseconds), if one is.
    pub retrying_since: Option<i64>,
    pub found_by_sweep: i64,
    pub outcome_unknown: i64,
    pub state: String,
}

/// The columns of [`Row`], in its order.
pub(super) const ROW_COLUMNS: &str = "invitation_id, code, status, inviter_uma, invitee_uma, payout_state, \
     incentive_state, notification_state, failure_notice_state, work, last_seq, audit_inviter, source, \
     awaiting_data, retrying_since, found_by_sweep, outcome_unknown, state";

impl Row {
    /// The row `state` is stored as.
    pub fn of(state: &InvitationState) -> Row {
        use super::events::ObligationKind;
        let text = |v: &Option<super::state::Versioned<String>>| v.as_ref().map(|v| v.value.clone());
        let obligation = |kind| view::obligation_state(state, kind).0.as_str().to_owned();
        Row {
            invitation_id: state.invitation_id.clone(),
            code: text(&state.code),
            status: state.status().map(|s| s.as_str().to_owned()),
            inviter_uma: text(&state.inviter_uma),
            invitee_uma: text(&state.invitee_uma),
            payout_state: obligation(ObligationKind::InviteePayment),
            incentive_state: obligation(ObligationKind::InviterIncentive),
            notification_state: obligation(ObligationKind::InviterNotification),
            failure_notice_state: obligation(ObligationKind::InviterFailureNotice),
            work: work(state),
            last_seq: state.last_seq as i64,
            audit_inviter: super::audit::audit_inviter(state),
            source: state.source.as_str(),
            awaiting_data: i64::from(view::awaiting_data(state)),
            retrying_since: view::retrying_since(state),
            found_by_sweep: i64::from(state.found_by_sweep),
            outcome_unknown: i64::from(view::outcome_unknown(state)),
            state: serde_json::to_string(state).expect("projection state serialises"),
        }
    }
}

pub(super) const SAVE: &str = "INSERT INTO invitations (invitation_id, code, status, inviter_uma, invitee_uma,
             payout_state, incentive_state, notification_state, failure_notice_state, work, last_seq, audit_inviter,
             source, awaiting_data, retrying_since, found_by_sweep, outcome_unknown, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
         ON CONFLICT (invitation_id) DO UPDATE SET code = excluded.code, status = excluded.status,
             inviter_uma = excluded.inviter_uma, invitee_uma = excluded.invitee_uma,
             payout_state = excluded.payout_state, incentive_state = excluded.incentive_state,
             notification_state = excluded.notification_state,
             failure_notice_state = excluded.failure_notice_state, work = excluded.work,
             last_seq = excluded.last_seq, audit_inviter = excluded.audit_inviter, source = excluded.source,
             awaiting_data = excluded.awaiting_data, retrying_since = excluded.retrying_since,
             found_by_sweep = excluded.found_by_sweep, outcome_unknown = excluded.outcome_unknown,
             state = excluded.state";

/// Writes one state's row.
fn save(conn: &Connection, state: &InvitationState) -> Result<(), ProjectionError> {
    let mut insert = conn.prepare_cached(SAVE)?;
    save_with(&mut insert, &Row::of(state))
}

/// [`save`] through a statement of [`SAVE`] the caller keeps: a rebuild
/// saves hundreds of thousands of rows, and looking the statement up in the
/// cache hashes its text every time.
pub(super) fn save_with(insert: &mut rusqlite::Statement<'_>, row: &Row) -> Result<(), ProjectionError> {
    insert.execute(params![
        row.invitation_id,
        row.code,
        row.status,
        row.inviter_uma,
        row.invitee_uma,
        row.payout_state,
        row.incentive_state,
        row.notification_state,
        row.failure_notice_state,
        row.work,
        row.last_seq,
        row.audit_inviter,
        row.source,
        row.awaiting_data,
        row.retrying_since,
        row.found_by_sweep,
        row.outcome_unknown,
        row.state,
    ])?;
    Ok(())
}

/// Folds `events` (which must follow the checkpoint, in order) into the
/// tables and moves the checkpoint, all inside the caller's transaction.
/// Whether an invitation now has work it did not have before (a payment
/// newly due, a fetch newly wanted): the reconciler is woken for it.
fn fold_into(conn: &Connection, events: &[LedgerEvent]) -> Result<bool, ProjectionError> {
    // Each touched invitation's state, and its tally and work before this batch.
    let mut touched: HashMap<&str, (Option<Tally>, i64, InvitationState)> = HashMap::new();
    let mut deltas = Deltas::default();
    for e in events {
        let Some(id) = e.stream.as_deref() else { continue };
        deltas.event(&e.kind, &e.recorded_at);
        let (before, work_before, state) = match touched.remove(id) {
            Some(s) => s,
            None => match load(conn, id)? {
                Some(s) => (Some(Tally::of(&s)), work(&s), s),
                None => (None, 0, InvitationState::new(id)),
            },
        };
        touched.insert(id, (before, work_before, apply(state, e)));
    }
    let mut newly_due = false;
    for (before, work_before, state) in touched.values() {
        save(conn, state)?;
        deltas.replace(before.as_ref(), &Tally::of(state));
        newly_due |= work(state) & !work_before != 0;
    }
    deltas.flush(conn)?;
    if let Some(last) = events.last() {
        set_checkpoint(conn, last.seq, &last.hash)?;
    }
    Ok(newly_due)
}

/// Moves the checkpoint to `seq`, whose ledger hash is `hash`.
pub(super) fn set_checkpoint(conn: &Connection, seq: u64, hash: &ledger::Hash) -> Result<(), ProjectionError> {
    conn.prepare_cached("UPDATE projection_checkpoint SET last_seq = ?1, ledger_hash = ?2 WHERE id = 1")?
        .execute(params![seq as i64, &hash.0[..]])?;
    Ok(())
}

/// Why the projections do not belong to the ledger they are beside, if
/// they do not: the ledger has no event at their checkpoint, or another
/// hash there.
///
/// # Errors
/// When SQLite fails.
pub fn foreign_ledger(conn: &Connection) -> Result<Option<String>, ProjectionError> {
    let (seq, hash): (i64, Option<Vec<u8>>) = conn
        .prepare_cached("SELECT last_seq, ledger_hash FROM projection_checkpoint WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if seq == 0 {
        return Ok(None);
    }
    let stored: Option<Vec<u8>> = conn
        .prepare_cached("SELECT hash FROM ledger.events WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))
        .optional()?;
    Ok(match stored {
        None => Some(format!(
            "they were folded up to seq {seq}, which the ledger does not hold (a restored backup, a replaced or truncated file)"
        )),
        Some(h) if Some(&h) != hash.as_ref() => Some(format!(
            "the ledger holds another event at seq {seq}, their checkpoint (a restored backup or a replaced file)"
        )),
        Some(_) => None,
    })
}

/// Applies every event after the checkpoint, `batch` at a time, each batch
/// in one transaction with its checkpoint. Returns the new checkpoint.
///
/// # Errors
/// When SQLite fails; what was committed before stays.
pub fn catch_up(conn: &mut Connection, batch: usize) -> Result<u64, ProjectionError> {
    Ok(catch_up_noting_work(conn, batch)?.checkpoint)
}

/// What [`catch_up_noting_work`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp {
    /// The new checkpoint.
    pub checkpoint: u64,
    /// Whether some invitation got work it did not have (see [`work`]).
    pub newly_due: bool,
}

/// [`catch_up`], saying also whether what it folded made work due: the
/// projector wakes the reconciler then, rather than leaving a claim for
/// its next pass.
///
/// # Errors
/// When SQLite fails; what was committed before stays.
pub fn catch_up_noting_work(conn: &mut Connection, batch: usize) -> Result<CaughtUp, ProjectionError> {
    // Cheap check first: taking the write lock for nothing would only get
    // in the ledger writer's way.
    let current = checkpoint(conn)?;
    if ledger::head(conn)?.0 <= current {
        return Ok(CaughtUp { checkpoint: current, newly_due: false });
    }
    let mut newly_due = false;
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Read inside the write transaction: no other projector can have
        // applied these events in between.
        let from = checkpoint(&tx)?;
        let events = ledger::read_after(&tx, from, batch)?;
        if events.is_empty() {
            return Ok(CaughtUp { checkpoint: from, newly_due });
        }
        newly_due |= fold_into(&tx, &events)?;
        tx.commit()?;
    }
}
