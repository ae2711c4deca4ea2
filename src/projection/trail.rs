//! One invitation's money trail, as an operator reads it: every ledger event
//! of its stream in `seq` order, decoded into what it says, with its place
//! in the hash chain; and the ledger's activity per hour, for the status
//! page's charts. Plain reads of a projection connection (the ledger is
//! attached as `ledger`), functions of their inputs: "now" is a parameter.
//!
//! Signatures are not re-verified here: that needs the configured keys,
//! which the read side does not hold. The page's handler does it with the
//! stored body and signature this returns.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::events::{self, Fact, InternalEvent};
use super::store::ProjectionError;
use super::view::{self, InvitationView};
use crate::ledger::{self, hash, Hash, LedgerEvent};
use crate::money::Money;
use crate::source::{Report, Source};

/// Most events one trail shows; an invitation with more is a fault worth
/// seeing (the rest are counted, and the read API pages through them).
pub const TRAIL_CAP: usize = 1000;

/// One invitation and every event of its stream.
#[derive(Debug, Clone)]
pub struct Trail {
    pub invitation: InvitationView,
    /// In `seq` order, at most [`TRAIL_CAP`].
    pub events: Vec<TrailEvent>,
    /// Events of the stream beyond [`TRAIL_CAP`], not read.
    pub more: u64,
    /// The ledger's last seq and the projections' checkpoint.
    pub head: u64,
    pub checkpoint: u64,
    /// Each currency's decimals as this invitation's own bodies state them.
    pub decimals: Decimals,
}

/// Currencies' decimals as a source stated them beside a currency code
/// (`currency: {code, decimals}`, in any of its spellings), so an amount
/// kept without them can still be shown as 5.00 USD: what the source
/// said, never a guess.
///
/// [`Money`] carries its own decimals now (both invitation parsers read
/// them, the projection keeps them, and the configured incentive states
/// them), and those always win here; an amount that has none is shown
/// with its currency's ISO 4217 decimals ([`Money::shown_decimals`]). But
/// some amounts the page shows come without them and in a currency no
/// standard knows, so this is not redundant:
/// - requests recorded before the parsers (or the incentive) kept
///   decimals stay in the ledger without them (a refold gives the
///   snapshot its decimals, not an old `*.requested` body);
/// - a snapshot that names its currency by bare code (`"currency": "USD"`)
///   can win the fold over one that stated the decimals.
///
/// Only an amount in the same currency takes decimals from here: an
/// incentive in USD on an invitation in EUR keeps USD's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decimals(BTreeMap<String, u32>);

impl Decimals {
    /// `v` with every amount given the decimals its source stated.
    pub fn view(&self, v: &InvitationView) -> InvitationView {
        let mut v = v.clone();
        v.payment_amount = v.payment_amount.as_ref().map(|m| self.apply(m));
        for o in [&mut v.payout, &mut v.incentive, &mut v.notification, &mut v.failure_notice] {
            if let Some(r) = o.requested.as_mut() {
                r.amount = r.amount.as_ref().map(|m| self.apply(m));
            }
        }
        v
    }

    /// Reads every currency object in a JSON body.
    pub fn learn(&mut self, body: &[u8]) {
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            self.walk(&v);
        }
    }

    fn walk(&mut self, v: &Value) {
        match v {
            Value::Object(o) => {
                let code = ["code", "uma_currency_code"].iter().find_map(|k| o.get(*k).and_then(Value::as_str));
                let decimals = ["decimals", "uma_currency_decimals"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(crate::money::decimals_of));
                if let (Some(c), Some(d)) = (code, decimals) {
                    self.0.insert(c.to_owned(), d);
                }
                o.values().for_each(|x| self.walk(x));
            }
            Value::Array(a) => a.iter().for_each(|x| self.walk(x)),
            _ => {}
        }
    }

    /// `m` with its decimals: its own, else the ones stated for its
    /// currency, else none (then shown as the count of smallest units).
    pub fn apply(&self, m: &Money) -> Money {
        match m.decimals() {
            Some(_) => m.clone(),
            None => m.clone().with_decimals(self.0.get(m.currency()).copied()),
        }
    }
}

/// The decimals the invitation `invitation_id`'s own events state.
///
/// # Errors
/// When SQLite fails.
pub fn decimals(conn: &Connection, invitation_id: &str) -> Result<Decimals, ProjectionError> {
    let mut d = Decimals::default();
    let folded_up_to = super::store::checkpoint(conn)?;
    let Some(state) = super::store::load(conn, invitation_id)? else { return Ok(d) };
    let (seqs, _) = stream_seqs(conn, &state, folded_up_to)?;
    let mut stmt = conn.prepare_cached(
        "SELECT body FROM ledger.events WHERE seq = ?1 AND stream = ?2 AND kind IN ('webhook.received', 'invitation.fetched')",
    )?;
    for seq in seqs {
        let mut rows = stmt.query(params![seq as i64, invitation_id])?;
        if let Some(row) = rows.next()? {
            if let Ok(body) = row.get_ref(0)?.as_bytes() {
                d.learn(body);
            }
        }
    }
    Ok(d)
}

/// The `seq`s of the invitation's events (at most [`TRAIL_CAP`], oldest
/// first) and how many there are: those its projected `state` lists, and
/// any of its stream appended after `folded_up_to`, the projection
/// checkpoint read before `state` was (so `state` covers every event up to
/// it). Only those few rows past the checkpoint are read from the ledger.
fn stream_seqs(
    conn: &Connection,
    state: &super::state::InvitationState,
    folded_up_to: u64,
) -> Result<(Vec<u64>, u64), ProjectionError> {
    let mut all = state.events.clone();
    let newer = conn
        .prepare_cached("SELECT seq FROM ledger.events WHERE seq > ?1 AND stream = ?2 ORDER BY seq")?
        .query_map(params![folded_up_to as i64, state.invitation_id], |r| r.get::<_, i64>(0).map(|s| s as u64))?
        .collect::<Result<Vec<u64>, _>>()?;
    for seq in newer {
        if let Err(at) = all.binary_search(&seq) {
            all.insert(at, seq);
        }
    }
    let total = all.len() as u64;
    all.truncate(TRAIL_CAP);
    Ok((all, total))
}

/// One stored event and what it says.
#[derive(Debug, Clone)]
pub struct TrailEvent {
    /// As stored: the exact body bytes and signature header among it.
    pub event: LedgerEvent,
    /// The event just before it in the whole ledger (of any invitation);
    /// `None` for seq 1, whose predecessor is the 32 zero bytes.
    pub predecessor: Option<Predecessor>,
    /// The stored `prev_hash` is the predecessor's hash and the stored hash
    /// is this event's contents chained onto it: nothing here was altered.
    pub chain_intact: bool,
    pub said: Said,
}

/// The event before another one in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predecessor {
    pub seq: u64,
    pub hash: Hash,
    /// It belongs to the same invitation (so the page can link to it).
    pub same_stream: bool,
}

/// What an event says, decoded for display.
#[derive(Debug, Clone)]
pub enum Said {
    /// A verified webhook as received: its envelope, and what it says
    /// about the invitation read the way its source writes it.
    Webhook { source: Source, envelope: Envelope, report: Box<Report> },
    /// An event the service appended (a request, an outcome, a fetch, an
    /// operator's decision).
    Internal(InternalEvent),
    /// The fold could not read it either; why.
    Undecodable(String),
}

/// The delivery fields of a webhook body, whichever source's spelling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Lightspark's `event_type`, Grid's `type`.
    pub event_type: Option<String>,
    /// Lightspark's `event_id`, Grid's `id` (or `webhookId`).
    pub delivery_id: Option<String>,
    pub timestamp: Option<String>,
}

impl Envelope {
    /// Reads the envelope of a JSON object body; empty for anything else.
    pub fn of(body: &[u8]) -> Self {
        let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(body) else { return Self::default() };
        let text = |names: &[&str]| names.iter().find_map(|n| o.get(*n).and_then(Value::as_str)).map(str::to_owned);
        Envelope {
            event_type: text(&["event_type", "type"]),
            delivery_id: text(&["event_id", "id", "webhookId"]),
            timestamp: text(&["timestamp"]),
        }
    }
}

fn decoded(e: &LedgerEvent) -> Said {
    match events::decode(e.view()) {
        Ok(Fact::Webhook(source, report)) => {
            Said::Webhook { source, envelope: Envelope::of(&e.body), report: Box::new(report) }
        }
        Ok(Fact::Internal(internal)) => Said::Internal(internal),
        Err(u) => Said::Undecodable(u.reason),
    }
}

/// The trail of the invitation with id or code `id_or_code`; `None` when
/// there is no such invitation.
///
/// # Errors
/// When SQLite fails or the stored projection cannot be read.
pub fn trail(conn: &Connection, id_or_code: &str) -> Result<Option<Trail>, ProjectionError> {
    let folded_up_to = super::store::checkpoint(conn)?;
    let Some(state) = super::query::find(conn, id_or_code)? else { return Ok(None) };
    let (seqs, total) = stream_seqs(conn, &state, folded_up_to)?;
    let mut stored: Vec<LedgerEvent> = Vec::with_capacity(seqs.len());
    for seq in seqs {
        if let Some(e) = event_of_invitation(conn, &state.invitation_id, seq)? {
            stored.push(e);
        }
    }
    let mut before = conn.prepare_cached("SELECT hash, stream FROM ledger.events WHERE seq = ?1")?;
    let mut events = Vec::with_capacity(stored.len());
    let mut decimals = Decimals::default();
    for e in stored {
        if matches!(e.kind.as_str(), "webhook.received" | "invitation.fetched") {
            decimals.learn(&e.body);
        }
        let predecessor = if e.seq > 1 {
            before
                .query_row([e.seq as i64 - 1], |r| {
                    Ok(Predecessor {
                        seq: e.seq - 1,
                        hash: ledger::blob32(r.get_ref(0)?),
                        same_stream: r.get::<_, Option<String>>(1)?.as_deref() == Some(state.invitation_id.as_str()),
                    })
                })
                .optional()?
        } else {
            None
        };
        let expected_prev = predecessor.as_ref().map_or(hash::GENESIS, |p| p.hash);
        let chain_intact = e.prev_hash == expected_prev && e.chain_hash(&e.prev_hash) == e.hash;
        let said = decoded(&e);
        events.push(TrailEvent { event: e, predecessor, chain_intact, said });
    }
    Ok(Some(Trail {
        invitation: view::view(&state),
        more: total.saturating_sub(events.len() as u64),
        events,
        head: ledger::head(conn)?.0,
        checkpoint: super::store::checkpoint(conn)?,
        decimals,
    }))
}

/// One event of the whole ledger as stored, if it belongs to the
/// invitation `invitation_id`: the page's "exact bytes" link serves its
/// body.
///
/// # Errors
/// When SQLite fails.
pub fn event_of_invitation(
    conn: &Connection,
    invitation_id: &str,
    seq: u64,
) -> Result<Option<LedgerEvent>, ProjectionError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {} FROM ledger.events WHERE seq = ?1 AND stream = ?2", LedgerEvent::COLUMNS))?
        .query_row(params![seq as i64, invitation_id], LedgerEvent::from_row)
        .optional()?)
}

/// How many hours the charts cover, the current one last.
pub const ACTIVITY_HOURS: usize = 48;

/// Counts of one hour (UTC) of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hour {
    pub start: DateTime<Utc>,
    /// `webhook.received` events (every source).
    pub webhooks: u64,
    /// `payout.succeeded`: invitees paid.
    pub payouts: u64,
    /// `incentive.succeeded`: incentives forwarded to inviters.
    pub incentives: u64,
}

/// The ledger's events about invitations per hour over the last `hours`
/// hours, oldest first; every hour is there, with zeros when nothing
/// happened.
///
/// Read from the counts per hour the fold keeps ([`super::tally`]): at
/// most `hours` rows, however many events the window holds. An event is
/// counted in the hour its `recorded_at` names, as the writer stamped it.
///
/// # Errors
/// When SQLite fails.
pub fn activity(conn: &Connection, now: DateTime<Utc>, hours: usize) -> Result<Vec<Hour>, ProjectionError> {
    let current = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    let first = current - Duration::hours(hours.saturating_sub(1) as i64);
    let mut out: Vec<Hour> = (0..hours as i64)
        .map(|i| Hour { start: first + Duration::hours(i), webhooks: 0, payouts: 0, incentives: 0 })
        .collect();
    let key = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H").to_string();
    let mut stmt = conn.prepare_cached(
        "SELECT hour, webhooks, payouts, incentives FROM activity_hours WHERE hour >= ?1 AND hour <= ?2 ORDER BY hour",
    )?;
    let rows = stmt.query_map(params![key(first), key(current)], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
    })?;
    for row in rows {
        let (hour, webhooks, payouts, incentives) = row?;
        let Some(slot) = out.iter_mut().find(|h| key(h.start) == hour) else { continue };
        slot.webhooks = webhooks.max(0) as u64;
        slot.payouts = payouts.max(0) as u64;
        slot.incentives = incentives.max(0) as u64;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::writer::LedgerWriter;
    use crate::ledger::NewEvent;

    fn claim(n: u32, invitation: &str) -> NewEvent {
        let body = format!(
            r#"{{"event_type":"UMA_INVITATION_CLAIMED","event_id":"e{n}","timestamp":"2026-11-28T10:00:0{n}Z","entity_id":"{invitation}"}}"#
        );
        NewEvent::test_webhook(n, Some(invitation), body)
    }

    #[tokio::test]
    async fn the_trail_lists_folded_events_and_those_appended_since_the_last_fold() {
        // Given two events of an invitation (and one of another) folded into
        // the projections, then two more of it appended and not folded yet
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let (writer, thread) = LedgerWriter::start(&db).unwrap();
        writer.append_all(vec![claim(1, "Inv:a"), claim(2, "Inv:b"), claim(3, "Inv:a")]).await.unwrap();
        let mut conn = super::super::store::open(&db).unwrap();
        assert_eq!(super::super::store::catch_up(&mut conn, 100).unwrap(), 3);
        writer.append_all(vec![claim(4, "Inv:a"), claim(5, "Inv:b"), claim(6, "Inv:a")]).await.unwrap();
        drop(writer);
        thread.join().unwrap();
        // When its trail is read
        let trail = trail(&conn, "Inv:a").unwrap().expect("the invitation is projected");
        // Then it holds all four of its events, in seq order, and no other's
        let seqs: Vec<u64> = trail.events.iter().map(|e| e.event.seq).collect();
        assert_eq!(seqs, [1, 3, 4, 6]);
        assert_eq!((trail.checkpoint, trail.head, trail.more), (3, 6, 0));
    }

    #[test]
    fn envelopes_are_read_in_either_sources_spelling() {
        // given a Lightspark body, a Grid body, an old Grid body and a non-object
        let lightspark = br#"{"event_type":"UMA_INVITATION_CLAIMED","event_id":"e1","timestamp":"t"}"#;
        let grid = br#"{"id":"Webhook:1","type":"INVITATION.CLAIMED","timestamp":"t"}"#;
        let older = br#"{"webhookId":"w1","type":"INVITATION_CLAIMED"}"#;
        // then each names its type and delivery id, and the non-object nothing
        assert_eq!(Envelope::of(lightspark).event_type.as_deref(), Some("UMA_INVITATION_CLAIMED"));
        assert_eq!(Envelope::of(lightspark).delivery_id.as_deref(), Some("e1"));
        assert_eq!(Envelope::of(grid).delivery_id.as_deref(), Some("Webhook:1"));
        assert_eq!(Envelope::of(older).delivery_id.as_deref(), Some("w1"));
        assert_eq!(Envelope::of(b"[1]"), Envelope::default());
    }

    #[test]
    fn decimals_are_learnt_from_currency_objects_in_any_spelling() {
        // given a Lightspark body, a GraphQL answer and a body without decimals
        let mut d = Decimals::default();
        d.learn(br#"{"data":{"payment_amount":{"value":500,"currency":{"code":"USD","decimals":2}}}}"#);
        d.learn(br#"{"entity":{"x":{"uma_currency_amount_currency":{"uma_currency_code":"JPY","uma_currency_decimals":0}}}}"#);
        d.learn(br#"{"amount":{"currency":"EUR"}}"#);
        d.learn(br#"{"amount":{"currency":{"code":"ABC","decimals":3}}}"#);
        // then amounts in those currencies show with them, others in their
        // standard decimals, and a code nobody gave decimals for as it was
        let show = |v, c: &str| d.apply(&Money::new(v, c).unwrap()).display();
        assert_eq!(
            (show(500, "USD"), show(1500, "JPY"), show(1500, "ABC"), show(700, "EUR"), show(700, "XYZ")),
            (
                "5.00 USD".into(),
                "1500 JPY".into(),
                "1.500 ABC".into(),
                "7.00 EUR".into(),
                "700 XYZ (minor units)".into()
            )
        );
        let own = Money::new(5, "USD").unwrap().with_decimals(Some(3));
        assert_eq!(d.apply(&own).display(), "0.005 USD", "an amount's own decimals win");
    }

    #[test]
    fn activity_counts_each_hour_of_the_window_and_nothing_before_it() {
        // given a ledger whose events were recorded at chosen times, one a
        // second before the window opens
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let written = ledger::open(&path).unwrap();
        let events = [
            ("webhook.received", "2026-11-28T09:59:59.999999Z"),
            ("webhook.received", "2026-11-28T10:00:00.000000Z"),
            ("payout.succeeded", "2026-11-29T15:30:00.000000Z"),
            ("incentive.succeeded", "2026-11-29T15:31:00.000000Z"),
            ("payout.requested", "2026-11-30T09:20:00.000000Z"),
            ("webhook.received", "2026-11-30T09:40:00.000000Z"),
            ("webhook.received", "2026-11-30T09:41:00.000000Z"),
        ];
        for (i, (kind, at)) in events.iter().enumerate() {
            written
                .execute(
                    "INSERT INTO events (seq, event_key, kind, stream, recorded_at, body, signature, prev_hash, hash)
                     VALUES (?1, ?2, ?3, 'Inv:1', ?4, x'7b7d', NULL, zeroblob(32), zeroblob(32))",
                    params![i as i64 + 1, format!("k{i}"), kind, at],
                )
                .unwrap();
        }
        drop(written);
        let mut conn = crate::projection::store::open(&path).unwrap();
        crate::projection::store::catch_up(&mut conn, 3).unwrap();
        let now = crate::time::parse_time("2026-11-30T09:45:00Z").unwrap();

        // when the last 48 hours are counted
        let hours = activity(&conn, now, ACTIVITY_HOURS).unwrap();

        // then every hour is there, the oldest first, and each event in its own
        assert_eq!(hours.len(), 48);
        assert_eq!(crate::time::rfc3339(hours[0].start), "2026-11-28T10:00:00.000000Z");
        assert_eq!(crate::time::rfc3339(hours[47].start), "2026-11-30T09:00:00.000000Z");
        assert_eq!((hours[0].webhooks, hours[47].webhooks), (1, 2));
        assert_eq!((hours[29].payouts, hours[29].incentives), (1, 1));
        let all: u64 = hours.iter().map(|h| h.webhooks + h.payouts + h.incentives).sum();
        assert_eq!(all, 5, "the request and the event before the window are not counted");
    }
}
