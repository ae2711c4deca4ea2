//! Tests of the Grid webhook reader (`super`): real fixtures, hostile bodies, and properties.

use super::*;
use proptest::prelude::*;
use serde_json::json;

const CLAIMED: &[u8] = include_bytes!("../../fixtures/grid/claimed.json");
const CLAIMED_UMAAAS: &[u8] = include_bytes!("../../fixtures/grid/claimed_umaaas.json");

fn amount(v: Value) -> GridAmount {
    GridAmount::from_json(&v)
}

fn valid(value: i64, currency: &str, decimals: Option<u32>) -> GridAmount {
    GridAmount::Valid { value, currency: currency.into(), decimals }
}

fn reason(a: GridAmount) -> String {
    match a {
        GridAmount::Invalid { reason } => reason,
        valid => panic!("expected an invalid amount, got {valid:?}"),
    }
}

fn jpy(amount: Value) -> Value {
    json!({"amount": amount, "currency": {"code": "JPY", "decimals": 0}})
}

#[test]
fn the_current_fixture_gives_every_field() {
    // Given the signed fixture in the current shape
    // When it is parsed
    let w = GridWebhook::parse(CLAIMED).unwrap();
    // Then every documented fact is read
    assert_eq!(w.id.as_deref(), Some("Webhook:019a2b3c-4d5e-7f60-8000-000000000001"));
    assert_eq!(w.event_type.as_deref(), Some(INVITATION_CLAIMED));
    assert_eq!(w.timestamp.as_deref(), Some("2026-11-01T12:00:01Z"));
    assert!(w.is_invitation_claim());
    assert_eq!(w.invitation_code(), Some("019a2b3c"));
    assert_eq!(
        w.invitation.unwrap(),
        GridInvitation {
            code: Some("019a2b3c".into()),
            created_at: Some("2026-11-01T10:00:00Z".into()),
            claimed_at: Some("2026-11-01T12:00:00Z".into()),
            url: Some("https://uma.me/i/019a2b3c".into()),
            expires_at: Some("2026-12-01T10:00:00Z".into()),
            inviter_uma: Some("$alice@vasp-a.example".into()),
            invitee_uma: Some("$bob@vasp-b.example".into()),
            status: Some("CLAIMED".into()),
            first_name: Some("Alice".into()),
            amount_to_send: Some(valid(1500, "JPY", Some(0))),
            invitee_country_code: Some("JP".into()),
        }
    );
}

#[test]
fn the_umaaas_fixture_gives_the_same_invitation() {
    // Given the same invitation in the pre-rename shape
    let old = GridWebhook::parse(CLAIMED_UMAAAS).unwrap();
    let new = GridWebhook::parse(CLAIMED).unwrap();
    // When both are parsed
    // Then `webhookId` is the id, the legacy type is a claim, and the invitations are equal
    assert_eq!(old.id.as_deref(), Some("Webhook:019a2b3c-4d5e-7f60-8000-000000000002"));
    assert_eq!(old.event_type.as_deref(), Some(LEGACY_INVITATION_CLAIMED));
    assert!(old.is_invitation_claim());
    assert_eq!(old.invitation, new.invitation);
}

#[test]
fn the_openapi_example_parses() {
    // Given the example of `invitation-claimed.yaml` in lightsparkdev/grid-api
    let body = br#"{"id":"Webhook:019542f5-b3e7-1d02-0000-000000000008","type":"INVITATION.CLAIMED","timestamp":"2025-09-01T15:45:00Z","data":{"code":"019542f5","createdAt":"2025-09-01T14:30:00Z","claimedAt":"2025-09-01T15:45:00Z","inviterUma":"$inviter@uma.domain","inviteeUma":"$invitee@uma.domain","status":"CLAIMED","url":"https://uma.me/i/019542f5"}}"#;
    // When it is parsed
    let w = GridWebhook::parse(body).unwrap();
    // Then it is a claim of invitation 019542f5 with nothing to send
    assert!(w.is_invitation_claim());
    assert_eq!(w.invitation_code(), Some("019542f5"));
    let inv = w.invitation.unwrap();
    assert_eq!(inv.amount_to_send, None);
    assert_eq!(inv.first_name, None);
    assert_eq!(StreamId::grid("019542f5").as_str(), "GridInvitation:019542f5");
}

#[test]
fn id_wins_over_webhook_id_and_data_over_invitation() {
    // Given bodies with both spellings
    let both =
        GridWebhook::parse(br#"{"id":"W:new","webhookId":"W:old","data":{"code":"new"},"invitation":{"code":"old"}}"#)
            .unwrap();
    // When they are parsed
    // Then the current names win
    assert_eq!(both.id.as_deref(), Some("W:new"));
    assert_eq!(both.invitation_code(), Some("new"));
    // But a blank id or a `data` that is not an object gives way to the other spelling
    let fallback =
        GridWebhook::parse(br#"{"id":" ","webhookId":"W:old","data":"x","invitation":{"code":"old"}}"#).unwrap();
    assert_eq!(fallback.id.as_deref(), Some("W:old"));
    assert_eq!(fallback.invitation_code(), Some("old"));
}

#[test]
fn only_the_two_claim_types_are_claims() {
    for (event_type, claim) in [
        ("INVITATION.CLAIMED", true),
        ("INVITATION_CLAIMED", true),
        ("invitation.claimed", false),
        ("INVITATION.CREATED", false),
        ("UMA_INVITATION_CLAIMED", false),
        ("TEST", false),
    ] {
        let body = json!({"type": event_type}).to_string();
        assert_eq!(GridWebhook::parse(body.as_bytes()).unwrap().is_invitation_claim(), claim, "{event_type}");
    }
    assert!(!GridWebhook::parse(br#"{"type":1}"#).unwrap().is_invitation_claim());
}

#[test]
fn only_non_objects_are_malformed_and_any_object_parses() {
    // Given bodies that are not JSON objects
    for body in [&b"[1,2]"[..], b"42", b"\"text\"", b"null", b"not json", b"", b"\xff\xfe", b"{\"a\":"] {
        // Then they are malformed
        assert!(GridWebhook::parse(body).is_err(), "{:?}", String::from_utf8_lossy(body));
    }
    // Given an object with nothing known, or every field of a wrong type
    let empty = GridWebhook { id: None, event_type: None, timestamp: None, invitation: None };
    assert_eq!(GridWebhook::parse(b"{}").unwrap(), empty);
    let wrong =
        GridWebhook::parse(br#"{"id":7,"webhookId":null,"type":[],"timestamp":{},"data":[1],"invitation":null}"#)
            .unwrap();
    // Then every field reads as absent
    assert_eq!(wrong, empty);
}

#[test]
fn invitation_fields_of_a_wrong_type_read_as_absent() {
    // Given an invitation whose fields have the wrong types
    let inv = GridInvitation::from_json(&json!({
        "code": 19542, "createdAt": null, "url": ["x"], "status": true, "inviterUma": "$a@b.example",
        "amountToSend": null
    }))
    .unwrap();
    // Then only the string field is read, and a null amount is no amount
    assert_eq!(inv, GridInvitation { inviter_uma: Some("$a@b.example".into()), ..GridInvitation::default() });
    assert_eq!(
        GridWebhook { invitation: Some(inv), id: None, event_type: None, timestamp: None }.invitation_code(),
        None
    );
    assert_eq!(GridInvitation::from_json(&json!("019542f5")), None);
}

#[test]
fn a_blank_code_is_no_code() {
    let w = GridWebhook::parse(br#"{"data":{"code":"  "}}"#).unwrap();
    assert_eq!(w.invitation_code(), None);
    assert_eq!(w.invitation.unwrap().code.as_deref(), Some("  "));
}

#[test]
fn exact_integer_amounts_are_valid() {
    // Given amounts written as exact non-negative integers
    for (raw, expected) in [
        (json!(0), 0),
        (json!(1500), 1500),
        (json!(i64::MAX), i64::MAX),
        (json!("1500"), 1500),
        (json!("0001500"), 1500),
        (json!("9223372036854775807"), i64::MAX),
    ] {
        // Then the exact value is kept
        assert_eq!(amount(jpy(raw.clone())), valid(expected, "JPY", Some(0)), "{raw}");
    }
    // And decimals are optional, display data
    assert_eq!(amount(json!({"amount": 5, "currency": {"code": "USDC"}})), valid(5, "USDC", None));
    assert_eq!(amount(json!({"amount": 5, "currency": {"code": "SAT", "decimals": null}})), valid(5, "SAT", None));
}

#[test]
fn inexact_or_unpayable_amounts_are_invalid_with_a_reason() {
    // Given amounts that cannot be paid exactly as sent
    // Then each is invalid, and the reason says why
    for (raw, expected) in [
        (json!(-1), "amount -1 is negative"),
        (json!(i64::MIN), "is negative"),
        (json!(-0.5), "is negative"),
        (json!(12.5), "amount 12.5 is not an integer"),
        (json!(1500.0), "amount 1500.0 is written as a float"),
        (json!(1e3), "is written as a float"),
        (json!(9_223_372_036_854_775_808_u64), "amount 9223372036854775808 does not fit"),
        (json!(u64::MAX), "does not fit"),
        (json!(1e30), "does not fit"),
        (json!("9223372036854775808"), "does not fit"),
        (json!("12x"), "amount \"12x\" is a string that is not all digits"),
        (json!("-5"), "not all digits"),
        (json!("+5"), "not all digits"),
        (json!(" 5"), "not all digits"),
        (json!("1_000"), "not all digits"),
        (json!(""), "not all digits"),
        (json!(true), "amount is JSON a boolean, not a number"),
        (json!([5]), "not a number"),
        (Value::Null, "amount is missing"),
    ] {
        let r = reason(amount(jpy(raw.clone())));
        assert!(r.contains(expected), "{raw}: {r}");
    }
    let big_float_text =
        serde_json::from_str::<Value>(r#"{"amount": 123456789012345678901234567890, "currency": {"code": "JPY"}}"#)
            .unwrap();
    assert!(reason(amount(big_float_text)).contains("does not fit"));
}

#[test]
fn a_missing_or_malformed_currency_is_invalid() {
    for (raw, expected) in [
        (json!({"amount": 5}), "currency is missing"),
        (json!({"amount": 5, "currency": null}), "currency is missing"),
        (json!({"amount": 5, "currency": "USD"}), "currency is JSON a string, not an object"),
        (json!({"amount": 5, "currency": {}}), "currency code is missing"),
        (json!({"amount": 5, "currency": {"code": ""}}), "currency code \"\" is not 1–16"),
        (json!({"amount": 5, "currency": {"code": "US D"}}), "is not 1–16"),
        (json!({"amount": 5, "currency": {"code": "ÜSD"}}), "is not 1–16"),
        (json!({"amount": 5, "currency": {"code": "ABCDEFGHIJKLMNOPQ"}}), "is not 1–16"),
        (json!({"amount": 5, "currency": {"code": 840}}), "currency code 840 is not"),
        (json!("1500 JPY"), "amountToSend is JSON a string, not an object"),
        (json!([]), "not an object"),
    ] {
        let r = reason(amount(raw.clone()));
        assert!(r.contains(expected), "{raw}: {r}");
    }
    assert_eq!(
        amount(json!({"amount": 1, "currency": {"code": "ABCDEFGHIJKLMNOP"}})),
        valid(1, "ABCDEFGHIJKLMNOP", None)
    );
}

#[test]
fn decimals_outside_0_to_18_are_not_given_as_for_lightspark() {
    // Given amounts whose currency states decimals out of range, or not
    // as an integer
    for decimals in [json!(19), json!(255), json!(4_294_967_296_u64), json!(-2), json!(2.5), json!("2")] {
        let raw = json!({"amount": 5, "currency": {"code": "USD", "decimals": decimals}});
        // When read / Then the amount stands and its decimals are not given
        assert_eq!(amount(raw), valid(5, "USD", None), "{decimals}");
    }
    // And 0 to 18 are given
    for d in [0, 2, 8, 18] {
        assert_eq!(amount(json!({"amount": 5, "currency": {"code": "USD", "decimals": d}})), valid(5, "USD", Some(d)));
    }
}

#[test]
fn minus_zero_is_zero_as_a_number_or_a_string() {
    // Given an amount of -0, as a JSON number and as strings
    for text in [r#"-0"#, r#""-0""#, r#""-000""#] {
        let raw: Value =
            serde_json::from_str(&format!(r#"{{"amount": {text}, "currency": {{"code": "JPY"}}}}"#)).unwrap();
        // When read / Then it is zero
        assert_eq!(amount(raw), valid(0, "JPY", None), "{text}");
    }
    // But a negative amount written as a string is still not an amount
    assert!(reason(amount(json!({"amount": "-5", "currency": {"code": "JPY"}}))).contains("not all digits"));
}

#[test]
fn an_invalid_amount_in_a_webhook_is_kept_not_dropped() {
    let w = GridWebhook::parse(br#"{"data":{"code":"c","amountToSend":{"amount":1.5,"currency":{"code":"USD"}}}}"#)
        .unwrap();
    assert!(matches!(w.invitation.unwrap().amount_to_send, Some(GridAmount::Invalid { .. })));
}

#[test]
fn a_reason_repeats_at_most_a_prefix_of_a_long_value() {
    let long = "9".repeat(10_000);
    let r = reason(amount(jpy(json!(long))));
    assert!(r.chars().count() < 120, "{r}");
}

#[test]
fn same_id_with_other_bytes_gets_another_key() {
    // Given one delivery id and two bodies
    // When keys are made
    let key = EventKey::grid_webhook("Webhook:1", b"a");
    // Then the key is grid:<id>:<16 hex digits of sha256(body)>
    assert_eq!(key.as_str(), "grid:Webhook:1:ca978112ca1bbdca");
    assert_eq!(key, EventKey::grid_webhook("Webhook:1", b"a"));
    assert_ne!(key, EventKey::grid_webhook("Webhook:1", b"b"));
    assert!(key.as_str().starts_with(&EventKey::grid_prefix("Webhook:1")));
    assert!(!EventKey::grid_webhook("Webhook:12", b"a").as_str().starts_with(&EventKey::grid_prefix("Webhook:1")));
}

const KEYS: &[&str] = &[
    "id",
    "webhookId",
    "type",
    "timestamp",
    "data",
    "invitation",
    "code",
    "createdAt",
    "claimedAt",
    "url",
    "expiresAt",
    "inviterUma",
    "inviteeUma",
    "status",
    "firstName",
    "amountToSend",
    "inviteeCountryCode",
    "amount",
    "currency",
    "decimals",
    "name",
    "symbol",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(&["INVITATION.CLAIMED", "INVITATION_CLAIMED", "JPY", "", "ü€", "-0"][..])
            .prop_map(Value::from),
        "-?[0-9]{0,25}x?".prop_map(Value::String),
        ".{0,12}".prop_map(Value::String),
    ];
    let key = prop_oneof![3 => prop::sample::select(KEYS).prop_map(str::to_owned), 1 => "[a-zA-Z]{0,10}"];
    leaf.prop_recursive(5, 96, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..10).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn parsing_arbitrary_bytes_never_panics(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = GridWebhook::parse(&body);
    }

    #[test]
    fn parsing_arbitrary_json_never_panics_and_reads_any_object(value in arb_json()) {
        let body = value.to_string();
        let parsed = GridWebhook::parse(body.as_bytes());
        prop_assert_eq!(parsed.is_ok(), value.is_object());
        if let Some(data) = value.get("data").filter(|d| d.is_object()) {
            prop_assert_eq!(parsed.unwrap().invitation, GridInvitation::from_json(data));
        }
    }

    #[test]
    fn an_arbitrary_invitation_never_panics(value in arb_json()) {
        let body = json!({"type": "INVITATION.CLAIMED", "data": value, "invitation": value}).to_string();
        let w = GridWebhook::parse(body.as_bytes()).unwrap();
        prop_assert_eq!(w.invitation.is_some(), value.is_object());
        let _ = GridAmount::from_json(&value);
    }

    #[test]
    fn an_integer_amount_is_valid_exactly_when_it_fits_i64(n in any::<u64>()) {
        for raw in [json!(n), json!(n.to_string())] {
            match amount(jpy(raw)) {
                GridAmount::Valid { value, .. } => prop_assert_eq!(u64::try_from(value).ok(), Some(n)),
                GridAmount::Invalid { reason } => {
                    prop_assert!(n > i64::MAX as u64, "{}", reason);
                    prop_assert!(reason.contains("does not fit"), "{}", reason);
                }
            }
        }
    }

    #[test]
    fn a_negative_amount_is_invalid(n in i64::MIN..0) {
        prop_assert!(reason(amount(jpy(json!(n)))).contains("negative"));
    }

    #[test]
    fn a_float_amount_is_never_rounded_into_a_valid_one(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let text = format!(r#"{{"amount": {f:?}, "currency": {{"code": "JPY"}}}}"#);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        if f == 0.0 && f.is_sign_negative() {
            // `-0.0` reads as `-0` does: zero, nothing rounded.
            prop_assert_eq!(amount(parsed), valid(0, "JPY", None));
        } else {
            prop_assert!(matches!(amount(parsed), GridAmount::Invalid { .. }), "{}", text);
        }
    }
}
