//! The incentive audit read a page at a time: up to `limit` invitations in
//! (inviter, invitation id) order through the index of the inviter the
//! audit credits, grouped by inviter, each inviter's totals and the overall
//! totals from the aggregates the fold keeps ([`super::tally`]). A page
//! costs the same five statements whatever the ledger holds;
//! [`for_each_page`] walks every page for an export (holding one inviter's
//! invitations and the anomalies it collects).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::audit::{self, audit_inviter, Anomaly, IncentiveAudit, InviterAudit, Totals};
use super::state::InvitationState;
use super::store::{decode_rows, ProjectionError};

/// Which part of the audit to read.
#[derive(Debug, Clone, Default)]
pub struct AuditPageRequest {
    /// Only this inviter's invitations.
    pub inviter_uma: Option<String>,
    /// Exclusive cursor: the `next` of the previous page.
    pub after: Option<String>,
    /// Most invitations on the page: an inviter with more continues on the
    /// next page (with its whole totals on each).
    pub limit: usize,
}

/// One page of the incentive audit: the audit's JSON with the cursor of
/// the next page (`null`: the last).
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct AuditPage {
    #[serde(flatten)]
    pub audit: IncentiveAudit,
    pub next: Option<String>,
}

/// Separates the inviter from the invitation id in a cursor.
const CURSOR_SEPARATOR: char = '\n';

/// One page of the audit: up to `limit` invitations in (inviter,
/// invitation id) order after the cursor, grouped by inviter, each inviter
/// with its totals over all its invitations (from the aggregates), the
/// anomalies of the page's invitations, and the totals over every inviter
/// (over the one asked for, with `inviter_uma`). Three statements and the
/// totals' two, whatever the ledger holds.
///
/// # Errors
/// When SQLite fails or a stored row cannot be read.
pub fn page(
    conn: &Connection,
    req: &AuditPageRequest,
    now: DateTime<Utc>,
    horizon: Duration,
) -> Result<AuditPage, ProjectionError> {
    let limit = (req.limit + 1) as i64;
    let mut rows = match &req.inviter_uma {
        Some(inviter) => query(
            conn,
            "SELECT invitation_id, state FROM invitations
             WHERE audit_inviter = ?1 AND invitation_id > ?2 ORDER BY invitation_id LIMIT ?3",
            params![inviter, req.after.as_deref().unwrap_or(""), limit],
        )?,
        None => {
            let (inviter, id) = match req.after.as_deref().map(|a| a.split_once(CURSOR_SEPARATOR).unwrap_or((a, ""))) {
                Some((inviter, id)) => (inviter, id),
                None => ("", ""),
            };
            query(
                conn,
                "SELECT invitation_id, state FROM invitations
                 WHERE audit_inviter IS NOT NULL AND (audit_inviter, invitation_id) > (?1, ?2)
                 ORDER BY audit_inviter, invitation_id LIMIT ?3",
                params![inviter, id, limit],
            )?
        }
    };
    let next = if rows.len() > req.limit {
        rows.truncate(req.limit);
        rows.last().map(|s| match &req.inviter_uma {
            Some(_) => s.invitation_id.clone(),
            None => format!("{}{CURSOR_SEPARATOR}{}", audit_inviter(s).unwrap_or_default(), s.invitation_id),
        })
    } else {
        None
    };
    let mut audit = audit::audit(&rows, now, horizon);
    if let (Some(first), Some(last)) = (audit.inviters.first(), audit.inviters.last()) {
        let mut totals = inviter_totals(conn, &first.inviter_uma.clone(), &last.inviter_uma.clone())?;
        for inviter in &mut audit.inviters {
            inviter.totals = totals.remove(&inviter.inviter_uma).unwrap_or_default();
        }
    }
    audit.totals = match &req.inviter_uma {
        Some(inviter) => {
            let mut t = inviter_totals(conn, inviter, inviter)?.remove(inviter).unwrap_or_default();
            t.inviters = Some(u64::from(t.validated + t.ineligible + t.pending > 0));
            t
        }
        None => totals(conn)?,
    };
    Ok(AuditPage { audit, next })
}

/// The totals of the inviters from `first` to `last` (in UMA order), from
/// the aggregates.
fn inviter_totals(conn: &Connection, first: &str, last: &str) -> Result<BTreeMap<String, Totals>, ProjectionError> {
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT inviter_uma, validated, ineligible, pending FROM audit_inviters
         WHERE inviter_uma >= ?1 AND inviter_uma <= ?2",
    )?;
    let rows = stmt.query_map(params![first, last], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
    })?;
    for row in rows {
        let (inviter, validated, ineligible, pending) = row?;
        let t = out.entry(inviter).or_default();
        (t.validated, t.ineligible, t.pending) = (validated as u64, ineligible as u64, pending as u64);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT inviter_uma, currency, decimals, minor_units FROM audit_forwarded
         WHERE inviter_uma >= ?1 AND inviter_uma <= ?2 AND inviter_uma <> '' ORDER BY inviter_uma, currency, decimals",
    )?;
    let rows = stmt.query_map(params![first, last], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
    })?;
    for row in rows {
        let (inviter, currency, decimals, value) = row?;
        let t = out.entry(inviter).or_default();
        *t.forwarded.entry(currency.clone()).or_default() += value;
        if let Ok(d) = u32::try_from(decimals) {
            t.forwarded_decimals.entry(currency).or_insert(d);
        }
    }
    Ok(out)
}

/// The states `sql` selects (`invitation_id, state` from `invitations`).
fn query(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<InvitationState>, ProjectionError> {
    let mut stmt = conn.prepare_cached(sql)?;
    decode_rows(&mut stmt, params)
}

/// The audit's totals over every inviter, from the aggregates.
///
/// # Errors
/// When SQLite fails.
pub fn totals(conn: &Connection) -> Result<Totals, ProjectionError> {
    let mut t = Totals::default();
    let mut stmt = conn.prepare_cached("SELECT name, n FROM audit_totals")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (name, n) = row?;
        let n = n.max(0) as u64;
        match name.as_str() {
            "validated" => t.validated = n,
            "ineligible" => t.ineligible = n,
            "pending" => t.pending = n,
            "inviters" => t.inviters = Some(n),
            _ => {}
        }
    }
    t.inviters.get_or_insert(0);
    let mut stmt = conn.prepare_cached(
        "SELECT currency, decimals, minor_units FROM audit_forwarded WHERE inviter_uma = '' ORDER BY currency, decimals",
    )?;
    let mut decimals: BTreeMap<String, u32> = BTreeMap::new();
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))? {
        let (currency, d, value) = row?;
        *t.forwarded.entry(currency.clone()).or_default() += value;
        if let Ok(d) = u32::try_from(d) {
            decimals.entry(currency).or_insert(d);
        }
    }
    t.forwarded_decimals = decimals;
    Ok(t)
}

/// Calls `each` with every inviter of the audit (or `inviter_uma` alone)
/// in UMA order, reading
/// `page_size` invitations at a time (an inviter split between pages is
/// joined first); returns the totals and every anomaly. What the CLI's
/// export streams.
///
/// # Errors
/// When SQLite fails, a stored row cannot be read, or `each` fails.
pub fn for_each_page(
    conn: &Connection,
    inviter_uma: Option<&str>,
    page_size: usize,
    now: DateTime<Utc>,
    horizon: Duration,
    mut each: impl FnMut(&InviterAudit) -> anyhow::Result<()>,
) -> anyhow::Result<(Totals, Vec<Anomaly>)> {
    let mut req = AuditPageRequest { inviter_uma: inviter_uma.map(str::to_owned), limit: page_size, after: None };
    let mut anomalies = Vec::new();
    // The last inviter read, which the next page may continue.
    let mut open: Option<InviterAudit> = None;
    loop {
        let p = page(conn, &req, now, horizon)?;
        for inviter in p.audit.inviters {
            match open.as_mut() {
                Some(o) if o.inviter_uma == inviter.inviter_uma => o.invitations.extend(inviter.invitations),
                _ => {
                    if let Some(done) = open.replace(inviter) {
                        each(&done)?;
                    }
                }
            }
        }
        anomalies.extend(p.audit.anomalies);
        match p.next {
            Some(next) => req.after = Some(next),
            None => {
                if let Some(done) = open {
                    each(&done)?;
                }
                return Ok((p.audit.totals, anomalies));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::state::{InvitationState, Versioned};
    use crate::projection::store::{self, save_with, Row, SAVE};

    #[test]
    fn every_page_of_one_inviter_is_walked_and_joined() {
        // Given three invitations of Alice and one of Bob
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(&dir.path().join("ledger.db")).unwrap();
        let mut insert = conn.prepare(SAVE).unwrap();
        for (id, inviter) in [("a1", "$alice@x"), ("a2", "$alice@x"), ("a3", "$alice@x"), ("b1", "$bob@x")] {
            let mut s = InvitationState::new(id);
            s.inviter_uma = Some(Versioned { value: inviter.to_owned(), at: 0, seq: 1 });
            save_with(&mut insert, &Row::of(&s)).unwrap();
        }
        drop(insert);
        // When Alice's audit is read two invitations at a time
        let mut seen = Vec::new();
        let (_, anomalies) = for_each_page(&conn, Some("$alice@x"), 2, Utc::now(), Duration::from_secs(60), |inv| {
            seen.push((inv.inviter_uma.clone(), inv.invitations.len()));
            Ok(())
        })
        .unwrap();
        // Then she comes once, with her three invitations, and Bob not at all
        assert_eq!(seen, [("$alice@x".to_owned(), 3)]);
        assert!(anomalies.is_empty());
    }
}
