//! The projection tables in SQLite: incremental application with a
//! checkpoint in the same transaction, full rebuild, canonical checksum, and
//! the queries the read API and CLI answer from.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::state::{apply, InvitationState};
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

fn save(conn: &Connection, state: &InvitationState) -> Result<(), ProjectionError> {
    let json = serde_json::to_string(state).expect("projection state serialises");
    use super::events::ObligationKind;
    let payout = view::obligation(state, ObligationKind::InviteePayment).state.as_str();
    let incentive = view::obligation(state, ObligationKind::InviterIncentive).state.as_str();
    let notification = view::obligation(state, ObligationKind::InviterNotification).state.as_str();
    let text = |v: &Option<super::state::Versioned<String>>| v.as_ref().map(|v| v.value.clone());
    conn.prepare_cached(
        "INSERT INTO invitations (invitation_id, code, status, inviter_uma, invitee_uma, payout_state, work, last_seq, state,
                                  incentive_state, notification_state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (invitation_id) DO UPDATE SET code = excluded.code, status = excluded.status,
             inviter_uma = excluded.inviter_uma, invitee_uma = excluded.invitee_uma,
             payout_state = excluded.payout_state, work = excluded.work,
             incentive_state = excluded.incentive_state, notification_state = excluded.notification_state,
             last_seq = excluded.last_seq, state = excluded.state",
    )?
    .execute(params![
        state.invitation_id,
        text(&state.code),
        state.status().map(|s| s.as_str().to_owned()),
        text(&state.inviter_uma),
        text(&state.invitee_uma),
        payout,
        work(state),
        state.last_seq as i64,
        json,
        incentive,
        notification
    ])?;
    Ok(())
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

/// Drops the projections of `conn` and replays its whole ledger into them,
/// in one transaction. `progress(done, total)` is called now and then.
///
/// # Errors
/// When SQLite fails; then nothing changed.
pub fn rebuild(conn: &mut Connection, progress: impl FnMut(u64, u64)) -> Result<RebuildSummary, ProjectionError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let upto = ledger::head(&tx)?.0;
    let summary = replay(&tx, upto, &mut |after, limit| Ok(ledger::read_after(&tx, after, limit)?), progress)?;
    tx.commit()?;
    Ok(summary)
}

/// Empties the projection tables of `target` (a scratch database) and folds
/// the events of `source` with `seq <= upto` into them.
///
/// # Errors
/// When SQLite fails.
pub fn rebuild_into(
    source: &Connection,
    target: &mut Connection,
    upto: u64,
    progress: impl FnMut(u64, u64),
) -> Result<RebuildSummary, ProjectionError> {
    let tx = target.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let summary = replay(&tx, upto, &mut |after, limit| Ok(ledger::read_after(source, after, limit)?), progress)?;
    tx.commit()?;
    Ok(summary)
}

type ReadEvents<'a> = dyn FnMut(u64, usize) -> Result<Vec<LedgerEvent>, ProjectionError> + 'a;

fn replay(
    tx: &Connection,
    upto: u64,
    read: &mut ReadEvents<'_>,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildSummary, ProjectionError> {
    const CHUNK: usize = 20_000;
    // Secondary indexes are dropped during the replay and built once at the
    // end: one sorted build is much cheaper than a million index updates.
    // Their definitions are read back from the schema, so the migration
    // stays the one place that defines them.
    let indexes: Vec<(String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'invitations' AND sql IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (name, _) in &indexes {
        tx.execute_batch(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))?;
    }
    tx.execute("DELETE FROM invitations", [])?;
    tx.execute("UPDATE projection_checkpoint SET last_seq = 0 WHERE id = 1", [])?;
    let mut after = 0u64;
    while after < upto {
        let events = read(after, CHUNK.min((upto - after) as usize))?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        fold_into(tx, &events)?;
        progress(after, upto);
    }
    for (_, sql) in &indexes {
        tx.execute_batch(sql)?;
    }
    let invitations: i64 = tx.query_row("SELECT COUNT(*) FROM invitations", [], |r| r.get(0))?;
    Ok(RebuildSummary { events: after, invitations: invitations as u64, checksum: checksum(tx)? })
}

/// SHA-256 over every projection row in invitation-id order: `f(id) ‖
/// f(state JSON)` with `f(x) = u32be(len) ‖ x`. Equal projections give equal
/// checksums however they were built.
///
/// # Errors
/// When SQLite fails.
pub fn checksum(conn: &Connection) -> Result<[u8; 32], ProjectionError> {
    let mut h = Sha256::new();
    let mut stmt = conn.prepare("SELECT invitation_id, state FROM invitations ORDER BY invitation_id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        for col in 0..2 {
            let v = r.get_ref(col)?.as_bytes().map_err(|e| rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e)))?;
            h.update((v.len() as u32).to_be_bytes());
            h.update(v);
        }
    }
    Ok(h.finalize().into())
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
pub fn needing_work(conn: &Connection, mask: i64, after: &str, limit: usize) -> Result<Vec<InvitationState>, ProjectionError> {
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
pub fn query(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<InvitationState>, ProjectionError> {
    let mut stmt = conn.prepare_cached(sql)?;
    decode_rows(&mut stmt, params)
}

fn decode_rows(stmt: &mut rusqlite::Statement<'_>, params: impl rusqlite::Params) -> Result<Vec<InvitationState>, ProjectionError> {
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
