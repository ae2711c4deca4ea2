//! Cancelling an invitation at its source through the service
//! (`POST /v1/invitations/{id or code}/cancel`): the request recorded in
//! the invitation's stream before the call, the answer after it. Once the
//! source confirms, nothing is owed for the invitation, whatever arrives
//! later (`projection::view::due`).

use super::clock::{Clock, Jitter};
use super::endpoint::Endpoint;
use super::reconciler::Reconciler;
use super::register::{grid_outcome_of, outcome_of, CallFailed};
use crate::ledger::LedgerStore;
use crate::projection::events::InternalEvent;
use crate::projection::registration::{CancelFailed, CancelRequested, Cancelled, CreateOutcome};
use crate::projection::state::{fold_stream, InvitationState};
use crate::source::Source;
use crate::time::rfc3339;
use crate::vocab::StreamId;

/// Why an invitation was not cancelled, or what is not known about it.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no invitation {0:?} in the ledger")]
    Unknown(String),
    /// Nothing was sent or stored.
    #[error("{0}")]
    NotConfigured(String),
    /// The source answered that it did not cancel it (recorded).
    #[error("{source_name} refused to cancel {invitation} (code {code}): {error}")]
    Refused { source_name: &'static str, invitation: String, code: String, error: String },
    /// No answer came (recorded): it may be cancelled.
    #[error("no answer from {source_name} about cancelling {invitation}: {error}. It may be cancelled: check at {source_name}, then cancel again")]
    OutcomeUnknown { source_name: &'static str, invitation: String, error: String },
    #[error("the ledger cannot record the cancellation: {0}")]
    Ledger(String),
}

impl<E: Endpoint, C: Clock, J: Jitter> Reconciler<E, C, J> {
    /// Asks the source of `invitation_id` to cancel it, recording the
    /// request and its answer; answers the invitation's state.
    ///
    /// # Errors
    /// [`CancelError`] saying what was recorded.
    pub async fn cancel_invitation(&self, invitation_id: &str) -> Result<InvitationState, CancelError> {
        let ledger_error = |e: crate::ledger::LedgerError| CancelError::Ledger(e.to_string());
        let stream = StreamId::new(invitation_id);
        let events = self.ledger().read_stream(&stream, 0).await.map_err(ledger_error)?;
        let state =
            fold_stream(invitation_id, &events).ok_or_else(|| CancelError::Unknown(invitation_id.to_owned()))?;
        let fetchers = self.fetchers();
        let (lightspark, grid) = (fetchers.lightspark.clone(), fetchers.grid.clone());
        let configured = match state.source {
            Source::Lightspark => lightspark.is_some(),
            Source::Grid => grid.is_some(),
        };
        if !configured {
            return Err(CancelError::NotConfigured(format!(
                "invitations cannot be cancelled at {}: set {}",
                state.source.as_str(),
                super::config::ReconcileConfig::fetch_settings(state.source)
            )));
        }
        let Some(code) = state.code.as_ref().map(|c| c.value.clone()) else {
            return Err(CancelError::NotConfigured(format!(
                "{invitation_id} has no code yet: Lightspark cancels by code; wait for its data to be fetched"
            )));
        };
        let rng = crate::rng::SplitMix::from_entropy();
        let attempt_id = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        let requested = CancelRequested {
            invitation_id: invitation_id.to_owned(),
            attempt_id: attempt_id.clone(),
            source: state.source,
            code: code.clone(),
            requested_at: rfc3339(self.now()),
        };
        self.ledger().append(InternalEvent::CancelRequested(requested).to_new_event()).await.map_err(ledger_error)?;
        let answer = match (state.source, lightspark, grid) {
            (Source::Lightspark, Some(client), _) => client
                .cancel_invitation(&code)
                .await
                .map_err(|e| CallFailed { outcome: outcome_of(&e), error: e.to_string() }),
            (_, _, Some(client)) => client
                .cancel_invitation(&code)
                .await
                .map_err(|e| CallFailed { outcome: grid_outcome_of(&e), error: e.to_string() }),
            _ => unreachable!("checked configured above"),
        };
        let now = rfc3339(self.now());
        let source_name = state.source.as_str();
        let event = match &answer {
            Ok(entity) => InternalEvent::Cancelled(Cancelled {
                invitation_id: invitation_id.to_owned(),
                attempt_id,
                source: state.source,
                cancelled_at: now,
                entity: entity.clone(),
            }),
            Err(e) => InternalEvent::CancelFailed(CancelFailed {
                invitation_id: invitation_id.to_owned(),
                attempt_id,
                source: state.source,
                outcome: e.outcome,
                error: e.error.clone(),
                failed_at: now,
            }),
        };
        self.ledger().append(event.to_new_event()).await.map_err(ledger_error)?;
        if let Err(e) = answer {
            tracing::warn!(invitation_id, error = %e, "cancelling an invitation failed");
            let (invitation, error) = (invitation_id.to_owned(), e.error);
            return Err(match e.outcome {
                CreateOutcome::Refused => CancelError::Refused { source_name, invitation, code, error },
                CreateOutcome::Unknown => CancelError::OutcomeUnknown { source_name, invitation, error },
            });
        }
        let events = self.ledger().read_stream(&stream, 0).await.map_err(ledger_error)?;
        fold_stream(invitation_id, &events).ok_or_else(|| CancelError::Unknown(invitation_id.to_owned()))
    }
}
