//! What the ledger says of an invitation's fetches and of each of its
//! obligations: the records [`super::state::InvitationState`] holds, with
//! their phases. Types only; the fold that fills them is `state`'s.

use serde::{Deserialize, Serialize};

use super::events::{Decision, IdempotencyKey};

pub(super) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

pub(super) fn is_zero_seq(n: &u64) -> bool {
    *n == 0
}

pub(super) fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What the ledger says about fetching the invitation from its source.
/// When and how often to fetch is the reconciler's (in memory); the ledger
/// keeps what the fetches found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchPhase {
    /// The invitation's data came with a webhook.
    #[default]
    NotNeeded,
    /// A claim came without the invitation, and no fetch has found it yet.
    Pending,
    /// A fetched snapshot gave the invitation's data.
    Fetched,
    /// The source answered that it does not know the invitation (yet: the
    /// API may lag the webhook).
    NotFound,
    /// The id names something that is not an invitation: never fetched again.
    Failed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRecord {
    #[serde(default)]
    pub phase: FetchPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What the ledger says was done for one obligation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObligationPhase {
    /// Nothing sent yet.
    #[default]
    Untouched,
    Requested,
    RetryScheduled,
    Succeeded,
    Failed,
    InDoubt,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObligationRecord {
    #[serde(default)]
    pub phase: ObligationPhase,
    /// HTTP calls made; each is preceded by its own `*.requested` event.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<IdempotencyKey>,
    /// When the current idempotency window started: the first request, or
    /// the operator's `--retry`. Past `IDEMPOTENCY_WINDOW` it is in doubt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Who the first request asked the platform to pay (or notify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_uma: Option<String>,
    /// What the first request asked for (payments and incentives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<crate::money::Money>,
    /// The body of the first request under this key: every retry re-sends
    /// exactly it, since a platform rejects a key reused with other
    /// parameters (and a newer snapshot must not change a payment in flight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded_seq: Option<u64>,
    /// `*.succeeded` events seen; more than one key-distinct success would
    /// be an anomaly the audit reports.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub successes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Why it is in doubt (`window_expired`, `no_longer_due`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
