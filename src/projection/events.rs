//! The ledger's events as types, in both directions: the internal events
//! the service appends (each with its kind, its idempotency key and its
//! row), and the decoder that turns any stored row back into a typed
//! [`Fact`] for the fold.
//!
//! They live here, beside the fold that reads them; the reconciler and the
//! operator commands (later stages) build them. Every event key format of
//! an internal event is written in [`InternalEvent::event_key`] and nowhere
//! else; the webhook keys belong to their source (`lightspark::webhook`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::registration::{CancelFailed, CancelRequested, Cancelled, CreateFailed, CreateRequested, Created};
use crate::ledger::{EventView, NewEvent};
use crate::money::Money;
use crate::source::{Report, Source};
use crate::vocab::{EventKey, StreamId};
pub use crate::vocab::{EventKind, IdempotencyKey, ObligationKind};

/// `invitation.fetched`: what the invitation's source answered when asked
/// for it (the Lightspark GraphQL `entity`, or Grid's `UmaInvitation`),
/// recorded only when it differs from every answer recorded before (its key
/// carries a digest of it). `entity` is `null` when the source does not
/// know the invitation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvitationFetched {
    pub invitation_id: String,
    #[serde(default)]
    pub source: Source,
    pub fetched_at: String,
    pub entity: Option<serde_json::Value>,
    /// Who asked: `None` for the reconciler's schedule, `Some(note)` for an
    /// operator's `refetch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_note: Option<String>,
    /// `sweep`: the answer shows a claim of a registered invitation that no
    /// webhook had announced, found by fetching it on the schedule: a
    /// webhook that did not arrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_by: Option<String>,
}

/// The [`InvitationFetched::found_by`] of a claim the sweep found.
pub const FOUND_BY_SWEEP: &str = "sweep";

impl InvitationFetched {
    /// A short digest of the answer: the same answer twice is one event.
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(&self.entity).expect("a JSON value serialises");
        hex::encode(&Sha256::digest(bytes)[..8])
    }
}

/// Why a fetch failed for good: the id names another entity type.
pub const NOT_AN_INVITATION: &str = "not_an_invitation";

/// Why a fetch's answer was refused: it is an invitation, but not the one
/// asked (another id or code, or none). Asked again on the schedule.
pub const IDENTITY_MISMATCH: &str = "identity_mismatch";

/// `invitation.fetch_failed`: a fetch whose answer is recorded but not
/// used. Either it failed for good (the id names another entity type,
/// [`NOT_AN_INVITATION`]), recorded once; or the source answered about
/// another invitation ([`IDENTITY_MISMATCH`]), recorded once per distinct
/// answer and asked again. Transient failures are retried by the
/// reconciler's schedule and not recorded (ledgers written before kept
/// them, with an `attempt`: they still read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvitationFetchFailed {
    pub invitation_id: String,
    #[serde(default)]
    pub source: Source,
    #[serde(default)]
    pub reason: String,
    pub error: String,
    pub failed_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The refused answer, for an [`IDENTITY_MISMATCH`]: the evidence of
    /// what the source said, never merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<serde_json::Value>,
}

impl InvitationFetchFailed {
    /// A short digest of the refused answer (of `null` when there is
    /// none): each distinct wrong answer is one event.
    pub fn answer_digest(&self) -> String {
        let bytes = serde_json::to_vec(&self.answer).expect("a JSON value serialises");
        hex::encode(&Sha256::digest(bytes)[..8])
    }
}

/// `<prefix>.requested`: written before each HTTP call, so a crash between
/// the call and its outcome leaves a trace and the retry reuses the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObligationRequested {
    pub invitation_id: String,
    pub obligation: ObligationKind,
    pub idempotency_key: IdempotencyKey,
    pub attempt: u32,
    pub requested_at: String,
    /// Who the platform is asked to pay (the inviter, for a notification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_uma: Option<String>,
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
    pub idempotency_key: IdempotencyKey,
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
    pub idempotency_key: IdempotencyKey,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub error: String,
    pub permanent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    pub at: String,
}

/// `obligation.in_doubt`: requested, outcome never settled, and nothing
/// more may be sent until an operator resolves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObligationInDoubt {
    pub invitation_id: String,
    pub obligation: ObligationKind,
    pub idempotency_key: IdempotencyKey,
    pub first_requested_at: String,
    pub at: String,
    #[serde(default)]
    pub reason: InDoubtReason,
}

/// Why an obligation is in doubt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InDoubtReason {
    /// Requested longer ago than the platform remembers idempotency keys:
    /// re-sending could pay twice.
    #[default]
    WindowExpired,
    /// The invitation's newest facts no longer owe it (cancelled, expired,
    /// incentive ineligible, zero amount), but the platform may already
    /// have acted on the request.
    NoLongerDue,
}

impl InDoubtReason {
    pub fn as_str(self) -> &'static str {
        match self {
            InDoubtReason::WindowExpired => "window_expired",
            InDoubtReason::NoLongerDue => "no_longer_due",
        }
    }
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

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Paid => "paid",
            Decision::Retry => "retry",
            Decision::Failed => "failed",
        }
    }
}

/// `obligation.resolved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObligationResolved {
    pub invitation_id: String,
    pub obligation: ObligationKind,
    pub idempotency_key: IdempotencyKey,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    pub at: String,
    /// The occurrence decided on (the obligation's attempts and last change
    /// when the operator looked): deciding twice on the same one is one
    /// event, a second doubt later is a new decision.
    #[serde(default)]
    pub occurrence: String,
    /// Why, in the operator's words (what they checked, a ticket): kept for
    /// whoever reads the trail later; the fold does not read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where the decision was taken. Absent on decisions recorded before
    /// the status page could take them (all from the CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Channel>,
}

/// Where an operator's decision was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The `resolve` command.
    Cli,
    /// A form on the status page's invitation page.
    Page,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Cli => "cli",
            Channel::Page => "page",
        }
    }
}

/// An event the service itself appends about an invitation.
#[derive(Debug, Clone, PartialEq)]
pub enum InternalEvent {
    Fetched(InvitationFetched),
    FetchFailed(InvitationFetchFailed),
    Requested(ObligationRequested),
    Succeeded(ObligationSucceeded),
    Failed(ObligationFailed),
    InDoubt(ObligationInDoubt),
    Resolved(ObligationResolved),
    CreateRequested(CreateRequested),
    Created(Created),
    CreateFailed(CreateFailed),
    CancelRequested(CancelRequested),
    Cancelled(Cancelled),
    CancelFailed(CancelFailed),
}

impl InternalEvent {
    pub fn kind(&self) -> EventKind {
        match self {
            InternalEvent::Fetched(_) => EventKind::InvitationFetched,
            InternalEvent::FetchFailed(_) => EventKind::InvitationFetchFailed,
            InternalEvent::Requested(r) => EventKind::Requested(r.obligation),
            InternalEvent::Succeeded(s) => EventKind::Succeeded(s.obligation),
            InternalEvent::Failed(f) => EventKind::Failed(f.obligation),
            InternalEvent::InDoubt(_) => EventKind::InDoubt,
            InternalEvent::Resolved(_) => EventKind::Resolved,
            InternalEvent::CreateRequested(_) => EventKind::CreateRequested,
            InternalEvent::Created(_) => EventKind::Created,
            InternalEvent::CreateFailed(_) => EventKind::CreateFailed,
            InternalEvent::CancelRequested(_) => EventKind::CancelRequested,
            InternalEvent::Cancelled(_) => EventKind::Cancelled,
            InternalEvent::CancelFailed(_) => EventKind::CancelFailed,
        }
    }

    /// The invitation the event is about: its ledger stream.
    pub fn invitation_id(&self) -> &str {
        match self {
            InternalEvent::Fetched(e) => &e.invitation_id,
            InternalEvent::FetchFailed(e) => &e.invitation_id,
            InternalEvent::Requested(e) => &e.invitation_id,
            InternalEvent::Succeeded(e) => &e.invitation_id,
            InternalEvent::Failed(e) => &e.invitation_id,
            InternalEvent::InDoubt(e) => &e.invitation_id,
            InternalEvent::Resolved(e) => &e.invitation_id,
            InternalEvent::CreateRequested(e) => &e.invitation_id,
            InternalEvent::Created(e) => &e.invitation_id,
            InternalEvent::CreateFailed(e) => &e.invitation_id,
            InternalEvent::CancelRequested(e) => &e.invitation_id,
            InternalEvent::Cancelled(e) => &e.invitation_id,
            InternalEvent::CancelFailed(e) => &e.invitation_id,
        }
    }

    /// The ledger idempotency key: appending the same event twice (a retried
    /// step, a command run twice) stores it once. Every internal key format
    /// is here.
    pub fn event_key(&self) -> EventKey {
        match self {
            InternalEvent::Fetched(e) => match &e.operator_note {
                None => EventKey::fetched(e.source, &e.invitation_id, &e.digest()),
                // An operator's refetch is in the trail whatever it found.
                Some(_) => EventKey::refetched(e.source, &e.invitation_id, &e.digest(), &e.fetched_at),
            },
            InternalEvent::FetchFailed(e) => match e.attempt {
                None => EventKey::fetch_failed(
                    e.source,
                    &e.invitation_id,
                    &e.reason,
                    // Each distinct wrong answer once, however often it comes.
                    (e.reason == IDENTITY_MISMATCH).then(|| e.answer_digest()).as_deref(),
                ),
                Some(attempt) => EventKey::fetch_failed_attempt(e.source, &e.invitation_id, attempt),
            },
            InternalEvent::Requested(e) => EventKey::requested(&e.idempotency_key, e.attempt),
            InternalEvent::Succeeded(e) => EventKey::succeeded(&e.idempotency_key),
            InternalEvent::Failed(e) => EventKey::failed(&e.idempotency_key, e.attempt),
            InternalEvent::InDoubt(e) => EventKey::in_doubt(&e.idempotency_key, &e.first_requested_at),
            InternalEvent::Resolved(e) => EventKey::resolved(&e.idempotency_key, &e.occurrence, e.decision.as_str()),
            InternalEvent::CreateRequested(e) => EventKey::creation(&e.request_id, "requested"),
            InternalEvent::Created(e) => EventKey::creation(&e.request_id, &format!("created:{}", e.invitation_id)),
            InternalEvent::CreateFailed(e) => EventKey::creation(&e.request_id, "failed"),
            InternalEvent::CancelRequested(e) => EventKey::cancellation(&e.attempt_id, "requested"),
            InternalEvent::Cancelled(e) => EventKey::cancellation(&e.attempt_id, "cancelled"),
            InternalEvent::CancelFailed(e) => EventKey::cancellation(&e.attempt_id, "failed"),
        }
    }

    /// The row to append.
    pub fn to_new_event(&self) -> NewEvent {
        let body = match self {
            InternalEvent::Fetched(e) => serde_json::to_vec(e),
            InternalEvent::FetchFailed(e) => serde_json::to_vec(e),
            InternalEvent::Requested(e) => serde_json::to_vec(e),
            InternalEvent::Succeeded(e) => serde_json::to_vec(e),
            InternalEvent::Failed(e) => serde_json::to_vec(e),
            InternalEvent::InDoubt(e) => serde_json::to_vec(e),
            InternalEvent::Resolved(e) => serde_json::to_vec(e),
            InternalEvent::CreateRequested(e) => serde_json::to_vec(e),
            InternalEvent::Created(e) => serde_json::to_vec(e),
            InternalEvent::CreateFailed(e) => serde_json::to_vec(e),
            InternalEvent::CancelRequested(e) => serde_json::to_vec(e),
            InternalEvent::Cancelled(e) => serde_json::to_vec(e),
            InternalEvent::CancelFailed(e) => serde_json::to_vec(e),
        }
        .expect("internal events serialise");
        NewEvent {
            event_key: self.event_key(),
            kind: self.kind(),
            stream: Some(StreamId::new(self.invitation_id())),
            body,
            signature: None,
            sibling_prefix: None,
        }
    }
}

/// What one stored event says, decoded.
// Decoded once per event and consumed at once, on the stack: boxing the
// webhook would allocate for every event of a rebuild.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Fact {
    /// A webhook: what it says about its invitation, read the way its
    /// source writes it.
    Webhook(Source, Report),
    Internal(InternalEvent),
}

/// A stored event the fold cannot read: a body that is not what its kind
/// promises, or a kind this build does not know. The fold records it on
/// the invitation, visibly, instead of skipping it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seq {seq} ({kind}) cannot be read: {reason}")]
pub struct Undecodable {
    pub seq: u64,
    pub kind: String,
    pub reason: String,
}

/// Decodes one stored event.
///
/// # Errors
/// [`Undecodable`] saying why, when the kind is unknown or the body does
/// not hold what the kind promises.
pub fn decode(event: EventView<'_>) -> Result<Fact, Undecodable> {
    let fail = |reason: String| Undecodable { seq: event.seq, kind: event.kind.to_owned(), reason };
    let kind = EventKind::parse(event.kind).ok_or_else(|| fail("a kind this build does not know".into()))?;
    fn body<'b, T: Deserialize<'b>>(bytes: &'b [u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
    let mismatch = |obligation: ObligationKind, expected: ObligationKind| {
        fail(format!("the body is about {} but the kind about {}", obligation.as_str(), expected.as_str()))
    };
    let b = event.body;
    let internal = match kind {
        EventKind::WebhookReceived => {
            let source =
                Source::of_event_key(event.event_key).ok_or_else(|| fail("its key names no known source".into()))?;
            let report = match source {
                Source::Lightspark => crate::lightspark::webhook::report(b).map_err(|e| e.to_string()),
                Source::Grid => crate::grid::webhook::report(b),
            };
            return report.map(|r| Fact::Webhook(source, r)).map_err(fail);
        }
        EventKind::InvitationFetched => InternalEvent::Fetched(body(b).map_err(fail)?),
        EventKind::InvitationFetchFailed => InternalEvent::FetchFailed(body(b).map_err(fail)?),
        EventKind::Requested(k) => {
            let e: ObligationRequested = body(b).map_err(fail)?;
            if e.obligation != k {
                return Err(mismatch(e.obligation, k));
            }
            InternalEvent::Requested(e)
        }
        EventKind::Succeeded(k) => {
            let e: ObligationSucceeded = body(b).map_err(fail)?;
            if e.obligation != k {
                return Err(mismatch(e.obligation, k));
            }
            InternalEvent::Succeeded(e)
        }
        EventKind::Failed(k) => {
            let e: ObligationFailed = body(b).map_err(fail)?;
            if e.obligation != k {
                return Err(mismatch(e.obligation, k));
            }
            InternalEvent::Failed(e)
        }
        EventKind::InDoubt => InternalEvent::InDoubt(body(b).map_err(fail)?),
        EventKind::Resolved => InternalEvent::Resolved(body(b).map_err(fail)?),
        EventKind::CreateRequested => InternalEvent::CreateRequested(body(b).map_err(fail)?),
        EventKind::Created => InternalEvent::Created(body(b).map_err(fail)?),
        EventKind::CreateFailed => InternalEvent::CreateFailed(body(b).map_err(fail)?),
        EventKind::CancelRequested => InternalEvent::CancelRequested(body(b).map_err(fail)?),
        EventKind::Cancelled => InternalEvent::Cancelled(body(b).map_err(fail)?),
        EventKind::CancelFailed => InternalEvent::CancelFailed(body(b).map_err(fail)?),
    };
    if internal.invitation_id() != event.stream.unwrap_or_default() {
        return Err(fail(format!("the body is about {} but the event's stream is another", internal.invitation_id())));
    }
    Ok(Fact::Internal(internal))
}

/// What one stored event recorded, in a few words: how an operator is told
/// what happened to an invitation while they decided.
pub fn summary(event: EventView<'_>) -> String {
    let internal = match decode(event) {
        Ok(Fact::Internal(e)) => e,
        Ok(Fact::Webhook(source, _)) => return format!("a {} webhook arrived", source.as_str()),
        Err(_) => return format!("{} (unreadable)", event.kind),
    };
    match internal {
        InternalEvent::Fetched(f) => match (&f.entity, &f.operator_note) {
            (_, Some(_)) => "an operator refetched the invitation".to_owned(),
            (Some(_), None) => "a fetch recorded the invitation's newest facts".to_owned(),
            (None, None) => "a fetch found the invitation unknown at its source".to_owned(),
        },
        InternalEvent::FetchFailed(f) => format!("a fetch failed ({})", f.reason),
        InternalEvent::Requested(r) => format!("{} was requested (attempt {})", r.obligation.as_str(), r.attempt),
        InternalEvent::Succeeded(s) => format!("{} succeeded", s.obligation.as_str()),
        InternalEvent::Failed(f) if f.permanent => format!("{} failed for good", f.obligation.as_str()),
        InternalEvent::Failed(f) => format!("{} failed and is retried", f.obligation.as_str()),
        InternalEvent::InDoubt(d) => format!("{} became in doubt ({})", d.obligation.as_str(), d.reason.as_str()),
        InternalEvent::Resolved(r) => format!(
            "an operator recorded {} for {}{}",
            r.decision.as_str(),
            r.obligation.as_str(),
            r.by.map(|c| format!(" (from the {})", if c == Channel::Page { "page" } else { "CLI" }))
                .unwrap_or_default()
        ),
        InternalEvent::CreateRequested(c) => {
            format!("the service asked {} to create the invitation", c.source.as_str())
        }
        InternalEvent::Created(c) => format!("{} created invitation {}", c.source.as_str(), c.created_id),
        InternalEvent::CreateFailed(c) => match c.outcome {
            super::registration::CreateOutcome::Refused => format!("{} refused the creation", c.source.as_str()),
            super::registration::CreateOutcome::Unknown => "the creation's outcome is unknown".to_owned(),
        },
        InternalEvent::CancelRequested(c) => {
            format!("the service asked {} to cancel the invitation", c.source.as_str())
        }
        InternalEvent::Cancelled(c) => format!("{} cancelled the invitation", c.source.as_str()),
        InternalEvent::CancelFailed(c) => match c.outcome {
            super::registration::CreateOutcome::Refused => format!("{} refused to cancel it", c.source.as_str()),
            super::registration::CreateOutcome::Unknown => "the cancellation's outcome is unknown".to_owned(),
        },
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
