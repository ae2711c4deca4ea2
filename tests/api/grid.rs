//! Lightspark Grid as a second webhook source: `POST /webhooks/grid`,
//! verified with ECDSA P-256 over the raw body against the configured
//! public key(s), stored beside Lightspark's, projected by code, paid with
//! the receiver, amount and decimals of `amountToSend`, fetched by code from
//! the Grid API while it can change, and re-verified by `verify`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use invitation_ledger::grid::signature::sign;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{json, Value};
use warp::Filter;

use crate::support::binary::run_binary;
use crate::support::fake_platform::FakePlatform;
use crate::support::{ledger_rows, TestApp, SECRET};

const SETTLE: Duration = Duration::from_secs(20);

/// A key pair made for this test from a seeded generator.
fn key_pair(seed: u64) -> (SigningKey, String) {
    let rng = invitation_ledger::rng::SplitMix::seeded(seed);
    let mut secret = [0u8; 32];
    for chunk in secret.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_be_bytes());
    }
    let key = SigningKey::from_slice(&secret).expect("a valid P-256 scalar");
    let pem = key.verifying_key().to_public_key_pem(LineEnding::LF).expect("PEM");
    (key, pem)
}

/// A Grid `INVITATION.CLAIMED` body, in the current or the UMAaaS shape.
fn claim(delivery: &str, code: &str, umaaas: bool, status: &str) -> Vec<u8> {
    let invitation = json!({
        "code": code, "createdAt": "2026-11-01T10:00:00Z", "claimedAt": "2026-11-01T12:00:00Z",
        "url": format!("https://uma.me/i/{code}"), "inviterUma": "$alice@vasp-a.example",
        "inviteeUma": "$bob@vasp-b.example", "status": status, "firstName": "Alice",
        "amountToSend": {"amount": 1500, "currency": {"code": "JPY", "name": "Japanese Yen", "symbol": "¥", "decimals": 0}}
    });
    let body = if umaaas {
        json!({"webhookId": delivery, "type": "INVITATION_CLAIMED", "timestamp": "2026-11-01T12:00:01Z", "invitation": invitation})
    } else {
        json!({"id": delivery, "type": "INVITATION.CLAIMED", "timestamp": "2026-11-01T12:00:01Z", "data": invitation})
    };
    serde_json::to_vec_pretty(&body).unwrap()
}

async fn post(app: &TestApp, body: &[u8], header: Option<(&str, &str)>) -> (u16, Value) {
    let mut req = app.client.post(app.url("/webhooks/grid")).body(body.to_vec());
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn grid_deliveries_are_verified_stored_once_projected_by_code_and_paid_from_amount_to_send() {
    // given a service with Grid's public key (rotating: two keys) and a
    // payment platform
    let (key, pem) = key_pair(1);
    let (_, old_pem) = key_pair(2);
    let payments = FakePlatform::start().await;
    let url = payments.url.clone();
    let app = TestApp::spawn_configured(|a| {
        a.key.grid_webhook_public_key = Some(format!("{old_pem}{pem}"));
        a.reconcile.payout_url = Some(url);
        a.reconcile.inviter_incentive = Some("100:USD".into());
    })
    .await;
    let body = claim("Webhook:0001", "GRIDCODE", false, "CLAIMED");
    let header = sign(&key, &body);

    // when a signed delivery arrives, twice
    let (status, first) = post(&app, &body, Some(("X-Grid-Signature", &header))).await;
    let (again, second) = post(&app, &body, Some(("X-Grid-Signature", &header))).await;
    // then it is stored once
    assert_eq!((status, again), (200, 200), "{first} {second}");
    assert_eq!((first["status"].as_str(), second["status"].as_str()), (Some("accepted"), Some("duplicate")));
    assert_eq!(first["seq"], second["seq"]);

    // a forged body, a missing header and a wrong key are refused, and
    // nothing of them is stored
    let mut forged = body.clone();
    let at = forged.windows(4).position(|w| w == b"1500").unwrap();
    forged[at] = b'9';
    let (other_key, _) = key_pair(3);
    for (name, bytes, header) in [
        ("forged body", forged.clone(), Some(("X-Grid-Signature", header.clone()))),
        ("missing header", body.clone(), None),
        ("another key", body.clone(), Some(("X-Grid-Signature", sign(&other_key, &body)))),
        (
            "not a signature",
            body.clone(),
            Some(("X-Grid-Signature", r#"{"v":"1","s":"bm90IGEgc2lnbmF0dXJl"}"#.to_owned())),
        ),
        ("version 2", body.clone(), Some(("X-Grid-Signature", header.replace(r#""v":"1""#, r#""v":"2""#)))),
    ] {
        let (status, answer) = post(&app, &bytes, header.as_ref().map(|(n, v)| (*n, v.as_str()))).await;
        assert_eq!(status, 401, "{name}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| e.ends_with("signature")), "{name}: {answer}");
    }
    let webhooks = ledger_rows(&app.db).into_iter().filter(|r| r.2 == "webhook.received").count();
    assert_eq!(webhooks, 1, "only the genuine delivery is stored");

    // a bare base64 signature, and the older UMAaaS shape and header, are accepted
    let second_body = claim("Webhook:0002", "GRIDTWO", false, "CLAIMED");
    let sig: Value = serde_json::from_str(&sign(&key, &second_body)).unwrap();
    let (status, _) = post(&app, &second_body, Some(("X-Grid-Signature", sig["s"].as_str().unwrap()))).await;
    assert_eq!(status, 200, "bare base64");
    let umaaas = claim("Webhook:0003", "GRIDOLD", true, "CLAIMED");
    let (status, _) = post(&app, &umaaas, Some(("X-UMAaaS-Signature", &sign(&key, &umaaas)))).await;
    assert_eq!(status, 200, "UMAaaS shape and header");

    // then the invitation is found by its code, and paid from amountToSend
    let v = app.invitation_when("GRIDCODE", SETTLE, |v| v["payout"]["state"] == "succeeded").await;
    assert_eq!(v["invitation_id"], "GridInvitation:GRIDCODE");
    assert_eq!(v["source"], "grid");
    assert_eq!(v["claimed_at"], "2026-11-01T12:00:00Z");
    assert_eq!(v["inviter_first_name"], "Alice");
    assert_eq!(v["incentive"]["state"], "not_due");
    assert_eq!(v["incentive"]["reason"], "source_has_no_incentives");
    let paid: Vec<_> = payments.requests().into_iter().filter(|r| r.body["invitation_code"] == "GRIDCODE").collect();
    assert_eq!(paid.len(), 1);
    assert_eq!(paid[0].body["receiver_uma"], "$bob@vasp-b.example");
    assert_eq!(paid[0].body["amount"], json!({"value": 1500, "currency": "JPY", "decimals": 0}));
    let old = app.invitation_when("GRIDOLD", SETTLE, |v| v["payout"]["state"] == "succeeded").await;
    assert_eq!(old["invitee_uma"], "$bob@vasp-b.example");
    let db = app.db.clone();
    let _dir = app.stop().await;

    // and verify re-verifies each Grid webhook with the public key, saying so
    let env = |key: &str| {
        vec![
            ("LEDGER_DB", db.to_str().unwrap().to_owned()),
            ("GRID_WEBHOOK_PUBLIC_KEY", key.to_owned()),
            ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET.to_owned()),
        ]
    };
    let run = |env: Vec<(&'static str, String)>| async move {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_binary(&["verify"], &env).await
    };
    let out = run(env(&pem)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("grid: 3 verified with its ECDSA P-256 public key"), "{stdout}");
    // an altered Grid body is caught, naming its seq, even re-chained
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("DROP TRIGGER events_no_update").unwrap();
        conn.execute("UPDATE events SET body = ?1 WHERE seq = 1", [&forged]).unwrap();
        crate::support::rechain(&conn);
    }
    let out = run(env(&pem)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("seq 1") && stderr.contains("grid webhook signature"), "{stderr}");
}

#[tokio::test]
async fn without_a_grid_key_the_grid_route_is_not_there() {
    let app = TestApp::spawn().await;
    let (key, _) = key_pair(4);
    let body = claim("Webhook:0009", "NOKEY", false, "CLAIMED");
    let (status, answer) = post(&app, &body, Some(("X-Grid-Signature", &sign(&key, &body)))).await;
    assert_eq!(status, 404, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("GRID_WEBHOOK_PUBLIC_KEY"), "{answer}");
    assert_eq!(ledger_rows(&app.db).len(), 0);
}

#[tokio::test]
async fn the_committed_grid_fixtures_verify_with_the_committed_public_key() {
    let root = env!("CARGO_MANIFEST_DIR");
    let pem = std::fs::read_to_string(format!("{root}/fixtures/grid/test_key.pub.pem")).unwrap();
    let app = TestApp::spawn_configured(|a| a.key.grid_webhook_public_key = Some(pem)).await;
    for (name, header_name) in [("claimed", "X-Grid-Signature"), ("claimed_umaaas", "X-UMAaaS-Signature")] {
        let body = std::fs::read(format!("{root}/fixtures/grid/{name}.json")).unwrap();
        let sig = std::fs::read_to_string(format!("{root}/fixtures/grid/{name}.sig")).unwrap();
        let (status, answer) = post(&app, &body, Some((header_name, &sig))).await;
        assert_eq!(status, 200, "{name}: {answer}");
    }
}

/// A stand-in of the Grid API: `GET {base}/invitations/{code}` with HTTP
/// Basic, answering the invitations it holds (the last answer of a list
/// stays), 404 for other codes.
async fn fake_grid_api(token: &str, secret: &str, answers: Vec<Value>) -> (String, Arc<Mutex<usize>>) {
    grid_api(token, secret, answers, false).await
}

/// [`fake_grid_api`], but answering its next answer whatever code is
/// asked, as a caching proxy in front of Grid could.
async fn careless_grid_api(token: &str, secret: &str, answers: Vec<Value>) -> (String, Arc<Mutex<usize>>) {
    grid_api(token, secret, answers, true).await
}

async fn grid_api(token: &str, secret: &str, answers: Vec<Value>, any_code: bool) -> (String, Arc<Mutex<usize>>) {
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{token}:{secret}")));
    let calls = Arc::new(Mutex::new(0usize));
    let answers = Arc::new(Mutex::new(answers));
    let counted = calls.clone();
    let route = warp::path!("grid" / "2025-10-13" / "invitations" / String)
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .map(move |code: String, auth: Option<String>| {
            *counted.lock().unwrap() += 1;
            if auth.as_deref() != Some(expected.as_str()) {
                return warp::reply::with_status(
                    warp::reply::json(&json!({"code": "UNAUTHORIZED"})),
                    warp::http::StatusCode::UNAUTHORIZED,
                );
            }
            let mut a = answers.lock().unwrap();
            let answer = if a.len() > 1 { a.remove(0) } else { a[0].clone() };
            if any_code || answer["code"] == code.as_str() {
                warp::reply::with_status(warp::reply::json(&answer), warp::http::StatusCode::OK)
            } else {
                warp::reply::with_status(
                    warp::reply::json(&json!({"code": "INVITATION_NOT_FOUND"})),
                    warp::http::StatusCode::NOT_FOUND,
                )
            }
        });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (format!("http://{addr}/grid/2025-10-13"), calls)
}

#[tokio::test]
async fn a_pending_grid_invitation_is_fetched_by_code_until_claimed_then_paid() {
    // given a Grid API that shows the invitation pending once, then claimed
    let (key, pem) = key_pair(5);
    let mut pending: Value = serde_json::from_slice(&claim("x", "FETCHME", false, "PENDING")).unwrap();
    let pending = pending["data"].take();
    let mut claimed = pending.clone();
    claimed["status"] = json!("CLAIMED");
    let (api, calls) = fake_grid_api("grid-token", "grid-secret-long", vec![pending.clone(), claimed]).await;
    let payments = FakePlatform::start().await;
    let url = payments.url.clone();
    let app = TestApp::spawn_configured(|a| {
        a.key.grid_webhook_public_key = Some(pem);
        a.reconcile.payout_url = Some(url);
        a.reconcile.grid_api_url = api;
        a.reconcile.grid_api_token_id = Some("grid-token".into());
        a.reconcile.grid_api_client_secret = Some("grid-secret-long".into());
    })
    .await;
    // when a delivery shows it still PENDING
    let body = claim("Webhook:0100", "FETCHME", false, "PENDING");
    let (status, _) = post(&app, &body, Some(("X-Grid-Signature", &sign(&key, &body)))).await;
    assert_eq!(status, 200);
    // then it is fetched by code until it is claimed, and then paid
    let v = app.invitation_when("FETCHME", SETTLE, |v| v["payout"]["state"] == "succeeded").await;
    assert_eq!(v["status"], "CLAIMED");
    assert_eq!(v["fetch"]["wanted"], false);
    let after = *calls.lock().unwrap();
    assert_eq!(after, 2, "pending, then claimed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(*calls.lock().unwrap(), after, "nothing fetched once claimed");
    let fetched: Vec<String> =
        ledger_rows(&app.db).into_iter().filter(|r| r.2 == "invitation.fetched").map(|r| r.1).collect();
    assert!(fetched.iter().all(|k| k.starts_with("grid-fetch:GridInvitation:FETCHME:")), "{fetched:?}");
}

#[tokio::test]
async fn a_grid_answer_with_another_code_or_none_is_refused_recorded_and_never_paid() {
    // given a Grid API that answers, for any code, Mallory's claimed
    // invitation once, then the same without a code, from then on
    let (key, pem) = key_pair(6);
    let mallory = json!({"code": "MALLORY", "status": "CLAIMED", "inviterUma": "$alice@vasp-a.example",
        "inviteeUma": "$mallory@evil.example", "claimedAt": "2026-11-01T13:00:00Z",
        "amountToSend": {"amount": 99999, "currency": {"code": "JPY", "decimals": 0}}});
    let mut no_code = mallory.clone();
    no_code.as_object_mut().unwrap().remove("code");
    let (api, calls) = careless_grid_api("grid-token", "grid-secret-long", vec![mallory, no_code]).await;
    let payments = FakePlatform::start().await;
    let url = payments.url.clone();
    let app = TestApp::spawn_configured(|a| {
        a.key.grid_webhook_public_key = Some(pem);
        a.reconcile.payout_url = Some(url);
        a.reconcile.grid_api_url = api;
        a.reconcile.grid_api_token_id = Some("grid-token".into());
        a.reconcile.grid_api_client_secret = Some("grid-secret-long".into());
    })
    .await;
    // when a delivery shows invitation ASKED still PENDING, so it is fetched
    let body = claim("Webhook:0200", "ASKED", false, "PENDING");
    let (status, _) = post(&app, &body, Some(("X-Grid-Signature", &sign(&key, &body)))).await;
    assert_eq!(status, 200);
    // then each distinct wrong answer is recorded once, and ASKED is asked again
    let stream = "GridInvitation:ASKED";
    let refused = crate::support::eventually("two refused Grid answers", SETTLE, || async {
        let keys: Vec<String> =
            ledger_rows(&app.db).into_iter().filter(|r| r.2 == "invitation.fetch_failed").map(|r| r.1).collect();
        let asked = *calls.lock().unwrap();
        if keys.len() == 2 && asked >= 4 {
            Ok(keys)
        } else {
            Err(format!("{keys:?} after {asked} fetches"))
        }
    })
    .await;
    for key in &refused {
        assert!(key.starts_with(&format!("grid-fetch:{stream}:identity_mismatch:")), "{key}");
    }
    // and counted as such, and nothing of them merged or paid
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("invitation_ledger_fetches_total{outcome=\"identity_mismatch\",source=\"grid\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(counted >= 3, "{metrics}");
    let v = app.invitation("ASKED").await;
    assert_eq!(
        (v["status"].as_str(), v["invitee_uma"].as_str()),
        (Some("PENDING"), Some("$bob@vasp-b.example")),
        "{v:#}"
    );
    assert_eq!(v["payout"]["state"], "not_due", "{v:#}");
    assert_eq!(v["fetch"]["wanted"], true, "{v:#}");
    assert!(v["anomalies"].as_array().unwrap().iter().any(|a| a["kind"] == "identity_mismatch"), "{v:#}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(payments.requests().is_empty(), "{:?}", payments.requests());
}
