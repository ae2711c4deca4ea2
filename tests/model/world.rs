//! The model's bridge to the project's real code: every ledger event the
//! model appends is built with the real event types and serialised by
//! `InternalEvent::to_new_event` (webhooks are real Lightspark bodies keyed
//! as the ingest keys them), every fold is the real `apply_to` over real
//! `LedgerEvent`s, and every decision is the real `next_action`,
//! `request_for`, `judge` and `backoff`.
//!
//! States stay small and hashable because they never hold an event's bytes:
//! an event is interned once here ([`World::intern`]) and the state keeps
//! its number. Folds are memoised by the ledger's contents, so the same
//! ledger reached along many interleavings is folded once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use invitation_ledger::config::ReconcileConfig;
use invitation_ledger::ledger::{hash::GENESIS, LedgerEvent};
use invitation_ledger::lightspark::webhook::WebhookEnvelope;
use invitation_ledger::money::PaymentAmount;
use invitation_ledger::projection::events::{
    Channel, Decision, IdempotencyKey, InDoubtReason, InternalEvent, ObligationFailed, ObligationInDoubt,
    ObligationKind, ObligationRequested, ObligationResolved, ObligationSucceeded,
};
use invitation_ledger::projection::state::{apply_to, InvitationState};
use invitation_ledger::projection::view::obligation;
use invitation_ledger::reconcile::clock::{backoff, Jitter};
use invitation_ledger::reconcile::decide::Capabilities;
use invitation_ledger::reconcile::endpoint::{judge, CallOutcome, Verdict};
use invitation_ledger::reconcile::request::request_for;
use invitation_ledger::time::{parse_time, rfc3339};
use invitation_ledger::vocab::{EventKey, EventKind};
use serde_json::json;

/// The one invitation the model is about (its stream).
pub const INVITATION: &str = "UmaInvitation:model-1";
/// The one obligation the model acts on: the invitee's payment. The fold
/// derives all three; with no notify URL and no incentive configured the
/// other two are never sent (`next_action` says `NotConfigured` or
/// `Nothing`), which keeps the state space to one protocol run.
pub const KIND: ObligationKind = ObligationKind::InviteePayment;
/// Model time is a logical clock in ticks from this origin.
pub const ORIGIN: &str = "2026-11-01T00:00:00Z";
/// How long one tick is: the request timeout (`REQUEST_TIMEOUT_MS`).
pub const TICK_SECONDS: u64 = 10;
/// The tick after every window: where time jumps when the model lets the
/// world run out its faults (the `eventually` property is judged there).
pub const END: u8 = 200;

/// The instant of tick `t`.
pub fn instant(t: u8) -> DateTime<Utc> {
    let origin = parse_time(ORIGIN).expect("the origin is RFC 3339");
    origin + chrono::Duration::seconds(i64::from(t) * TICK_SECONDS as i64)
}

/// The tick of an instant the model wrote (always whole ticks).
pub fn tick_of(text: &str) -> Option<u8> {
    let t = parse_time(text)?;
    let secs = (t - instant(0)).num_seconds();
    u8::try_from(secs / TICK_SECONDS as i64).ok()
}

fn ticks(n: u8) -> Duration {
    Duration::from_secs(u64::from(n) * TICK_SECONDS)
}

/// A jitter that never adds anything: `backoff` then waits exactly its
/// base, one tick, so a retry falls due on the next tick.
struct NoJitter;

impl Jitter for NoJitter {
    fn up_to(&self, _: u64) -> u64 {
        0
    }
}

/// The snapshots the source can deliver, as `webhook.received` bodies.
/// Dates are the snapshots' own (`updated_at`), unrelated to model time:
/// the fold orders by them, whatever order they arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Snap {
    /// `CLAIMED`, 500 USD for `$bob@receiver.example`, dated 12:00.
    Claimed,
    /// `CLAIMED` again, 700 USD: a newer snapshot changing the amount (12:30).
    AmountChanged,
    /// `CANCELLED`, dated 13:00: the invitation no longer owes anything.
    Cancelled,
    /// `PENDING`, dated 11:00: an older snapshot arriving late.
    OlderPending,
}

impl Snap {
    /// The webhook body, as Lightspark sends it.
    pub fn body(self) -> String {
        let (event_type, event_id, updated, status, amount) = match self {
            Snap::Claimed => ("UMA_INVITATION_CLAIMED", "evt-claim", "12:00", "CLAIMED", 500),
            Snap::AmountChanged => ("UMA_INVITATION_UPDATED", "evt-amount", "12:30", "CLAIMED", 700),
            Snap::Cancelled => ("UMA_INVITATION_UPDATED", "evt-cancel", "13:00", "CANCELLED", 500),
            Snap::OlderPending => ("UMA_INVITATION_UPDATED", "evt-pending", "11:00", "PENDING", 500),
        };
        let updated = format!("2026-10-20T{updated}:00.000000+00:00");
        let mut data = json!({
            "id": INVITATION,
            "code": "CODE-M1",
            "url": "https://uma.me/i/CODE-M1",
            "inviter_uma": "$alice@sender.example",
            "status": status,
            "incentives_status": "PENDING",
            "created_at": "2026-10-01T00:00:00.000000+00:00",
            "updated_at": updated,
            "payment_amount": {"value": amount, "currency": {"code": "USD", "symbol": "$", "decimals": 2, "name": "US Dollar"}},
        });
        if status != "PENDING" {
            data["invitee_uma"] = "$bob@receiver.example".into();
        }
        json!({"event_type": event_type, "event_id": event_id, "timestamp": updated, "entity_id": INVITATION, "data": data})
            .to_string()
    }
}

/// What an interned event is, in a few words: for traces, and for the
/// ghost checks that read what a request asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum What {
    Webhook(Snap),
    Requested {
        attempt: u32,
        at: u8,
        receiver: Option<String>,
        amount: Option<i64>,
        request: String,
    },
    Succeeded {
        attempt: u32,
    },
    Failed {
        attempt: u32,
        status: Option<u16>,
        permanent: bool,
    },
    /// Why (`InDoubtReason::as_str`), decided at tick `at`.
    InDoubt {
        reason: &'static str,
        at: u8,
    },
    /// What (`Decision::as_str`).
    Resolved {
        decision: &'static str,
    },
}

/// One event as appended: its key, kind and bytes, exactly as the real
/// code makes them.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Payload {
    pub key: String,
    pub kind: &'static str,
    pub body: Vec<u8>,
    pub what: What,
}

/// One row of the model's ledger: an interned event, the tick it was
/// appended at, and the fencing epoch it was appended under (0: none,
/// webhooks and operators); with its event key's number and [`tag`]s, so
/// that duplicates and properties need no look-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    pub payload: u16,
    pub key: u16,
    pub at: u8,
    pub epoch: u8,
    pub tag: u8,
}

/// What kind of event an entry is, as bits.
pub mod tag {
    pub const REQUESTED: u8 = 1;
    pub const SUCCEEDED: u8 = 2;
    pub const ANSWERED_409: u8 = 4;
    pub const IN_DOUBT_WINDOW: u8 = 8;
    pub const IN_DOUBT_NO_LONGER_DUE: u8 = 16;
    pub const RESOLVED: u8 = 32;
}

impl What {
    fn tag(&self) -> u8 {
        match self {
            What::Webhook(_) => 0,
            What::Requested { .. } => tag::REQUESTED,
            What::Succeeded { .. } => tag::SUCCEEDED,
            What::Failed { status: Some(409), .. } => tag::ANSWERED_409,
            What::Failed { .. } => 0,
            What::InDoubt { reason: "window_expired", .. } => tag::IN_DOUBT_WINDOW,
            What::InDoubt { .. } => tag::IN_DOUBT_NO_LONGER_DUE,
            What::Resolved { .. } => tag::RESOLVED,
        }
    }
}

#[derive(Default)]
struct Interner {
    all: Vec<Arc<Payload>>,
    /// Per payload: its event key's number, and its tag.
    keys: Vec<(u16, u8)>,
    index: HashMap<Arc<Payload>, u16>,
    key_numbers: HashMap<String, u16>,
}

/// A fold, shared by every state whose ledger holds the same events.
type Folded = Arc<InvitationState>;

/// The real code's settings and the memo tables, shared by every state.
pub struct World {
    pub config: ReconcileConfig,
    pub caps: Capabilities,
    interned: RwLock<Interner>,
    folds: Mutex<HashMap<Vec<(u16, u8)>, Folded>>,
}

impl World {
    /// The settings of a reconciler with a payout URL only, an
    /// `IDEMPOTENCY_WINDOW` of `window` ticks and a request timeout and
    /// retry delay of one tick each.
    pub fn new(window: u8) -> Self {
        let config = ReconcileConfig {
            payout_url: Some("http://platform.model/v1/payouts".into()),
            payout_signing_key: None,
            notify_url: None,
            inviter_incentive: None,
            lightspark_api_url: "http://lightspark.model/graphql".into(),
            lightspark_credentials: None,
            fetch_horizon: ticks(100),
            grid_api_url: "http://grid.model/".into(),
            grid_credentials: None,
            interval: ticks(1),
            retry_base: ticks(1),
            retry_max: ticks(1),
            idempotency_window: ticks(window),
            request_timeout: ticks(1),
            concurrency: 1,
        };
        // As `Reconciler::caps` (src/reconcile/reconciler.rs) derives them.
        let caps = Capabilities {
            payout_configured: config.payout_url.is_some(),
            notify_configured: config.notify_url.is_some(),
            incentive_configured: config.inviter_incentive.is_some(),
            idempotency_window: config.idempotency_window,
            request_timeout: config.request_timeout,
        };
        Self { config, caps, interned: RwLock::new(Interner::default()), folds: Mutex::new(HashMap::new()) }
    }

    /// The number of `payload`, interning it the first time.
    pub fn intern(&self, payload: Payload) -> u16 {
        if let Some(&n) = self.interned.read().expect("interner").index.get(&payload) {
            return n;
        }
        let mut w = self.interned.write().expect("interner");
        if let Some(&n) = w.index.get(&payload) {
            return n;
        }
        let n = u16::try_from(w.all.len()).expect("fewer than 65536 distinct events");
        let next_key = u16::try_from(w.key_numbers.len()).expect("fewer than 65536 distinct keys");
        let key = *w.key_numbers.entry(payload.key.clone()).or_insert(next_key);
        let payload = Arc::new(payload);
        w.keys.push((key, payload.what.tag()));
        w.all.push(payload.clone());
        w.index.insert(payload, n);
        n
    }

    /// The ledger row of `payload` appended at tick `at` under `epoch`.
    pub fn entry(&self, payload: u16, at: u8, epoch: u8) -> Entry {
        let (key, tag) = self.interned.read().expect("interner").keys[usize::from(payload)];
        Entry { payload, key, at, epoch, tag }
    }

    pub fn payload(&self, n: u16) -> Arc<Payload> {
        self.interned.read().expect("interner").all[usize::from(n)].clone()
    }

    /// The ledger row at `seq`, as the store would read it back.
    fn row(&self, seq: usize, entry: Entry) -> LedgerEvent {
        let p = self.payload(entry.payload);
        LedgerEvent {
            seq: seq as u64,
            event_key: p.key.clone(),
            kind: p.kind.to_owned(),
            stream: Some(INVITATION.to_owned()),
            recorded_at: rfc3339(instant(entry.at)),
            body: p.body.clone(),
            signature: None,
            prev_hash: GENESIS,
            hash: GENESIS,
        }
    }

    /// The invitation folded from `ledger` with the real fold, as the
    /// reconciler's `reload` folds its stream; `None` while it is empty.
    pub fn fold(&self, ledger: &[Entry]) -> Option<Arc<InvitationState>> {
        if ledger.is_empty() {
            return None;
        }
        let key: Vec<(u16, u8)> = ledger.iter().map(|e| (e.payload, e.at)).collect();
        if let Some(s) = self.folds.lock().expect("folds").get(&key) {
            return Some(s.clone());
        }
        let mut state = match self.fold(&ledger[..ledger.len() - 1]) {
            Some(prefix) => (*prefix).clone(),
            None => InvitationState::new(INVITATION),
        };
        let last = self.row(ledger.len(), ledger[ledger.len() - 1]);
        apply_to(&mut state, last.view());
        let state = Arc::new(state);
        self.folds.lock().expect("folds").insert(key, state.clone());
        Some(state)
    }

    /// A delivery of `snap`, keyed and streamed as the webhook ingest does.
    pub fn webhook(&self, snap: Snap) -> u16 {
        let body = snap.body();
        let envelope = WebhookEnvelope::parse(body.as_bytes()).expect("the model writes valid webhooks");
        assert_eq!(envelope.invitation_id().as_deref(), Some(INVITATION));
        self.intern(Payload {
            key: EventKey::lightspark_webhook(&envelope.event_id, body.as_bytes()).to_string(),
            kind: EventKind::WebhookReceived.as_str(),
            body: body.into_bytes(),
            what: What::Webhook(snap),
        })
    }

    fn internal(&self, event: InternalEvent, what: What) -> u16 {
        let row = event.to_new_event();
        self.intern(Payload { key: row.event_key.to_string(), kind: row.kind.as_str(), body: row.body, what })
    }

    /// The `payout.requested` of the `attempt`-th call decided on `state`
    /// at tick `now`, as `Reconciler::send` builds it (src/reconcile/protocol.rs);
    /// `None` when `request_for` builds no request.
    pub fn requested(&self, state: &InvitationState, attempt: u32, now: u8) -> Option<u16> {
        let key = IdempotencyKey::of(&state.invitation_id, KIND);
        let request = request_for(state, KIND, &key, &self.config)?;
        let bytes = String::from_utf8(request.bytes()).expect("JSON is UTF-8");
        let what = What::Requested {
            attempt,
            at: now,
            receiver: request.receiver_uma.clone(),
            amount: request.amount.as_ref().map(|m| m.value()),
            request: bytes,
        };
        let event = InternalEvent::Requested(ObligationRequested {
            invitation_id: state.invitation_id.clone(),
            obligation: KIND,
            idempotency_key: key,
            attempt,
            requested_at: rfc3339(instant(now)),
            receiver_uma: request.receiver_uma,
            amount: request.amount,
            request: request.body,
        });
        Some(self.internal(event, what))
    }

    /// The `obligation.in_doubt` decided on `state` at tick `now`, as
    /// `Reconciler::mark_in_doubt` builds it.
    pub fn in_doubt(&self, state: &InvitationState, reason: InDoubtReason, now: u8) -> u16 {
        let event = InternalEvent::InDoubt(ObligationInDoubt {
            invitation_id: state.invitation_id.clone(),
            obligation: KIND,
            idempotency_key: IdempotencyKey::of(&state.invitation_id, KIND),
            first_requested_at: state.obligation(KIND).window_started_at.clone().unwrap_or_default(),
            at: rfc3339(instant(now)),
            reason,
        });
        self.internal(event, What::InDoubt { reason: reason.as_str(), at: now })
    }

    /// The outcome event of `answer` to the `attempt`-th call, answered at
    /// tick `now`: the real `judge` reads the answer, and the event is the
    /// one `Reconciler::outcome` builds for its verdict (with the real
    /// `backoff`, which waits one tick here).
    pub fn outcome(&self, attempt: u32, answer: &CallOutcome, now: u8) -> u16 {
        let key = IdempotencyKey::of(INVITATION, KIND);
        let at = rfc3339(instant(now));
        match judge(answer) {
            Verdict::Succeeded { status, payment_id } => self.internal(
                InternalEvent::Succeeded(ObligationSucceeded {
                    invitation_id: INVITATION.into(),
                    obligation: KIND,
                    idempotency_key: key,
                    attempt,
                    http_status: status,
                    payment_id,
                    at,
                }),
                What::Succeeded { attempt },
            ),
            Verdict::Permanent { status, error } => self.failed(attempt, Some(status), error, None, at),
            Verdict::Transient { status, error } => {
                let delay = backoff(attempt, self.config.retry_base, self.config.retry_max, &NoJitter);
                let next = instant(now) + chrono::Duration::from_std(delay).expect("a short delay");
                self.failed(attempt, status, error, Some(rfc3339(next)), at)
            }
        }
    }

    fn failed(&self, attempt: u32, status: Option<u16>, error: String, next: Option<String>, at: String) -> u16 {
        let permanent = next.is_none();
        self.internal(
            InternalEvent::Failed(ObligationFailed {
                invitation_id: INVITATION.into(),
                obligation: KIND,
                idempotency_key: IdempotencyKey::of(INVITATION, KIND),
                attempt,
                http_status: status,
                error,
                permanent,
                next_attempt_at: next,
                at,
            }),
            What::Failed { attempt, status, permanent },
        )
    }

    /// An operator's `obligation.resolved` on `state` at tick `now`, as
    /// `operator::decide` builds it (its `resolution`), from the page.
    pub fn resolved(&self, state: &InvitationState, decision: Decision, now: u8) -> u16 {
        let view = obligation(state, KIND);
        let event = InternalEvent::Resolved(ObligationResolved {
            invitation_id: state.invitation_id.clone(),
            obligation: KIND,
            idempotency_key: IdempotencyKey::of(&state.invitation_id, KIND),
            decision,
            payment_id: (decision == Decision::Paid).then(|| "pay-model-1".to_owned()),
            at: rfc3339(instant(now)),
            occurrence: format!("{}:{}", view.attempts, view.updated_at.as_deref().unwrap_or("-")),
            note: Some("decided in the model".into()),
            by: Some(Channel::Page),
        });
        self.internal(event, What::Resolved { decision: decision.as_str() })
    }
}

/// The receiver and amount the invitation's newest facts name: what a
/// first request made now would ask for.
pub fn facts(state: &InvitationState) -> (Option<String>, Option<i64>) {
    let receiver = state.invitee_uma.as_ref().map(|v| v.value.clone());
    let amount = match state.payment_amount.as_ref().map(|v| &v.value) {
        Some(PaymentAmount::Valid(m)) => Some(m.value()),
        _ => None,
    };
    (receiver, amount)
}

/// The answers the platform gives, as the transport hands them to the
/// reconciler.
pub fn answered(status: u16) -> CallOutcome {
    let body = if status == 200 { br#"{"payment_id":"pay-model-1"}"#.to_vec() } else { b"model".to_vec() };
    CallOutcome::Answered { status, body }
}

/// A call whose answer never came back.
pub fn timed_out() -> CallOutcome {
    CallOutcome::Transport("timed out: the model lost the answer".into())
}
