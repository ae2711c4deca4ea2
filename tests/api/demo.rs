//! `demo` as a new user runs it: no configuration, exit 0, a correct table.

use crate::support::binary::BIN;

#[test]
fn the_demo_runs_the_whole_flow_and_prints_the_settled_states() {
    let out = std::process::Command::new(BIN)
        .arg("demo")
        .env("LOG", "warn")
        .env_remove("LEDGER_DB")
        .env_remove("LIGHTSPARK_WEBHOOK_SIGNING_KEY")
        .env_remove("PAYOUT_URL")
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let row = |code: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(code))
            .unwrap_or_else(|| panic!("no row for {code}:\n{stdout}"))
            .to_owned()
    };
    let cols = |code: &str| row(code).split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    // invitation, code, status, payout, incentive, notification
    let pay = cols("DEMOPAY");
    assert_eq!(&pay[2..], ["CLAIMED", "succeeded", "(1x)", "succeeded", "(1x)", "succeeded", "(1x)"], "{stdout}");
    let retry = cols("DEMORETRY");
    assert_eq!(&retry[2..5], ["CLAIMED", "succeeded", "(2x)"], "the transient failure was retried once:\n{stdout}");
    let cancelled = cols("DEMOCANCEL");
    assert_eq!(&cancelled[2..], ["CANCELLED", "not_due", "not_due", "not_due"]);
    // the API lagged the webhook, then knew it: paid, its incentive ineligible
    let lagging = row("DEMOLAG");
    assert!(lagging.contains("succeeded") && lagging.contains("ineligible NOT_CROSS_BORDER"), "{lagging}");
    // the incentive validated after the claim was forwarded
    assert_eq!(&cols("DEMOLATE")[2..], ["CLAIMED", "succeeded", "(1x)", "succeeded", "(1x)", "succeeded", "(1x)"]);
    // the Grid claim was paid, with no incentive (Grid has none)
    assert_eq!(&cols("DEMOGRID")[2..6], ["CLAIMED", "succeeded", "(1x)", "not_due"], "{stdout}");
    assert!(row("FIXTURE1").contains("succeeded"));
    assert!(stdout.contains("duplicate delivery of the first") && stdout.contains("200 duplicate seq 1"), "{stdout}");
    assert!(stdout.contains("Grid claim, 1500 JPY, signed with P-256") && stdout.contains("-> 200 accepted seq 7"));
    assert!(stdout.contains("forged signature") && stdout.contains("-> 401 bad_signature"), "{stdout}");
    assert!(!stdout.contains("demo-forged"), "the forged invitation must not appear");
    // the cancellation after the claim is the one anomaly
    assert!(stdout.contains("anomalies=1"), "{stdout}");
    assert!(stdout.contains("forwarded=4.00 USD"), "{stdout}");
    // the invitations came by fetch: one call each, two for the lagging
    // and the late-validated ones
    assert!(stdout.contains("GraphQL stand-in: 7 calls"), "{stdout}");
    assert!(stdout.contains("ledger verified:") && stdout.contains("7 webhook signatures re-verified"), "{stdout}");
}
