//! The real binary's life: SIGKILLed mid-stream, every acknowledged webhook
//! survives; SIGTERMed while webhooks arrive, with a request in flight, and
//! with an idle connection open, the process exits 0 within a few seconds,
//! every webhook that got a 200 is in the ledger, and the ledger verifies;
//! SIGTERMed while payments hang, it starts no new payment and records the
//! outcome of every call in flight before it exits.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::binary::{run, ServeProcess};
use crate::support::fake_platform::{FakePlatform, Fault};
use crate::support::log::sigterm;
use crate::support::{
    assert_verifies, claimed_body, eventually, ledger_rows, post_signed_to, raw_json, raw_status, signature_of,
    try_post_signed_to, InvitationFixture, SECRET,
};

/// The event key Lightspark's webhook `body` with `event_id` is stored under.
fn event_key(event_id: &str, body: &[u8]) -> String {
    invitation_ledger::vocab::EventKey::lightspark_webhook(event_id, body).to_string()
}

/// Waits up to `within` for the child to exit; returns its status and how
/// long it took.
async fn wait_exit(server: &mut ServeProcess, within: Duration) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    let status = eventually("the service to exit after SIGTERM", within, || {
        let exited = server.child.try_wait().expect("try_wait");
        async move { exited.ok_or_else(|| "still running".to_owned()) }
    })
    .await;
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_webhooks_arrive_exits_zero_and_keeps_every_acknowledged_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let mut server = ServeProcess::start(&db, &[]);
    let url = server.url("/webhooks/lightspark");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let refused = Arc::new(Mutex::new(0usize));

    let mut senders = Vec::new();
    for task in 0..6 {
        let (client, url, acked, refused) = (client.clone(), url.clone(), acked.clone(), refused.clone());
        senders.push(tokio::spawn(async move {
            for i in 0.. {
                let event_id = format!("t{task}-{i}");
                let body = claimed_body(&event_id, &format!("Inv:{event_id}"));
                let sent = try_post_signed_to(&client, &url, body.clone()).await;
                match sent {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().insert(event_key(&event_id, body.as_bytes()));
                    }
                    // The writer stopped under a request that was still
                    // being served: Lightspark would retry it.
                    Ok(r) if r.status() == 503 => *refused.lock().unwrap() += 1,
                    Ok(r) => panic!("unexpected status {} during shutdown", r.status()),
                    // Connection refused or closed: the server is gone.
                    Err(_) => return i,
                }
                if i % 8 == 7 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            unreachable!()
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let acked_before = acked.lock().unwrap().len();
    sigterm(&server);
    let (status, took) = wait_exit(&mut server, Duration::from_secs(10)).await;
    eprintln!("exited with {status} {took:?} after SIGTERM; {acked_before} acknowledged before it");
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(8), "took {took:?} to exit");
    for s in senders {
        tokio::time::timeout(Duration::from_secs(10), s).await.expect("sender ends").unwrap();
    }

    // After the exit nothing answers.
    let after = reqwest::Client::new().post(&url).body("{}").send().await;
    match after {
        Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
        Ok(r) => assert_eq!(r.status(), 503, "a request after shutdown was answered"),
    }

    let stored: HashSet<String> = ledger_rows(&db).into_iter().map(|r| r.1).collect();
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} acknowledged, {} stored, {} answered 503", acked.len(), stored.len(), refused.lock().unwrap());
    assert!(acked.len() > 20, "the test must acknowledge webhooks, got {}", acked.len());
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert_verifies(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_sigterm_arrives_is_finished_and_stored() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let mut server = ServeProcess::start(&db, &[]);
    let body = claimed_body("in-flight", "Inv:in-flight");
    let head = format!(
        "POST /webhooks/lightspark HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nlightspark-signature: {}\r\nConnection: close\r\n\r\n",
        body.len(),
        signature_of(body.as_bytes())
    );
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    sigterm(&server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Still inside the drain period: the rest of the body arrives.
    stream.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    eprintln!("in-flight request answered {:?} {:?}", raw_status(&answer), raw_json(&answer));
    assert_eq!(raw_status(&answer), Some(200), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(raw_json(&answer).unwrap()["status"], "accepted");

    let (status, took) = wait_exit(&mut server, Duration::from_secs(10)).await;
    eprintln!("exited with {status} {took:?} after the in-flight request");
    assert!(status.success(), "exit status {status}");
    let keys: Vec<String> = ledger_rows(&db).into_iter().map(|r| r.1).collect();
    assert_eq!(keys, vec![event_key("in-flight", body.as_bytes())]);
    assert_verifies(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_idle_connections_open_still_exits_within_five_seconds() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let mut server = ServeProcess::start(&db, &[]);
    // One connection that never sends anything, one stuck halfway through
    // its headers, one kept alive after a request.
    let idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"POST /webhooks/lightspark HTTP/1.1\r\nHost: t\r\n").await.unwrap();
    let client = reqwest::Client::new();
    assert_eq!(client.get(server.url("/healthz")).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let sent = Instant::now();
    sigterm(&server);
    let (status, took) = wait_exit(&mut server, Duration::from_secs(15)).await;
    eprintln!("exited with {status} {:?} after SIGTERM with idle connections open", sent.elapsed());
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(6), "took {took:?}: idle connections held the shutdown beyond the 3 s drain");
    drop((idle, half));
    assert_verifies(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_webhook_survives_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let acked_ids: Arc<Mutex<Vec<String>>> = Arc::default();

    for round in 0..3 {
        let server = ServeProcess::start(&db, &[]);
        let url = server.url("/webhooks/lightspark");
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut senders = Vec::new();
        for task in 0..8 {
            let (client, url, acked, acked_ids) = (client.clone(), url.clone(), acked.clone(), acked_ids.clone());
            senders.push(tokio::spawn(async move {
                for i in 0.. {
                    let event_id = format!("r{round}-t{task}-{i}");
                    let body = claimed_body(&event_id, &format!("Inv:{event_id}"));
                    let sent = try_post_signed_to(&client, &url, body.clone()).await;
                    match sent {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap().insert(event_key(&event_id, body.as_bytes()));
                            acked_ids.lock().unwrap().push(event_id);
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => return i, // the server died under us
                    }
                }
                unreachable!()
            }));
        }
        tokio::time::sleep(Duration::from_millis(300 + 150 * round as u64)).await;
        server.kill();
        for s in senders {
            s.await.unwrap();
        }
    }

    let stored: HashSet<String> = ledger_rows(&db).into_iter().map(|r| r.1).collect();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "the test must actually acknowledge webhooks, got {}", acked.len());
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");

    let out = run(&["verify"], &[("LEDGER_DB", db.to_str().unwrap()), ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // and every acknowledged webhook, sent again after the kills, is a
    // duplicate: the dedupe index lost nothing the ledger kept
    let stored = ledger_rows(&db).len();
    let server = ServeProcess::start(&db, &[]);
    let client = reqwest::Client::new();
    let ids = acked_ids.lock().unwrap().clone();
    for event_id in &ids {
        let body = claimed_body(event_id, &format!("Inv:{event_id}"));
        let r = post_signed_to(&client, &server.url("/webhooks/lightspark"), body).await;
        assert_eq!(r.status(), 200);
        let answer: serde_json::Value = r.json().await.unwrap();
        assert_eq!(answer["status"], "duplicate", "{event_id} sent again: {answer}");
    }
    server.kill();
    assert_eq!(ledger_rows(&db).len(), stored);
}

#[tokio::test]
async fn the_ledger_head_is_logged_every_anchor_interval_and_at_shutdown() {
    // given a service that logs its head every 200 ms
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let log = dir.path().join("serve.log");
    let mut server = ServeProcess::start_logging(&db, &[("ANCHOR_INTERVAL", "200ms"), ("LOG", "info")], Some(&log));
    let client = reqwest::Client::new();
    for i in 0..3 {
        let body = claimed_body(&format!("a{i}"), &format!("Inv:a{i}"));
        let r = post_signed_to(&client, &server.url("/webhooks/lightspark"), body).await;
        assert_eq!(r.status(), 200);
    }
    let head: serde_json::Value = client.get(server.url("/v1/ledger/head")).send().await.unwrap().json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // when it is stopped
    sigterm(&server);
    let (status, _) = wait_exit(&mut server, Duration::from_secs(10)).await;
    assert!(status.success());
    // then its log holds the head at every interval, and last the final head
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("ledger head seq=")).collect();
    assert!(lines.len() >= 3, "a line at start, then every 200 ms, and at shutdown:\n{text}");
    let last = lines.last().unwrap();
    assert!(last.contains(&format!("ledger head seq=3 hash={}", head["hash"].as_str().unwrap())), "{last}");
    assert_eq!(head["seq"], 3);
}

/// The bodies of the ledger events of `kind`, as JSON, in seq order.
fn bodies_of(db: &std::path::Path, kind: &str) -> Vec<serde_json::Value> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT body FROM events WHERE kind = ?1 ORDER BY seq").unwrap();
    let rows = stmt.query_map([kind], |r| r.get::<_, Vec<u8>>(0)).unwrap();
    rows.map(|b| serde_json::from_slice(&b.unwrap()).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_payments_hang_starts_no_new_payment_and_records_every_call_in_flight() {
    // given a ledger with 30 claimed invitations whose payouts are due,
    // ingested while no platform was configured
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let ingest = ServeProcess::spawn(db.clone(), vec![]).await;
    let client = reqwest::Client::new();
    for n in 0..30 {
        let mut inv = InvitationFixture::claimed(&format!("UmaInvitation:term-{n:02}"));
        inv.incentives_status = "PENDING".into();
        let body = inv.webhook(&format!("evt-term-{n:02}"));
        let r = post_signed_to(&client, &ingest.url("/webhooks/lightspark"), body).await;
        assert_eq!(r.status(), 200);
    }
    ingest.kill_async().await;
    // and the service again, with a platform on which every call hangs,
    // four calls at a time, each given up after 2 s
    let payments = FakePlatform::start().await;
    payments.fail_next(1000, Fault::Hang);
    const TIMEOUT: Duration = Duration::from_millis(2000);
    let env = vec![
        ("PAYOUT_URL", payments.url.clone()),
        ("REQUEST_TIMEOUT_MS", TIMEOUT.as_millis().to_string()),
        ("RECONCILE_CONCURRENCY", "4".into()),
        ("RETRY_BASE_MS", "20".into()),
        ("RETRY_MAX_MS", "200".into()),
        ("RECONCILE_INTERVAL_MS", "100".into()),
    ];
    let mut server = ServeProcess::spawn(db.clone(), env).await;
    let payments_ref = &payments;
    eventually("four payment calls in flight", Duration::from_secs(10), || async move {
        match payments_ref.requests().len() {
            4 => Ok(()),
            n => Err(format!("{n} requests at the platform")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // when SIGTERM arrives while the four calls hang
    let signal = Instant::now();
    let in_flight = payments.requests().len();
    sigterm(&server);
    let (status, took) = wait_exit(&mut server, Duration::from_secs(15)).await;

    // then the process exits 0 within the request timeout and a margin
    eprintln!("exited with {status} {took:?} after SIGTERM with {in_flight} payment calls hanging");
    assert!(status.success(), "exit status {status}");
    assert!(took < TIMEOUT + Duration::from_millis(1500), "took {took:?} to exit; REQUEST_TIMEOUT_MS is {TIMEOUT:?}");
    // and no payment request reached the platform after the signal
    let requests = payments.requests();
    assert_eq!(in_flight, 4);
    assert_eq!(requests.len(), in_flight, "a payment was started after SIGTERM");
    assert!(requests.iter().all(|r| r.received_at < signal), "a request arrived after the signal");
    // and every call in flight has its outcome, the timeout, in the ledger
    let requested = bodies_of(&db, "payout.requested");
    let failed = bodies_of(&db, "payout.failed");
    assert_eq!(requested.len(), 4, "one payout.requested per call: {requested:?}");
    let ids = |events: &[serde_json::Value]| {
        let mut ids: Vec<(String, u64)> = events
            .iter()
            .map(|e| (e["invitation_id"].as_str().unwrap().to_owned(), e["attempt"].as_u64().unwrap()))
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&requested), ids(&failed), "every payout.requested has its outcome");
    let keys: Vec<String> = requests.iter().map(|r| r.idempotency_key.clone().unwrap()).collect();
    for f in &failed {
        assert_eq!(f["permanent"], false, "{f}");
        assert!(f["error"].as_str().unwrap().contains("timed out"), "{f}");
        assert!(keys.contains(&f["idempotency_key"].as_str().unwrap().to_owned()), "{f}");
    }
    assert_eq!(bodies_of(&db, "payout.succeeded").len(), 0);
    assert_verifies(&db).await;
}
