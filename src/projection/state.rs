//! One invitation's state and the pure fold that builds it.
//!
//! [`apply`] reads nothing but the event: no clock, no config, no I/O. The
//! merge rules make the facts independent of delivery order (status and
//! incentives only move forward, the newest snapshot wins field by field,
//! missing fields erase nothing), which is what lets Lightspark's late,
//! repeated and reordered webhooks all land on the same state.

use serde::{Deserialize, Serialize};

use super::events::{decode, Decision, Fact, InternalEvent, ObligationKind, IDENTITY_MISMATCH, NOT_AN_INVITATION};
use crate::invitation::{IncentivesStatus, InvitationSnapshot, InvitationStatus};
use crate::ledger::{EventView, LedgerEvent};
use crate::money::PaymentAmount;
use crate::source::{Report, Source};
use crate::time::instant;

use super::records::{is_default, is_zero_seq};
pub use super::records::{FetchPhase, FetchRecord, ObligationPhase, ObligationRecord};
use super::registration::{Cancellation, CancellationPhase, CreateOutcome, Registration};
pub use super::versioned::Versioned;
use super::versioned::{forward, newest};

/// Everything known about one invitation, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationState {
    pub invitation_id: String,
    /// Who tells us about this invitation (Grid invitations owe no
    /// incentive: Grid has none).
    #[serde(default, skip_serializing_if = "is_default")]
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Versioned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Versioned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inviter_uma: Option<Versioned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inviter_first_name: Option<Versioned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitee_uma: Option<Versioned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Versioned<InvitationStatus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incentives_status: Option<Versioned<IncentivesStatus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incentives_ineligibility_reason: Option<Versioned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_amount: Option<Versioned<PaymentAmount>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Versioned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Versioned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<Versioned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Versioned<String>>,
    /// Earliest moment any event showed `CLAIMED`, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<Versioned<String>>,
    /// Lowest ledger seq of an event that showed `CLAIMED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_seq: Option<u64>,
    pub last_seq: u64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub fetch: FetchRecord,
    #[serde(default, skip_serializing_if = "is_default")]
    pub payout: ObligationRecord,
    #[serde(default, skip_serializing_if = "is_default")]
    pub incentive: ObligationRecord,
    #[serde(default, skip_serializing_if = "is_default")]
    pub notification: ObligationRecord,
    /// The inviter told that the invitee's payment failed for good.
    #[serde(default, skip_serializing_if = "is_default")]
    pub failure_notice: ObligationRecord,
    /// When the invitation's first event was appended (with its seq): how
    /// long it may still be fetched counts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Versioned<String>>,
    /// The seq of the last webhook about it: a new one brings a scheduled
    /// fetch forward.
    #[serde(default, skip_serializing_if = "is_zero_seq")]
    pub last_webhook_seq: u64,
    /// The terminal statuses snapshots have reported, when more than one:
    /// a `status_conflict`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terminal_statuses_seen: Vec<InvitationStatus>,
    /// The final incentive decisions snapshots have reported, when more
    /// than one: an `incentives_conflict`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incentives_decisions_seen: Vec<IncentivesStatus>,
    /// Events of this invitation the fold could not read, with why: never
    /// skipped in silence, they are shown with the invitation and counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undecodable: Vec<UndecodableEvent>,
    /// Snapshots of this stream that name another invitation (or, fetched,
    /// none), and answers the reconciler refused for that: never merged,
    /// shown as the anomaly `identity_mismatch`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_mismatches: Vec<IdentityMismatch>,
    /// Created through the service (`POST /v1/invitations`): the sweep
    /// fetches it until it is claimed, cancelled or expired.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub registered: bool,
    /// The source confirmed a cancellation the service asked for: nothing
    /// is owed for it any more, whatever arrives later.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled_by_service: bool,
    /// The last cancellation asked through the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation: Option<Cancellation>,
    /// Its claim was first seen by the sweep, not by a webhook: a webhook
    /// that did not arrive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub found_by_sweep: bool,
    /// The creation, on its request's stream and on the invitation it made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<Registration>,
    /// The seq of every event of its stream folded in, oldest first: the
    /// invitation page lists its stored events from here, since the row is
    /// written for each of them anyway (an index of streams kept beside the
    /// ledger cost the writer a random page per webhook).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<u64>,
}

/// An event of the invitation's stream that [`apply`] could not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndecodableEvent {
    pub seq: u64,
    pub reason: String,
}

/// An event of the invitation's stream that spoke about another
/// invitation: what it named, and that nothing of it was merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityMismatch {
    pub seq: u64,
    pub detail: String,
}

impl InvitationState {
    pub fn new(invitation_id: impl Into<String>) -> Self {
        Self { invitation_id: invitation_id.into(), ..Self::default() }
    }

    pub fn status(&self) -> Option<&InvitationStatus> {
        self.status.as_ref().map(|v| &v.value)
    }

    pub fn incentives_status(&self) -> Option<&IncentivesStatus> {
        self.incentives_status.as_ref().map(|v| &v.value)
    }

    pub fn is_claimed(&self) -> bool {
        matches!(self.status(), Some(InvitationStatus::Claimed))
    }

    pub fn obligation(&self, kind: ObligationKind) -> &ObligationRecord {
        match kind {
            ObligationKind::InviteePayment => &self.payout,
            ObligationKind::InviterIncentive => &self.incentive,
            ObligationKind::InviterNotification => &self.notification,
            ObligationKind::InviterFailureNotice => &self.failure_notice,
        }
    }

    fn obligation_mut(&mut self, kind: ObligationKind) -> &mut ObligationRecord {
        match kind {
            ObligationKind::InviteePayment => &mut self.payout,
            ObligationKind::InviterIncentive => &mut self.incentive,
            ObligationKind::InviterNotification => &mut self.notification,
            ObligationKind::InviterFailureNotice => &mut self.failure_notice,
        }
    }

    /// Merges one snapshot of the invitation, true as of `at`.
    pub(super) fn merge(&mut self, snap: InvitationSnapshot, at: i64, seq: u64, claimed_text: &str) {
        newest(&mut self.code, snap.code, at, seq);
        newest(&mut self.url, snap.url, at, seq);
        newest(&mut self.inviter_uma, snap.inviter_uma, at, seq);
        newest(&mut self.inviter_first_name, snap.inviter_first_name, at, seq);
        newest(&mut self.invitee_uma, snap.invitee_uma, at, seq);
        newest(&mut self.incentives_ineligibility_reason, snap.incentives_ineligibility_reason, at, seq);
        newest(&mut self.payment_amount, snap.payment_amount, at, seq);
        newest(&mut self.created_at, snap.created_at, at, seq);
        newest(&mut self.updated_at, snap.updated_at, at, seq);
        newest(&mut self.cancelled_at, snap.cancelled_at, at, seq);
        newest(&mut self.expires_at, snap.expires_at, at, seq);
        forward(
            &mut self.incentives_status,
            snap.incentives_status,
            at,
            seq,
            IncentivesStatus::is_terminal,
            &mut self.incentives_decisions_seen,
        );
        if snap.status == Some(InvitationStatus::Claimed) {
            // The earliest showing of CLAIMED is the claim.
            if self.claimed_at.as_ref().is_none_or(|c| (at, seq) < (c.at, c.seq)) {
                self.claimed_at = Some(Versioned { value: claimed_text.to_owned(), at, seq });
            }
            self.claim_seq = Some(self.claim_seq.map_or(seq, |s| s.min(seq)));
        }
        forward(
            &mut self.status,
            snap.status,
            at,
            seq,
            InvitationStatus::is_terminal,
            &mut self.terminal_statuses_seen,
        );
    }
}

/// The state of `invitation_id` folded from its stream's events (in `seq`
/// order), as the ledger holds them now; `None` when it has none. What a
/// decision taken again reads: the truth, not a projection that may lag.
pub fn fold_stream(invitation_id: &str, events: &[LedgerEvent]) -> Option<InvitationState> {
    if events.is_empty() {
        return None;
    }
    let mut state = InvitationState::new(invitation_id);
    for e in events {
        apply_to(&mut state, e.view());
    }
    Some(state)
}

/// Folds one event into the state of the invitation it concerns. Events of
/// other invitations leave it unchanged; an event that cannot be read is
/// recorded on the invitation (see [`InvitationState::undecodable`]).
pub fn apply(mut state: InvitationState, event: &LedgerEvent) -> InvitationState {
    apply_to(&mut state, event.view());
    state
}

/// [`apply`] in place, on a borrowed view of the event: what a replay
/// folds, straight from the row, without moving the state (over a kilobyte)
/// in and out for every event.
pub fn apply_to(state: &mut InvitationState, event: EventView<'_>) {
    if event.stream != Some(state.invitation_id.as_str()) {
        return;
    }
    state.last_seq = state.last_seq.max(event.seq);
    // Kept sorted and without repeats whatever order events come in (they
    // come in seq order, so this is a push).
    if let Err(at) = state.events.binary_search(&event.seq) {
        state.events.insert(at, event.seq);
    }
    if state.first_seen.as_ref().is_none_or(|f| event.seq < f.seq) {
        state.first_seen = Some(Versioned { value: event.recorded_at.to_owned(), at: 0, seq: event.seq });
    }
    let fact = match decode(event) {
        Ok(fact) => fact,
        Err(e) => {
            state.undecodable.push(UndecodableEvent { seq: e.seq, reason: e.to_string() });
            return;
        }
    };
    match fact {
        Fact::Webhook(source, report) => apply_webhook(state, source, report, event.seq),
        Fact::Internal(InternalEvent::Fetched(f)) => match f.entity {
            Some(entity) => {
                state.source = f.source;
                let report = read_answer(f.source, &entity);
                // An answer is about the invitation asked only if it says
                // so: one that names another, or none, was recorded before
                // the reconciler checked (it now refuses them).
                if let Some(named) = contradiction(&state.invitation_id, f.source, &report, true) {
                    state.identity_mismatches.push(IdentityMismatch {
                        seq: event.seq,
                        detail: format!("the answer fetched at seq {} names {named}: not merged", event.seq),
                    });
                    return;
                }
                // An answer that dates itself no other way was true when
                // it was fetched.
                let dated = report.dated.unwrap_or(f.fetched_at);
                state.merge(report.snapshot, instant(&dated).unwrap_or(i64::MIN), event.seq, &dated);
                state.fetch.phase = FetchPhase::Fetched;
                if f.found_by.as_deref() == Some(super::events::FOUND_BY_SWEEP) {
                    state.found_by_sweep = true;
                }
                // A refusal before it is no longer the news.
                state.fetch.last_error = None;
            }
            None => {
                if matches!(state.fetch.phase, FetchPhase::Pending | FetchPhase::NotNeeded) {
                    state.fetch.phase = FetchPhase::NotFound;
                }
            }
        },
        Fact::Internal(InternalEvent::FetchFailed(f)) => {
            if f.reason == IDENTITY_MISMATCH {
                // Refused, and asked again: the phase stays what it was.
                state.identity_mismatches.push(IdentityMismatch {
                    seq: event.seq,
                    detail: format!("the answer fetched at seq {} was refused: {}", event.seq, f.error),
                });
            }
            state.fetch.last_error = Some(f.error);
            if f.reason == NOT_AN_INVITATION {
                state.fetch.phase = FetchPhase::Failed;
            }
        }
        Fact::Internal(InternalEvent::InDoubt(d)) => {
            let ob = state.obligation_mut(d.obligation);
            if ob.phase != ObligationPhase::Succeeded && ob.phase != ObligationPhase::Failed {
                ob.phase = ObligationPhase::InDoubt;
                ob.next_attempt_at = None;
                ob.updated_at = Some(d.at);
                ob.reason = Some(d.reason.as_str().to_owned());
            }
        }
        Fact::Internal(
            e @ (InternalEvent::CreateRequested(_)
            | InternalEvent::CreateFailed(_)
            | InternalEvent::Created(_)
            | InternalEvent::CancelRequested(_)
            | InternalEvent::CancelFailed(_)
            | InternalEvent::Cancelled(_)),
        ) => apply_registration(state, e, event.seq),
        Fact::Internal(InternalEvent::Resolved(r)) => {
            let ob = state.obligation_mut(r.obligation);
            ob.decision = Some(r.decision);
            ob.reason = None;
            ob.updated_at = Some(r.at.clone());
            ob.next_attempt_at = None;
            match r.decision {
                Decision::Paid => {
                    ob.phase = ObligationPhase::Succeeded;
                    ob.payment_id = r.payment_id;
                    ob.succeeded_seq = Some(event.seq);
                    ob.successes += 1;
                }
                Decision::Retry => {
                    ob.phase = ObligationPhase::RetryScheduled;
                    ob.window_started_at = Some(r.at.clone());
                    ob.next_attempt_at = Some(r.at);
                }
                Decision::Failed => ob.phase = ObligationPhase::Failed,
            }
        }
        Fact::Internal(InternalEvent::Requested(r)) => {
            let ob = state.obligation_mut(r.obligation);
            let settled = matches!(ob.phase, ObligationPhase::Succeeded | ObligationPhase::Failed);
            ob.attempts = ob.attempts.max(r.attempt);
            ob.idempotency_key = Some(r.idempotency_key);
            if ob.window_started_at.is_none() {
                ob.window_started_at = Some(r.requested_at.clone());
            }
            if ob.request.is_none() {
                // What the first request asked for is what every retry
                // asks for: it is the obligation's record of what was asked.
                ob.receiver_uma = r.receiver_uma.or_else(|| receiver_in(&r.request));
                ob.amount = r.amount;
                // A null body is no body: stored as JSON, `Some(null)`
                // reads back as `None`, and the fold must not depend on
                // whether the state was stored between two events.
                ob.request = Some(r.request).filter(|v| !v.is_null());
            }
            ob.requested_seq = Some(event.seq);
            ob.updated_at = Some(r.requested_at);
            if !settled && ob.phase != ObligationPhase::InDoubt {
                ob.phase = ObligationPhase::Requested;
                ob.next_attempt_at = None;
            }
        }
        Fact::Internal(InternalEvent::Succeeded(s)) => {
            let ob = state.obligation_mut(s.obligation);
            ob.successes += 1;
            if ob.phase != ObligationPhase::Succeeded {
                ob.phase = ObligationPhase::Succeeded;
                ob.payment_id = s.payment_id;
                ob.succeeded_seq = Some(event.seq);
                ob.updated_at = Some(s.at);
                ob.next_attempt_at = None;
                ob.last_error = None;
            }
        }
        Fact::Internal(InternalEvent::Failed(f)) => {
            let ob = state.obligation_mut(f.obligation);
            let settled = matches!(ob.phase, ObligationPhase::Succeeded | ObligationPhase::Failed);
            ob.last_error = Some(f.error);
            if !settled {
                ob.updated_at = Some(f.at);
                if f.permanent {
                    ob.phase = ObligationPhase::Failed;
                    ob.next_attempt_at = None;
                } else if ob.phase != ObligationPhase::InDoubt {
                    ob.phase = ObligationPhase::RetryScheduled;
                    ob.next_attempt_at = f.next_attempt_at;
                }
            }
        }
    }
}

/// The receiver named in a request body written before requests recorded
/// it on their own (`receiver_uma`, or the inviter for a notification).
fn receiver_in(request: &serde_json::Value) -> Option<String> {
    ["receiver_uma", "inviter_uma"].iter().find_map(|k| request.get(*k)?.as_str().map(str::to_owned))
}

fn apply_webhook(state: &mut InvitationState, source: Source, report: Report, seq: u64) {
    state.source = source;
    state.last_webhook_seq = state.last_webhook_seq.max(seq);
    if let Some(named) = contradiction(&state.invitation_id, source, &report, false) {
        state
            .identity_mismatches
            .push(IdentityMismatch { seq, detail: format!("the webhook at seq {seq} names {named}: not merged") });
        // What this invitation is, only its source can now say.
        if state.fetch.phase == FetchPhase::NotNeeded {
            state.fetch.phase = FetchPhase::Pending;
        }
        return;
    }
    let dated = report.dated.unwrap_or_default();
    let at = instant(&dated).unwrap_or(i64::MIN);
    state.merge(report.snapshot, at, seq, &dated);
    if report.data_missing && state.fetch.phase == FetchPhase::NotNeeded {
        state.fetch.phase = FetchPhase::Pending;
    }
}

/// Which other invitation a snapshot of stream `stream` names, if it names
/// one: its own id (Lightspark) or code (Grid), and the envelope's
/// `entity_id`, must each be the stream's. `strict` (a fetched answer):
/// naming none is a contradiction too, since only its id says which
/// invitation an answer is about. Texts are quoted and cut, so that an
/// odd id reads as what it is.
pub(super) fn contradiction(stream: &str, source: Source, report: &Report, strict: bool) -> Option<String> {
    let quoted = |s: &str| crate::upstream::cut(&format!("{s:?}"));
    let (own, expected) = match source {
        Source::Lightspark => (report.snapshot.id.as_deref(), stream),
        Source::Grid => {
            let code = stream.strip_prefix(crate::vocab::StreamId::GRID_PREFIX).unwrap_or(stream);
            (report.snapshot.code.as_deref(), code)
        }
    };
    let what = match source {
        Source::Lightspark => "invitation",
        Source::Grid => "invitation code",
    };
    if let Some(named) = report.envelope_id.as_deref().filter(|id| *id != stream) {
        return Some(format!("invitation {} in its envelope", quoted(named)));
    }
    match own {
        Some(named) if named != expected => Some(format!("{what} {}", quoted(named))),
        None if strict => Some(format!("no {what}")),
        _ => None,
    }
}

/// Folds one creation or cancellation event into the state of the stream
/// it belongs to (`seq` its ledger position): the request's stream keeps
/// the creation's progress, the invitation's stream takes the answer as a
/// snapshot. Other events are left alone.
fn apply_registration(state: &mut InvitationState, event: InternalEvent, seq: u64) {
    match event {
        InternalEvent::CreateRequested(c) => {
            state.source = c.source;
            state.registration = Some(Registration::requested(&c));
        }
        InternalEvent::CreateFailed(c) => {
            if let Some(r) = state.registration.as_mut() {
                r.failed(&c);
            }
        }
        InternalEvent::Created(c) => {
            state.source = c.source;
            let registration = state.registration.get_or_insert_with(|| Registration {
                request_id: c.request_id.clone(),
                source: c.source,
                ..Default::default()
            });
            registration.created(&c);
            if c.created_id == state.invitation_id {
                // The new invitation's own copy: its first snapshot.
                let report = read_answer(c.source, &c.entity);
                if let Some(named) = contradiction(&state.invitation_id, c.source, &report, true) {
                    state.identity_mismatches.push(IdentityMismatch {
                        seq,
                        detail: format!("the created invitation at seq {seq} names {named}: not merged"),
                    });
                    return;
                }
                state.registered = true;
                let dated = report.dated.unwrap_or(c.created_at);
                state.merge(report.snapshot, instant(&dated).unwrap_or(i64::MIN), seq, &dated);
            }
        }
        InternalEvent::CancelRequested(c) if !state.cancelled_by_service => {
            state.cancellation = Some(Cancellation {
                state: CancellationPhase::Requested,
                requested_at: Some(c.requested_at),
                error: None,
            });
        }
        InternalEvent::CancelFailed(c) => {
            if let Some(k) = state.cancellation.as_mut().filter(|_| !state.cancelled_by_service) {
                k.state = match c.outcome {
                    CreateOutcome::Refused => CancellationPhase::Refused,
                    CreateOutcome::Unknown => CancellationPhase::Unknown,
                };
                k.error = Some(c.error);
            }
        }
        InternalEvent::Cancelled(c) => {
            let report = read_answer(c.source, &c.entity);
            state.cancelled_by_service = true;
            let k = state.cancellation.get_or_insert_with(Default::default);
            k.state = CancellationPhase::Cancelled;
            k.error = None;
            if contradiction(&state.invitation_id, c.source, &report, true).is_none() {
                let dated = report.dated.unwrap_or(c.cancelled_at);
                state.merge(report.snapshot, instant(&dated).unwrap_or(i64::MIN), seq, &dated);
            }
        }
        _ => {}
    }
}

/// What a source's answer (a fetch, a creation, a cancellation) says,
/// read as a fetched snapshot.
pub fn read_answer(source: Source, entity: &serde_json::Value) -> Report {
    match source {
        Source::Lightspark => crate::lightspark::invitation::fetched(entity),
        Source::Grid => crate::grid::webhook::fetched(entity),
    }
}
