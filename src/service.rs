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

use crate::api::read::ReadPool;
use crate::api::{self, AppState};
use crate::config::ReconcileConfig;
use crate::grid::client::GridClient;
use crate::ledger::LedgerWriter;
use crate::lightspark::client::LightsparkClient;
use crate::metrics::Metrics;
use crate::reconcile::fetch::Fetchers;
use crate::reconcile::{self, clock, endpoint::HttpEndpoint, worker::Seams, Reconciler};

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
    writer: LedgerWriter,
    config: ReconcileConfig,
    metrics: Arc<Metrics>,
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
        writer,
        config,
        Seams { endpoint, clock: clock::SystemClock, jitter: crate::rng::SplitMix::from_entropy() },
        fetchers,
        metrics,
    ))
}
use crate::config::ServiceConfig;
use crate::ledger::lock::InstanceLock;
use crate::projection::projector::Projector;

/// The ledger as a running process writes it: the writer thread (group
/// commit) and the projector thread that folds each commit, started
/// together and stopped together. What `serve` runs, and what the commands
/// that append (`resolve`, `reconcile --once`) use, so what they append is
/// folded at once and `status` shows it.
pub struct LiveLedger {
    pub writer: LedgerWriter,
    /// How far the projections have got.
    pub projected: tokio::sync::watch::Receiver<u64>,
    writer_thread: std::thread::JoinHandle<()>,
    projector: Projector,
}

impl LiveLedger {
    /// Opens (creating and migrating) the ledger, catches its projections
    /// up, and starts both threads.
    ///
    /// # Errors
    /// When a database cannot be opened or the first catch-up fails.
    pub fn open(db: &std::path::Path, group_commit: bool, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let (projector, hook, projected) = Projector::start(db)
            .with_context(|| format!("opening the ledger {} and catching up its projections", db.display()))?;
        let (writer, writer_thread) = LedgerWriter::start_with(db, group_commit, metrics, Some(hook))
            .with_context(|| format!("opening the ledger {}", db.display()))?;
        Ok(Self { writer, projected, writer_thread, projector })
    }

    /// Commits what is queued, refuses later appends (even from clones of
    /// the writer still alive elsewhere), folds the last commits and waits
    /// for both threads.
    ///
    /// # Errors
    /// When a thread panicked.
    pub async fn close(self) -> anyhow::Result<()> {
        let Self { writer, writer_thread, projector, .. } = self;
        writer.stop().await;
        drop(writer);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            writer_thread.join().map_err(|_| anyhow::anyhow!("the ledger writer thread panicked"))?;
            // The writer's hook is gone with its thread: the projector folds
            // the last commits and ends.
            projector.join()?;
            Ok(())
        })
        .await?
    }
}

/// Logs `ledger head seq=… hash=…` now and every `interval`: log shipping
/// keeps these lines outside the machine, where `verify --expect SEQ:HASH`
/// can later prove the ledger still holds them (not truncated, not
/// re-chained).
async fn log_anchors(reads: Arc<ReadPool>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match reads.lookup(|c| Ok(crate::ledger::head(c)?)).await {
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

/// How long a client may take to send its request headers. Bounds slow
/// clients that would otherwise hold a connection forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long in-flight requests get to finish after shutdown is requested.
const DRAIN: Duration = Duration::from_secs(3);

/// Runs the service on an already-bound listener until `shutdown` resolves,
/// then stops accepting, finishes in-flight requests (their appends are
/// committed and answered) and returns.
///
/// The caller binds the socket, so tests can bind `127.0.0.1:0` and learn the
/// port before the service starts.
///
/// # Errors
/// When another process holds the database, the database cannot be opened,
/// or the listener fails.
pub async fn serve(
    listener: std::net::TcpListener,
    config: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let lock = InstanceLock::acquire(&config.db)?;
    let metrics = Arc::new(Metrics::default());
    let ledger = LiveLedger::open(&config.db, config.group_commit, metrics.clone())?;
    let writer = ledger.writer.clone();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let reconciler = build_reconciler(&config.db, writer.clone(), config.reconcile.clone(), metrics.clone())?
        .following(ledger.projected.clone());
    let reconcile_task = tokio::spawn(reconcile::worker::run(reconciler.clone(), writer.committed(), stop.clone()));
    let reads = Arc::new(ReadPool::new(&config.db));
    let anchors = tokio::spawn(log_anchors(reads.clone(), config.anchor_interval));
    let refetch: Arc<dyn api::Refetch> = Arc::new(PageRefetch(reconciler.clone()));
    let state =
        Arc::new(AppState { config, writer, metrics, reads, unfetchable: Default::default(), refetch: Some(refetch) });
    let routes = api::routes(state.clone());
    let service = TowerToHyperService::new(warp::service(routes));
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener).context("registering the listener")?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, db = %state.config.db.display(), "serving");
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
    // In-flight obligation steps finish and record their outcomes.
    reconcile_task.await?;
    anchors.abort();
    ledger.close().await?;
    // The last head, once everything is committed: the anchor of this run.
    match crate::ledger::open_read_only(&state.config.db).and_then(|c| crate::ledger::head(&c)) {
        Ok((seq, hash)) => tracing::info!(seq, hash = %hex::encode(hash), "ledger head"),
        Err(e) => tracing::warn!(error = %e, "could not read the ledger head at shutdown"),
    }
    drop(lock);
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
