//! Answers about the invitation asked, and receivers that can be paid,
//! through the real listener: a fetched answer about another invitation
//! (or about none) is refused, recorded and asked again, never merged or
//! paid; an invitee UMA that is not a well-formed address is never sent.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_lightspark::{aliased_entity, FakeLightspark};
use crate::support::fake_platform::FakePlatform;
use crate::support::{claimed_body, eventually, TestApp};

const CLIENT_ID: &str = "identity-client-id";
const CLIENT_SECRET: &str = "identity-client-secret-long-enough";
const SETTLE: Duration = Duration::from_secs(20);

/// A service that fetches from `api` and pays through `payments`; retries
/// start at 20 ms.
async fn app(api: &FakeLightspark, payments: &FakePlatform) -> TestApp {
    let (api_url, payout_url) = (api.url.clone(), payments.url.clone());
    TestApp::spawn_configured(move |a| {
        a.reconcile.lightspark_api_url = api_url;
        a.reconcile.lightspark_api_client_id = Some(CLIENT_ID.into());
        a.reconcile.lightspark_api_client_secret = Some(CLIENT_SECRET.into());
        a.reconcile.payout_url = Some(payout_url);
    })
    .await
}

/// The `(reason, event_key)` of every `invitation.fetch_failed` of `stream`.
fn fetch_failures(app: &TestApp, stream: &str) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT json_extract(body, '$.reason'), event_key FROM events \
             WHERE kind = 'invitation.fetch_failed' AND stream = ?1 ORDER BY seq",
        )
        .unwrap();
    let rows = stmt.query_map([stream], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

/// The value of one `invitation_ledger_fetches_total` series, 0 when absent.
async fn fetches_counted(app: &TestApp, source: &str, outcome: &str) -> u64 {
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| {
            l.starts_with("invitation_ledger_fetches_total{")
                && l.contains(&format!("outcome=\"{outcome}\""))
                && l.contains(&format!("source=\"{source}\""))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Mallory's invitation: another id, another invitee, another amount.
fn about_another_invitation() -> Value {
    aliased_entity(
        "UmaInvitation:mallory",
        "MAL1",
        "CLAIMED",
        "VALIDATED",
        Some((99_999, "USD")),
        Some("$mallory@evil.example"),
    )
}

#[tokio::test]
async fn a_fetched_answer_about_another_invitation_or_none_is_refused_recorded_retried_and_never_paid() {
    // given an API that answers, for X, Mallory's invitation once, then the
    // same fields with no id at all, from then on
    let (api, payments) = (FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await, FakePlatform::start().await);
    let id = "UmaInvitation:asked";
    let other = about_another_invitation();
    let mut no_id = other.clone();
    no_id.as_object_mut().unwrap().remove("uma_invitation_id");
    api.set_answers(id, vec![other, no_id]);
    let app = app(&api, &payments).await;

    // when a claim of X arrives without its invitation
    assert_eq!(app.post_signed(&claimed_body("ev-identity", id)).await.status(), 200);

    // then each distinct wrong answer is recorded once as a fetch failure
    // with reason identity_mismatch, while X is asked again on its schedule
    let failures = eventually("two refused answers and more fetches", SETTLE, || async {
        let failures = fetch_failures(&app, id);
        match (failures.len(), api.calls_for(id)) {
            (2, calls) if calls >= 4 => Ok(failures),
            (n, calls) => Err(format!("{n} fetch failures recorded after {calls} fetches: {failures:?}")),
        }
    })
    .await;
    for (reason, key) in &failures {
        assert_eq!(reason, "identity_mismatch", "{failures:?}");
        assert!(key.starts_with("lightspark-fetch:UmaInvitation:asked:identity_mismatch:"), "{key}");
    }
    assert_ne!(failures[0].1, failures[1].1, "two distinct answers, two keys");
    assert_eq!(fetch_failures(&app, id).len(), 2, "the same wrong answer again adds nothing");
    // and every refused answer is counted
    let counted = fetches_counted(&app, "lightspark", "identity_mismatch").await;
    assert!(counted >= 3, "{counted} fetches counted as identity_mismatch");
    assert_eq!(fetches_counted(&app, "lightspark", "changed").await, 0);
    // and nothing of the answers is merged: X is still a claim without data
    let v = app.invitation(id).await;
    assert_eq!(v["invitee_uma"], Value::Null, "{v:#}");
    assert_eq!(v["payment_amount"], Value::Null, "{v:#}");
    assert_eq!(v["code"], Value::Null, "{v:#}");
    assert_eq!(v["incentives_status"], Value::Null, "{v:#}");
    assert_eq!(v["fetch"]["state"], "pending", "{v:#}");
    assert_eq!(v["fetch"]["wanted"], true, "not a permanent failure: {v:#}");
    assert!(v["fetch"]["last_error"].as_str().is_some_and(|e| e.contains("UmaInvitation:asked")), "{v:#}");
    assert_eq!(v["payout"]["state"], "not_due", "{v:#}");
    let kinds: Vec<&str> = v["anomalies"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"identity_mismatch"), "{v:#}");
    // and the platform is never called
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(payments.requests().is_empty(), "{:?}", payments.requests());
}

#[tokio::test]
async fn after_a_wrong_answer_the_right_one_is_merged_and_paid_to_its_own_invitee() {
    // given an API that first answers Mallory's invitation for X, then X's own
    let (api, payments) = (FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await, FakePlatform::start().await);
    let id = "UmaInvitation:asked-twice";
    let own = aliased_entity(id, "OWN1", "CLAIMED", "INELIGIBLE", Some((500, "USD")), Some("$bob@b.example"));
    api.set_answers(id, vec![about_another_invitation(), own]);
    let app = app(&api, &payments).await;
    // when a claim of X arrives without its invitation
    assert_eq!(app.post_signed(&claimed_body("ev-identity-2", id)).await.status(), 200);
    // then X is paid, once, to its own invitee and amount
    let v = app.invitation_when(id, SETTLE, |v| v["payout"]["state"] == "succeeded").await;
    assert_eq!(v["invitee_uma"], "$bob@b.example");
    assert_eq!((v["fetch"]["state"].as_str(), &v["fetch"]["last_error"]), (Some("fetched"), &Value::Null), "{v:#}");
    let paid: Vec<Value> =
        payments.requests().into_iter().filter(|r| r.body["kind"] == "invitee_payment").map(|r| r.body).collect();
    assert_eq!(paid.len(), 1, "{paid:?}");
    assert_eq!(paid[0]["receiver_uma"], "$bob@b.example");
    assert_eq!(paid[0]["amount"], json!({"value": 500, "currency": "USD", "decimals": 2}));
    // and the refused answer stays in the ledger as what it was
    assert_eq!(fetch_failures(&app, id).len(), 1);
    assert!(payments.requests().iter().all(|r| !r.body.to_string().contains("mallory")));
}

#[tokio::test]
async fn an_invitee_uma_with_a_bidi_override_is_never_sent_and_shows_invalid() {
    // given a service that pays, and a claim whose invitee UMA carries a
    // right-to-left override (it would display as another address)
    let (api, payments) = (FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await, FakePlatform::start().await);
    let app = app(&api, &payments).await;
    let id = "UmaInvitation:bidi";
    let data = json!({"id": id, "code": "BIDI1", "status": "CLAIMED", "incentives_status": "INELIGIBLE",
        "inviter_uma": "$alice@a.example", "invitee_uma": "$bob\u{202E}elpmaxe.live@b.example",
        "payment_amount": {"value": 500, "currency": {"code": "USD", "decimals": 2}},
        "updated_at": "2026-11-01T12:00:00+00:00"});
    let body = json!({"event_type": "UMA_INVITATION_CLAIMED", "event_id": "ev-bidi",
        "timestamp": "2026-11-01T12:00:01+00:00", "entity_id": id, "data": data})
    .to_string();
    // when it arrives
    assert_eq!(app.post_signed(&body).await.status(), 200);
    // then the payment is invalid, for that reason
    let v = app.invitation_when(id, SETTLE, |v| v["last_seq"] == 1).await;
    assert_eq!(v["payout"]["state"], "invalid", "{v:#}");
    assert_eq!(v["payout"]["reason"], "malformed_receiver", "{v:#}");
    assert_eq!(v["payout"]["idempotency_key"], Value::Null, "{v:#}");
    // and after several reconciler passes nothing was sent
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(payments.requests().is_empty(), "{:?}", payments.requests());
    // and the invitation's page shows the address escaped and marked
    let page = app.client.get(app.url("/invitations/BIDI1")).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains('\u{202E}'), "the override reached the page");
    assert!(page.contains("U+202E"), "the override is not shown");
    assert!(page.contains("malformed"), "no mark on the malformed address");
}
