//! The HTTP surface: webhook ingest, health, and (behind a token) the read API.

pub mod access;
pub mod body;
pub mod config;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod read;
pub mod register;
pub mod ui;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use warp::http::StatusCode;
use warp::{Filter, Reply};

use crate::ledger::{Ledger, LedgerError};
use crate::projection::projector::ProjectionHealth;
pub use config::ApiConfig;

/// What every handler may need. Built once by [`crate::serve`], before the
/// ledger is open: the service answers (healthz, 503s) while it waits for
/// it, e.g. on a full disk.
pub struct AppState {
    pub config: ApiConfig,
    pub metrics: Arc<metrics::ApiMetrics>,
    pub reads: Arc<read::ReadPool>,
    /// Claims that arrived without their invitation while fetching is not
    /// configured, warned about at most once a minute.
    pub unfetchable: webhook::UnfetchableClaims,
    /// The parts that exist once the ledger is open.
    pub live: std::sync::OnceLock<Live>,
    /// Why the ledger is not open yet, while it is not.
    pub opening: std::sync::Mutex<String>,
}

/// The service's parts that need the ledger open.
pub struct Live {
    pub ledger: Ledger,
    /// This process, as a shared database names it (its readiness probe).
    pub instance: String,
    /// Whether the projections are caught up, for readiness and reads.
    pub projection: Arc<ProjectionHealth>,
    /// Fetches one invitation now, for the status page's refetch form.
    /// `None`: no fetcher is wired to the page, which then shows the form
    /// disabled and says so.
    pub refetch: Option<Arc<dyn Refetch>>,
    /// Creates invitations at their source (`POST /v1/invitations`);
    /// `None`: the route answers 503.
    pub register: Option<Arc<dyn register::Register>>,
    /// With a shared ledger, the epoch this instance leads the reconciler
    /// under (`None` while another instance leads); `None` here: the only
    /// instance (SQLite), which always reconciles.
    pub leader: Option<tokio::sync::watch::Receiver<Option<u64>>>,
}

/// Who reconciles, as this instance sees it: what the status page says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciling {
    /// The only instance on its ledger.
    Alone,
    /// It leads under this epoch.
    Leading(u64),
    /// Another instance leads (or none yet): this one stands by.
    StandingBy,
}

impl Live {
    pub fn reconciling(&self) -> Reconciling {
        match &self.leader {
            None => Reconciling::Alone,
            Some(epoch) => epoch.borrow().map_or(Reconciling::StandingBy, Reconciling::Leading),
        }
    }
}

impl AppState {
    /// A state whose ledger is not open yet.
    pub fn new(config: ApiConfig, metrics: Arc<metrics::ApiMetrics>) -> Self {
        let reads = Arc::new(read::ReadPool::new(&config.db, metrics.reads.clone()));
        Self {
            config,
            metrics,
            reads,
            unfetchable: Default::default(),
            live: std::sync::OnceLock::new(),
            opening: std::sync::Mutex::new("the ledger is being opened".into()),
        }
    }

    /// The parts that need the ledger.
    ///
    /// # Errors
    /// [`error::ApiError::LedgerUnavailable`] while the ledger is not open.
    pub fn live(&self) -> Result<&Live, error::ApiError> {
        self.live.get().ok_or_else(|| {
            error::ApiError::LedgerUnavailable(LedgerError::NotOpen(self.opening.lock().expect("opening lock").clone()))
        })
    }

    /// Refuses a read while the projections may be behind what the ledger
    /// acknowledged (not open yet, catching up since the start, failing):
    /// a stale answer, or a false "unknown", is worse than "ask again".
    ///
    /// # Errors
    /// [`error::ApiError::CatchingUp`] saying why.
    pub fn fresh(&self) -> Result<&Live, error::ApiError> {
        let live = self.live().map_err(|e| error::ApiError::CatchingUp(e.to_string()))?;
        match live.projection.lagging() {
            Some(why) => Err(error::ApiError::CatchingUp(why.to_owned())),
            None => Ok(live),
        }
    }
}

/// Fetching one invitation from its source now, whatever its schedule, as
/// `refetch <invitation>` does: what the status page's refetch form calls.
/// A trait object, because the api must not import the reconciler that
/// fetches (data flows `api` → `ledger` → … → `reconcile`); whoever builds
/// [`AppState`] wires the real one in.
pub trait Refetch: Send + Sync {
    /// Fetches `invitation_id` (an id the projection knows) and appends what
    /// changed, with the operator's `note`. `Ok`: a sentence saying what
    /// was appended; `Err`: a sentence saying why nothing was.
    fn refetch(
        &self,
        invitation_id: String,
        note: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;
}

/// Refreshes the gauges that are read from the database, then renders.
/// A scrape is answered whatever the database does: while the ledger is not
/// open, or its files cannot be read, the gauges read from them keep their
/// last values and the rest is fresh.
async fn render_metrics(state: &Arc<AppState>) -> Result<warp::reply::Response, error::ApiError> {
    let lagging = state.live.get().is_none_or(|l| l.projection.lagging().is_some());
    state.metrics.projection_catching_up.set(i64::from(lagging));
    if state.live.get().is_some() {
        if let Err(e) = refresh_gauges(state).await {
            tracing::debug!(error = %e, "metrics: the gauges read from the database keep their last values");
        }
    }
    Ok(warp::reply::with_header(state.metrics.render(), "content-type", "text/plain; version=0.0.4").into_response())
}

async fn refresh_gauges(state: &Arc<AppState>) -> Result<(), error::ApiError> {
    let counts = state
        .reads
        .run(|c| {
            let head = crate::ledger::head(c)?.0;
            let checkpoint = crate::projection::store::checkpoint(c)?;
            Ok((
                head,
                checkpoint,
                crate::projection::query::obligation_counts(c)?,
                crate::projection::query::awaiting_data(c)?,
                crate::projection::query::oldest_retrying(c)?,
            ))
        })
        .await?;
    let m = &state.metrics;
    let (head, checkpoint, obligations, awaiting, oldest_retrying) = counts;
    let now_us = chrono::Utc::now().timestamp_micros();
    m.oldest_retrying_age_seconds.set(oldest_retrying.map_or(0, |since| (now_us - since).max(0) / 1_000_000));
    m.ledger_head_seq.set(head as i64);
    m.projection_seq.set(checkpoint as i64);
    m.projection_lag_events.set(head.saturating_sub(checkpoint) as i64);
    m.obligations.reset();
    for kind in crate::projection::events::ObligationKind::ALL {
        for st in crate::projection::view::ObligationState::ALL {
            m.obligations.with_label_values(&[kind.as_str(), st.as_str()]).set(0);
        }
    }
    let mut in_doubt = 0;
    for (kind, st, n) in obligations {
        if st == "in_doubt" {
            in_doubt += n;
        }
        m.obligations.with_label_values(&[kind, st.as_str()]).set(n);
    }
    m.in_doubt.set(in_doubt);
    m.awaiting_data.set(awaiting.iter().map(|(_, n)| *n as i64).sum());
    let last = m.reconcile.last_pass_unix.load(std::sync::atomic::Ordering::Relaxed);
    if last > 0 {
        m.reconciler_last_pass_age_seconds.set(chrono::Utc::now().timestamp() - last);
    }
    Ok(())
}

/// All routes, with errors mapped by [`error::recover`].
pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());
    let ready_state = state.clone();
    let readyz = warp::path!("readyz").and(warp::get()).then(move || {
        let state = ready_state.clone();
        async move {
            let not_ready = |why: String| error::error_reply(StatusCode::SERVICE_UNAVAILABLE, "not_ready", &why);
            let live = match state.live() {
                Ok(live) => live,
                Err(e) => return not_ready(e.to_string()),
            };
            if let Err(e) = live.ledger.probe(&live.instance).await {
                tracing::debug!(error = %e, "not ready: the ledger cannot be written");
                return not_ready(format!("the ledger database cannot be written: {e}"));
            }
            match live.projection.lagging() {
                // Folding since the start, webhooks accepted meanwhile: a
                // code of its own, so a deploy can tell it from a fault.
                Some(why) if !live.projection.caught_up() && !live.projection.failing() => warp::reply::with_header(
                    error::error_reply(StatusCode::SERVICE_UNAVAILABLE, "catching_up", why),
                    "retry-after",
                    error::RETRY_AFTER_CATCHING_UP_SECS.to_string(),
                )
                .into_response(),
                Some(why) => not_ready(why.to_owned()),
                None => warp::reply::json(&serde_json::json!({"status": "ready"})).into_response(),
            }
        }
    });
    let metrics_state = state.clone();
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(access::read_access(access::Access::new(state.config.read_api_token.as_ref())))
        .and_then(move || {
            let state = metrics_state.clone();
            async move { render_metrics(&state).await.map_err(error::reject) }
        });
    let answered = state.clone();
    webhook::routes(state.clone())
        .or(metrics)
        .unify()
        .or(read::routes(state.clone()))
        .unify()
        .or(register::routes(state.clone()))
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(ui::routes(state.clone()))
        .unify()
        .or(openapi::routes(state.clone()))
        .unify()
        .recover(error::recover)
        .unify()
        .with(warp::log::custom(move |info| {
            answered.metrics.http_answered(
                route_pattern(info.path()),
                info.status().as_u16(),
                info.elapsed().as_secs_f64(),
            )
        }))
}

/// The route a path belongs to, as a label with few values: ids and codes
/// are replaced by `{id}`, and unknown paths share one label, so a scan of
/// random paths cannot grow the metric without bound.
fn route_pattern(path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_start_matches('/').trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        ["webhooks", "lightspark"] | ["webhook"] => "/webhooks/lightspark",
        ["webhooks", "grid"] => "/webhooks/grid",
        ["v1", "invitations"] => "/v1/invitations",
        ["v1", "invitations", _] => "/v1/invitations/{id}",
        ["v1", "invitations", _, "cancel"] => "/v1/invitations/{id}/cancel",
        ["v1", "audit", "incentives"] => "/v1/audit/incentives",
        ["v1", "ledger", "events"] => "/v1/ledger/events",
        ["v1", "ledger", "head"] => "/v1/ledger/head",
        ["v1", "openapi.json"] => "/v1/openapi.json",
        ["healthz"] => "/healthz",
        ["readyz"] => "/readyz",
        ["metrics"] => "/metrics",
        [""] => "/",
        ["login"] => "/login",
        ["invitations", _] => "/invitations/{id}",
        ["invitations", _, "resolve"] => "/invitations/{id}/resolve",
        ["invitations", _, "refetch"] => "/invitations/{id}/refetch",
        ["invitations", _, "events", _, "body"] => "/invitations/{id}/events/{seq}/body",
        _ => "other",
    }
}
