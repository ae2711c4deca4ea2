//! The one helpers module of the tests: the service in-process
//! ([`TestApp`]) and as the real binary ([`binary`], its log through a
//! pipe in [`log`]), the fake payment
//! platform and the fake Lightspark GraphQL API, signing through the
//! library's own `sign`, direct reads of the ledger, raw HTTP, and the one
//! poller ([`eventually`]).
//!
//! `tests/storm.rs` and `tests/browser.rs` include the submodules they need
//! by path (`#[path = "support/…"]`); this file is the API binary's
//! own, and everything it holds is used by it.

pub mod app;
pub mod binary;
pub mod disk;
pub mod fake_grid;
pub mod fake_lightspark;
pub mod fake_platform;
pub mod invitation;
pub mod log;
pub mod page;
pub mod poll;
pub mod postgres;
pub mod secret;
pub mod signing;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use invitation_ledger::config::ServeArgs;

pub use app::{json_of, serve_args, TestApp};
pub use binary::run_binary;
pub use invitation::{InvitationFixture, Mix, OBLIGATIONS};
pub use poll::eventually;
pub use secret::SECRET;
pub use signing::signature_of;

/// A claimed-invitation webhook body with a given event id and no data.
pub fn claimed_body(event_id: &str, invitation: &str) -> String {
    format!(
        r#"{{"event_type":"UMA_INVITATION_CLAIMED","event_id":"{event_id}","timestamp":"2026-11-01T12:00:00.000000+00:00","entity_id":"{invitation}"}}"#
    )
}

pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    resp.json().await.expect("JSON body")
}

/// Posts `body` to `url`, signed with the test secret as Lightspark signs:
/// for a service that is not a [`TestApp`] (the binary), or for a task that
/// holds only the client and the URL.
pub async fn post_signed_to(client: &reqwest::Client, url: &str, body: String) -> reqwest::Response {
    try_post_signed_to(client, url, body).await.unwrap()
}

/// [`post_signed_to`] for a test that expects the request itself may fail
/// (a server killed under it, a client timeout).
pub async fn try_post_signed_to(
    client: &reqwest::Client,
    url: &str,
    body: String,
) -> reqwest::Result<reqwest::Response> {
    client.post(url).header("lightspark-signature", signature_of(body.as_bytes())).body(body).send().await
}

/// [`post_signed_to`] for a test that runs no async runtime.
pub fn post_signed_blocking(
    client: &reqwest::blocking::Client,
    url: &str,
    body: String,
) -> reqwest::blocking::Response {
    client.post(url).header("lightspark-signature", signature_of(body.as_bytes())).body(body).send().unwrap()
}

impl TestApp {
    /// The service with the test settings ([`serve_args`]).
    pub async fn spawn() -> Self {
        Self::spawn_configured(|_| {}).await
    }

    /// The service with the test settings as `configure` changes them.
    pub async fn spawn_configured(configure: impl FnOnce(&mut ServeArgs)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut args = serve_args(&dir.path().join("ledger.db"));
        configure(&mut args);
        Self::spawn_with(dir, args).await
    }

    /// Posts `body` signed with the test secret.
    pub async fn post_signed(&self, body: &str) -> reqwest::Response {
        self.post_raw("/webhooks/lightspark", body.as_bytes().to_vec(), Some(&signature_of(body.as_bytes()))).await
    }

    /// `GET /v1/invitations/{id}`, which must exist.
    pub async fn invitation(&self, id: &str) -> serde_json::Value {
        let (status, v) = self.get_json(&format!("/v1/invitations/{}", id.replace(':', "%3A"))).await;
        assert_eq!(status, 200, "GET invitation {id}: {v}");
        v
    }

    /// Waits until `pred` holds for `GET /v1/invitations/{id}` (which may
    /// not exist yet), and returns that projection.
    pub async fn invitation_when(
        &self,
        id: &str,
        within: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let path = format!("/v1/invitations/{}", id.replace(':', "%3A"));
        eventually(&format!("the projection of {id} to reach the expected state"), within, || async {
            match self.get_json(&path).await {
                (200, v) if pred(&v) => Ok(v),
                (status, v) => Err(format!("HTTP {status}: {v}")),
            }
        })
        .await
    }

    /// Posts a signed webhook that must be accepted.
    pub async fn claim(&self, invitation: &InvitationFixture, event_id: &str) {
        let resp = self.post_signed(&invitation.webhook(event_id)).await;
        assert_eq!(resp.status(), 200, "webhook for {} refused", invitation.id);
    }
}

// ---------------------------------------------------------------------------
// The ledger, read straight from SQLite, and written through the library.

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

/// The `event_key`s stored in the ledger.
pub fn ledger_keys(db: &Path) -> std::collections::BTreeSet<String> {
    ledger_rows(db).into_iter().map(|r| r.1).collect()
}

/// How many ledger events have `kind`.
pub fn count_kind(db: &Path, kind: &str) -> usize {
    ledger_rows(db).iter().filter(|r| r.2 == kind).count()
}

/// Recomputes every event's `prev_hash` and `hash` in order, as a forger
/// who rewrote a body would, so that the chain checks out and only what it
/// cannot vouch for (the stored signature) can tell. The ledger's update
/// trigger must have been dropped.
pub fn rechain(conn: &rusqlite::Connection) {
    let mut prev = invitation_ledger::ledger::hash::GENESIS;
    for e in invitation_ledger::ledger::read_after(conn, 0, 1000).unwrap() {
        let h = e.chain_hash(&prev);
        conn.execute(
            "UPDATE events SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![&prev.0[..], &h.0[..], e.seq as i64],
        )
        .unwrap();
        prev = h;
    }
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

// ---------------------------------------------------------------------------
// Raw HTTP on a bare TCP stream, for the hostile-input, fault and shutdown
// tests.

/// Writes `request` on a fresh connection to `addr` and reads until the
/// server closes it or `within` passes. Write errors are ignored (a server
/// may answer and close before reading everything); what arrived is returned.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], within: Duration) -> Vec<u8> {
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
