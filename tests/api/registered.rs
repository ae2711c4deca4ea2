//! Invitations the VASP creates through the service (`POST
//! /v1/invitations`): created at the fake Lightspark GraphQL API, recorded
//! in the ledger before and after the call, registered; bad requests
//! refused before anything is sent or stored; a creation whose answer never
//! came recorded as unknown for an operator, not asked again.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::binary::ServeProcess;
use crate::support::fake_lightspark::FakeLightspark;
use crate::support::postgres::fresh_database;
use crate::support::{eventually, ledger_len, ledger_rows, TestApp};

const CLIENT_ID: &str = "registered-client-id";
const CLIENT_SECRET: &str = "registered-client-secret-long-enough";

async fn app(api: &FakeLightspark, request_timeout_ms: u64) -> TestApp {
    let api_url = api.url.clone();
    TestApp::spawn_configured(move |a| {
        a.reconcile.lightspark_api_url = api_url;
        a.reconcile.lightspark_api_client_id = Some(CLIENT_ID.into());
        a.reconcile.lightspark_api_client_secret = Some(CLIENT_SECRET.into());
        a.reconcile.request_timeout_ms = request_timeout_ms;
    })
    .await
}

async fn create(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let resp = client.post(url).json(body).send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn paid_request() -> Value {
    json!({"source": "lightspark", "inviter_uma": "$alice@vasp-a.example",
           "amount": {"value": 1500, "currency": "JPY"}, "expires_at": "2099-12-31T00:00:00Z"})
}

#[tokio::test]
async fn an_invitation_created_through_the_service_is_created_at_lightspark_recorded_and_registered() {
    // given a service that can reach the Lightspark API
    let api = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let app = app(&api, 5_000).await;

    // when an invitation carrying 1500 JPY is created
    let (status, v) = create(&app.client, &app.url("/v1/invitations"), &paid_request()).await;

    // then Lightspark was asked once with the payment mutation, its amount
    // in the smallest unit and JPY's decimals
    assert_eq!(status, 201, "{v}");
    let asked = api.requests();
    assert_eq!(asked.len(), 1);
    assert!(asked[0]["query"].as_str().unwrap().contains("create_uma_invitation_with_payment(input:"));
    let vars = &asked[0]["variables"];
    assert_eq!(
        (
            &vars["inviter_uma"],
            &vars["payment_amount"],
            &vars["payment_currency_code"],
            &vars["payment_currency_decimals"]
        ),
        (&json!("$alice@vasp-a.example"), &json!(1500), &json!("JPY"), &json!(0))
    );
    // and the answer is the new invitation's projection, registered
    let id = v["invitation_id"].as_str().unwrap().to_owned();
    assert_eq!(id, api.created()[0]["uma_invitation_id"]);
    assert_eq!(v["registered"], true);
    assert_eq!(v["status"], "PENDING");
    assert_eq!(v["code"], "NEW0001");
    assert_eq!(v["url"], "https://uma.me/i/NEW0001");
    assert_eq!(v["payment_amount"]["value"], 1500);
    assert_eq!(v["registration"]["state"], "created");
    assert_eq!(v["payout"]["state"], "not_due");
    // and the ledger holds the request, then the answer in both streams
    let request = format!("InvitationRequest:{}", v["registration"]["request_id"].as_str().unwrap());
    // (the sweep's first fetch may follow them at once)
    let rows: Vec<(String, String)> = ledger_rows(&app.db).into_iter().map(|r| (r.2, r.1)).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.0.as_str()).filter(|k| k.starts_with("invitation.creat")).collect();
    assert_eq!(kinds, ["invitation.create_requested", "invitation.created", "invitation.created"], "{rows:?}");
    assert_eq!(rows[0].0, "invitation.create_requested", "the request comes first");
    // and both read back through the API
    let v = app.invitation_when(&id, Duration::from_secs(5), |v| v["registered"] == true).await;
    assert_eq!(v["registration"]["created_id"], id.as_str());
    let r = app.invitation_when(&request, Duration::from_secs(5), |v| v["registration"]["state"] == "created").await;
    assert_eq!(r["registration"]["created_id"], id.as_str());
}

#[tokio::test]
async fn a_bad_creation_request_gets_400_with_a_sentence_and_nothing_is_sent_or_stored() {
    // given a service that can reach the Lightspark API
    let api = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let app = app(&api, 5_000).await;
    let good = paid_request();
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    for (body, says) in [
        (with("amount", json!({"value": 100, "currency": "XQQ"})), "currency"),
        (with("amount", json!({"value": -100, "currency": "USD"})), "positive"),
        (with("amount", json!({"value": 1.5, "currency": "USD"})), "integer"),
        (with("expires_at", json!("2020-01-01T00:00:00Z")), "past"),
        (with("inviter_uma", json!("alice@vasp-a.example")), "UMA"),
        (with("source", json!("paypal")), "source"),
    ] {
        // when it is sent
        let (status, v) = create(&app.client, &app.url("/v1/invitations"), &body).await;
        // then it is refused with a sentence
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"], "bad_request");
        assert!(v["message"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    let resp = app.client.post(app.url("/v1/invitations")).body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    // and nothing reached Lightspark or the ledger
    assert_eq!(api.calls(), 0);
    assert_eq!(ledger_len(&app.db), 0);
}

#[tokio::test]
async fn a_creation_answered_after_the_timeout_is_recorded_as_unknown_and_never_asked_again() {
    // given a Lightspark API that creates the invitation but answers after
    // the service's request timeout
    let api = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    api.answer_next_create_after(Duration::from_secs(3));
    let app = app(&api, 500).await;

    // when an invitation is created
    let (status, v) = create(&app.client, &app.url("/v1/invitations"), &paid_request()).await;

    // then the caller is told the outcome is unknown, naming the request
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"], "outcome_unknown");
    let message = v["message"].as_str().unwrap();
    let request = message.split_whitespace().find(|w| w.starts_with("InvitationRequest:")).unwrap();
    let request = request.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned();
    // and the request reads back unknown, for an operator to check
    let r = app.invitation_when(&request, Duration::from_secs(5), |v| v["registration"]["state"] == "unknown").await;
    assert!(r["registration"]["error"].as_str().unwrap().contains("unreachable"), "{r}");
    assert_eq!(r["registration"]["inviter_uma"], "$alice@vasp-a.example");
    // and the status page lists it for an operator, as it lists payments in doubt
    let page = app.client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    let section = page.split("id=\"unknown-outcomes\"").nth(1).expect("a section of unknown outcomes");
    let request_id = request.trim_start_matches("InvitationRequest:");
    assert!(section.split("</section>").next().unwrap().contains(request_id), "{section}");
    // and Lightspark made one invitation, which is not asked for again
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(api.created().len(), 1);
    assert_eq!(api.requests().len(), 1);
    let kinds: Vec<String> = ledger_rows(&app.db).into_iter().map(|r| r.2).collect();
    assert_eq!(kinds, ["invitation.create_requested", "invitation.create_failed"]);
}

#[tokio::test]
async fn with_a_read_api_token_creating_an_invitation_needs_it() {
    let api = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let api_url = api.url.clone();
    let app = TestApp::spawn_configured(move |a| {
        a.read_api_token = Some("registered-token-long-enough".into());
        a.reconcile.lightspark_api_url = api_url;
        a.reconcile.lightspark_api_client_id = Some(CLIENT_ID.into());
        a.reconcile.lightspark_api_client_secret = Some(CLIENT_SECRET.into());
    })
    .await;
    let (status, v) = create(&app.client, &app.url("/v1/invitations"), &paid_request()).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(api.calls(), 0);
    let resp = app
        .client
        .post(app.url("/v1/invitations"))
        .bearer_auth("registered-token-long-enough")
        .json(&paid_request())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_postgresql_ledger_an_invitation_created_through_the_service_is_registered() {
    // given the real binary on a PostgreSQL ledger
    let api = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database().await;
    let env = vec![
        ("PROJECTIONS_DIR", dir.path().display().to_string()),
        ("LIGHTSPARK_API_URL", api.url.clone()),
        ("LIGHTSPARK_API_CLIENT_ID", CLIENT_ID.to_owned()),
        ("LIGHTSPARK_API_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
    ];
    let server = ServeProcess::spawn(std::path::PathBuf::from(url), env).await;
    let client = reqwest::Client::new();
    // when an invitation is created
    let (status, v) = create(&client, &server.url("/v1/invitations"), &paid_request()).await;
    // then it is created once and reads back registered
    assert_eq!(status, 201, "{v}");
    let id = v["invitation_id"].as_str().unwrap().to_owned();
    let read = server.url(&format!("/v1/invitations/{id}"));
    let client_ref = &client;
    eventually("the created invitation to read back", Duration::from_secs(10), || {
        let read = read.clone();
        async move {
            let v = crate::support::json_of(client_ref.get(&read)).await?;
            if v["registered"] == true {
                Ok(())
            } else {
                Err(v.to_string())
            }
        }
    })
    .await;
    assert_eq!(api.created().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invite_and_cancel_commands_work_beside_a_running_service() {
    // given a running service and the Lightspark API
    let api = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let app = app(&api, 5_000).await;
    let db = app.db.to_str().unwrap().to_owned();
    let env = [
        ("LEDGER_DB", db.as_str()),
        ("LIGHTSPARK_API_URL", api.url.as_str()),
        ("LIGHTSPARK_API_CLIENT_ID", CLIENT_ID),
        ("LIGHTSPARK_API_CLIENT_SECRET", CLIENT_SECRET),
    ];
    let run = |args: Vec<&str>| {
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::support::binary::run_binary(&args, &env).await
        }
    };

    // when a bad invitation is asked for, then it is refused with a sentence and nothing is sent
    let out = run(vec!["invite", "--inviter", "$carol@vasp-a.example", "--amount", "7.5:EUR"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("integer"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(api.calls(), 0);

    // when one is created from the command line
    let out = run(vec![
        "invite",
        "--inviter",
        "$carol@vasp-a.example",
        "--amount",
        "700:EUR",
        "--expires-at",
        "2099-06-01T00:00:00Z",
    ])
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["registered"], true);
    assert_eq!(v["payment_amount"]["value"], 700);
    let code = v["code"].as_str().unwrap().to_owned();
    app.invitation_when(&code, Duration::from_secs(5), |v| v["registered"] == true).await;

    // then it can be cancelled by its code the same way
    let out = run(vec!["cancel", &code]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "CANCELLED");
    assert_eq!(v["cancellation"]["state"], "cancelled");
}
