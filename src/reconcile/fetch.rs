//! Fetching invitations from their source while they can still change what
//! is owed (see `projection::view::fetch_wanted`): a claim that arrived
//! without its invitation, a `PENDING` invitation, a claim whose incentive
//! Lightspark has not assessed yet.
//!
//! The schedule lives in memory: each invitation is fetched first as soon
//! as it is wanted (after a restart, spread over the first interval), then
//! again after `RETRY_BASE_MS`, doubling up to an hour, until
//! `FETCH_HORIZON` after its first event; a new webhook about it brings the
//! next fetch forward. The ledger keeps only what the fetches found: an
//! answer is appended when it differs from every answer recorded before
//! (its key carries a digest of it), an id of another entity type is
//! recorded once and never fetched again, an answer about another
//! invitation (or none) is recorded once per distinct answer and asked
//! again on the schedule, and transient failures are counted and logged,
//! not recorded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::clock::{backoff, Clock, Jitter};
use super::endpoint::Endpoint;
use super::worker::{Outcome, ReconcileError, Reconciler};
use crate::grid::client::{GridClient, GridFetchError};
use crate::ledger::NewEvent;
use crate::lightspark::client::{FetchError, LightsparkClient};
use crate::projection::events::{
    InternalEvent, InvitationFetchFailed, InvitationFetched, IDENTITY_MISMATCH, NOT_AN_INVITATION,
};
use crate::projection::state::InvitationState;
use crate::source::Source;
use crate::time::{parse_time, rfc3339};

/// The longest pause between two fetches of one invitation.
const MAX_GAP: Duration = Duration::from_secs(3600);

/// The clients that fetch invitations, one per source, each present when
/// its credentials are configured.
#[derive(Default)]
pub struct Fetchers {
    pub lightspark: Option<LightsparkClient>,
    pub grid: Option<GridClient>,
}

impl Fetchers {
    /// Whether invitations of `source` can be fetched.
    pub fn configured(&self, source: Source) -> bool {
        match source {
            Source::Lightspark => self.lightspark.is_some(),
            Source::Grid => self.grid.is_some(),
        }
    }

    /// Whether any source can be fetched from.
    pub fn any(&self) -> bool {
        Source::ALL.into_iter().any(|s| self.configured(s))
    }
}

/// What a fetch got, whatever the source.
enum Answer {
    /// The invitation (`Some`), or `None` when the source does not know it.
    Found(Option<serde_json::Value>),
    /// The id names something that is not an invitation.
    NotAnInvitation(String),
    /// An invitation that is not the one asked (another id or code, or
    /// none): `error` says which, `answer` is what came back.
    IdentityMismatch { error: String, answer: serde_json::Value },
    /// Anything else: retried on the schedule.
    Failed(String),
}

/// One invitation's place in the schedule.
#[derive(Debug, Clone, Copy)]
struct Due {
    /// Fetches made since the service started.
    attempts: u32,
    at: DateTime<Utc>,
    /// The last webhook seen when this was scheduled.
    webhook_seq: u64,
}

/// When each wanted invitation is fetched next. In memory only: after a
/// restart every invitation still wanted is fetched once, spread over the
/// first interval so that a restart does not fetch them all at once.
pub(super) struct FetchSchedule {
    due: Mutex<HashMap<String, Due>>,
    /// When this process started, and the ledger head then: an invitation
    /// first seen since is new (fetched at once), one from before is spread.
    started: DateTime<Utc>,
    started_head: u64,
}

impl FetchSchedule {
    pub(super) fn new(started: DateTime<Utc>, started_head: u64) -> Self {
        Self { due: Mutex::default(), started, started_head }
    }

    /// When `state` should be fetched next, and whether that is now;
    /// `None` when it is past the horizon.
    fn next(
        &self,
        state: &InvitationState,
        now: DateTime<Utc>,
        interval: Duration,
        horizon: Duration,
    ) -> Option<DateTime<Utc>> {
        let first = state.first_seen.as_ref().and_then(|f| parse_time(&f.value)).unwrap_or(now);
        if now.signed_duration_since(first).to_std().is_ok_and(|age| age > horizon) {
            self.due.lock().expect("fetch schedule").remove(&state.invitation_id);
            return None;
        }
        let mut due = self.due.lock().expect("fetch schedule");
        let at = match due.get(&state.invitation_id) {
            // A new webhook about it: fetch now.
            Some(d) if state.last_webhook_seq > d.webhook_seq => now,
            Some(d) => d.at,
            None if state.last_seq > self.started_head => now,
            None => self.started + spread(&state.invitation_id, interval),
        };
        due.entry(state.invitation_id.clone()).and_modify(|d| d.at = at).or_insert(Due {
            attempts: 0,
            at,
            webhook_seq: state.last_webhook_seq,
        });
        Some(at)
    }

    /// Records a fetch of `state` made now; the next one waits longer.
    fn fetched(&self, state: &InvitationState, now: DateTime<Utc>, base: Duration, jitter: &dyn Jitter) {
        let mut due = self.due.lock().expect("fetch schedule");
        let d = due.entry(state.invitation_id.clone()).or_insert(Due { attempts: 0, at: now, webhook_seq: 0 });
        d.attempts += 1;
        d.webhook_seq = state.last_webhook_seq;
        let delay = backoff(d.attempts, base, MAX_GAP, jitter);
        d.at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    }

    /// Forgets every invitation not in `wanted`: settled, or no longer read.
    fn keep_only(&self, wanted: &[&str]) {
        let wanted: std::collections::HashSet<&str> = wanted.iter().copied().collect();
        self.due.lock().expect("fetch schedule").retain(|id, _| wanted.contains(id.as_str()));
    }
}

/// A stable offset within `interval` for `id`: invitations still wanted
/// after a restart are fetched spread over the first interval.
fn spread(id: &str, interval: Duration) -> chrono::Duration {
    use sha2::Digest;
    let d = sha2::Sha256::digest(id.as_bytes());
    let n = u64::from_be_bytes(d[..8].try_into().expect("eight bytes"));
    let ms = interval.as_millis().max(1) as u64;
    chrono::Duration::milliseconds((n % ms) as i64)
}

impl<E: Endpoint, C: Clock, J: Jitter> Reconciler<E, C, J> {
    /// When `state` is to be fetched: `Ok` now, `Err(at)` later, `None` not
    /// at all (not wanted, no client for its source, or past the horizon).
    pub(super) fn fetch_decision(
        &self,
        state: &InvitationState,
        now: DateTime<Utc>,
    ) -> Option<Result<(), DateTime<Utc>>> {
        if !crate::projection::view::fetch_wanted(state) || !self.inner.fetchers.configured(state.source) {
            return None;
        }
        let c = &self.inner.config;
        let at = self.inner.fetch_schedule.next(state, now, c.interval, c.fetch_horizon)?;
        Some(if at <= now { Ok(()) } else { Err(at) })
    }

    /// Forgets the schedule of invitations no longer wanted.
    pub(super) fn prune_fetch_schedule(&self, wanted: &[&str]) {
        self.inner.fetch_schedule.keep_only(wanted);
    }

    /// An operator's refetch: asks the source of `invitation_id` (an id the
    /// projection knows) for it now, whatever its schedule, and records the
    /// answer with `note`. What `refetch` and the status page's form do.
    ///
    /// # Errors
    /// A sentence: the invitation is unknown, its source cannot be fetched
    /// from, or the ledger cannot record the answer.
    pub async fn refetch(&self, invitation_id: &str, note: String) -> Result<String, String> {
        let state = self
            .reload(invitation_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no invitation {invitation_id:?} in the projections"))?;
        if !self.inner.fetchers.configured(state.source) {
            return Err(format!(
                "{} comes from {}, which cannot be fetched from: set {}",
                state.invitation_id,
                state.source.as_str(),
                crate::config::ReconcileConfig::fetch_settings(state.source)
            ));
        }
        let outcome = self.fetch(&state, Some(note)).await.map_err(|e| e.to_string())?;
        Ok(outcome.lines.join("; "))
    }

    /// Asks the invitation's source for it now and records what it found;
    /// `operator_note` marks an operator's `refetch` (recorded whatever it
    /// found).
    pub async fn fetch(
        &self,
        state: &InvitationState,
        operator_note: Option<String>,
    ) -> Result<Outcome, ReconcileError> {
        let id = &state.invitation_id;
        let source = state.source;
        let span = tracing::info_span!("fetch", invitation_id = %id, source = source.as_str());
        let answer = match source {
            Source::Lightspark => match &self.inner.fetchers.lightspark {
                Some(client) => match client.fetch_invitation(id).instrument(span).await {
                    Ok(found) => Answer::Found(found),
                    Err(FetchError::NotAnInvitation(why)) => Answer::NotAnInvitation(why),
                    Err(e @ FetchError::IdentityMismatch { .. }) => {
                        let error = e.to_string();
                        let FetchError::IdentityMismatch { answer, .. } = e else { unreachable!() };
                        Answer::IdentityMismatch { error, answer }
                    }
                    Err(e) => Answer::Failed(e.to_string()),
                },
                None => return Ok(Outcome { not_configured: 1, ..Outcome::default() }),
            },
            Source::Grid => match &self.inner.fetchers.grid {
                Some(client) => {
                    let code = state
                        .code
                        .as_ref()
                        .map(|c| c.value.clone())
                        .or_else(|| id.strip_prefix("GridInvitation:").map(str::to_owned))
                        .unwrap_or_default();
                    match client.fetch_invitation(&code).instrument(span).await {
                        Ok(found) => Answer::Found(found),
                        Err(e @ GridFetchError::IdentityMismatch { .. }) => {
                            let error = e.to_string();
                            let GridFetchError::IdentityMismatch { answer, .. } = e else { unreachable!() };
                            Answer::IdentityMismatch { error, answer }
                        }
                        Err(e) => Answer::Failed(e.to_string()),
                    }
                }
                None => return Ok(Outcome { not_configured: 1, ..Outcome::default() }),
            },
        };
        let now = self.inner.clock.now();
        self.inner.fetch_schedule.fetched(state, now, self.inner.config.retry_base, &self.inner.jitter);
        let count = |outcome: &str| self.inner.metrics.fetched(source, outcome);
        // Recorded on the condition that the invitation is as it was when
        // the fetch was decided; when it changed meanwhile, the answer is
        // still recorded if the newest facts still want it (an operator's
        // refetch always does).
        let operator = operator_note.is_some();
        let record = |event: NewEvent| {
            let again = event.clone();
            self.append_decided(state, event, move |fresh| {
                (operator || crate::projection::view::fetch_wanted(fresh)).then(|| again.clone())
            })
        };
        match answer {
            Answer::Found(entity) => {
                let found = entity.is_some();
                let body = InvitationFetched {
                    invitation_id: id.clone(),
                    source,
                    fetched_at: rfc3339(now),
                    entity,
                    operator_note,
                };
                let appended = record(InternalEvent::Fetched(body).to_new_event()).await?;
                let what = match (found, appended.map(|a| a.duplicate)) {
                    (_, None) => "superseded",
                    (false, Some(false)) => "not_found",
                    (false, Some(true)) => "not_found_again",
                    (true, Some(false)) => "changed",
                    (true, Some(true)) => "unchanged",
                };
                count(what);
                Ok(Outcome {
                    fetched: 1,
                    lines: vec![format!("{id} invitation: fetched ({what})")],
                    ..Outcome::default()
                })
            }
            Answer::NotAnInvitation(why) => {
                count("not_an_invitation");
                tracing::warn!(invitation_id = %id, %why, "the id names something that is not an invitation; it is not fetched again");
                let body = InvitationFetchFailed {
                    invitation_id: id.clone(),
                    source,
                    reason: NOT_AN_INVITATION.into(),
                    error: why,
                    failed_at: rfc3339(now),
                    attempt: None,
                    answer: None,
                };
                record(InternalEvent::FetchFailed(body).to_new_event()).await?;
                Ok(Outcome {
                    fetch_failed: 1,
                    lines: vec![format!("{id} invitation: not an invitation")],
                    ..Outcome::default()
                })
            }
            Answer::IdentityMismatch { error, answer } => {
                count(IDENTITY_MISMATCH);
                tracing::warn!(invitation_id = %id, %error, "the source answered about another invitation; the answer is recorded, not used, and the invitation is asked again later");
                let body = InvitationFetchFailed {
                    invitation_id: id.clone(),
                    source,
                    reason: IDENTITY_MISMATCH.into(),
                    error: error.clone(),
                    failed_at: rfc3339(now),
                    attempt: None,
                    answer: Some(answer),
                };
                record(InternalEvent::FetchFailed(body).to_new_event()).await?;
                Ok(Outcome {
                    fetch_failed: 1,
                    lines: vec![format!("{id} invitation: answer refused ({error})")],
                    ..Outcome::default()
                })
            }
            Answer::Failed(error) => {
                count("error");
                tracing::warn!(invitation_id = %id, %error, "fetching the invitation failed; it is asked again later");
                Ok(Outcome {
                    fetch_failed: 1,
                    lines: vec![format!("{id} invitation: fetch failed ({error})")],
                    ..Outcome::default()
                })
            }
        }
    }
}
