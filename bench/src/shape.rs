//! The webhooks the bench sends and the ledgers it generates.
//!
//! `real` is the shape Lightspark delivers: a random 32-hex `event_id`,
//! `UmaInvitation:<uuid>` ids, random 8-character codes of letters and
//! digits, Python `json.dumps` spacing (`", "` and `": "`), about 780 bytes
//! with `data`, about 230 without (the envelope-only deliveries, the most
//! common in production). `compact` is the shape the bench generated until
//! 2026-11 (sequential `bench-00000001` ids, no spaces, ~450 bytes), kept
//! to compare with the figures of that time.
//!
//! Everything is drawn from one seeded [`SplitMix`], so a seed gives the
//! same bodies, byte for byte, on every run.

use invitation_ledger::ledger::NewEvent;
use invitation_ledger::lightspark::signature::sign;
use invitation_ledger::rng::SplitMix;
use invitation_ledger::vocab::{EventKey, EventKind, StreamId};

/// The webhook signing secret the bench's service runs with.
pub const SECRET: &str = "bench-signing-secret";

/// How many of the latest distinct webhooks a duplicate may repeat: a
/// retry of a recent delivery, as Lightspark's are.
const RECENT: usize = 4_096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Random ids and codes, `json.dumps` spacing, ~780 bytes (or ~230 envelope-only).
    Real,
    /// Sequential ids, no spaces, ~450 bytes: the bench's shape before 2026-11.
    Compact,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Real => "real",
            Shape::Compact => "compact",
        }
    }
}

/// What a stream of webhook requests looks like.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub shape: Shape,
    /// Share of requests that repeat an earlier webhook byte for byte.
    pub duplicates: f64,
    /// Share of distinct webhooks sent without `data` (real shape only).
    pub envelope_share: f64,
    pub seed: u64,
}

impl Mix {
    pub fn describe(&self) -> String {
        let envelope = match self.shape {
            Shape::Real if self.envelope_share >= 1.0 => ", envelope-only".to_owned(),
            Shape::Real if self.envelope_share > 0.0 => format!(", {:.0} % envelope-only", self.envelope_share * 100.0),
            _ => String::new(),
        };
        format!(
            "{} bodies{envelope}, {:.0} % duplicates, seed {}",
            self.shape.name(),
            self.duplicates * 100.0,
            self.seed
        )
    }
}

/// One signed request: the exact body bytes and their `lightspark-signature`.
#[derive(Clone, Debug)]
pub struct Signed {
    pub body: bytes::Bytes,
    pub signature: String,
}

impl Signed {
    fn of(body: String) -> Self {
        let signature = sign(SECRET.as_bytes(), body.as_bytes());
        Signed { body: bytes::Bytes::from(body), signature }
    }
}

/// One invitation as the generated bodies name it.
#[derive(Clone, Debug)]
pub struct Invitation {
    /// `UmaInvitation:<uuid>`
    pub id: String,
    pub code: String,
    inviter: String,
    invitee: String,
    /// Microseconds since the epoch.
    created_at: i64,
}

/// 2026-11-28T10:00:00Z, where generated event times start.
const START_MICROS: i64 = 1_795_860_000_000_000;

/// Draws invitations, ids and event times from one seeded generator.
pub struct Generator {
    rng: SplitMix,
    /// The time of the last event, microseconds since the epoch; every event
    /// is a little later than the one before.
    clock: i64,
}

const NAMES: [&str; 24] = [
    "walter", "trent", "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "victor", "wendy", "yusuf", "zoe", "mei", "omar",
];
const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self { rng: SplitMix::seeded(seed), clock: START_MICROS }
    }

    fn hex(&self, digits: usize) -> String {
        let mut s = String::with_capacity(digits + 16);
        while s.len() < digits {
            s.push_str(&format!("{:016x}", self.rng.next_u64()));
        }
        s.truncate(digits);
        s
    }

    /// A random 32-hex event id, as Lightspark's.
    pub fn event_id(&self) -> String {
        self.hex(32)
    }

    pub fn invitation(&mut self) -> Invitation {
        let u = self.hex(32);
        let id = format!("UmaInvitation:{}-{}-{}-{}-{}", &u[..8], &u[8..12], &u[12..16], &u[16..20], &u[20..]);
        let code: String = (0..8).map(|_| self.rng.pick(ALPHANUMERIC) as char).collect();
        // A thousand inviters, each inviting many; invitees mostly distinct.
        let inviter = format!("${}{}@vasp.example", self.rng.pick(&NAMES), self.rng.below(42));
        let invitee = format!("${}{}@other.example", self.rng.pick(&NAMES), self.rng.below(1_000));
        let created_at = self.clock - self.rng.between(3_600_000_000, 30 * 86_400_000_000) as i64;
        Invitation { id, code, inviter, invitee, created_at }
    }

    /// The next event time: ~80 µs after the last one on average.
    fn tick(&mut self) -> i64 {
        self.clock += self.rng.between(1, 160) as i64;
        self.clock
    }

    /// A real-shaped `UMA_INVITATION_CLAIMED` body about `inv` with `status`
    /// (`CLAIMED`, or `PENDING` for the snapshot before a claim), with
    /// `data` unless `envelope_only`. Returns the event id and the body.
    pub fn body(&mut self, inv: &Invitation, status: &str, envelope_only: bool) -> (String, String) {
        let event_id = self.event_id();
        let now = timestamp(self.tick());
        let mut body = format!(
            r#"{{"event_type": "UMA_INVITATION_CLAIMED", "event_id": "{event_id}", "timestamp": "{now}", "entity_id": "{}", "wallet_id": null"#,
            inv.id
        );
        if !envelope_only {
            let claimed = status == "CLAIMED";
            let invitee = if claimed { format!("\"{}\"", inv.invitee) } else { "null".to_owned() };
            let incentives = if claimed { "VALIDATED" } else { "PENDING" };
            body.push_str(&format!(
                r#", "data": {{"id": "{id}", "code": "{code}", "url": "https://uma.me/i/{code}", "inviter_uma": "{inviter}", "invitee_uma": {invitee}, "status": "{status}", "incentives_status": "{incentives}", "incentives_ineligibility_reason": null, "payment_amount": {{"value": 500, "currency": {{"code": "USD", "symbol": "$", "decimals": 2, "name": "US Dollar"}}}}, "created_at": "{created}", "updated_at": "{now}", "expires_at": null, "cancelled_at": null}}"#,
                id = inv.id,
                code = inv.code,
                inviter = inv.inviter,
                created = timestamp(inv.created_at),
            ));
        }
        body.push('}');
        (event_id, body)
    }
}

/// `2026-11-28T10:00:00.003635+00:00`, as Python's `isoformat()` writes it.
fn timestamp(micros: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(micros).expect("a time in range");
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// The old compact body of request `id` (sequential ids).
fn compact_body(id: usize) -> String {
    format!(
        r#"{{"event_type":"UMA_INVITATION_CLAIMED","event_id":"bench-{id:08}","timestamp":"2026-11-01T12:00:00.000000+00:00","entity_id":"UmaInvitation:bench-{id:08}","data":{{"id":"UmaInvitation:bench-{id:08}","code":"B{id:08}","inviter_uma":"$inviter{}@a.example","invitee_uma":"$invitee{id}@b.example","status":"CLAIMED","incentives_status":"VALIDATED","payment_amount":{{"value":500,"currency":{{"code":"USD","decimals":2}}}},"updated_at":"2026-11-01T12:00:00+00:00"}}}}"#,
        id % 97
    )
}

/// A stream of signed webhook requests: each a new claim of a new
/// invitation, or (with probability `duplicates`) a repeat of one of the
/// last [`RECENT`] distinct ones. Calls `each` per request, in order, so
/// a million of them need not be held at once.
pub fn requests(mix: &Mix, count: usize, mut each: impl FnMut(&Signed)) {
    let mut gen = Generator::new(mix.seed);
    let mut recent: Vec<Signed> = Vec::with_capacity(RECENT.min(count));
    let mut distinct = 0usize;
    for _ in 0..count {
        if !recent.is_empty() && gen.rng.unit() < mix.duplicates {
            let again = &recent[gen.rng.below(recent.len() as u64) as usize];
            each(again);
            continue;
        }
        let body = match mix.shape {
            Shape::Real => {
                let inv = gen.invitation();
                let envelope_only = mix.envelope_share > 0.0 && gen.rng.unit() < mix.envelope_share;
                gen.body(&inv, "CLAIMED", envelope_only).1
            }
            Shape::Compact => compact_body(distinct),
        };
        let signed = Signed::of(body);
        each(&signed);
        if recent.len() < RECENT {
            recent.push(signed);
        } else {
            recent[distinct % RECENT] = signed;
        }
        distinct += 1;
    }
}

/// [`requests`], collected.
pub fn request_list(mix: &Mix, count: usize) -> Vec<Signed> {
    let mut out = Vec::with_capacity(count);
    requests(mix, count, |s| out.push(s.clone()));
    out
}

/// How many invitations a ledger of `events` generated events has.
pub fn invitations_in(events: usize) -> usize {
    events.div_ceil(2)
}

/// Invitations whose claims are shuffled among each other: claims come
/// days after the invitation, so a ledger holds them far from its
/// `PENDING` snapshot, in another order.
const CLAIM_BLOCK: usize = 10_000;

/// The events of a generated ledger, `PENDING` then `CLAIMED` for every
/// invitation, in the given shape; calls `each` with every event in ledger
/// order and `invitation` with every invitation's id and code as it is
/// first named.
///
/// Real shape: the `PENDING` snapshots of a block of [`CLAIM_BLOCK`]
/// invitations, then the claims of the block before, shuffled. Compact
/// shape: the old generator's pairs, `PENDING` and `CLAIMED` side by side.
pub fn ledger_events(
    shape: Shape,
    events: usize,
    seed: u64,
    mut each: impl FnMut(NewEvent),
    mut invitation: impl FnMut(&str, &str),
) {
    match shape {
        Shape::Compact => {
            for i in 0..events {
                let (event, id_code) = compact_event(i);
                if let Some((id, code)) = id_code {
                    invitation(&id, &code);
                }
                each(event);
            }
        }
        Shape::Real => {
            let mut gen = Generator::new(seed);
            let total = invitations_in(events);
            let mut emitted = 0usize;
            let mut emit = |gen: &mut Generator, inv: &Invitation, status: &str, each: &mut dyn FnMut(NewEvent)| {
                if emitted < events {
                    let (event_id, body) = gen.body(inv, status, false);
                    each(webhook_event(&event_id, &inv.id, body));
                    emitted += 1;
                }
            };
            let mut waiting: Vec<Invitation> = Vec::new();
            let mut made = 0usize;
            while made < total || !waiting.is_empty() {
                let block: Vec<Invitation> = (made..total.min(made + CLAIM_BLOCK)).map(|_| gen.invitation()).collect();
                made += block.len();
                for inv in &block {
                    invitation(&inv.id, &inv.code);
                    emit(&mut gen, inv, "PENDING", &mut each);
                }
                gen.rng.shuffle(&mut waiting);
                for inv in &waiting {
                    emit(&mut gen, inv, "CLAIMED", &mut each);
                }
                waiting = block;
            }
        }
    }
}

/// A stored webhook event as the service would append it.
fn webhook_event(event_id: &str, stream: &str, body: String) -> NewEvent {
    let bytes = body.into_bytes();
    NewEvent {
        event_key: EventKey::lightspark_webhook(event_id, &bytes),
        kind: EventKind::WebhookReceived,
        stream: Some(StreamId::new(stream)),
        signature: Some(sign(SECRET.as_bytes(), &bytes)),
        body: bytes,
        sibling_prefix: Some(EventKey::lightspark_prefix(event_id)),
    }
}

/// Event `i` of the old generator, and the id and code of its invitation
/// when `i` names it first. Codes are unique but in no relation to the
/// ids' order.
fn compact_event(i: usize) -> (NewEvent, Option<(String, String)>) {
    let inv = i / 2;
    // Multiplying by an odd constant permutes the 64-bit numbers.
    let code = format!("{:016X}", (inv as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (status, hour) = if i.is_multiple_of(2) { ("PENDING", 10) } else { ("CLAIMED", 12) };
    let id = format!("UmaInvitation:gen-{inv:08}");
    let body = format!(
        r#"{{"event_type":"UMA_INVITATION_CLAIMED","event_id":"gen-{i:08}","timestamp":"2026-11-01T{hour}:00:01.000000+00:00","entity_id":"{id}","data":{{"id":"{id}","code":"{code}","inviter_uma":"$inviter{}@a.example","invitee_uma":"$invitee{inv}@b.example","status":"{status}","incentives_status":"VALIDATED","payment_amount":{{"value":{},"currency":{{"code":"USD","decimals":2}}}},"updated_at":"2026-11-01T{hour}:00:00+00:00"}}}}"#,
        inv % 97,
        100 + inv % 900
    );
    let mut event = webhook_event(&format!("gen-{i:08}"), &id, body);
    event.sibling_prefix = None;
    (event, i.is_multiple_of(2).then_some((id, code)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use invitation_ledger::lightspark::signature::SigningKeys;
    use invitation_ledger::lightspark::webhook::recognise;

    fn mix(duplicates: f64, envelope_share: f64) -> Mix {
        Mix { shape: Shape::Real, duplicates, envelope_share, seed: 7 }
    }

    #[test]
    fn a_real_body_has_the_sample_shape_and_size() {
        let mut gen = Generator::new(1);
        let inv = gen.invitation();
        let (event_id, body) = gen.body(&inv, "CLAIMED", false);
        assert_eq!(event_id.len(), 32);
        assert!(event_id.bytes().all(|b| b.is_ascii_hexdigit()));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let id = v["entity_id"].as_str().unwrap();
        let uuid = id.strip_prefix("UmaInvitation:").unwrap();
        assert_eq!(uuid.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        let code = v["data"]["code"].as_str().unwrap();
        assert_eq!(code.len(), 8);
        assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(v["data"]["url"], format!("https://uma.me/i/{code}"));
        assert_eq!(v["data"]["status"], "CLAIMED");
        // Python's json.dumps: the same text as re-serialising with its spacing.
        assert!(body.contains(r#"", "timestamp": ""#) && !body.contains(r#"",""#));
        assert!((740..=820).contains(&body.len()), "{} bytes: {body}", body.len());
        assert!(v["timestamp"].as_str().unwrap().starts_with("2026-11-28T10:00:00."));
    }

    #[test]
    fn an_envelope_only_body_has_no_data() {
        let mut gen = Generator::new(2);
        let inv = gen.invitation();
        let (_, body) = gen.body(&inv, "CLAIMED", true);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v.get("data").is_none());
        assert_eq!(v["wallet_id"], serde_json::Value::Null);
        assert!((200..=260).contains(&body.len()), "{} bytes", body.len());
    }

    #[test]
    fn requests_are_signed_recognised_and_repeatable() {
        let keys = SigningKeys::parse(SECRET).unwrap();
        let a = request_list(&mix(0.05, 0.3), 2_000);
        let b = request_list(&mix(0.05, 0.3), 2_000);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.body, y.body);
            assert_eq!(keys.verify(&x.body, Some(&x.signature)), Ok(()));
            let delivery = recognise(&x.body).unwrap();
            assert!(delivery.stream.unwrap().as_str().starts_with("UmaInvitation:"));
        }
        let other = request_list(&Mix { seed: 8, ..mix(0.05, 0.3) }, 10);
        assert_ne!(a[0].body, other[0].body);
    }

    #[test]
    fn the_duplicate_and_envelope_shares_are_as_asked() {
        let list = request_list(&mix(0.05, 0.5), 20_000);
        let distinct: std::collections::HashSet<_> = list.iter().map(|s| s.body.clone()).collect();
        let dup = 1.0 - distinct.len() as f64 / list.len() as f64;
        assert!((0.04..0.06).contains(&dup), "{dup}");
        let envelopes = distinct.iter().filter(|b| !b.windows(7).any(|w| w == b"\"data\":")).count();
        let share = envelopes as f64 / distinct.len() as f64;
        assert!((0.47..0.53).contains(&share), "{share}");
        let none = request_list(&mix(0.0, 0.0), 5_000);
        let distinct: std::collections::HashSet<_> = none.iter().map(|s| s.body.clone()).collect();
        assert_eq!(distinct.len(), 5_000);
    }

    #[test]
    fn a_generated_ledger_names_each_invitation_twice_pending_first() {
        for shape in [Shape::Real, Shape::Compact] {
            let mut events = Vec::new();
            let mut ids = Vec::new();
            ledger_events(shape, 25_001, 3, |e| events.push(e), |id, code| ids.push((id.to_owned(), code.to_owned())));
            assert_eq!(events.len(), 25_001);
            assert_eq!(ids.len(), 12_501);
            let mut seen: std::collections::HashMap<String, Vec<String>> = Default::default();
            for e in &events {
                let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
                let status = v["data"]["status"].as_str().unwrap().to_owned();
                seen.entry(e.stream.clone().unwrap().to_string()).or_default().push(status);
            }
            assert_eq!(seen.len(), 12_501);
            let pairs = seen.values().filter(|s| s.as_slice() == ["PENDING", "CLAIMED"]).count();
            assert_eq!(pairs, 12_500, "{shape:?}");
            let keys: std::collections::HashSet<_> = events.iter().map(|e| e.event_key.clone()).collect();
            assert_eq!(keys.len(), events.len());
        }
    }
}
