//! The status page in a real headless Chromium, driven through
//! chromedriver's W3C WebDriver HTTP API ([`driver`]): searching for an
//! invitation, the money trail of a paid one with its verified signature,
//! an in-doubt payment resolved from the page, a cross-site POST refused,
//! the charts drawn, and both pages at desktop width and at 400 px (nothing
//! spilling sideways, ids whole, amounts in their decimals, times in UTC).
//! Leaves screenshots for people to look at: `target/status-page.png`,
//! `target/trail.png`, `target/resolve-form.png`, `target/confirm.png`,
//! `target/resolved.png`, `target/charts.png`, `target/status-wide.png`,
//! `target/status-narrow.png`, `target/invitation-wide.png`,
//! `target/invitation-narrow.png`.
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

/// Signs and posts a claim of `id` for 12,345.67 EUR, dated `updated_at`,
/// its incentive validated; without `invitee`, only the incentive is owed.
async fn claim_in_euros(app: &TestApp, id: &str, event: &str, invitee: Option<&str>, updated_at: &str) {
    let mut data = json!({
        "id": id, "code": "CODE-EUR", "url": "https://uma.me/i/eur", "inviter_uma": "$alice@sending.example",
        "status": "CLAIMED", "incentives_status": "VALIDATED", "updated_at": updated_at,
        "payment_amount": {"value": 1_234_567, "currency": {"code": "EUR", "decimals": 2}}
    });
    if let Some(invitee) = invitee {
        data["invitee_uma"] = invitee.into();
    }
    let body = json!({"event_type": "UMA_INVITATION_CLAIMED", "event_id": event, "timestamp": updated_at,
                      "entity_id": id, "data": data})
    .to_string();
    let signature = invitation_ledger::lightspark::signature::sign(secret::SECRET.as_bytes(), body.as_bytes());
    assert_eq!(app.post_raw("/webhooks/lightspark", body.into_bytes(), Some(&signature)).await.status(), 200);
}

/// Waits until the read API shows `id`'s `obligation` (`payout`,
/// `incentive`) in `state`.
async fn obligation_state(app: &TestApp, id: &str, obligation: &str, state: &str) {
    let url = app.url(&format!("/v1/invitations/{}", id.replace(':', "%3A")));
    eventually(&format!("{id}'s {obligation} to be {state}"), Duration::from_secs(30), || async {
        let v = json_of(app.client.get(&url)).await?;
        if v[obligation]["state"] == state {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
}

/// What the page in the browser shows of its layout: `[document width,
/// window width, ids broken over two lines or more, visible text in raw
/// RFC 3339, <time> elements without their exact value]`.
async fn layout(driver: &Driver) -> serde_json::Value {
    driver
        .execute(
            "const lines = e => { const w = document.createTreeWalker(e, NodeFilter.SHOW_TEXT); const tops = []; \
               for (let t = w.nextNode(); t; t = w.nextNode()) { const r = document.createRange(); r.selectNodeContents(t); \
                 for (const c of r.getClientRects()) if (c.width > 0) tops.push(c.top); } \
               tops.sort((a, b) => a - b); return tops.filter((t, i) => i === 0 || t - tops[i - 1] > 6).length; }; \
             const broken = [...document.querySelectorAll('td a, td code, td .short, td.mono, td.id')] \
               .filter(e => lines(e) > 1).map(e => e.textContent); \
             const raw = document.body.innerText.match(/\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d[^\\s]*/g) || []; \
             const bare = [...document.querySelectorAll('time')].filter(t => !t.dateTime || !t.title).map(t => t.outerHTML); \
             return [document.documentElement.scrollWidth, window.innerWidth, broken, raw, bare];",
        )
        .await
}

/// Checks `layout` at the width set: nothing wider than the window, no id
/// broken, every time readable with its exact value on hover.
fn assert_fits(layout: &serde_json::Value, width: u64, page: &str) {
    assert_eq!(layout[1], width, "{page}: the window is {width} px wide: {layout}");
    assert!(layout[0].as_u64().unwrap() <= width, "{page}: nothing spills sideways at {width} px: {layout}");
    assert_eq!(layout[2], json!([]), "{page}: no id is broken over two lines at {width} px");
    assert_eq!(layout[3], json!([]), "{page}: no time is shown as raw RFC 3339");
    assert_eq!(layout[4], json!([]), "{page}: every time has its exact value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_fit_400_px_and_show_each_amount_in_its_currencys_decimals() {
    // Given an incentive of 1.00 USD (`100:USD`) and an invitation of
    // 12,345.67 EUR: the platform refused its incentive for good, then paid
    // its invitee after an outage of twelve 503s
    let payments = FakePlatform::start().await;
    let app = spawn(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.inviter_incentive = Some("100:USD".into());
    })
    .await;
    let id = "UmaInvitation:browser-eur";
    payments.fail_next(1, Fault::Status(400));
    claim_in_euros(&app, id, "ev-eur-1", None, "2026-11-01T12:00:00.000000+00:00").await;
    obligation_state(&app, id, "incentive", "failed").await;
    payments.fail_next(12, Fault::Status(503));
    let invitee = "$bob-with-a-rather-long-name@receiving-vasp.example";
    claim_in_euros(&app, id, "ev-eur-2", Some(invitee), "2026-11-01T14:05:00.000000+01:00").await;
    obligation_state(&app, id, "payout", "succeeded").await;
    let scratch = tempfile::tempdir().unwrap();
    let mut driver = Driver::launch(scratch.path()).await;

    // When an operator opens the status page on a desktop
    driver.go(&app.url("/")).await;
    let attention = text_when(&driver, "/", "#attention").await;

    // Then the refused incentive's row says how much, to whom and since when
    let row = attention.lines().find(|l| l.contains("inviter_incentive")).unwrap_or_default();
    assert!(row.contains("1.00 USD") && row.contains("$alice@sending.example") && row.contains("since"), "{attention}");
    let recent = driver.text(&driver.element("#recent").await).await;
    assert!(recent.contains("12345.67 EUR"), "{recent}");
    assert_fits(&layout(&driver).await, 1280, "the status page");
    driver.screenshot("status-wide.png").await;

    // And on a screen 400 px wide it still fits
    driver.set_viewport(400, 1400).await;
    driver.go(&app.url("/")).await;
    text_when(&driver, "/", "#attention").await;
    assert_fits(&layout(&driver).await, 400, "the status page");
    driver.screenshot("status-narrow.png").await;

    // When the invitation's page is opened on a desktop
    driver.set_viewport(1280, 2000).await;
    driver.go(&app.url("/invitations/UmaInvitation%3Abrowser-eur")).await;
    let facts = text_when(&driver, "/invitations/", "#invitation").await;

    // Then its amount is in euros and its incentive in dollars, each in its decimals
    assert!(facts.contains("12345.67 EUR"), "{facts}");
    assert!(facts.contains("1.00 USD to $alice@sending.example"), "{facts}");
    let actions = driver.text(&driver.element("#actions").await).await;
    assert!(actions.contains("1.00 USD to $alice@sending.example"), "{actions}");
    let all = driver.execute("return document.body.innerText;").await;
    assert!(!all.as_str().unwrap().contains("100 USD"), "never the incentive in cents as dollars");
    driver.execute("document.getElementById('trail').scrollIntoView(); return null;").await;
    driver.screenshot("invitation-wide.png").await;
    // And the outage is a few short rows, not a card per call
    let rows = driver
        .execute(
            "return [...document.querySelectorAll('article.attempt')].filter(a => a.checkVisibility()) \
             .map(a => a.getBoundingClientRect().height);",
        )
        .await;
    let rows: Vec<f64> = rows.as_array().unwrap().iter().map(|h| h.as_f64().unwrap()).collect();
    assert!(!rows.is_empty() && rows.len() < 10, "the earlier calls are folded: {rows:?}");
    assert!(rows.iter().all(|h| *h < 40.0), "one line each: {rows:?}");
    let trail = driver.execute("return document.getElementById('trail').getBoundingClientRect().height;").await;
    // (two webhook cards and five rows; a card for each of the 28 calls
    // took over 6,000 px)
    assert!(trail.as_f64().unwrap() < 1500.0, "the trail stays short: {trail}");
    assert_fits(&layout(&driver).await, 1280, "the invitation page");

    // And on a screen 400 px wide it still fits, with a row's details unfolded
    driver.set_viewport(400, 1400).await;
    driver.go(&app.url("/invitations/UmaInvitation%3Abrowser-eur")).await;
    text_when(&driver, "/invitations/", "#trail").await;
    driver.click(&driver.element("#trail > article.attempt:last-of-type > details > summary").await).await;
    assert_fits(&layout(&driver).await, 400, "the invitation page");
    driver.execute("document.getElementById('trail').scrollIntoView(); return null;").await;
    driver.screenshot("invitation-narrow.png").await;

    driver.quit().await;
    drop(driver);
    app.stop_promptly().await;
}
