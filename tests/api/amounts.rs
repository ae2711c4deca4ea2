//! Every amount an operator or the platform reads carries its currency's
//! decimals: the invitation's own (as its source stated them) and the
//! configured incentive's (`INVITER_INCENTIVE`, from ISO 4217), also when
//! the two currencies differ. One test per surface: the invitation page,
//! the request sent to the platform, the incentive audit (page, API, CLI)
//! and `status`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::invitation_page::page_path;
use crate::support::fake_platform::{FakePlatform, Fault};
use crate::support::page::get;
use crate::support::{run_binary, InvitationFixture, TestApp};

/// A service that forwards an incentive of 1.00 USD (`100:USD`, in cents)
/// through `payments`.
async fn forwarding_one_dollar(payments: &FakePlatform) -> TestApp {
    TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.inviter_incentive = Some("100:USD".into());
    })
    .await
}

/// A claimed invitation of 12,345.67 EUR with its incentive validated.
fn in_euros(id: &str) -> InvitationFixture {
    let mut inv = InvitationFixture::claimed(id);
    inv.payment_amount = Some(1_234_567);
    inv.currency = ("EUR", 2);
    inv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incentive_in_another_currency_than_the_invitations_shows_in_its_own_decimals_on_the_page() {
    // Given an invitation in EUR whose 1.00 USD incentive the platform
    // refused for good (no invitee yet, so the incentive is the only call)
    let payments = FakePlatform::start().await;
    let app = forwarding_one_dollar(&payments).await;
    let mut inv = in_euros("UmaInvitation:eur-incentive-refused");
    inv.invitee_uma = None;
    payments.fail_next(1, Fault::Status(400));
    app.claim(&inv, "ev-eur-incentive").await;
    app.invitation_when(&inv.id, Duration::from_secs(20), |v| v["incentive"]["state"] == "failed").await;

    // When an operator opens its page to resolve the incentive
    let page = get(&app, &page_path(&inv.id), &[]).await;

    // Then the invitation's amount shows in euros and the incentive in
    // dollars, each with its own decimals: in the facts, in what was asked,
    // in the resolve form and in the trail's request
    assert_eq!(page.status, 200);
    let facts = page.part("section", "invitation");
    assert!(facts.contains("12345.67 EUR"), "{facts}");
    let asked = format!("1.00 USD to {}", inv.inviter_uma);
    assert!(facts.contains(&asked), "the obligations table shows what was asked, {asked}:\n{facts}");
    let actions = page.part("section", "actions");
    assert!(actions.contains(&asked), "the resolve form names {asked}:\n{actions}");
    let request = page.part("article", "seq-2");
    assert!(request.contains("incentive.requested") && request.contains("1.00 USD"), "{request}");
    assert!(!page.body.contains("100 USD"), "never the incentive in cents as dollars:\n{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incentive_request_tells_the_platform_the_decimals_of_the_configured_currency() {
    // Given an invitation in EUR and an incentive configured as 100:USD
    let payments = FakePlatform::start().await;
    let app = forwarding_one_dollar(&payments).await;
    let inv = in_euros("UmaInvitation:eur-incentive-sent");

    // When the reconciler forwards the incentive and pays the invitee
    app.claim(&inv, "ev-eur-sent").await;
    let v = app
        .invitation_when(&inv.id, Duration::from_secs(20), |v| {
            v["incentive"]["state"] == "succeeded" && v["payout"]["state"] == "succeeded"
        })
        .await;

    // Then each request carries its own currency's decimals, and the
    // projection shows the same as what was asked
    let amount_of = |kind: &str| {
        let r = payments.requests().into_iter().find(|r| r.body["kind"] == kind).expect("a request of that kind");
        r.body["amount"].clone()
    };
    assert_eq!(amount_of("inviter_incentive"), json!({"value": 100, "currency": "USD", "decimals": 2}));
    assert_eq!(amount_of("invitee_payment"), json!({"value": 1_234_567, "currency": "EUR", "decimals": 2}));
    assert_eq!(v["incentive"]["requested"]["amount"], json!({"value": 100, "currency": "USD", "decimals": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_shows_forwarded_incentives_with_decimals_and_its_json_keeps_minor_units() {
    // Given two incentives of 1.00 USD forwarded for invitations in EUR
    let payments = FakePlatform::start().await;
    let app = forwarding_one_dollar(&payments).await;
    for n in 1..=2 {
        let inv = in_euros(&format!("UmaInvitation:eur-audit-{n}"));
        app.claim(&inv, &format!("ev-eur-audit-{n}")).await;
        app.invitation_when(&inv.id, Duration::from_secs(20), |v| v["incentive"]["state"] == "succeeded").await;
    }
    let db = app.db.to_str().unwrap().to_owned();

    // When the audit is read on the page, from the API and from the CLI
    let page = get(&app, "/", &[]).await;
    let (status, api) = app.get_json("/v1/audit/incentives").await;
    let text = run_binary(&["audit", "incentives"], &[("LEDGER_DB", &db)]).await;
    let text = String::from_utf8_lossy(&text.stdout).into_owned();

    // Then the page and the CLI say 2.00 USD forwarded, 1.00 USD each
    let audit = page.part("section", "audit");
    assert!(audit.contains("forwarded <b>2.00 USD</b>"), "{audit}");
    assert!(!audit.contains("200 USD"), "{audit}");
    assert!(text.contains("forwarded=2.00 USD"), "{text}");
    assert_eq!(text.matches(" 1.00 USD ").count(), 2, "each incentive with its decimals:\n{text}");
    // And the JSON keeps integers in the smallest unit, the decimals beside them
    assert_eq!(status, 200);
    assert_eq!(api["totals"]["forwarded"], json!({"USD": 200}));
    let amounts: Vec<&Value> =
        api["inviters"][0]["invitations"].as_array().unwrap().iter().map(|i| &i["incentive"]["amount"]).collect();
    assert_eq!(amounts, [&json!({"value": 100, "currency": "USD", "decimals": 2}); 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_amounts_with_their_decimals_not_in_minor_units() {
    // Given an invitation of 12,345.67 EUR paid, its 1.00 USD incentive forwarded
    let payments = FakePlatform::start().await;
    let app = forwarding_one_dollar(&payments).await;
    let inv = in_euros("UmaInvitation:eur-status");
    app.claim(&inv, "ev-eur-status").await;
    app.invitation_when(&inv.id, Duration::from_secs(20), |v| {
        v["incentive"]["state"] == "succeeded" && v["payout"]["state"] == "succeeded"
    })
    .await;

    // When `status` prints it
    let out = run_binary(&["status", &inv.code], &[("LEDGER_DB", app.db.to_str().unwrap())]).await;
    let text = String::from_utf8_lossy(&out.stdout);

    // Then the amount and what each obligation asked carry their decimals
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("amount 12345.67 EUR"), "{text}");
    assert!(!text.contains("1234567"), "{text}");
    let line = |label: &str| {
        text.lines().find(|l| l.starts_with(&format!("{label} "))).unwrap_or_else(|| panic!("{label}: {text}"))
    };
    assert!(line("payout").contains("asked 12345.67 EUR to $invitee-"), "{text}");
    assert!(line("incentive").contains(&format!("asked 1.00 USD to {}", inv.inviter_uma)), "{text}");
}
