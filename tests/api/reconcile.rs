//! The reconciler through real HTTP: the service (in-process or the real
//! binary) pays invitees, forwards incentives and notifies inviters through
//! fake endpoints that fail on cue, and every obligation is settled exactly
//! once, under one idempotency key, with the same body on every retry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use invitation_ledger::lightspark::signature::sign;
use invitation_ledger::projection::events::{IdempotencyKey, InternalEvent, ObligationKind, ObligationRequested};
use serde_json::{json, Value};

use crate::support::binary::ServeProcess;
use crate::support::fake_platform::{FakePlatform, Fault, RecordedRequest};
use crate::support::{
    append_events, count_kind, eventually, json_of, ledger_len, ledger_rows, post_signed_to, run_binary,
    InvitationFixture, Mix, TestApp, OBLIGATIONS, SECRET,
};

const SETTLE: Duration = Duration::from_secs(20);

fn key(id: &str, kind: ObligationKind) -> String {
    IdempotencyKey::of(id, kind).to_string()
}

/// Waits until `field` (`payout`, `incentive`, `notification`) of the
/// invitation reaches `state`, and returns the whole projection.
async fn wait_state(app: &TestApp, id: &str, field: &str, state: &str, within: Duration) -> Value {
    app.invitation_when(id, within, |v| v[field]["state"] == state).await
}

/// Invitation `n` of the big test's mix: the kinds in turn, each claimed with
/// its own amount by one of seven inviters.
fn mixed(n: usize) -> (Mix, InvitationFixture) {
    let mix = Mix::ALL[n % Mix::ALL.len()];
    let mut f = InvitationFixture::claimed(&format!("UmaInvitation:mix-{n:03}"));
    f.inviter_uma = format!("$inviter-{}@sending.example", n % 7);
    f.payment_amount = Some(100 + n as i64);
    mix.shape(&mut f);
    (mix, f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_claimed_invitations_with_transient_failures_settle_exactly_once() {
    // Arrange: a payment platform that drops connections, loses answers of
    // executed payments, and fails 30% of first attempts with a 500; a
    // notification endpoint that is just as flaky.
    let payments = FakePlatform::start().await;
    payments.fail_next(2, Fault::Drop);
    payments.fail_next(3, Fault::ExecuteThenStatus(503));
    payments.fail_first_attempts(0.3, 20_261_101, Fault::Status(500));
    let notify = FakePlatform::start().await;
    notify.fail_next(2, Fault::Drop);
    notify.fail_next(1, Fault::ExecuteThenStatus(502));
    notify.fail_first_attempts(0.3, 42, Fault::Status(500));
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.notify_url = Some(notify.url_for("/notify"));
        a.reconcile.inviter_incentive = Some("500:USD".into());
    })
    .await;
    let invitations: Vec<(Mix, InvitationFixture)> = (0..100).map(mixed).collect();

    // Act
    let app_ref = &app;
    let posts = invitations.iter().map(|(_, f)| async move { app_ref.claim(f, &format!("evt-{}", f.id)).await });
    futures_util::future::join_all(posts).await;

    // Assert: every invitation ends where its kind says.
    let by_id: BTreeMap<String, Value> = eventually("all 100 invitations to settle", SETTLE, || async {
        let (_, page) = app.get_json("/v1/invitations?limit=500").await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let by_id: BTreeMap<String, Value> =
            items.into_iter().map(|v| (v["invitation_id"].as_str().unwrap_or_default().to_owned(), v)).collect();
        for (mix, f) in &invitations {
            let Some(v) = by_id.get(&f.id) else { return Err(format!("{} not projected yet", f.id)) };
            for ((field, _), want) in OBLIGATIONS.iter().zip(mix.expected()) {
                if v[field]["state"] != want {
                    return Err(format!("{} {field}: {} (want {want})", f.id, v[field]));
                }
            }
        }
        Ok(by_id)
    })
    .await;

    let mut due_payments = BTreeMap::new(); // key -> (invitation, field, expected body)
    let mut due_notifications = BTreeMap::new();
    for (mix, f) in &invitations {
        let v = &by_id[&f.id];
        for ((field, kind), want) in OBLIGATIONS.iter().zip(mix.expected()) {
            if want != "succeeded" {
                assert!(
                    v[field]["attempts"] == 0 && v[field]["payment_id"].is_null(),
                    "{} {field} must be untouched: {v}",
                    f.id
                );
                continue;
            }
            let k = key(&f.id, *kind);
            assert_eq!(v[field]["idempotency_key"], k.as_str(), "{} {field}", f.id);
            assert!(v[field]["last_error"].is_null(), "{} {field}: {v}", f.id);
            let body = match kind {
                ObligationKind::InviteePayment => json!({
                    "idempotency_key": k, "kind": "invitee_payment", "invitation_id": f.id, "invitation_code": f.code,
                    "receiver_uma": f.invitee_uma,
                    "amount": {"value": f.payment_amount, "currency": "USD", "decimals": 2}}),
                ObligationKind::InviterIncentive => json!({
                    "idempotency_key": k, "kind": "inviter_incentive", "invitation_id": f.id, "invitation_code": f.code,
                    "receiver_uma": f.inviter_uma, "amount": {"value": 500, "currency": "USD", "decimals": 2}}),
                ObligationKind::InviterNotification => json!({
                    "idempotency_key": k, "kind": "invitee_joined", "invitation_id": f.id,
                    "inviter_uma": f.inviter_uma, "invitee_uma": f.invitee_uma}),
                ObligationKind::InviterFailureNotice => unreachable!("no payment of the mix fails for good"),
            };
            let target =
                if *kind == ObligationKind::InviterNotification { &mut due_notifications } else { &mut due_payments };
            target.insert(k, (f.id.clone(), *field, body));
        }
    }
    // 100 = 6 × 16 + 4: Full, NoAmount, Ineligible and Cancelled have 17 each, Pending and NoInvitee 16.
    assert_eq!(
        due_payments.len(),
        (17 + 17) + (17 + 16),
        "payments of Full and Ineligible, incentives of Full and NoInvitee"
    );
    assert_eq!(due_notifications.len(), 17 + 17 + 17, "Full, NoAmount and Ineligible");

    for (platform, due, name) in
        [(&payments, &due_payments, "payments"), (&notify, &due_notifications, "notifications")]
    {
        let requests = platform.requests();
        // Faults really happened, so retries really were exercised.
        assert!(requests.iter().filter(|r| r.answered != 200).count() >= 8, "{name}: too few injected failures");
        // Exactly one distinct key per due obligation, and no other key.
        let mut by_key: BTreeMap<String, Vec<&RecordedRequest>> = BTreeMap::new();
        for r in &requests {
            let k = r
                .idempotency_key
                .clone()
                .unwrap_or_else(|| panic!("{name}: request without Idempotency-Key: {}", r.body));
            assert_eq!(r.body["idempotency_key"], k.as_str(), "{name}: header and body keys differ");
            by_key.entry(k).or_default().push(r);
        }
        assert_eq!(by_key.keys().collect::<Vec<_>>(), due.keys().collect::<Vec<_>>(), "{name}: keys sent");
        for (k, rs) in &by_key {
            let (id, field, want_body) = &due[k];
            // Every retry re-sent the same bytes, and the body is the documented one.
            assert!(
                rs.iter().all(|r| r.raw_body == rs[0].raw_body),
                "{name}: {id} {field} body changed between retries"
            );
            assert_eq!(&rs[0].body, want_body, "{name}: {id} {field} body");
            // `attempts` counts the HTTP calls the platform received.
            assert_eq!(by_id[id][field]["attempts"], rs.len(), "{name}: {id} {field} attempts vs requests seen");
            assert_eq!(rs.last().unwrap().answered, 200, "{name}: {id} {field} last answer");
        }
        // Executed exactly once per due obligation.
        let executed = platform.executed();
        assert_eq!(executed.len(), due.len(), "{name}: executions");
        assert_eq!(executed.iter().map(|(k, _)| k).collect::<BTreeSet<_>>(), due.keys().collect::<BTreeSet<_>>());
        // A lost answer after execution was retried and replayed, never re-executed.
        let lost_answers = requests.iter().filter(|r| r.answered == 503 || r.answered == 502).count();
        assert!(lost_answers >= 1);
        assert!(platform.replays() >= lost_answers, "{name}: every lost answer was retried and replayed");
        // Each obligation recorded the payment id of its own execution
        // (the fake numbers executions pay_1, pay_2, … in order).
        for (n, (k, _)) in executed.iter().enumerate() {
            let (id, field, _) = &due[k];
            assert_eq!(by_id[id][*field]["payment_id"], format!("pay_{}", n + 1), "{name}: {id} {field} payment id");
        }
    }

    // The ledger agrees: one success per obligation, one request event per call.
    assert_eq!(count_kind(&app.db, "payout.succeeded"), 17 + 17);
    assert_eq!(count_kind(&app.db, "incentive.succeeded"), 17 + 16);
    assert_eq!(count_kind(&app.db, "notification.succeeded"), due_notifications.len());
    assert_eq!(
        count_kind(&app.db, "payout.requested") + count_kind(&app.db, "incentive.requested"),
        payments.requests().len()
    );
    assert_eq!(count_kind(&app.db, "notification.requested"), notify.requests().len());
}

#[tokio::test]
async fn a_409_is_retried_with_the_same_key_and_body_and_never_counts_as_paid() {
    // Arrange: the platform says a request with this key is still being
    // processed (IETF idempotency-key draft), then answers normally.
    let payments = FakePlatform::start().await;
    payments.fail_next(1, Fault::Status(409));
    let app = TestApp::spawn_configured(|a| a.reconcile.payout_url = Some(payments.url.clone())).await;
    let mut inv = InvitationFixture::claimed("UmaInvitation:conflict");
    inv.incentives_status = "PENDING".into();

    // Act
    app.claim(&inv, "evt-409").await;

    // Assert: the 409 scheduled a retry, the retry was paid, with the same
    // key and body, and the ledger recorded no success for the 409.
    let v = wait_state(&app, &inv.id, "payout", "succeeded", SETTLE).await;
    assert_eq!(v["payout"]["attempts"], 2);
    let requests = payments.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!((requests[0].answered, requests[1].answered), (409, 200));
    assert_eq!(requests[0].idempotency_key, requests[1].idempotency_key);
    assert_eq!(requests[0].raw_body, requests[1].raw_body);
    assert_eq!(count_kind(&app.db, "payout.failed"), 1);
    assert_eq!(count_kind(&app.db, "payout.succeeded"), 1);
    assert_eq!(payments.executed().len(), 1);
}

#[tokio::test]
async fn a_400_stays_failed_and_is_never_retried() {
    // Arrange
    let payments = FakePlatform::start().await;
    payments.fail_next(1, Fault::Status(400));
    let app = TestApp::spawn_configured(|a| a.reconcile.payout_url = Some(payments.url.clone())).await;
    let mut refused = InvitationFixture::claimed("UmaInvitation:refused");
    refused.incentives_status = "PENDING".into();

    // Act
    app.claim(&refused, "evt-refused").await;

    // Assert: failed, with the platform's answer kept.
    let v = wait_state(&app, &refused.id, "payout", "failed", SETTLE).await;
    let err = v["payout"]["last_error"].as_str().expect("last_error kept");
    assert!(err.contains("HTTP 400") && err.contains("injected fault"), "{err}");

    // Several later passes, each proven by a payment it made, leave it alone.
    for n in 0..3 {
        let mut control = InvitationFixture::claimed(&format!("UmaInvitation:control-{n}"));
        control.incentives_status = "PENDING".into();
        app.claim(&control, &format!("evt-control-{n}")).await;
        wait_state(&app, &control.id, "payout", "succeeded", SETTLE).await;
    }
    let v = app.invitation(&refused.id).await;
    assert_eq!(v["payout"]["state"], "failed");
    assert_eq!(v["payout"]["attempts"], 1);
    assert_eq!(v["payout"]["last_error"], err);
    let refused_key = key(&refused.id, ObligationKind::InviteePayment);
    let sent =
        payments.requests().iter().filter(|r| r.idempotency_key.as_deref() == Some(refused_key.as_str())).count();
    assert_eq!(sent, 1);
    let (_, failed) = app.get_json("/v1/invitations?payout_state=failed").await;
    let listed: Vec<&str> =
        failed["items"].as_array().unwrap().iter().map(|i| i["invitation_id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![refused.id.as_str()]);
}

#[tokio::test]
async fn payment_requests_carry_the_documented_body_and_a_valid_ledger_signature() {
    // Arrange
    const SIGNING_KEY: &str = "payout-signing-key-for-tests";
    let payments = FakePlatform::start().await;
    payments.require_signature(SIGNING_KEY);
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.payout_signing_key = Some(SIGNING_KEY.into());
        a.reconcile.inviter_incentive = Some("500:USD".into());
    })
    .await;
    let mut inv = InvitationFixture::claimed("UmaInvitation:0190d3f2-signed");
    inv.code = "SIGNED42".into();
    inv.inviter_uma = "$alice@sending.example".into();
    inv.invitee_uma = Some("$bob@receiving.example".into());
    inv.payment_amount = Some(1234);

    // Act
    app.claim(&inv, "evt-signed").await;

    // Assert
    wait_state(&app, &inv.id, "payout", "succeeded", SETTLE).await;
    let v = wait_state(&app, &inv.id, "incentive", "succeeded", SETTLE).await;
    let payout_key = key(&inv.id, ObligationKind::InviteePayment);
    let incentive_key = key(&inv.id, ObligationKind::InviterIncentive);
    assert_ne!(payout_key, incentive_key);
    let mut requests = payments.requests();
    requests.sort_by_key(|r| r.body["kind"].as_str().map(str::to_owned));
    assert_eq!(requests.len(), 2);
    // Sorted by kind: invitee_payment, then inviter_incentive.
    let expected = [
        (
            &payout_key,
            json!({"idempotency_key": payout_key, "kind": "invitee_payment", "invitation_id": inv.id,
                   "invitation_code": "SIGNED42", "receiver_uma": "$bob@receiving.example",
                   "amount": {"value": 1234, "currency": "USD", "decimals": 2}}),
        ),
        (
            &incentive_key,
            json!({"idempotency_key": incentive_key, "kind": "inviter_incentive", "invitation_id": inv.id,
                   "invitation_code": "SIGNED42", "receiver_uma": "$alice@sending.example",
                   "amount": {"value": 500, "currency": "USD", "decimals": 2}}),
        ),
    ];
    for (r, (k, body)) in requests.iter().zip(expected) {
        assert_eq!(r.idempotency_key.as_deref(), Some(k.as_str()));
        assert_eq!(r.body, body, "exact fields of the request");
        let sig = r.ledger_signature.as_deref().expect("ledger-signature header");
        assert_eq!(sig, sign(SIGNING_KEY.as_bytes(), &r.raw_body), "HMAC-SHA256 of the raw body");
        assert_eq!(r.answered, 200, "the platform accepted the signature");
    }
    // The projection recorded the payment ids the platform answered.
    let executed = payments.executed();
    let payment_id_of = |k: &str| format!("pay_{}", executed.iter().position(|(e, _)| e == k).unwrap() + 1);
    assert_eq!(v["payout"]["payment_id"], payment_id_of(&payout_key));
    assert_eq!(v["incentive"]["payment_id"], payment_id_of(&incentive_key));
    assert_eq!(
        v["incentive"]["requested"],
        json!({"receiver_uma": inv.inviter_uma, "amount": {"value": 500, "currency": "USD", "decimals": 2}})
    );
}

#[tokio::test]
async fn without_a_payout_url_obligations_stay_pending_and_listed() {
    // Arrange: only the notification endpoint is configured, so passes are
    // observable while payments have nowhere to go.
    let notify = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.notify_url = Some(notify.url_for("/notify"));
        a.reconcile.inviter_incentive = Some("500:USD".into());
    })
    .await;
    let owed: Vec<InvitationFixture> =
        (1..=3).map(|n| InvitationFixture::claimed(&format!("UmaInvitation:owed-{n}"))).collect();
    let mut cancelled = InvitationFixture::claimed("UmaInvitation:cancelled");
    cancelled.status = "CANCELLED".into();
    let mut no_amount = InvitationFixture::claimed("UmaInvitation:no-amount");
    no_amount.payment_amount = None;

    // Act
    for (i, f) in owed.iter().chain([&cancelled, &no_amount]).enumerate() {
        app.claim(f, &format!("evt-{i}")).await;
    }

    // Assert: a pass ran (it notified every claimed invitee) and left payments pending.
    for f in owed.iter().chain([&no_amount]) {
        wait_state(&app, &f.id, "notification", "succeeded", SETTLE).await;
    }
    let (status, page) = app.get_json("/v1/invitations?payout_state=pending").await;
    assert_eq!(status, 200);
    let listed: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|i| i["invitation_id"].as_str().unwrap()).collect();
    assert_eq!(listed, owed.iter().map(|f| f.id.as_str()).collect::<Vec<_>>());
    for item in page["items"].as_array().unwrap() {
        let id = item["invitation_id"].as_str().unwrap();
        assert_eq!(item["payout"]["state"], "pending");
        assert_eq!(item["payout"]["attempts"], 0);
        assert_eq!(item["payout"]["idempotency_key"], key(id, ObligationKind::InviteePayment).as_str());
        assert_eq!(item["incentive"]["state"], "pending");
    }
    for kind in ["payout.requested", "payout.succeeded", "payout.failed", "incentive.requested"] {
        assert_eq!(count_kind(&app.db, kind), 0, "{kind}");
    }
    assert!(notify.requests().iter().all(|r| r.body["kind"] == "invitee_joined"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_platform_is_bounded_by_the_request_timeout_and_retried() {
    // Arrange
    let payments = FakePlatform::start().await;
    payments.fail_next(1, Fault::Hang);
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.request_timeout_ms = 300;
    })
    .await;
    let mut inv = InvitationFixture::claimed("UmaInvitation:hang");
    inv.incentives_status = "PENDING".into();

    // Act
    app.claim(&inv, "evt-hang").await;

    // Assert
    let v = wait_state(&app, &inv.id, "payout", "succeeded", SETTLE).await;
    assert!(v["payout"]["attempts"].as_u64().unwrap() >= 2, "{v}");
    let requests = payments.requests();
    assert_eq!(requests[0].answered, 0, "the first request was never answered");
    let k = key(&inv.id, ObligationKind::InviteePayment);
    assert!(requests
        .iter()
        .all(|r| r.idempotency_key.as_deref() == Some(k.as_str()) && r.raw_body == requests[0].raw_body));
    assert_eq!(payments.executed().len(), 1);
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    let failure: Vec<u8> = conn
        .query_row("SELECT body FROM events WHERE kind = 'payout.failed' ORDER BY seq LIMIT 1", [], |r| r.get(0))
        .unwrap();
    let failure: Value = serde_json::from_slice(&failure).unwrap();
    assert_eq!(failure["permanent"], false);
    assert!(failure["error"].as_str().unwrap().contains("timed out"), "{failure}");
}

/// What a CLI run printed, for assertions and failure messages.
fn text(out: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn status_json(db: &str, id: &str) -> Value {
    let out = run_binary(&["status", id, "--json"], &[("LEDGER_DB", db)]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "status {id}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("status --json is JSON: {e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_obligation_requested_longer_ago_than_the_window_is_in_doubt_until_an_operator_resolves_it() {
    // Arrange: a ledger with two claimed invitations, written by a service
    // that had nowhere to pay.
    let app = TestApp::spawn_configured(|_| {}).await;
    let mut retried = InvitationFixture::claimed("UmaInvitation:doubt-retry");
    retried.incentives_status = "PENDING".into();
    let mut paid = InvitationFixture::claimed("UmaInvitation:doubt-paid");
    paid.incentives_status = "PENDING".into();
    app.claim(&retried, "evt-doubt-1").await;
    app.claim(&paid, "evt-doubt-2").await;
    wait_state(&app, &retried.id, "payout", "pending", SETTLE).await;
    wait_state(&app, &paid.id, "payout", "pending", SETTLE).await;
    let db_path = app.db.clone();
    let _dir = app.stop_promptly().await;
    let db = db_path.to_str().unwrap();

    // A pending obligation cannot be resolved.
    let before = ledger_len(&db_path);
    let out =
        run_binary(&["resolve", &retried.id, "invitee_payment", "--paid", "pay_nope"], &[("LEDGER_DB", db)]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("is pending, not in_doubt or failed: nothing to resolve"), "{stderr}");
    assert_eq!(ledger_len(&db_path), before);

    // The second invitation's payment was requested two days ago by a
    // process that died before recording the outcome.
    let two_days_ago = chrono::Utc::now() - chrono::Duration::days(2);
    let paid_key = IdempotencyKey::of(&paid.id, ObligationKind::InviteePayment);
    let requested = ObligationRequested {
        receiver_uma: paid.invitee_uma.clone(),
        invitation_id: paid.id.clone(),
        obligation: ObligationKind::InviteePayment,
        idempotency_key: paid_key.clone(),
        attempt: 1,
        requested_at: two_days_ago.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        amount: Some(invitation_ledger::money::Money::new(1000, "USD").unwrap()),
        request: json!({"idempotency_key": paid_key, "kind": "invitee_payment", "invitation_id": paid.id,
                        "invitation_code": paid.code, "receiver_uma": paid.invitee_uma,
                        "amount": {"value": 1000, "currency": "USD"}}),
    };
    let event = InternalEvent::Requested(requested).to_new_event();
    append_events(&db_path, vec![event]).await;

    let payments = FakePlatform::start().await;
    payments.fail_next(1, Fault::Hang);
    let env = |window: &'static str| {
        vec![
            ("LEDGER_DB", db.to_owned()),
            ("PAYOUT_URL", payments.url.clone()),
            ("REQUEST_TIMEOUT_MS", "300".to_owned()),
            ("RETRY_BASE_MS", "1".to_owned()),
            ("RETRY_MAX_MS", "1".to_owned()),
            ("IDEMPOTENCY_WINDOW", window.to_owned()),
        ]
    };
    let reconcile = |window: &'static str| {
        let env = env(window);
        async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let out = run_binary(&["reconcile", "--once"], &env).await;
            let (stdout, stderr) = text(&out);
            assert!(out.status.success(), "reconcile --once: {stderr}");
            stdout
        }
    };

    // Act 1: a pass with the usual 24 h window. The stale request is put in
    // doubt without being re-sent; the fresh one hangs and is rescheduled.
    let stdout = reconcile("24h").await;

    // Assert 1
    assert!(stdout.contains("in_doubt=1") && stdout.contains("retry_scheduled=1"), "{stdout}");
    assert_eq!(payments.requests().len(), 1, "only the fresh obligation was sent");
    assert_eq!(
        payments.requests()[0].idempotency_key.as_deref(),
        Some(key(&retried.id, ObligationKind::InviteePayment).as_str())
    );
    let s = status_json(db, &paid.id).await;
    assert_eq!(s["payout"]["state"], "in_doubt", "{s}");
    assert_eq!(s["payout"]["attempts"], 1);
    assert_eq!(status_json(db, &retried.id).await["payout"]["state"], "retry_scheduled");

    // Act 2: a pass whose window is shorter than the retry's age: the retry
    // is not re-sent blindly either.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stdout = reconcile("400ms").await;

    // Assert 2
    assert!(stdout.contains("sent=0") && stdout.contains("in_doubt=1"), "{stdout}");
    assert_eq!(status_json(db, &retried.id).await["payout"]["state"], "in_doubt");
    assert_eq!(payments.requests().len(), 1);

    // Act 3: with the usual window nothing in doubt is sent.
    let stdout = reconcile("24h").await;
    assert!(stdout.contains("sent=0"), "{stdout}");
    assert_eq!(payments.requests().len(), 1);

    // Act 4: the operator says the first was not paid, the second was.
    let out = run_binary(&["resolve", &retried.id, "invitee_payment", "--retry"], &[("LEDGER_DB", db)]).await;
    assert!(out.status.success(), "resolve --retry: {}", text(&out).1);
    let out = run_binary(&["resolve", &paid.code, "payout", "--paid", "pay_x"], &[("LEDGER_DB", db)]).await;
    assert!(out.status.success(), "resolve --paid: {}", text(&out).1);
    let s = status_json(db, &paid.id).await;
    assert_eq!(s["payout"]["state"], "succeeded");
    assert_eq!(s["payout"]["payment_id"], "pay_x");
    assert_eq!(status_json(db, &retried.id).await["payout"]["state"], "retry_scheduled");
    let stdout = reconcile("24h").await;

    // Assert 4: the retried one is paid under its original key and body;
    // the one resolved as paid is never sent.
    assert!(stdout.contains("sent=1") && stdout.contains("succeeded=1"), "{stdout}");
    let s = status_json(db, &retried.id).await;
    assert_eq!(s["payout"]["state"], "succeeded", "{s}");
    assert_eq!(s["payout"]["attempts"], 2);
    assert_eq!(s["payout"]["payment_id"], "pay_1");
    let requests = payments.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].idempotency_key, requests[1].idempotency_key);
    assert_eq!(requests[0].raw_body, requests[1].raw_body);
    assert_eq!(payments.executed().len(), 1);
    assert!(!requests.iter().any(|r| r.idempotency_key.as_deref() == Some(paid_key.as_str())));
    let out = run_binary(&["resolve", &paid.id, "invitee_payment", "--retry"], &[("LEDGER_DB", db)]).await;
    assert!(!out.status.success(), "a settled obligation cannot be resolved again");
    let out = run_binary(&["verify"], &[("LEDGER_DB", db), ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)]).await;
    assert!(out.status.success(), "verify: {}", text(&out).1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_can_retry_again_after_the_obligation_falls_in_doubt_a_second_time() {
    // Arrange: a payment whose first call hung, put in doubt, retried by the
    // operator, and in doubt again because no pass ran within the window.
    let app = TestApp::spawn_configured(|_| {}).await;
    let mut inv = InvitationFixture::claimed("UmaInvitation:twice-in-doubt");
    inv.incentives_status = "PENDING".into();
    app.claim(&inv, "evt-twice").await;
    wait_state(&app, &inv.id, "payout", "pending", SETTLE).await;
    let db_path = app.db.clone();
    let _dir = app.stop_promptly().await;
    let db = db_path.to_str().unwrap();
    let payments = FakePlatform::start().await;
    payments.fail_next(1, Fault::Hang);
    let reconcile = |window: &'static str| {
        let url = payments.url.clone();
        async move {
            let env = [
                ("LEDGER_DB", db),
                ("PAYOUT_URL", url.as_str()),
                ("REQUEST_TIMEOUT_MS", "300"),
                ("RETRY_BASE_MS", "1"),
                ("RETRY_MAX_MS", "1"),
                ("IDEMPOTENCY_WINDOW", window),
            ];
            let out = run_binary(&["reconcile", "--once"], &env).await;
            assert!(out.status.success(), "reconcile --once: {}", text(&out).1);
            text(&out).0
        }
    };
    let id = inv.id.as_str();
    let resolve_retry = || async move {
        let out = run_binary(&["resolve", id, "invitee_payment", "--retry"], &[("LEDGER_DB", db)]).await;
        assert!(out.status.success(), "resolve --retry: {}", text(&out).1);
        text(&out).0
    };
    assert!(reconcile("24h").await.contains("retry_scheduled=1"));
    // In doubt once the whole window (400 ms) has passed since the request.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(reconcile("400ms").await.contains("in_doubt=1"));
    resolve_retry().await;
    // No pass within the window.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(reconcile("400ms").await.contains("in_doubt=1"));
    assert_eq!(status_json(db, &inv.id).await["payout"]["state"], "in_doubt");

    // Act: the operator decides to retry a second time.
    let stdout = resolve_retry().await;

    // Assert: the decision is recorded and acted on.
    assert!(!stdout.contains("already recorded"), "{stdout}");
    assert_eq!(status_json(db, &inv.id).await["payout"]["state"], "retry_scheduled");
    assert!(reconcile("24h").await.contains("succeeded=1"));
    let s = status_json(db, &inv.id).await;
    assert_eq!(s["payout"]["state"], "succeeded");
    assert_eq!(s["payout"]["attempts"], 2);
    assert_eq!(payments.executed().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_once_is_refused_while_a_service_holds_the_database() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let payments = FakePlatform::start().await;
    let server = ServeProcess::spawn(db.clone(), vec![]).await;

    // Act
    let out =
        run_binary(&["reconcile", "--once"], &[("LEDGER_DB", db.to_str().unwrap()), ("PAYOUT_URL", &payments.url)])
            .await;

    // Assert
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("holds the database"), "{stderr}");
    assert_eq!(stderr.trim().lines().filter(|l| l.starts_with("error:")).count(), 1, "one-line reason: {stderr}");
    assert!(payments.requests().is_empty());
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_records_nothing() {
    // Arrange
    let app = TestApp::spawn_configured(|_| {}).await;
    let inv = InvitationFixture::claimed("UmaInvitation:dry");
    app.claim(&inv, "evt-dry").await;
    wait_state(&app, &inv.id, "payout", "pending", SETTLE).await;
    let db_path = app.db.clone();
    let _dir = app.stop_promptly().await;
    let before = ledger_rows(&db_path);
    let payments = FakePlatform::start().await;
    let notify = FakePlatform::start().await;

    // Act
    let out = run_binary(
        &["reconcile", "--once", "--dry-run"],
        &[
            ("LEDGER_DB", db_path.to_str().unwrap()),
            ("PAYOUT_URL", &payments.url),
            ("NOTIFY_URL", &notify.url_for("/notify")),
            ("INVITER_INCENTIVE", "500:USD"),
        ],
    )
    .await;

    // Assert
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for kind in ["invitee_payment", "inviter_incentive", "inviter_notification"] {
        assert!(stdout.contains(&format!("{} {kind}: would send attempt 1", inv.id)), "{stdout}");
    }
    assert!(stdout.contains("dry run: sent=0"), "{stdout}");
    assert!(payments.requests().is_empty() && notify.requests().is_empty());
    assert_eq!(ledger_rows(&db_path), before);
    assert_eq!(status_json(db_path.to_str().unwrap(), &inv.id).await["payout"]["state"], "pending");
}

#[tokio::test]
async fn a_newly_claimed_invitation_is_paid_without_waiting_for_the_interval() {
    // Arrange: passes every 10 s, so only the commit wake-up can explain a
    // payment within 5 s.
    let payments = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.reconcile_interval_ms = 10_000;
    })
    .await;
    let mut inv = InvitationFixture::claimed("UmaInvitation:prompt");
    inv.incentives_status = "PENDING".into();

    // Act
    app.claim(&inv, "evt-prompt").await;

    // Assert
    wait_state(&app, &inv.id, "payout", "succeeded", Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_committed_during_a_slow_pass_is_paid_without_waiting_for_the_interval() {
    // Arrange: passes every 10 s and retries 10 s apart; the first payment
    // hangs until the 1 s request timeout.
    let payments = FakePlatform::start().await;
    payments.fail_next(1, Fault::Hang);
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.reconcile_interval_ms = 10_000;
        a.reconcile.retry_base_ms = 10_000;
        a.reconcile.retry_max_ms = 10_000;
        a.reconcile.request_timeout_ms = 1_000;
    })
    .await;
    let mut slow = InvitationFixture::claimed("UmaInvitation:slow");
    slow.incentives_status = "PENDING".into();
    let mut next = InvitationFixture::claimed("UmaInvitation:during");
    next.incentives_status = "PENDING".into();
    app.claim(&slow, "evt-slow").await;
    let payments_ref = &payments;
    eventually("the slow payment to be in flight", SETTLE, || async move {
        if payments_ref.requests().is_empty() {
            Err("no request yet".to_owned())
        } else {
            Ok(())
        }
    })
    .await;

    // Act: this claim is committed while the pass waits on the platform.
    app.claim(&next, "evt-during").await;

    // Assert
    wait_state(&app, &next.id, "payout", "succeeded", Duration::from_secs(5)).await;
    assert_eq!(app.invitation(&slow.id).await["payout"]["state"], "retry_scheduled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_request_and_outcome_resends_the_same_key() {
    // Arrange: the real binary, and a platform that swallows the first request.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let payments = FakePlatform::start().await;
    payments.fail_next(1, Fault::Hang);
    let env: Vec<(&'static str, String)> = vec![
        ("PAYOUT_URL", payments.url.clone()),
        ("REQUEST_TIMEOUT_MS", "60000".into()),
        ("RECONCILE_INTERVAL_MS", "100".into()),
        ("RETRY_BASE_MS", "20".into()),
        ("RETRY_MAX_MS", "200".into()),
    ];
    let server = ServeProcess::spawn(db.clone(), env.clone()).await;
    let mut inv = InvitationFixture::claimed("UmaInvitation:crash");
    inv.incentives_status = "PENDING".into();
    let client = reqwest::Client::new();
    let body = inv.webhook("evt-crash");
    let resp = post_signed_to(&client, &server.url("/webhooks/lightspark"), body).await;
    assert_eq!(resp.status(), 200);
    let payments_ref = &payments;
    eventually("the payment request to reach the platform", SETTLE, || async move {
        if payments_ref.requests().is_empty() {
            Err("no request yet".to_owned())
        } else {
            Ok(())
        }
    })
    .await;

    // Act: SIGKILL while the call is in flight, then start again.
    server.kill_async().await;
    assert_eq!(count_kind(&db, "payout.requested"), 1, "the intent was durable before the call");
    assert_eq!(count_kind(&db, "payout.succeeded") + count_kind(&db, "payout.failed"), 0);
    let server = ServeProcess::spawn(db.clone(), env).await;

    // Assert
    let url = server.url(&format!("/v1/invitations/{}", inv.id));
    let client_ref = &client;
    let v = eventually("the payment to succeed after the restart", SETTLE, || {
        let url = url.clone();
        async move {
            let v = json_of(client_ref.get(&url)).await?;
            if v["payout"]["state"] == "succeeded" {
                Ok(v)
            } else {
                Err(v["payout"].to_string())
            }
        }
    })
    .await;
    assert_eq!(v["payout"]["attempts"], 2);
    let requests = payments.requests();
    assert_eq!(requests.len(), 2);
    let k = key(&inv.id, ObligationKind::InviteePayment);
    assert!(requests.iter().all(|r| r.idempotency_key.as_deref() == Some(k.as_str())));
    assert_eq!(requests[0].raw_body, requests[1].raw_body);
    assert_eq!(payments.executed().len(), 1);
    assert_eq!(v["payout"]["payment_id"], "pay_1");
    drop(server);
}

/// The bodies of the ledger events of `kind`, as JSON, in seq order.
fn bodies_of(db: &std::path::Path, kind: &str) -> Vec<Value> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT body FROM events WHERE kind = ?1 ORDER BY seq").unwrap();
    let rows = stmt.query_map([kind], |r| r.get::<_, Vec<u8>>(0)).unwrap();
    rows.map(|b| serde_json::from_slice(&b.unwrap()).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_meets_the_first_request_still_processing_gets_409s_then_the_stored_result_and_pays_once() {
    // given a platform that takes 2 s to execute a new payment and keeps
    // processing when the client gives up, and a reconciler that gives up
    // on a request after 500 ms and retries 200–400 ms later
    let payments = FakePlatform::start().await;
    payments.slow_executions(1.0, 1, Duration::from_millis(2000));
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.request_timeout_ms = 500;
        a.reconcile.retry_base_ms = 200;
        a.reconcile.retry_max_ms = 400;
    })
    .await;
    let mut inv = InvitationFixture::claimed("UmaInvitation:in-progress");
    inv.incentives_status = "PENDING".into();

    // when the invitation is claimed
    app.claim(&inv, "evt-in-progress").await;

    // then the payment ends succeeded with the platform's payment id
    let v = wait_state(&app, &inv.id, "payout", "succeeded", SETTLE).await;
    assert_eq!(v["payout"]["payment_id"], "pay_1", "{v}");
    // and the platform executed it once: the first request (answered, at
    // the end of its processing, to a client that had left), one or more
    // retries meeting a 409 meanwhile, and a retry given the stored result
    let requests = payments.requests();
    let answered: Vec<u16> = requests.iter().map(|r| r.answered).collect();
    assert!(requests.len() >= 3, "{answered:?}");
    assert_eq!(answered[0], 200, "{answered:?}");
    assert!(answered[1..answered.len() - 1].iter().all(|s| *s == 409), "{answered:?}");
    assert_eq!(*answered.last().unwrap(), 200, "{answered:?}");
    assert!(requests.iter().all(|r| r.idempotency_key == requests[0].idempotency_key));
    assert!(requests.iter().all(|r| r.raw_body == requests[0].raw_body), "every retry repeats the first body");
    assert_eq!(payments.executed().len(), 1);
    assert_eq!((payments.replays(), payments.conflicts()), (1, requests.len() - 2));
    assert_eq!(v["payout"]["attempts"], requests.len());
    // and the ledger holds exactly one success, carrying the payment id;
    // before it, the timeout and every 409, each rescheduled
    let succeeded = bodies_of(&app.db, "payout.succeeded");
    assert_eq!(succeeded.len(), 1, "{succeeded:?}");
    assert_eq!(succeeded[0]["payment_id"], "pay_1");
    let failed = bodies_of(&app.db, "payout.failed");
    assert_eq!(failed.len(), requests.len() - 1);
    assert!(failed[0]["error"].as_str().unwrap().contains("timed out"), "{}", failed[0]);
    for f in &failed {
        assert_eq!(f["permanent"], false, "{f}");
        assert!(f["next_attempt_at"].is_string(), "rescheduled: {f}");
    }
    assert!(failed[1..].iter().all(|f| f["http_status"] == 409), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_600_mib_answer_is_read_no_further_than_64_kib_so_payments_succeed_fetches_retry_and_memory_stays_bounded() {
    // given a payment platform that executes and answers 200 with 600 MiB,
    // and a Lightspark GraphQL endpoint that answers every fetch with 600 MiB
    const MIB: u64 = 1024 * 1024;
    let payments = FakePlatform::start().await;
    payments.fail_next(1, Fault::ExecuteThenHugeAnswer(600 * MIB));
    let graphql = FakePlatform::start().await;
    graphql.fail_next(1000, Fault::HugeAnswer(600 * MIB));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let env: Vec<(&'static str, String)> = vec![
        ("PAYOUT_URL", payments.url.clone()),
        ("LIGHTSPARK_API_URL", graphql.url_for("/graphql/server/2023-09-13")),
        ("LIGHTSPARK_API_CLIENT_ID", "client-id".into()),
        ("LIGHTSPARK_API_CLIENT_SECRET", "client-secret-for-tests".into()),
        ("RECONCILE_INTERVAL_MS", "100".into()),
        ("RETRY_BASE_MS", "50".into()),
        ("RETRY_MAX_MS", "200".into()),
    ];
    let server = ServeProcess::spawn(db.clone(), env).await;
    let client = reqwest::Client::new();
    let mut paid = InvitationFixture::claimed("UmaInvitation:huge-answer");
    paid.incentives_status = "PENDING".into();
    let fetched = "UmaInvitation:huge-graphql";

    // when a claimed invitation is paid, and another must be fetched
    for body in [paid.webhook("evt-huge-answer"), crate::support::claimed_body("evt-huge-graphql", fetched)] {
        let r = post_signed_to(&client, &server.url("/webhooks/lightspark"), body).await;
        assert_eq!(r.status(), 200);
    }
    let get = |id: &str| {
        let url = server.url(&format!("/v1/invitations/{}", id.replace(':', "%3A")));
        let client = client.clone();
        async move {
            let r = client.get(&url).send().await.map_err(|e| e.to_string())?;
            r.json::<Value>().await.map_err(|e| e.to_string())
        }
    };

    // then the payment is succeeded on the status alone: its payment id lies
    // beyond the 64 KiB read, and nothing was sent again
    let v = eventually("the payment to succeed", SETTLE, || async {
        let v = get(&paid.id).await?;
        if v["payout"]["state"] == "succeeded" {
            Ok(v)
        } else {
            Err(v["payout"].to_string())
        }
    })
    .await;
    assert!(v["payout"]["payment_id"].is_null(), "{v}");
    assert_eq!(v["payout"]["attempts"], 1);
    assert_eq!(payments.executed().len(), 1);
    assert_eq!(payments.requests().len(), 1);
    assert_eq!(count_kind(&db, "payout.succeeded"), 1);
    // and the fetch fails on the answer's size, and is retried: failures
    // that may pass are metered, not recorded in the ledger
    let failed_fetches = eventually("the fetch to fail three times", SETTLE, || async {
        let text = client.get(server.url("/metrics")).send().await.map_err(|e| e.to_string())?.text().await.unwrap();
        let n: u64 = text
            .lines()
            .find(|l| {
                l.starts_with("invitation_ledger_fetches_total{")
                    && l.contains("outcome=\"error\"")
                    && l.contains("source=\"lightspark\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0);
        if n >= 3 {
            Ok(n)
        } else {
            Err(format!("{n} failed fetches"))
        }
    })
    .await;
    assert!(graphql.requests().len() as u64 >= failed_fetches);
    let v = get(fetched).await.unwrap();
    assert_eq!(v["fetch"]["wanted"], true, "{v}");
    assert_eq!(v["fetch"]["state"], "pending", "{v}");
    assert_eq!(count_kind(&db, "invitation.fetch_failed"), 0);
    assert_eq!(count_kind(&db, "invitation.fetched"), 0);
    // and the service never held much of any answer
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    eprintln!("service peak RSS (VmHWM): {} MiB", hwm_kib / 1024);
    assert!(hwm_kib < 100 * 1024, "peak RSS {hwm_kib} KiB while 600 MiB answers were offered");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_paid_as_soon_as_they_are_folded_not_at_the_next_interval() {
    // Given a reconciler whose safety-net interval is a minute, and a burst
    // of claims arriving while it works (its passes race the projector)
    let payments = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.reconcile_interval_ms = 60_000;
    })
    .await;
    let claims: Vec<InvitationFixture> =
        (0..200).map(|i| InvitationFixture::claimed(&format!("UmaInvitation:prompt-{i:03}"))).collect();
    let app_ref = &app;
    futures_util::future::join_all(claims.iter().map(|f| async move {
        app_ref.claim(f, &format!("evt-prompt-{}", f.id)).await;
    }))
    .await;
    // When a late claim comes after the burst
    let late = InvitationFixture::claimed("UmaInvitation:prompt-late");
    app.claim(&late, "evt-prompt-late").await;
    // Then every invitee is paid long before the interval could have passed
    let expected: BTreeSet<String> =
        claims.iter().chain([&late]).map(|f| key(&f.id, ObligationKind::InviteePayment)).collect();
    let payments_ref = &payments;
    let expected_ref = &expected;
    eventually("every claim paid without waiting for the interval", Duration::from_secs(10), || async move {
        let paid: BTreeSet<String> = payments_ref.executed().into_iter().map(|(k, _)| k).collect();
        let missing = expected_ref.difference(&paid).count();
        if missing == 0 {
            Ok(())
        } else {
            Err(format!("{missing} of {} not paid yet", expected_ref.len()))
        }
    })
    .await;
}
