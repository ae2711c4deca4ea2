//! The incentive audit through HTTP and the CLI: totals and seqs of a
//! healthy ledger, and the anomalies of a hand-crafted bad one.

use std::collections::BTreeSet;
use std::time::Duration;

use invitation_ledger::money::Money;
use invitation_ledger::projection::events::{
    IdempotencyKey, InternalEvent, ObligationKind, ObligationRequested, ObligationSucceeded,
};
use serde_json::{json, Value};

use crate::support::fake_platform::FakePlatform;
use crate::support::{append_events, eventually, run_binary, serve_args, InvitationFixture, TestApp, SECRET};

const SETTLE: Duration = Duration::from_secs(20);
const ALICE: &str = "$alice@sending.example";
const BOB: &str = "$bob@sending.example";
const CAROL: &str = "$carol@sending.example";

fn invitation(id: &str, inviter: &str, status: &str, incentives: &str) -> InvitationFixture {
    let mut f = InvitationFixture::claimed(id);
    f.inviter_uma = inviter.to_owned();
    f.status = status.to_owned();
    f.incentives_status = incentives.to_owned();
    f.payment_amount = None;
    f
}

fn key(id: &str) -> String {
    IdempotencyKey::of(id, ObligationKind::InviterIncentive).to_string()
}

async fn audit_cli(db: &str, extra: &[&str]) -> Value {
    let mut args = vec!["audit", "incentives", "--json"];
    args.extend_from_slice(extra);
    let out = run_binary(&args, &[("LEDGER_DB", db)]).await;
    assert!(out.status.success(), "audit incentives: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("audit --json prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_ledger_has_no_anomalies_and_correct_totals() {
    // Arrange: incentives of 500 USD forwarded through a healthy platform.
    let payments = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.inviter_incentive = Some("500:USD".into());
    })
    .await;
    let mut a1 = invitation("UmaInvitation:a1", ALICE, "CLAIMED", "VALIDATED");
    a1.payment_amount = Some(1000);
    let a2 = invitation("UmaInvitation:a2", ALICE, "CLAIMED", "VALIDATED");
    let mut a3 = invitation("UmaInvitation:a3", ALICE, "CLAIMED", "INELIGIBLE");
    a3.incentives_ineligibility_reason = Some("NOT_CROSS_BORDER".into());
    let b1 = invitation("UmaInvitation:b1", BOB, "CLAIMED", "VALIDATED");
    let b2 = invitation("UmaInvitation:b2", BOB, "PENDING", "PENDING");
    let b3 = invitation("UmaInvitation:b3", BOB, "CLAIMED", "PENDING");
    let c1 = invitation("UmaInvitation:c1", CAROL, "CLAIMED", "INVALID");
    let all = [&a1, &a2, &a3, &b1, &b2, &b3, &c1];
    for (i, f) in all.iter().enumerate() {
        app.claim(f, &format!("evt-audit-{i}")).await;
    }
    let forwarded = [&a1, &a2, &b1];
    let app_ref = &app;
    for f in forwarded {
        app.invitation_when(&f.id, SETTLE, |v| v["incentive"]["state"] == "succeeded").await;
    }
    // Every webhook is projected (the last one may trail the forwards).
    eventually("every invitation audited", SETTLE, || async move {
        let (_, a) = app_ref.get_json("/v1/audit/incentives").await;
        let n: usize =
            a["inviters"].as_array().map_or(0, |i| i.iter().map(|x| x["invitations"].as_array().unwrap().len()).sum());
        if n == all.len() {
            Ok(())
        } else {
            Err(format!("{n} audited"))
        }
    })
    .await;

    // Act
    let (status, audit) = app.get_json("/v1/audit/incentives").await;
    let db = app.db.to_str().unwrap().to_owned();
    let from_cli = audit_cli(&db, &[]).await;
    let (_, alice_only) = app.get_json("/v1/audit/incentives?inviter_uma=%24alice%40sending.example").await;
    let alice_cli = audit_cli(&db, &["--inviter", ALICE]).await;

    // Assert: totals per inviter and overall.
    assert_eq!(status, 200);
    assert_eq!(audit["anomalies"], json!([]));
    assert_eq!(
        audit["totals"],
        json!({"forwarded": {"USD": 1500}, "validated": 3, "ineligible": 2, "pending": 2, "inviters": 3})
    );
    let inviters: Vec<&str> =
        audit["inviters"].as_array().unwrap().iter().map(|i| i["inviter_uma"].as_str().unwrap()).collect();
    assert_eq!(inviters, vec![ALICE, BOB, CAROL]);
    let totals: Vec<&Value> = audit["inviters"].as_array().unwrap().iter().map(|i| &i["totals"]).collect();
    assert_eq!(totals[0], &json!({"forwarded": {"USD": 1000}, "validated": 2, "ineligible": 1, "pending": 0}));
    assert_eq!(totals[1], &json!({"forwarded": {"USD": 500}, "validated": 1, "ineligible": 0, "pending": 2}));
    assert_eq!(totals[2], &json!({"forwarded": {}, "validated": 0, "ineligible": 1, "pending": 0}));

    // Assert: each invitation's decision, with the seqs that prove it.
    let rows: Vec<&Value> =
        audit["inviters"].as_array().unwrap().iter().flat_map(|i| i["invitations"].as_array().unwrap()).collect();
    let row = |id: &str| *rows.iter().find(|r| r["invitation_id"] == id).unwrap_or_else(|| panic!("{id} audited"));
    let executed = payments.executed();
    for f in forwarded {
        let r = row(&f.id);
        let inc = &r["incentive"];
        assert_eq!(inc["state"], "succeeded", "{r}");
        assert_eq!(inc["attempts"], 1);
        assert_eq!(inc["idempotency_key"], key(&f.id).as_str());
        assert_eq!(inc["amount"], json!({"value": 500, "currency": "USD", "decimals": 2}));
        let n = executed.iter().position(|(k, _)| *k == key(&f.id)).expect("executed by the platform") + 1;
        assert_eq!(inc["payment_id"], format!("pay_{n}"));
        let (claim, requested, succeeded) =
            (r["claim_seq"].as_u64(), inc["requested_seq"].as_u64(), inc["succeeded_seq"].as_u64());
        assert!(claim.is_some() && requested.is_some() && succeeded.is_some(), "{r}");
        assert!(claim < requested && requested < succeeded, "{r}");
        assert_eq!(r["incentives_status"], "VALIDATED");
        assert_eq!(r["code"], f.code.as_str());
    }
    assert_eq!(row(&a3.id)["incentive"]["state"], "ineligible");
    assert_eq!(row(&a3.id)["incentives_ineligibility_reason"], "NOT_CROSS_BORDER");
    assert!(row(&a3.id)["incentive"]["requested_seq"].is_null() && row(&a3.id)["incentive"]["succeeded_seq"].is_null());
    assert_eq!(row(&c1.id)["incentives_status"], "INELIGIBLE", "INVALID is treated as ineligible");
    assert!(row(&b2.id)["claim_seq"].is_null(), "a pending invitation has no claim");
    assert_eq!(row(&b3.id)["incentive"]["state"], "not_due");
    assert_eq!(executed.len(), 3 + 1, "three incentives and a1's payment, nothing else");

    // Assert: the CLI prints the same audit; --inviter filters.
    assert_eq!(from_cli, audit);
    assert_eq!(alice_cli, alice_only);
    assert_eq!(alice_only["inviters"].as_array().unwrap().len(), 1);
    assert_eq!(alice_only["inviters"][0]["inviter_uma"], ALICE);
    assert_eq!(
        alice_only["totals"],
        json!({"forwarded": {"USD": 1000}, "validated": 2, "ineligible": 1, "pending": 0, "inviters": 1})
    );
    let text = run_binary(&["audit", "incentives"], &[("LEDGER_DB", db.as_str())]).await;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("anomalies: none") && text.contains("forwarded=15.00 USD"), "{text}");
}

/// `incentive.requested` for `id`, as the reconciler would have written it.
fn requested(f: &InvitationFixture, at: &str) -> invitation_ledger::ledger::NewEvent {
    let k = IdempotencyKey::of(&f.id, ObligationKind::InviterIncentive);
    let body = ObligationRequested {
        receiver_uma: Some(f.inviter_uma.clone()),
        invitation_id: f.id.clone(),
        obligation: ObligationKind::InviterIncentive,
        idempotency_key: k.clone(),
        attempt: 1,
        requested_at: at.to_owned(),
        amount: Some(Money::new(500, "USD").unwrap()),
        request: json!({"idempotency_key": k, "kind": "inviter_incentive", "invitation_id": f.id,
                        "invitation_code": f.code, "receiver_uma": f.inviter_uma,
                        "amount": {"value": 500, "currency": "USD"}}),
    };
    InternalEvent::Requested(body).to_new_event()
}

/// `incentive.succeeded` for `id` under `event_key`.
fn succeeded(
    f: &InvitationFixture,
    event_key: &str,
    payment_id: &str,
    at: &str,
) -> invitation_ledger::ledger::NewEvent {
    let body = ObligationSucceeded {
        invitation_id: f.id.clone(),
        obligation: ObligationKind::InviterIncentive,
        idempotency_key: IdempotencyKey::of(&f.id, ObligationKind::InviterIncentive),
        attempt: 1,
        http_status: 200,
        payment_id: Some(payment_id.to_owned()),
        at: at.to_owned(),
    };
    // Under a key of the test's choosing: a second success is what a
    // broken ledger would hold.
    let mut event = InternalEvent::Succeeded(body).to_new_event();
    event.event_key = invitation_ledger::vocab::EventKey::stored(event_key);
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_crafted_bad_ledger_is_caught() {
    // Arrange: claims from long ago, recorded by a service that forwards no
    // incentive (INVITER_INCENTIVE unset)...
    let app = TestApp::spawn().await;
    let long_ago = "2020-01-01T00:00:00.000000+00:00";
    let old = |id: &str, status: &str, incentives: &str| {
        let mut f = invitation(id, ALICE, status, incentives);
        f.updated_at = long_ago.into();
        f
    };
    let twice = old("UmaInvitation:twice", "CLAIMED", "VALIDATED");
    let mut ineligible = old("UmaInvitation:ineligible-paid", "CLAIMED", "INELIGIBLE");
    ineligible.incentives_ineligibility_reason = Some("SENDER_NOT_ELIGIBLE".into());
    let cancelled = old("UmaInvitation:cancelled-paid", "CANCELLED", "VALIDATED");
    let never = old("UmaInvitation:never-forwarded", "CLAIMED", "VALIDATED");
    let healthy = old("UmaInvitation:healthy", "CLAIMED", "VALIDATED");
    let mut recent = invitation("UmaInvitation:recent", BOB, "CLAIMED", "VALIDATED");
    recent.updated_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut untouched_ineligible = old("UmaInvitation:ineligible-untouched", "CLAIMED", "INELIGIBLE");
    untouched_ineligible.incentives_ineligibility_reason = Some("NOT_CROSS_BORDER".into());
    let all = [&twice, &ineligible, &cancelled, &never, &healthy, &recent, &untouched_ineligible];
    for (i, f) in all.iter().enumerate() {
        app.claim(f, &format!("evt-bad-{i}")).await;
    }
    let app_ref = &app;
    eventually("every invitation projected", SETTLE, || async move {
        let (_, page) = app_ref.get_json("/v1/invitations?limit=100").await;
        let n = page["items"].as_array().map_or(0, Vec::len);
        if n == all.len() {
            Ok(())
        } else {
            Err(format!("{n} projected"))
        }
    })
    .await;
    let db_path = app.db.clone();
    let dir = app.stop_promptly().await;

    // ...then events appended by hand: (a) one incentive forwarded twice,
    // (b) incentives forwarded though ineligible or cancelled, and a
    // correct forward for contrast.
    let at = "2020-01-02T00:00:00.000000Z";
    let k = key(&twice.id);
    append_events(
        &db_path,
        vec![
            requested(&twice, at),
            succeeded(&twice, &format!("{k}:succeeded"), "pay_a", at),
            succeeded(&twice, &format!("{k}:succeeded:again"), "pay_b", at),
            requested(&ineligible, at),
            succeeded(&ineligible, &format!("{}:succeeded", key(&ineligible.id)), "pay_c", at),
            requested(&cancelled, at),
            succeeded(&cancelled, &format!("{}:succeeded", key(&cancelled.id)), "pay_d", at),
            requested(&healthy, at),
            succeeded(&healthy, &format!("{}:succeeded", key(&healthy.id)), "pay_e", at),
        ],
    )
    .await;
    let db = db_path.to_str().unwrap().to_owned();

    // Act: the CLI on the stopped ledger, and the service started on it again.
    let from_cli = audit_cli(&db, &[]).await;
    let text = run_binary(&["audit", "incentives"], &[("LEDGER_DB", db.as_str())]).await;
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let app = TestApp::spawn_with(dir, serve_args(&db_path)).await;
    let (_, from_http) = app.get_json("/v1/audit/incentives").await;

    // Assert: each anomaly is reported for the right invitation, and only those.
    let anomalies: BTreeSet<(String, String)> = from_cli["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert!(a["detail"].as_str().is_some_and(|d| !d.is_empty()), "{a}");
            (a["kind"].as_str().unwrap().to_owned(), a["invitation_id"].as_str().unwrap().to_owned())
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("forwarded_twice", &twice),
        ("forwarded_not_validated", &ineligible),
        ("forwarded_not_validated", &cancelled),
        ("validated_not_forwarded", &never),
    ]
    .iter()
    .map(|(k, f)| ((*k).to_owned(), f.id.clone()))
    .collect();
    assert_eq!(anomalies, expected, "{}", from_cli["anomalies"]);
    let detail_of = |kind: &str, id: &str| {
        from_cli["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["kind"] == kind && a["invitation_id"] == id)
            .unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(detail_of("forwarded_twice", &twice.id).contains('2'));
    assert!(detail_of("forwarded_not_validated", &ineligible.id).contains("INELIGIBLE"));
    assert!(detail_of("forwarded_not_validated", &cancelled.id).contains("CANCELLED"));
    assert!(detail_of("validated_not_forwarded", &never.id).contains("2020-01-01"));
    for (kind, id) in &expected {
        assert!(text.contains(&format!("ANOMALY {kind} {id}")), "{text}");
    }
    assert_eq!(from_http["anomalies"], from_cli["anomalies"]);
    let out = run_binary(&["verify"], &[("LEDGER_DB", db.as_str()), ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)]).await;
    assert!(out.status.success(), "hand-made events keep the chain intact: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_pages_by_inviter_and_the_cli_exports_every_page_as_one_document() {
    // Given three inviters' invitations, two of them Alice's
    let app = TestApp::spawn().await;
    let all = [
        invitation("UmaInvitation:pg-a1", ALICE, "CLAIMED", "VALIDATED"),
        invitation("UmaInvitation:pg-a2", ALICE, "CLAIMED", "INELIGIBLE"),
        invitation("UmaInvitation:pg-b1", BOB, "CLAIMED", "VALIDATED"),
        invitation("UmaInvitation:pg-c1", CAROL, "CLAIMED", "PENDING"),
    ];
    for (i, f) in all.iter().enumerate() {
        app.claim(f, &format!("evt-page-{i}")).await;
    }
    for f in &all {
        app.invitation_when(&f.id, SETTLE, |_| true).await;
    }
    let page = |query: String| {
        let app = &app;
        async move {
            let (status, v) = app.get_json(&format!("/v1/audit/incentives?{query}")).await;
            assert_eq!(status, 200, "{v}");
            v
        }
    };
    let encode = |s: &str| s.replace('$', "%24").replace('@', "%40").replace('\n', "%0A").replace(':', "%3A");

    // When the audit is read three invitations at a time
    let first = page("limit=3".into()).await;
    let next = first["next"].as_str().expect("a cursor to the second page").to_owned();
    let second = page(format!("limit=3&after={}", encode(&next))).await;
    // And one invitation at a time, which splits Alice between pages
    let one = page("limit=1".into()).await;
    let db = app.db.to_str().unwrap().to_owned();
    let exported = audit_cli(&db, &[]).await;

    // Then the first page has Alice and Bob, the second Carol and no cursor
    let names = |page: &Value| -> Vec<String> {
        page["inviters"].as_array().unwrap().iter().map(|i| i["inviter_uma"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(names(&first), [ALICE, BOB]);
    assert_eq!(names(&second), [CAROL]);
    assert!(second["next"].is_null(), "{second}");
    // And every page carries the totals over all inviters
    let totals = json!({"forwarded": {}, "validated": 2, "ineligible": 1, "pending": 1, "inviters": 3});
    assert_eq!(first["totals"], totals);
    assert_eq!(second["totals"], totals);
    // And an inviter's totals cover all its invitations, on a page that shows one of them
    let alice_totals = json!({"forwarded": {}, "validated": 1, "ineligible": 1, "pending": 0});
    assert_eq!(names(&one), [ALICE]);
    assert_eq!(one["inviters"][0]["invitations"].as_array().unwrap().len(), 1);
    assert_eq!(one["inviters"][0]["totals"], alice_totals);
    assert_eq!(first["inviters"][0]["totals"], alice_totals);
    // And the CLI's export is every page's inviters in one document
    assert_eq!(names(&exported), [ALICE, BOB, CAROL]);
    assert_eq!(exported["inviters"][0]["invitations"].as_array().unwrap().len(), 2);
    assert_eq!(exported["totals"], totals);
    assert!(exported["next"].is_null());
    let everything = page(String::new()).await;
    assert_eq!(exported, everything, "one page holds all four: the same document");
}
