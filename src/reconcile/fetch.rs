//! Fetching an invitation a webhook named without its data.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::clock::{backoff, Clock, Jitter};
use super::endpoint::Endpoint;
use super::worker::{Outcome, ReconcileError, Reconciler};
use crate::projection::events::{InternalEvent, InvitationFetchFailed, InvitationFetched};
use crate::projection::state::{FetchPhase, InvitationState};
use crate::time::{parse_time, rfc3339};

impl<E: Endpoint, C: Clock, J: Jitter> Reconciler<E, C, J> {
    /// Whether `state` waits for a fetch that is due now.
    pub(super) fn fetch_due(&self, state: &InvitationState, now: DateTime<Utc>) -> bool {
        if self.inner.lightspark.is_none() {
            return false;
        }
        match state.fetch.phase {
            FetchPhase::Pending => true,
            FetchPhase::RetryScheduled => {
                state.fetch.next_attempt_at.as_deref().and_then(parse_time).is_none_or(|t| t <= now)
            }
            _ => false,
        }
    }

    /// Asks Lightspark for the invitation and records the answer.
    pub(super) async fn fetch(&self, state: &InvitationState) -> Result<Outcome, ReconcileError> {
        let Some(client) = &self.inner.lightspark else { return Ok(Outcome::default()) };
        let id = &state.invitation_id;
        let span = tracing::info_span!("fetch", invitation_id = %id);
        let answer = client.fetch_invitation(id).instrument(span).await;
        let now = self.inner.clock.now();
        match answer {
            Ok(entity) => {
                let found = entity.is_some();
                let body = InvitationFetched { invitation_id: id.clone(), fetched_at: rfc3339(now), entity };
                self.inner.writer.append(InternalEvent::Fetched(body).to_new_event()).await?;
                let what = if found { "fetched" } else { "unknown to Lightspark" };
                Ok(Outcome { fetched: 1, lines: vec![format!("{id} invitation: {what}")], ..Outcome::default() })
            }
            Err(e) => {
                self.inner.metrics.fetch_failures.inc();
                let attempt = state.fetch.attempts + 1;
                let delay = backoff(
                    attempt,
                    self.inner.config.retry_base,
                    self.inner.config.retry_max.min(Duration::from_secs(300)),
                    &self.inner.jitter,
                );
                let next = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                tracing::warn!(invitation_id = %id, attempt, error = %e, "fetching the invitation from Lightspark failed; will retry");
                let body = InvitationFetchFailed {
                    invitation_id: id.clone(),
                    attempt,
                    error: e.to_string(),
                    failed_at: rfc3339(now),
                    next_attempt_at: rfc3339(next),
                };
                self.inner.writer.append(InternalEvent::FetchFailed(body).to_new_event()).await?;
                Ok(Outcome {
                    fetch_failed: 1,
                    next_due: Some(next),
                    lines: vec![format!("{id} invitation: fetch failed ({e})")],
                    ..Outcome::default()
                })
            }
        }
    }
}
