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
        anchor_interval: "1h".into(),
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

// ---------------------------------------------------------------------------
// Helpers for the reconciler and audit tests (tests/reconcile.rs,
// tests/audit.rs): polling with a deadline, invitation webhooks with data,
// JSON reads, the CLI off the async runtime, hand-made ledger events.

/// Polls `probe` every 20 ms until it answers `Ok`, and returns that value.
/// Panics after `within` with `what` and the last `Err` the probe gave, so a
/// failure says what was seen instead of merely timing out.
pub async fn eventually<T, F, Fut>(what: &str, within: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {within:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// An invitation as Lightspark sends it in a webhook's `data` (snake_case).
#[derive(Debug, Clone)]
pub struct InvitationFixture {
    pub id: String,
    pub code: String,
    pub inviter_uma: String,
    pub invitee_uma: Option<String>,
    /// `CLAIMED`, `CANCELLED`, `PENDING`, …
    pub status: String,
    /// `VALIDATED`, `INELIGIBLE`, `PENDING`.
    pub incentives_status: String,
    pub incentives_ineligibility_reason: Option<String>,
    /// Smallest unit of USD.
    pub payment_amount: Option<i64>,
    pub updated_at: String,
}

impl InvitationFixture {
    /// Claimed, incentives validated, 1000 USD for the invitee.
    pub fn claimed(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            code: format!("CODE-{id}"),
            inviter_uma: "$inviter@sending.example".into(),
            invitee_uma: Some(format!("$invitee-{id}@receiving.example")),
            status: "CLAIMED".into(),
            incentives_status: "VALIDATED".into(),
            incentives_ineligibility_reason: None,
            payment_amount: Some(1000),
            updated_at: "2026-11-01T12:00:00.000000+00:00".into(),
        }
    }

    pub fn data(&self) -> serde_json::Value {
        let mut d = serde_json::json!({
            "id": self.id,
            "code": self.code,
            "url": format!("https://uma.me/i/{}", self.code),
            "inviter_uma": self.inviter_uma,
            "status": self.status,
            "incentives_status": self.incentives_status,
            "created_at": "2026-10-01T00:00:00.000000+00:00",
            "updated_at": self.updated_at,
        });
        if let Some(u) = &self.invitee_uma {
            d["invitee_uma"] = u.clone().into();
        }
        if let Some(r) = &self.incentives_ineligibility_reason {
            d["incentives_ineligibility_reason"] = r.clone().into();
        }
        if let Some(v) = self.payment_amount {
            d["payment_amount"] = serde_json::json!({"value": v, "currency": {"code": "USD", "symbol": "$", "decimals": 2, "name": "US Dollar"}});
        }
        d
    }

    /// The signed-ready `UMA_INVITATION_CLAIMED` webhook body carrying this invitation.
    pub fn webhook(&self, event_id: &str) -> String {
        serde_json::json!({
            "event_type": "UMA_INVITATION_CLAIMED",
            "event_id": event_id,
            "timestamp": self.updated_at,
            "entity_id": self.id,
            "data": self.data(),
        })
        .to_string()
    }
}

impl TestApp {
    /// `GET path` on the read API: status and JSON body (`Null` when not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.client.get(self.url(path)).send().await.expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `GET /v1/invitations/{id}`, which must exist.
    pub async fn invitation(&self, id: &str) -> serde_json::Value {
        let (status, v) = self.get_json(&format!("/v1/invitations/{}", id.replace(':', "%3A"))).await;
        assert_eq!(status, 200, "GET invitation {id}: {v}");
        v
    }

    /// Posts a signed webhook that must be accepted.
    pub async fn claim(&self, invitation: &InvitationFixture, event_id: &str) {
        let resp = self.post_signed(&invitation.webhook(event_id)).await;
        assert_eq!(resp.status(), 200, "webhook for {} refused", invitation.id);
    }
}

/// Runs the binary like [`binary::run`], on a blocking thread so that fakes
/// served by this test's runtime keep answering the child process.
pub async fn run_binary(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        binary::run(&args, &env)
    })
    .await
    .expect("binary runner")
}

/// Appends hand-made events through the library's own ledger writer (so the
/// hash chain stays valid) while no service holds the database, then brings
/// the projections up to date.
pub async fn append_events(
    db: &Path,
    events: Vec<invitation_ledger::ledger::NewEvent>,
) -> Vec<invitation_ledger::ledger::Appended> {
    let (writer, thread) = invitation_ledger::ledger::LedgerWriter::start(db).expect("ledger writer");
    let appended = writer.append_all(events).await.expect("hand-made events appended");
    drop(writer);
    let db = db.to_owned();
    tokio::task::spawn_blocking(move || {
        thread.join().expect("ledger writer thread");
        let mut conn = invitation_ledger::projection::store::open(&db).expect("open projections");
        invitation_ledger::projection::store::catch_up(&mut conn, 1000).expect("projections catch up");
    })
    .await
    .expect("join");
    appended
}

/// How many ledger events have `kind`.
pub fn count_kind(db: &Path, kind: &str) -> usize {
    ledger_rows(db).iter().filter(|r| r.2 == kind).count()
}

impl TestApp {
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

// ---------------------------------------------------------------------------
// Helpers for the hostile-input, fault and shutdown tests (tests/hostile.rs,
// tests/faults.rs, tests/shutdown.rs): raw HTTP on a bare TCP stream, and the
// `verify` command on a ledger file.

/// Writes `request` on a fresh connection to `addr` and reads until the
/// server closes it or `within` passes. Write errors are ignored (a server
/// may answer and close before reading everything); what arrived is returned.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], within: std::time::Duration) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let request = request.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        // Keep the write half open: shutting it down could make the server
        // see an early EOF instead of the request we mean to send.
        wr
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    out
}

/// The status code of a raw HTTP/1.1 answer, if there is one.
pub fn raw_status(answer: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(answer.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// The JSON body of a raw HTTP/1.1 answer with a Content-Length body.
pub fn raw_json(answer: &[u8]) -> Option<serde_json::Value> {
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    serde_json::from_slice(&answer[split + 4..]).ok()
}

/// A complete `POST /webhooks/lightspark` request (with `Connection: close`)
/// carrying `body`, signed with the test secret under the header spelled
/// `signature_header` (HTTP header names are case-insensitive).
pub fn raw_webhook_request(body: &[u8], signature_header: &str) -> Vec<u8> {
    let mut req = format!(
        "POST /webhooks/lightspark HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{signature_header}: {}\r\nConnection: close\r\n\r\n",
        body.len(),
        signature_of(body)
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Runs `invitation-ledger verify` on `db` and panics with its output unless
/// it succeeds. Works while a service holds the database (it only reads).
pub async fn assert_verifies(db: &Path) {
    let out =
        run_binary(&["verify"], &[("LEDGER_DB", db.to_str().unwrap()), ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)])
            .await;
    assert!(
        out.status.success(),
        "verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `event_key`s stored in the ledger, read straight from SQLite.
pub fn ledger_keys(db: &Path) -> std::collections::BTreeSet<String> {
    ledger_rows(db).into_iter().map(|r| r.1).collect()
}
