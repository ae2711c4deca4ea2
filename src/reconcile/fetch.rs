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

use super::clock::{backoff, Jitter};
use super::outcome::Outcome;
use crate::grid::client::{GridClient, GridFetchError};
use crate::lightspark::client::{FetchError, LightsparkClient};
use crate::projection::events::{
    InternalEvent, InvitationFetchFailed, InvitationFetched, FOUND_BY_SWEEP, IDENTITY_MISMATCH, NOT_AN_INVITATION,
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
#[derive(Debug)]
pub(super) enum Answer {
    /// The invitation (`true`), or word that the source does not know it.
    Found(bool),
    /// The id names something that is not an invitation.
    NotAnInvitation,
    /// An invitation that is not the one asked (another id or code, or none).
    IdentityMismatch(String),
    /// Anything else: retried on the schedule, not recorded.
    Failed(String),
}

/// One fetch: what it found, and the event that records it (none for a
/// transient failure).
pub(super) struct Fetched {
    pub(super) answer: Answer,
    pub(super) event: Option<InternalEvent>,
}

/// The reconciler's collaborator for fetching: the clients and the
/// schedule. It asks and says what to record; the reconciler records.
pub(super) struct Fetcher {
    clients: Fetchers,
    schedule: FetchSchedule,
    interval: Duration,
    horizon: Duration,
    retry_base: Duration,
}

impl Fetcher {
    /// A fetcher started at `started`, when the ledger's head was
    /// `started_head`: invitations from before are fetched spread over the
    /// first `interval`.
    pub(super) fn new(
        clients: Fetchers,
        started: DateTime<Utc>,
        started_head: u64,
        interval: Duration,
        horizon: Duration,
        retry_base: Duration,
    ) -> Self {
        Self { clients, schedule: FetchSchedule::new(started, started_head), interval, horizon, retry_base }
    }

    pub(super) fn configured(&self, source: Source) -> bool {
        self.clients.configured(source)
    }

    pub(super) fn any(&self) -> bool {
        self.clients.any()
    }

    /// The sources' API clients.
    pub(super) fn clients(&self) -> &Fetchers {
        &self.clients
    }

    /// When `state` is to be fetched: `Ok` now, `Err(at)` later, `None` not
    /// at all (not wanted, no client for its source, or past the horizon).
    pub(super) fn decision(&self, state: &InvitationState, now: DateTime<Utc>) -> Option<Result<(), DateTime<Utc>>> {
        if !crate::projection::view::fetch_wanted(state) || !self.clients.configured(state.source) {
            return None;
        }
        // A registered invitation past its expiry can no longer be claimed:
        // the sweep stops there, whatever its source has not said yet.
        let expired = state.expires_at.as_ref().and_then(|e| parse_time(&e.value)).is_some_and(|t| t <= now);
        if state.registered && !state.is_claimed() && expired {
            return None;
        }
        let at = self.schedule.next(state, now, self.interval, self.horizon)?;
        Some(if at <= now { Ok(()) } else { Err(at) })
    }

    /// Forgets the schedule of invitations no longer wanted.
    pub(super) fn keep_only(&self, wanted: &[&str]) {
        self.schedule.keep_only(wanted);
    }

    /// Asks the invitation's source for it now (`None`: no client for its
    /// source); `operator_note` marks an operator's `refetch`, recorded
    /// whatever it found. The next scheduled fetch moves back.
    pub(super) async fn ask(
        &self,
        state: &InvitationState,
        now: DateTime<Utc>,
        operator_note: Option<String>,
        jitter: &dyn Jitter,
    ) -> Option<Fetched> {
        let id = &state.invitation_id;
        let source = state.source;
        let span = tracing::info_span!("fetch", invitation_id = %id, source = source.as_str());
        // Err: (reason recorded, why, the answer refused) for a failure recorded for good or once.
        let found: Result<Option<serde_json::Value>, Refused> = match source {
            Source::Lightspark => {
                let client = self.clients.lightspark.as_ref()?;
                match client.fetch_invitation(id).instrument(span).await {
                    Ok(found) => Ok(found),
                    Err(FetchError::NotAnInvitation(why)) => Err(Refused::NotAnInvitation(why)),
                    Err(e @ FetchError::IdentityMismatch { .. }) => {
                        let error = e.to_string();
                        let FetchError::IdentityMismatch { answer, .. } = e else { unreachable!() };
                        Err(Refused::Identity(error, answer))
                    }
                    Err(e) => Err(Refused::Transient(e.to_string())),
                }
            }
            Source::Grid => {
                let client = self.clients.grid.as_ref()?;
                let code = state
                    .code
                    .as_ref()
                    .map(|c| c.value.clone())
                    .or_else(|| id.strip_prefix(crate::vocab::StreamId::GRID_PREFIX).map(str::to_owned))
                    .unwrap_or_default();
                match client.fetch_invitation(&code).instrument(span).await {
                    Ok(found) => Ok(found),
                    Err(e @ GridFetchError::IdentityMismatch { .. }) => {
                        let error = e.to_string();
                        let GridFetchError::IdentityMismatch { answer, .. } = e else { unreachable!() };
                        Err(Refused::Identity(error, answer))
                    }
                    Err(e) => Err(Refused::Transient(e.to_string())),
                }
            }
        };
        self.schedule.fetched(state, now, self.retry_base, jitter);
        let failed = |reason: &str, error: String, answer| {
            InternalEvent::FetchFailed(InvitationFetchFailed {
                invitation_id: id.clone(),
                source,
                reason: reason.into(),
                error,
                failed_at: rfc3339(now),
                attempt: None,
                answer,
            })
        };
        Some(match found {
            Ok(entity) => Fetched {
                answer: Answer::Found(entity.is_some()),
                event: Some(InternalEvent::Fetched(InvitationFetched {
                    invitation_id: id.clone(),
                    source,
                    fetched_at: rfc3339(now),
                    found_by: entity.as_ref().and_then(|e| swept_claim(state, e)).map(str::to_owned),
                    entity,
                    operator_note,
                })),
            },
            Err(Refused::NotAnInvitation(why)) => {
                tracing::warn!(invitation_id = %id, %why, "the id names something that is not an invitation; it is not fetched again");
                Fetched { answer: Answer::NotAnInvitation, event: Some(failed(NOT_AN_INVITATION, why, None)) }
            }
            Err(Refused::Identity(error, answer)) => {
                tracing::warn!(invitation_id = %id, %error, "the source answered about another invitation; the answer is recorded, not used, and the invitation is asked again later");
                let event = failed(IDENTITY_MISMATCH, error.clone(), Some(answer));
                Fetched { answer: Answer::IdentityMismatch(error), event: Some(event) }
            }
            Err(Refused::Transient(error)) => {
                tracing::warn!(invitation_id = %id, %error, "fetching the invitation failed; it is asked again later");
                Fetched { answer: Answer::Failed(error), event: None }
            }
        })
    }
}

/// [`FOUND_BY_SWEEP`] when `entity`, fetched for `state`, shows the claim
/// of an invitation created through the service that neither a webhook
/// nor an earlier fetch had shown: the claim's webhook did not arrive.
fn swept_claim(state: &InvitationState, entity: &serde_json::Value) -> Option<&'static str> {
    if !state.registered || state.last_webhook_seq != 0 || state.is_claimed() {
        return None;
    }
    let report = crate::projection::state::read_answer(state.source, entity);
    (report.snapshot.status == Some(crate::invitation::InvitationStatus::Claimed)).then_some(FOUND_BY_SWEEP)
}

/// A fetch that did not give the invitation asked.
enum Refused {
    NotAnInvitation(String),
    Identity(String, serde_json::Value),
    Transient(String),
}

/// The metric label and the pass's outcome of a fetch of `id` that found
/// `answer`, its record new (`Some(false)`), already in the ledger
/// (`Some(true)`) or left out because newer facts no longer wanted it
/// (`None`).
pub(super) fn report(id: &str, answer: &Answer, duplicate: Option<bool>) -> (&'static str, Outcome) {
    match answer {
        Answer::Found(found) => {
            let what = match (found, duplicate) {
                (_, None) => "superseded",
                (false, Some(false)) => "not_found",
                (false, Some(true)) => "not_found_again",
                (true, Some(false)) => "changed",
                (true, Some(true)) => "unchanged",
            };
            (what, Outcome { fetched: 1, ..Outcome::default() }.line(format!("{id} invitation: fetched ({what})")))
        }
        Answer::NotAnInvitation => (
            "not_an_invitation",
            Outcome { fetch_failed: 1, ..Outcome::default() }.line(format!("{id} invitation: not an invitation")),
        ),
        Answer::IdentityMismatch(error) => (
            IDENTITY_MISMATCH,
            Outcome { fetch_failed: 1, ..Outcome::default() }
                .line(format!("{id} invitation: answer refused ({error})")),
        ),
        Answer::Failed(error) => (
            "error",
            Outcome { fetch_failed: 1, ..Outcome::default() }.line(format!("{id} invitation: fetch failed ({error})")),
        ),
    }
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
struct FetchSchedule {
    due: Mutex<HashMap<String, Due>>,
    /// When this process started, and the ledger head then: an invitation
    /// first seen since is new (fetched at once), one from before is spread.
    started: DateTime<Utc>,
    started_head: u64,
}

impl FetchSchedule {
    fn new(started: DateTime<Utc>, started_head: u64) -> Self {
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
