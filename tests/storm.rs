//! The storm: thousands of signed webhooks over many connections into the
//! real binary — exact duplicates, late replays in random order, forgeries
//! and malformed bodies among them — while the process is SIGKILLed and
//! restarted at random moments, the payment platform fails 30% of first
//! attempts, and 5% of payments take longer to process (2 s) than the reconciler
//! waits (the platform goes on, and answers 409 to a retry meanwhile).
//! Afterwards every acknowledged webhook is in the ledger exactly once,
//! nothing forged or malformed is, the hash chain and the projections check
//! out, every due obligation was executed exactly once, and every payment
//! the ledger records as succeeded is one the platform made.
//!
//! Seeded: `STORM_SEED=<u64>` replays a run (the seed is printed).

#[path = "support/binary.rs"]
mod binary;
#[path = "support/fake_platform.rs"]
mod fake_platform;
#[path = "support/invitation.rs"]
mod invitation;
#[path = "support/poll.rs"]
mod poll;
#[path = "support/secret.rs"]
mod secret;
#[path = "support/signing.rs"]
mod signing;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use invitation_ledger::lightspark::signature::sign;
use invitation_ledger::projection::events::{IdempotencyKey, ObligationKind};
use invitation_ledger::rng::SplitMix;
use serde_json::Value;
use sha2::{Digest, Sha256};

use binary::{run_binary, ServeProcess};
use fake_platform::{FakePlatform, Fault};
use invitation::{InvitationFixture, Mix, OBLIGATIONS};
use poll::eventually;
use secret::SECRET;
use signing::signature_of;

/// The event key Lightspark's webhook `body` with `event_id` is stored under.
fn event_key(event_id: &str, body: &[u8]) -> String {
    invitation_ledger::vocab::EventKey::lightspark_webhook(event_id, body).to_string()
}

/// Distinct invitations; with 1.75 snapshots each and the mix below this
/// makes about 3,800 webhook requests.
const INVITATIONS: usize = 1_400;
const SENDERS: usize = 32;
/// SIGKILLs while webhooks are flowing; one more follows while the
/// reconciler is paying.
const KILLS_DURING_STORM: usize = 4;
const SETTLE_WITHIN: Duration = Duration::from_secs(40);
const DEFAULT_SEED: u64 = 0x5707_2026_1101;

/// The storm mixes the first four kinds of invitation.
const KINDS: usize = 4;

const UPDATED_FIRST: &str = "2026-11-01T12:00:00.000000+00:00";
const UPDATED_LATER: &str = "2026-11-01T12:05:00.000000+00:00";

fn mix_of(n: usize) -> Mix {
    Mix::ALL[n % KINDS]
}

fn id_of(n: usize) -> String {
    format!("UmaInvitation:storm-{n:05}")
}

/// The snapshots Lightspark sends for invitation `n`, oldest first: the
/// first with incentives still pending (and a cancelled one still pending
/// itself), then the final one of its kind. An invitation without an amount
/// is sent once.
fn snapshots(mix: Mix, n: usize) -> Vec<InvitationFixture> {
    let mut later = InvitationFixture::claimed(&id_of(n));
    later.inviter_uma = format!("$inviter-{}@sending.example", n % 13);
    later.payment_amount = Some(100 + n as i64);
    mix.shape(&mut later);
    later.updated_at = UPDATED_LATER.into();
    let mut first = later.clone();
    first.updated_at = UPDATED_FIRST.into();
    first.incentives_status = "PENDING".into();
    first.incentives_ineligibility_reason = None;
    if mix == Mix::Cancelled {
        first.status = "PENDING".into();
    }
    if mix == Mix::NoAmount {
        vec![first]
    } else {
        vec![first, later]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Signed and well-formed: must end acknowledged, under this ledger key.
    Genuine { key: String },
    /// Bad or missing signature: 401, never stored.
    Forged,
    /// Signed but not a webhook object: 400, never stored.
    Malformed,
}

#[derive(Debug)]
struct Item {
    body: Vec<u8>,
    signature: Option<String>,
    expect: Expect,
}

fn genuine(body: String) -> Item {
    let v: Value = serde_json::from_str(&body).unwrap();
    let key = event_key(v["event_id"].as_str().unwrap(), body.as_bytes());
    Item { signature: Some(signature_of(body.as_bytes())), body: body.into_bytes(), expect: Expect::Genuine { key } }
}

/// A claimed invitation with an amount that nobody may ever pay.
fn bait(n: usize, tag: &str) -> InvitationFixture {
    let mut f = InvitationFixture::claimed(&format!("UmaInvitation:{tag}-{n:05}"));
    f.payment_amount = Some(1_000_000);
    f
}

fn forged(n: usize, rng: &SplitMix, genuine_bodies: &[&[u8]]) -> Item {
    let body = bait(n, "forged").webhook(&format!("evt-forged-{n:05}"));
    let (body, signature) = match rng.below(4) {
        0 => (body.clone(), Some(sign(b"not-the-signing-secret", body.as_bytes()))),
        1 => (body, None),
        2 => (body, Some("zz-not-hex".to_owned())),
        _ => {
            // A genuine body with the amount raised, under its original signature.
            let original = genuine_bodies[rng.below(genuine_bodies.len() as u64) as usize];
            let signature = signature_of(original);
            let text = String::from_utf8(original.to_vec()).unwrap();
            let tampered = text.replacen("\"value\":", "\"value\":9", 1).replacen(
                "\"status\":\"PENDING\"",
                "\"status\":\"CLAIMED\"",
                1,
            );
            let tampered = if tampered == text { text.replacen('}', r#","tampered":true}"#, 1) } else { tampered };
            (tampered, Some(signature))
        }
    };
    Item { body: body.into_bytes(), signature, expect: Expect::Forged }
}

fn malformed(n: usize, rng: &SplitMix) -> Item {
    // Signed, but not a JSON object: the only bodies refused (any signed
    // object, however odd, is stored).
    let full = bait(n, "malformed").webhook(&format!("evt-malformed-{n:05}"));
    let body = match rng.below(6) {
        0 => format!(r#"[{{"event_id":"evt-malformed-{n:05}"}}]"#),
        1 => format!(r#""UMA_INVITATION_CLAIMED evt-malformed-{n:05}""#),
        2 => format!("not json at all, malformed {n}"),
        3 => format!("{full}{full}"),           // two objects back to back
        4 => full[..full.len() / 2].to_owned(), // truncated
        _ => format!("{}{full}{}", "[".repeat(200), "]".repeat(200)), // nested beyond the parser's depth
    };
    Item { signature: Some(signature_of(body.as_bytes())), body: body.into_bytes(), expect: Expect::Malformed }
}

/// Figures of the send side, shared by the sender tasks.
#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<usize>>,
    in_flight: AtomicUsize,
    url: RwLock<String>,
    /// Plan entries that got their final answer (200 / 401 / 400).
    answered: AtomicUsize,
    http_requests: AtomicUsize,
    acks: AtomicUsize,
    acked_keys: Mutex<HashSet<String>>,
    forged_rejected: AtomicUsize,
    malformed_rejected: AtomicUsize,
    /// Connection errors and 503s: resent later, like Lightspark does.
    resends: AtomicUsize,
    unexpected: Mutex<Vec<String>>,
}

impl Shared {
    /// The next plan entry, or `None` once everything is answered.
    async fn next(&self) -> Option<usize> {
        loop {
            {
                let mut q = self.queue.lock().unwrap();
                if let Some(i) = q.pop_front() {
                    self.in_flight.fetch_add(1, Ordering::SeqCst);
                    return Some(i);
                }
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return None;
                }
            }
            // Others may still put failed sends back.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn done(&self) {
        let _q = self.queue.lock().unwrap();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.answered.fetch_add(1, Ordering::SeqCst);
    }

    /// Puts `i` back at a random place: it arrives again later, out of order.
    fn resend_later(&self, i: usize, rng: &SplitMix) {
        let mut q = self.queue.lock().unwrap();
        let at = rng.below(q.len() as u64 + 1) as usize;
        q.insert(at, i);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.resends.fetch_add(1, Ordering::SeqCst);
    }

    fn finished(&self) -> bool {
        let q = self.queue.lock().unwrap();
        q.is_empty() && self.in_flight.load(Ordering::SeqCst) == 0
    }
}

async fn sender(shared: Arc<Shared>, items: Arc<Vec<Item>>, client: reqwest::Client, seed: u64) {
    let rng = SplitMix::seeded(seed);
    while let Some(i) = shared.next().await {
        let item = &items[i];
        let url = shared.url.read().unwrap().clone();
        let mut req = client.post(&url).body(item.body.clone());
        if let Some(sig) = &item.signature {
            req = req.header("lightspark-signature", sig);
        }
        shared.http_requests.fetch_add(1, Ordering::SeqCst);
        let status = match req.send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0, // the server died under us, or is not up again yet
        };
        match (&item.expect, status) {
            (Expect::Genuine { key }, 200) => {
                shared.acked_keys.lock().unwrap().insert(key.clone());
                shared.acks.fetch_add(1, Ordering::SeqCst);
                shared.done();
            }
            (Expect::Forged, 401) => {
                shared.forged_rejected.fetch_add(1, Ordering::SeqCst);
                shared.done();
            }
            (Expect::Malformed, 400) => {
                shared.malformed_rejected.fetch_add(1, Ordering::SeqCst);
                shared.done();
            }
            (_, 0 | 503) => {
                shared.resend_later(i, &rng);
                tokio::time::sleep(Duration::from_millis(rng.between(10, 40))).await;
            }
            (expect, status) => {
                shared.unexpected.lock().unwrap().push(format!(
                    "{expect:?} answered {status}: {}",
                    String::from_utf8_lossy(&item.body).chars().take(200).collect::<String>()
                ));
                shared.done();
            }
        }
    }
}

type Env = Vec<(&'static str, String)>;

async fn start(db: PathBuf, env: Env) -> ServeProcess {
    ServeProcess::spawn(db, env).await
}

/// Starts `serve` and SIGKILLs it `after` later, before it is healthy:
/// while it opens, migrates and catches the projections up.
async fn kill_during_start_up(db: PathBuf, env: Env, after: Duration) {
    tokio::task::spawn_blocking(move || {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = std::process::Command::new(binary::BIN)
            .arg("serve")
            .env("LEDGER_DB", &db)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)
            .env("LOG", "error")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn invitation-ledger");
        std::thread::sleep(after);
        let _ = child.kill();
        let _ = child.wait();
    })
    .await
    .expect("SIGKILL during start-up");
}

async fn kill(server: ServeProcess) {
    server.kill_async().await;
}

/// Every invitation the read API lists, by id, following the cursor.
async fn all_invitations(client: &reqwest::Client, server: &ServeProcess) -> Result<BTreeMap<String, Value>, String> {
    let mut out = BTreeMap::new();
    let mut after = String::new();
    loop {
        let url = server.url(&format!("/v1/invitations?limit=500&after={}", after.replace(':', "%3A")));
        let resp = client.get(&url).send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let page: Value = resp.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {page}"));
        }
        for item in page["items"].as_array().ok_or("no items")? {
            out.insert(item["invitation_id"].as_str().unwrap_or_default().to_owned(), item.clone());
        }
        match page["next"].as_str() {
            Some(next) if !next.is_empty() => after = next.to_owned(),
            _ => return Ok(out),
        }
    }
}

fn unsettled(v: &Value) -> Option<String> {
    OBLIGATIONS.iter().find_map(|(field, _)| {
        let state = v[field]["state"].as_str().unwrap_or("?");
        matches!(state, "pending" | "requested" | "retry_scheduled")
            .then(|| format!("{} {field} is {state}", v["invitation_id"]))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_duplicated_replayed_and_forged_webhooks_through_sigkills_pays_every_obligation_exactly_once() {
    let started = Instant::now();
    let seed = std::env::var("STORM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEED);
    let rng = SplitMix::seeded(seed);

    // Arrange: the invitations, every snapshot of each as a signed webhook,
    // shuffled (a later snapshot often arrives before an earlier one).
    let mixes: Vec<Mix> = (0..INVITATIONS).map(mix_of).collect();
    let mut originals: Vec<Item> = Vec::new();
    for (n, mix) in mixes.iter().enumerate() {
        for (s, snapshot) in snapshots(*mix, n).iter().enumerate() {
            originals.push(genuine(snapshot.webhook(&format!("evt-storm-{n:05}-{s}"))));
        }
    }
    rng.shuffle(&mut originals);
    let original_count = originals.len();
    let genuine_bodies: Vec<Vec<u8>> = originals.iter().map(|i| i.body.clone()).collect();
    let genuine_refs: Vec<&[u8]> = genuine_bodies.iter().map(Vec::as_slice).collect();

    // The plan: ~65% first sends, ~20% exact duplicates of a recent send,
    // ~10% replays of an old one, ~5% forged or malformed.
    let mut items: Vec<Item> = Vec::new();
    let mut plan: Vec<usize> = Vec::new();
    let mut genuine_planned: Vec<usize> = Vec::new();
    let (mut duplicates, mut replays, mut bad) = (0usize, 0usize, 0usize);
    let mut originals = originals.into_iter();
    loop {
        let roll = rng.below(100);
        if roll < 65 || genuine_planned.len() < 50 {
            let Some(item) = originals.next() else { break };
            items.push(item);
            plan.push(items.len() - 1);
            genuine_planned.push(items.len() - 1);
        } else if roll < 85 {
            let recent = &genuine_planned[genuine_planned.len() - 40..];
            plan.push(recent[rng.below(recent.len() as u64) as usize]);
            duplicates += 1;
        } else if roll < 95 {
            let old = &genuine_planned[..genuine_planned.len() - 40];
            plan.push(old[rng.below(old.len() as u64) as usize]);
            replays += 1;
        } else {
            let item = if rng.below(2) == 0 { forged(bad, &rng, &genuine_refs) } else { malformed(bad, &rng) };
            items.push(item);
            plan.push(items.len() - 1);
            bad += 1;
        }
    }
    let forged_tried = items.iter().filter(|i| i.expect == Expect::Forged).count();
    let malformed_tried = items.iter().filter(|i| i.expect == Expect::Malformed).count();
    let items = Arc::new(items);

    // Some executions outlast the reconciler's 300 ms request timeout: the
    // platform keeps processing, and a retry (or the restarted service's
    // first call) meets a 409 until it is done.
    let payments = FakePlatform::start().await;
    payments.fail_first_attempts(0.3, seed ^ 0x0001, Fault::Status(500));
    payments.slow_executions(0.05, seed ^ 0x0003, Duration::from_millis(2000));
    let notify = FakePlatform::start().await;
    notify.fail_first_attempts(0.3, seed ^ 0x0002, Fault::Status(500));
    notify.slow_executions(0.05, seed ^ 0x0004, Duration::from_millis(2000));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let env: Env = vec![
        ("PAYOUT_URL", payments.url.clone()),
        ("NOTIFY_URL", notify.url_for("/notify")),
        ("INVITER_INCENTIVE", "500:USD".into()),
        ("RETRY_BASE_MS", "20".into()),
        ("RETRY_MAX_MS", "200".into()),
        ("RECONCILE_INTERVAL_MS", "100".into()),
        ("REQUEST_TIMEOUT_MS", "300".into()),
    ];
    let mut server = start(db.clone(), env.clone()).await;
    let shared = Arc::new(Shared { queue: Mutex::new(plan.iter().copied().collect()), ..Shared::default() });
    *shared.url.write().unwrap() = server.url("/webhooks/lightspark");

    // Act: 32 senders, and SIGKILLs at random points of the storm.
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(10)).pool_max_idle_per_host(SENDERS).build().unwrap();
    let senders: Vec<_> = (0..SENDERS)
        .map(|t| tokio::spawn(sender(shared.clone(), items.clone(), client.clone(), seed.wrapping_add(t as u64 + 1))))
        .collect();
    // Meanwhile an auditor checks the chain and the projections, read-only,
    // beside the running (and dying) service.
    let auditor = {
        let (shared, db) = (shared.clone(), db.clone());
        tokio::spawn(async move {
            let db = db.to_str().unwrap().to_owned();
            let mut runs = 0;
            while !shared.finished() && runs < 4 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                let out =
                    run_binary(&["verify"], &[("LEDGER_DB", &db), ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)]).await;
                assert!(out.status.success(), "verify during the storm: {}", String::from_utf8_lossy(&out.stderr));
                let out = run_binary(&["rebuild", "--check"], &[("LEDGER_DB", &db)]).await;
                assert!(
                    out.status.success(),
                    "rebuild --check during the storm: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                runs += 1;
            }
            runs
        })
    };
    let mut thresholds: Vec<usize> = (0..KILLS_DURING_STORM)
        .map(|_| rng.between(plan.len() as u64 / 12, plan.len() as u64 * 11 / 12) as usize)
        .collect();
    thresholds.sort_unstable();
    let mut kills = 0;
    let mut start_up_kills = 0;
    for (k, threshold) in thresholds.into_iter().enumerate() {
        while shared.answered.load(Ordering::SeqCst) < threshold && !shared.finished() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        kill(server).await;
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rng.between(0, 150))).await;
        if k == 1 {
            // Once, the restart itself is killed before it is up.
            kill_during_start_up(db.clone(), env.clone(), Duration::from_millis(rng.between(5, 80))).await;
            start_up_kills += 1;
        }
        server = start(db.clone(), env.clone()).await;
        *shared.url.write().unwrap() = server.url("/webhooks/lightspark");
    }
    for s in senders {
        s.await.expect("sender task");
    }
    let storm_done = started.elapsed();
    let audits_during_storm = auditor.await.expect("auditor task");
    // One more while the reconciler is paying what the storm made due.
    tokio::time::sleep(Duration::from_millis(rng.between(20, 300))).await;
    kill(server).await;
    kills += 1;
    let server = start(db.clone(), env.clone()).await;

    // The service runs until the reconciler has settled everything.
    let reader = reqwest::Client::new();
    let by_id = eventually("every invitation to settle", SETTLE_WITHIN, || async {
        // Each look reads all 1,400 invitations: keep to about ten a second.
        tokio::time::sleep(Duration::from_millis(80)).await;
        let by_id = all_invitations(&reader, &server).await?;
        if by_id.len() < INVITATIONS {
            return Err(format!("{} of {INVITATIONS} invitations projected", by_id.len()));
        }
        match by_id.values().find_map(unsettled) {
            Some(what) => Err(what),
            None => Ok(by_id),
        }
    })
    .await;
    let settled = started.elapsed();

    // Assert: the send side saw only the answers it should.
    let unexpected = shared.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "unexpected answers ({}): {:#?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)]
    );
    let acked = shared.acked_keys.lock().unwrap().clone();
    let all_genuine: BTreeSet<String> = items
        .iter()
        .filter_map(|i| match &i.expect {
            Expect::Genuine { key } => Some(key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(all_genuine.len(), original_count);
    assert_eq!(acked.len(), original_count, "every genuine webhook was acknowledged in the end");

    // Every acknowledged webhook is in the ledger exactly once; nothing else is.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<(String, Vec<u8>, Option<String>)> = {
        let mut stmt = conn
            .prepare("SELECT event_key, body, signature FROM events WHERE kind = 'webhook.received' ORDER BY seq")
            .unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        rows.map(Result::unwrap).collect()
    };
    let mut stored: HashMap<String, usize> = HashMap::new();
    let mut bodies: HashMap<[u8; 32], usize> = HashMap::new();
    for (key, body, signature) in &rows {
        let v: Value = serde_json::from_slice(body).expect("a stored webhook is JSON");
        assert_eq!(key, &event_key(v["event_id"].as_str().unwrap(), body), "stored key matches the stored bytes");
        assert_eq!(signature.as_deref(), Some(signature_of(body).as_str()), "the signature as received is kept");
        *stored.entry(key.clone()).or_default() += 1;
        *bodies.entry(Sha256::digest(body).into()).or_default() += 1;
    }
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    assert!(bodies.values().all(|n| *n == 1), "the same bytes stored twice");
    let stored_keys: HashSet<String> = stored.keys().cloned().collect();
    let lost: Vec<_> = acked.difference(&stored_keys).collect();
    assert!(lost.is_empty(), "acknowledged but not in the ledger: {lost:?}");
    let intruders: Vec<_> = stored_keys.difference(&acked).collect();
    assert!(intruders.is_empty(), "in the ledger but never acknowledged (forged or malformed?): {intruders:?}");
    assert_eq!(rows.len(), acked.len());

    // The hash chain and every stored signature verify; projections rebuild to the same bytes.
    let db_str = db.to_str().unwrap();
    let out = run_binary(&["verify"], &[("LEDGER_DB", db_str), ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)]).await;
    let verify_line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(out.status.success(), "verify: {}{verify_line}", String::from_utf8_lossy(&out.stderr));
    let out = run_binary(&["rebuild", "--check"], &[("LEDGER_DB", db_str)]).await;
    let rebuild_line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(out.status.success(), "rebuild --check: {}{rebuild_line}", String::from_utf8_lossy(&out.stderr));
    assert!(rebuild_line.contains("matches the live projections"), "{rebuild_line}");

    // Every invitation ends where its kind says, and nothing forged was projected.
    assert_eq!(
        by_id.len(),
        INVITATIONS,
        "only the genuine invitations are projected: {:?}",
        by_id.keys().filter(|k| !k.contains("storm")).collect::<Vec<_>>()
    );
    let mut due: [BTreeSet<String>; 2] = Default::default(); // payments, notifications
    for (n, mix) in mixes.iter().enumerate() {
        let id = id_of(n);
        let v = &by_id[&id];
        assert_eq!(v["status"], if *mix == Mix::Cancelled { "CANCELLED" } else { "CLAIMED" }, "{id}: {v}");
        for ((field, kind), want) in OBLIGATIONS.iter().zip(mix.expected()) {
            assert_eq!(v[field]["state"], want, "{id} {field} ({mix:?}): {v}");
            if want == "succeeded" {
                due[usize::from(*kind == ObligationKind::InviterNotification)]
                    .insert(IdempotencyKey::of(&id, *kind).to_string());
            } else {
                assert_eq!(v[field]["attempts"], 0, "{id} {field} must be untouched: {v}");
            }
        }
    }

    // The platforms executed exactly one call per due obligation, nothing else.
    let attempts_by_key: HashMap<String, u64> = by_id
        .values()
        .flat_map(|v| {
            OBLIGATIONS.iter().map(move |(f, _)| {
                (
                    v[f]["idempotency_key"].as_str().unwrap_or_default().to_owned(),
                    v[f]["attempts"].as_u64().unwrap_or(0),
                )
            })
        })
        .collect();
    let payment_id_by_key: HashMap<String, Value> = by_id
        .values()
        .flat_map(|v| {
            OBLIGATIONS.iter().map(move |(f, _)| {
                (v[f]["idempotency_key"].as_str().unwrap_or_default().to_owned(), v[f]["payment_id"].clone())
            })
        })
        .collect();
    let mut duplicate_effects = 0;
    let mut executed_total = 0;
    let mut platform_requests = 0;
    let mut replayed = 0;
    let mut interrupted = 0;
    for (platform, due, name) in [(&payments, &due[0], "payments"), (&notify, &due[1], "notifications")] {
        let executed = platform.executed();
        let keys: BTreeSet<String> = executed.iter().map(|(k, _)| k.clone()).collect();
        duplicate_effects += executed.len() - keys.len() + keys.difference(due).count();
        assert_eq!(keys.len(), executed.len(), "{name}: a key executed twice");
        let missing: Vec<_> = due.difference(&keys).collect();
        let extra: Vec<_> = keys.difference(due).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name}: due but not executed {missing:?}; executed but not due {extra:?}"
        );
        let requests = platform.requests();
        let mut per_key: HashMap<&str, u64> = HashMap::new();
        for r in &requests {
            assert_ne!(r.answered, 422, "{name}: a retry changed the body under its key: {}", r.body);
            *per_key.entry(r.idempotency_key.as_deref().expect("Idempotency-Key header")).or_default() += 1;
        }
        for (k, seen) in per_key {
            // Each call is preceded by its own `*.requested` event; a kill
            // may leave a recorded attempt that never reached the platform.
            let attempts = attempts_by_key.get(k).copied().unwrap_or(0);
            assert!(seen <= attempts, "{name}: {seen} calls with key {k} but only {attempts} attempts recorded");
        }
        for (n, (k, _)) in executed.iter().enumerate() {
            assert_eq!(
                payment_id_by_key[k],
                format!("pay_{}", n + 1),
                "{name}: {k} recorded another execution's payment id"
            );
        }
        interrupted +=
            due.iter().map(|k| attempts_by_key.get(k).copied().unwrap_or(0)).sum::<u64>() as usize - requests.len();
        executed_total += executed.len();
        platform_requests += requests.len();
        replayed += platform.replays();
    }
    let succeeded_events: usize = ["payout.succeeded", "incentive.succeeded", "notification.succeeded"]
        .iter()
        .map(|k| {
            conn.query_row("SELECT COUNT(*) FROM events WHERE kind = ?1", [k], |r| r.get::<_, i64>(0)).unwrap() as usize
        })
        .sum();
    assert_eq!(succeeded_events, due[0].len() + due[1].len(), "one recorded success per obligation");
    // Every success the ledger records is a payment the platform made: its
    // key executed there, with the payment id of that execution (never a
    // 409 or a timeout taken for one).
    let made: HashMap<String, String> = [&payments, &notify]
        .iter()
        .flat_map(|p| p.executed().into_iter().enumerate().map(|(n, (k, _))| (k, format!("pay_{}", n + 1))))
        .collect();
    let mut stmt = conn.prepare("SELECT seq, body FROM events WHERE kind LIKE '%.succeeded' ORDER BY seq").unwrap();
    let recorded: Vec<(i64, Value)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, Vec<u8>>(1)?)))
        .unwrap()
        .map(|r| r.map(|(seq, b)| (seq, serde_json::from_slice(&b).unwrap())).unwrap())
        .collect();
    for (seq, s) in &recorded {
        let key = s["idempotency_key"].as_str().unwrap();
        assert_eq!(
            s["payment_id"].as_str(),
            made.get(key).map(String::as_str),
            "seq {seq} records a payment the platform did not make: {s}"
        );
    }
    let conflicts = payments.conflicts() + notify.conflicts();
    assert!(conflicts > 0, "no retry met a payment still in progress: the 409 path was not exercised");
    assert_eq!(duplicate_effects, 0);
    assert_eq!(forged_tried, shared.forged_rejected.load(Ordering::SeqCst));
    assert_eq!(malformed_tried, shared.malformed_rejected.load(Ordering::SeqCst));
    assert!(kills >= 5);
    let ledger_events: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap();

    eprintln!("storm (seed {seed}):");
    eprintln!("  webhooks sent:          {} planned ({original_count} distinct, {duplicates} duplicates, {replays} replays, {bad} forged/malformed), {} HTTP requests", plan.len(), shared.http_requests.load(Ordering::SeqCst));
    eprintln!(
        "  acknowledged:           {} answers 200 for {} distinct webhooks; {} resent after a connection error",
        shared.acks.load(Ordering::SeqCst),
        acked.len(),
        shared.resends.load(Ordering::SeqCst)
    );
    eprintln!(
        "  stored:                 {} webhook.received rows (each acknowledged key exactly once), {ledger_events} ledger events",
        rows.len()
    );
    eprintln!(
        "  kills survived:         {} ({kills} of a running service, {start_up_kills} during start-up)",
        kills + start_up_kills
    );
    eprintln!("  forged rejected:        {}/{forged_tried} (401)", shared.forged_rejected.load(Ordering::SeqCst));
    eprintln!("  malformed rejected:     {}/{malformed_tried} (400)", shared.malformed_rejected.load(Ordering::SeqCst));
    eprintln!("  obligations executed:   {executed_total} ({} payments, {} notifications) from {platform_requests} platform calls, {replayed} idempotent replays", due[0].len(), due[1].len());
    eprintln!(
        "  still in progress:      {conflicts} answers 409 while a slow execution went on; {} successes recorded, each a payment made",
        recorded.len()
    );
    eprintln!(
        "  attempts cut by a kill: {interrupted} recorded as requested but never reached the platform; {replayed} executed but answer lost"
    );
    eprintln!("  duplicate effects:      {duplicate_effects}");
    eprintln!("  verify:                 {verify_line}");
    eprintln!("  rebuild --check:        {rebuild_line}");
    eprintln!(
        "  checked mid-storm:      verify and rebuild --check passed {audits_during_storm} times while the storm ran"
    );
    eprintln!(
        "  wall time:              {:.1}s (storm {:.1}s, settled at {:.1}s)",
        started.elapsed().as_secs_f64(),
        storm_done.as_secs_f64(),
        settled.as_secs_f64()
    );
    drop(server);
}
