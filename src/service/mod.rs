//! The running service: HTTP listener, ledger writer and background workers,
//! started together and stopped together.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use crate::api::{self, AppState};
use crate::config::ReconcileConfig;
use crate::grid::client::GridClient;
use crate::ledger::{Ledger, LedgerStore};
use crate::lightspark::client::LightsparkClient;
use crate::metrics::Metrics;
use crate::reconcile::fetch::Fetchers;
use crate::reconcile::metrics::ReconcileMetrics;
use crate::reconcile::{self, clock, endpoint::HttpEndpoint, Reconciler, Seams};

mod live;

pub use live::LiveLedger;

/// The reconciler as the service and `reconcile --once` run it: real HTTP,
/// the wall clock, jitter seeded from entropy.
pub type LiveReconciler = Reconciler<HttpEndpoint, clock::SystemClock, crate::rng::SplitMix>;

/// The fetch clients the settings configure, one per source.
///
/// # Errors
/// When a client cannot be built (bad URL or credentials).
pub fn build_fetchers(config: &ReconcileConfig) -> anyhow::Result<Fetchers> {
    let lightspark = match &config.lightspark_credentials {
        Some((id, secret)) => Some(
            LightsparkClient::new(&config.lightspark_api_url, id, secret.clone(), config.request_timeout)
                .map_err(|e| anyhow::anyhow!("LIGHTSPARK_API_URL or credentials cannot be used: {e}"))?,
        ),
        None => None,
    };
    let grid = match &config.grid_credentials {
        Some((id, secret)) => Some(
            GridClient::new(&config.grid_api_url, id, secret.clone(), config.request_timeout)
                .map_err(|e| anyhow::anyhow!("GRID_API_URL or credentials cannot be used: {e}"))?,
        ),
        None => None,
    };
    Ok(Fetchers { lightspark, grid })
}

/// # Errors
/// When the HTTP clients cannot be built (bad Lightspark or Grid settings).
pub fn build_reconciler(
    db: &std::path::Path,
    ledger: Ledger,
    config: ReconcileConfig,
    metrics: Arc<ReconcileMetrics>,
) -> anyhow::Result<LiveReconciler> {
    let endpoint = HttpEndpoint::new(config.request_timeout).context("building the HTTP client")?;
    let fetchers = build_fetchers(&config)?;
    if !fetchers.configured(crate::source::Source::Lightspark) {
        tracing::warn!(
            "LIGHTSPARK_API_CLIENT_ID and LIGHTSPARK_API_CLIENT_SECRET are not set: a claim that arrives without its invitation cannot be fetched, and is not paid until it is"
        );
    }
    Ok(Reconciler::new(
        db.to_owned(),
        ledger,
        config,
        Seams { endpoint, clock: clock::SystemClock, jitter: crate::rng::SplitMix::from_entropy() },
        fetchers,
        metrics,
    ))
}
use crate::config::ServiceConfig;
use crate::ledger::lock::InstanceLock;
/// Logs `ledger head seq=… hash=…` now and every `interval`: log shipping
/// keeps these lines outside the machine, where `verify --expect SEQ:HASH`
/// can later prove the ledger still holds them (not truncated, not
/// re-chained).
async fn log_anchors(ledger: Ledger, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match ledger.head().await {
            Ok((seq, hash)) => tracing::info!(seq, hash = %hex::encode(hash), "ledger head"),
            Err(e) => tracing::warn!(error = %e, "could not read the ledger head for the anchor log line"),
        }
    }
}

/// The status page's refetch form, wired to the service's reconciler.
struct PageRefetch(LiveReconciler);

impl api::Refetch for PageRefetch {
    fn refetch(
        &self,
        invitation_id: String,
        note: Option<String>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String, String>> + Send>> {
        let reconciler = self.0.clone();
        let note = note.unwrap_or_else(|| "refetch from the status page".to_owned());
        Box::pin(async move { reconciler.refetch(&invitation_id, note).await })
    }
}

/// `POST /v1/invitations`, wired to the service's reconciler.
struct Registrar(LiveReconciler);

impl api::register::Register for Registrar {
    fn create(&self, body: serde_json::Value) -> api::register::Answer {
        use crate::reconcile::register::{parse_create, CreateError};
        use api::register::Refusal;
        use warp::http::StatusCode;
        let reconciler = self.0.clone();
        Box::pin(async move {
            let new = parse_create(&body, chrono::Utc::now())
                .map_err(|m| Refusal::new(StatusCode::BAD_REQUEST, "bad_request", m))?;
            reconciler.create_invitation(new).await.map_err(|e| {
                let (status, code) = match &e {
                    CreateError::NotConfigured(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_configured"),
                    CreateError::Refused { .. } => (StatusCode::BAD_GATEWAY, "source_refused"),
                    CreateError::Unknown { .. } => (StatusCode::BAD_GATEWAY, "outcome_unknown"),
                    CreateError::Ledger(_) => (StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable"),
                };
                Refusal::new(status, code, e.to_string())
            })
        })
    }

    fn cancel(&self, invitation_id: String) -> api::register::Answer {
        use crate::reconcile::cancel::CancelError;
        use api::register::Refusal;
        use warp::http::StatusCode;
        let reconciler = self.0.clone();
        Box::pin(async move {
            reconciler.cancel_invitation(&invitation_id).await.map_err(|e| {
                let (status, code) = match &e {
                    CancelError::Unknown(_) => (StatusCode::NOT_FOUND, "not_found"),
                    CancelError::NotConfigured(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_configured"),
                    CancelError::Refused { .. } => (StatusCode::CONFLICT, "source_refused"),
                    CancelError::OutcomeUnknown { .. } => (StatusCode::BAD_GATEWAY, "outcome_unknown"),
                    CancelError::Ledger(_) => (StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable"),
                };
                Refusal::new(status, code, e.to_string())
            })
        })
    }
}

/// How long a client may take to send its request headers. Bounds slow
/// clients that would otherwise hold a connection forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long in-flight requests get to finish after shutdown is requested.
const DRAIN: Duration = Duration::from_secs(3);

/// What runs once the ledger is open: the ledger's threads, the
/// reconciler and the anchor log, and the lock that keeps a second writing
/// process away.
struct Running {
    ledger: LiveLedger,
    reconcile_task: tokio::task::JoinHandle<()>,
    anchors: tokio::task::JoinHandle<()>,
    lock: InstanceLock,
    /// With a shared ledger: this instance's bid to lead the reconciler.
    leadership: Option<crate::ledger::postgres::Leadership>,
}

/// The service's settings and every layer's metrics: what opening the
/// ledger hands to the parts it starts.
struct Wiring {
    config: ServiceConfig,
    metrics: Metrics,
}

/// How often a service that cannot open its ledger yet tries again.
const OPEN_RETRY: Duration = Duration::from_secs(1);

/// Whether waiting can mend `e`: a full disk, a locked or busy database.
fn is_transient(e: &anyhow::Error) -> bool {
    use crate::projection::ProjectionError;
    e.chain().any(|c| {
        c.downcast_ref::<crate::ledger::LedgerError>().is_some_and(crate::ledger::LedgerError::is_transient)
            || c.downcast_ref::<rusqlite::Error>().is_some_and(crate::ledger::is_transient_sqlite)
            || matches!(c.downcast_ref::<ProjectionError>(), Some(ProjectionError::DiskFull { .. }))
    })
}

/// This process, as a shared database names it (its readiness probes, the
/// leader's row): the host and the process id.
pub fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    format!("{host}:{}", std::process::id())
}

/// Opens the ledger and starts what needs it, once; `Err` when it cannot,
/// for a reason waiting mends or one it never will ([`is_transient`]).
async fn open_once(
    state: &Arc<AppState>,
    wiring: &Wiring,
    lock: &mut Option<InstanceLock>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Running> {
    let config = &wiring.config;
    let held = match lock.take() {
        Some(l) => l,
        None => {
            let local = config.db.clone();
            tokio::task::spawn_blocking(move || InstanceLock::acquire(&local)).await??
        }
    };
    let ledger =
        match LiveLedger::open(&config.ledger, &config.db, config.group_commit, wiring.metrics.ledger.clone()).await {
            Ok(l) => l,
            Err(e) => {
                *lock = Some(held);
                return Err(e);
            }
        };
    let shared = ledger.ledger.clone();
    let metrics = wiring.metrics.reconcile.clone();
    let reconciler = build_reconciler(&config.db, shared.clone(), config.reconcile.clone(), metrics.clone())?
        .following(ledger.projected.clone(), ledger.health.clone());
    // With a shared ledger, one instance reconciles at a time.
    let leadership = shared.postgres().map(|pg| pg.leadership(instance_name()));
    let reconciler = match &leadership {
        Some(l) => reconciler.led_by(l.epoch.clone()),
        None => {
            metrics.leader.set(1);
            reconciler
        }
    };
    if let Some(l) = &leadership {
        tokio::spawn(show_leadership(l.epoch.clone(), metrics));
    }
    let reconcile_task =
        tokio::spawn(reconcile::run(reconciler.clone(), shared.committed(), ledger.due.clone(), stop.clone()));
    let anchors = tokio::spawn(log_anchors(shared.clone(), config.anchor_interval));
    let register: Arc<dyn api::register::Register> = Arc::new(Registrar(reconciler.clone()));
    let refetch: Arc<dyn api::Refetch> = Arc::new(PageRefetch(reconciler));
    let live = api::Live {
        ledger: shared,
        projection: ledger.health.clone(),
        refetch: Some(refetch),
        register: Some(register),
        instance: instance_name(),
        leader: leadership.as_ref().map(|l| l.epoch.clone()),
    };
    if state.live.set(live).is_err() {
        unreachable!("the ledger is opened once");
    }
    Ok(Running { ledger, reconcile_task, anchors, lock: held, leadership })
}

/// Keeps the leader and epoch gauges in step with the leadership.
async fn show_leadership(mut epoch: tokio::sync::watch::Receiver<Option<u64>>, metrics: Arc<ReconcileMetrics>) {
    loop {
        let now = *epoch.borrow_and_update();
        metrics.leader.set(i64::from(now.is_some()));
        if let Some(e) = now {
            metrics.epoch.set(e as i64);
        }
        if epoch.changed().await.is_err() {
            metrics.leader.set(0);
            return;
        }
    }
}

/// Opens the ledger, trying again every second while what stops it is
/// transient (a full disk at start, a database not reachable yet); says so
/// once per cause, not once per try. `Ok(None)`: stopped before it could.
async fn bring_up(
    state: Arc<AppState>,
    wiring: Arc<Wiring>,
    mut lock: Option<InstanceLock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<Running>> {
    let mut said = String::new();
    loop {
        if *stop.borrow() {
            return Ok(None);
        }
        match open_once(&state, &wiring, &mut lock, &stop).await {
            Ok(running) => {
                if !said.is_empty() {
                    tracing::warn!("the ledger is open; the service is back to work");
                }
                return Ok(Some(running));
            }
            Err(e) if is_transient(&e) => {
                let why = format!("{e:#}");
                if why != said {
                    tracing::error!(error = %why, "the ledger cannot be opened yet; webhooks are answered 503 until it can, retrying every second");
                    *state.opening.lock().expect("opening lock") = why.clone();
                    said = why;
                }
                tokio::select! {
                    () = tokio::time::sleep(OPEN_RETRY) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs the service on an already-bound listener until `shutdown` resolves,
/// then stops accepting, finishes in-flight requests (their appends are
/// committed and answered) and returns.
///
/// The caller binds the socket, so tests can bind `127.0.0.1:0` and learn the
/// port before the service starts. It answers at once; the ledger is opened
/// beside it, and while that waits (a full disk) the service is alive but
/// not ready, and webhooks are answered 503.
///
/// # Errors
/// When another process holds the database, the ledger cannot be opened
/// for a reason waiting will not mend, or the listener fails.
pub async fn serve(
    listener: std::net::TcpListener,
    config: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // A second service on the same ledger is refused at once; a lock file
    // that cannot be made for want of space is waited for.
    let lock = match InstanceLock::acquire(&config.db) {
        Ok(lock) => Some(lock),
        Err(e) if e.is_transient() => None,
        Err(e) => return Err(e.into()),
    };
    let metrics = Metrics::default();
    let state = Arc::new(AppState::new(config.api.clone(), metrics.api.clone()));
    let wiring = Arc::new(Wiring { config, metrics });
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // Opened at once when it can be, as a service normally starts: ready
    // when it first answers. Only a cause that waiting mends (a full disk)
    // leaves it to a task that keeps trying while the service answers 503.
    let mut lock = lock;
    let first = open_once(&state, &wiring, &mut lock, &stop).await;
    let mut running: Option<Running> = None;
    let mut opening = match first {
        Ok(r) => {
            running = Some(r);
            None
        }
        Err(e) if is_transient(&e) => Some(tokio::spawn(bring_up(state.clone(), wiring.clone(), lock, stop.clone()))),
        Err(e) => return Err(e),
    };
    // Webhooks are answered from now on, while the projections catch up
    // with what the ledger holds (reads, readiness and the reconciler wait
    // for that: see `ProjectionHealth`).
    let mut fatal: Option<anyhow::Error> = None;
    let routes = api::routes(state.clone());
    let service = TowerToHyperService::new(warp::service(routes));
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener).context("registering the listener")?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, ledger = %wiring.config.ledger_shown, projections = %state.config.db.display(), "serving");
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    // Every connection runs in this set, so that the ones still open after
    // the drain period can be cut (dropping the set aborts them).
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => {
                // The reconciler starts nothing new from now on, while the
                // listener drains.
                let _ = stop_tx.send(true);
                break;
            }
            opened = async { opening.as_mut().expect("polled only while opening").await }, if opening.is_some() => {
                opening = None;
                match opened.context("the task opening the ledger")? {
                    Ok(r) => running = r,
                    Err(e) => {
                        fatal = Some(e);
                        let _ = stop_tx.send(true);
                        break;
                    }
                }
                continue;
            }
            accepted = accept(&listener) => accepted,
        };
        let Some(stream) = accepted else { continue };
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    // Stop accepting. Connections with nothing sent or idle between
    // requests close now; in-flight requests are answered (with
    // `Connection: close`).
    drop(listener);
    // A client stopped halfway through its headers keeps a graceful shutdown
    // waiting for its header timeout, a slow body for its body timeout;
    // in-flight requests get DRAIN to finish, then the rest is cut.
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::warn!("connections still open after the drain period; closing them"),
    }
    connections.shutdown().await;
    let _ = stop_tx.send(true);
    if let Some(opening) = opening {
        // Stopped while still waiting to open the ledger: it gives up.
        running = opening.await.context("the task opening the ledger")??;
    }
    if let Some(Running { ledger, reconcile_task, anchors, lock, leadership }) = running {
        // In-flight obligation steps finish and record their outcomes.
        reconcile_task.await?;
        anchors.abort();
        drop(leadership);
        // The last head, once everything is committed: the anchor of this run.
        let head = ledger.ledger.clone();
        ledger.close().await?;
        match head.head().await {
            Ok((seq, hash)) => tracing::info!(seq, hash = %hex::encode(hash), "ledger head"),
            Err(e) => tracing::warn!(error = %e, "could not read the ledger head at shutdown"),
        }
        drop(lock);
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    tracing::info!("stopped");
    Ok(())
}

/// The next connection, or `None` when an accept failed. Errors about a
/// single connection (reset or aborted before it was accepted) are skipped;
/// anything else, such as running out of file descriptors, is logged and
/// accepting pauses for a second so that the loop does not spin until some
/// are released.
async fn accept(listener: &tokio::net::TcpListener) -> Option<tokio::net::TcpStream> {
    use std::io::ErrorKind;
    let e = match listener.accept().await {
        Ok((stream, _)) => return Some(stream),
        Err(e) => e,
    };
    if !matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset) {
        tracing::error!(error = %e, "accept failed; retrying in a second");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    None
}
