//! Invitations the VASP creates through the service: the creation's
//! events, and what the fold makes of them.
//!
//! A creation is asked before its invitation has an id (the source gives
//! it), so its request is a stream of its own, `InvitationRequest:<id>`:
//! `invitation.create_requested` is appended there before the call, so a
//! crash or a timeout leaves the request visible. The answer is then
//! recorded in one atomic append of two `invitation.created` events, one
//! in the request's stream (settling it) and one in the new invitation's
//! stream (its first snapshot, marking it registered); a refusal, or an
//! answer that never came, is `invitation.create_failed` in the request's
//! stream, with `outcome` `refused` or `unknown`. An unknown outcome is
//! never asked again by itself: the source may have created the invitation,
//! and a second request would make a second one.

use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::source::Source;

/// The prefix of a creation request's stream.
pub const REQUEST_PREFIX: &str = "InvitationRequest:";

/// `invitation.create_requested`: what was asked of the source, before
/// the call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRequested {
    /// The request's stream, [`REQUEST_PREFIX`] and the request id.
    pub invitation_id: String,
    pub request_id: String,
    pub source: Source,
    pub inviter_uma: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    pub requested_at: String,
}

/// `invitation.created`: the source's answer, the new invitation as it
/// gave it. Appended twice in one batch: in the request's stream and in
/// the invitation's (`created_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    /// The stream this copy belongs to.
    pub invitation_id: String,
    pub request_id: String,
    pub source: Source,
    /// The new invitation's stream: its Lightspark id, or
    /// `GridInvitation:<code>`.
    pub created_id: String,
    pub created_at: String,
    /// The invitation as the source answered it.
    pub entity: serde_json::Value,
}

/// How a creation that gave no invitation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreateOutcome {
    /// The source answered that it did not create it.
    Refused,
    /// No answer came (timeout, a broken connection, a 5xx): the source
    /// may have created it. An operator checks before asking again.
    Unknown,
}

impl CreateOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CreateOutcome::Refused => "refused",
            CreateOutcome::Unknown => "unknown",
        }
    }
}

/// `invitation.create_failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateFailed {
    pub invitation_id: String,
    pub request_id: String,
    pub source: Source,
    pub outcome: CreateOutcome,
    pub error: String,
    pub failed_at: String,
}

/// Where a creation stands, as the fold records it on either stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationPhase {
    /// Asked, no outcome recorded: in flight, or the process died mid-call.
    #[default]
    Requested,
    Created,
    Refused,
    /// Asked, and the answer never came: the source may have created it.
    Unknown,
}

/// A creation through the service, on the request's stream and on the
/// invitation it created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub request_id: String,
    pub state: RegistrationPhase,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inviter_uma: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
    /// The invitation it created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Registration {
    pub fn requested(e: &CreateRequested) -> Self {
        Registration {
            request_id: e.request_id.clone(),
            state: RegistrationPhase::Requested,
            source: e.source,
            inviter_uma: Some(e.inviter_uma.clone()),
            amount: e.amount.clone(),
            expires_at: e.expires_at.clone(),
            requested_at: Some(e.requested_at.clone()),
            created_id: None,
            error: None,
        }
    }

    /// Records the answer; a creation already settled keeps its outcome
    /// (an answer recorded twice, or a late failure after a success).
    pub fn created(&mut self, e: &Created) {
        self.state = RegistrationPhase::Created;
        self.created_id = Some(e.created_id.clone());
        self.error = None;
    }

    pub fn failed(&mut self, e: &CreateFailed) {
        if self.state == RegistrationPhase::Created {
            return;
        }
        self.state = match e.outcome {
            CreateOutcome::Refused => RegistrationPhase::Refused,
            CreateOutcome::Unknown => RegistrationPhase::Unknown,
        };
        self.error = Some(e.error.clone());
    }
}

/// `invitation.cancel_requested`: the service asked the source to cancel
/// the invitation (by its code), before the call. In the invitation's own
/// stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelRequested {
    pub invitation_id: String,
    /// One cancellation attempt: its events' keys.
    pub attempt_id: String,
    pub source: Source,
    pub code: String,
    pub requested_at: String,
}

/// `invitation.cancelled`: the source cancelled it; `entity` is the
/// invitation as it answered (a snapshot, `CANCELLED`). From then on
/// nothing is owed for it, whatever arrives later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancelled {
    pub invitation_id: String,
    pub attempt_id: String,
    pub source: Source,
    pub cancelled_at: String,
    pub entity: serde_json::Value,
}

/// `invitation.cancel_failed`: refused by the source, or no answer came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelFailed {
    pub invitation_id: String,
    pub attempt_id: String,
    pub source: Source,
    pub outcome: CreateOutcome,
    pub error: String,
    pub failed_at: String,
}

/// The last cancellation asked through the service, as the fold records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    /// `requested`, `cancelled`, `refused` or `unknown`.
    pub state: CancellationPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a cancellation stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancellationPhase {
    #[default]
    Requested,
    Cancelled,
    Refused,
    Unknown,
}
