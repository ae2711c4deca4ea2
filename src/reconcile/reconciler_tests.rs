//! Tests of one reconciler pass (`super`), driven step by step with fake endpoints and a fake clock.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::invitation::InvitationStatus;
use crate::ledger::writer::LedgerWriter;
use crate::money::{Money, PaymentAmount};
use crate::projection::state::Versioned;
use crate::reconcile::clock::SystemClock;
use crate::reconcile::endpoint::CallOutcome;
use crate::reconcile::ReconcileConfig;
use crate::rng::SplitMix;

/// A platform that counts the calls it receives and accepts each one.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl Endpoint for Counting {
    fn call(&self, _: OutgoingRequest) -> impl Future<Output = CallOutcome> + Send {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::future::ready(CallOutcome::Answered { status: 200, body: br#"{"payment_id":"pay_1"}"#.to_vec() })
    }
}

fn config() -> ReconcileConfig {
    let second = Duration::from_secs(1);
    ReconcileConfig {
        payout_url: Some("http://payments.test/v1/payouts".into()),
        payout_signing_key: None,
        notify_url: None,
        inviter_incentive: None,
        lightspark_api_url: "http://lightspark.test/graphql".into(),
        lightspark_credentials: None,
        fetch_horizon: 3600 * second,
        grid_api_url: "http://grid.test/".into(),
        grid_credentials: None,
        interval: second,
        retry_base: second,
        retry_max: 60 * second,
        idempotency_window: 24 * 3600 * second,
        request_timeout: 10 * second,
        concurrency: 1,
    }
}

/// `Inv:1`, claimed with 5.00 USD to pay its invitee.
fn owing_a_payment() -> InvitationState {
    let mut state = InvitationState::new("Inv:1");
    state.status = Some(Versioned { value: InvitationStatus::Claimed, at: 0, seq: 1 });
    state.invitee_uma = Some(Versioned { value: "$b@y.example".into(), at: 0, seq: 1 });
    state.payment_amount =
        Some(Versioned { value: PaymentAmount::Valid(Money::new(500, "USD").unwrap()), at: 0, seq: 1 });
    state
}

/// A reconciler on the SQLite ledger `db` (written by `ledger`), calling
/// `endpoint` and reading `clock`, with no source to fetch from.
fn reconciler_on<E: Endpoint, C: Clock>(
    db: &std::path::Path,
    ledger: Ledger,
    config: ReconcileConfig,
    endpoint: E,
    clock: C,
) -> Reconciler<E, C, SplitMix> {
    let seams = Seams { endpoint, clock, jitter: SplitMix::seeded(1) };
    Reconciler::new(db.to_owned(), ledger, config, seams, Fetchers::default(), Arc::default())
}

#[tokio::test]
async fn an_attempt_recorded_already_is_not_sent_again() {
    // Given a reconciler whose platform counts its calls, and a claimed
    // invitation with an amount to pay
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let (writer, thread) = LedgerWriter::start(&db).unwrap();
    let platform = Counting::default();
    let reconciler = reconciler_on(&db, Ledger::Sqlite(writer), config(), platform.clone(), SystemClock);
    let state = owing_a_payment();
    // When the same attempt of its payment is sent twice, as a pass that
    // read the invitation twice would
    let fresh = Fresh { state, hash: None };
    reconciler.send(&fresh, ObligationKind::InviteePayment, 1).await.unwrap();
    reconciler.send(&fresh, ObligationKind::InviteePayment, 1).await.unwrap();
    // Then the platform is called once: every call has its own recorded attempt
    assert_eq!(platform.0.load(Ordering::SeqCst), 1);
    drop(reconciler);
    thread.join().unwrap();
}

/// A clock that reads each of its instants once, in turn, then the
/// last one forever: a process standing still between two readings.
struct Readings(Mutex<Vec<chrono::DateTime<chrono::Utc>>>);

impl Clock for Readings {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let mut left = self.0.lock().unwrap();
        if left.len() > 1 {
            left.remove(0)
        } else {
            left[0]
        }
    }
}

#[tokio::test]
async fn a_request_recorded_before_a_pause_is_not_sent_after_it_past_the_window() {
    // Given a payment requested once at 00:00 with no outcome (its
    // window of 24 h opened then, the request timeout 10 s), and a
    // reconciler that records the next attempt at 23:59:00 and then
    // stands still (SIGSTOP, a suspended VM) until 23:59:55
    let at = |t: &str| crate::time::parse_time(t).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let (writer, thread) = LedgerWriter::start(&db).unwrap();
    let platform = Counting::default();
    let clock = Readings(Mutex::new(vec![at("2026-11-01T23:59:00Z"), at("2026-11-01T23:59:55Z")]));
    let config = ReconcileConfig { idempotency_window: Duration::from_secs(24 * 3600), ..config() };
    let reconciler = reconciler_on(&db, Ledger::Sqlite(writer), config, platform.clone(), clock);
    let mut state = owing_a_payment();
    state.payout.phase = ObligationPhase::Requested;
    state.payout.attempts = 1;
    state.payout.window_started_at = Some("2026-11-01T00:00:00Z".into());

    // When it sends attempt 2
    reconciler.send(&Fresh { state, hash: None }, ObligationKind::InviteePayment, 2).await.unwrap();

    // Then the request is recorded but not called: reaching the
    // platform after 23:59:50 it could arrive once the key is forgotten
    assert_eq!(platform.0.load(Ordering::SeqCst), 0);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let kinds: Vec<String> = conn
        .prepare("SELECT kind FROM events ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(kinds, ["payout.requested"]);
    drop(reconciler);
    thread.join().unwrap();
}

/// A platform that says each call it receives on a channel.
#[derive(Clone)]
struct Telling(tokio::sync::mpsc::UnboundedSender<()>);

impl Endpoint for Telling {
    fn call(&self, _: OutgoingRequest) -> impl Future<Output = CallOutcome> + Send {
        let _ = self.0.send(());
        std::future::ready(CallOutcome::Answered { status: 200, body: br#"{"payment_id":"pay_1"}"#.to_vec() })
    }
}

/// A claim of `Inv:due-{n}` with 5.00 USD to pay, as a webhook stores it.
fn claim_event(n: u32) -> NewEvent {
    let id = format!("Inv:due-{n}");
    let body = serde_json::json!({"event_type": "UMA_INVITATION_CLAIMED", "event_id": format!("e{n}"),
        "timestamp": "2026-11-01T12:00:00+00:00", "entity_id": id,
        "data": {"id": id, "status": "CLAIMED", "code": "C", "inviter_uma": "$a@x.example",
            "invitee_uma": "$b@y.example", "incentives_status": "PENDING",
            "payment_amount": {"value": 500, "currency": "USD"}, "updated_at": "2026-11-01T12:00:00+00:00"}});
    NewEvent::test_webhook(n, Some(&id), serde_json::to_vec(&body).unwrap())
}

/// Runs `task` to its end while keeping the runtime busy, so that a
/// paused clock cannot move meanwhile (it moves only when every task
/// waits); panics when it has not ended within ten seconds of real time.
async fn with_the_clock_still<T: Send + 'static>(task: impl Future<Output = T> + Send + 'static) -> T {
    let task = tokio::spawn(task);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !task.is_finished() {
        assert!(std::time::Instant::now() < deadline, "not done while the clock stood still: it waits for a timer");
        tokio::task::yield_now().await;
    }
    task.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_payment_made_due_is_requested_without_waiting_out_the_gap_between_commits() {
    // Given the reconciler's loop, passing every 10 s as a safety net, on
    // a clock that only moves when every task waits for a timer
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let (writer, thread) = LedgerWriter::start(&db).unwrap();
    let (told, calls) = tokio::sync::mpsc::unbounded_channel();
    let calls = Arc::new(tokio::sync::Mutex::new(calls));
    let ledger = Ledger::Sqlite(writer.clone());
    let config = ReconcileConfig { interval: Duration::from_secs(10), ..config() };
    let reconciler = reconciler_on(&db, ledger.clone(), config, Telling(told), SystemClock);
    let (due_tx, due) = watch::channel(0);
    let (stop_tx, stop) = watch::channel(false);
    let looping = tokio::spawn(run(reconciler, ledger.committed(), due, stop));
    for i in 0..12 {
        // When a claim is committed (which wakes the loop, to wait MIN_GAP
        // for more commits to share a pass) and its fold makes its payment
        // due, while the clock stands still
        let (writer, due_tx, calls) = (writer.clone(), due_tx.clone(), calls.clone());
        with_the_clock_still(async move {
            writer.append(claim_event(i)).await.unwrap();
            due_tx.send_modify(|n| *n += 1);
            // Then the payment is requested without waiting for any timer
            calls.lock().await.recv().await.unwrap();
        })
        .await;
        // (its outcome's commit and the pass it wakes are let pass)
        tokio::time::sleep(MIN_GAP * 2).await;
    }
    stop_tx.send(true).unwrap();
    looping.await.unwrap();
    drop(ledger);
    drop(writer);
    tokio::task::spawn_blocking(move || thread.join().unwrap()).await.unwrap();
}
