//! The reconciler: one pass ([`Reconciler::try_execute_once`]) compares what
//! is owed with what the ledger says was done and does what is missing; the
//! loop around it ([`run`]) only decides when to pass again. The protocol
//! of one call is in `protocol`, fetching in `fetch`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Semaphore};

use super::clock::{Clock, Jitter};
use super::decide::{next_action, Action, Capabilities};
use super::endpoint::Endpoint;
use super::fetch::{FetchSchedule, Fetchers};
use crate::config::ReconcileConfig;
use crate::ledger::{Appended, Expected, LedgerError, LedgerStore, LedgerWriter, NewEvent};
use crate::metrics::Metrics;
use crate::projection::events::{InDoubtReason, ObligationKind};
use crate::projection::state::{fold_stream, InvitationState};
use crate::projection::store::{self, ProjectionError};
use crate::vocab::StreamId;

/// How many times a decision is taken again when its invitation keeps
/// changing under it, before it is left for the next pass.
const RE_DECISIONS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("recording in the ledger failed: {0}")]
    Ledger(#[from] LedgerError),
    #[error("reconciler task failed: {0}")]
    Task(String),
}

/// What one pass did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub sent: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub retry_scheduled: u32,
    pub in_doubt: u32,
    pub fetched: u32,
    pub fetch_failed: u32,
    /// Owed but not configured (no endpoint or incentive): left `pending`.
    pub not_configured: u32,
    /// The earliest scheduled retry not yet due.
    pub next_due: Option<DateTime<Utc>>,
    /// One line per action, for `reconcile --once` and `--dry-run`.
    pub lines: Vec<String>,
}

impl Outcome {
    pub fn did_something(&self) -> bool {
        self.sent + self.in_doubt + self.fetched + self.fetch_failed > 0
    }

    fn absorb(&mut self, other: Outcome) {
        self.sent += other.sent;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.retry_scheduled += other.retry_scheduled;
        self.in_doubt += other.in_doubt;
        self.fetched += other.fetched;
        self.fetch_failed += other.fetch_failed;
        self.lines.extend(other.lines);
    }
}

pub(super) struct Inner<E, C, J> {
    pub(super) db: PathBuf,
    pub(super) conn: Mutex<Option<rusqlite::Connection>>,
    pub(super) writer: LedgerWriter,
    pub(super) config: ReconcileConfig,
    pub(super) endpoint: E,
    pub(super) fetchers: Fetchers,
    pub(super) fetch_schedule: FetchSchedule,
    pub(super) clock: C,
    pub(super) jitter: J,
    pub(super) metrics: Arc<Metrics>,
    /// When the service keeps the projections current (its projector
    /// thread), how far they got; `None`: each pass catches up itself.
    pub(super) projected: Option<watch::Receiver<u64>>,
    /// Set at shutdown: start nothing new.
    stopping: std::sync::atomic::AtomicBool,
    /// Steps have been failing since the last pass that had none: logged
    /// when that starts and when it ends, not once per step and pass (a
    /// full disk would otherwise log every due payment every pass).
    failing: std::sync::atomic::AtomicBool,
}

/// The reconciler, cheap to clone. Generic over its seams: the endpoint,
/// the clock and the jitter.
pub struct Reconciler<E, C, J> {
    pub(super) inner: Arc<Inner<E, C, J>>,
}

impl<E, C, J> Clone for Reconciler<E, C, J> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

/// What the reconciler talks to and reads time and chance from: real HTTP,
/// the wall clock and entropy in the service; stand-ins in a simulation.
pub struct Seams<E, C, J> {
    pub endpoint: E,
    pub clock: C,
    pub jitter: J,
}

impl<E: Endpoint, C: Clock, J: Jitter> Reconciler<E, C, J> {
    pub fn new(
        db: PathBuf,
        writer: LedgerWriter,
        config: ReconcileConfig,
        seams: Seams<E, C, J>,
        fetchers: Fetchers,
        metrics: Arc<Metrics>,
    ) -> Self {
        let Seams { endpoint, clock, jitter } = seams;
        // Whatever is in the ledger now is from before this process: what
        // is still wanted of it is fetched spread over the first interval.
        let head = *writer.committed().borrow();
        let fetch_schedule = FetchSchedule::new(clock.now(), head);
        Self {
            inner: Arc::new(Inner {
                db,
                conn: Mutex::new(None),
                writer,
                config,
                endpoint,
                fetchers,
                fetch_schedule,
                clock,
                jitter,
                metrics,
                projected: None,
                stopping: std::sync::atomic::AtomicBool::new(false),
                failing: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Follows projections kept current by someone else instead of catching
    /// up on every pass (which would compete with the ledger writer).
    pub fn following(self, projected: watch::Receiver<u64>) -> Self {
        let mut inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("following() is called before the reconciler is shared"));
        inner.projected = Some(projected);
        Self { inner: Arc::new(inner) }
    }

    /// Waits (briefly) until the projections cover every committed event,
    /// so a pass never acts on a stale view of its own earlier appends.
    async fn wait_projected(&self) {
        let Some(projected) = &self.inner.projected else { return };
        let head = *self.inner.writer.committed().borrow();
        let mut projected = projected.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), projected.wait_for(|p| *p >= head)).await;
    }

    fn caps(&self) -> Capabilities {
        let c = &self.inner.config;
        Capabilities {
            payout_configured: c.payout_url.is_some(),
            notify_configured: c.notify_url.is_some(),
            incentive_configured: c.inviter_incentive.is_some(),
            // A request sent now may reach the platform up to
            // `request_timeout` later, and the platform's window runs from
            // when the first one reached it: re-send only while this one is
            // sure to arrive inside it.
            idempotency_window: c.idempotency_window.saturating_sub(c.request_timeout),
        }
    }

    /// The kinds of work this reconciler can do under its configuration;
    /// obligations it cannot act on (no endpoint) are not even read.
    fn work_mask(&self) -> i64 {
        use crate::projection::view::work_bits;
        let caps = self.caps();
        let mut mask = 0;
        if self.inner.fetchers.any() {
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
        self.inner.metrics.reconciler_passes.inc();
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
        self.prune_fetch_schedule(&wanted);
        for state in states {
            let state = Arc::new(state);
            match self.fetch_decision(&state, now) {
                Some(Ok(())) => work.push((state.clone(), Work::Fetch)),
                Some(Err(at)) => outcome.next_due = Some(outcome.next_due.map_or(at, |d| d.min(at))),
                None => {}
            }
            for kind in ObligationKind::ALL {
                match next_action(&state, kind, now, &caps) {
                    Action::Send { attempt } => work.push((state.clone(), Work::Send { kind, attempt })),
                    Action::MarkInDoubt(reason) => work.push((state.clone(), Work::InDoubt { kind, reason })),
                    Action::WaitUntil(t) => outcome.next_due = Some(outcome.next_due.map_or(t, |d| d.min(t))),
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
        use std::sync::atomic::Ordering::SeqCst;
        match &first_error {
            Some(e) if !self.inner.failing.swap(true, SeqCst) => {
                tracing::error!(error = %e, steps = failed_steps, "reconciler steps fail; they are retried every pass, and this is logged again when they succeed");
            }
            None if self.inner.failing.swap(false, SeqCst) => {
                tracing::warn!("reconciler steps succeed again");
            }
            _ => {}
        }
        self.inner
            .metrics
            .last_pass_unix
            .store(self.inner.clock.now().timestamp(), std::sync::atomic::Ordering::Relaxed);
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
            Work::Fetch => match self.fetch_decision(&fresh, self.inner.clock.now()) {
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
    pub(super) async fn reload(&self, invitation_id: &str) -> Result<Option<InvitationState>, ReconcileError> {
        let events = self.inner.writer.read_stream(&StreamId::new(invitation_id), 0).await?;
        Ok(fold_stream(invitation_id, &events))
    }

    /// Appends `event`, decided on `state`, on the condition that the
    /// invitation is still as `state` shows it. When it moved on meanwhile
    /// (a webhook, another actor's record), `decide_again` is asked what
    /// to append given the newest facts (`None`: nothing any more), a few
    /// times over. `Ok(None)`: nothing was appended.
    ///
    /// # Errors
    /// When the ledger cannot be written or read.
    pub(super) async fn append_decided(
        &self,
        state: &InvitationState,
        event: NewEvent,
        decide_again: impl Fn(&InvitationState) -> Option<NewEvent>,
    ) -> Result<Option<Appended>, ReconcileError> {
        let id = StreamId::new(state.invitation_id.as_str());
        let mut attempt = (state.last_seq, event);
        for _ in 0..RE_DECISIONS {
            match self.inner.writer.append_if(Expected::new(id.clone(), attempt.0), attempt.1).await {
                Ok(appended) => return Ok(Some(appended)),
                Err(LedgerError::Conflict(c)) => {
                    tracing::debug!(conflict = %c, "the invitation changed meanwhile; deciding again");
                    let Some(fresh) = self.reload(id.as_str()).await? else { return Ok(None) };
                    match decide_again(&fresh) {
                        Some(event) => attempt = (fresh.last_seq, event),
                        None => return Ok(None),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        tracing::warn!(invitation_id = %id, "the invitation kept changing while a decision was recorded; left for the next pass");
        Ok(None)
    }

    /// Stops starting work: the pass running now finishes the calls already
    /// in flight (each bounded by `REQUEST_TIMEOUT_MS`) and records their
    /// outcomes, but sends nothing new. Shutdown calls this first.
    pub fn stop(&self) {
        self.inner.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn is_stopping(&self) -> bool {
        self.inner.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }
}

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

/// Shortest pause between passes, so a burst of commits shares one pass.
const MIN_GAP: Duration = Duration::from_millis(50);

/// Runs passes until `stop` turns true: after every ledger commit (a newly
/// claimed invitation is acted on at once), when a scheduled retry falls
/// due, and at least every `interval`.
pub async fn run<E: Endpoint, C: Clock, J: Jitter>(
    reconciler: Reconciler<E, C, J>,
    mut committed: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = reconciler.inner.config.interval;
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
                    let until = (due - reconciler.inner.clock.now()).to_std().unwrap_or(Duration::ZERO);
                    wait = wait.min(until.max(MIN_GAP));
                }
            }
            Err(e) => tracing::error!(error = %e, "reconciler pass failed; retrying after the interval"),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = committed.changed() => tokio::time::sleep(MIN_GAP).await,
            _ = stopped(&mut stop) => {
                reconciler.stop();
                return;
            }
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it at once.
    let _ = stop.wait_for(|s| *s).await;
}
