//! The internal events the service appends about an invitation, and the
//! deterministic keys that make appending them idempotent.
//!
//! They live here, beside the fold that reads them; the reconciler (a later
//! stage) builds them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::money::Money;

/// The three things owed for a claimed invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObligationKind {
    InviteePayment,
    InviterIncentive,
    InviterNotification,
}

impl ObligationKind {
    pub const ALL: [ObligationKind; 3] =
        [ObligationKind::InviteePayment, ObligationKind::InviterIncentive, ObligationKind::InviterNotification];

    /// The name used in requests, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ObligationKind::InviteePayment => "invitee_payment",
            ObligationKind::InviterIncentive => "inviter_incentive",
            ObligationKind::InviterNotification => "inviter_notification",
        }
    }

    /// Accepts the kind's name or its event prefix (`payout`, `incentive`,
    /// `notification`), as an operator might type either.
    pub fn parse(s: &str) -> Option<Self> {
        ObligationKind::ALL.into_iter().find(|k| k.as_str() == s || k.event_prefix() == s)
    }

    /// The prefix of this obligation's ledger event kinds (`payout.requested`, …).
    pub fn event_prefix(self) -> &'static str {
        match self {
            ObligationKind::InviteePayment => "payout",
            ObligationKind::InviterIncentive => "incentive",
            ObligationKind::InviterNotification => "notification",
        }
    }
}

/// The idempotency key of one obligation: a function of (invitation id,
/// kind) only, so every retry and every restart after a crash sends the same
/// key and the platform can deduplicate.
pub fn idempotency_key(invitation_id: &str, kind: ObligationKind) -> String {
    let mut h = Sha256::new();
    h.update(b"invitation-ledger/v1\0");
    h.update(invitation_id.as_bytes());
    h.update(b"\0");
    h.update(kind.as_str().as_bytes());
    format!("il1-{}", hex::encode(&h.finalize()[..16]))
}

/// Event kinds of internal events.
pub mod kinds {
    pub const INVITATION_FETCHED: &str = "invitation.fetched";
    pub const INVITATION_FETCH_FAILED: &str = "invitation.fetch_failed";
    pub const OBLIGATION_IN_DOUBT: &str = "obligation.in_doubt";
    pub const OBLIGATION_RESOLVED: &str = "obligation.resolved";
}

/// `invitation.fetched`: the GraphQL answer for an invitation a webhook named
/// without data. `entity` is `null` when Lightspark does not know the id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvitationFetched {
    pub invitation_id: String,
    pub fetched_at: String,
    pub entity: Option<serde_json::Value>,
}

/// `invitation.fetch_failed`: one failed fetch and when to try again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvitationFetchFailed {
    pub invitation_id: String,
    pub attempt: u32,
    pub error: String,
    pub failed_at: String,
    pub next_attempt_at: String,
}

/// `<prefix>.requested`: written before each HTTP call, so a crash between
/// the call and its outcome leaves a trace and the retry reuses the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObligationRequested {
    pub invitation_id: String,
    pub obligation: ObligationKind,
    pub idempotency_key: String,
    pub attempt: u32,
    pub requested_at: String,
    /// For payments and incentives: what was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// The exact JSON body sent.
    pub request: serde_json::Value,
}

/// `<prefix>.succeeded`: the endpoint answered 2xx or 409.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObligationSucceeded {
    pub invitation_id: String,
    pub obligation: ObligationKind,
    pub idempotency_key: String,
    pub attempt: u32,
    pub http_status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    pub at: String,
}

/// `<prefix>.failed`: permanent (other 4xx) or to be retried at `next_attempt_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObligationFailed {
    pub invitation_id: String,
    pub obligation: ObligationKind,
    pub idempotency_key: String,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub error: String,
    pub permanent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    pub at: String,
}

/// `obligation.in_doubt`: requested long ago, outcome never recorded, and
/// the platform may have forgotten the key. Nothing more is sent until an
/// operator resolves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObligationInDoubt {
    pub invitation_id: String,
    pub obligation: ObligationKind,
    pub idempotency_key: String,
    pub first_requested_at: String,
    pub at: String,
}

/// An operator's decision on an in-doubt (or failed) obligation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Paid outside our knowledge; record the platform's payment id.
    Paid,
    /// Not paid: send again (with the same key).
    Retry,
    /// Give up; stays failed.
    Failed,
}

/// `obligation.resolved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObligationResolved {
    pub invitation_id: String,
    pub obligation: ObligationKind,
    pub idempotency_key: String,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    pub at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_depends_only_on_invitation_and_kind() {
        let a = idempotency_key("Inv:1", ObligationKind::InviteePayment);
        assert_eq!(a, idempotency_key("Inv:1", ObligationKind::InviteePayment));
        assert_ne!(a, idempotency_key("Inv:1", ObligationKind::InviterIncentive));
        assert_ne!(a, idempotency_key("Inv:2", ObligationKind::InviteePayment));
        assert!(a.starts_with("il1-") && a.len() == 4 + 32);
    }

    #[test]
    fn kinds_parse_by_name_or_event_prefix() {
        assert_eq!(ObligationKind::parse("payout"), Some(ObligationKind::InviteePayment));
        assert_eq!(ObligationKind::parse("inviter_incentive"), Some(ObligationKind::InviterIncentive));
        assert_eq!(ObligationKind::parse("nope"), None);
    }
}
