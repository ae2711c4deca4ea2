//! The reconciler: one pass ([`Reconciler::try_execute_once`]) compares what
//! is owed with what the ledger says was done and does what is missing; the
//! loop around it ([`run`]) only decides when to pass again.
//!
//! Exactly-once protocol, per obligation: append `*.requested` (key and
//! attempt) and wait for its commit → call the endpoint with the
//! `Idempotency-Key` header → append `*.succeeded` or `*.failed`. The key is
//! a function of (invitation, kind), so a crash anywhere leads to a retry
//! with the same key, which the platform deduplicates.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

use super::clock::{backoff, Clock, Jitter};
use super::decide::{next_action, Action, Capabilities};
use super::endpoint::{judge, Endpoint, OutgoingRequest, Verdict};
use crate::config::ReconcileConfig;
use crate::ledger::{LedgerError, LedgerWriter};
use crate::lightspark::client::LightsparkClient;
use crate::lightspark::signature::sign;
use crate::metrics::Metrics;
use crate::money::{Money, PaymentAmount};
use crate::projection::events::{
    IdempotencyKey, InternalEvent, InvitationFetchFailed, InvitationFetched, ObligationFailed, ObligationInDoubt,
    ObligationKind, ObligationRequested, ObligationSucceeded,
};
use crate::projection::state::{FetchPhase, InvitationState};
use crate::projection::store::{self, ProjectionError};
use crate::time::rfc3339;

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

struct Inner<E, C, J> {
    db: PathBuf,
    conn: Mutex<Option<rusqlite::Connection>>,
    writer: LedgerWriter,
    config: ReconcileConfig,
    endpoint: E,
    lightspark: Option<LightsparkClient>,
    clock: C,
    jitter: J,
    metrics: Arc<Metrics>,
    /// When the service keeps the projections current (its projector
    /// thread), how far they got; `None`: each pass catches up itself.
    projected: Option<watch::Receiver<u64>>,
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

/// What the reconciler talks to and reads time and chance from: real HTTP,
/// the wall clock and entropy in the service; stand-ins in a simulation.
pub struct Seams<E, C, J> {
    pub endpoint: E,
    pub clock: C,
    pub jitter: J,
}

/// Largest number of invitations one pass reads at a time.
const PAGE: usize = 1000;

impl<E: Endpoint, C: Clock, J: Jitter> Reconciler<E, C, J> {
    pub fn new(
        db: PathBuf,
        writer: LedgerWriter,
        config: ReconcileConfig,
        seams: Seams<E, C, J>,
        lightspark: Option<LightsparkClient>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let Seams { endpoint, clock, jitter } = seams;
        Self {
            inner: Arc::new(Inner {
                db,
                conn: Mutex::new(None),
                writer,
                config,
                endpoint,
                lightspark,
                clock,
                jitter,
                metrics,
                projected: None,
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

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
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
        if self.inner.lightspark.is_some() {
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
                *guard = Some(store::open(&inner.db)?);
            }
            let conn = guard.as_mut().expect("opened above");
            if catch_up {
                store::catch_up(conn, 5_000)?;
            }
            let mut out = Vec::new();
            let mut after = String::new();
            loop {
                let page = crate::projection::query::needing_work(conn, mask, &after, PAGE)?;
                let Some(last) = page.last() else { break };
                after = last.invitation_id.clone();
                let full = page.len() == PAGE;
                out.extend(page);
                if !full {
                    break;
                }
            }
            Ok(out)
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
        for state in states {
            let state = Arc::new(state);
            if self.fetch_due(&state, now) {
                work.push((state.clone(), Work::Fetch));
            }
            for kind in ObligationKind::ALL {
                match next_action(&state, kind, now, &caps) {
                    Action::Send { attempt } => work.push((state.clone(), Work::Send { kind, attempt })),
                    Action::MarkInDoubt => work.push((state.clone(), Work::InDoubt { kind })),
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
            let me = self.clone();
            tasks.spawn(async move {
                let r = me.execute(&state, w).await;
                drop(permit);
                r
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(o)) => outcome.absorb(o),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reconciler step failed; it will be retried");
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(ReconcileError::Task(e.to_string()));
                }
            }
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

    fn fetch_due(&self, state: &InvitationState, now: DateTime<Utc>) -> bool {
        if self.inner.lightspark.is_none() {
            return false;
        }
        match state.fetch.phase {
            FetchPhase::Pending => true,
            FetchPhase::RetryScheduled => {
                state.fetch.next_attempt_at.as_deref().and_then(crate::time::parse_time).is_none_or(|t| t <= now)
            }
            _ => false,
        }
    }

    async fn execute(&self, state: &InvitationState, work: Work) -> Result<Outcome, ReconcileError> {
        match work {
            Work::Fetch => self.fetch(state).await,
            Work::InDoubt { kind } => self.mark_in_doubt(state, kind).await,
            Work::Send { kind, attempt } => {
                // The pass decided at its start; the calls before this one
                // may have taken long enough for the window to close since.
                // Re-sending then could pay twice: decide again, now.
                if next_action(state, kind, self.inner.clock.now(), &self.caps()) == Action::MarkInDoubt {
                    return self.mark_in_doubt(state, kind).await;
                }
                let key = IdempotencyKey::of(&state.invitation_id, kind);
                let span = tracing::info_span!("obligation", invitation_id = %state.invitation_id, kind = kind.as_str(), idempotency_key = %key, attempt);
                self.send(state, kind, attempt, key).instrument(span).await
            }
        }
    }

    async fn mark_in_doubt(&self, state: &InvitationState, kind: ObligationKind) -> Result<Outcome, ReconcileError> {
        let rec = state.obligation(kind);
        let key = IdempotencyKey::of(&state.invitation_id, kind);
        let window = rec.window_started_at.clone().unwrap_or_default();
        let body = ObligationInDoubt {
            invitation_id: state.invitation_id.clone(),
            obligation: kind,
            idempotency_key: key.clone(),
            first_requested_at: window,
            at: rfc3339(self.inner.clock.now()),
        };
        self.inner.writer.append(InternalEvent::InDoubt(body).to_new_event()).await?;
        tracing::warn!(invitation_id = %state.invitation_id, kind = kind.as_str(), idempotency_key = %key,
            "obligation is in doubt: requested longer ago than IDEMPOTENCY_WINDOW with no recorded outcome; an operator must resolve it");
        Ok(Outcome {
            in_doubt: 1,
            lines: vec![Work::InDoubt { kind }.describe(&state.invitation_id, false)],
            ..Outcome::default()
        })
    }

    /// The request body: the first one sent under this key if there was one
    /// (a retry must repeat it exactly), else built from the projection.
    fn request_body(
        &self,
        state: &InvitationState,
        kind: ObligationKind,
        key: &IdempotencyKey,
    ) -> Option<(serde_json::Value, Option<Money>, String)> {
        let rec = state.obligation(kind);
        let text = |v: &Option<crate::projection::state::Versioned<String>>| v.as_ref().map(|v| v.value.clone());
        let cfg = &self.inner.config;
        let (url, amount) = match kind {
            ObligationKind::InviteePayment => {
                let amount = match state.payment_amount.as_ref().map(|v| &v.value) {
                    Some(PaymentAmount::Valid(m)) => m.clone(),
                    _ => return None,
                };
                (cfg.payout_url.clone()?, Some(rec.amount.clone().unwrap_or(amount)))
            }
            ObligationKind::InviterIncentive => {
                (cfg.payout_url.clone()?, Some(rec.amount.clone().or_else(|| cfg.inviter_incentive.clone())?))
            }
            ObligationKind::InviterNotification => (cfg.notify_url.clone()?, None),
        };
        if let Some(previous) = &rec.request {
            return Some((previous.clone(), amount, url));
        }
        let body = match kind {
            ObligationKind::InviterNotification => json!({
                "idempotency_key": key,
                "kind": "invitee_joined",
                "invitation_id": state.invitation_id,
                "inviter_uma": text(&state.inviter_uma),
                "invitee_uma": text(&state.invitee_uma),
            }),
            _ => {
                let receiver = if kind == ObligationKind::InviteePayment {
                    text(&state.invitee_uma)
                } else {
                    text(&state.inviter_uma)
                };
                let m = amount.as_ref().expect("payments carry an amount");
                json!({
                    "idempotency_key": key,
                    "kind": kind.as_str(),
                    "invitation_id": state.invitation_id,
                    "invitation_code": text(&state.code),
                    "receiver_uma": receiver,
                    "amount": {"value": m.value(), "currency": m.currency()},
                })
            }
        };
        Some((body, amount, url))
    }

    async fn send(
        &self,
        state: &InvitationState,
        kind: ObligationKind,
        attempt: u32,
        key: IdempotencyKey,
    ) -> Result<Outcome, ReconcileError> {
        let Some((body, amount, url)) = self.request_body(state, kind, &key) else {
            return Ok(Outcome { not_configured: 1, ..Outcome::default() });
        };
        let id = &state.invitation_id;
        let requested = ObligationRequested {
            invitation_id: id.clone(),
            obligation: kind,
            idempotency_key: key.clone(),
            attempt,
            requested_at: rfc3339(self.inner.clock.now()),
            amount,
            request: body.clone(),
        };
        // 1. Durable intent before the call.
        self.inner.writer.append(InternalEvent::Requested(requested).to_new_event()).await?;
        // 2. The call, with the same key on every attempt.
        let bytes = serde_json::to_vec(&body).expect("body serialises");
        let signature = match kind {
            ObligationKind::InviterNotification => None,
            _ => self.inner.config.payout_signing_key.as_ref().map(|k| sign(k.expose().as_bytes(), &bytes)),
        };
        let outcome = self
            .inner
            .endpoint
            .call(OutgoingRequest { url, idempotency_key: key.to_string(), body: bytes, signature })
            .await;
        let verdict = judge(&outcome);
        let now = self.inner.clock.now();
        let calls =
            |outcome: &str| self.inner.metrics.endpoint_calls.with_label_values(&[kind.as_str(), outcome]).inc();
        // 3. The outcome.
        let failed = |http_status, error, next: Option<DateTime<Utc>>| {
            InternalEvent::Failed(ObligationFailed {
                invitation_id: id.clone(),
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
        let (event, result) = match verdict {
            Verdict::Succeeded { status, payment_id } => {
                calls("succeeded");
                tracing::info!(status, payment_id = payment_id.as_deref().unwrap_or("-"), "obligation succeeded");
                let event = InternalEvent::Succeeded(ObligationSucceeded {
                    invitation_id: id.clone(),
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
                let delay =
                    backoff(attempt, self.inner.config.retry_base, self.inner.config.retry_max, &self.inner.jitter);
                let next = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                tracing::info!(?status, %error, retry_in_ms = delay.as_millis() as u64, "transient failure; retry scheduled");
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
        };
        self.inner.writer.append(event.to_new_event()).await?;
        Ok(result)
    }

    async fn fetch(&self, state: &InvitationState) -> Result<Outcome, ReconcileError> {
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

#[derive(Debug, Clone, Copy)]
enum Work {
    Fetch,
    Send { kind: ObligationKind, attempt: u32 },
    InDoubt { kind: ObligationKind },
}

impl Work {
    fn describe(&self, id: &str, dry: bool) -> String {
        let would = if dry { "would " } else { "" };
        match self {
            Work::Fetch => format!("{id} invitation: {would}fetch from Lightspark"),
            Work::Send { kind, attempt } => format!("{id} {}: {would}send attempt {attempt}", kind.as_str()),
            Work::InDoubt { kind } => {
                format!("{id} {}: {would}mark in doubt (older than IDEMPOTENCY_WINDOW)", kind.as_str())
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
            return;
        }
        let mut wait = interval;
        // Before the pass, not after: a commit that lands while the pass runs
        // (a claim arriving mid-pass) must wake the next pass, not be marked
        // seen and left for the interval. The pass's own appends wake one
        // extra pass, which finds nothing due.
        committed.mark_unchanged();
        match reconciler.try_execute_once(false).await {
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
            _ = stopped(&mut stop) => return,
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it at once.
    let _ = stop.wait_for(|s| *s).await;
}
