//! The log of the real binary, read as journald or a log shipper reads it:
//! through a pipe. Plain lines without escape codes, a warning for each
//! refused webhook that leaves the body and the secret out, JSON that
//! names each span once, and a wrong `LOG` or `LOG_FORMAT` refused at
//! start-up rather than silently costing the log.

use std::time::Duration;

use serde_json::Value;

use crate::support::binary::run;
use crate::support::fake_platform::FakePlatform;
use crate::support::log::{serve_piped, stop};
use crate::support::{eventually, post_signed_blocking, InvitationFixture, SECRET};

#[test]
fn through_a_pipe_the_log_has_no_escape_codes_and_a_warning_for_each_refused_webhook() {
    // Given the real binary at the default level, its log a pipe, webhooks
    // limited to 1 KiB
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let (server, log) = serve_piped(&db, &[("LOG", "info"), ("MAX_BODY_BYTES", "1024")]);
    let client = reqwest::blocking::Client::new();
    let url = server.url("/webhooks/lightspark");

    // When a forged webhook, a signed one that is not a JSON object and an
    // oversized one arrive, then the service stops
    let marker = "body-text-that-must-not-be-logged";
    let forged = client
        .post(&url)
        .header("lightspark-signature", "00".repeat(32))
        .body(format!("{{\"event_id\":\"{marker}\"}}"))
        .send()
        .unwrap();
    let garbled = post_signed_blocking(&client, &url, format!("[\"{marker}\"]"));
    let oversized = post_signed_blocking(&client, &url, format!("{{\"x\":\"{marker}{}\"}}", "x".repeat(2000)));
    let statuses = [forged.status(), garbled.status(), oversized.status()].map(|s| s.as_u16());
    assert_eq!(statuses, [401, 400, 413]);
    let text = stop(server, log);

    // Then no line carries an escape code
    assert!(!text.contains('\x1b'), "ANSI escape codes in a piped log:\n{text:?}");
    assert!(text.contains(" INFO ") && text.contains("serving"), "{text}");
    // And each refusal has a warning with its status, why and the size, not the body nor the secret
    for (status, why) in [
        (401, "does not match the body under any configured key"),
        (400, "correctly signed, but not a JSON object"),
        (413, "over MAX_BODY_BYTES (1024)"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(" WARN ") && l.contains(&format!("status={status}")))
            .unwrap_or_else(|| panic!("no WARN line for the {status}:\n{text}"));
        assert!(line.contains("webhook refused") && line.contains("source=\"lightspark\""), "{line}");
        assert!(line.contains(why) && line.contains("bytes="), "{line}");
    }
    assert!(!text.contains(marker), "a body reached the log:\n{text}");
    assert!(!text.contains(SECRET), "the signing secret reached the log:\n{text}");
}

#[test]
fn a_wrong_log_or_log_format_stops_start_up_with_one_sentence_naming_it() {
    // Given a misspelt level, an unknown level and a misspelt format
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    for (setting, value, says) in [
        ("LOG", "inf", "error: LOG \"inf\" holds \"inf\", which is no level"),
        ("LOG", "invitation_ledger=verbose", "error: LOG \"invitation_ledger=verbose\" is not a log filter"),
        ("LOG_FORMAT", "jsn", "error: LOG_FORMAT \"jsn\" is not a log format: use human (the default) or json."),
    ] {
        // When `serve` starts with it
        let env = [
            ("LEDGER_DB", db.to_str().unwrap()),
            ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET),
            ("LISTEN_ADDR", "127.0.0.1:0"),
            (setting, value),
        ];
        let out = run(&["serve"], &env);
        // Then it exits non-zero at once with one line naming the setting, having done nothing
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{setting}={value} started");
        assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");
        assert!(stderr.starts_with(says), "{setting}={value}: {stderr}");
        assert!(!db.exists(), "nothing ran: no ledger was created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_each_span_once_and_anchors_and_payments_as_fields() {
    // Given the real binary logging JSON to a pipe, paying through a platform
    // that answers the first call 503
    let payments = FakePlatform::start().await;
    payments.fail_next(1, crate::support::fake_platform::Fault::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let env = [("LOG", "info"), ("LOG_FORMAT", "json"), ("PAYOUT_URL", payments.url.as_str())];
    let (server, log) = {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            serve_piped(&db, &env)
        })
        .await
        .unwrap()
    };

    // When an invitation is claimed and paid (on the second call), and the service stops
    let mut inv = InvitationFixture::claimed("UmaInvitation:json-log");
    inv.incentives_status = "PENDING".into();
    let client = reqwest::Client::new();
    crate::support::post_signed_to(&client, &server.url("/webhooks/lightspark"), inv.webhook("ev-json")).await;
    eventually("the payment", Duration::from_secs(20), || async {
        if payments.executed().is_empty() {
            Err("not paid yet".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    let text = tokio::task::spawn_blocking(move || stop(server, log)).await.unwrap();

    // Then every line is one JSON object, without ANSI codes
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"))).collect();
    assert!(!text.contains('\x1b'), "{text}");
    // And a line inside a span lists it under `spans` only, once
    let paid = lines
        .iter()
        .find(|l| l["fields"]["message"] == "obligation succeeded")
        .unwrap_or_else(|| panic!("no payment line:\n{text}"));
    assert!(paid.get("span").is_none(), "the innermost span repeated under `span`: {paid}");
    let spans = paid["spans"].as_array().expect("the spans list");
    assert_eq!(spans.iter().filter(|s| s["name"] == "obligation").count(), 1, "{paid}");
    assert_eq!(spans[0]["invitation_id"], inv.id, "{paid}");
    // And a payment's lines name its receiver and its amount in its decimals
    assert_eq!(spans[0]["receiver_uma"], inv.invitee_uma.as_deref().unwrap(), "{paid}");
    assert_eq!(spans[0]["amount"], "10.00 USD", "{paid}");
    // And the transient failure is a warning with the status as a number, not Debug text
    let retried = lines
        .iter()
        .find(|l| l["fields"]["message"] == "transient failure; retry scheduled")
        .unwrap_or_else(|| panic!("no retry line:\n{text}"));
    assert_eq!(
        (&retried["level"], &retried["fields"]["status"]),
        (&Value::from("WARN"), &Value::from(503)),
        "{retried}"
    );
    assert!(!text.contains("Some("), "Debug text in the log:\n{text}");
    // And the anchor's seq and hash are fields, the message still readable
    let anchors: Vec<&Value> = lines.iter().filter(|l| l["fields"]["message"] == "ledger head").collect();
    assert_eq!(anchors.len(), 2, "one at start, one at shutdown:\n{text}");
    let last = &anchors[1]["fields"];
    assert!(last["seq"].as_u64().is_some_and(|s| s >= 4), "{last}");
    assert!(last["hash"].as_str().is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())), "{last}");
}

#[test]
fn the_human_anchor_line_reads_as_before() {
    // Given the real binary writing human lines to a pipe
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = serve_piped(&dir.path().join("ledger.db"), &[("LOG", "info")]);
    // When it stops
    let text = stop(server, log);
    // Then the anchor reads `ledger head seq=… hash=…`, now from fields
    let zero = "0".repeat(64);
    assert_eq!(text.matches(&format!("ledger head seq=0 hash={zero}")).count(), 2, "{text}");
}
