//! The read side: every question the read API, the status page and the CLI
//! ask of the projections (and of the ledger they are attached to), as plain
//! functions of a connection. Handlers and commands call these and only
//! render what they return.

use rusqlite::{params, Connection, OptionalExtension};

use super::audit_page::{self, AuditPage, AuditPageRequest};
use super::state::InvitationState;
use super::store::{decode, decode_rows, load, ProjectionError};
use super::view::{self, Fetching, InvitationView};
use crate::ledger;

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

/// The hash of the ledger event at `seq`, read from the attached ledger:
/// with the `seq`, the version of an invitation a decision is taken on.
///
/// # Errors
/// When SQLite fails.
pub fn event_hash(conn: &Connection, seq: u64) -> Result<Option<ledger::Hash>, ProjectionError> {
    let hash: Option<Vec<u8>> = conn
        .prepare_cached("SELECT hash FROM ledger.events WHERE seq = ?1")?
        .query_row([seq as i64], |r| r.get(0))
        .optional()?;
    Ok(hash.map(|h| ledger::Hash::from_stored(Some(&h))))
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
/// Read through the index of the most selective filter given (inviter,
/// else payout state, else status; none: the primary key), in id order,
/// the other filters checked on the rows it yields: a page reads the rows
/// it shows and those the other filters turn away, never the whole table.
///
/// # Errors
/// When SQLite fails.
pub fn list(conn: &Connection, f: &ListFilter) -> Result<(Vec<InvitationState>, Option<String>), ProjectionError> {
    // Each driving filter's condition; the text is fixed, every value bound.
    let driver = if f.inviter_uma.is_some() {
        "inviter_uma = ?3"
    } else if f.payout_state.is_some() {
        "payout_state = ?2"
    } else if f.status.is_some() {
        "status = ?1"
    } else {
        "1"
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT invitation_id, state FROM invitations
         WHERE {driver} AND (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR payout_state = ?2)
           AND (?3 IS NULL OR inviter_uma = ?3) AND invitation_id > ?4
         ORDER BY invitation_id LIMIT ?5"
    ))?;
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

/// [`needing_work`]'s statement: the rows whose `work` is any of 15 values.
const NEEDING_WORK: &str = "SELECT invitation_id, state FROM invitations WHERE work <> 0
     AND work IN (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

/// Invitations with work among the bits of `mask` (see
/// [`view::work_bits`]), in id order.
///
/// The index of rows with work is keyed by the `work` value (and within a
/// value by rowid), so a new row lands at the edge of its value's run
/// rather than on a random page of an index in id order: one page
/// less for the projector to write per new invitation. So the values that
/// share a bit with `mask` (at most 15) are looked up, and the whole is put
/// in id order here. One statement, so one snapshot: asked value by value,
/// a row the projector moved from a value already read to one not read yet
/// came twice, and its obligation was acted on twice in one pass. An empty
/// mask reads nothing.
///
/// # Errors
/// When SQLite fails.
pub fn needing_work(conn: &Connection, mask: i64) -> Result<Vec<InvitationState>, ProjectionError> {
    const VALUES: usize = view::work_bits::ALL as usize;
    // Unused places hold 0, which `work <> 0` excludes; that condition also
    // lets SQLite use the partial index whatever the parameters.
    let mut values = [0i64; VALUES];
    let mut wanted = (1..=view::work_bits::ALL).filter(|w| w & mask != 0).peekable();
    if wanted.peek().is_none() {
        return Ok(Vec::new());
    }
    for (slot, value) in values.iter_mut().zip(wanted) {
        *slot = value;
    }
    let mut stmt = conn.prepare_cached(NEEDING_WORK)?;
    let mut out = decode_rows(&mut stmt, rusqlite::params_from_iter(values))?;
    out.sort_unstable_by(|a, b| a.invitation_id.cmp(&b.invitation_id));
    Ok(out)
}

/// How many invitations of each source wait for their data (a claim came
/// without it and no fetch has given it): nothing can be paid for them.
///
/// # Errors
/// When SQLite fails.
pub fn awaiting_data(conn: &Connection) -> Result<Vec<(crate::source::Source, u64)>, ProjectionError> {
    let mut out = Vec::new();
    for source in crate::source::Source::ALL {
        let n: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM invitations WHERE awaiting_data = 1 AND source = ?1")?
            .query_row([source.as_str()], |r| r.get(0))?;
        out.push((source, n as u64));
    }
    Ok(out)
}

/// Every invitation in id order (with `inviter_uma`, those the audit
/// credits to that inviter): the whole table, for checks that compare
/// the projections with the ledger (the simulation's invariants), never
/// behind a request or a command, which read pages.
///
/// # Errors
/// When SQLite fails or a stored row cannot be read.
pub fn all(conn: &Connection, inviter_uma: Option<&str>) -> Result<Vec<InvitationState>, ProjectionError> {
    let mut stmt = conn.prepare_cached(
        "SELECT invitation_id, state FROM invitations WHERE (?1 IS NULL OR audit_inviter = ?1) ORDER BY invitation_id",
    )?;
    decode_rows(&mut stmt, params![inviter_uma])
}

/// The incentive audit of every invitation in one piece, as [`all`] reads
/// them: for the same checks, never behind a request (see
/// [`super::audit_page`]).
///
/// # Errors
/// When SQLite fails or a stored row cannot be read.
pub fn audit_incentives(
    conn: &Connection,
    inviter_uma: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
    horizon: std::time::Duration,
) -> Result<super::audit::IncentiveAudit, ProjectionError> {
    Ok(super::audit::audit(&all(conn, inviter_uma)?, now, horizon))
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

/// How many obligations are in each state, per kind: `(kind, state, n)`,
/// from the aggregates the fold keeps.
///
/// # Errors
/// When SQLite fails.
pub fn obligation_counts(conn: &Connection) -> Result<Vec<(&'static str, String, i64)>, ProjectionError> {
    super::tally::obligation_counts(conn)
}

/// [`oldest_retrying`]'s statement: the first entry of the index of rows
/// being retried.
const RETRYING: &str = "SELECT MIN(retrying_since) FROM invitations WHERE retrying_since IS NOT NULL";

/// When the oldest obligation still being retried was first requested
/// (its idempotency window's start, in Unix microseconds): how long the
/// platform has been failing it, which `/metrics` shows so that an
/// outage pages long before the window runs out. `None` when nothing is
/// being retried.
///
/// One step into the index of rows being retried (see [`RETRYING`]),
/// however many are.
///
/// # Errors
/// When SQLite fails.
pub fn oldest_retrying(conn: &Connection) -> Result<Option<i64>, ProjectionError> {
    Ok(conn.prepare_cached(RETRYING)?.query_row([], |r| r.get(0))?)
}

/// One page of a list, and the cursor of the next page (`None`: the last).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// The projection of one invitation, by id or code, as the API and the CLI
/// show it.
///
/// # Errors
/// When SQLite fails or the stored row cannot be read.
pub fn invitation(
    conn: &Connection,
    id_or_code: &str,
    fetching: Fetching,
) -> Result<Option<InvitationView>, ProjectionError> {
    Ok(find(conn, id_or_code)?.map(|s| view::shown(&s, fetching)))
}

/// One page of `GET /v1/invitations`.
///
/// # Errors
/// When SQLite fails or a stored row cannot be read.
pub fn invitations(
    conn: &Connection,
    filter: &ListFilter,
    fetching: Fetching,
) -> Result<Page<InvitationView, String>, ProjectionError> {
    let (states, next) = list(conn, filter)?;
    Ok(Page { items: states.iter().map(|s| view::shown(s, fetching)).collect(), next })
}

/// A ledger event as `GET /v1/ledger/events` lists it: what identifies and
/// chains it, not its body.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventSummary {
    pub seq: u64,
    pub kind: String,
    pub event_key: String,
    pub stream: Option<String>,
    pub recorded_at: String,
    pub hash: String,
}

/// The ledger's last event, as an operator keeps it elsewhere (an anchor):
/// a later `verify --expect SEQ:HASH` proves the ledger still holds it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LedgerHead {
    pub seq: u64,
    /// Hex SHA-256 of the chain at `seq` (64 zeros for an empty ledger).
    pub hash: String,
    /// When that event was appended; null for an empty ledger.
    pub recorded_at: Option<String>,
}

/// The ledger's head.
///
/// # Errors
/// When SQLite fails.
pub fn ledger_head(conn: &Connection) -> Result<LedgerHead, ProjectionError> {
    let (seq, hash) = ledger::head(conn)?;
    let recorded_at = conn
        .prepare_cached("SELECT recorded_at FROM events WHERE seq = ?1")?
        .query_row([seq as i64], |r| r.get(0))
        .optional()?;
    Ok(LedgerHead { seq, hash: hex::encode(hash), recorded_at })
}

/// Up to `limit` ledger events after `after` (exclusive), in order.
///
/// # Errors
/// When SQLite fails.
pub fn ledger_events(conn: &Connection, after: u64, limit: usize) -> Result<Page<EventSummary, u64>, ProjectionError> {
    let mut events = ledger::read_after(conn, after, limit + 1)?;
    let next = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|e| e.seq)
    } else {
        None
    };
    let items = events
        .into_iter()
        .map(|e| EventSummary {
            seq: e.seq,
            kind: e.kind,
            event_key: e.event_key,
            stream: e.stream,
            recorded_at: e.recorded_at,
            hash: hex::encode(e.hash),
        })
        .collect();
    Ok(Page { items, next })
}

/// The `limit` invitations whose last event is the most recent.
///
/// # Errors
/// When SQLite fails or a stored row cannot be read.
pub fn recent(conn: &Connection, limit: usize) -> Result<Vec<InvitationState>, ProjectionError> {
    query(conn, "SELECT invitation_id, state FROM invitations ORDER BY last_seq DESC LIMIT ?1", params![limit as i64])
}

/// Invitations with an obligation in doubt or failed, most recent first.
///
/// # Errors
/// When SQLite fails or a stored row cannot be read.
pub fn needing_an_operator(conn: &Connection, limit: usize) -> Result<Vec<InvitationState>, ProjectionError> {
    query(
        conn,
        "SELECT invitation_id, state FROM invitations
         WHERE payout_state IN ('in_doubt', 'failed') OR incentive_state IN ('in_doubt', 'failed')
            OR notification_state IN ('in_doubt', 'failed') OR failure_notice_state IN ('in_doubt', 'failed')
         ORDER BY last_seq DESC LIMIT ?1",
        params![limit as i64],
    )
}

/// Claims the sweep found before any webhook (each a webhook that did not
/// arrive), most recent first.
///
/// # Errors
/// When SQLite fails or a stored row cannot be read.
pub fn found_by_sweep(conn: &Connection, limit: usize) -> Result<Vec<InvitationState>, ProjectionError> {
    query(
        conn,
        "SELECT invitation_id, state FROM invitations WHERE found_by_sweep = 1 ORDER BY last_seq DESC LIMIT ?1",
        params![limit as i64],
    )
}

/// Invitations whose invitee is `uma`, in id order.
fn by_invitee(conn: &Connection, uma: &str, limit: usize) -> Result<Vec<InvitationState>, ProjectionError> {
    query(
        conn,
        "SELECT invitation_id, state FROM invitations WHERE invitee_uma = ?1 ORDER BY invitation_id LIMIT ?2",
        params![uma, limit as i64],
    )
}

/// What a search of the status page found.
#[derive(Debug, Clone)]
pub enum Search {
    /// The query is an invitation id or code.
    Exact(Box<InvitationView>),
    /// Invitations whose inviter or invitee the query names, at most `cap`
    /// of them (`truncated` when there were more).
    Matches { items: Vec<InvitationView>, truncated: bool },
}

/// Looks `q` up as an invitation id or code, else as an inviter or invitee
/// UMA.
///
/// # Errors
/// When SQLite fails or a stored row cannot be read.
pub fn search(conn: &Connection, q: &str, cap: usize, fetching: Fetching) -> Result<Search, ProjectionError> {
    if let Some(s) = find(conn, q)? {
        return Ok(Search::Exact(Box::new(view::shown(&s, fetching))));
    }
    let filter = ListFilter { inviter_uma: Some(q.to_owned()), limit: cap, ..ListFilter::default() };
    let (mut states, next) = list(conn, &filter)?;
    let mut truncated = next.is_some();
    for s in by_invitee(conn, q, cap + 1)? {
        if states.iter().any(|x| x.invitation_id == s.invitation_id) {
            continue;
        }
        if states.len() >= cap {
            truncated = true;
            break;
        }
        states.push(s);
    }
    Ok(Search::Matches { items: states.iter().map(|s| view::shown(s, fetching)).collect(), truncated })
}

/// Everything the status page shows, read in one go.
#[derive(Debug, Clone)]
pub struct StatusPage {
    /// The ledger's last seq and the projections' checkpoint.
    pub head: u64,
    pub checkpoint: u64,
    /// Obligations per (kind, state).
    pub counts: Vec<(&'static str, String, i64)>,
    pub search: Option<Search>,
    pub recent: Vec<InvitationView>,
    /// Invitations with an obligation in doubt or failed.
    pub attention: Vec<InvitationView>,
    /// Claims the sweep found before any webhook, most recent first.
    pub found_by_sweep: Vec<InvitationView>,
    /// Creations and cancellations without a known outcome, most recent first.
    pub outcome_unknown: Vec<InvitationView>,
    /// The audit's first page of inviters, and its totals over all.
    pub audit: AuditPage,
    /// Per source: invitations waiting for their data, and whether that
    /// source can be fetched from.
    pub awaiting_data: Vec<(crate::source::Source, u64, bool)>,
}

/// How many rows each part of the status page shows at most.
#[derive(Debug, Clone, Copy)]
pub struct StatusPageLimits {
    pub search: usize,
    pub recent: usize,
    pub attention: usize,
    /// Inviters of the audit's first page.
    pub inviters: usize,
}

/// The status page's data, with the search for `q` when there is one.
///
/// # Errors
/// When SQLite fails or a stored row cannot be read.
pub fn status_page(
    conn: &Connection,
    q: Option<&str>,
    limits: StatusPageLimits,
    now: chrono::DateTime<chrono::Utc>,
    horizon: std::time::Duration,
    fetching: Fetching,
) -> Result<StatusPage, ProjectionError> {
    let shown = |states: Vec<InvitationState>| states.iter().map(|s| view::shown(s, fetching)).collect();
    Ok(StatusPage {
        head: ledger::head(conn)?.0,
        checkpoint: super::store::checkpoint(conn)?,
        counts: obligation_counts(conn)?,
        search: q.map(|q| search(conn, q, limits.search, fetching)).transpose()?,
        recent: shown(recent(conn, limits.recent)?),
        attention: shown(needing_an_operator(conn, limits.attention)?),
        found_by_sweep: shown(found_by_sweep(conn, limits.attention)?),
        outcome_unknown: shown(query(
            conn,
            "SELECT invitation_id, state FROM invitations WHERE outcome_unknown = 1 ORDER BY last_seq DESC LIMIT ?1",
            params![limits.attention as i64],
        )?),
        audit: audit_page::page(
            conn,
            &AuditPageRequest { limit: limits.inviters, ..Default::default() },
            now,
            horizon,
        )?,
        awaiting_data: awaiting_data(conn)?.into_iter().map(|(s, n)| (s, n, fetching.can(s))).collect(),
    })
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
