//! `--help` as an operator reads it: `serve`'s two dozen flags grouped by
//! what they configure, the log's settings listed with every command, and
//! each command described by what it does.

use crate::support::binary::run;

/// The text `invitation-ledger <args> --help` prints.
fn help(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--help");
    let out = run(&all, &[]);
    assert!(out.status.success(), "{all:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn serve_help_groups_its_flags_by_what_they_configure() {
    // Given `serve --help`
    let text = help(&["serve"]);
    // Then its flags come under headings, in this order
    let headings = [
        "Ledger:",
        "Webhooks:",
        "Payment platform:",
        "Lightspark API:",
        "Grid API:",
        "Reconciler:",
        "HTTP:",
        "Logging:",
    ];
    let at: Vec<usize> = headings
        .iter()
        .map(|h| text.lines().position(|l| l == *h).unwrap_or_else(|| panic!("no heading {h}:\n{text}")))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "headings out of order {at:?}:\n{text}");
    // And each flag sits under its own heading
    let section = |heading: &str| {
        let start = text.find(&format!("\n{heading}\n")).unwrap();
        let rest = &text[start + heading.len() + 2..];
        rest[..rest.find("\n\n").unwrap_or(rest.len())].to_owned()
    };
    assert!(section("Payment platform:").contains("--inviter-incentive"), "{text}");
    assert!(section("Payment platform:").contains("AMOUNT:CURRENCY:DECIMALS"), "{text}");
    assert!(section("Reconciler:").contains("--idempotency-window"), "{text}");
    assert!(section("Webhooks:").contains("--max-body-bytes"), "{text}");
    assert!(section("Logging:").contains("[env: LOG=") && section("Logging:").contains("[env: LOG_FORMAT="), "{text}");
}

#[test]
fn every_command_lists_the_log_settings_and_audit_says_what_it_audits() {
    // Given the top-level help and a one-shot command's
    let top = help(&[]);
    let status = help(&["status"]);
    // Then LOG and LOG_FORMAT are listed with both
    for text in [&top, &status] {
        assert!(text.contains("--log <FILTER>") && text.contains("--log-format <FORMAT>"), "{text}");
    }
    // And `audit` is described by what it does
    let audit = top.lines().find(|l| l.trim_start().starts_with("audit ")).expect("an audit line");
    assert!(audit.contains("incentives forwarded to inviters against those owed"), "{audit}");
    assert!(!top.contains("Audits."), "{top}");
}
