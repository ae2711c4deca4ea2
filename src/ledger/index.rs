//! The ledger's dedupe index: which `seq` holds an event key. It lives in
//! a file of its own beside the ledger (`<ledger>-index`), derived from the
//! ledger and rebuilt from it whenever it cannot be trusted.
//!
//! Why not an index inside the ledger: event keys are random, so each new
//! event lands on another page of the index, and with the ledger synced on
//! every commit those pages were written again and again. Measured under
//! load (10 s of real-shaped webhooks), the key index and the stream index
//! then beside it were about 14 of the 19 KB written per webhook. Here the
//! key index is written in place without syncs (a rollback journal,
//! `synchronous=OFF`): a page rewritten while the kernel still holds it
//! dirty costs nothing more, and nothing waits for the disk. Which events
//! belong to an invitation is not indexed at all: its projection lists
//! them (the stream index here cost the writer about 8 µs per webhook, a
//! random page and its journal copy).
//!
//! What keeps that safe, since the dedupe answers "already stored" from it:
//! - It is changed in the same transaction as the ledger, on the writer's
//!   connection; the ledger commits first (WAL), so a crash between the two
//!   leaves the index behind, never ahead.
//! - It records the ledger head it covers (`seq` and hash). Before every
//!   batch the writer compares that with the ledger: behind, it catches up
//!   from the ledger; ahead, or at a `seq` whose hash differs (a restored
//!   backup, a replaced file), it is emptied and built again.
//! - A process killed mid-commit leaves a journal that the next opener
//!   rolls back. A machine crash can tear the file: it records the boot id
//!   (synced) before any unsynced write, and an index last written under
//!   another boot, or one that is not a readable database, is built again.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::hash::Hash;
use super::LedgerError;

/// The schema name the index is attached under, on every connection.
pub const SCHEMA: &str = "ledger_index";

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS ledger_index.index_meta (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    -- The ledger head this index covers: every event up to it is in.
    last_seq  INTEGER NOT NULL,
    last_hash BLOB,
    -- The boot under which unsynced writes were last made.
    boot_id   TEXT
);
CREATE TABLE IF NOT EXISTS ledger_index.event_keys (
    event_key TEXT    PRIMARY KEY,
    seq       INTEGER NOT NULL
) WITHOUT ROWID;
-- Kept by earlier versions; each invitation's projection lists its
-- events now.
DROP TABLE IF EXISTS ledger_index.stream_events;
INSERT OR IGNORE INTO ledger_index.index_meta (id, last_seq) VALUES (1, 0);
";

/// The index file of the ledger at `ledger`.
pub fn path(ledger: &Path) -> PathBuf {
    super::suffixed(ledger, "-index")
}

/// Attaches the index of `ledger` to the writer's connection (creating it,
/// or replacing one that is not a readable database).
///
/// # Errors
/// When the file cannot be created or SQLite fails.
pub(super) fn attach_for_writing(conn: &Connection, ledger: &Path) -> Result<(), LedgerError> {
    let file = path(ledger);
    if let Err(e) = try_attach(conn, &file) {
        tracing::warn!(index = %file.display(), error = %e, "the ledger's index is unreadable; building it again from the ledger");
        let _ = conn.execute_batch(&format!("DETACH DATABASE {SCHEMA}"));
        for f in [file.clone(), super::suffixed(&file, "-journal")] {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(LedgerError::Folder { path: f.display().to_string(), source: std::sync::Arc::new(e) })
                }
                _ => {}
            }
        }
        try_attach(conn, &file)?;
    }
    guard_unsynced_writes(conn)
}

fn try_attach(conn: &Connection, file: &Path) -> Result<(), LedgerError> {
    conn.execute(&format!("ATTACH DATABASE ?1 AS {SCHEMA}"), [file.to_string_lossy()])?;
    // In place, with a journal kept between commits (PERSIST): rewriting
    // the same journal pages costs no new page-cache writes.
    conn.pragma_update(Some(rusqlite::DatabaseName::Attached(SCHEMA)), "journal_mode", "PERSIST")?;
    conn.execute_batch(TABLES)?;
    // A torn or foreign file fails here, or at the pragma above.
    conn.query_row("SELECT last_seq FROM ledger_index.index_meta WHERE id = 1", [], |_| Ok(()))?;
    Ok(())
}

/// Records this boot (synced) before any unsynced write, emptying an
/// index last written under another boot: a machine crash may have torn
/// it. Where the boot id cannot be read, writes stay synced (`NORMAL`).
fn guard_unsynced_writes(conn: &Connection) -> Result<(), LedgerError> {
    let Some(boot) = super::boot_id() else {
        conn.pragma_update(Some(rusqlite::DatabaseName::Attached(SCHEMA)), "synchronous", "NORMAL")?;
        return Ok(());
    };
    conn.pragma_update(Some(rusqlite::DatabaseName::Attached(SCHEMA)), "synchronous", "FULL")?;
    let recorded: Option<String> =
        conn.query_row("SELECT boot_id FROM ledger_index.index_meta WHERE id = 1", [], |r| r.get(0))?;
    let tx = conn.unchecked_transaction()?;
    if recorded.as_deref().is_some_and(|r| r != boot) {
        tracing::warn!("the machine restarted since the ledger's index was last written without syncs; building it again from the ledger");
        clear(&tx)?;
    }
    tx.execute("UPDATE ledger_index.index_meta SET boot_id = ?1 WHERE id = 1", [&boot])?;
    tx.commit()?;
    conn.pragma_update(Some(rusqlite::DatabaseName::Attached(SCHEMA)), "synchronous", "OFF")?;
    Ok(())
}

fn clear(conn: &Connection) -> Result<(), LedgerError> {
    conn.execute_batch(
        "DELETE FROM ledger_index.event_keys;
         UPDATE ledger_index.index_meta SET last_seq = 0, last_hash = NULL WHERE id = 1;",
    )?;
    Ok(())
}

/// Brings the index to the ledger head `(seq, hash)`; called inside the
/// writer's transaction, before it looks anything up.
///
/// # Errors
/// When SQLite fails.
pub(super) fn sync(conn: &Connection, seq: u64, hash: &Hash) -> Result<(), LedgerError> {
    let (last, last_hash): (u64, Option<Vec<u8>>) = conn
        .prepare_cached("SELECT last_seq, last_hash FROM ledger_index.index_meta WHERE id = 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?;
    if last == seq && (seq == 0 || last_hash.as_deref() == Some(&hash[..])) {
        return Ok(());
    }
    let ours = if last == 0 {
        true
    } else if last > seq {
        false
    } else {
        let stored: Option<Vec<u8>> = conn
            .prepare_cached("SELECT hash FROM main.events WHERE seq = ?1")?
            .query_row([last as i64], |r| r.get(0))
            .optional()?;
        stored.is_some() && stored == last_hash
    };
    let from = if ours {
        last
    } else {
        tracing::warn!(
            index_seq = last,
            ledger_seq = seq,
            "the ledger's index covers another history (a restored or replaced ledger?); building it again from the ledger"
        );
        clear(conn)?;
        0
    };
    let started = std::time::Instant::now();
    // Sorted by key, the index is written along its edge, not page by page.
    conn.execute(
        "INSERT OR IGNORE INTO ledger_index.event_keys (event_key, seq)
         SELECT event_key, seq FROM main.events WHERE seq > ?1 ORDER BY event_key, seq",
        [from as i64],
    )?;
    covered(conn, seq, hash)?;
    if seq - from > 1 {
        tracing::info!(from, to = seq, took_ms = started.elapsed().as_millis() as u64, "the ledger's index caught up");
    }
    Ok(())
}

/// What the index knows of a key about to be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Known {
    /// The `seq` already holding this very key.
    pub(super) seq: Option<u64>,
    /// Another key starts with the event's `sibling_prefix`.
    pub(super) sibling: bool,
}

/// Looks `event_key` up and, given the `sibling_prefix` it starts with,
/// the other keys sharing it, in one range read (the range holds the key
/// itself too, anywhere among them): two lookups per event were a tenth of
/// the writer's time. Only signed bodies add keys, so the range stays small.
///
/// # Errors
/// When SQLite fails.
pub(super) fn known(conn: &Connection, event_key: &str, sibling_prefix: Option<&str>) -> Result<Known, LedgerError> {
    let Some(prefix) = sibling_prefix.filter(|p| event_key.starts_with(p)) else {
        let seq = conn
            .prepare_cached("SELECT seq FROM ledger_index.event_keys WHERE event_key = ?1")?
            .query_row([event_key], |r| r.get::<_, i64>(0))
            .optional()?;
        return Ok(Known { seq: seq.map(|s| s as u64), sibling: false });
    };
    let upper = format!("{prefix}\u{10FFFF}");
    let mut stmt = conn.prepare_cached(
        "SELECT event_key, seq FROM ledger_index.event_keys WHERE event_key >= ?1 AND event_key < ?2",
    )?;
    let mut rows = stmt.query(params![prefix, upper])?;
    let mut known = Known { seq: None, sibling: false };
    while let Some(row) = rows.next()? {
        if row.get::<_, String>(0)? == event_key {
            known.seq = Some(row.get::<_, i64>(1)? as u64);
        } else {
            known.sibling = true;
        }
    }
    Ok(known)
}

/// Adds one appended event.
///
/// # Errors
/// When SQLite fails.
pub(super) fn add(conn: &Connection, seq: u64, event_key: &str) -> Result<(), LedgerError> {
    conn.prepare_cached("INSERT INTO ledger_index.event_keys (event_key, seq) VALUES (?1, ?2)")?
        .execute(params![event_key, seq as i64])?;
    Ok(())
}

/// Records that every event up to `(seq, hash)` is in.
///
/// # Errors
/// When SQLite fails.
pub(super) fn covered(conn: &Connection, seq: u64, hash: &Hash) -> Result<(), LedgerError> {
    conn.prepare_cached("UPDATE ledger_index.index_meta SET last_seq = ?1, last_hash = ?2 WHERE id = 1")?
        .execute(params![seq as i64, &hash[..]])?;
    Ok(())
}
