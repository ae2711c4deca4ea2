//! The sweep: an invitation created through the service is fetched on the
//! fetch schedule until it is claimed, cancelled or expired, so a claim
//! whose webhook never arrives is still found, marked `found_by: sweep`,
//! counted, and paid once; the late webhook changes nothing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_lightspark::{aliased_entity, FakeLightspark};
use crate::support::fake_platform::FakePlatform;
use crate::support::{claimed_body, TestApp};

const CLIENT_ID: &str = "sweep-client-id";
const CLIENT_SECRET: &str = "sweep-client-secret-long-enough";
const SETTLE: Duration = Duration::from_secs(20);

async fn app(api: &FakeLightspark, payments: &FakePlatform) -> TestApp {
    let (api_url, pay) = (api.url.clone(), payments.url.clone());
    TestApp::spawn_configured(move |a| {
        a.reconcile.lightspark_api_url = api_url;
        a.reconcile.lightspark_api_client_id = Some(CLIENT_ID.into());
        a.reconcile.lightspark_api_client_secret = Some(CLIENT_SECRET.into());
        a.reconcile.payout_url = Some(pay);
        a.reconcile.reconcile_interval_ms = 100;
        a.reconcile.retry_base_ms = 50;
        a.reconcile.retry_max_ms = 200;
    })
    .await
}

async fn create(app: &TestApp, body: Value) -> Value {
    let resp = app.client.post(app.url("/v1/invitations")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

async fn metric(app: &TestApp, series: &str) -> Option<String> {
    let text = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    text.lines().find(|l| l.starts_with(series)).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_webhook_never_arrives_is_found_by_the_sweep_and_paid_once() {
    // given an invitation of 500 USD created through the service
    let api = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let payments = FakePlatform::start().await;
    let app = app(&api, &payments).await;
    let v = create(
        &app,
        json!({"source": "lightspark", "inviter_uma": "$alice@vasp-a.example",
               "amount": {"value": 500, "currency": "USD"}, "expires_at": "2099-12-31T00:00:00Z"}),
    )
    .await;
    let id = v["invitation_id"].as_str().unwrap().to_owned();
    let code = v["code"].as_str().unwrap().to_owned();
    let sweep = r#"invitation_ledger_claims_found_by_sweep_total{source="lightspark"}"#;
    assert_eq!(metric(&app, sweep).await.as_deref(), Some(format!("{sweep} 0").as_str()));

    // when it is claimed at Lightspark and its webhook is lost
    let mut claimed = aliased_entity(&id, &code, "CLAIMED", "PENDING", Some((500, "USD")), Some("$bob@b.example"));
    claimed["uma_invitation_updated_at"] = json!("2026-12-01T12:00:00+00:00");
    api.set_invitation(&id, claimed);

    // then the sweep finds the claim, marks it, and the invitee is paid
    let v = app.invitation_when(&id, SETTLE, |v| v["payout"]["state"] == "succeeded").await;
    assert_eq!(v["found_by"], "sweep");
    assert_eq!(v["status"], "CLAIMED");
    assert_eq!(payments.executed().len(), 1);
    assert_eq!(metric(&app, sweep).await.as_deref(), Some(format!("{sweep} 1").as_str()));
    // and the status page lists it among the claims whose webhook did not arrive
    let page = app.client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    let section = page.split("id=\"found-by-sweep\"").nth(1).expect("a section of claims found by the sweep");
    assert!(section.split("</section>").next().unwrap().contains(&code), "{section}");

    // when the webhook arrives after all
    let before = v["last_seq"].as_u64().unwrap();
    assert_eq!(app.post_signed(&claimed_body("evt-late", &id)).await.status(), 200);

    // then nothing more is paid, and the claim stays the sweep's find
    let v = app.invitation_when(&id, SETTLE, |v| v["last_seq"].as_u64().unwrap() > before).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(payments.executed().len(), 1);
    assert_eq!(payments.requests().len(), 1);
    assert_eq!(v["payout"]["attempts"], 1);
    assert_eq!(v["found_by"], "sweep");
    assert_eq!(metric(&app, sweep).await.as_deref(), Some(format!("{sweep} 1").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_webhook_came_first_is_not_counted_as_found_by_the_sweep() {
    // given an invitation created through the service
    let api = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let payments = FakePlatform::start().await;
    let app = app(&api, &payments).await;
    let v = create(&app, json!({"source": "lightspark", "inviter_uma": "$alice@vasp-a.example"})).await;
    let id = v["invitation_id"].as_str().unwrap().to_owned();
    let code = v["code"].as_str().unwrap().to_owned();

    // when its webhook arrives before Lightspark shows the claim to a fetch
    assert_eq!(app.post_signed(&claimed_body("evt-first", &id)).await.status(), 200);
    api.set_invitation(&id, aliased_entity(&id, &code, "CLAIMED", "INELIGIBLE", None, Some("$bob@b.example")));

    // then the claim is known, and not the sweep's find
    let v = app.invitation_when(&id, SETTLE, |v| v["fetch"]["state"] == "fetched" && v["status"] == "CLAIMED").await;
    assert!(v["found_by"].is_null(), "{v}");
    let line = metric(&app, r#"invitation_ledger_claims_found_by_sweep_total{source="lightspark"}"#).await.unwrap();
    assert!(line.ends_with(" 0"), "{line}");
}
