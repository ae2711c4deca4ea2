//! What the read API, the CLI and the reconciler see of an invitation: the
//! projection JSON (docs/design.md, openapi.json), and each obligation's state, derived purely
//! from the folded [`InvitationState`].

use serde::Serialize;

use super::events::{IdempotencyKey, ObligationKind, IDENTITY_MISMATCH};
use super::state::{FetchPhase, FetchRecord, InvitationState, ObligationPhase, ObligationRecord};
use crate::invitation::{is_uma_address, IncentivesStatus, InvitationStatus};
use crate::money::{Money, PaymentAmount};
use crate::source::Source;

/// The obligation states of docs/design.md ("Obligations").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObligationState {
    NotDue,
    Pending,
    Requested,
    RetryScheduled,
    Succeeded,
    Failed,
    InDoubt,
    Ineligible,
    Invalid,
}

impl ObligationState {
    /// Every state, so a gauge can show zeros rather than no series.
    pub const ALL: [ObligationState; 9] = [
        ObligationState::NotDue,
        ObligationState::Pending,
        ObligationState::Requested,
        ObligationState::RetryScheduled,
        ObligationState::Succeeded,
        ObligationState::Failed,
        ObligationState::InDoubt,
        ObligationState::Ineligible,
        ObligationState::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObligationState::NotDue => "not_due",
            ObligationState::Pending => "pending",
            ObligationState::Requested => "requested",
            ObligationState::RetryScheduled => "retry_scheduled",
            ObligationState::Succeeded => "succeeded",
            ObligationState::Failed => "failed",
            ObligationState::InDoubt => "in_doubt",
            ObligationState::Ineligible => "ineligible",
            ObligationState::Invalid => "invalid",
        }
    }

    /// States the reconciler still has work (or a check) for.
    pub fn is_open(self) -> bool {
        matches!(self, ObligationState::Pending | ObligationState::Requested | ObligationState::RetryScheduled)
    }
}

/// One obligation as shown to people and acted on by the reconciler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObligationView {
    pub state: ObligationState,
    /// Why it is `not_due` (`zero_amount`), `ineligible`, `invalid` (the
    /// amount's reason, or `malformed_receiver`) or `in_doubt`
    /// (`window_expired`, `no_longer_due`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    pub idempotency_key: Option<IdempotencyKey>,
    pub payment_id: Option<String>,
    pub last_error: Option<String>,
    pub updated_at: Option<String>,
    pub next_attempt_at: Option<String>,
    /// What was actually asked of the platform (null before the first
    /// request): beside the invitation's current values, so a change after
    /// the request shows.
    pub requested: Option<Requested>,
}

/// What the first request of an obligation asked for; every retry asks
/// for exactly the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requested {
    pub receiver_uma: Option<String>,
    /// Payments and incentives; `None` for a notification.
    pub amount: Option<Money>,
}

/// Something about an invitation that a healthy ledger never shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// `status_conflict`, `incentives_conflict`, `changed_after_request`,
    /// `undecodable_event` or `identity_mismatch`.
    pub kind: &'static str,
    pub detail: String,
}

/// Why an obligation is `invalid` when its receiver (the invitee for the
/// payment, the inviter for the incentive and the notification) is not a
/// well-formed UMA address ([`is_uma_address`]).
pub const MALFORMED_RECEIVER: &str = "malformed_receiver";

/// Whether a creation or a cancellation asked through the service has no
/// known outcome: none recorded (in flight, or the process died mid-call)
/// or no answer came. The source may have acted: an operator checks, as
/// for a payment in doubt.
pub fn outcome_unknown(state: &InvitationState) -> bool {
    use super::registration::{CancellationPhase, RegistrationPhase};
    let creation = state
        .registration
        .as_ref()
        .is_some_and(|r| matches!(r.state, RegistrationPhase::Requested | RegistrationPhase::Unknown));
    let cancel = state
        .cancellation
        .as_ref()
        .is_some_and(|c| matches!(c.state, CancellationPhase::Requested | CancellationPhase::Unknown));
    creation || cancel
}

/// Why nothing is owed for an invitation the service cancelled.
pub const CANCELLED: &str = "cancelled";

/// Whether an obligation is owed at all, from the invitation's facts alone.
/// Cancelled, expired and pending invitations owe nothing. One owed to a
/// receiver that is not a well-formed UMA address is `invalid`: nothing is
/// sent to an address that may not be what it shows.
pub fn due(state: &InvitationState, kind: ObligationKind) -> Result<(), (ObligationState, Option<String>)> {
    let not_due = Err((ObligationState::NotDue, None));
    if state.cancelled_by_service {
        // Its source confirmed the cancellation the service asked for: a
        // claim arriving later (a race at the source, a replayed webhook)
        // owes nothing.
        return Err((ObligationState::NotDue, Some(CANCELLED.to_owned())));
    }
    let to = |receiver: &Option<super::state::Versioned<String>>| match receiver {
        Some(r) if !is_uma_address(&r.value) => Err((ObligationState::Invalid, Some(MALFORMED_RECEIVER.to_owned()))),
        _ => Ok(()),
    };
    match kind {
        ObligationKind::InviteePayment => {
            let Some(amount) = state.payment_amount.as_ref().map(|v| &v.value) else { return not_due };
            if !state.is_claimed() {
                return not_due;
            }
            match amount {
                PaymentAmount::Invalid { reason } => return Err((ObligationState::Invalid, Some(reason.clone()))),
                PaymentAmount::Valid(m) if m.value() == 0 => {
                    return Err((ObligationState::NotDue, Some("zero_amount".to_owned())))
                }
                PaymentAmount::Valid(_) => {}
            }
            if state.invitee_uma.is_none() {
                return not_due;
            }
            to(&state.invitee_uma)
        }
        ObligationKind::InviterIncentive if state.source == Source::Grid => {
            Err((ObligationState::NotDue, Some("source_has_no_incentives".to_owned())))
        }
        ObligationKind::InviterIncentive => match state.incentives_status() {
            Some(IncentivesStatus::Ineligible) => Err((
                ObligationState::Ineligible,
                Some(
                    state
                        .incentives_ineligibility_reason
                        .as_ref()
                        .map_or_else(|| "INELIGIBLE".to_owned(), |r| r.value.clone()),
                ),
            )),
            Some(IncentivesStatus::Validated) if state.is_claimed() && state.inviter_uma.is_some() => {
                to(&state.inviter_uma)
            }
            _ => not_due,
        },
        ObligationKind::InviterNotification => {
            if state.is_claimed() && state.invitee_uma.is_some() && state.inviter_uma.is_some() {
                to(&state.inviter_uma)
            } else {
                not_due
            }
        }
        // Told once the payment failed for good: refused by the platform
        // (its answer is the reason) or recorded failed by an operator.
        ObligationKind::InviterFailureNotice => {
            let failed = state.payout.phase == ObligationPhase::Failed;
            if failed && state.invitee_uma.is_some() && state.inviter_uma.is_some() {
                to(&state.inviter_uma)
            } else {
                not_due
            }
        }
    }
}

/// Why the invitee's payment failed for good, in the words the inviter's
/// failure notice carries: the platform's refusal as recorded, or that an
/// operator recorded it failed.
pub fn payment_failure_reason(state: &InvitationState) -> String {
    let rec = &state.payout;
    match (rec.decision, rec.last_error.as_deref()) {
        (Some(super::events::Decision::Failed), Some(error)) => {
            format!("an operator recorded the payment as failed (last error: {error})")
        }
        (Some(super::events::Decision::Failed), None) => "an operator recorded the payment as failed".to_owned(),
        (_, Some(error)) => error.to_owned(),
        (_, None) => "the payment failed".to_owned(),
    }
}

/// Whether an obligation already requested is still owed by the
/// invitation's newest facts. A newer unusable amount or malformed
/// receiver does not make it unowed: the first request's stands, and
/// retries repeat it. A
/// cancelled or expired invitation, an ineligible incentive or a zero
/// amount does.
pub fn still_owed(state: &InvitationState, kind: ObligationKind) -> bool {
    matches!(due(state, kind), Ok(()) | Err((ObligationState::Invalid, _)))
}

/// The obligation's state: what the ledger says was done, else whether it
/// is owed.
pub fn obligation(state: &InvitationState, kind: ObligationKind) -> ObligationView {
    let rec: &ObligationRecord = state.obligation(kind);
    let (st, reason) = obligation_state(state, kind);
    let shows_key = !matches!(st, ObligationState::NotDue | ObligationState::Ineligible | ObligationState::Invalid);
    ObligationView {
        state: st,
        reason,
        attempts: rec.attempts,
        idempotency_key: rec
            .idempotency_key
            .clone()
            .or_else(|| shows_key.then(|| IdempotencyKey::of(&state.invitation_id, kind))),
        payment_id: rec.payment_id.clone(),
        last_error: rec.last_error.clone(),
        updated_at: rec.updated_at.clone(),
        next_attempt_at: rec.next_attempt_at.clone(),
        requested: rec
            .request
            .is_some()
            .then(|| Requested { receiver_uma: rec.receiver_uma.clone(), amount: rec.amount.clone() }),
    }
}

/// The state of [`obligation`] and its reason alone: what the tables'
/// filter columns and the work bits need, without the rest of the view
/// (the idempotency key is a hash).
pub fn obligation_state(state: &InvitationState, kind: ObligationKind) -> (ObligationState, Option<String>) {
    match state.obligation(kind).phase {
        ObligationPhase::Requested => (ObligationState::Requested, None),
        ObligationPhase::RetryScheduled => (ObligationState::RetryScheduled, None),
        ObligationPhase::Succeeded => (ObligationState::Succeeded, None),
        ObligationPhase::Failed => (ObligationState::Failed, None),
        ObligationPhase::InDoubt => (ObligationState::InDoubt, state.obligation(kind).reason.clone()),
        ObligationPhase::Untouched => match due(state, kind) {
            Ok(()) => (ObligationState::Pending, None),
            Err(e) => e,
        },
    }
}

/// Bits of [`work`]: which workers may have something to do.
pub mod work_bits {
    pub const FETCH: i64 = 1;
    pub const INVITEE_PAYMENT: i64 = 2;
    pub const INVITER_INCENTIVE: i64 = 4;
    /// Either notification of the inviter (the invitee joined, or the
    /// invitee's payment failed): both go to the notification endpoint.
    pub const INVITER_NOTIFICATION: i64 = 8;
    /// Every bit: the largest value the `work` column takes.
    pub const ALL: i64 = FETCH | INVITEE_PAYMENT | INVITER_INCENTIVE | INVITER_NOTIFICATION;
}

/// Which workers may have something to do for this invitation. Stored with
/// the row so the reconciler reads only invitations it can act on under
/// its configuration (an unconfigured endpoint leaves many rows pending).
pub fn work(state: &InvitationState) -> i64 {
    let mut bits = 0;
    if fetch_wanted(state) {
        bits |= work_bits::FETCH;
    }
    for (kind, bit) in [
        (ObligationKind::InviteePayment, work_bits::INVITEE_PAYMENT),
        (ObligationKind::InviterIncentive, work_bits::INVITER_INCENTIVE),
        (ObligationKind::InviterNotification, work_bits::INVITER_NOTIFICATION),
        (ObligationKind::InviterFailureNotice, work_bits::INVITER_NOTIFICATION),
    ] {
        if obligation_state(state, kind).0.is_open() {
            bits |= bit;
        }
    }
    bits
}

/// Whether fetching the invitation from its source could still change what
/// is owed: no snapshot has given its data yet, or it is `PENDING`, or it is
/// `CLAIMED` with its incentive still `PENDING` (Lightspark reassesses
/// incentives after the claim). Never once the id turned out to name
/// something else. When, and until when, is the reconciler's to decide.
pub fn fetch_wanted(state: &InvitationState) -> bool {
    if state.fetch.phase == FetchPhase::Failed {
        return false;
    }
    awaiting_data(state)
        || matches!(state.status(), Some(InvitationStatus::Pending))
        || (state.is_claimed() && matches!(state.incentives_status(), Some(IncentivesStatus::Pending)))
}

/// Whether a claim came without the invitation and no fetch has given its
/// data: nothing can be paid for it until one does.
pub fn awaiting_data(state: &InvitationState) -> bool {
    matches!(state.fetch.phase, FetchPhase::Pending | FetchPhase::NotFound)
}

/// The invitation projection JSON of the read API and `status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct InvitationView {
    pub invitation_id: String,
    pub code: Option<String>,
    pub url: Option<String>,
    pub status: Option<String>,
    pub inviter_uma: Option<String>,
    pub inviter_first_name: Option<String>,
    pub invitee_uma: Option<String>,
    pub incentives_status: Option<String>,
    pub incentives_ineligibility_reason: Option<String>,
    pub payment_amount: Option<Money>,
    pub claimed_at: Option<String>,
    pub claim_seq: Option<u64>,
    pub last_seq: u64,
    /// Who told us about it: `lightspark` or `grid`.
    pub source: Source,
    /// Created through the service (`POST /v1/invitations`).
    pub registered: bool,
    /// The creation, when the service asked for it: on the request's own
    /// stream (`InvitationRequest:<id>`) and on the invitation it made.
    pub registration: Option<super::registration::Registration>,
    /// `sweep` when its claim was first seen by fetching it on the
    /// schedule, not by a webhook: a webhook that did not arrive.
    pub found_by: Option<&'static str>,
    /// The last cancellation asked through the service
    /// (`POST /v1/invitations/{id}/cancel`).
    pub cancellation: Option<super::registration::Cancellation>,
    /// What a healthy ledger never shows about this invitation.
    pub anomalies: Vec<Anomaly>,
    pub payout: ObligationView,
    pub incentive: ObligationView,
    pub notification: ObligationView,
    /// The inviter told that the invitee's payment failed for good.
    pub failure_notice: ObligationView,
    /// Fetching the invitation from its source when a webhook had no data,
    /// or while it can still change.
    pub fetch: FetchView,
}

/// Where fetching the invitation stands, as shown.
#[derive(Debug, Clone, Serialize)]
pub struct FetchView {
    pub state: FetchState,
    /// Whether the reconciler still fetches it from time to time.
    pub wanted: bool,
    pub last_error: Option<String>,
}

/// [`FetchPhase`] as shown, plus `not_configured`: data still missing and no
/// credentials to fetch it with, which nothing may hide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchState {
    NotNeeded,
    Pending,
    Fetched,
    NotFound,
    Failed,
    NotConfigured,
}

impl FetchView {
    fn of(state: &InvitationState) -> Self {
        let f: &FetchRecord = &state.fetch;
        FetchView {
            state: match f.phase {
                FetchPhase::NotNeeded => FetchState::NotNeeded,
                FetchPhase::Pending => FetchState::Pending,
                FetchPhase::Fetched => FetchState::Fetched,
                FetchPhase::NotFound => FetchState::NotFound,
                FetchPhase::Failed => FetchState::Failed,
            },
            wanted: fetch_wanted(state),
            last_error: f.last_error.clone(),
        }
    }
}

/// Which sources invitations can be fetched from (their API credentials
/// are configured): the projection is folded from the ledger alone, and
/// this is what the service adds when it shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fetching {
    lightspark: bool,
    grid: bool,
}

impl Fetching {
    pub fn new(configured: impl Fn(Source) -> bool) -> Self {
        Self { lightspark: configured(Source::Lightspark), grid: configured(Source::Grid) }
    }

    pub fn can(self, source: Source) -> bool {
        match source {
            Source::Lightspark => self.lightspark,
            Source::Grid => self.grid,
        }
    }
}

/// The projection JSON as the service shows it: [`view`], where an
/// invitation still waiting for its data says `not_configured` when its
/// source cannot be fetched from, which nothing may hide.
pub fn shown(state: &InvitationState, fetching: Fetching) -> InvitationView {
    let mut v = view(state);
    if matches!(v.fetch.state, FetchState::Pending | FetchState::NotFound) && !fetching.can(v.source) {
        v.fetch.state = FetchState::NotConfigured;
    }
    v
}

pub fn view(state: &InvitationState) -> InvitationView {
    let text = |v: &Option<super::state::Versioned<String>>| v.as_ref().map(|v| v.value.clone());
    InvitationView {
        invitation_id: state.invitation_id.clone(),
        code: text(&state.code),
        url: text(&state.url),
        status: state.status().map(|s| s.as_str().to_owned()),
        inviter_uma: text(&state.inviter_uma),
        inviter_first_name: text(&state.inviter_first_name),
        invitee_uma: text(&state.invitee_uma),
        incentives_status: state.incentives_status().map(|s| s.as_str().to_owned()),
        incentives_ineligibility_reason: text(&state.incentives_ineligibility_reason),
        payment_amount: match state.payment_amount.as_ref().map(|v| &v.value) {
            Some(PaymentAmount::Valid(m)) => Some(m.clone()),
            _ => None,
        },
        claimed_at: text(&state.claimed_at),
        claim_seq: state.claim_seq,
        last_seq: state.last_seq,
        source: state.source,
        registered: state.registered,
        registration: state.registration.clone(),
        found_by: state.found_by_sweep.then_some(super::events::FOUND_BY_SWEEP),
        cancellation: state.cancellation.clone(),
        anomalies: anomalies(state),
        payout: obligation(state, ObligationKind::InviteePayment),
        incentive: obligation(state, ObligationKind::InviterIncentive),
        notification: obligation(state, ObligationKind::InviterNotification),
        failure_notice: obligation(state, ObligationKind::InviterFailureNotice),
        fetch: FetchView::of(state),
    }
}

/// The invitation's anomalies: conflicting final statuses or incentive
/// decisions, an obligation whose receiver or amount changed after it was
/// requested, events the fold could not read, snapshots and fetched
/// answers about another invitation.
pub fn anomalies(state: &InvitationState) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let names = |values: Vec<&str>| values.join(" and ");
    if state.terminal_statuses_seen.len() > 1 {
        out.push(Anomaly {
            kind: "status_conflict",
            detail: format!(
                "snapshots report the final statuses {}; the newest, {}, stands",
                names(state.terminal_statuses_seen.iter().map(|s| s.as_str()).collect()),
                state.status().map_or("unknown", |s| s.as_str())
            ),
        });
    }
    if state.incentives_decisions_seen.len() > 1 {
        out.push(Anomaly {
            kind: "incentives_conflict",
            detail: format!(
                "snapshots report the incentive decisions {}; the newest, {}, stands",
                names(state.incentives_decisions_seen.iter().map(|s| s.as_str()).collect()),
                state.incentives_status().map_or("unknown", |s| s.as_str())
            ),
        });
    }
    for kind in ObligationKind::ALL {
        if let Some(detail) = changed_after_request(state, kind) {
            out.push(Anomaly { kind: "changed_after_request", detail });
        }
    }
    for u in &state.undecodable {
        out.push(Anomaly { kind: "undecodable_event", detail: u.reason.clone() });
    }
    for m in &state.identity_mismatches {
        out.push(Anomaly { kind: IDENTITY_MISMATCH, detail: m.detail.clone() });
    }
    out
}

/// How the invitation now differs from what an obligation's first request
/// asked for (receiver or amount), if it does.
pub fn changed_after_request(state: &InvitationState, kind: ObligationKind) -> Option<String> {
    let rec = state.obligation(kind);
    rec.request.as_ref()?;
    let text = |v: &Option<super::state::Versioned<String>>| v.as_ref().map(|v| v.value.clone());
    let current_receiver = match kind {
        ObligationKind::InviteePayment => text(&state.invitee_uma),
        ObligationKind::InviterIncentive
        | ObligationKind::InviterNotification
        | ObligationKind::InviterFailureNotice => text(&state.inviter_uma),
    };
    let mut changes = Vec::new();
    if rec.receiver_uma.is_some() && current_receiver != rec.receiver_uma {
        changes.push(format!(
            "receiver {} requested, the invitation now says {}",
            rec.receiver_uma.as_deref().unwrap_or("-"),
            current_receiver.as_deref().unwrap_or("-")
        ));
    }
    if kind == ObligationKind::InviteePayment {
        let now = state.payment_amount.as_ref().map(|v| &v.value);
        let same = match (now, &rec.amount) {
            (Some(PaymentAmount::Valid(m)), Some(r)) => m.value() == r.value() && m.currency() == r.currency(),
            (_, None) => true,
            _ => false,
        };
        if !same {
            changes.push(format!(
                "amount {} requested, the invitation now says {}",
                rec.amount.as_ref().map_or("-".to_owned(), Money::display),
                match now {
                    Some(PaymentAmount::Valid(m)) => m.display(),
                    Some(PaymentAmount::Invalid { reason }) => format!("an unusable amount ({reason})"),
                    None => "no amount".to_owned(),
                }
            ));
        }
    }
    (!changes.is_empty()).then(|| format!("{}: {}", kind.as_str(), changes.join("; ")))
}

/// When the oldest of `s`'s obligations being retried was first requested
/// (Unix microseconds), if one is being retried: waiting for its next
/// attempt, or with a second or later attempt in flight (during an outage
/// an obligation spends part of each cycle requested; it is still being
/// retried then).
pub fn retrying_since(s: &InvitationState) -> Option<i64> {
    ObligationKind::ALL
        .into_iter()
        .filter(|&kind| match obligation_state(s, kind).0 {
            ObligationState::RetryScheduled => true,
            ObligationState::Requested => s.obligation(kind).attempts > 1,
            _ => false,
        })
        .filter_map(|kind| s.obligation(kind).window_started_at.as_deref().and_then(crate::time::instant))
        .min()
}
