//! The exactly-once protocol for one obligation, and the in-doubt record.
//!
//! Append `*.requested` (key, attempt, receiver, amount, the body) and wait
//! for its commit → call the endpoint with the `Idempotency-Key` header →
//! append `*.succeeded` or `*.failed`. The key is a function of
//! (invitation, kind), so a crash anywhere leads to a retry with the same
//! key, which the platform deduplicates.

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::clock::{backoff, Clock, Jitter};
use super::endpoint::{judge, Endpoint, OutgoingRequest, Verdict};
use super::request::request_for;
use super::worker::{Outcome, ReconcileError, Reconciler};
use crate::lightspark::signature::sign;
use crate::projection::events::{
    IdempotencyKey, InDoubtReason, InternalEvent, ObligationFailed, ObligationInDoubt, ObligationKind,
    ObligationRequested, ObligationSucceeded,
};
use crate::projection::state::InvitationState;
use crate::time::rfc3339;

impl<E: Endpoint, C: Clock, J: Jitter> Reconciler<E, C, J> {
    /// Records that `kind` of `state` is in doubt, and why; nothing more is
    /// sent for it until an operator resolves it.
    pub(super) async fn mark_in_doubt(
        &self,
        state: &InvitationState,
        kind: ObligationKind,
        reason: InDoubtReason,
    ) -> Result<Outcome, ReconcileError> {
        let key = IdempotencyKey::of(&state.invitation_id, kind);
        let body = ObligationInDoubt {
            invitation_id: state.invitation_id.clone(),
            obligation: kind,
            idempotency_key: key.clone(),
            first_requested_at: state.obligation(kind).window_started_at.clone().unwrap_or_default(),
            at: rfc3339(self.inner.clock.now()),
            reason,
        };
        self.inner.writer.append(InternalEvent::InDoubt(body).to_new_event()).await?;
        let why = match reason {
            InDoubtReason::WindowExpired => "requested longer ago than IDEMPOTENCY_WINDOW with no recorded outcome",
            InDoubtReason::NoLongerDue => "requested, but the invitation no longer owes it",
        };
        tracing::warn!(invitation_id = %state.invitation_id, kind = kind.as_str(), idempotency_key = %key, reason = reason.as_str(),
            "obligation is in doubt ({why}); an operator must resolve it");
        let line = format!("{} {}: in doubt ({})", state.invitation_id, kind.as_str(), reason.as_str());
        Ok(Outcome { in_doubt: 1, lines: vec![line], ..Outcome::default() })
    }

    /// One call of the protocol, as the `attempt`-th for `kind` of `state`.
    pub(super) async fn send(
        &self,
        state: &InvitationState,
        kind: ObligationKind,
        attempt: u32,
    ) -> Result<Outcome, ReconcileError> {
        let key = IdempotencyKey::of(&state.invitation_id, kind);
        let Some(request) = request_for(state, kind, &key, &self.inner.config) else {
            return Ok(Outcome { not_configured: 1, ..Outcome::default() });
        };
        let amount = request.amount.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string);
        let receiver_uma = request.receiver_uma.as_deref().unwrap_or("-");
        let span = tracing::info_span!("obligation", invitation_id = %state.invitation_id, kind = kind.as_str(), idempotency_key = %key, attempt, receiver_uma, amount = amount.as_str());
        async move {
            let id = &state.invitation_id;
            let bytes = request.bytes();
            // 1. Durable intent before the call.
            let requested = ObligationRequested {
                invitation_id: id.clone(),
                obligation: kind,
                idempotency_key: key.clone(),
                attempt,
                requested_at: rfc3339(self.inner.clock.now()),
                receiver_uma: request.receiver_uma.clone(),
                amount: request.amount.clone(),
                request: request.body,
            };
            let recorded = self.inner.writer.append(InternalEvent::Requested(requested).to_new_event()).await?;
            if recorded.duplicate {
                // This attempt was recorded before: whoever recorded it makes
                // the call. A second one would be a call without its own
                // recorded attempt (a retry after a crash is the next attempt).
                tracing::warn!("this attempt was recorded already; not sent again");
                return Ok(Outcome::default());
            }
            // 2. The call, with the same key (and body) on every attempt.
            let signature = match kind {
                ObligationKind::InviterNotification => None,
                _ => self.inner.config.payout_signing_key.as_ref().map(|k| sign(k.expose().as_bytes(), &bytes)),
            };
            let outcome = self
                .inner
                .endpoint
                .call(OutgoingRequest { url: request.url, idempotency_key: key.to_string(), body: bytes, signature })
                .await;
            // 3. The outcome.
            let (event, result) = self.outcome(id, kind, &key, attempt, judge(&outcome), self.inner.clock.now());
            self.inner.writer.append(event.to_new_event()).await?;
            Ok(result)
        }
        .instrument(span)
        .await
    }

    /// The event that records a verdict, and what the pass reports of it.
    fn outcome(
        &self,
        id: &str,
        kind: ObligationKind,
        key: &IdempotencyKey,
        attempt: u32,
        verdict: Verdict,
        now: DateTime<Utc>,
    ) -> (InternalEvent, Outcome) {
        let calls = |outcome: &str| self.inner.metrics.obligation_call(kind, outcome);
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
                calls("succeeded");
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
                (event, Outcome { sent: 1, succeeded: 1, lines: vec![line], ..Outcome::default() })
            }
            Verdict::Permanent { status, error } => {
                calls("failed");
                tracing::warn!(status, %error, "obligation failed permanently; an operator must look at it");
                let line = format!("{id} {}: failed (HTTP {status}, attempt {attempt})", kind.as_str());
                (
                    failed(Some(status), error, None),
                    Outcome { sent: 1, failed: 1, lines: vec![line], ..Outcome::default() },
                )
            }
            Verdict::Transient { status, error } => {
                calls("transient");
                let config = &self.inner.config;
                let delay = backoff(attempt, config.retry_base, config.retry_max, &self.inner.jitter);
                let next = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                let retry_in_ms = delay.as_millis() as u64;
                match status {
                    Some(status) => tracing::warn!(status, %error, retry_in_ms, "transient failure; retry scheduled"),
                    None => tracing::warn!(status = "none", %error, retry_in_ms, "transient failure; retry scheduled"),
                }
                let line = format!("{id} {}: retry scheduled ({error}, attempt {attempt})", kind.as_str());
                let outcome = Outcome {
                    sent: 1,
                    retry_scheduled: 1,
                    next_due: Some(next),
                    lines: vec![line],
                    ..Outcome::default()
                };
                (failed(status, error, Some(next)), outcome)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::ReconcileConfig;
    use crate::invitation::InvitationStatus;
    use crate::ledger::writer::LedgerWriter;
    use crate::metrics::Metrics;
    use crate::money::{Money, PaymentAmount};
    use crate::projection::state::Versioned;
    use crate::reconcile::clock::SystemClock;
    use crate::reconcile::endpoint::CallOutcome;
    use crate::reconcile::fetch::Fetchers;
    use crate::reconcile::worker::Seams;
    use crate::rng::SplitMix;

    /// A platform that counts the calls it receives and accepts each one.
    #[derive(Clone, Default)]
    struct Counting(Arc<AtomicUsize>);

    impl Endpoint for Counting {
        fn call(&self, _: OutgoingRequest) -> impl Future<Output = CallOutcome> + Send {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::ready(CallOutcome::Answered { status: 200, body: br#"{"payment_id":"pay_1"}"#.to_vec() })
        }
    }

    fn config() -> ReconcileConfig {
        let second = Duration::from_secs(1);
        ReconcileConfig {
            payout_url: Some("http://payments.test/v1/payouts".into()),
            payout_signing_key: None,
            notify_url: None,
            inviter_incentive: None,
            lightspark_api_url: "http://lightspark.test/graphql".into(),
            lightspark_credentials: None,
            fetch_horizon: 3600 * second,
            grid_api_url: "http://grid.test/".into(),
            grid_credentials: None,
            interval: second,
            retry_base: second,
            retry_max: 60 * second,
            idempotency_window: 24 * 3600 * second,
            request_timeout: 10 * second,
            concurrency: 1,
        }
    }

    #[tokio::test]
    async fn an_attempt_recorded_already_is_not_sent_again() {
        // Given a reconciler whose platform counts its calls, and a claimed
        // invitation with an amount to pay
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let (writer, thread) = LedgerWriter::start(&db).unwrap();
        let platform = Counting::default();
        let reconciler = Reconciler::new(
            db,
            writer,
            config(),
            Seams { endpoint: platform.clone(), clock: SystemClock, jitter: SplitMix::seeded(1) },
            Fetchers::default(),
            Arc::new(Metrics::default()),
        );
        let mut state = InvitationState::new("Inv:1");
        state.status = Some(Versioned { value: InvitationStatus::Claimed, at: 0, seq: 1 });
        state.invitee_uma = Some(Versioned { value: "$b@y.example".into(), at: 0, seq: 1 });
        state.payment_amount =
            Some(Versioned { value: PaymentAmount::Valid(Money::new(500, "USD").unwrap()), at: 0, seq: 1 });
        // When the same attempt of its payment is sent twice, as a pass that
        // read the invitation twice would
        reconciler.send(&state, ObligationKind::InviteePayment, 1).await.unwrap();
        reconciler.send(&state, ObligationKind::InviteePayment, 1).await.unwrap();
        // Then the platform is called once: every call has its own recorded attempt
        assert_eq!(platform.0.load(Ordering::SeqCst), 1);
        drop(reconciler);
        thread.join().unwrap();
    }
}
