//! Cancelling an invitation through the service (`POST
//! /v1/invitations/{id or code}/cancel`): Lightspark's
//! `cancel_uma_invitation` is called and its answer recorded; a cancelled
//! invitation is never paid, whatever arrives later.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_lightspark::FakeLightspark;
use crate::support::fake_platform::FakePlatform;
use crate::support::{ledger_len, ledger_rows, InvitationFixture, TestApp};

const CLIENT_ID: &str = "cancel-client-id";
const CLIENT_SECRET: &str = "cancel-client-secret-long-enough";

async fn app(api: &FakeLightspark, payments: &FakePlatform) -> TestApp {
    let (api_url, pay) = (api.url.clone(), payments.url.clone());
    TestApp::spawn_configured(move |a| {
        a.reconcile.lightspark_api_url = api_url;
        a.reconcile.lightspark_api_client_id = Some(CLIENT_ID.into());
        a.reconcile.lightspark_api_client_secret = Some(CLIENT_SECRET.into());
        a.reconcile.payout_url = Some(pay);
        a.reconcile.reconcile_interval_ms = 100;
    })
    .await
}

async fn post(app: &TestApp, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.client.post(app.url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The kinds of the cancellation events in the ledger, in order (the
/// sweep's fetches come between them and the creation).
fn cancel_kinds(app: &TestApp) -> Vec<String> {
    ledger_rows(&app.db).into_iter().map(|r| r.2).filter(|k| k.starts_with("invitation.cancel")).collect()
}

async fn created(app: &TestApp) -> (String, String) {
    let body = json!({"source": "lightspark", "inviter_uma": "$alice@vasp-a.example",
                      "amount": {"value": 500, "currency": "USD"}, "expires_at": "2099-12-31T00:00:00Z"});
    let (status, v) = post(app, "/v1/invitations", Some(body)).await;
    assert_eq!(status, 201, "{v}");
    (v["invitation_id"].as_str().unwrap().to_owned(), v["code"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_cancelled_before_its_claim_is_never_paid_whatever_arrives_later() {
    // given an invitation of 500 USD created through the service
    let api = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let payments = FakePlatform::start().await;
    let app = app(&api, &payments).await;
    let (id, code) = created(&app).await;

    // when it is cancelled by its code
    let (status, v) = post(&app, &format!("/v1/invitations/{code}/cancel"), None).await;

    // then Lightspark was asked to cancel it, and it reads back cancelled
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "CANCELLED");
    // (the sweep may fetch the invitation meanwhile: a fetch decided while
    // it was still pending can reach Lightspark after the cancellation)
    let asked = api.requests();
    let cancels: Vec<_> =
        asked.iter().filter(|r| r["query"].as_str().unwrap().contains("cancel_uma_invitation(input:")).collect();
    assert_eq!(cancels.len(), 1, "{asked:?}");
    let cancel = cancels[0];
    assert_eq!(cancel["variables"]["invite_code"], code.as_str());
    assert_eq!(cancel_kinds(&app), ["invitation.cancel_requested", "invitation.cancelled"]);

    // when a claim of it arrives later, newer than the cancellation
    let mut late = InvitationFixture::claimed(&id);
    late.code = code.clone();
    late.payment_amount = Some(500);
    late.updated_at = "2099-01-01T00:00:00.000000+00:00".into();
    assert_eq!(app.post_signed(&late.webhook("evt-late-claim")).await.status(), 200);

    // then it is still owed nothing
    let v = app.invitation_when(&id, Duration::from_secs(10), |v| v["invitee_uma"].is_string()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v2 = app.invitation(&id).await;
    assert_eq!(v2["payout"]["state"], "not_due", "{v}");
    assert_eq!(v2["payout"]["reason"], "cancelled");
    assert!(payments.requests().is_empty());
}

#[tokio::test]
async fn cancelling_an_unknown_invitation_answers_404_and_sends_nothing() {
    let api = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let payments = FakePlatform::start().await;
    let app = app(&api, &payments).await;
    let (status, v) = post(&app, "/v1/invitations/NOPE/cancel", None).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"], "not_found");
    assert_eq!(api.calls(), 0);
    assert_eq!(ledger_len(&app.db), 0);
}

#[tokio::test]
async fn a_cancel_the_source_refuses_answers_409_and_is_recorded() {
    // given an invitation Lightspark no longer lets cancel (claimed meanwhile)
    let api = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let payments = FakePlatform::start().await;
    let app = app(&api, &payments).await;
    let (id, code) = created(&app).await;
    api.refuse_next_cancel();

    // when it is cancelled
    let (status, v) = post(&app, &format!("/v1/invitations/{id}/cancel"), None).await;

    // then the refusal is said plainly, and recorded
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"], "source_refused");
    assert!(v["message"].as_str().unwrap().contains(&code) || v["message"].as_str().unwrap().contains(&id), "{v}");
    assert_eq!(cancel_kinds(&app), ["invitation.cancel_requested", "invitation.cancel_failed"]);
    assert_eq!(app.invitation(&id).await["status"], "PENDING");
}

#[tokio::test]
async fn a_grid_invitation_is_created_and_cancelled_at_grid_and_a_claimed_one_is_refused_plainly() {
    // given a service with Grid API credentials
    let grid = crate::support::fake_grid::FakeGrid::start("grid-token-id", "grid-secret-long-enough").await;
    let grid_url = grid.url.clone();
    let app = TestApp::spawn_configured(move |a| {
        a.reconcile.grid_api_url = grid_url;
        a.reconcile.grid_api_token_id = Some("grid-token-id".into());
        a.reconcile.grid_api_client_secret = Some("grid-secret-long-enough".into());
    })
    .await;
    let body =
        json!({"source": "grid", "inviter_uma": "$alice@vasp-a.example", "amount": {"value": 500, "currency": "USD"}});

    // when two Grid invitations are created
    let (status, v) = post(&app, "/v1/invitations", Some(body.clone())).await;
    assert_eq!(status, 201, "{v}");
    let (_, claimed) = post(&app, "/v1/invitations", Some(body)).await;

    // then Grid was asked with its own fields, and they are registered by code
    assert_eq!(v["invitation_id"], "GridInvitation:GRID0001");
    assert_eq!((v["source"].as_str(), v["registered"].as_bool()), (Some("grid"), Some(true)));
    let (method, path, sent) = grid.requests()[0].clone();
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/grid/2025-10-13/invitations"));
    assert_eq!(sent, json!({"inviterUma": "$alice@vasp-a.example", "amountToSend": 500}));

    // when the first is cancelled, then Grid cancels it
    let (status, v) = post(&app, "/v1/invitations/GRID0001/cancel", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "CANCELLED");

    // when the second, claimed meanwhile, is cancelled, then Grid's refusal is said plainly
    grid.claim(claimed["code"].as_str().unwrap(), "$bob@b.example");
    let (status, v) = post(&app, "/v1/invitations/GRID0002/cancel", None).await;
    assert_eq!(status, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("Only PENDING invitations can be cancelled"), "{v}");
}
