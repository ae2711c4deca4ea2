//! Acting from an invitation's page: resolve and refetch as forms, their
//! protection (a token configured, this site's Origin, a session, the
//! session's CSRF token), the confirmation step for "paid", and the CLI's
//! `resolve --note` writing the same event.

use std::time::Duration;

use crate::invitation_page::{event_body, page_path};
use crate::support::fake_platform::{FakePlatform, Fault};
use crate::support::page::{client, encode, get, Page};
use crate::support::{ledger_len, ledger_rows, run_binary, InvitationFixture, TestApp};

const TOKEN: &str = "a-long-read-api-token-0123456789";

/// An invitation whose payment the platform refused for good (400): a
/// failed obligation, which an operator may resolve.
async fn failed_payment(app: &TestApp, payments: &FakePlatform, id: &str) -> InvitationFixture {
    payments.fail_next(1, Fault::Status(400));
    let mut inv = InvitationFixture::claimed(id);
    inv.incentives_status = "PENDING".into();
    app.claim(&inv, &format!("ev-{id}")).await;
    app.invitation_when(&inv.id, Duration::from_secs(20), |v| v["payout"]["state"] == "failed").await;
    inv
}

/// Signs in with the token form; the cookie to send back.
async fn sign_in(app: &TestApp) -> String {
    let resp = client()
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned()
}

/// The first form token on the page.
fn csrf_of(page: &Page) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = page.body.find(marker).unwrap_or_else(|| panic!("no CSRF field in:\n{}", page.body)) + marker.len();
    page.body[at..at + 64].to_owned()
}

/// `application/x-www-form-urlencoded` of `fields`.
fn form(fields: &[(&str, &str)]) -> String {
    fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

async fn post(app: &TestApp, path: &str, headers: &[(&str, &str)], body: String) -> Page {
    let mut req = client().post(app.url(path)).header("content-type", "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body).send().await.unwrap();
    Page { status: resp.status().as_u16(), headers: resp.headers().clone(), body: resp.text().await.unwrap() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_forms_are_disabled_and_a_post_appends_nothing() {
    // Given a service without READ_API_TOKEN and a failed payment
    let payments = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| a.reconcile.payout_url = Some(payments.url.clone())).await;
    let inv = failed_payment(&app, &payments, "UmaInvitation:no-token").await;

    // When its page is opened
    let page = get(&app, &page_path(&inv.id), &[]).await;

    // Then the forms are there, disabled, and say how to enable them
    let actions = page.part("section", "actions");
    assert!(actions.contains("set READ_API_TOKEN to enable actions"), "{actions}");
    assert!(actions.contains("id=\"resolve-invitee_payment\""), "{actions}");
    assert!(actions.contains("<fieldset class=\"acts\" disabled>"), "{actions}");
    assert!(!actions.contains("name=\"csrf\""), "{actions}");

    // And a POST is refused from this site too, appending nothing
    let before = ledger_len(&app.db);
    let origin = app.url("");
    let fields = [("kind", "invitee_payment"), ("decision", "failed")];
    let answer = post(&app, &format!("{}/resolve", page_path(&inv.id)), &[("origin", &origin)], form(&fields)).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains("Set READ_API_TOKEN to enable actions"), "{}", answer.body);
    let refetch = post(&app, &format!("{}/refetch", page_path(&inv.id)), &[("origin", &origin)], String::new()).await;
    assert_eq!(refetch.status, 403);
    assert_eq!(ledger_len(&app.db), before);
}

/// A service with a read token (actions enabled) paying through a fake
/// platform.
async fn guarded_service() -> (FakePlatform, TestApp) {
    let payments = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.read_api_token = Some(TOKEN.into());
    })
    .await;
    (payments, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_a_post_needs_this_sites_origin_a_session_and_the_forms_token() {
    // Given a token, a failed payment, and an operator signed in on its page
    let (payments, app) = guarded_service().await;
    let bearer = format!("Bearer {TOKEN}");
    let id = "UmaInvitation:guarded";
    payments.fail_next(1, Fault::Status(400));
    let mut inv = InvitationFixture::claimed(id);
    inv.incentives_status = "PENDING".into();
    app.claim(&inv, "ev-guarded").await;
    crate::support::eventually("the payment to fail", Duration::from_secs(20), || async {
        let url = app.url(&page_path(id).replace("/invitations/", "/v1/invitations/"));
        let v = crate::support::json_of(app.client.get(url).bearer_auth(TOKEN)).await?;
        if v["payout"]["state"] == "failed" {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    let signed_out = get(&app, &page_path(id), &[]).await;
    assert_eq!(signed_out.status, 401);
    assert!(signed_out.body.contains(&format!("name=\"next\" value=\"{}\"", page_path(id))), "{}", signed_out.body);
    let cookie = sign_in(&app).await;
    let page = get(&app, &page_path(id), &[("cookie", &cookie)]).await;
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page);
    assert!(page.part("section", "actions").contains("<fieldset class=\"acts\">"), "enabled forms");
    let path = format!("{}/resolve", page_path(id));
    let origin = app.url("");
    let fields =
        |csrf: &str| form(&[("csrf", csrf), ("kind", "invitee_payment"), ("decision", "failed"), ("note", "x")]);
    let before = ledger_len(&app.db);

    // When a POST lacks the form token, carries a stale one, comes from another
    // site, or is not signed in
    let no_csrf = post(
        &app,
        &path,
        &[("origin", &origin), ("cookie", &cookie)],
        form(&[("kind", "invitee_payment"), ("decision", "failed")]),
    )
    .await;
    let stale = post(&app, &path, &[("origin", &origin), ("cookie", &cookie)], fields(&"0".repeat(64))).await;
    let foreign = post(&app, &path, &[("origin", "http://127.0.0.2:9999"), ("cookie", &cookie)], fields(&csrf)).await;
    let opaque = post(&app, &path, &[("origin", "null"), ("cookie", &cookie)], fields(&csrf)).await;
    let no_origin = post(&app, &path, &[("cookie", &cookie)], fields(&csrf)).await;
    let foreign_referer =
        post(&app, &path, &[("referer", "http://evil.example/x"), ("cookie", &cookie)], fields(&csrf)).await;
    let anonymous = post(&app, &path, &[("origin", &origin)], fields(&csrf)).await;
    let refetch_foreign = post(
        &app,
        &format!("{}/refetch", page_path(id)),
        &[("origin", "http://evil.example"), ("cookie", &cookie)],
        fields(&csrf),
    )
    .await;

    // Then each is refused, saying why, and nothing is appended
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    assert!(no_csrf.body.contains("token is missing or stale"), "{}", no_csrf.body);
    assert_eq!(stale.status, 403);
    for refused in [&foreign, &opaque, &no_origin, &foreign_referer, &refetch_foreign] {
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert!(refused.body.contains("not sent from this site"), "{}", refused.body);
    }
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert!(anonymous.body.contains("action=\"/login\""));
    assert_eq!(ledger_len(&app.db), before, "nothing appended");

    // And with everything right (a bearer token works as the session too) it is recorded
    let by_bearer = get(&app, &page_path(id), &[("authorization", &bearer)]).await;
    let done =
        post(&app, &path, &[("origin", &origin), ("authorization", &bearer)], fields(&csrf_of(&by_bearer))).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(ledger_len(&app.db), before + 1);

    // And without API credentials, refetch says which settings it needs
    // and fetches nothing
    let refetch = post(
        &app,
        &format!("{}/refetch", page_path(id)),
        &[("origin", &origin), ("cookie", &cookie)],
        form(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(refetch.status, 502, "{}", refetch.body);
    assert!(refetch.body.contains("LIGHTSPARK_API_CLIENT_ID"), "{}", refetch.body);
    assert_eq!(ledger_len(&app.db), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_a_payment_as_paid_takes_a_confirmation_then_is_in_the_ledger_and_the_trail_with_its_note() {
    // Given a token, a failed payment, and an operator on its page
    let (payments, app) = guarded_service().await;
    let bearer = format!("Bearer {TOKEN}");
    let mut inv = InvitationFixture::claimed("UmaInvitation:paid-by-hand");
    inv.incentives_status = "PENDING".into();
    payments.fail_next(1, Fault::Status(400));
    app.claim(&inv, "ev-by-hand").await;
    crate::support::eventually("the payment to fail", Duration::from_secs(20), || async {
        let page = get(&app, &page_path(&inv.id), &[("authorization", &bearer)]).await;
        if page.body.contains("id=\"resolve-invitee_payment\"") {
            Ok(())
        } else {
            Err("not failed yet".to_owned())
        }
    })
    .await;
    let cookie = sign_in(&app).await;
    let page = get(&app, &page_path(&inv.id), &[("cookie", &cookie)]).await;
    let csrf = csrf_of(&page);
    let path = format!("{}/resolve", page_path(&inv.id));
    let origin = app.url("");
    let headers = [("origin", origin.as_str()), ("cookie", cookie.as_str())];
    let before = ledger_len(&app.db);

    // When the operator records it as paid, first without confirming
    let paid = [
        ("csrf", csrf.as_str()),
        ("kind", "invitee_payment"),
        ("decision", "paid"),
        ("payment_id", "pay_manual_7"),
        ("note", "found on the platform's dashboard, ticket OPS-12"),
    ];
    let asked = post(&app, &path, &headers, form(&paid)).await;

    // Then they are asked to confirm, and nothing is recorded yet
    assert_eq!(asked.status, 200, "{}", asked.body);
    let question = format!(
        "Record <b>invitee_payment</b> of <b>10.00 USD</b> to <b>{}</b> as <b>paid</b> with payment id <b class=\"mono\">pay_manual_7</b>?",
        inv.invitee_uma.as_deref().unwrap()
    );
    assert!(asked.body.contains(&question), "{}", asked.body);
    assert!(asked.body.contains("name=\"confirm\" value=\"yes\""));
    assert_eq!(ledger_len(&app.db), before);

    // When they confirm
    let mut confirmed = paid.to_vec();
    confirmed.push(("confirm", "yes"));
    let done = post(&app, &path, &headers, form(&confirmed)).await;

    // Then it is appended once, as the CLI would, with the note, and the browser goes to the new event
    assert_eq!(done.status, 303, "{}", done.body);
    let rows = ledger_rows(&app.db);
    assert_eq!(rows.len(), before + 1);
    let (seq, key, kind) = rows.last().unwrap().clone();
    assert_eq!(kind, "obligation.resolved");
    assert!(key.ends_with(":paid"), "{key}");
    assert_eq!(done.headers["location"].to_str().unwrap(), format!("{}#seq-{seq}", page_path(&inv.id)));
    let body = event_body(&app.db, seq);
    assert_eq!(body["decision"], "paid");
    assert_eq!(body["payment_id"], "pay_manual_7");
    assert_eq!(body["note"], "found on the platform's dashboard, ticket OPS-12");
    assert_eq!(body["by"], "page");
    let page = get(&app, &page_path(&inv.id), &[("cookie", &cookie)]).await;
    let card = page.part("article", &format!("seq-{seq}"));
    assert!(card.contains("operator decided paid on invitee_payment (from the page)"), "{card}");
    assert!(
        card.contains("found on the platform's dashboard, ticket OPS-12") && card.contains("pay_manual_7"),
        "{card}"
    );
    let payout = app.client.get(app.url(&format!("/v1/invitations/{}", inv.id.replace(':', "%3A")))).bearer_auth(TOKEN);
    let v: serde_json::Value = payout.send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (v["payout"]["state"].as_str(), v["payout"]["payment_id"].as_str()),
        (Some("succeeded"), Some("pay_manual_7"))
    );

    // And deciding again on a settled obligation is refused, appending nothing
    let again = post(&app, &path, &headers, form(&confirmed)).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("is succeeded, not in_doubt or failed: nothing to resolve"), "{}", again.body);
    assert_eq!(ledger_len(&app.db), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_resolve_records_its_note_and_says_it_came_from_the_cli() {
    // Given a failed payment in a ledger no service holds
    let payments = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| a.reconcile.payout_url = Some(payments.url.clone())).await;
    let inv = failed_payment(&app, &payments, "UmaInvitation:cli-note").await;
    let db = app.db.clone();
    let _dir = app.stop_promptly().await;

    // When the operator gives up on it with a note
    let out = run_binary(
        &["resolve", &inv.code, "invitee_payment", "--failed", "--note", "refused twice by the platform"],
        &[("LEDGER_DB", db.to_str().unwrap())],
    )
    .await;

    // Then the decision is in the ledger with the note, from the CLI
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with("recorded failed for UmaInvitation:cli-note invitee_payment at seq"));
    let (seq, _, kind) = ledger_rows(&db).last().unwrap().clone();
    assert_eq!(kind, "obligation.resolved");
    let body = event_body(&db, seq);
    assert_eq!((body["note"].as_str(), body["by"].as_str()), (Some("refused twice by the platform"), Some("cli")));
}
