//! Tests of the settings (`super`): each bad value stops start-up with a sentence naming it.

use super::*;

#[test]
fn a_window_not_above_the_request_timeout_or_the_retry_cap_stops_start_up() {
    // given settings under which one 5xx would already send a payout to
    // in_doubt: a window no longer than one request, or than one retry gap
    for (window, timeout, retry_max, named) in [
        ("10s", 10_000, 5_000, "REQUEST_TIMEOUT_MS"),
        ("5s", 1_000, 5_000, "RETRY_MAX_MS"),
        ("1h", 10_000, 3_600_000, "RETRY_MAX_MS"),
    ] {
        let args = ReconcileArgs {
            idempotency_window: window.into(),
            request_timeout_ms: timeout,
            retry_max_ms: retry_max,
            ..ReconcileArgs::for_tests()
        };
        // then start-up fails with one sentence naming both settings
        let e = args.validate().unwrap_err().0;
        assert!(e.contains("IDEMPOTENCY_WINDOW") && e.contains(named), "{window}/{timeout}/{retry_max}: {e}");
    }
    let fine = ReconcileArgs { idempotency_window: "2h".into(), ..ReconcileArgs::for_tests() };
    assert!(fine.validate().is_ok());
}

#[test]
fn the_incentive_takes_its_decimals_from_iso_4217_or_as_stated() {
    // given incentives in ISO currencies, bitcoin's units and a code stated with its decimals
    let shown = |raw: &str| parse_incentive(raw).map(|m| (m.decimals(), m.to_string())).unwrap();
    // then each knows its decimals, which it will send and show
    assert_eq!(shown("100:USD"), (Some(2), "1.00 USD".into()));
    assert_eq!(shown(" 500 : JPY "), (Some(0), "500 JPY".into()));
    assert_eq!(shown("1500:KWD"), (Some(3), "1.500 KWD".into()));
    assert_eq!(shown("2100:SAT"), (Some(0), "2100 SAT".into()));
    assert_eq!(shown("100:USD:2"), (Some(2), "1.00 USD".into()));
    assert_eq!(shown("1234:XYZ:3"), (Some(3), "1.234 XYZ".into()));
    assert_eq!(shown("7:XYZ:0"), (Some(0), "7 XYZ".into()));
}

#[test]
fn an_incentive_whose_decimals_are_unknown_or_wrong_stops_start_up_with_one_sentence() {
    // given an unknown code without decimals, impossible or contradicting
    // decimals, and malformed values
    for (raw, says) in [
        ("100:XYZ", "whose decimals ISO 4217 does not give: state them, such as 100:XYZ:2"),
        ("100:usd", "whose decimals ISO 4217 does not give"),
        ("100:USD:3", "states 3 decimals for USD, which has 2"),
        ("100:JPY:2", "states 2 decimals for JPY, which has 0"),
        ("100:XYZ:19", "give a whole number from 0 to 18"),
        ("100:XYZ:two", "give a whole number from 0 to 18"),
        ("100", "is not AMOUNT:CURRENCY[:DECIMALS]"),
        ("1.00:USD", "is not AMOUNT:CURRENCY[:DECIMALS]"),
        ("-5:USD", "is not AMOUNT:CURRENCY[:DECIMALS]"),
        ("100:USD:2:x", "is not AMOUNT:CURRENCY[:DECIMALS]"),
    ] {
        let args = ReconcileArgs { inviter_incentive: Some(raw.into()), ..ReconcileArgs::for_tests() };
        // when the settings are validated
        let e = args.validate().unwrap_err().0;
        // then start-up stops with one sentence naming the setting
        assert!(e.starts_with("INVITER_INCENTIVE ") && e.contains(says), "{raw}: {e}");
        assert_eq!(e.matches(". ").count(), 0, "one sentence: {e}");
        assert!(e.ends_with('.'), "{e}");
    }
}

#[test]
fn durations_read_their_units() {
    assert_eq!(parse_duration("X", "24h").unwrap(), Duration::from_secs(86_400));
    assert_eq!(parse_duration("X", "1500ms").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("X", "30").unwrap(), Duration::from_secs(30));
    assert!(parse_duration("X", "soon").unwrap_err().0.starts_with("X "));
}
