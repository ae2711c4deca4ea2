//! Fetching as the normal path: real deliveries usually carry no invitation
//! (the official SDKs parse only the envelope), so the service fetches it,
//! again while it can still change what is owed, and pays once it knows.
//! Against the fake Lightspark API behaving like the real one: lagging the
//! webhook, assessing the incentive after the claim, answering `{}` for an
//! id of another entity type.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_lightspark::{aliased_entity, plain_entity, FakeLightspark};
use crate::support::fake_platform::FakePlatform;
use crate::support::{claimed_body, ledger_rows, TestApp};

const CLIENT_ID: &str = "fetch-client-id";
const CLIENT_SECRET: &str = "fetch-client-secret-long-enough";
const SETTLE: Duration = Duration::from_secs(20);

/// A service that fetches from `api`, pays through `payments` and forwards
/// a 100 USD incentive; retries start at 20 ms.
async fn app(api: &FakeLightspark, payments: &FakePlatform, horizon: &str) -> TestApp {
    let (url, horizon) = (payments.url.clone(), horizon.to_owned());
    let api_url = api.url.clone();
    TestApp::spawn_configured(move |a| {
        a.reconcile.lightspark_api_url = api_url;
        a.reconcile.lightspark_api_client_id = Some(CLIENT_ID.into());
        a.reconcile.lightspark_api_client_secret = Some(CLIENT_SECRET.into());
        a.reconcile.payout_url = Some(url);
        a.reconcile.inviter_incentive = Some("100:USD".into());
        a.reconcile.fetch_horizon = horizon;
    })
    .await
}

fn kinds(app: &TestApp) -> Vec<String> {
    ledger_rows(&app.db).into_iter().map(|r| r.2).collect()
}

#[tokio::test]
async fn a_claim_whose_first_fetch_finds_nothing_is_paid_once_the_api_knows_it() {
    // given an API that lags the webhook: it answers `entity: null` first
    let (api, payments) = (FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await, FakePlatform::start().await);
    let id = "UmaInvitation:lagging";
    api.set_answers(
        id,
        vec![
            Value::Null,
            plain_entity(id, "LAG1", "CLAIMED", "INELIGIBLE", Some((1500, "JPY", 0)), Some("$bob@b.example")),
        ],
    );
    let app = app(&api, &payments, "7d").await;
    // when the claim arrives without its invitation
    assert_eq!(app.post_signed(&claimed_body("ev-lag", id)).await.status(), 200);
    // then it is fetched again and paid once the API knows it, with the
    // currency's decimals as the API gave them
    let v = app.invitation_when(id, SETTLE, |v| v["payout"]["state"] == "succeeded").await;
    assert_eq!(v["fetch"]["state"], "fetched");
    assert_eq!(v["inviter_first_name"], "Alice");
    let requests = payments.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["amount"], json!({"value": 1500, "currency": "JPY", "decimals": 0}));
    assert_eq!(requests[0].body["receiver_uma"], "$bob@b.example");
    // and the ledger holds both answers, each once
    let fetched = kinds(&app).iter().filter(|k| *k == "invitation.fetched").count();
    assert_eq!(fetched, 2, "{:?}", kinds(&app));
}

#[tokio::test]
async fn an_incentive_validated_after_the_first_fetch_is_forwarded_and_fetching_then_stops() {
    // given an API that assesses the incentive after the claim
    let (api, payments) = (FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await, FakePlatform::start().await);
    let id = "UmaInvitation:late-incentive";
    let pending = aliased_entity(id, "LATE1", "CLAIMED", "PENDING", None, Some("$bob@b.example"));
    let mut validated = aliased_entity(id, "LATE1", "CLAIMED", "VALIDATED", None, Some("$bob@b.example"));
    validated["uma_invitation_updated_at"] = json!("2026-11-01T13:00:00+00:00");
    api.set_answers(id, vec![pending.clone(), pending, validated]);
    let app = app(&api, &payments, "7d").await;
    // when the claim arrives without its invitation
    assert_eq!(app.post_signed(&claimed_body("ev-late", id)).await.status(), 200);
    // then the incentive is forwarded once Lightspark validates it
    let v = app.invitation_when(id, SETTLE, |v| v["incentive"]["state"] == "succeeded").await;
    assert_eq!(v["incentives_status"], "VALIDATED");
    assert_eq!(v["fetch"]["wanted"], false, "final: nothing left to learn");
    // and once final, nothing more is fetched
    let calls = api.calls_for(id);
    assert_eq!(calls, 3, "pending, pending, validated");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(api.calls_for(id), calls);
    // only the answers that changed are in the ledger
    let fetched = kinds(&app).iter().filter(|k| *k == "invitation.fetched").count();
    assert_eq!(fetched, 2, "the second PENDING answer was the same as the first");
}

#[tokio::test]
async fn nothing_more_is_fetched_past_the_horizon() {
    // given an invitation whose incentive Lightspark never decides, and a
    // horizon of 1.5 s after its first event
    let (api, payments) = (FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await, FakePlatform::start().await);
    let id = "UmaInvitation:undecided";
    api.set_invitation(id, aliased_entity(id, "UND1", "CLAIMED", "PENDING", None, Some("$bob@b.example")));
    let app = app(&api, &payments, "1500ms").await;
    // when its claim arrives without data
    assert_eq!(app.post_signed(&claimed_body("ev-undecided", id)).await.status(), 200);
    // then it is fetched again and again within the horizon...
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let within = api.calls_for(id);
    assert!(within >= 3, "fetched {within} times within the horizon");
    // ...and not after it
    tokio::time::sleep(Duration::from_millis(600)).await;
    let settled = api.calls_for(id);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(api.calls_for(id), settled, "no fetch past the horizon");
    let v = app.invitation(id).await;
    assert_eq!(v["fetch"]["wanted"], true, "still undecided; only the horizon stops it");
    assert_eq!(v["incentive"]["state"], "not_due", "never validated");
}

#[tokio::test]
async fn an_id_of_another_entity_type_is_recorded_once_and_never_fetched_again() {
    // given an id that names a wallet, not an invitation
    let (api, payments) = (FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await, FakePlatform::start().await);
    let id = "Wallet:not-an-invitation";
    api.set_other_entity(id);
    let app = app(&api, &payments, "7d").await;
    // when a claim names it
    assert_eq!(app.post_signed(&claimed_body("ev-wallet", id)).await.status(), 200);
    // then the failure is recorded once, and nothing more is asked
    let v = app.invitation_when(id, SETTLE, |v| v["fetch"]["state"] == "failed").await;
    assert!(v["fetch"]["last_error"].as_str().is_some_and(|e| e.contains("UmaInvitation")), "{v}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(api.calls_for(id), 1);
    assert_eq!(kinds(&app).iter().filter(|k| *k == "invitation.fetch_failed").count(), 1);
}

#[tokio::test]
async fn a_signed_body_that_is_the_invitation_itself_is_stored_and_paid() {
    // given a service that pays, and a body that is the invitation object
    // itself, as Lightspark's documentation describes the webhook
    let (api, payments) = (FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await, FakePlatform::start().await);
    let app = app(&api, &payments, "7d").await;
    let id = "UmaInvitation:bare";
    let body = json!({"id": id, "code": "BARE1", "inviter_uma": "$alice@a.example", "invitee_uma": "$bob@b.example",
                      "status": "CLAIMED", "incentives_status": "INELIGIBLE",
                      "payment_amount": {"value": 250, "currency": {"code": "USD", "decimals": 2}},
                      "updated_at": "2026-11-01T12:00:00+00:00"})
    .to_string();
    // when it is posted, signed
    let resp = app.post_signed(&body).await;
    assert_eq!(resp.status(), 200);
    // then it is kept under a key of its bytes, and paid
    let v = app.invitation_when(id, SETTLE, |v| v["payout"]["state"] == "succeeded").await;
    assert_eq!(v["payout"]["requested"]["amount"], json!({"value": 250, "currency": "USD", "decimals": 2}));
    let keys: Vec<String> = ledger_rows(&app.db).into_iter().map(|r| r.1).collect();
    assert!(keys[0].starts_with("lightspark-body:"), "{keys:?}");
    assert_eq!(api.calls(), 0, "its data came with it: nothing to fetch");
}

#[tokio::test]
async fn the_graphql_calls_one_invitation_costs_from_claim_to_final() {
    // given an API that lags once, then shows the incentive pending twice,
    // then validated (retries start at 20 ms, as in production at 1 s)
    let (api, payments) = (FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await, FakePlatform::start().await);
    let id = "UmaInvitation:costed";
    let pending = aliased_entity(id, "COST1", "CLAIMED", "PENDING", Some((500, "USD")), Some("$bob@b.example"));
    let mut validated = pending.clone();
    validated["uma_invitation_incentives_status"] = json!("VALIDATED");
    validated["uma_invitation_updated_at"] = json!("2026-11-01T13:00:00+00:00");
    api.set_answers(id, vec![Value::Null, pending.clone(), pending, validated]);
    let app = app(&api, &payments, "7d").await;
    // when its claim arrives, then a second delivery of it
    assert_eq!(app.post_signed(&claimed_body("ev-cost", id)).await.status(), 200);
    app.invitation_when(id, SETTLE, |v| v["incentive"]["state"] == "succeeded").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // then it cost one call per answer until final, and none after
    eprintln!("GraphQL calls from claim to final: {}", api.calls_for(id));
    assert_eq!(api.calls_for(id), 4);
    assert_eq!(payments.executed().len(), 2, "the payout and the incentive, once each");
}

#[tokio::test]
async fn an_operator_refetches_one_invitation_now_and_the_answer_is_in_the_trail() {
    // given an invitation fetched and settled while the service runs
    let (api, payments) = (FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await, FakePlatform::start().await);
    let id = "UmaInvitation:refetched";
    api.set_invitation(id, aliased_entity(id, "REF1", "CLAIMED", "INELIGIBLE", None, Some("$bob@b.example")));
    let app = app(&api, &payments, "7d").await;
    assert_eq!(app.post_signed(&claimed_body("ev-refetch", id)).await.status(), 200);
    app.invitation_when(id, SETTLE, |v| v["fetch"]["state"] == "fetched").await;
    let before = api.calls_for(id);
    // when an operator refetches it by code, beside the running service
    let db = app.db.to_str().unwrap().to_owned();
    let env = [
        ("LEDGER_DB", db.as_str()),
        ("LIGHTSPARK_API_URL", api.url.as_str()),
        ("LIGHTSPARK_API_CLIENT_ID", CLIENT_ID),
        ("LIGHTSPARK_API_CLIENT_SECRET", CLIENT_SECRET),
    ];
    let out = crate::support::binary::run_binary(&["refetch", "REF1", "--note", "checking a complaint"], &env).await;
    // then the source is asked at once, and the answer is recorded with
    // the operator's note even though it did not change
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(api.calls_for(id), before + 1);
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    let note: String = conn
        .query_row(
            "SELECT json_extract(body, '$.operator_note') FROM events WHERE kind = 'invitation.fetched' ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(note, "checking a complaint");
    // and without credentials it says what to set
    let out = crate::support::binary::run_binary(&["refetch", "REF1"], &[("LEDGER_DB", db.as_str())]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LIGHTSPARK_API_CLIENT_ID"));
}
