//! Projections through the real service: fetch from a fake Lightspark,
//! every payload shape, the read API, rebuild and status.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::binary::{run, run_binary, ServeProcess};
use crate::support::fake_lightspark::{aliased_entity, FakeLightspark};
use crate::support::{
    eventually, json as body_json, ledger_rows, post_signed_blocking, post_signed_to, try_post_signed_to, TestApp,
};

const CLIENT_ID: &str = "client-id-1";
const CLIENT_SECRET: &str = "client-secret-which-is-long";

/// Waits until `pred` holds for `GET /v1/invitations/{id}` (20 s at most).
async fn wait_for(app: &TestApp, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    app.invitation_when(id, Duration::from_secs(20), pred).await
}

fn claimed(event_id: &str, id: &str, data: Option<Value>) -> String {
    let mut v = json!({"event_type": "UMA_INVITATION_CLAIMED", "event_id": event_id,
        "timestamp": "2026-11-01T12:00:01.000000+00:00", "entity_id": id});
    if let Some(d) = data {
        v["data"] = d;
    }
    v.to_string()
}

fn invitation(id: &str, code: &str, status: &str, inviter: &str, amount: Option<i64>) -> Value {
    let mut v = json!({"id": id, "code": code, "status": status, "inviter_uma": inviter, "invitee_uma": "$bob@b.example",
        "incentives_status": "PENDING", "updated_at": "2026-11-01T12:00:00+00:00"});
    if let Some(a) = amount {
        v["payment_amount"] = json!({"value": a, "currency": {"code": "USD", "decimals": 2}});
    }
    v
}

async fn app_with_lightspark(fake: &FakeLightspark) -> TestApp {
    TestApp::spawn_configured(|a| {
        a.reconcile.lightspark_api_url = fake.url.clone();
        a.reconcile.lightspark_api_client_id = Some(CLIENT_ID.into());
        a.reconcile.lightspark_api_client_secret = Some(CLIENT_SECRET.into());
    })
    .await
}

#[tokio::test]
async fn a_claimed_webhook_without_data_is_fetched_from_lightspark() {
    let fake = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let id = "UmaInvitation:fetch-1";
    fake.set_invitation(
        id,
        aliased_entity(id, "FETCH1", "CLAIMED", "VALIDATED", Some((700, "USD")), Some("$bob@b.example")),
    );
    let app = app_with_lightspark(&fake).await;

    let resp = app.post_signed(&claimed("ev-fetch-1", id, None)).await;
    assert_eq!(resp.status(), 200);

    let v = wait_for(&app, id, |v| v["fetch"]["state"] == "fetched").await;
    assert_eq!(v["code"], "FETCH1");
    assert_eq!(v["invitee_uma"], "$bob@b.example");
    assert_eq!(v["payment_amount"], json!({"value": 700, "currency": "USD", "decimals": 2}));
    assert_eq!(v["status"], "CLAIMED");
    assert_eq!(fake.unauthorized_calls(), 0);
    let req = &fake.requests()[0];
    assert_eq!(req["variables"]["id"], id);
    // The snapshot is in the ledger, so a rebuild needs no network.
    let kinds: Vec<String> = ledger_rows(&app.db).into_iter().map(|r| r.2).collect();
    assert_eq!(kinds, vec!["webhook.received", "invitation.fetched"]);
}

#[tokio::test]
async fn fetching_keeps_retrying_through_failures_without_recording_them() {
    // given an API that fails twice with a 500, then with a GraphQL error
    let fake = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let id = "UmaInvitation:fetch-2";
    fake.set_invitation(id, aliased_entity(id, "FETCH2", "CLAIMED", "VALIDATED", None, Some("$bob@b.example")));
    fake.fail_next(2);
    fake.fail_with_graphql_errors_next(1);
    let app = app_with_lightspark(&fake).await;
    // when a claim without data arrives
    assert_eq!(app.post_signed(&claimed("ev-fetch-2", id, None)).await.status(), 200);
    // then it is fetched again on its schedule until the API answers
    let v = wait_for(&app, id, |v| v["fetch"]["state"] == "fetched").await;
    assert_eq!(v["code"], "FETCH2");
    assert_eq!(fake.calls(), 4, "three failures, then the answer; nothing more once final: {v:#}");
    // and the failures are counted, not written to the ledger
    let kinds: Vec<String> = ledger_rows(&app.db).into_iter().map(|r| r.2).collect();
    assert_eq!(kinds, vec!["webhook.received", "invitation.fetched"]);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"invitation_ledger_fetches_total{outcome="error",source="lightspark"} 3"#), "{metrics}");
}

#[tokio::test]
async fn a_claim_without_data_and_no_api_credentials_is_loudly_not_configured() {
    // given a service without Lightspark API credentials
    let app = TestApp::spawn().await;
    // when a claim arrives without its invitation, as the SDKs deliver it
    let id = "UmaInvitation:unfetchable";
    assert_eq!(app.post_signed(&claimed("ev-unfetchable", id, None)).await.status(), 200);
    // then the projection says it cannot be fetched, and owes nothing yet
    let v = wait_for(&app, id, |v| v["last_seq"] == 1).await;
    assert_eq!(v["fetch"]["state"], "not_configured", "{v:#}");
    assert_eq!(v["payout"]["state"], "not_due");
    // the status page says so first, naming the settings and the count
    let page = app.client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    let banner = page.split("id=\"not-configured\"").nth(1).expect("a banner");
    assert!(
        banner.contains("LIGHTSPARK_API_CLIENT_ID and LIGHTSPARK_API_CLIENT_SECRET") && banner.contains("1 invitation"),
        "{banner}"
    );
    // and the metrics count it
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("invitation_ledger_invitations_awaiting_data 1"), "{metrics}");
    // the CLI shows the same, told the same settings
    let db = app.db.to_str().unwrap().to_owned();
    let out = run_binary(&["status", id, "--json"], &[("LEDGER_DB", &db)]).await;
    let cli: Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(cli["fetch"]["state"], "not_configured");
    let out = run_binary(&["status", id, "--json"], &[("LEDGER_DB", &db), ("LIGHTSPARK_API_CLIENT_ID", "x")]).await;
    let cli: Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(cli["fetch"]["state"], "pending");
}

#[tokio::test]
async fn the_webhook_is_answered_at_once_while_lightspark_hangs() {
    // A Lightspark that accepts connections and never answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_url = format!("http://{}/graphql", hang.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            held.push(s);
        }
    });
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.lightspark_api_url = hang_url;
        a.reconcile.lightspark_api_client_id = Some(CLIENT_ID.into());
        a.reconcile.lightspark_api_client_secret = Some(CLIENT_SECRET.into());
        a.reconcile.request_timeout_ms = 30_000;
    })
    .await;
    let quick = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    for i in 0..5 {
        let body = claimed(&format!("ev-hang-{i}"), &format!("UmaInvitation:hang-{i}"), None);
        let r = try_post_signed_to(&quick, &app.url("/webhooks/lightspark"), body)
            .await
            .expect("answered while the fetch hangs");
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn every_fixture_shape_projects_to_the_same_invitation() {
    let names = ["snake_case", "graphql_aliased", "graphql_plain_nested", "camel_case", "amount_to_send"];
    let mut views = Vec::new();
    for name in names {
        let app = TestApp::spawn_configured(|a| a.key.signing_key = Some("fixture-signing-secret".into())).await;
        let root = env!("CARGO_MANIFEST_DIR");
        let body = std::fs::read(format!("{root}/fixtures/webhooks/claimed_{name}.json")).unwrap();
        let sig = std::fs::read_to_string(format!("{root}/fixtures/webhooks/claimed_{name}.sig")).unwrap();
        let r = app.post_raw("/webhooks/lightspark", body, Some(sig.trim())).await;
        assert_eq!(r.status(), 200, "{name}");
        let mut v = wait_for(&app, "UmaInvitation:0191a8b6-fixture-0001", |v| v["last_seq"] == 1).await;
        assert_eq!(v["code"], "FIXTURE1", "{name}");
        // amount_to_send names its currency by code alone: no decimals given
        let decimals = if name == "amount_to_send" { Value::Null } else { json!(2) };
        assert_eq!(v["payment_amount"]["value"], 500, "{name}");
        assert_eq!(v["payment_amount"]["currency"], "USD", "{name}");
        assert_eq!(v["payment_amount"].get("decimals").cloned().unwrap_or(Value::Null), decimals, "{name}");
        v["payment_amount"].as_object_mut().unwrap().remove("decimals");
        assert_eq!(v["incentives_status"], "VALIDATED", "{name}");
        assert_eq!(v["payout"]["state"], "pending", "{name}");
        v.as_object_mut().unwrap().remove("url");
        views.push((name, v));
    }
    for (name, v) in &views[1..] {
        assert_eq!(v, &views[0].1, "{name} differs from {}", views[0].0);
    }
}

#[tokio::test]
async fn the_read_api_finds_by_id_and_code_filters_and_pages() {
    let app = TestApp::spawn().await;
    for i in 0..7 {
        let status = if i % 2 == 0 { "CLAIMED" } else { "CANCELLED" };
        let inviter = if i < 4 { "$alice@a.example" } else { "$carol@c.example" };
        let id = format!("UmaInvitation:read-{i}");
        let body = claimed(
            &format!("ev-read-{i}"),
            &id,
            Some(invitation(&id, &format!("CODE{i}"), status, inviter, Some(100 + i))),
        );
        assert_eq!(app.post_signed(&body).await.status(), 200);
    }
    wait_for(&app, "UmaInvitation:read-6", |v| v["last_seq"] == 7).await;

    let by_code = body_json(app.client.get(app.url("/v1/invitations/CODE3")).send().await.unwrap()).await;
    assert_eq!(by_code["invitation_id"], "UmaInvitation:read-3");
    let by_escaped_id = app.client.get(app.url("/v1/invitations/UmaInvitation%3Aread-3")).send().await.unwrap();
    assert_eq!(body_json(by_escaped_id).await["code"], "CODE3");
    let missing = app.client.get(app.url("/v1/invitations/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(body_json(missing).await["error"], "not_found");

    let claimed_page =
        body_json(app.client.get(app.url("/v1/invitations?status=CLAIMED&limit=2")).send().await.unwrap()).await;
    assert_eq!(claimed_page["items"].as_array().unwrap().len(), 2);
    let next = claimed_page["next"].as_str().unwrap().to_owned();
    let rest = body_json(
        app.client.get(app.url(&format!("/v1/invitations?status=CLAIMED&limit=2&after={next}"))).send().await.unwrap(),
    )
    .await;
    let ids: Vec<&str> = claimed_page["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .map(|v| v["invitation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["UmaInvitation:read-0", "UmaInvitation:read-2", "UmaInvitation:read-4", "UmaInvitation:read-6"]);
    assert_eq!(rest["next"], Value::Null);

    let carol =
        body_json(app.client.get(app.url("/v1/invitations?inviter_uma=%24carol%40c.example")).send().await.unwrap())
            .await;
    assert_eq!(carol["items"].as_array().unwrap().len(), 3);
    let pending =
        body_json(app.client.get(app.url("/v1/invitations?payout_state=pending")).send().await.unwrap()).await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 4);
    let too_big = app.client.get(app.url("/v1/invitations?limit=100000")).send().await.unwrap();
    assert_eq!(too_big.status(), 400);

    let events = body_json(app.client.get(app.url("/v1/ledger/events?after=2&limit=3")).send().await.unwrap()).await;
    let seqs: Vec<u64> = events["items"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(events["next"], 5);
    assert_eq!(events["items"][0]["kind"], "webhook.received");
    assert_eq!(events["items"][0]["hash"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn the_read_api_wants_the_bearer_token_when_one_is_set() {
    let token = "a-long-read-api-token-0123456789";
    let app = TestApp::spawn_configured(|a| a.read_api_token = Some(token.into())).await;
    let url = app.url("/v1/ledger/events");
    for bad in [None, Some("Bearer wrong"), Some("Bearer a-long-read-api-token-012345678"), Some(token)] {
        let mut req = app.client.get(&url);
        if let Some(h) = bad {
            req = req.header("authorization", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{bad:?}");
        assert_eq!(body_json(r).await["error"], "unauthorized");
    }
    let ok = app.client.get(&url).header("authorization", format!("Bearer {token}")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // Webhooks and health stay open.
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}

fn db_env(db: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![("LEDGER_DB", db.to_str().unwrap().to_owned())]
}

fn run_env(args: &[&str], env: &[(&'static str, String)]) -> std::process::Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run(args, &env)
}

#[tokio::test]
async fn rebuild_reproduces_the_incremental_projection_and_check_catches_drift() {
    let app = TestApp::spawn().await;
    for i in 0..30 {
        let id = format!("UmaInvitation:rb-{}", i % 10);
        let status = if i < 10 { "PENDING" } else { "CLAIMED" };
        let body = claimed(
            &format!("ev-rb-{i}"),
            &id,
            Some(invitation(&id, &format!("RB{}", i % 10), status, "$a@x", Some(i))),
        );
        assert_eq!(app.post_signed(&body).await.status(), 200);
    }
    wait_for(&app, "UmaInvitation:rb-9", |v| v["last_seq"] == 30).await;
    let db = app.db.clone();
    let env = db_env(&db);

    // While the service runs: --check works, a real rebuild is refused.
    let check = run_env(&["rebuild", "--check"], &env);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let refused = run_env(&["rebuild"], &env);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("holds the database"));

    let _dir = app.stop().await;
    let schema = |db: &std::path::Path| -> Vec<(String, String, Option<String>)> {
        let conn = rusqlite::Connection::open(invitation_ledger::projection::store::path(db)).unwrap();
        let mut stmt = conn.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    };
    let live_schema = schema(&db);
    let live = {
        let conn = rusqlite::Connection::open(invitation_ledger::projection::store::path(&db)).unwrap();
        hex::encode(invitation_ledger::projection::rebuild::checksum(&conn).unwrap())
    };
    let out = run_env(&["rebuild"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(line, format!("rebuilt events=30 checksum={live}"));
    // The rebuilt file has every table and index the service makes (the
    // code index is built after the rows), and lookups by code use it.
    assert_eq!(schema(&db), live_schema);
    let by_code = run_env(&["status", "RB3", "--json"], &env);
    assert!(by_code.status.success(), "{}", String::from_utf8_lossy(&by_code.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&by_code.stdout).unwrap()["invitation_id"], "UmaInvitation:rb-3");

    // Tamper with a projection row: --check notices.
    rusqlite::Connection::open(invitation_ledger::projection::store::path(&db))
        .unwrap()
        .execute(
            "UPDATE invitations SET state = replace(state, 'RB3', 'XX3') WHERE invitation_id = 'UmaInvitation:rb-3'",
            [],
        )
        .unwrap();
    let drift = run_env(&["rebuild", "--check"], &env);
    assert!(!drift.status.success());
    assert!(String::from_utf8_lossy(&drift.stderr).contains("differ"));
    // And a rebuild repairs it.
    assert!(run_env(&["rebuild"], &env).status.success());
    assert!(run_env(&["rebuild", "--check"], &env).status.success());

    // Tamper with an aggregate the pages and /metrics read: --check
    // notices that too, so the incremental aggregates are proved equal to
    // a full recomputation whenever it passes.
    for tamper in [
        "UPDATE obligation_counts SET n = n + 1 WHERE kind = 'invitee_payment'",
        "UPDATE audit_inviters SET validated = validated + 1",
        "UPDATE activity_hours SET webhooks = webhooks + 1",
    ] {
        let conn = rusqlite::Connection::open(invitation_ledger::projection::store::path(&db)).unwrap();
        assert!(conn.execute(tamper, []).unwrap() > 0, "{tamper} changed nothing");
        drop(conn);
        let drift = run_env(&["rebuild", "--check"], &env);
        assert!(!drift.status.success(), "{tamper} went unnoticed");
        assert!(run_env(&["rebuild"], &env).status.success());
    }
}

#[tokio::test]
async fn the_status_command_answers_from_the_same_code_path_as_the_api() {
    let app = TestApp::spawn().await;
    let id = "UmaInvitation:st-1";
    let body = claimed("ev-st-1", id, Some(invitation(id, "STCODE", "CLAIMED", "$a@x", Some(250))));
    app.post_signed(&body).await;
    let api = wait_for(&app, id, |v| v["last_seq"] == 1).await;
    let db = app.db.clone();
    let _dir = app.stop().await;
    let out = run_env(&["status", "STCODE", "--json"], &db_env(&db));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli, api);
    let table = run_env(&["status", id], &db_env(&db));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("STCODE") && text.contains("payout") && text.contains("pending"), "{text}");
    let unknown = run_env(&["status", "nope"], &db_env(&db));
    assert!(!unknown.status.success());
}

#[test]
fn the_projection_catches_up_at_start_up_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let server = ServeProcess::start(&db, &[]);
    let client = reqwest::blocking::Client::new();
    let id = "UmaInvitation:cu-1";
    let body = claimed("ev-cu", id, Some(invitation(id, "CU1", "CLAIMED", "$a@x", None)));
    let r = post_signed_blocking(&client, &server.url("/webhooks/lightspark"), body);
    assert_eq!(r.status(), 200);
    server.kill();
    // Whether or not the projector ran before the kill, a restart catches up.
    let server = ServeProcess::start(&db, &[]);
    let v: Value = client.get(server.url(&format!("/v1/invitations/{id}"))).send().unwrap().json().unwrap();
    assert_eq!(v["code"], "CU1");
}

/// A restart of the machine (a new boot) costs only the events since the
/// projections' last durable checkpoint: the file is written so that a
/// power cut leaves it consistent, possibly behind, and it is never
/// emptied for having been written under another boot. The row changed by
/// hand below shows whether the file was kept or folded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_written_under_another_boot_are_kept_and_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let client = reqwest::Client::new();
    let id = "UmaInvitation:boot-1";
    let server = ServeProcess::spawn(db.clone(), vec![]).await;
    let body = claimed("ev-boot", id, Some(invitation(id, "BOOT1", "CLAIMED", "$a@x", Some(700))));
    let r = post_signed_to(&client, &server.url("/webhooks/lightspark"), body).await;
    assert_eq!(r.status(), 200);
    // The projector folds a moment after the commit.
    let url = server.url(&format!("/v1/invitations/{id}"));
    answers_200(&client, &url, "the webhook to be projected", Duration::from_secs(10)).await;
    server.kill_async().await;

    // Given a file last opened under another boot of the machine, with a
    // mark a refold would erase
    let conn = rusqlite::Connection::open(invitation_ledger::projection::store::path(&db)).unwrap();
    conn.execute("UPDATE invitations SET state = replace(state, 'BOOT1', 'KEPT1'), code = 'KEPT1'", []).unwrap();
    assert_eq!(conn.execute("UPDATE projection_boot SET boot_id = 'a-boot-before-a-crash'", []).unwrap(), 1);
    drop(conn);

    // When the service starts and another claim arrives
    let server = ServeProcess::spawn(db.clone(), vec![]).await;
    let other = "UmaInvitation:boot-2";
    let body = claimed("ev-boot-2", other, Some(invitation(other, "BOOT2", "CLAIMED", "$a@x", Some(700))));
    assert_eq!(post_signed_to(&client, &server.url("/webhooks/lightspark"), body).await.status(), 200);
    let other_url = server.url(&format!("/v1/invitations/{other}"));
    answers_200(&client, &other_url, "the new claim to be projected", Duration::from_secs(10)).await;
    let v: Value = client.get(server.url(&format!("/v1/invitations/{id}"))).send().await.unwrap().json().await.unwrap();
    server.kill_async().await;

    // Then the file was kept (the mark is there) and carried on from its checkpoint
    assert_eq!(v["code"], "KEPT1", "the projections were folded again from scratch: {v}");
}

/// Waits, at most `within`, until `GET url` answers 200.
async fn answers_200(client: &reqwest::Client, url: &str, what: &str, within: Duration) {
    eventually(what, within, || async {
        match client.get(url).send().await.unwrap().status().as_u16() {
            200 => Ok(()),
            status => Err(format!("HTTP {status}")),
        }
    })
    .await;
}

/// A start on a ledger the projections are far behind (here: no
/// projections at all) accepts webhooks at once, while the fold catches
/// up; reads and readiness say they are catching up (503, `catching_up`,
/// `Retry-After`) until it has, and then show the new claim with the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_accepted_while_the_projections_catch_up_after_a_start() {
    use invitation_ledger::vocab::{EventKey, EventKind, StreamId};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    // Given a ledger of many claims and no projections
    let claims: Vec<_> = (0..CATCH_UP_CLAIMS)
        .map(|i| {
            let id = format!("UmaInvitation:many-{i}");
            let body = claimed(&format!("ev-many-{i}"), &id, Some(invitation(&id, "M", "CLAIMED", "$a@x", None)));
            invitation_ledger::ledger::NewEvent {
                event_key: EventKey::lightspark_webhook(&format!("ev-many-{i}"), body.as_bytes()),
                kind: EventKind::WebhookReceived,
                stream: Some(StreamId::new(id)),
                body: body.into_bytes(),
                signature: None,
                sibling_prefix: None,
            }
        })
        .collect();
    let (writer, thread) = invitation_ledger::ledger::LedgerWriter::start(&db).unwrap();
    for chunk in claims.chunks(5_000) {
        writer.append_all(chunk.to_vec()).await.unwrap();
    }
    drop(writer);
    tokio::task::spawn_blocking(move || thread.join().unwrap()).await.unwrap();

    // When the service starts and a claim arrives as soon as it answers
    let started = db.clone();
    let server = tokio::task::spawn_blocking(move || {
        ServeProcess::start_answering(&started, &[], &std::process::Stdio::inherit)
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let id = "UmaInvitation:during-catch-up";
    let body = claimed("ev-during", id, Some(invitation(id, "DURING", "CLAIMED", "$a@x", Some(500))));
    let accepted = post_signed_to(&client, &server.url("/webhooks/lightspark"), body).await;
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    let read = client.get(server.url(&format!("/v1/invitations/{id}"))).send().await.unwrap();
    let page = client.get(server.url("/")).send().await.unwrap();
    let metrics = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();

    // Then it was accepted while readiness, reads, the page and the
    // metric said they were catching up
    assert_eq!(accepted.status(), 200);
    assert_eq!(ready.status(), 503, "ready before the fold of {CATCH_UP_CLAIMS} claims ended");
    assert_eq!(ready.headers()["retry-after"], "1");
    assert_eq!(body_json(ready).await["error"], "catching_up");
    assert_eq!(read.status(), 503);
    assert!(read.headers().contains_key("retry-after"));
    assert_eq!(body_json(read).await["error"], "catching_up");
    assert_eq!(page.status(), 503);
    assert!(page.headers().contains_key("retry-after"));
    assert!(page.text().await.unwrap().contains("Catching up"));
    assert!(metrics.lines().any(|l| l == "invitation_ledger_projection_catching_up 1"), "{metrics}");
    // And once caught up, the claim is there with the rest
    let url = server.url(&format!("/v1/invitations/{id}"));
    answers_200(&client, &url, "the projections to catch up", Duration::from_secs(120)).await;
    let v: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["code"], "DURING");
    let first: Value =
        client.get(server.url("/v1/invitations/UmaInvitation:many-0")).send().await.unwrap().json().await.unwrap();
    assert_eq!(first["code"], "M");
    assert_eq!(client.get(server.url("/readyz")).send().await.unwrap().status(), 200);
    server.kill_async().await;
}

/// Enough claims that their fold outlasts a few requests (about a second
/// in a debug build).
const CATCH_UP_CLAIMS: usize = 40_000;

mod incremental_equals_rebuild {
    use invitation_ledger::ledger::{LedgerWriter, NewEvent};
    use invitation_ledger::projection::store;
    use proptest::prelude::*;
    use serde_json::json;

    fn webhook_event(i: usize, inv: u8, status: &str, hour: u8, amount: i64, with_data: bool) -> NewEvent {
        let id = format!("UmaInvitation:p{inv}");
        let mut body = json!({"event_type": "UMA_INVITATION_CLAIMED", "event_id": format!("e{i}"),
            "timestamp": format!("2026-11-01T1{hour}:00:00+00:00"), "entity_id": id});
        if with_data {
            body["data"] = json!({"id": id, "status": status, "code": format!("C{inv}"), "invitee_uma": "$b@y",
                // The inviter changes between snapshots, so the audit's
                // aggregates must move an invitation from one to another.
                "inviter_uma": format!("$a{}@x", hour % 3), "incentives_status": if hour.is_multiple_of(2) { "VALIDATED" } else { "PENDING" },
                "payment_amount": {"value": amount, "currency": "USD"},
                "updated_at": format!("2026-11-01T1{hour}:00:00+00:00")});
        }
        let bytes = serde_json::to_vec(&body).unwrap();
        NewEvent {
            event_key: invitation_ledger::vocab::EventKey::lightspark_webhook(&format!("e{i}"), &bytes),
            kind: invitation_ledger::vocab::EventKind::WebhookReceived,
            stream: Some(invitation_ledger::vocab::StreamId::new(id)),
            body: bytes,
            signature: None,
            sibling_prefix: None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn incremental_projection_equals_a_full_rebuild(
            events in prop::collection::vec((0u8..5, prop::sample::select(vec!["PENDING", "CLAIMED", "CANCELLED"]), 0u8..6, -1i64..900, any::<bool>()), 1..60),
            cuts in prop::collection::vec(1usize..10, 1..20),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("ledger.db");
            let (writer, thread) = LedgerWriter::start(&db).unwrap();
            let mut conn = store::open(&db).unwrap();
            // Append in uneven batches, projecting after each.
            let mut i = 0;
            let mut cut = cuts.iter().cycle();
            while i < events.len() {
                let n = (*cut.next().unwrap()).min(events.len() - i);
                let batch: Vec<NewEvent> = events[i..i + n].iter().enumerate()
                    .map(|(k, (inv, st, h, a, d))| webhook_event(i + k, *inv, st, *h, *a, *d)).collect();
                rt.block_on(writer.append_all(batch)).unwrap();
                store::catch_up(&mut conn, 3).unwrap();
                i += n;
            }
            drop(writer);
            thread.join().unwrap();
            let incremental = invitation_ledger::projection::rebuild::checksum(&conn).unwrap();
            drop(conn);
            let summary = invitation_ledger::projection::rebuild::rebuild(&db, |_, _| {}).unwrap();
            prop_assert_eq!(summary.events, events.len() as u64);
            prop_assert_eq!(hex::encode(summary.checksum), hex::encode(incremental));
        }
    }
}
