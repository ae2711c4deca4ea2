//! The aggregates the fold keeps beside the rows, so that no page, scrape
//! or audit page counts rows to show a total: obligations per (kind,
//! state), the incentive audit's totals per inviter and overall, and the
//! ledger's activity per hour.
//!
//! Each invitation contributes a [`Tally`] (a pure function of its state).
//! Saving a row moves the aggregates from the old tally to the new one, in
//! the same transaction as the row and the checkpoint; a rebuild adds each
//! row's tally once. [`super::rebuild::checksum`] covers the aggregates, so
//! `rebuild --check` proves the incremental ones equal a full
//! recomputation.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::audit::audit_inviter;
use super::events::ObligationKind;
use super::state::InvitationState;
use super::view::{obligation_state, ObligationState};
use super::ProjectionError;

/// The aggregates' tables, in the order the checksum covers them: each
/// table's columns and its primary key.
pub(super) const TABLES: &[(&str, &str, &str)] = &[
    ("obligation_counts", "kind, state, n", "kind, state"),
    ("audit_totals", "name, n", "name"),
    ("audit_inviters", "inviter_uma, invitations, validated, ineligible, pending", "inviter_uma"),
    ("audit_forwarded", "inviter_uma, currency, decimals, minor_units, n", "inviter_uma, currency, decimals"),
    ("activity_hours", "hour, webhooks, payouts, incentives", "hour"),
];

/// The inviter's bucket in the audit's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Decision {
    Validated,
    Ineligible,
    Pending,
}

/// What one invitation adds to the aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Each obligation's state, in [`ObligationKind::ALL`] order.
    pub obligations: [ObligationState; 4],
    /// Whom the audit credits, its decision, and what was forwarded to it.
    pub audit: Option<Audited>,
}

/// An invitation's part in the incentive audit's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audited {
    /// The inviter the audit credits.
    pub inviter: String,
    pub decision: Decision,
    /// What was forwarded: currency, decimals (-1: not stated), minor units.
    pub forwarded: Option<(String, i64, i64)>,
}

impl Tally {
    /// What `s` adds to the aggregates.
    pub fn of(s: &InvitationState) -> Tally {
        let obligations = ObligationKind::ALL.map(|k| obligation_state(s, k).0);
        let audit = audit_inviter(s).map(|inviter| {
            let decision = match s.incentives_status().map(|x| x.as_str()) {
                Some("VALIDATED") => Decision::Validated,
                Some("INELIGIBLE") => Decision::Ineligible,
                _ => Decision::Pending,
            };
            let forwarded = (obligations[1] == ObligationState::Succeeded)
                .then(|| s.obligation(ObligationKind::InviterIncentive).amount.as_ref())
                .flatten()
                .map(|m| (m.currency().to_owned(), m.decimals().map_or(-1, i64::from), m.value()));
            Audited { inviter, decision, forwarded }
        });
        Tally { obligations, audit }
    }
}

/// Changes to the aggregates not written yet: folded rows' tallies in and
/// out, events per hour. Written by [`Deltas::flush`]; kept small by
/// flushing every batch.
#[derive(Debug, Default)]
pub struct Deltas {
    obligations: BTreeMap<(&'static str, &'static str), i64>,
    totals: BTreeMap<&'static str, i64>,
    inviters: BTreeMap<String, [i64; 4]>,
    forwarded: BTreeMap<(String, String, i64), (i64, i64)>,
    hours: BTreeMap<String, [i64; 3]>,
}

impl Deltas {
    /// Adds (`sign` 1) or takes away (`sign` -1) one invitation's tally.
    pub fn add(&mut self, t: &Tally, sign: i64) {
        for (kind, state) in ObligationKind::ALL.iter().zip(t.obligations) {
            *self.obligations.entry((kind.as_str(), state.as_str())).or_default() += sign;
        }
        let Some(Audited { inviter, decision, forwarded }) = &t.audit else { return };
        let (column, total) = match decision {
            Decision::Validated => (1, "validated"),
            Decision::Ineligible => (2, "ineligible"),
            Decision::Pending => (3, "pending"),
        };
        *self.totals.entry(total).or_default() += sign;
        let counts = self.inviters.entry(inviter.clone()).or_default();
        counts[0] += sign;
        counts[column] += sign;
        if let Some((currency, decimals, value)) = forwarded {
            for who in [inviter.as_str(), ""] {
                let e = self.forwarded.entry((who.to_owned(), currency.clone(), *decimals)).or_default();
                e.0 += sign * value;
                e.1 += sign;
            }
        }
    }

    /// Moves the aggregates from `old` (none: a new invitation) to `new`.
    pub fn replace(&mut self, old: Option<&Tally>, new: &Tally) {
        if old == Some(new) {
            return;
        }
        if let Some(old) = old {
            self.add(old, -1);
        }
        self.add(new, 1);
    }

    /// Counts an event of `kind` recorded at `recorded_at` in its hour's
    /// activity, when it is one the charts show.
    pub fn event(&mut self, kind: &str, recorded_at: &str) {
        let column = match kind {
            "webhook.received" => 0,
            "payout.succeeded" => 1,
            "incentive.succeeded" => 2,
            _ => return,
        };
        let hour = recorded_at.get(..13).unwrap_or(recorded_at);
        self.hours.entry(hour.to_owned()).or_default()[column] += 1;
    }

    /// Adds the changes of `other` to these.
    pub fn merge(&mut self, other: Deltas) {
        for (k, n) in other.obligations {
            *self.obligations.entry(k).or_default() += n;
        }
        for (k, n) in other.totals {
            *self.totals.entry(k).or_default() += n;
        }
        for (k, d) in other.inviters {
            let e = self.inviters.entry(k).or_default();
            for (a, b) in e.iter_mut().zip(d) {
                *a += b;
            }
        }
        for (k, (value, n)) in other.forwarded {
            let e = self.forwarded.entry(k).or_default();
            e.0 += value;
            e.1 += n;
        }
        for (k, d) in other.hours {
            let e = self.hours.entry(k).or_default();
            for (a, b) in e.iter_mut().zip(d) {
                *a += b;
            }
        }
    }

    /// How many inviters' changes are waiting: a rebuild flushes before
    /// this grows large.
    pub fn len(&self) -> usize {
        self.inviters.len() + self.forwarded.len() + self.hours.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.obligations.is_empty() && self.totals.is_empty()
    }

    /// Writes the changes into the aggregates (inside the caller's
    /// transaction) and forgets them. A count that reaches zero removes
    /// its row, so equal aggregates are equal tables.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn flush(&mut self, conn: &Connection) -> Result<(), ProjectionError> {
        let deltas = std::mem::take(self);
        for ((kind, state), n) in deltas.obligations {
            bump(conn, "obligation_counts", &["kind", "state"], params![kind, state], "n", n)?;
        }
        let mut inviters = 0i64;
        for (inviter, d) in deltas.inviters {
            if d == [0; 4] {
                continue;
            }
            let before: Option<i64> = conn
                .prepare_cached("SELECT invitations FROM audit_inviters WHERE inviter_uma = ?1")?
                .query_row([&inviter], |r| r.get(0))
                .optional()?;
            conn.prepare_cached(
                "INSERT INTO audit_inviters (inviter_uma, invitations, validated, ineligible, pending)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (inviter_uma) DO UPDATE SET invitations = invitations + excluded.invitations,
                     validated = validated + excluded.validated, ineligible = ineligible + excluded.ineligible,
                     pending = pending + excluded.pending",
            )?
            .execute(params![inviter, d[0], d[1], d[2], d[3]])?;
            let after = before.unwrap_or(0) + d[0];
            if after == 0 {
                conn.prepare_cached("DELETE FROM audit_inviters WHERE inviter_uma = ?1")?.execute([&inviter])?;
            }
            inviters += i64::from(after > 0) - i64::from(before.unwrap_or(0) > 0);
        }
        let mut totals = deltas.totals;
        *totals.entry("inviters").or_default() += inviters;
        for (name, n) in totals {
            bump(conn, "audit_totals", &["name"], params![name], "n", n)?;
        }
        for ((inviter, currency, decimals), (value, n)) in deltas.forwarded {
            if n == 0 && value == 0 {
                continue;
            }
            conn.prepare_cached(
                "INSERT INTO audit_forwarded (inviter_uma, currency, decimals, minor_units, n) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (inviter_uma, currency, decimals) DO UPDATE
                     SET minor_units = minor_units + excluded.minor_units, n = n + excluded.n",
            )?
            .execute(params![inviter, currency, decimals, value, n])?;
            conn.prepare_cached(
                "DELETE FROM audit_forwarded WHERE inviter_uma = ?1 AND currency = ?2 AND decimals = ?3 AND n = 0",
            )?
            .execute(params![inviter, currency, decimals])?;
        }
        for (hour, [webhooks, payouts, incentives]) in deltas.hours {
            conn.prepare_cached(
                "INSERT INTO activity_hours (hour, webhooks, payouts, incentives) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (hour) DO UPDATE SET webhooks = webhooks + excluded.webhooks,
                     payouts = payouts + excluded.payouts, incentives = incentives + excluded.incentives",
            )?
            .execute(params![hour, webhooks, payouts, incentives])?;
        }
        Ok(())
    }
}

/// Adds `n` to the count column `column` of `table`'s row keyed by `keys`
/// (bound as `params`), creating it, and removing it when it reaches zero.
/// Table and column names come from this module's fixed lists.
fn bump(
    conn: &Connection,
    table: &str,
    keys: &[&str],
    params: &[&dyn rusqlite::ToSql],
    column: &str,
    n: i64,
) -> Result<(), ProjectionError> {
    if n == 0 {
        return Ok(());
    }
    let names = keys.join(", ");
    let places: Vec<String> = (1..=keys.len() + 1).map(|i| format!("?{i}")).collect();
    let mut bound: Vec<&dyn rusqlite::ToSql> = params.to_vec();
    bound.push(&n);
    conn.prepare_cached(&format!(
        "INSERT INTO {table} ({names}, {column}) VALUES ({}) ON CONFLICT ({names}) DO UPDATE SET {column} = {column} + excluded.{column}",
        places.join(", ")
    ))?
    .execute(&*bound)?;
    let matches: Vec<String> = keys.iter().enumerate().map(|(i, k)| format!("{k} = ?{}", i + 1)).collect();
    conn.prepare_cached(&format!("DELETE FROM {table} WHERE {} AND {column} = 0", matches.join(" AND ")))?
        .execute(params)?;
    Ok(())
}

/// Obligations per (kind, state), as the fold keeps them.
///
/// # Errors
/// When SQLite fails.
pub fn obligation_counts(conn: &Connection) -> Result<Vec<(&'static str, String, i64)>, ProjectionError> {
    let mut stmt = conn.prepare_cached("SELECT kind, state, n FROM obligation_counts")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, state, n) = row?;
        if let Some(k) = ObligationKind::ALL.into_iter().position(|k| k.as_str() == kind) {
            out.push((k, state, n));
        }
    }
    // In the kinds' own order, then by state, as the page lists them.
    out.sort();
    Ok(out.into_iter().map(|(k, state, n)| (ObligationKind::ALL[k].as_str(), state, n)).collect())
}
