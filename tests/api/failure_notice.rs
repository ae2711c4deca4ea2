//! The fourth obligation, `inviter_failure_notice`: when the invitee's
//! payment fails for good, the inviter is told once, with the reason,
//! through the notification endpoint and its exactly-once protocol, also
//! across a crash of the real binary, on either ledger store.

use std::path::PathBuf;
use std::time::Duration;

use invitation_ledger::projection::events::{IdempotencyKey, ObligationKind};
use serde_json::json;

use crate::support::binary::ServeProcess;
use crate::support::fake_platform::{FakePlatform, Fault, RecordedRequest};
use crate::support::postgres::fresh_database;
use crate::support::{eventually, json_of, post_signed_to, InvitationFixture, TestApp};

const SETTLE: Duration = Duration::from_secs(20);

const KIND: &str = "invitee_payment_failed";

/// The requests the notification endpoint received for the failure notice.
fn notices(notify: &FakePlatform) -> Vec<RecordedRequest> {
    notify.requests().into_iter().filter(|r| r.body["kind"] == KIND).collect()
}

fn refused_claim(id: &str) -> InvitationFixture {
    let mut inv = InvitationFixture::claimed(id);
    inv.incentives_status = "PENDING".into();
    inv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_refused_for_good_tells_the_inviter_once_with_the_reason() {
    // given a platform that refuses the payment with a 400 and a working
    // notification endpoint
    let payments = FakePlatform::start().await;
    payments.fail_next(1, Fault::Status(400));
    let notify = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.notify_url = Some(notify.url_for("/notify"));
    })
    .await;
    let inv = refused_claim("UmaInvitation:refused-notice");

    // when the invitation is claimed
    app.claim(&inv, "evt-refused-notice").await;

    // then the payment fails and the inviter is told, with the reason
    let v = app.invitation_when(&inv.id, SETTLE, |v| v["failure_notice"]["state"] == "succeeded").await;
    assert_eq!(v["payout"]["state"], "failed");
    let reason = v["payout"]["last_error"].as_str().expect("the refusal is kept").to_owned();
    let key = IdempotencyKey::of(&inv.id, ObligationKind::InviterFailureNotice).to_string();
    assert_eq!(v["failure_notice"]["idempotency_key"], key.as_str());
    assert_eq!(v["failure_notice"]["attempts"], 1);
    assert_eq!(v["failure_notice"]["requested"]["receiver_uma"], inv.inviter_uma.as_str());
    let sent = notices(&notify);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].idempotency_key.as_deref(), Some(key.as_str()));
    assert_eq!(
        sent[0].body,
        json!({"idempotency_key": key, "kind": KIND, "invitation_id": inv.id,
               "inviter_uma": inv.inviter_uma, "invitee_uma": inv.invitee_uma, "reason": reason})
    );
    // and later passes, each proven by a payment they made, send nothing more
    for n in 0..2 {
        let control = refused_claim(&format!("UmaInvitation:notice-control-{n}"));
        app.claim(&control, &format!("evt-notice-control-{n}")).await;
        app.invitation_when(&control.id, SETTLE, |v| v["payout"]["state"] == "succeeded").await;
    }
    assert_eq!(notices(&notify).len(), 1);
    assert_eq!(app.invitation(&inv.id).await["failure_notice"]["attempts"], 1);
    // and the metrics count it
    let metrics = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"invitation_ledger_obligations{kind="inviter_failure_notice",state="succeeded"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_invitation_tells_the_inviter_of_no_failure() {
    // given a platform that pays
    let payments = FakePlatform::start().await;
    let notify = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.notify_url = Some(notify.url_for("/notify"));
    })
    .await;
    let inv = refused_claim("UmaInvitation:paid-no-notice");

    // when the invitation is claimed and paid
    app.claim(&inv, "evt-paid-no-notice").await;
    let v = app
        .invitation_when(&inv.id, SETTLE, |v| {
            v["payout"]["state"] == "succeeded" && v["notification"]["state"] == "succeeded"
        })
        .await;

    // then no failure notice is owed, and none was sent
    assert_eq!(v["failure_notice"]["state"], "not_due");
    assert!(notices(&notify).is_empty());
}

/// The kinds of the ledger's events, through the read API: the same
/// question on either store.
async fn kinds(server: &ServeProcess) -> Vec<String> {
    let v = json_of(reqwest::Client::new().get(server.url("/v1/ledger/events?limit=500"))).await.unwrap();
    v["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

/// Claims an invitation whose payment the platform refuses, SIGKILLs the
/// real binary while the failure notice is in flight, starts it again, and
/// checks the inviter was told exactly once under one key and one body.
async fn a_crash_mid_notice_is_resent_with_the_same_key(ledger: PathBuf, extra: Vec<(&'static str, String)>) {
    // given the real binary, a platform that refuses the payment, and a
    // notification endpoint that swallows the first failure notice
    let payments = FakePlatform::start().await;
    payments.fail_next(1, Fault::Status(400));
    let notify = FakePlatform::start().await;
    notify.fail_next_of_kind(KIND, 1, Fault::Hang);
    let mut env: Vec<(&'static str, String)> = vec![
        ("PAYOUT_URL", payments.url.clone()),
        ("NOTIFY_URL", notify.url_for("/notify")),
        ("REQUEST_TIMEOUT_MS", "60000".into()),
        ("RECONCILE_INTERVAL_MS", "100".into()),
        ("RETRY_BASE_MS", "20".into()),
        ("RETRY_MAX_MS", "200".into()),
    ];
    env.extend(extra);
    let server = ServeProcess::spawn(ledger.clone(), env.clone()).await;
    let inv = refused_claim("UmaInvitation:notice-crash");
    let client = reqwest::Client::new();
    let resp = post_signed_to(&client, &server.url("/webhooks/lightspark"), inv.webhook("evt-notice-crash")).await;
    assert_eq!(resp.status(), 200);
    let notify_ref = &notify;
    eventually("the failure notice to reach the endpoint", SETTLE, || async move {
        if notices(notify_ref).is_empty() {
            Err("no failure notice yet".to_owned())
        } else {
            Ok(())
        }
    })
    .await;

    // when the service is killed while the notice is in flight (its
    // request read back from the ledger, which the read side may show a
    // moment late), and started again
    let server_ref = &server;
    let before = eventually("the notice's request to read back", SETTLE, || async move {
        let kinds = kinds(server_ref).await;
        if count(&kinds, "failure_notice.requested") > 0 {
            Ok(kinds)
        } else {
            Err(format!("{kinds:?}"))
        }
    })
    .await;
    server.kill_async().await;
    assert_eq!(count(&before, "failure_notice.requested"), 1, "the intent was durable before the call");
    assert_eq!(count(&before, "failure_notice.succeeded") + count(&before, "failure_notice.failed"), 0);
    let server = ServeProcess::spawn(ledger, env).await;

    // then the notice is sent again under the same key and body, and told once
    let url = server.url(&format!("/v1/invitations/{}", inv.id));
    let client_ref = &client;
    let v = eventually("the failure notice to succeed after the restart", SETTLE, || {
        let url = url.clone();
        async move {
            let v = json_of(client_ref.get(&url)).await?;
            if v["failure_notice"]["state"] == "succeeded" {
                Ok(v)
            } else {
                Err(v["failure_notice"].to_string())
            }
        }
    })
    .await;
    assert_eq!(v["payout"]["state"], "failed");
    assert_eq!(v["failure_notice"]["attempts"], 2);
    let sent = notices(&notify);
    assert_eq!(sent.len(), 2);
    let key = IdempotencyKey::of(&inv.id, ObligationKind::InviterFailureNotice).to_string();
    assert!(sent.iter().all(|r| r.idempotency_key.as_deref() == Some(key.as_str())));
    assert_eq!(sent[0].raw_body, sent[1].raw_body);
    assert_eq!(sent[0].body["reason"], v["payout"]["last_error"]);
    let told: Vec<_> = notify.executed().into_iter().filter(|(_, body)| body["kind"] == KIND).collect();
    assert_eq!(told.len(), 1, "the inviter is told exactly once");
    assert_eq!(count(&kinds(&server).await, "failure_notice.succeeded"), 1);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_the_inviter_is_told_resends_the_same_notice_once_on_a_sqlite_ledger() {
    let dir = tempfile::tempdir().unwrap();
    a_crash_mid_notice_is_resent_with_the_same_key(dir.path().join("ledger.db"), Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_the_inviter_is_told_resends_the_same_notice_once_on_a_postgresql_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database().await;
    let extra = vec![("PROJECTIONS_DIR", dir.path().display().to_string())];
    a_crash_mid_notice_is_resent_with_the_same_key(PathBuf::from(url), extra).await;
}
