//! The incentive audit read a page of inviters at a time: the inviters in
//! UMA order from the aggregates the fold keeps ([`super::tally`]), their
//! invitations through the index of the inviter the audit credits, and the
//! overall totals from the aggregates. A page costs the same two or three
//! statements whatever the ledger holds; [`for_each_page`] walks every page
//! for an export in constant memory (but for the anomalies it collects).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::audit::{self, Anomaly, IncentiveAudit, InviterAudit, Totals};
use super::query::query;
use super::store::ProjectionError;

/// Which part of the audit to read.
#[derive(Debug, Clone, Default)]
pub struct AuditPageRequest {
    /// Only this inviter (then `after` and `limit` do not matter).
    pub inviter_uma: Option<String>,
    /// Exclusive cursor: the last inviter of the previous page.
    pub after: Option<String>,
    /// Most inviters on the page.
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

/// One page of the audit: its inviters, each with every invitation it is
/// credited with and its totals, the anomalies of those invitations, and
/// the totals over every inviter (over the one asked for, with
/// `inviter_uma`).
///
/// # Errors
/// When SQLite fails or a stored row cannot be read.
pub fn page(
    conn: &Connection,
    req: &AuditPageRequest,
    now: DateTime<Utc>,
    horizon: Duration,
) -> Result<AuditPage, ProjectionError> {
    if let Some(inviter) = &req.inviter_uma {
        let states = query(
            conn,
            "SELECT invitation_id, state FROM invitations WHERE audit_inviter = ?1 ORDER BY invitation_id",
            params![inviter],
        )?;
        return Ok(AuditPage { audit: audit::audit(&states, now, horizon), next: None });
    }
    let mut inviters: Vec<String> = conn
        .prepare_cached("SELECT inviter_uma FROM audit_inviters WHERE inviter_uma > ?1 ORDER BY inviter_uma LIMIT ?2")?
        .query_map(params![req.after.as_deref().unwrap_or(""), (req.limit + 1) as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let next = if inviters.len() > req.limit {
        inviters.truncate(req.limit);
        inviters.last().cloned()
    } else {
        None
    };
    let mut audit = match (inviters.first(), inviters.last()) {
        (Some(first), Some(last)) => {
            let states = query(
                conn,
                "SELECT invitation_id, state FROM invitations
                 WHERE audit_inviter >= ?1 AND audit_inviter <= ?2 ORDER BY audit_inviter, invitation_id",
                params![first, last],
            )?;
            audit::audit(&states, now, horizon)
        }
        _ => IncentiveAudit { inviters: Vec::new(), totals: Totals::default(), anomalies: Vec::new() },
    };
    audit.totals = totals(conn)?;
    Ok(AuditPage { audit, next })
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

/// Calls `each` with every inviter of the audit in UMA order, a page of
/// `page_size` at a time; returns the totals and every anomaly. What the
/// CLI's export streams.
///
/// # Errors
/// When SQLite fails, a stored row cannot be read, or `each` fails.
pub fn for_each_page(
    conn: &Connection,
    page_size: usize,
    now: DateTime<Utc>,
    horizon: Duration,
    mut each: impl FnMut(&InviterAudit) -> anyhow::Result<()>,
) -> anyhow::Result<(Totals, Vec<Anomaly>)> {
    let mut req = AuditPageRequest { limit: page_size, ..AuditPageRequest::default() };
    let mut anomalies = Vec::new();
    loop {
        let p = page(conn, &req, now, horizon)?;
        for inviter in &p.audit.inviters {
            each(inviter)?;
        }
        anomalies.extend(p.audit.anomalies);
        match p.next {
            Some(next) => req.after = Some(next),
            None => return Ok((p.audit.totals, anomalies)),
        }
    }
}
