//! `spawn_app`: the service started in-process on port 0 with a temp-file
//! ledger, and what every test that drives it over HTTP needs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use invitation_ledger::config::{DbArgs, KeyArgs, ReconcileArgs, ServeArgs};

use super::poll::eventually;
use super::secret::SECRET;

/// Reconciler settings for tests: no endpoints, fast retries.
pub fn reconcile_args() -> ReconcileArgs {
    ReconcileArgs {
        reconcile_interval_ms: 100,
        retry_base_ms: 20,
        retry_max_ms: 200,
        request_timeout_ms: 2000,
        ..ReconcileArgs::for_tests()
    }
}

/// `serve` settings for tests: the ledger at `db`, webhooks signed with
/// [`SECRET`], loopback on a free port.
pub fn serve_args(db: &Path) -> ServeArgs {
    ServeArgs {
        db: DbArgs::file(db),
        key: KeyArgs { signing_key: Some(SECRET.to_owned()), grid_webhook_public_key: None },
        reconcile: reconcile_args(),
        listen_addr: "127.0.0.1:0".into(),
        read_api_token: None,
        max_body_bytes: 256 * 1024,
        anchor_interval: "1h".into(),
        unbatched_commits: false,
    }
}

/// Sends `request` and reads its answer as JSON, with any failure as text:
/// a probe for [`eventually`], which asks again until its deadline.
pub async fn json_of(request: reqwest::RequestBuilder) -> Result<serde_json::Value, String> {
    request.send().await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())
}

/// A running service and the folder its ledger lives in.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: PathBuf,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts the service with `args` (its ledger in `dir`) and waits until
    /// it answers `/healthz`.
    pub async fn spawn_with(dir: tempfile::TempDir, args: ServeArgs) -> Self {
        let config = args.validate().expect("valid test config");
        let db = config.db.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(invitation_ledger::serve(listener, config, async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
        let app = TestApp { addr, db, dir, client, shutdown: Some(tx), handle: Some(handle) };
        app.wait_healthy().await;
        app
    }

    async fn wait_healthy(&self) {
        let what = format!("the service on {} (ledger {}) to answer /healthz", self.addr, self.db.display());
        eventually(&what, Duration::from_secs(2), || async {
            match self.client.get(self.url("/healthz")).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        // Webhooks are accepted while the projections catch up since the
        // start; reads answer 503 until then. Tests read at once.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            let answer = self.client.get(self.url("/readyz")).send().await;
            let catching_up = match answer {
                Ok(r) => r.text().await.is_ok_and(|t| t.contains("\"catching_up\"")),
                Err(_) => false,
            };
            if !catching_up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `POST path` with `body`, under `signature` when there is one.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>, signature: Option<&str>) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).body(body);
        if let Some(sig) = signature {
            req = req.header("lightspark-signature", sig);
        }
        req.send().await.expect("request sent")
    }

    /// `GET path` on the read API: status and JSON body (`Null` when not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.client.get(self.url(path)).send().await.expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Stops the service gracefully and keeps its folder.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("serve task").expect("serve ended cleanly");
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// [`stop`](Self::stop), after dropping this test's pooled client
    /// connections, so that none can hold the graceful shutdown. (hyper
    /// 0.14's waited for a connection that never sent a request until the
    /// 10 s header-read timeout, and reqwest's pool can hold such a
    /// connection; hyper 1 closes it at once, so this is now a precaution.)
    pub async fn stop_promptly(mut self) -> tempfile::TempDir {
        self.client = reqwest::Client::new();
        self.stop().await
    }
}
