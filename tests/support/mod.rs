//! Shared test helpers: the service started in-process on port 0 with a
//! temp-file ledger, signing, and direct reads of the SQLite file.
#![allow(dead_code)]

pub mod binary;
pub mod fake_lightspark;
pub mod fake_platform;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use invitation_ledger::config::{DbArgs, KeyArgs, ReconcileArgs, ServeArgs};
use invitation_ledger::lightspark::signature::sign;

pub const SECRET: &str = "test-signing-secret";

/// A running service and the folder its ledger lives in.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: PathBuf,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Reconciler settings for tests: no endpoints, fast retries.
pub fn reconcile_args() -> ReconcileArgs {
    ReconcileArgs {
        payout_url: None,
        payout_signing_key: None,
        notify_url: None,
        inviter_incentive: None,
        lightspark_api_url: "http://127.0.0.1:9/unused".into(),
        lightspark_api_client_id: None,
        lightspark_api_client_secret: None,
        reconcile_interval_ms: 100,
        retry_base_ms: 20,
        retry_max_ms: 200,
        idempotency_window: "24h".into(),
        request_timeout_ms: 2000,
        reconcile_concurrency: 8,
    }
}

pub fn serve_args(db: &Path) -> ServeArgs {
    ServeArgs {
        db: DbArgs { db: db.to_owned() },
        key: KeyArgs { signing_key: Some(SECRET.to_owned()) },
        reconcile: reconcile_args(),
        listen_addr: "127.0.0.1:0".into(),
        read_api_token: None,
        max_body_bytes: 256 * 1024,
        unbatched_commits: false,
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        Self::spawn_with(dir, serve_args(&db)).await
    }

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
        for _ in 0..200 {
            if let Ok(r) = self.client.get(self.url("/healthz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("service did not become healthy");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Posts `body` signed with the test secret.
    pub async fn post_signed(&self, body: &str) -> reqwest::Response {
        self.post_raw("/webhooks/lightspark", body.as_bytes().to_vec(), Some(&sign(SECRET.as_bytes(), body.as_bytes())))
            .await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>, signature: Option<&str>) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).body(body);
        if let Some(sig) = signature {
            req = req.header("lightspark-signature", sig);
        }
        req.send().await.expect("request sent")
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
}

/// A claimed-invitation webhook body with a given event id.
pub fn claimed_body(event_id: &str, invitation: &str) -> String {
    format!(
        r#"{{"event_type":"UMA_INVITATION_CLAIMED","event_id":"{event_id}","timestamp":"2026-11-01T12:00:00.000000+00:00","entity_id":"{invitation}"}}"#
    )
}

pub fn signature_of(body: &[u8]) -> String {
    sign(SECRET.as_bytes(), body)
}

/// Rows of the ledger as `(seq, event_key, kind)`, read straight from SQLite.
pub fn ledger_rows(db: &Path) -> Vec<(i64, String, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT seq, event_key, kind FROM events ORDER BY seq").unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

pub fn ledger_len(db: &Path) -> usize {
    if !db.exists() {
        return 0;
    }
    ledger_rows(db).len()
}

pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    resp.json().await.expect("JSON body")
}
