//! Each invitation's page over plain HTTP: its money trail from the ledger
//! (kinds, hashes, what was asked and answered, signatures re-verified
//! now), the exact bytes of each event, and the charts on the home page.

use std::time::Duration;

use serde_json::Value;

use crate::support::fake_platform::{FakePlatform, Fault};
use crate::support::page::{client, get};
use crate::support::{InvitationFixture, TestApp};

/// `/invitations/{id}` with the id as a path segment.
pub fn page_path(id: &str) -> String {
    format!("/invitations/{}", id.replace(':', "%3A"))
}

/// An invitation whose payment the platform paid (`pay_1`), incentive
/// not due (incentives pending).
pub async fn paid_invitation(app: &TestApp, id: &str) -> InvitationFixture {
    let mut inv = InvitationFixture::claimed(id);
    inv.incentives_status = "PENDING".into();
    app.claim(&inv, &format!("ev-{id}")).await;
    app.invitation_when(&inv.id, Duration::from_secs(20), |v| v["payout"]["state"] == "succeeded").await;
    inv
}

/// The stored `(hash, body)` of `seq`, straight from SQLite.
fn stored(app: &TestApp, seq: i64) -> (String, Vec<u8>) {
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    conn.query_row("SELECT hash, body FROM events WHERE seq = ?1", [seq], |r| {
        Ok((hex::encode(r.get::<_, Vec<u8>>(0)?), r.get(1)?))
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_invitations_page_shows_its_whole_trail_in_seq_order_with_what_was_asked_and_answered() {
    // Given an invitation paid by the platform
    let payments = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| a.reconcile.payout_url = Some(payments.url.clone())).await;
    let inv = paid_invitation(&app, "UmaInvitation:trail-paid").await;

    // When its page is opened, by id and by code
    let page = get(&app, &page_path(&inv.id), &[]).await;
    let by_code = get(&app, &page_path(&inv.code), &[]).await;

    // Then it shows the trail in seq order: the webhook, the request, the outcome
    assert_eq!((page.status, by_code.status), (200, 200), "{}", page.body);
    assert!(by_code.body.contains("id=\"seq-1\""), "the code finds the same invitation");
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert!(!page.body.contains("<script"), "no scripts");
    let trail = page.part("section", "trail");
    let at = |s: &str| trail.find(s).unwrap_or_else(|| panic!("{s} not in the trail:\n{trail}"));
    let (webhook, request, outcome) = (at("id=\"seq-1\""), at("id=\"seq-2\""), at("id=\"seq-3\""));
    assert!(webhook < request && request < outcome);
    let kinds: Vec<&str> = ["webhook.received", "payout.requested", "payout.succeeded"].into_iter().collect();
    for (i, kind) in kinds.iter().enumerate() {
        let card = page.part("article", &format!("seq-{}", i + 1));
        assert!(card.contains(&format!("<span class=\"kind\">{kind}</span>")), "{card}");
        let (hash, _) = stored(&app, i as i64 + 1);
        assert!(card.contains(&hash), "seq {} shows its stored hash {hash}:\n{card}", i + 1);
        assert!(card.contains("✓ chain intact at this seq"), "{card}");
    }
    // Each hash is linked to its predecessor's.
    let (first_hash, body) = stored(&app, 1);
    let request_card = page.part("article", "seq-2");
    assert!(request_card.contains(&format!("<a href=\"#seq-1\"><code>{first_hash}</code></a>")), "{request_card}");
    // The request: receiver, amount with its decimals, idempotency key, attempt.
    let key = &app.invitation(&inv.id).await["payout"]["idempotency_key"];
    for shown in [inv.invitee_uma.as_deref().unwrap(), "10.00 USD", key.as_str().unwrap(), "<dt>Attempt</dt><dd>1</dd>"]
    {
        assert!(request_card.contains(shown), "the request shows {shown}:\n{request_card}");
    }
    assert!(!request_card.contains("1000 USD"), "never raw smallest units");
    // The outcome: status code and payment id.
    let outcome_card = page.part("article", "seq-3");
    assert!(
        outcome_card.contains("<dt>HTTP status</dt><dd>200</dd>") && outcome_card.contains("pay_1"),
        "{outcome_card}"
    );
    // The webhook: its signature verified now, with the key named; the body pretty-printed.
    let webhook_card = page.part("article", "seq-1");
    assert!(webhook_card.contains("✓ verified now with key 1 of 1"), "{webhook_card}");
    assert!(
        webhook_card.contains("UMA_INVITATION_CLAIMED") && webhook_card.contains("\n  &quot;event_type&quot;: "),
        "{webhook_card}"
    );

    // And the exact bytes are one link away, byte for byte
    let href = format!("{}/events/1/body", page_path(&inv.id));
    assert!(webhook_card.contains(&format!("href=\"{href}\"")), "{webhook_card}");
    let bytes = client().get(app.url(&href)).send().await.unwrap();
    assert_eq!(bytes.status(), 200);
    assert_eq!(bytes.headers()["content-type"], "application/octet-stream");
    assert_eq!(bytes.bytes().await.unwrap().to_vec(), body);
    // Only events of this invitation are served under its path.
    let other = InvitationFixture::claimed("UmaInvitation:trail-other");
    app.claim(&other, "ev-other").await;
    app.invitation_when(&other.id, Duration::from_secs(20), |_| true).await;
    assert_eq!(
        client().get(app.url(&format!("{}/events/1/body", page_path(&other.id)))).send().await.unwrap().status(),
        404
    );
    assert_eq!(get(&app, "/invitations/nope", &[]).await.status, 404);
    assert_eq!(get(&app, &format!("{}/events/x/body", page_path(&inv.id)), &[]).await.status, 404);
}

#[tokio::test]
async fn a_webhook_signed_with_the_second_key_names_it_and_one_altered_in_sqlite_shows_a_cross() {
    // Given a rotation (old key first) and two webhooks signed with the test secret
    let app = TestApp::spawn_configured(|a| {
        a.key.signing_key = Some(format!("an-older-secret,{}", crate::support::SECRET));
    })
    .await;
    let kept = InvitationFixture::claimed("UmaInvitation:sig-kept");
    let altered = InvitationFixture::claimed("UmaInvitation:sig-altered");
    app.claim(&kept, "ev-kept").await;
    app.claim(&altered, "ev-altered").await;
    app.invitation_when(&altered.id, Duration::from_secs(20), |_| true).await;

    // When someone changes one stored byte of the second one's body
    {
        let conn = rusqlite::Connection::open(&app.db).unwrap();
        conn.execute_batch("DROP TRIGGER events_no_update").unwrap();
        let body: Vec<u8> = conn.query_row("SELECT body FROM events WHERE seq = 2", [], |r| r.get(0)).unwrap();
        let text = String::from_utf8(body).unwrap().replace("$invitee-", "$attacker");
        conn.execute("UPDATE events SET body = ?1 WHERE seq = 2", [text.as_bytes()]).unwrap();
    }

    // Then the untouched one verifies with the second key, and the altered one neither verifies nor chains
    let page = get(&app, &page_path(&kept.id), &[]).await;
    assert!(page.part("article", "seq-1").contains("✓ verified now with key 2 of 2"), "{}", page.body);
    let page = get(&app, &page_path(&altered.id), &[]).await;
    let card = page.part("article", "seq-2");
    assert!(card.contains("✗ does not verify now"), "{card}");
    assert!(card.contains("✗ chain broken at this seq"), "{card}");
    assert!(page.part("section", "trail").contains("webhook signatures verified now <b>0/1</b>"), "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_page_draws_three_charts_with_bars_for_the_hours_that_had_events() {
    // Given a service that has seen nothing yet
    let payments = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| a.reconcile.payout_url = Some(payments.url.clone())).await;
    let empty = get(&app, "/", &[]).await;
    for id in ["chart-webhooks", "chart-payments", "chart-obligations"] {
        let chart = empty.part("figure", id);
        assert!(chart.contains("<svg") && chart.contains("role=\"img\"") && chart.contains("<title"), "{chart}");
        assert!(!chart.contains("class=\"bar\"") && !chart.contains("class=\"seg"), "no bars yet: {chart}");
        assert!(chart.contains("class=\"empty-note\""), "a note says there is nothing: {chart}");
    }
    assert!(empty.part("figure", "chart-webhooks").contains("hour (UTC)"), "the x axis is labelled");

    // When two invitations are claimed and paid, and a payment fails for good
    paid_invitation(&app, "UmaInvitation:chart-1").await;
    paid_invitation(&app, "UmaInvitation:chart-2").await;
    payments.fail_next(1, Fault::Status(400));
    let mut refused = InvitationFixture::claimed("UmaInvitation:chart-3");
    refused.incentives_status = "PENDING".into();
    app.claim(&refused, "ev-chart-3").await;
    app.invitation_when(&refused.id, Duration::from_secs(20), |v| v["payout"]["state"] == "failed").await;

    // Then the current hour has a bar of three webhooks and one of two payments
    let page = get(&app, "/", &[]).await;
    let hour = chrono::Utc::now().format("%Y-%m-%dT%H").to_string();
    let webhooks = page.part("figure", "chart-webhooks");
    assert_eq!(webhooks.matches("<g class=\"bar\"").count(), 1, "{webhooks}");
    assert!(webhooks.contains(&format!("data-hour=\"{hour}\" data-count=\"3\"")), "{webhooks}");
    let paid = page.part("figure", "chart-payments");
    assert!(paid.contains(&format!("data-hour=\"{hour}\" data-count=\"2\"")), "{paid}");
    // And the obligations chart shows the payments succeeded and failed
    let obligations = page.part("figure", "chart-obligations");
    assert!(obligations.contains("invitee_payment: 3 (2 succeeded, 1 failed"), "{obligations}");
    assert!(obligations.contains("class=\"seg c-succeeded\"") && obligations.contains("class=\"seg c-failed\""));
    // And the invitations on the home page link to their pages
    let link = format!("href=\"/invitations/{}\"", refused.id.replace(':', "%3A"));
    assert!(page.part("section", "attention").contains(&link), "{}", page.body);
    assert!(page.part("section", "recent").contains(&link));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src") && !csp.contains("img-src"), "{csp}");
}

/// The JSON body of the ledger event at `seq`.
pub fn event_body(app_db: &std::path::Path, seq: i64) -> Value {
    let conn = rusqlite::Connection::open(app_db).unwrap();
    let body: Vec<u8> = conn.query_row("SELECT body FROM events WHERE seq = ?1", [seq], |r| r.get(0)).unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// The first RFC 3339 time (`2026-12-07T19:22:05…`) in the text a person
/// reads of `html`: outside tags, and outside `<pre>` (a body, shown as it
/// was received) and `<style>`.
fn raw_time_in_text(html: &str) -> Option<String> {
    let mut text = String::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        text.push_str(&rest[..lt]);
        rest = &rest[lt..];
        let skip_to = ["<pre", "<style"].iter().find(|t| rest.starts_with(**t)).map(|t| format!("</{}>", &t[1..]));
        let end = match skip_to {
            Some(close) => rest.find(&close).map_or(rest.len(), |i| i + close.len()),
            None => rest.find('>').map_or(rest.len(), |i| i + 1),
        };
        text.push(' ');
        rest = &rest[end..];
    }
    text.push_str(rest);
    let b = text.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    (0..b.len()).find_map(|i| {
        let shape = (0..4).all(|k| digit(i + k))
            && b.get(i + 4) == Some(&b'-')
            && digit(i + 5)
            && digit(i + 6)
            && b.get(i + 7) == Some(&b'-')
            && digit(i + 8)
            && digit(i + 9)
            && b.get(i + 10) == Some(&b'T');
        shape.then(|| text[i..(i + 26).min(text.len())].to_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_leaves_one_compact_row_per_attempt_with_its_hashes_on_demand() {
    // Given a platform that answers 503 eight times before it pays
    let payments = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| a.reconcile.payout_url = Some(payments.url.clone())).await;
    payments.fail_next(8, Fault::Status(503));
    let inv = paid_invitation(&app, "UmaInvitation:outage").await;

    // When its page is opened
    let page = get(&app, &page_path(&inv.id), &[]).await;
    assert_eq!(page.status, 200);

    // Then each request and answer is one row — kind, time, outcome, HTTP
    // status — with its hashes and body folded inside it
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    let mut stmt = conn.prepare("SELECT seq, kind FROM events WHERE kind LIKE 'payout.%' ORDER BY seq").unwrap();
    let calls: Vec<(i64, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(calls.len(), 18, "nine requests, eight 503s and the payment: {calls:?}");
    for (seq, kind) in &calls {
        let row = page.part("article", &format!("seq-{seq}"));
        assert!(row.starts_with("<article class=\"ev attempt\""), "a compact row: {row}");
        let (shown, on_demand) = row.split_once("<dl").unwrap_or_else(|| panic!("details on demand: {row}"));
        assert!(shown.contains("<details") && !shown.contains("</details>"), "the details fold: {row}");
        assert!(shown.contains(&format!("<span class=\"kind\">{kind}</span>")), "{shown}");
        assert!(shown.contains("<time datetime=\"") && shown.contains(" UTC</time>"), "{shown}");
        if kind == "payout.failed" {
            assert!(shown.contains("HTTP 503"), "the outcome and its status: {shown}");
        }
        let (hash, _) = stored(&app, *seq);
        assert!(!shown.contains(&hash) && on_demand.contains(&hash), "the hash on demand only: {row}");
    }
    // And the earlier calls of the run are folded into one line that counts them
    let trail = page.part("section", "trail");
    let fold = &trail[trail.find("<details class=\"run\"").unwrap_or_else(|| panic!("a folded run:\n{trail}"))..];
    let summary = &fold[..fold.find("</summary>").unwrap()];
    assert!(summary.contains("HTTP 503 ×"), "{summary}");
    // And no time on the page is raw RFC 3339 text
    assert_eq!(raw_time_in_text(&page.body), None, "{}", page.body);
}
