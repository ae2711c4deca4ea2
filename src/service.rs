//! The running service: HTTP listener, ledger writer and background workers,
//! started together and stopped together.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::api::read::ReadPool;
use crate::api::{self, AppState};
use crate::config::ReconcileConfig;
use crate::ledger::LedgerWriter;
use crate::lightspark::client::LightsparkClient;
use crate::metrics::Metrics;
use crate::reconcile::{self, clock, endpoint::HttpEndpoint, worker::Seams, Reconciler};

/// The reconciler as the service and `reconcile --once` run it: real HTTP,
/// the wall clock, jitter seeded from entropy.
pub type LiveReconciler = Reconciler<HttpEndpoint, clock::SystemClock, crate::rng::SplitMix>;

/// # Errors
/// When the HTTP clients cannot be built (bad Lightspark settings).
pub fn build_reconciler(
    db: &std::path::Path,
    writer: LedgerWriter,
    config: ReconcileConfig,
    metrics: Arc<Metrics>,
) -> anyhow::Result<LiveReconciler> {
    let endpoint = HttpEndpoint::new(config.request_timeout).context("building the HTTP client")?;
    let lightspark = match &config.lightspark_credentials {
        Some((id, secret)) => Some(
            LightsparkClient::new(&config.lightspark_api_url, id, secret.clone(), config.request_timeout)
                .map_err(|e| anyhow::anyhow!("LIGHTSPARK_API_URL or credentials cannot be used: {e}"))?,
        ),
        None => {
            tracing::warn!("LIGHTSPARK_API_CLIENT_ID/SECRET not set: webhooks without invitation data stay unfetched");
            None
        }
    };
    Ok(Reconciler::new(
        db.to_owned(),
        writer,
        config,
        Seams { endpoint, clock: clock::SystemClock, jitter: crate::rng::SplitMix::from_entropy() },
        lightspark,
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
    let state = Arc::new(AppState { config, writer, metrics, reads });
    let routes = api::routes(state.clone());
    let service = warp::service(routes);
    let make = hyper::service::make_service_fn(move |_| {
        let service = service.clone();
        async move { Ok::<_, Infallible>(service) }
    });
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, db = %state.config.db.display(), "serving");
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    });
    let mut graceful = stopping.clone();
    let server = hyper::Server::from_tcp(listener)?
        .http1_header_read_timeout(HEADER_READ_TIMEOUT)
        .serve(make)
        .with_graceful_shutdown(async move {
            let _ = graceful.wait_for(|s| *s).await;
        });
    // A client that opened a connection and never sent a request keeps a
    // graceful shutdown waiting for its header timeout; in-flight requests
    // get DRAIN to finish, then the rest is cut.
    tokio::select! {
        r = server => r.context("HTTP server failed")?,
        _ = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(DRAIN).await;
        } => tracing::warn!("connections still open after the drain period; closing them"),
    }
    let _ = stop_tx.send(true);
    // In-flight obligation steps finish and record their outcomes.
    reconcile_task.await?;
    ledger.close().await?;
    drop(lock);
    tracing::info!("stopped");
    Ok(())
}
