//! The events of the exactly-once protocol for one obligation, built from
//! what was decided and what the platform answered: the request recorded
//! before each call, the outcome after it, the in-doubt record. Pure; the
//! reconciler (`reconciler.rs`) appends them and makes the call.
//!
//! Append `*.requested` (key, attempt, receiver, amount, the body) and wait
//! for its commit → call the endpoint with the `Idempotency-Key` header →
//! append `*.succeeded` or `*.failed`. The key is a function of
//! (invitation, kind), so a crash anywhere leads to a retry with the same
//! key, which the platform deduplicates.

use chrono::{DateTime, Utc};

use super::clock::{backoff, Jitter};
use super::config::ReconcileConfig;
use super::endpoint::Verdict;
use super::outcome::Outcome;
use crate::projection::events::{
    IdempotencyKey, InDoubtReason, InternalEvent, ObligationFailed, ObligationInDoubt, ObligationKind,
    ObligationSucceeded,
};
use crate::projection::state::InvitationState;
use crate::time::rfc3339;

/// The `obligation.in_doubt` record of `kind` of `state`, and what the pass
/// reports of it.
pub(super) fn in_doubt(
    state: &InvitationState,
    kind: ObligationKind,
    reason: InDoubtReason,
    now: DateTime<Utc>,
) -> (InternalEvent, Outcome) {
    let key = IdempotencyKey::of(&state.invitation_id, kind);
    let body = ObligationInDoubt {
        invitation_id: state.invitation_id.clone(),
        obligation: kind,
        idempotency_key: key,
        first_requested_at: state.obligation(kind).window_started_at.clone().unwrap_or_default(),
        at: rfc3339(now),
        reason,
    };
    let line = format!("{} {}: in doubt ({})", state.invitation_id, kind.as_str(), reason.as_str());
    (InternalEvent::InDoubt(body), Outcome { in_doubt: 1, ..Outcome::default() }.line(line))
}

/// The event that records what the platform answered the `attempt`-th
/// request of `kind` of invitation `id`, what the pass reports of it, and
/// the label its call is counted under.
#[allow(clippy::too_many_arguments)]
pub(super) fn outcome(
    id: &str,
    kind: ObligationKind,
    key: &IdempotencyKey,
    attempt: u32,
    verdict: Verdict,
    now: DateTime<Utc>,
    config: &ReconcileConfig,
    jitter: &dyn Jitter,
) -> (InternalEvent, Outcome, &'static str) {
    let failed = |http_status, error, next: Option<DateTime<Utc>>| {
        InternalEvent::Failed(ObligationFailed {
            invitation_id: id.to_owned(),
            obligation: kind,
            idempotency_key: key.clone(),
            attempt,
            http_status,
            error,
            permanent: next.is_none(),
            next_attempt_at: next.map(rfc3339),
            at: rfc3339(now),
        })
    };
    match verdict {
        Verdict::Succeeded { status, payment_id } => {
            tracing::info!(status, payment_id = payment_id.as_deref().unwrap_or("-"), "obligation succeeded");
            let event = InternalEvent::Succeeded(ObligationSucceeded {
                invitation_id: id.to_owned(),
                obligation: kind,
                idempotency_key: key.clone(),
                attempt,
                http_status: status,
                payment_id,
                at: rfc3339(now),
            });
            let line = format!("{id} {}: succeeded (HTTP {status}, attempt {attempt})", kind.as_str());
            (event, Outcome { sent: 1, succeeded: 1, ..Outcome::default() }.line(line), "succeeded")
        }
        Verdict::Permanent { status, error } => {
            tracing::warn!(status, %error, "obligation failed permanently; an operator must look at it");
            let line = format!("{id} {}: failed (HTTP {status}, attempt {attempt})", kind.as_str());
            let outcome = Outcome { sent: 1, failed: 1, ..Outcome::default() }.line(line);
            (failed(Some(status), error, None), outcome, "failed")
        }
        Verdict::Transient { status, error } => {
            let delay = backoff(attempt, config.retry_base, config.retry_max, jitter);
            let next = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
            let retry_in_ms = delay.as_millis() as u64;
            match status {
                Some(status) => tracing::warn!(status, %error, retry_in_ms, "transient failure; retry scheduled"),
                None => tracing::warn!(status = "none", %error, retry_in_ms, "transient failure; retry scheduled"),
            }
            let line = format!("{id} {}: retry scheduled ({error}, attempt {attempt})", kind.as_str());
            let outcome =
                Outcome { sent: 1, retry_scheduled: 1, next_due: Some(next), ..Outcome::default() }.line(line);
            (failed(status, error, Some(next)), outcome, "transient")
        }
    }
}
