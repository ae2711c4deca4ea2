//! What the read API, the CLI and the reconciler see of an invitation: the
//! DESIGN.md projection JSON, and each obligation's state, derived purely
//! from the folded [`InvitationState`].

use serde::Serialize;

use super::events::{IdempotencyKey, ObligationKind};
use super::state::{FetchPhase, FetchRecord, InvitationState, ObligationPhase, ObligationRecord};
use crate::invitation::IncentivesStatus;
use crate::money::{Money, PaymentAmount};

/// The state names of DESIGN.md ("Obligations and the reconciler").
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
    /// Why it is `ineligible` or `invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    pub idempotency_key: Option<IdempotencyKey>,
    pub payment_id: Option<String>,
    pub last_error: Option<String>,
    pub updated_at: Option<String>,
    pub next_attempt_at: Option<String>,
    /// What was requested (payments and incentives).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
}

/// Whether an obligation is owed at all, from the invitation's facts alone.
/// Cancelled, expired and pending invitations owe nothing.
pub fn due(state: &InvitationState, kind: ObligationKind) -> Result<(), (ObligationState, Option<String>)> {
    let not_due = Err((ObligationState::NotDue, None));
    match kind {
        ObligationKind::InviteePayment => {
            let Some(amount) = state.payment_amount.as_ref().map(|v| &v.value) else { return not_due };
            if !state.is_claimed() {
                return not_due;
            }
            if let PaymentAmount::Invalid { reason } = amount {
                return Err((ObligationState::Invalid, Some(reason.clone())));
            }
            if state.invitee_uma.is_none() {
                return not_due;
            }
            Ok(())
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
            Some(IncentivesStatus::Validated) if state.is_claimed() && state.inviter_uma.is_some() => Ok(()),
            _ => not_due,
        },
        ObligationKind::InviterNotification => {
            if state.is_claimed() && state.invitee_uma.is_some() && state.inviter_uma.is_some() {
                Ok(())
            } else {
                not_due
            }
        }
    }
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
        amount: rec.amount.clone(),
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
        ObligationPhase::InDoubt => (ObligationState::InDoubt, None),
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
    pub const INVITER_NOTIFICATION: i64 = 8;
}

/// Which workers may have something to do for this invitation. Stored with
/// the row so the reconciler reads only invitations it can act on under
/// its configuration (an unconfigured endpoint leaves many rows pending).
pub fn work(state: &InvitationState) -> i64 {
    let mut bits = 0;
    if matches!(state.fetch.phase, FetchPhase::Pending | FetchPhase::RetryScheduled) {
        bits |= work_bits::FETCH;
    }
    for (kind, bit) in [
        (ObligationKind::InviteePayment, work_bits::INVITEE_PAYMENT),
        (ObligationKind::InviterIncentive, work_bits::INVITER_INCENTIVE),
        (ObligationKind::InviterNotification, work_bits::INVITER_NOTIFICATION),
    ] {
        if obligation_state(state, kind).0.is_open() {
            bits |= bit;
        }
    }
    bits
}

/// Whether the reconciler (or the fetcher) may have something to do.
pub fn needs_work(state: &InvitationState) -> bool {
    work(state) != 0
}

/// The invitation projection JSON of DESIGN.md.
#[derive(Debug, Clone, Serialize)]
pub struct InvitationView {
    pub invitation_id: String,
    pub code: Option<String>,
    pub url: Option<String>,
    pub status: Option<String>,
    pub inviter_uma: Option<String>,
    pub invitee_uma: Option<String>,
    pub incentives_status: Option<String>,
    pub incentives_ineligibility_reason: Option<String>,
    pub payment_amount: Option<Money>,
    pub claimed_at: Option<String>,
    pub claim_seq: Option<u64>,
    pub last_seq: u64,
    pub payout: ObligationView,
    pub incentive: ObligationView,
    pub notification: ObligationView,
    /// Fetching the invitation from Lightspark when a webhook had no data.
    pub fetch: FetchView,
}

#[derive(Debug, Clone, Serialize)]
pub struct FetchView {
    pub state: FetchPhase,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
}

impl From<&FetchRecord> for FetchView {
    fn from(f: &FetchRecord) -> Self {
        FetchView {
            state: f.phase,
            attempts: f.attempts,
            last_error: f.last_error.clone(),
            next_attempt_at: f.next_attempt_at.clone(),
        }
    }
}

pub fn view(state: &InvitationState) -> InvitationView {
    let text = |v: &Option<super::state::Versioned<String>>| v.as_ref().map(|v| v.value.clone());
    InvitationView {
        invitation_id: state.invitation_id.clone(),
        code: text(&state.code),
        url: text(&state.url),
        status: state.status().map(|s| s.as_str().to_owned()),
        inviter_uma: text(&state.inviter_uma),
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
        payout: obligation(state, ObligationKind::InviteePayment),
        incentive: obligation(state, ObligationKind::InviterIncentive),
        notification: obligation(state, ObligationKind::InviterNotification),
        fetch: FetchView::from(&state.fetch),
    }
}
