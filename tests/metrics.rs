//! `/metrics` moves as webhooks arrive and obligations change.

mod support;

use support::{claimed_body, TestApp};

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
    assert_eq!(app.post_signed("{\"nope\":1}").await.status(), 400);
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024));
    assert_eq!(app.post_signed(&big).await.status(), 413);

    let text = scrape(&app).await;
    let m = |s: &str| value(&text, s);
    assert_eq!(m("invitation_ledger_webhooks_total{result=\"accepted\"}"), 3.0);
    assert_eq!(m("invitation_ledger_webhooks_same_id_other_body_total"), 1.0);
    assert_eq!(m("invitation_ledger_webhooks_total{result=\"duplicate\"}"), 1.0);
    assert_eq!(m("invitation_ledger_webhooks_total{result=\"bad_signature\"}"), 1.0);
    assert_eq!(m("invitation_ledger_webhooks_total{result=\"malformed\"}"), 1.0);
    assert_eq!(m("invitation_ledger_webhooks_total{result=\"too_large\"}"), 1.0);
    assert_eq!(m("invitation_ledger_ledger_appends_total"), 3.0);
    assert!(m("invitation_ledger_ledger_commit_batch_size_count") >= 1.0);
    assert!(m("invitation_ledger_ledger_commit_seconds_count") >= 1.0);
    assert_eq!(m("invitation_ledger_ledger_head_seq"), 3.0);

    // The two claimed invitations have no data: nothing is owed yet, and
    // the projection catches up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = scrape(&app).await;
        if value(&text, "invitation_ledger_projection_lag_events") == 0.0 {
            assert_eq!(value(&text, "invitation_ledger_obligations{kind=\"invitee_payment\",state=\"not_due\"}"), 3.0);
            assert_eq!(value(&text, "invitation_ledger_obligations_in_doubt"), 0.0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "projection never caught up:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
