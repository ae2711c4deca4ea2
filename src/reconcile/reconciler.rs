//! The reconciler: one type owning the pass ([`Reconciler::try_execute_once`]):
//! decide what is owed and what to fetch → request → record → schedule the
//! next pass. It appends every step on the condition that the invitation is
//! as the step was decided on; fetching is a collaborator it calls
//! (`fetch::Fetcher`), the events it appends are built in `protocol`. The
//! loop around it ([`run`]) only decides when to pass again.
//!
//! Longer than the project's 600-line guide on purpose: the pass is one
//! idea, and the layering issue asked for it in one place rather than
//! spread over siblings sharing its insides.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

use super::clock::{Clock, Jitter};
use super::config::ReconcileConfig;
use super::decide::{may_call, next_action, Action, Capabilities};
use super::endpoint::{judge, Endpoint, OutgoingRequest};
use super::fetch::{report, Fetcher, Fetchers};
use super::metrics::ReconcileMetrics;
use super::outcome::{Outcome, ReconcileError};
use super::protocol;
use super::request::request_for;
use crate::ledger::{Appended, Expected, Ledger, LedgerError, LedgerStore, NewEvent};
use crate::lightspark::signature::sign;
use crate::projection::events::{IdempotencyKey, InDoubtReason, InternalEvent, ObligationKind, ObligationRequested};
use crate::projection::projector::ProjectionHealth;
use crate::projection::state::{fold_stream, InvitationState, ObligationPhase};
use crate::projection::store;
use crate::time::rfc3339;
use crate::vocab::StreamId;

/// How many times a decision is taken again when its invitation keeps
/// changing under it, before it is left for the next pass.
const RE_DECISIONS: usize = 8;

/// What the reconciler talks to and reads time and chance from: real HTTP,
/// the wall clock and entropy in the service; stand-ins in a simulation.
pub struct Seams<E, C, J> {
    pub endpoint: E,
    pub clock: C,
    pub jitter: J,
}

struct Inner<E, C, J> {
    db: PathBuf,
    /// The projections connection the pass reads its work from.
    conn: Mutex<Option<rusqlite::Connection>>,
    ledger: Ledger,
    /// Under which leadership this reconciler appends.
    lead: Lead,
    config: ReconcileConfig,
    endpoint: E,
    fetcher: Fetcher,
    clock: C,
    jitter: J,
    metrics: Arc<ReconcileMetrics>,
    /// When the service keeps the projections current (its projector
    /// thread), how far they got and how they are doing; `None`: each pass
    /// catches up itself.
    projected: Option<(watch::Receiver<u64>, Arc<ProjectionHealth>)>,
    /// Set at shutdown: start nothing new.
    stopping: AtomicBool,
    /// Steps have been failing since the last pass that had none: logged
    /// when that starts and when it ends, not once per step and pass (a
    /// full disk would otherwise log every due payment every pass).
    failing: AtomicBool,
}

/// The reconciler, cheap to clone. Generic over its seams: the endpoint,
/// the clock and the jitter.
pub struct Reconciler<E, C, J> {
    inner: Arc<Inner<E, C, J>>,
}

impl<E, C, J> Clone for Reconciler<E, C, J> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

/// An invitation's state as the ledger holds it now, and the hash of its
/// last event: the version a decision on it is appended on (the `seq`
/// alone could match another event in a ledger restored and grown again).
struct Fresh {
    state: InvitationState,
    hash: Option<crate::ledger::Hash>,
}

impl Fresh {
    /// The version appends decided on this state are conditional on.
    fn expected(&self) -> Expected {
        Expected::new(self.state.invitation_id.as_str(), self.state.last_seq).with_hash(self.hash)
    }
}

impl std::ops::Deref for Fresh {
    type Target = InvitationState;
    fn deref(&self) -> &InvitationState {
        &self.state
    }
}

/// Under which leadership a reconciler acts.
enum Lead {
    /// It is the only one that can (a SQLite ledger: one writing process).
    Alone,
    /// It leads under this epoch for its whole life (`reconcile --once`).
    Fixed(u64),
    /// It leads while the service's leadership says so, under the epoch it
    /// names (a shared PostgreSQL ledger).
    Watching(watch::Receiver<Option<u64>>),
}

/// What one try of the protocol came to.
enum Sent {
    /// Sent (or found to need nothing sent), with what the pass reports.
    Done(Outcome),
    /// The invitation changed before the request was recorded: nothing was
    /// sent, and the decision is to be taken again.
    Changed,
}

/// One step of a pass.
#[derive(Debug, Clone, Copy)]
enum Work {
    Fetch,
    Send { kind: ObligationKind, attempt: u32 },
    InDoubt { kind: ObligationKind, reason: InDoubtReason },
}

impl Work {
    fn describe(&self, id: &str, dry: bool) -> String {
        let would = if dry { "would " } else { "" };
        match self {
            Work::Fetch => format!("{id} invitation: {would}fetch from its source"),
            Work::Send { kind, attempt } => format!("{id} {}: {would}send attempt {attempt}", kind.as_str()),
            Work::InDoubt { kind, reason } => {
                format!("{id} {}: {would}mark in doubt ({})", kind.as_str(), reason.as_str())
            }
        }
    }
}

impl<E: Endpoint, C: Clock, J: Jitter> Reconciler<E, C, J> {
    pub fn new(
        db: PathBuf,
        ledger: Ledger,
        config: ReconcileConfig,
        seams: Seams<E, C, J>,
        fetchers: Fetchers,
        metrics: Arc<ReconcileMetrics>,
    ) -> Self {
        let Seams { endpoint, clock, jitter } = seams;
        // Whatever is in the ledger now is from before this process: what
        // is still wanted of it is fetched spread over the first interval.
        let head = *ledger.committed().borrow();
        let fetcher =
            Fetcher::new(fetchers, clock.now(), head, config.interval, config.fetch_horizon, config.retry_base);
        Self {
            inner: Arc::new(Inner {
                db,
                conn: Mutex::new(None),
                ledger,
                lead: Lead::Alone,
                config,
                endpoint,
                fetcher,
                clock,
                jitter,
                metrics,
                projected: None,
                stopping: AtomicBool::new(false),
                failing: AtomicBool::new(false),
            }),
        }
    }

    /// Acts under leadership `epoch` (with a shared ledger: its appends
    /// are refused once another leads under a later one); `None`: alone.
    pub fn leading(self, epoch: Option<u64>) -> Self {
        self.with_lead(epoch.map_or(Lead::Alone, Lead::Fixed))
    }

    /// Acts only while `epoch` names the epoch this instance leads under.
    pub fn led_by(self, epoch: watch::Receiver<Option<u64>>) -> Self {
        self.with_lead(Lead::Watching(epoch))
    }

    fn with_lead(self, lead: Lead) -> Self {
        let mut inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("leading() is called before the reconciler is shared"));
        inner.lead = lead;
        Self { inner: Arc::new(inner) }
    }

    /// Whether this reconciler may act now, and under which epoch
    /// (`Some(None)`: alone, no epoch).
    fn epoch_now(&self) -> Option<Option<u64>> {
        match &self.inner.lead {
            Lead::Alone => Some(None),
            Lead::Fixed(e) => Some(Some(*e)),
            Lead::Watching(rx) => rx.borrow().map(Some),
        }
    }

    /// The epoch this reconciler's appends carry.
    fn epoch(&self) -> Option<u64> {
        self.epoch_now().flatten()
    }

    /// Follows projections kept current by someone else instead of catching
    /// up on every pass (which would compete with the ledger writer).
    pub fn following(self, projected: watch::Receiver<u64>, health: Arc<ProjectionHealth>) -> Self {
        let mut inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("following() is called before the reconciler is shared"));
        inner.projected = Some((projected, health));
        Self { inner: Arc::new(inner) }
    }

    /// Waits (briefly) until the projections cover every committed event,
    /// so a pass never acts on a stale view of its own earlier appends.
    async fn wait_projected(&self) {
        let Some((projected, _)) = &self.inner.projected else { return };
        let head = *self.inner.ledger.committed().borrow();
        let mut projected = projected.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), projected.wait_for(|p| *p >= head)).await;
    }

    fn caps(&self) -> Capabilities {
        let c = &self.inner.config;
        Capabilities {
            payout_configured: c.payout_url.is_some(),
            notify_configured: c.notify_url.is_some(),
            incentive_configured: c.inviter_incentive.is_some(),
            idempotency_window: c.idempotency_window,
            request_timeout: c.request_timeout,
        }
    }

    /// The kinds of work this reconciler can do under its configuration;
    /// obligations it cannot act on (no endpoint) are not even read.
    fn work_mask(&self) -> i64 {
        use crate::projection::view::work_bits;
        let caps = self.caps();
        let mut mask = 0;
        if self.inner.fetcher.any() {
            mask |= work_bits::FETCH;
        }
        if caps.payout_configured {
            mask |= work_bits::INVITEE_PAYMENT;
            if caps.incentive_configured {
                mask |= work_bits::INVITER_INCENTIVE;
            }
        }
        if caps.notify_configured {
            mask |= work_bits::INVITER_NOTIFICATION;
        }
        mask
    }

    /// Brings the projection up to the ledger head (so this pass never acts
    /// on a stale view of its own earlier appends) and reads the invitations
    /// that may need work.
    async fn load_work(&self) -> Result<Vec<InvitationState>, ReconcileError> {
        self.wait_projected().await;
        if let Some((_, health)) = &self.inner.projected {
            if !health.caught_up() {
                // Nothing is decided on projections still being folded since
                // the start: the next pass reads them once they are current.
                return Ok(Vec::new());
            }
        }
        let inner = self.inner.clone();
        let mask = self.work_mask();
        let catch_up = inner.projected.is_none();
        tokio::task::spawn_blocking(move || -> Result<Vec<InvitationState>, ReconcileError> {
            let mut guard = inner.conn.lock().expect("reconciler connection lock");
            if guard.is_none() {
                // Only a reconciler that folds for itself writes the
                // projections; one following a projector reads them, and
                // must not race it for the file's first write.
                *guard = Some(if catch_up { store::open(&inner.db)? } else { store::open_read_only(&inner.db)? });
            }
            let conn = guard.as_mut().expect("opened above");
            if catch_up {
                store::catch_up(conn, 5_000)?;
            }
            Ok(crate::projection::query::needing_work(conn, mask)?)
        })
        .await
        .map_err(|e| ReconcileError::Task(e.to_string()))?
    }

    /// One pass over everything that may be owed. With `dry_run`, decides and
    /// reports but appends and sends nothing.
    ///
    /// # Errors
    /// When the projection cannot be read or the ledger cannot record a step;
    /// what was recorded before stays, and the next pass continues from it.
    #[tracing::instrument(skip_all, fields(dry_run))]
    pub async fn try_execute_once(&self, dry_run: bool) -> Result<Outcome, ReconcileError> {
        if self.epoch_now().is_none() {
            // Another instance leads: it reconciles.
            return Ok(Outcome::default());
        }
        self.inner.metrics.passes.inc();
        let states = self.load_work().await?;
        let now = self.inner.clock.now();
        let caps = self.caps();
        let mut outcome = Outcome::default();
        let mut work: Vec<(Arc<InvitationState>, Work)> = Vec::new();
        let wanted: Vec<&str> = states
            .iter()
            .filter(|s| crate::projection::view::fetch_wanted(s))
            .map(|s| s.invitation_id.as_str())
            .collect();
        self.inner.fetcher.keep_only(&wanted);
        for state in states {
            let state = Arc::new(state);
            match self.inner.fetcher.decision(&state, now) {
                Some(Ok(())) => work.push((state.clone(), Work::Fetch)),
                Some(Err(at)) => outcome.due_at(at),
                None => {}
            }
            for kind in ObligationKind::ALL {
                match next_action(&state, kind, now, &caps) {
                    Action::Send { attempt } => work.push((state.clone(), Work::Send { kind, attempt })),
                    Action::MarkInDoubt(reason) => work.push((state.clone(), Work::InDoubt { kind, reason })),
                    Action::WaitUntil(t) => outcome.due_at(t),
                    Action::NotConfigured => outcome.not_configured += 1,
                    Action::Nothing => {}
                }
            }
        }
        if dry_run {
            for (state, w) in &work {
                outcome.lines.push(w.describe(&state.invitation_id, true));
            }
            return Ok(outcome);
        }
        let limit = Arc::new(Semaphore::new(self.inner.config.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        for (state, w) in work {
            let permit = limit.clone().acquire_owned().await.expect("semaphore never closed");
            if self.is_stopping() {
                break;
            }
            let me = self.clone();
            tasks.spawn(async move {
                let r = me.execute(&state, w).await;
                drop(permit);
                r
            });
        }
        let mut first_error = None;
        let mut failed_steps = 0u32;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(o)) => outcome.absorb(o),
                Ok(Err(e)) => {
                    failed_steps += 1;
                    tracing::debug!(error = %e, "reconciler step failed; it will be retried");
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    failed_steps += 1;
                    first_error.get_or_insert(ReconcileError::Task(e.to_string()));
                }
            }
        }
        match &first_error {
            Some(e) if !self.inner.failing.swap(true, Ordering::SeqCst) => {
                tracing::error!(error = %e, steps = failed_steps, "reconciler steps fail; they are retried every pass, and this is logged again when they succeed");
            }
            None if self.inner.failing.swap(false, Ordering::SeqCst) => {
                tracing::warn!("reconciler steps succeed again");
            }
            _ => {}
        }
        self.inner.metrics.last_pass_unix.store(self.inner.clock.now().timestamp(), Ordering::Relaxed);
        match first_error {
            Some(e) if !outcome.did_something() => Err(e),
            _ => Ok(outcome),
        }
    }

    async fn execute(&self, state: &InvitationState, work: Work) -> Result<Outcome, ReconcileError> {
        if self.is_stopping() {
            return Ok(Outcome::default());
        }
        // The pass decided at its start, on projections; earlier calls of
        // this pass may have taken long enough for a newer snapshot to
        // arrive or the window to close. Decide again on the newest facts,
        // read from the ledger, and append on the condition that they are
        // still the newest.
        let Some(fresh) = self.reload(&state.invitation_id).await? else { return Ok(Outcome::default()) };
        if self.is_stopping() {
            return Ok(Outcome::default());
        }
        match work {
            Work::Fetch => match self.inner.fetcher.decision(&fresh, self.inner.clock.now()) {
                Some(Ok(())) => self.fetch(&fresh, None).await,
                _ => Ok(Outcome::default()),
            },
            Work::InDoubt { kind, .. } | Work::Send { kind, .. } => {
                match next_action(&fresh, kind, self.inner.clock.now(), &self.caps()) {
                    Action::Send { attempt } => self.send(&fresh, kind, attempt).await,
                    Action::MarkInDoubt(reason) => self.mark_in_doubt(&fresh, kind, reason).await,
                    _ => Ok(Outcome::default()),
                }
            }
        }
    }

    /// The invitation's state folded from its events as the ledger holds
    /// them now: what every decision is taken again on before it is acted
    /// on, and its `last_seq` the version its append is conditional on.
    async fn reload(&self, invitation_id: &str) -> Result<Option<Fresh>, ReconcileError> {
        let events = self.inner.ledger.read_stream(&StreamId::new(invitation_id), 0).await?;
        let hash = events.last().map(|e| e.hash);
        Ok(fold_stream(invitation_id, &events).map(|state| Fresh { state, hash }))
    }

    /// Appends `event`, decided on `state`, on the condition that the
    /// invitation is still as `state` shows it. When it moved on meanwhile
    /// (a webhook, another actor's record), `decide_again` is asked what
    /// to append given the newest facts (`None`: nothing any more), a few
    /// times over. `Ok(None)`: nothing was appended.
    async fn append_decided(
        &self,
        state: &Fresh,
        event: NewEvent,
        decide_again: impl Fn(&InvitationState) -> Option<NewEvent>,
    ) -> Result<Option<Appended>, ReconcileError> {
        let id = StreamId::new(state.invitation_id.as_str());
        let mut attempt = (state.expected(), event);
        for _ in 0..RE_DECISIONS {
            match self.inner.ledger.append_as(self.epoch(), attempt.0, attempt.1).await {
                Ok(appended) => return Ok(Some(appended)),
                Err(LedgerError::Conflict(c)) => {
                    tracing::debug!(conflict = %c, "the invitation changed meanwhile; deciding again");
                    let Some(fresh) = self.reload(id.as_str()).await? else { return Ok(None) };
                    match decide_again(&fresh) {
                        Some(event) => attempt = (fresh.expected(), event),
                        None => return Ok(None),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        tracing::warn!(invitation_id = %id, "the invitation kept changing while a decision was recorded; left for the next pass");
        Ok(None)
    }

    /// Records that `kind` of `state` is in doubt, and why; nothing more is
    /// sent for it until an operator resolves it.
    async fn mark_in_doubt(
        &self,
        state: &Fresh,
        kind: ObligationKind,
        reason: InDoubtReason,
    ) -> Result<Outcome, ReconcileError> {
        let (event, outcome) = protocol::in_doubt(state, kind, reason, self.inner.clock.now());
        match self.inner.ledger.append_as(self.epoch(), state.expected(), event.to_new_event()).await {
            Ok(_) => {}
            // Decided on facts that changed meanwhile: the next pass decides again.
            Err(LedgerError::Conflict(_)) => return Ok(Outcome::default()),
            Err(e) => return Err(e.into()),
        }
        let why = match reason {
            InDoubtReason::WindowExpired => "requested longer ago than IDEMPOTENCY_WINDOW with no recorded outcome",
            InDoubtReason::NoLongerDue => "requested, but the invitation no longer owes it",
        };
        tracing::warn!(invitation_id = %state.invitation_id, kind = kind.as_str(), idempotency_key = %IdempotencyKey::of(&state.invitation_id, kind), reason = reason.as_str(),
            "obligation is in doubt ({why}); an operator must resolve it");
        Ok(outcome)
    }

    /// One call of the protocol for `kind` of `state`, decided again as
    /// often as the invitation changes before its request is recorded (a
    /// webhook, or the request of its other obligation in the same pass):
    /// nothing is sent on facts that changed, and nothing waits a pass for
    /// it either.
    async fn send(&self, state: &Fresh, kind: ObligationKind, attempt: u32) -> Result<Outcome, ReconcileError> {
        let mut decided = (Fresh { state: state.state.clone(), hash: state.hash }, attempt);
        for _ in 0..RE_DECISIONS {
            let (state, attempt) = &decided;
            match self.send_once(state, kind, *attempt).await? {
                Sent::Done(outcome) => return Ok(outcome),
                Sent::Changed => {
                    let Some(fresh) = self.reload(&state.invitation_id).await? else { return Ok(Outcome::default()) };
                    if self.is_stopping() {
                        return Ok(Outcome::default());
                    }
                    match next_action(&fresh, kind, self.inner.clock.now(), &self.caps()) {
                        Action::Send { attempt } => decided = (fresh, attempt),
                        Action::MarkInDoubt(reason) => return self.mark_in_doubt(&fresh, kind, reason).await,
                        _ => return Ok(Outcome::default()),
                    }
                }
            }
        }
        tracing::warn!(invitation_id = %state.invitation_id, "the invitation kept changing before a request was recorded; left for the next pass");
        Ok(Outcome::default())
    }

    /// One call of the protocol, as the `attempt`-th for `kind` of `state`:
    /// the request recorded on the version decided on, the call, the
    /// outcome recorded while this request is still the one awaiting it.
    async fn send_once(&self, state: &Fresh, kind: ObligationKind, attempt: u32) -> Result<Sent, ReconcileError> {
        let key = IdempotencyKey::of(&state.invitation_id, kind);
        let Some(request) = request_for(state, kind, &key, &self.inner.config) else {
            return Ok(Sent::Done(Outcome { not_configured: 1, ..Outcome::default() }));
        };
        let amount = request.amount.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string);
        let receiver_uma = request.receiver_uma.as_deref().unwrap_or("-");
        let span = tracing::info_span!(
            "obligation",
            invitation_id = %state.invitation_id,
            kind = kind.as_str(),
            idempotency_key = %key,
            attempt,
            receiver_uma,
            amount = amount.as_str(),
        );
        async move {
            let id = &state.invitation_id;
            let bytes = request.bytes();
            // 1. Durable intent before the call.
            let requested_at = self.inner.clock.now();
            let requested = ObligationRequested {
                invitation_id: id.clone(),
                obligation: kind,
                idempotency_key: key.clone(),
                attempt,
                requested_at: rfc3339(requested_at),
                receiver_uma: request.receiver_uma.clone(),
                amount: request.amount.clone(),
                request: request.body,
            };
            let expected = state.expected();
            let recorded = match self
                .inner
                .ledger
                .append_as(self.epoch(), expected, InternalEvent::Requested(requested).to_new_event())
                .await
            {
                Ok(recorded) => recorded,
                Err(LedgerError::Conflict(c)) => {
                    // Nothing is sent on facts that changed: decided again.
                    tracing::debug!(conflict = %c, "the invitation changed before the request was recorded");
                    return Ok(Sent::Changed);
                }
                Err(e) => return Err(e.into()),
            };
            if recorded.duplicate {
                // This attempt was recorded before: whoever recorded it makes
                // the call. A second one would be a call without its own
                // recorded attempt (a retry after a crash is the next attempt).
                tracing::warn!("this attempt was recorded already; not sent again");
                return Ok(Sent::Done(Outcome::default()));
            }
            // 2. The call, with the same key (and body) on every attempt;
            // not when this process stood still since the decision long
            // enough that the call could reach the platform after it forgot
            // the key. The request stays recorded with no outcome: in
            // doubt once its window ends, for an operator to check.
            let window = state.obligation(kind).window_started_at.as_deref();
            if !may_call(window, requested_at, self.inner.clock.now(), &self.caps()) {
                tracing::warn!(
                    "the request was recorded too long ago to be sent now (a pause since the decision); not sent"
                );
                return Ok(Sent::Done(Outcome::default()));
            }
            let signature = match kind {
                ObligationKind::InviterNotification | ObligationKind::InviterFailureNotice => None,
                _ => self.inner.config.payout_signing_key.as_ref().map(|k| sign(k.expose().as_bytes(), &bytes)),
            };
            let answer = self
                .inner
                .endpoint
                .call(OutgoingRequest { url: request.url, idempotency_key: key.to_string(), body: bytes, signature })
                .await;
            // 3. The outcome, recorded while this request is still the one
            // awaiting it (the invitation may have changed meanwhile).
            let now = self.inner.clock.now();
            let (event, result, label) =
                protocol::outcome(id, kind, &key, attempt, judge(&answer), now, &self.inner.config, &self.inner.jitter);
            self.inner.metrics.obligation_call(kind, label);
            let event = event.to_new_event();
            // The request just recorded is the stream's last event.
            let mut version = Fresh { state: state.state.clone(), hash: Some(recorded.hash) };
            version.state.last_seq = recorded.seq;
            let awaiting = |fresh: &InvitationState| {
                let ob = fresh.obligation(kind);
                let open = !matches!(ob.phase, ObligationPhase::Succeeded | ObligationPhase::Failed);
                (ob.requested_seq == Some(recorded.seq) && open).then(|| event.clone())
            };
            if self.append_decided(&version, event.clone(), awaiting).await?.is_none() {
                tracing::warn!("the outcome was not recorded: another record settled this obligation meanwhile");
            }
            Ok(Sent::Done(result))
        }
        .instrument(span)
        .await
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
            .ok_or_else(|| format!("no invitation {invitation_id:?} in the ledger"))?;
        if !self.inner.fetcher.configured(state.source) {
            return Err(format!(
                "{} comes from {}, which cannot be fetched from: set {}",
                state.invitation_id,
                state.source.as_str(),
                ReconcileConfig::fetch_settings(state.source)
            ));
        }
        let outcome = self.fetch(&state, Some(note)).await.map_err(|e| e.to_string())?;
        Ok(outcome.lines.join("; "))
    }

    /// Asks the invitation's source for it now and records what it found,
    /// on the condition that the invitation is as it was when the fetch was
    /// decided; when it changed meanwhile, the answer is still recorded if
    /// the newest facts still want it (an operator's refetch always does).
    async fn fetch(&self, state: &Fresh, operator_note: Option<String>) -> Result<Outcome, ReconcileError> {
        let operator = operator_note.is_some();
        let now = self.inner.clock.now();
        let Some(fetched) = self.inner.fetcher.ask(state, now, operator_note, &self.inner.jitter).await else {
            return Ok(Outcome { not_configured: 1, ..Outcome::default() });
        };
        let swept = matches!(&fetched.event, Some(InternalEvent::Fetched(f)) if f.found_by.is_some());
        let duplicate = match fetched.event {
            Some(event) => {
                let event = event.to_new_event();
                let again = event.clone();
                let still_wanted = move |fresh: &InvitationState| {
                    (operator || crate::projection::view::fetch_wanted(fresh)).then(|| again.clone())
                };
                self.append_decided(state, event, still_wanted).await?.map(|a| a.duplicate)
            }
            None => Some(false),
        };
        let (label, outcome) = report(&state.invitation_id, &fetched.answer, duplicate);
        self.inner.metrics.fetched(state.source, label);
        if swept && duplicate == Some(false) {
            self.inner.metrics.claims_found_by_sweep.with_label_values(&[state.source.as_str()]).inc();
            tracing::warn!(invitation_id = %state.invitation_id, source = state.source.as_str(),
                "the sweep found a claim no webhook announced: a webhook did not arrive");
        }
        Ok(outcome)
    }

    /// Stops starting work: the pass running now finishes the calls already
    /// in flight (each bounded by `REQUEST_TIMEOUT_MS`) and records their
    /// outcomes, but sends nothing new. Shutdown calls this first.
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// How long the loop waits at most between passes.
    fn interval(&self) -> Duration {
        self.inner.config.interval
    }

    pub(super) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.clock.now()
    }

    /// The ledger this reconciler appends to.
    pub(super) fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// The sources' API clients.
    pub(super) fn fetchers(&self) -> &Fetchers {
        self.inner.fetcher.clients()
    }
}

/// Shortest pause between passes, so a burst of commits shares one pass.
const MIN_GAP: Duration = Duration::from_millis(50);

/// Runs passes until `stop` turns true: as soon as the projector folds
/// work newly due (`due` changes: a claim is paid without waiting), after
/// every ledger commit (this pass's own outcomes, others' appends), when a
/// scheduled retry falls due, and at least every `interval`, the safety
/// net.
pub async fn run<E: Endpoint, C: Clock, J: Jitter>(
    reconciler: Reconciler<E, C, J>,
    mut committed: watch::Receiver<u64>,
    mut due: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = reconciler.interval();
    loop {
        if *stop.borrow_and_update() {
            reconciler.stop();
            return;
        }
        let mut wait = interval;
        // Before the pass, not after: a commit that lands while the pass runs
        // (a claim arriving mid-pass) must wake the next pass, not be marked
        // seen and left for the interval. The pass's own appends wake one
        // extra pass, which finds nothing due.
        committed.mark_unchanged();
        due.mark_unchanged();
        let pass = reconciler.try_execute_once(false);
        tokio::pin!(pass);
        let result = tokio::select! {
            r = &mut pass => r,
            _ = stopped(&mut stop) => {
                // Start nothing new; the calls in flight finish (bounded by
                // the request timeout) and their outcomes are recorded.
                reconciler.stop();
                let _ = pass.await;
                return;
            }
        };
        match result {
            Ok(o) => {
                if let Some(due) = o.next_due {
                    let until = (due - reconciler.now()).to_std().unwrap_or(Duration::ZERO);
                    wait = wait.min(until.max(MIN_GAP));
                }
            }
            Err(e) => tracing::error!(error = %e, "reconciler pass failed; retrying after the interval"),
        }
        tokio::select! {
            // Work due now is looked at first, whatever else is ready.
            biased;
            _ = changed_or_never(&mut due) => {}
            _ = stopped(&mut stop) => {
                reconciler.stop();
                return;
            }
            _ = tokio::time::sleep(wait) => {}
            // Other commits share a pass after a short gap; work falling
            // due during the gap ends it.
            _ = committed.changed() => {
                tokio::select! {
                    () = tokio::time::sleep(MIN_GAP) => {}
                    _ = changed_or_never(&mut due) => {}
                }
            }
        }
    }
}

/// When `rx` changes; never once its sender has gone (a projector that
/// stopped must not spin the loop).
async fn changed_or_never(rx: &mut watch::Receiver<u64>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it at once.
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
#[path = "reconciler_tests.rs"]
mod tests;
