//! `demo` as a new user runs it: no configuration, exit 0, nothing on
//! stderr (no log line before the report, no error after a successful
//! run), and a report with every case an operator meets, a failed and an
//! in-doubt payment included, amounts in their currency's decimals.

use crate::support::binary::BIN;

#[test]
fn the_demo_runs_the_whole_flow_quietly_and_prints_the_settled_states() {
    // Given no configuration at all, not even LOG
    let out = std::process::Command::new(BIN)
        .arg("demo")
        .env_remove("LOG")
        .env_remove("LOG_FORMAT")
        .env_remove("LEDGER_DB")
        .env_remove("LIGHTSPARK_WEBHOOK_SIGNING_KEY")
        .env_remove("PAYOUT_URL")
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    // Then it succeeds, quietly: not one log line, and no ERROR at the end
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "the demo logged before or after its report:\n{stderr}");
    assert!(stdout.starts_with("service http://127.0.0.1:"), "the report comes first:\n{stdout}");

    // And each invitation's row says how it settled
    let row = |code: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(code))
            .unwrap_or_else(|| panic!("no row for {code}:\n{stdout}"))
            .to_owned()
    };
    // invitation, code, status, payout, incentive, notification, amount
    let cols = |code: &str| row(code).split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let pay = cols("DEMOPAY");
    assert_eq!(&pay[2..], ["CLAIMED", "succeeded", "(1x)", "succeeded", "(1x)", "succeeded", "(1x)", "5.00", "USD"]);
    let retry = cols("DEMORETRY");
    assert_eq!(&retry[2..5], ["CLAIMED", "succeeded", "(2x)"], "the transient failure was retried once:\n{stdout}");
    assert!(row("DEMORETRY").ends_with(" 12.00 EUR"), "{stdout}");
    let cancelled = cols("DEMOCANCEL");
    assert_eq!(&cancelled[2..], ["CANCELLED", "not_due", "not_due", "not_due", "9.00", "USD"]);
    // the API lagged the webhook, then knew it: paid, its incentive ineligible
    let lagging = row("DEMOLAG");
    assert!(lagging.contains("succeeded") && lagging.contains("ineligible NOT_CROSS_BORDER"), "{lagging}");
    // the incentive validated after the claim was forwarded
    assert_eq!(&cols("DEMOLATE")[2..8], ["CLAIMED", "succeeded", "(1x)", "succeeded", "(1x)", "succeeded"]);
    // the Grid claim was paid, in yen (no decimals), with no incentive (Grid has none)
    assert_eq!(&cols("DEMOGRID")[2..6], ["CLAIMED", "succeeded", "(1x)", "not_due"], "{stdout}");
    assert!(row("DEMOGRID").ends_with(" 1500 JPY"), "{stdout}");
    assert!(row("FIXTURE1").contains("succeeded"));
    // one payment refused for good, one whose outcome never came: in doubt
    assert_eq!(&cols("DEMOREFUSED")[3..5], ["failed", "(1x)"], "{stdout}");
    assert_eq!(&cols("DEMODOUBT")[3..5], ["in_doubt", "window_expired"], "{stdout}");
    let operator = stdout.split("needs an operator").nth(1).expect("a list of what needs an operator");
    assert!(operator.contains("DEMOREFUSED") && operator.contains("HTTP 400"), "{operator}");
    assert!(operator.contains("DEMODOUBT") && operator.contains("in_doubt  key il1-"), "{operator}");

    // And the deliveries were answered as they should be
    assert!(stdout.contains("duplicate delivery of the first") && stdout.contains("200 duplicate seq 1"), "{stdout}");
    let grid = stdout.lines().find(|l| l.contains("Grid claim, 1500 JPY, signed with P-256")).unwrap();
    assert!(grid.contains("-> 200 accepted seq "), "{grid}");
    assert!(stdout.contains("forged signature") && stdout.contains("-> 401 bad_signature"), "{stdout}");
    assert!(!stdout.contains("demo-forged"), "the forged invitation must not appear");
    // the cancellation after the claim is the one anomaly; 4 incentives of 1.00 USD went out
    assert!(stdout.contains("anomalies=1"), "{stdout}");
    assert!(stdout.contains("forwarded=4.00 USD"), "{stdout}");
    // the invitations came by fetch: one call each, two for the lagging
    // and the late-validated ones
    assert!(stdout.contains("GraphQL stand-in: 9 calls"), "{stdout}");
    assert!(stdout.contains("ledger verified:") && stdout.contains("9 webhook signatures re-verified"), "{stdout}");
}
