//! The status page `GET /` over plain HTTP: what it shows, search, HTML
//! escaping of hostile data, and the token / cookie protection.

use std::time::Duration;

use serde_json::Value;

use crate::support::fake_platform::{FakePlatform, Fault};
use crate::support::page::{client, encode, get};
use crate::support::{InvitationFixture, TestApp};

const FIXTURE_ID: &str = "UmaInvitation:0191a8b6-fixture-0001";
const TOKEN: &str = "a-long-read-api-token-0123456789";

/// Waits until the read API shows `id` and `pred` holds.
async fn projected(app: &TestApp, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    app.invitation_when(id, Duration::from_secs(20), pred).await
}

async fn post_fixture(app: &TestApp) {
    let root = env!("CARGO_MANIFEST_DIR");
    let body = std::fs::read(format!("{root}/fixtures/webhooks/claimed_snake_case.json")).unwrap();
    let sig = std::fs::read_to_string(format!("{root}/fixtures/webhooks/claimed_snake_case.sig")).unwrap();
    let r = app.post_raw("/webhooks/lightspark", body, Some(sig.trim())).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_page_shows_a_claimed_invitation_with_its_code_and_obligation_states() {
    let app = TestApp::spawn_configured(|a| a.key.signing_key = Some("fixture-signing-secret".into())).await;
    let empty = get(&app, "/", &[]).await;
    assert_eq!(empty.status, 200);
    assert!(empty.section("recent").contains("No invitation yet."));

    post_fixture(&app).await;
    projected(&app, FIXTURE_ID, |v| v["last_seq"] == 1).await;

    let page = get(&app, "/", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    assert!(page.body.starts_with("<!doctype html>"));
    assert!(page.body.contains("<form class=\"search\" method=\"get\" action=\"/\""));
    assert!(!page.body.contains("<script"), "no scripts on the page");
    for external in [" src=", "<link", "@import", "url("] {
        assert!(!page.body.contains(external), "no external assets: {external}");
    }

    let recent = page.section("recent");
    for expected in [FIXTURE_ID, "FIXTURE1", "CLAIMED", "$alice@vasp-a.example", "$bob@vasp-b.example", "5.00 USD"] {
        assert!(recent.contains(expected), "recent invitations lack {expected}:\n{recent}");
    }
    // No payment endpoint: payout and notification are due and pending; no
    // incentive configured: pending too (audited, not forwarded).
    assert_eq!(recent.matches("st-pending").count(), 3, "{recent}");

    let attention = page.section("attention");
    assert_eq!(attention.matches("None.").count(), 2, "nothing in doubt or failed:\n{attention}");

    let audit = page.section("audit");
    assert!(audit.contains("$alice@vasp-a.example"), "{audit}");
    assert!(audit.contains("validated <b>1</b>"), "{audit}");
    assert!(page.body.contains("ledger head <b>1</b>"), "{}", page.body);
}

#[tokio::test]
async fn searching_by_code_id_inviter_or_invitee_finds_the_invitations() {
    let app = TestApp::spawn().await;
    let mut a = InvitationFixture::claimed("UmaInvitation:search-a");
    a.inviter_uma = "$carol@c.example".into();
    a.invitee_uma = Some("$dave@d.example".into());
    let mut b = InvitationFixture::claimed("UmaInvitation:search-b");
    b.inviter_uma = "$carol@c.example".into();
    let other = InvitationFixture::claimed("UmaInvitation:search-other");
    for (inv, ev) in [(&a, "ev-a"), (&b, "ev-b"), (&other, "ev-o")] {
        app.claim(inv, ev).await;
    }
    projected(&app, &other.id, |_| true).await;
    projected(&app, &a.id, |_| true).await;
    projected(&app, &b.id, |_| true).await;

    // By code and by id: the invitation's details, obligations included.
    for q in [a.code.as_str(), a.id.as_str()] {
        let page = get(&app, &format!("/?q={}", encode(q)), &[]).await;
        assert_eq!(page.status, 200);
        let found = page.section("search-results");
        assert!(found.contains(&a.id) && found.contains(&a.code), "{q}: {found}");
        assert!(found.contains("idempotency") || found.contains("Idempotency"), "{q}: {found}");
        assert!(!found.contains(&b.id), "{q}: {found}");
        assert!(page.body.contains(&format!("value=\"{}\"", q)), "the box keeps the query");
    }
    // By inviter: both of carol's, not the other one.
    let page = get(&app, &format!("/?q={}", encode("$carol@c.example")), &[]).await;
    let found = page.section("search-results");
    assert!(found.contains(&a.id) && found.contains(&b.id), "{found}");
    assert!(!found.contains(&other.id), "{found}");
    // By invitee.
    let page = get(&app, &format!("/?q={}", encode("$dave@d.example")), &[]).await;
    let found = page.section("search-results");
    assert!(found.contains(&a.id) && !found.contains(&b.id), "{found}");
    // Nothing.
    let page = get(&app, "/?q=NOPE", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.section("search-results").contains("No invitation"), "{}", page.body);
    // An empty query is no search.
    let page = get(&app, "/?q=", &[]).await;
    assert!(!page.body.contains("id=\"search-results\""));
}

#[tokio::test]
async fn hostile_strings_from_a_webhook_are_escaped_and_never_run() {
    let app = TestApp::spawn().await;
    let hostile_invitee = "$<script>alert(1)</script>@x";
    let mut inv = InvitationFixture::claimed("UmaInvitation:hostile");
    inv.invitee_uma = Some(hostile_invitee.into());
    inv.inviter_uma = "$eve\"onmouseover=\"alert(2)@x".into();
    inv.code = "<img src=x onerror=alert(3)>".into();
    app.claim(&inv, "ev-hostile").await;
    let v = projected(&app, &inv.id, |_| true).await;
    assert_eq!(v["invitee_uma"], hostile_invitee, "the projection keeps it verbatim");

    for path in [
        "/".to_owned(),
        format!("/?q={}", encode(hostile_invitee)),
        format!("/?q={}", encode(&inv.code)),
        format!("/?q={}", encode(&inv.inviter_uma)),
    ] {
        let page = get(&app, &path, &[]).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(!page.body.contains("<script"), "{path}: raw <script> on the page:\n{}", page.body);
        assert!(!page.body.contains("<img"), "{path}: raw <img> on the page");
        assert!(!page.body.contains("\"onmouseover"), "{path}: an attribute broke out");
        assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{path}: the invitee is shown, escaped");
    }
    // The search echoes the query, escaped, and finds the invitation.
    let page = get(&app, &format!("/?q={}", encode(hostile_invitee)), &[]).await;
    assert!(page.section("search-results").contains("UmaInvitation:hostile"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_in_doubt_obligations_are_listed_for_an_operator() {
    // A platform that refuses the first payment for good (400) and keeps
    // failing the second with 500s; with a 600 ms idempotency window (100 ms
    // once a 500 ms request is allowed for) the retries stop there: the
    // payment falls in doubt.
    let payments = FakePlatform::start().await;
    payments.fail_next(1, Fault::Status(400));
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.idempotency_window = "600ms".into();
        a.reconcile.request_timeout_ms = 500;
    })
    .await;
    let mut refused = InvitationFixture::claimed("UmaInvitation:refused");
    refused.incentives_status = "PENDING".into();
    app.claim(&refused, "ev-refused").await;
    projected(&app, &refused.id, |v| v["payout"]["state"] == "failed").await;

    payments.fail_next(1000, Fault::Status(500));
    let mut doubt = InvitationFixture::claimed("UmaInvitation:doubt");
    doubt.incentives_status = "PENDING".into();
    app.claim(&doubt, "ev-doubt").await;
    projected(&app, &doubt.id, |v| v["payout"]["state"] == "in_doubt").await;

    let page = get(&app, "/", &[]).await;
    let attention = page.section("attention");
    let (in_doubt, failed) = attention.split_once("<h3>Failed</h3>").expect("two lists");
    assert!(in_doubt.contains("UmaInvitation:doubt") && !in_doubt.contains("UmaInvitation:refused"), "{in_doubt}");
    assert!(in_doubt.contains("invitee_payment"), "{in_doubt}");
    assert!(failed.contains("UmaInvitation:refused") && !failed.contains("UmaInvitation:doubt"), "{failed}");
    assert!(failed.contains("HTTP 400"), "the platform's answer is shown: {failed}");
    assert!(page.body.contains("in doubt <b>1</b>") && page.body.contains("failed <b>1</b>"), "{}", page.body);
}

#[tokio::test]
async fn with_a_token_the_page_wants_the_bearer_or_the_login_cookie() {
    let app = TestApp::spawn_configured(|a| a.read_api_token = Some(TOKEN.into())).await;

    let denied = get(&app, "/", &[]).await;
    assert_eq!(denied.status, 401);
    assert!(denied.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(
        denied.body.contains("<form")
            && denied.body.contains("action=\"/login\"")
            && denied.body.contains("name=\"token\"")
    );
    assert!(!denied.body.contains("Recent invitations"), "nothing is shown without the token");
    assert_eq!(get(&app, "/", &[("authorization", "Bearer wrong")]).await.status, 401);
    assert_eq!(get(&app, "/", &[("cookie", "il_token=wrong")]).await.status, 401);

    let bearer = format!("Bearer {TOKEN}");
    let ok = get(&app, "/", &[("authorization", &bearer)]).await;
    assert_eq!(ok.status, 200);
    assert!(ok.body.contains("Recent invitations"));

    // Login: a wrong token is refused with the form again, no cookie.
    let login = |token: &str| {
        client()
            .post(app.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={}", encode(token)))
            .send()
    };
    let wrong = login("not-the-token").await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await.unwrap().contains("action=\"/login\""));

    // The right token sets the cookie and sends the browser to the page.
    let right = login(TOKEN).await.unwrap();
    assert_eq!(right.status(), 303);
    assert_eq!(right.headers()["location"], "/");
    let cookie = right.headers()["set-cookie"].to_str().unwrap().to_owned();
    let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attrs[0].starts_with("il_token="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(attrs.contains(&attr), "{cookie} lacks {attr}");
    }
    // The cookie holds a session derived from the token, never the token;
    // over plain HTTP it is not marked Secure (it would never be sent back).
    assert!(!cookie.contains(TOKEN) && !cookie.contains(&encode(TOKEN)), "the raw token in {cookie}");
    assert!(!attrs.contains(&"Secure"), "{cookie}");
    assert_eq!(get(&app, "/", &[("cookie", &format!("il_token={TOKEN}"))]).await.status, 401);
    let with_cookie = get(&app, "/", &[("cookie", &format!("theme=dark; {}", attrs[0]))]).await;
    assert_eq!(with_cookie.status, 200);
    assert!(with_cookie.body.contains("Recent invitations"));

    // The cookie opens the page only, not the JSON API.
    let api = client().get(app.url("/v1/invitations")).header("cookie", attrs[0]).send().await.unwrap();
    assert_eq!(api.status(), 401);

    // Behind a TLS-terminating proxy, the cookie is Secure.
    let proxied = client()
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-proto", "https")
        .body(format!("token={}", encode(TOKEN)))
        .send()
        .await
        .unwrap();
    let secure = proxied.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(secure.split(';').map(str::trim).any(|a| a == "Secure"), "{secure}");

    // An oversized login form is refused before it is read.
    let huge = client().post(app.url("/login")).body(vec![b'a'; 10_000]).send().await.unwrap();
    assert_eq!(huge.status(), 413);
}

#[tokio::test]
async fn head_of_the_status_page_answers_as_get_does_without_a_body() {
    // Given the service open to loopback, and one that wants a token
    let open = TestApp::spawn().await;
    let guarded = TestApp::spawn_configured(|a| a.read_api_token = Some(TOKEN.into())).await;

    // When an uptime check sends HEAD /
    let head = |app: &TestApp| client().head(app.url("/")).send();
    let (open_head, guarded_head) = (head(&open).await.unwrap(), head(&guarded).await.unwrap());

    // Then it gets GET's status and headers, and no body
    assert_eq!(open_head.status(), 200, "not 405");
    assert!(open_head.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(open_head.bytes().await.unwrap().is_empty());
    assert_eq!(guarded_head.status(), 401, "HEAD is guarded as GET is");
    assert!(guarded_head.bytes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_row_needing_an_operator_shows_the_amount_the_receiver_and_since_when() {
    // Given an invitation of 12,345.67 EUR whose payment and 1.00 USD
    // incentive (`100:USD`) the platform both refused for good
    let payments = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.inviter_incentive = Some("100:USD".into());
    })
    .await;
    payments.fail_next(2, Fault::Status(400));
    let mut inv = InvitationFixture::claimed("UmaInvitation:triage");
    inv.payment_amount = Some(1_234_567);
    inv.currency = ("EUR", 2);
    app.claim(&inv, "ev-triage").await;
    projected(&app, &inv.id, |v| v["payout"]["state"] == "failed" && v["incentive"]["state"] == "failed").await;

    // When an operator opens the status page
    let page = get(&app, "/", &[]).await;

    // Then each failed row says how much, to whom, and since when, without a click
    let attention = page.section("attention");
    let (_, failed) = attention.split_once("<h3>Failed</h3>").expect("two lists");
    for heading in ["Amount", "Receiver", "Since"] {
        assert!(failed.contains(&format!("<th>{heading}</th>")), "a {heading} column:\n{failed}");
    }
    let row = |kind: &str| {
        failed.split("<tr>").find(|r| r.contains(kind)).unwrap_or_else(|| panic!("a {kind} row:\n{failed}")).to_owned()
    };
    let payout = row("invitee_payment");
    assert!(payout.contains("12345.67 EUR") && payout.contains(inv.invitee_uma.as_deref().unwrap()), "{payout}");
    let incentive = row("inviter_incentive");
    assert!(incentive.contains("1.00 USD") && incentive.contains(&inv.inviter_uma), "{incentive}");
    for r in [&payout, &incentive] {
        assert!(r.contains("since <time datetime=\"") && r.contains(" UTC</time>"), "since when, in UTC: {r}");
    }
    assert!(!failed.contains("100 USD") && !failed.contains("1234567"), "never in minor units:\n{failed}");
}
