//! The status page in a real headless Chromium, driven through
//! chromedriver's W3C WebDriver HTTP API ([`driver`]): searching for an
//! invitation, the money trail of a paid one with its verified signature,
//! an in-doubt payment resolved from the page, a cross-site POST refused,
//! and the charts drawn. Leaves screenshots for people to look at:
//! `target/status-page.png`, `target/trail.png`, `target/resolve-form.png`,
//! `target/confirm.png`, `target/resolved.png`, `target/charts.png`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages
//! `chromium` and `chromium-driver`; `scripts/test` installs them). Without
//! them these tests fail: they never skip.

#[path = "support/app.rs"]
mod app;
#[path = "browser/driver.rs"]
mod driver;
#[path = "support/fake_platform.rs"]
mod fake_platform;
#[path = "support/poll.rs"]
mod poll;
#[path = "support/secret.rs"]
mod secret;

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use app::{json_of, serve_args, TestApp};
use driver::Driver;
use fake_platform::{FakePlatform, Fault};
use poll::eventually;

const FIXTURE_ID: &str = "UmaInvitation:0191a8b6-fixture-0001";
const TOKEN: &str = "a-long-read-api-token-0123456789";

/// The service with the test settings as `configure` changes them.
async fn spawn(configure: impl FnOnce(&mut invitation_ledger::config::ServeArgs)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut args = serve_args(&dir.path().join("ledger.db"));
    configure(&mut args);
    TestApp::spawn_with(dir, args).await
}

/// A claimed invitation's webhook, signed with the test secret: 10.00 USD
/// for its invitee, incentives pending.
async fn claim(app: &TestApp, id: &str) {
    let body = json!({
        "event_type": "UMA_INVITATION_CLAIMED", "event_id": format!("ev-{id}"),
        "timestamp": "2026-11-01T12:00:00.000000+00:00", "entity_id": id,
        "data": {"id": id, "code": format!("CODE-{}", id.rsplit(':').next().unwrap()), "url": "https://uma.me/i/x",
                 "inviter_uma": "$alice@sending.example", "invitee_uma": format!("$bob-{}@receiving.example", id.rsplit(':').next().unwrap()),
                 "status": "CLAIMED", "incentives_status": "PENDING", "updated_at": "2026-11-01T12:00:00.000000+00:00",
                 "payment_amount": {"value": 1000, "currency": {"code": "USD", "symbol": "$", "decimals": 2, "name": "US Dollar"}}}
    })
    .to_string();
    let signature = invitation_ledger::lightspark::signature::sign(secret::SECRET.as_bytes(), body.as_bytes());
    assert_eq!(app.post_raw("/webhooks/lightspark", body.into_bytes(), Some(&signature)).await.status(), 200);
}

/// Waits until the read API shows `id`'s payout in `state` (with the token
/// when one is configured).
async fn payout_state(app: &TestApp, id: &str, state: &str) {
    let url = app.url(&format!("/v1/invitations/{}", id.replace(':', "%3A")));
    eventually(&format!("{id}'s payout to be {state}"), Duration::from_secs(30), || async {
        let v = json_of(app.client.get(&url).bearer_auth(TOKEN)).await?;
        if v["payout"]["state"] == state {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
}

fn ledger_kinds(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT kind FROM events ORDER BY seq").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// The page's text once `css` is on it and the URL contains `url_part`.
async fn text_when(driver: &Driver, url_part: &str, css: &str) -> String {
    let what = format!("{css} on a page at …{url_part}…");
    let el = eventually(&what, Duration::from_secs(20), || async {
        if driver.current_url().await.contains(url_part) {
            if let Some(el) = driver.find(css).await {
                return Ok(el);
            }
        }
        Err(format!("at {}:\n{}", driver.current_url().await, driver.source().await))
    })
    .await;
    driver.text(&el).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_the_fixture_invitation_by_its_code_in_a_real_browser() {
    // The service, with the fixture's signing secret and no payment endpoint.
    let dir = tempfile::tempdir().unwrap();
    let mut args = serve_args(&dir.path().join("ledger.db"));
    args.key.signing_key = Some("fixture-signing-secret".into());
    let app = TestApp::spawn_with(dir, args).await;
    let root = env!("CARGO_MANIFEST_DIR");
    let body = std::fs::read(format!("{root}/fixtures/webhooks/claimed_snake_case.json")).unwrap();
    let sig = std::fs::read_to_string(format!("{root}/fixtures/webhooks/claimed_snake_case.sig")).unwrap();
    assert_eq!(app.post_raw("/webhooks/lightspark", body, Some(sig.trim())).await.status(), 200);
    eventually("the fixture is projected", Duration::from_secs(20), || async {
        let (status, v) = app.get_json("/v1/invitations/FIXTURE1").await;
        if status == 200 && v["last_seq"] == 1 {
            Ok(())
        } else {
            Err(format!("{status} {v}"))
        }
    })
    .await;

    let scratch = tempfile::tempdir().unwrap();
    let mut driver = Driver::launch(scratch.path()).await;
    driver.go(&app.url("/")).await;
    let recent = driver.element("#recent").await;
    assert!(driver.text(&recent).await.contains("FIXTURE1"), "the recent invitations list the fixture");

    // Type the code into the search box and submit the form.
    let search = driver.element("form.search input[name=q]").await;
    driver.type_into(&search, "FIXTURE1").await;
    let submit = driver.element("form.search button[type=submit]").await;
    driver.click(&submit).await;

    let shown = text_when(&driver, "q=FIXTURE1", "#search-results").await;
    assert!(shown.contains(FIXTURE_ID), "the invitation id is shown:\n{shown}");
    assert!(shown.contains("CLAIMED"), "its status is shown:\n{shown}");
    let payout_row =
        shown.lines().find(|l| l.starts_with("payout")).unwrap_or_else(|| panic!("a payout row:\n{shown}"));
    assert!(payout_row.contains("pending"), "no PAYOUT_URL: the payout is pending: {payout_row}");
    let search_box = driver.element("form.search input[name=q]").await;
    let kept = driver
        .call(reqwest::Method::GET, &driver.session_path(&format!("/element/{search_box}/property/value")), None)
        .await;
    assert_eq!(kept, "FIXTURE1", "the search box keeps the query");
    driver.screenshot("status-page.png").await;

    driver.quit().await;
    drop(driver);
    app.stop_promptly().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_of_a_paid_invitation_shows_its_signature_verified_in_a_real_browser() {
    // Given an invitation the platform paid
    let payments = FakePlatform::start().await;
    let app = spawn(|a| a.reconcile.payout_url = Some(payments.url.clone())).await;
    let id = "UmaInvitation:browser-paid";
    claim(&app, id).await;
    payout_state(&app, id, "succeeded").await;
    let scratch = tempfile::tempdir().unwrap();
    let mut driver = Driver::launch(scratch.path()).await;

    // When an operator opens it from the home page's recent list
    driver.go(&app.url("/")).await;
    let link = driver.element("#recent a[href^='/invitations/']").await;
    driver.click(&link).await;

    // Then the trail shows the webhook verified with the key, the request and the payment
    let webhook = text_when(&driver, "/invitations/UmaInvitation%3Abrowser-paid", "#seq-1").await;
    assert!(webhook.contains("✓ verified now with key 1 of 1"), "{webhook}");
    assert!(webhook.contains("✓ chain intact at this seq"), "{webhook}");
    let request = driver.text(&driver.element("#seq-2").await).await;
    assert!(request.contains("10.00 USD") && request.contains("$bob-browser-paid@receiving.example"), "{request}");
    let paid = driver.text(&driver.element("#seq-3").await).await;
    assert!(paid.contains("payout.succeeded") && paid.contains("pay_1"), "{paid}");
    // The webhook's body, unfolded, is the pretty-printed JSON.
    driver.click(&driver.element("#seq-1 details summary").await).await;
    let body = driver.text(&driver.element("#seq-1 pre.body").await).await;
    assert!(body.contains("\"event_type\": \"UMA_INVITATION_CLAIMED\","), "{body}");
    driver.execute("document.getElementById('trail').scrollIntoView(); return null;").await;
    driver.screenshot("trail.png").await;

    driver.quit().await;
    drop(driver);
    app.stop_promptly().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_doubt_payment_resolved_from_the_page_is_in_the_ledger_and_on_the_page() {
    // Given a payment in doubt: the platform keeps failing until the 600 ms
    // idempotency window has passed
    let payments = FakePlatform::start().await;
    payments.fail_next(10_000, Fault::Status(500));
    let app = spawn(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.idempotency_window = "600ms".into();
        a.reconcile.request_timeout_ms = 500;
        a.read_api_token = Some(TOKEN.into());
    })
    .await;
    let id = "UmaInvitation:browser-doubt";
    claim(&app, id).await;
    payout_state(&app, id, "in_doubt").await;
    let before = ledger_kinds(&app.db).len();
    let scratch = tempfile::tempdir().unwrap();
    let mut driver = Driver::launch(scratch.path()).await;

    // When the operator opens its page, signs in with the token form, and
    // records it as paid with a note, confirming
    driver.go(&app.url("/invitations/UmaInvitation%3Abrowser-doubt")).await;
    driver.type_into(&driver.element("input[name=token]").await, TOKEN).await;
    driver.click(&driver.element("form button[type=submit]").await).await;
    text_when(&driver, "/invitations/UmaInvitation%3Abrowser-doubt", "#resolve-invitee_payment").await;
    let form = "#resolve-invitee_payment form.paid";
    driver.type_into(&driver.element(&format!("{form} input[name=payment_id]")).await, "pay_checked_by_hand").await;
    driver
        .type_into(&driver.element(&format!("{form} textarea[name=note]")).await, "seen on the platform, ticket OPS-7")
        .await;
    driver.execute("document.getElementById('actions').scrollIntoView(); return null;").await;
    driver.screenshot("resolve-form.png").await;
    driver.click(&driver.element(&format!("{form} button[type=submit]")).await).await;
    let question = text_when(&driver, "/resolve", "#confirm").await;
    driver.screenshot("confirm.png").await;
    assert!(
        question.contains("Record invitee_payment of 10.00 USD to $bob-browser-doubt@receiving.example as paid with payment id pay_checked_by_hand?"),
        "{question}"
    );
    assert_eq!(ledger_kinds(&app.db).len(), before, "nothing recorded before the confirmation");
    driver.click(&driver.element("form.confirm button[type=submit]").await).await;

    // Then the browser is back on the invitation, at the new event, and the ledger has it
    let decided = text_when(&driver, "#seq-", "article.ev:target").await;
    assert!(decided.contains("operator decided paid on invitee_payment (from the page)"), "{decided}");
    assert!(
        decided.contains("pay_checked_by_hand") && decided.contains("seen on the platform, ticket OPS-7"),
        "{decided}"
    );
    let kinds = ledger_kinds(&app.db);
    assert_eq!(kinds.len(), before + 1);
    assert_eq!(kinds.last().map(String::as_str), Some("obligation.resolved"));
    let invitation = driver.text(&driver.element("#invitation").await).await;
    let payout = invitation.lines().find(|l| l.starts_with("payout")).unwrap_or_default().to_owned();
    assert!(payout.contains("succeeded") && payout.contains("pay_checked_by_hand"), "{invitation}");
    driver.screenshot("resolved.png").await;

    driver.quit().await;
    drop(driver);
    app.stop_promptly().await;
}

/// Serves, on `127.0.0.2` (another site than the service's `127.0.0.1`),
/// the page of `pages` whose path the request line names, else the first,
/// until aborted.
async fn attacker_site(pages: Vec<(&'static str, String)>) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("127.0.0.2 is loopback on Linux");
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let pages = pages.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let request_line = String::from_utf8_lossy(&seen).lines().next().unwrap_or_default().to_owned();
                let html = pages
                    .iter()
                    .find(|(path, _)| request_line.starts_with(&format!("GET {path} ")))
                    .unwrap_or(&pages[0])
                    .1
                    .clone();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    html.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(html.as_bytes()).await;
            });
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_post_without_the_csrf_token_is_refused_and_appends_nothing() {
    // Given a failed payment, and an operator signed in to the status page
    let payments = FakePlatform::start().await;
    payments.fail_next(1, Fault::Status(400));
    let app = spawn(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.read_api_token = Some(TOKEN.into());
    })
    .await;
    let id = "UmaInvitation:browser-target";
    claim(&app, id).await;
    payout_state(&app, id, "failed").await;
    let scratch = tempfile::tempdir().unwrap();
    let mut driver = Driver::launch(scratch.path()).await;
    driver.go(&app.url("/")).await;
    driver.type_into(&driver.element("input[name=token]").await, TOKEN).await;
    driver.click(&driver.element("form button[type=submit]").await).await;
    text_when(&driver, "/", "#recent").await;
    let before = ledger_kinds(&app.db).len();

    // When the operator visits another site whose page posts a "paid" form
    // to the service by itself (no CSRF token: it cannot know it)
    let target = app.url("/invitations/UmaInvitation%3Abrowser-target/resolve");
    let attack = format!(
        "<!doctype html><html><body><form id=\"f\" method=\"post\" action=\"{target}\">\
         <input name=\"kind\" value=\"invitee_payment\"><input name=\"decision\" value=\"paid\">\
         <input name=\"payment_id\" value=\"pay_attacker\"><input name=\"confirm\" value=\"yes\"></form>\
         <script>document.getElementById('f').submit()</script></body></html>"
    );
    let page = app.url("/invitations/UmaInvitation%3Abrowser-target");
    let link = format!("<!doctype html><html><body><script>location.href = '{page}'</script></body></html>");
    let (attacker, server) = attacker_site(vec![("/", attack), ("/link", link)]).await;
    driver.go(&attacker).await;

    // Then the browser lands on the service's refusal, and the ledger is unchanged
    let refusal = text_when(&driver, "/resolve", "#message").await;
    assert!(
        refusal.contains("Refused: not sent from this site") && refusal.contains("Nothing was recorded"),
        "{refusal}"
    );
    assert_eq!(ledger_kinds(&app.db).len(), before, "nothing appended");
    payout_state(&app, id, "failed").await;

    // And the browser never sends the session cookie on a request another
    // site starts (SameSite=Strict): led there from the other site, the
    // invitation page asks to sign in; opened directly, it is signed in
    driver.go(&format!("{attacker}link")).await;
    let led = text_when(&driver, "/invitations/", "main section").await;
    assert!(led.contains("Sign in"), "{led}");
    driver.go(&page).await;
    text_when(&driver, "/invitations/", "#resolve-invitee_payment").await;
    assert_eq!(ledger_kinds(&app.db).len(), before, "still nothing appended");

    server.abort();
    driver.quit().await;
    drop(driver);
    app.stop_promptly().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_pages_charts_are_drawn_with_a_size_in_a_real_browser() {
    // Given a few payments made and one refused
    let payments = FakePlatform::start().await;
    let app = spawn(|a| a.reconcile.payout_url = Some(payments.url.clone())).await;
    for n in 1..=3 {
        let id = format!("UmaInvitation:browser-chart-{n}");
        claim(&app, &id).await;
        payout_state(&app, &id, "succeeded").await;
    }
    payments.fail_next(1, Fault::Status(400));
    claim(&app, "UmaInvitation:browser-chart-refused").await;
    payout_state(&app, "UmaInvitation:browser-chart-refused", "failed").await;
    let scratch = tempfile::tempdir().unwrap();
    let mut driver = Driver::launch(scratch.path()).await;

    // When the home page is opened
    driver.go(&app.url("/")).await;
    text_when(&driver, "/", "#activity").await;

    // Then each of the three charts is an SVG drawn with a size, with bars
    let sizes = driver
        .execute(
            "return [...document.querySelectorAll('svg.chart-svg')].map(s => { const r = s.getBoundingClientRect(); \
             return [s.closest('figure').id, r.width, r.height, s.querySelectorAll('g.bar rect, rect.seg').length]; });",
        )
        .await;
    let sizes = sizes.as_array().expect("a list").clone();
    let ids: Vec<&str> = sizes.iter().map(|s| s[0].as_str().unwrap()).collect();
    assert_eq!(ids, ["chart-webhooks", "chart-payments", "chart-obligations"], "{sizes:?}");
    for s in &sizes {
        assert!(s[1].as_f64().unwrap() > 100.0 && s[2].as_f64().unwrap() > 50.0, "drawn with a size: {s}");
        assert!(s[3].as_u64().unwrap() > 0, "with bars: {s}");
    }
    driver.execute("document.getElementById('activity').scrollIntoView(); return null;").await;
    driver.screenshot("charts.png").await;

    driver.quit().await;
    drop(driver);
    app.stop_promptly().await;
}
