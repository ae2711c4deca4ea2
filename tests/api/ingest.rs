//! Webhook ingest through the real HTTP listener and a temp-file ledger,
//! and the `/metrics` counters that move with it.

use std::time::Duration;

use crate::support::{
    claimed_body, eventually, json, ledger_len, ledger_rows, post_signed_to, signature_of, TestApp, SECRET,
};

const VECTOR_SECRET: &str = "3gZ5oQQUASYmqQNuEk0KambNMVkOADDItIJjzUlAWjX";
const VECTOR_BODY: &str = r#"{"event_type": "NODE_STATUS", "event_id": "1615c8be5aa44e429eba700db2ed8ca5", "timestamp": "2023-05-17T23:56:47.874449+00:00", "entity_id": "lightning_node:01882c25-157a-f96b-0000-362d42b64397"}"#;
const VECTOR_SIGNATURE: &str = "62a8829aeb48b4142533520b1f7f86cdb1ee7d718bf3ea15bc1c662d4c453b74";

async fn app_with_vector_key() -> TestApp {
    TestApp::spawn_configured(|a| a.key.signing_key = Some(format!("{SECRET},{VECTOR_SECRET}"))).await
}

#[tokio::test]
async fn official_test_vector_is_accepted_and_stored_byte_for_byte() {
    let app = app_with_vector_key().await;
    let resp = app.post_raw("/webhooks/lightspark", VECTOR_BODY.as_bytes().to_vec(), Some(VECTOR_SIGNATURE)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await, serde_json::json!({"status": "accepted", "seq": 1}));
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    let (body, sig, kind): (Vec<u8>, String, String) = conn
        .query_row("SELECT body, signature, kind FROM events WHERE seq = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(body, VECTOR_BODY.as_bytes());
    assert_eq!(sig, VECTOR_SIGNATURE);
    assert_eq!(kind, "webhook.received");
}

#[tokio::test]
async fn the_alias_route_and_upper_case_signature_are_accepted() {
    let app = app_with_vector_key().await;
    let resp = app.post_raw("/webhook", VECTOR_BODY.as_bytes().to_vec(), Some(&VECTOR_SIGNATURE.to_uppercase())).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["status"], "accepted");
}

#[tokio::test]
async fn bad_missing_and_non_hex_signatures_are_401_and_store_nothing() {
    let app = TestApp::spawn().await;
    let body = claimed_body("e1", "Inv:1");
    let wrong = invitation_ledger::lightspark::signature::sign(b"another-secret", body.as_bytes());
    for (sig, code) in [
        (Some(wrong.as_str()), "bad_signature"),
        (None, "missing_signature"),
        (Some("not-hex-at-all"), "bad_signature"),
        (Some(""), "missing_signature"),
    ] {
        let resp = app.post_raw("/webhooks/lightspark", body.clone().into_bytes(), sig).await;
        assert_eq!(resp.status(), 401, "{sig:?}");
        let err = json(resp).await;
        assert_eq!(err["error"], code);
        assert!(err["message"].as_str().unwrap().len() > 10);
    }
    assert_eq!(ledger_len(&app.db), 0);
}

#[tokio::test]
async fn a_signed_body_that_is_not_a_json_object_is_400_and_stores_nothing() {
    let app = TestApp::spawn().await;
    for body in ["{not json", "[1,2,3]", "42", r#""UMA_INVITATION_CLAIMED""#, "null", r#"{"a":1}{"a":2}"#] {
        let resp = app.post_signed(body).await;
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(json(resp).await["error"], "malformed_webhook");
    }
    assert_eq!(ledger_len(&app.db), 0);
}

#[tokio::test]
async fn a_body_over_256_kib_is_413_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let padding = "x".repeat(256 * 1024);
    let body =
        format!(r#"{{"event_type":"NODE_STATUS","event_id":"big","timestamp":"t","entity_id":"n","pad":"{padding}"}}"#);
    let resp = app.post_signed(&body).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(json(resp).await["error"], "body_too_large");

    // Without Content-Length (chunked), the limit holds too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.as_bytes().chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
    let stream = futures_util::stream::iter(chunks);
    let resp = app
        .client
        .post(app.url("/webhooks/lightspark"))
        .header("lightspark-signature", signature_of(body.as_bytes()))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(ledger_len(&app.db), 0);
}

#[tokio::test]
async fn a_body_just_under_the_limit_is_accepted() {
    let app = TestApp::spawn().await;
    let head = r#"{"event_type":"NODE_STATUS","event_id":"edge","timestamp":"t","entity_id":"n","pad":""#;
    let pad = "y".repeat(256 * 1024 - head.len() - 2);
    let body = format!("{head}{pad}\"}}");
    assert_eq!(body.len(), 256 * 1024);
    assert_eq!(app.post_signed(&body).await.status(), 200);
}

#[tokio::test]
async fn unknown_event_types_are_stored_and_acknowledged() {
    let app = TestApp::spawn().await;
    let body = r#"{"event_type":"SOMETHING_NEW_2027","event_id":"u1","timestamp":"2026-11-01T00:00:00+00:00","entity_id":"x:1","data":{"whatever":[1,2]}}"#;
    let resp = app.post_signed(body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["status"], "accepted");
    assert_eq!(ledger_rows(&app.db)[0].2, "webhook.received");
}

#[tokio::test]
async fn duplicate_webhook_is_acknowledged_once_with_the_original_seq() {
    let app = TestApp::spawn().await;
    let first = claimed_body("dup-1", "Inv:1");
    let other = claimed_body("other", "Inv:2");
    assert_eq!(json(app.post_signed(&first).await).await["seq"], 1);
    assert_eq!(json(app.post_signed(&other).await).await["seq"], 2);
    let again = json(app.post_signed(&first).await).await;
    assert_eq!(again, serde_json::json!({"status": "duplicate", "seq": 1}));
    assert_eq!(ledger_len(&app.db), 2);
}

#[tokio::test]
async fn same_event_id_with_a_different_body_is_kept_as_its_own_event() {
    let app = TestApp::spawn().await;
    let a = claimed_body("same-id", "Inv:1");
    let b = a.replace("Inv:1", "Inv:9");
    assert_eq!(json(app.post_signed(&a).await).await["status"], "accepted");
    let second = json(app.post_signed(&b).await).await;
    assert_eq!(second, serde_json::json!({"status": "accepted", "seq": 2}));
    let rows = ledger_rows(&app.db);
    assert_eq!(rows.len(), 2);
    assert!(rows[0].1.starts_with("lightspark:same-id:") && rows[1].1.starts_with("lightspark:same-id:"));
    assert_ne!(rows[0].1, rows[1].1);
}

#[tokio::test]
async fn five_hundred_concurrent_webhooks_get_gapless_seqs_each_stored_once() {
    let app = TestApp::spawn().await;
    let mut tasks = Vec::new();
    for i in 0..500 {
        let client = app.client.clone();
        let url = app.url("/webhooks/lightspark");
        tasks.push(tokio::spawn(async move {
            let body = claimed_body(&format!("conc-{i}"), &format!("Inv:{i}"));
            let resp = post_signed_to(&client, &url, body).await;
            assert_eq!(resp.status(), 200);
            let v: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(v["status"], "accepted");
            (i, v["seq"].as_u64().unwrap())
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().1);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=500).collect::<Vec<u64>>());
    let rows = ledger_rows(&app.db);
    assert_eq!(rows.len(), 500);
    let keys: std::collections::HashSet<_> = rows.iter().map(|r| r.1.clone()).collect();
    assert_eq!(keys.len(), 500);
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), (1..=500).collect::<Vec<i64>>());
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    let h = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["status"], "ready");
}

#[tokio::test]
async fn unknown_routes_answer_json_404() {
    let app = TestApp::spawn().await;
    let r = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["error"], "not_found");
}

// ---------------------------------------------------------------------------
// `/metrics` moves as webhooks arrive and obligations change.

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

async fn scrape(app: &TestApp) -> String {
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    r.text().await.unwrap()
}

#[tokio::test]
async fn webhook_counters_move_as_webhooks_arrive() {
    let app = TestApp::spawn().await;
    let body = claimed_body("m-1", "Inv:m1");
    assert_eq!(app.post_signed(&body).await.status(), 200);
    assert_eq!(app.post_signed(&body).await.status(), 200);
    assert_eq!(app.post_signed(&claimed_body("m-2", "Inv:m2")).await.status(), 200);
    // The same event id with other bytes: kept, and counted.
    assert_eq!(app.post_signed(&claimed_body("m-2", "Inv:m2-other")).await.status(), 200);
    assert_eq!(app.post_raw("/webhook", body.clone().into_bytes(), Some("00")).await.status(), 401);
    assert_eq!(app.post_signed("[\"not an object\"]").await.status(), 400);
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024));
    assert_eq!(app.post_signed(&big).await.status(), 413);

    let text = scrape(&app).await;
    let m = |s: &str| value(&text, s);
    assert_eq!(m("invitation_ledger_webhooks_total{result=\"accepted\",source=\"lightspark\"}"), 3.0);
    assert_eq!(m("invitation_ledger_webhooks_same_id_other_body_total"), 1.0);
    assert_eq!(m("invitation_ledger_webhooks_total{result=\"duplicate\",source=\"lightspark\"}"), 1.0);
    assert_eq!(m("invitation_ledger_webhooks_total{result=\"bad_signature\",source=\"lightspark\"}"), 1.0);
    assert_eq!(m("invitation_ledger_webhooks_total{result=\"malformed\",source=\"lightspark\"}"), 1.0);
    assert_eq!(m("invitation_ledger_webhooks_total{result=\"too_large\",source=\"lightspark\"}"), 1.0);
    assert_eq!(m("invitation_ledger_ledger_appends_total"), 3.0);
    assert!(m("invitation_ledger_ledger_commit_batch_size_count") >= 1.0);
    assert!(m("invitation_ledger_ledger_commit_seconds_count") >= 1.0);
    assert_eq!(m("invitation_ledger_ledger_head_seq"), 3.0);

    // The two claimed invitations have no data: nothing is owed yet, and
    // the projection catches up.
    let text = eventually("the projection to catch up", Duration::from_secs(10), || async {
        let text = scrape(&app).await;
        if value(&text, "invitation_ledger_projection_lag_events") == 0.0 {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    assert_eq!(value(&text, "invitation_ledger_obligations{kind=\"invitee_payment\",state=\"not_due\"}"), 3.0);
    assert_eq!(value(&text, "invitation_ledger_obligations_in_doubt"), 0.0);
    // and they wait for their data, which nothing fetches here
    assert_eq!(value(&text, "invitation_ledger_invitations_awaiting_data"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_platform_outage_shows_as_the_age_of_the_oldest_retrying_obligation() {
    // Given a service whose payment platform answers every call with 503
    let payments = crate::support::fake_platform::FakePlatform::start().await;
    payments.fail_next(100_000, crate::support::fake_platform::Fault::Status(503));
    let app = TestApp::spawn_configured(|a| a.reconcile.payout_url = Some(payments.url.clone())).await;
    let idle = scrape(&app).await;
    let mut inv = crate::support::InvitationFixture::claimed("Inv:outage");
    inv.incentives_status = "PENDING".into();

    // When an invitation is claimed and its payment fails for over two seconds
    let started = std::time::Instant::now();
    app.claim(&inv, "ev-outage").await;
    app.invitation_when(&inv.id, Duration::from_secs(20), |v| v["payout"]["state"] == "retry_scheduled").await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let text = scrape(&app).await;

    // Then the oldest retrying obligation's age says so (0 while nothing retried)
    assert_eq!(value(&idle, "invitation_ledger_oldest_retrying_obligation_age_seconds"), 0.0);
    let age = value(&text, "invitation_ledger_oldest_retrying_obligation_age_seconds");
    assert!(age >= 2.0 && age <= started.elapsed().as_secs_f64(), "age {age} after {:?}", started.elapsed());
    // And the calls are counted as transient, none as succeeded
    assert!(
        value(&text, "invitation_ledger_obligation_calls_total{kind=\"invitee_payment\",outcome=\"transient\"}") >= 1.0
    );
    assert_eq!(
        value(&text, "invitation_ledger_obligation_calls_total{kind=\"invitee_payment\",outcome=\"succeeded\"}"),
        0.0
    );
    // And the build is named
    let build = format!("invitation_ledger_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(value(&text, &build), 1.0);
}
