//! Decisions recorded against what they were decided from: operators
//! racing each other on the same in-doubt payment, from the page and from
//! the CLI, with the real binary. Of contradictory decisions taken at the
//! same moment exactly one is recorded; the others are told what happened
//! meanwhile, and the platform is paid at most once.

use std::time::Duration;

use crate::support::binary::ServeProcess;
use crate::support::fake_platform::{FakePlatform, Fault};
use crate::support::page::encode;
use crate::support::{count_kind, eventually, json_of, post_signed_to, run_binary, InvitationFixture};

const TOKEN: &str = "a-long-read-api-token-0123456789";

/// Settings under which a payment the platform keeps answering 503 is in
/// doubt after about a second and a half.
fn in_doubt_soon(payments: &FakePlatform) -> Vec<(&'static str, String)> {
    vec![
        ("PAYOUT_URL", payments.url.clone()),
        ("READ_API_TOKEN", TOKEN.to_owned()),
        ("RECONCILE_INTERVAL_MS", "100".to_owned()),
        ("RETRY_BASE_MS", "50".to_owned()),
        ("RETRY_MAX_MS", "100".to_owned()),
        ("REQUEST_TIMEOUT_MS", "500".to_owned()),
        ("IDEMPOTENCY_WINDOW", "2s".to_owned()),
    ]
}

/// Claims `inv` on `service` while the platform answers 503, and waits
/// until its payment is in doubt; the platform answers normally after.
async fn in_doubt_payment(service: &ServeProcess, payments: &FakePlatform, inv: &InvitationFixture) {
    payments.fail_next(10_000, Fault::Status(503));
    let client = reqwest::Client::new();
    let resp = post_signed_to(&client, &service.url("/webhooks/lightspark"), inv.webhook("ev-race")).await;
    assert_eq!(resp.status(), 200);
    let url = service.url(&format!("/v1/invitations/{}", inv.id.replace(':', "%3A")));
    eventually("the payment to be in doubt", Duration::from_secs(30), || async {
        let v = json_of(client.get(&url).bearer_auth(TOKEN)).await?;
        if v["payout"]["state"] == "in_doubt" {
            Ok(())
        } else {
            Err(v["payout"].to_string())
        }
    })
    .await;
    payments.clear_faults();
}

/// One operator, signed in on the invitation's page: their cookie, the
/// form token of their session, and the invitation's version their forms
/// carry (what they saw).
async fn operator(service: &ServeProcess, page: &str) -> (String, String, String) {
    let client = crate::support::page::client();
    let resp = client
        .post(service.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let body = client.get(service.url(page)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let at = body.find(&marker).unwrap_or_else(|| panic!("no {name} field in:\n{body}")) + marker.len();
        body[at..].split('"').next().unwrap().to_owned()
    };
    (cookie, field("csrf"), field("seen"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_contradictory_decisions_taken_at_once_on_the_page_exactly_one_is_recorded() {
    // Given the real service, an in-doubt payment, and ten operators signed
    // in on its page, half about to record it paid, half to send it again
    let payments = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let service = ServeProcess::spawn(db.clone(), in_doubt_soon(&payments)).await;
    let inv = InvitationFixture::claimed("UmaInvitation:raced");
    in_doubt_payment(&service, &payments, &inv).await;
    let page = format!("/invitations/{}", encode(&inv.id));
    let mut operators = Vec::new();
    for _ in 0..10 {
        operators.push(operator(&service, &page).await);
    }
    let resolved_before = count_kind(&db, "obligation.resolved");

    // When they all submit at the same moment
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(operators.len()));
    let mut submits = tokio::task::JoinSet::new();
    for (n, (cookie, csrf, seen)) in operators.into_iter().enumerate() {
        let decision: &[(&str, &str)] = if n % 2 == 0 {
            &[("decision", "paid"), ("payment_id", "pay_found_by_hand"), ("confirm", "yes")]
        } else {
            &[("decision", "retry")]
        };
        let mut fields = vec![("csrf", csrf.as_str()), ("seen", seen.as_str()), ("kind", "invitee_payment")];
        fields.extend_from_slice(decision);
        let body = fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
        let url = service.url(&format!("{page}/resolve"));
        let origin = service.url("");
        let start = start.clone();
        submits.spawn(async move {
            let client = crate::support::page::client();
            let request = client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", origin)
                .header("cookie", cookie)
                .body(body);
            start.wait().await;
            let resp = request.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        });
    }
    let answers = submits.join_all().await;

    // Then exactly one decision is in the ledger; each other submit either
    // repeated that very decision or was told, with 409, what happened meanwhile
    assert_eq!(count_kind(&db, "obligation.resolved"), resolved_before + 1, "{answers:?}");
    let recorded = answers.iter().filter(|(status, _)| *status == 303).count();
    assert!(recorded >= 1, "{answers:?}");
    for (status, body) in &answers {
        assert!(*status == 303 || *status == 409, "{status}: {body}");
        if *status == 409 {
            assert!(body.contains("meanwhile"), "{body}");
        }
    }

    // And the platform is paid at most once: a payment recorded by hand
    // and one made by a retry would be two
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = reqwest::Client::new();
    let url = service.url(&format!("/v1/invitations/{}", inv.id.replace(':', "%3A")));
    let v = json_of(client.get(&url).bearer_auth(TOKEN)).await.unwrap();
    let by_hand = usize::from(v["payout"]["payment_id"] == "pay_found_by_hand");
    let executed = payments.executed().len();
    assert!(by_hand + executed <= 1, "paid by hand {by_hand}, by the platform {executed}: {v}");
    assert_eq!(v["payout"]["state"], "succeeded", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_contradictory_resolves_run_at_once_from_the_cli_exactly_one_is_recorded() {
    // Given an in-doubt payment in a ledger whose service has stopped
    let payments = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let service = ServeProcess::spawn(db.clone(), in_doubt_soon(&payments)).await;
    let inv = InvitationFixture::claimed("UmaInvitation:raced-cli");
    in_doubt_payment(&service, &payments, &inv).await;
    service.kill_async().await;
    let resolved_before = count_kind(&db, "obligation.resolved");

    // When six operators run contradictory `resolve`s at the same moment
    let mut runs = tokio::task::JoinSet::new();
    for n in 0..6 {
        let db = db.clone();
        let code = inv.code.clone();
        runs.spawn(async move {
            let decision: &[&str] = if n % 2 == 0 { &["--paid", "pay_found_by_hand"] } else { &["--retry"] };
            let mut args = vec!["resolve", &code, "invitee_payment"];
            args.extend_from_slice(decision);
            run_binary(&args, &[("LEDGER_DB", db.to_str().unwrap())]).await
        });
    }
    let outputs = runs.join_all().await;

    // Then exactly one decision is recorded, and each refused run exits
    // non-zero saying why: what happened meanwhile, or, for a run that
    // looked after the winner was recorded, that nothing is left to resolve
    assert_eq!(count_kind(&db, "obligation.resolved"), resolved_before + 1);
    for out in &outputs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() {
            assert!(stdout.starts_with("recorded "), "{stdout}");
        } else {
            assert!(stderr.contains("meanwhile") || stderr.contains("nothing to resolve"), "{stderr}");
        }
    }
    assert!(outputs.iter().any(|o| o.status.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_taken_on_another_event_at_the_same_seq_is_refused() {
    // Given an in-doubt payment and an operator signed in on its page,
    // whose forms carry the version they saw: its last seq and that
    // event's hash
    let payments = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let service = ServeProcess::spawn(db.clone(), in_doubt_soon(&payments)).await;
    let inv = InvitationFixture::claimed("UmaInvitation:aba");
    in_doubt_payment(&service, &payments, &inv).await;
    let page = format!("/invitations/{}", encode(&inv.id));
    let (cookie, csrf, seen) = operator(&service, &page).await;
    let (seq, hash) = seen.split_once(':').unwrap_or_else(|| panic!("no hash in the version {seen:?}"));
    assert_eq!(hash.len(), 64, "{seen}");
    let resolved_before = count_kind(&db, "obligation.resolved");
    let submit = |seen: String| {
        let body =
            [("csrf", csrf.as_str()), ("seen", seen.as_str()), ("kind", "invitee_payment"), ("decision", "retry")]
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&");
        crate::support::page::client()
            .post(service.url(&format!("{page}/resolve")))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", service.url(""))
            .header("cookie", cookie.clone())
            .body(body)
            .send()
    };

    // When the decision arrives naming the same seq but another event
    // there, as after the ledger was restored from a backup and grew again
    let other = format!("{seq}:{}", "ab".repeat(32));
    let resp = submit(other).await.unwrap();

    // Then it is refused as a change meanwhile and nothing is recorded
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("meanwhile"), "{body}");
    assert_eq!(count_kind(&db, "obligation.resolved"), resolved_before);

    // And the same decision on the version really shown is recorded
    let resp = submit(seen.clone()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 303, "{}", resp.text().await.unwrap());
    assert_eq!(count_kind(&db, "obligation.resolved"), resolved_before + 1);
}
