//! The parsers' rules, the fixtures, and the properties that keep the
//! `Value` parser and the one-pass reader in step.
//!
//! One idea, the two parsers agreeing, over the 600-line guide: each case
//! runs through both, so they stay together.

use super::*;
use proptest::prelude::*;
use serde_json::json;

const FIXTURE_ID: &str = "UmaInvitation:0191a8b6-fixture-0001";

fn money(value: i64, currency: &str) -> PaymentAmount {
    PaymentAmount::Valid(Money::new(value, currency).unwrap())
}

fn amount_of(v: Value) -> Option<PaymentAmount> {
    parse(&v).payment_amount
}

fn reason_of(amount: Value) -> String {
    match amount_of(json!({ "payment_amount": amount })) {
        Some(PaymentAmount::Invalid { reason }) => reason,
        other => panic!("expected an invalid amount, got {other:?}"),
    }
}

/// The claimed invitation every fixture describes.
fn fixture_snapshot() -> InvitationSnapshot {
    InvitationSnapshot {
        id: Some(FIXTURE_ID.into()),
        code: Some("FIXTURE1".into()),
        url: Some("https://uma.me/i/FIXTURE1".into()),
        inviter_uma: Some("$alice@vasp-a.example".into()),
        inviter_first_name: None,
        invitee_uma: Some("$bob@vasp-b.example".into()),
        status: Some(InvitationStatus::Claimed),
        incentives_status: Some(IncentivesStatus::Validated),
        incentives_ineligibility_reason: None,
        payment_amount: Some(PaymentAmount::Valid(Money::new(500, "USD").unwrap().with_decimals(Some(2)))),
        created_at: Some("2026-11-01T10:00:00+00:00".into()),
        updated_at: Some("2026-11-01T12:00:00+00:00".into()),
        cancelled_at: None,
        expires_at: None,
    }
}

/// A fully populated invitation in snake_case; the other spellings are
/// derived from it in the tests below.
fn full_snake() -> Value {
    json!({
        "id": "UmaInvitation:1", "code": "C0DE", "url": "https://uma.me/i/C0DE",
        "inviter_uma": "$a@x.example", "inviter_first_name": "Alice",
        "invitee_uma": "$b@y.example", "status": "EXPIRED",
        "incentives_status": "INELIGIBLE", "incentives_ineligibility_reason": "NOT_CROSS_BORDER",
        "payment_amount": {"value": 1234, "currency": {"code": "EUR", "symbol": "€", "decimals": 2, "name": "Euro"}},
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-02T00:00:00Z",
        "cancelled_at": "2026-01-03T00:00:00Z", "expires_at": "2026-01-04T00:00:00Z"
    })
}

#[test]
fn graphql_aliased_invitation_parses_like_snake_case() {
    // Given the same invitation spelled with GraphQL aliases
    let aliased = json!({
        "__typename": "UmaInvitation",
        "uma_invitation_id": "UmaInvitation:1", "uma_invitation_code": "C0DE",
        "uma_invitation_url": "https://uma.me/i/C0DE", "uma_invitation_inviter_uma": "$a@x.example",
        "uma_invitation_inviter_first_name": "Alice", "uma_invitation_invitee_uma": "$b@y.example",
        "uma_invitation_status": "EXPIRED", "uma_invitation_incentives_status": "INELIGIBLE",
        "uma_invitation_incentives_ineligibility_reason": "NOT_CROSS_BORDER",
        "uma_invitation_payment_amount": {
            "uma_currency_amount_value": 1234,
            "uma_currency_amount_currency": {"uma_currency_code": "EUR", "uma_currency_decimals": 2}
        },
        "uma_invitation_created_at": "2026-01-01T00:00:00Z", "uma_invitation_updated_at": "2026-01-02T00:00:00Z",
        "uma_invitation_cancelled_at": "2026-01-03T00:00:00Z", "uma_invitation_expires_at": "2026-01-04T00:00:00Z"
    });
    // When both are parsed
    let expected = parse(&full_snake());
    // Then they give the same snapshot, with every field filled
    assert_eq!(parse(&aliased), expected);
    assert!(expected.inviter_first_name.is_some() && expected.expires_at.is_some());
    assert_eq!(
        expected.payment_amount,
        Some(PaymentAmount::Valid(Money::new(1234, "EUR").unwrap().with_decimals(Some(2))))
    );
}

#[test]
fn camel_case_invitation_parses_like_snake_case() {
    // Given the same invitation in camelCase
    let camel = json!({
        "id": "UmaInvitation:1", "code": "C0DE", "url": "https://uma.me/i/C0DE",
        "inviterUma": "$a@x.example", "inviterFirstName": "Alice", "inviteeUma": "$b@y.example",
        "status": "EXPIRED", "incentivesStatus": "INELIGIBLE",
        "incentivesIneligibilityReason": "NOT_CROSS_BORDER",
        "paymentAmount": {"value": 1234, "currency": {"code": "EUR", "decimals": 2}},
        "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-02T00:00:00Z",
        "cancelledAt": "2026-01-03T00:00:00Z", "expiresAt": "2026-01-04T00:00:00Z"
    });
    // When parsed
    let snapshot = parse(&camel);
    // Then it equals the snake_case snapshot
    assert_eq!(snapshot, parse(&full_snake()));
}

#[test]
fn graphql_outer_names_with_plain_nested_amount_parse_like_snake_case() {
    // Given aliased outer names around a plainly named amount
    let v = json!({
        "uma_invitation_id": "UmaInvitation:1",
        "uma_invitation_payment_amount": {"value": 1234, "currency": {"code": "EUR"}}
    });
    // When parsed
    let snapshot = parse(&v);
    // Then the amount is read all the same
    assert_eq!(snapshot.id.as_deref(), Some("UmaInvitation:1"));
    assert_eq!(snapshot.payment_amount, Some(money(1234, "EUR")));
}

#[test]
fn snake_case_spelling_wins_when_several_spellings_are_present() {
    // Given an object carrying two spellings of the same field
    let v = json!({"uma_invitation_code": "ALIASED", "code": "SNAKE", "inviteeUma": "$camel@x", "uma_invitation_invitee_uma": "$aliased@x"});
    // When parsed
    let s = parse(&v);
    // Then snake_case wins, then the GraphQL alias, then camelCase
    assert_eq!(s.code.as_deref(), Some("SNAKE"));
    assert_eq!(s.invitee_uma.as_deref(), Some("$aliased@x"));
}

#[test]
fn empty_null_or_wrongly_typed_text_falls_through_to_the_next_spelling() {
    // Given unusable values under the first spellings
    let v = json!({"invitee_uma": "", "uma_invitation_invitee_uma": null, "inviteeUma": "$b@y",
                   "code": 42, "url": "", "status": ""});
    // When parsed
    let s = parse(&v);
    // Then the usable spelling is taken and the rest are absent
    assert_eq!(s.invitee_uma.as_deref(), Some("$b@y"));
    assert_eq!((s.code, s.url, s.status), (None, None, None));
}

#[test]
fn amount_to_send_with_a_string_currency_is_a_valid_amount() {
    // Given the amountToSend spelling with a currency code string
    for v in [
        json!({"amount_to_send": {"amount": 500, "currency": "USD"}}),
        json!({"amountToSend": {"value": 500, "currency": "USD"}}),
    ] {
        // When parsed / Then it is 500 USD
        assert_eq!(amount_of(v), Some(money(500, "USD")));
    }
}

#[test]
fn currency_object_and_currency_code_give_the_same_money_with_decimals_when_given() {
    // Given the currency as an object (either naming) and as a bare code
    let jpy = |decimals| Some(PaymentAmount::Valid(Money::new(7, "JPY").unwrap().with_decimals(decimals)));
    let forms = [
        (json!({"value": 7, "currency": "JPY"}), jpy(None)),
        (json!({"value": 7, "currency": {"code": "JPY", "decimals": 0, "symbol": "¥", "name": "Yen"}}), jpy(Some(0))),
        (json!({"value": 7, "currency": {"uma_currency_code": "JPY", "uma_currency_decimals": 0}}), jpy(Some(0))),
        (json!({"uma_currency_amount_value": 7, "uma_currency_amount_currency": "JPY"}), jpy(None)),
        // decimals that are not a small non-negative integer are not given
        (json!({"value": 7, "currency": {"code": "JPY", "decimals": -1}}), jpy(None)),
        (json!({"value": 7, "currency": {"code": "JPY", "decimals": 2.5}}), jpy(None)),
        (json!({"value": 7, "currency": {"code": "JPY", "decimals": "2"}}), jpy(None)),
        (json!({"value": 7, "currency": {"code": "JPY", "decimals": 99}}), jpy(None)),
        // the last decimals that are given, and the first that are not
        (json!({"value": 7, "currency": {"code": "JPY", "decimals": 18}}), jpy(Some(18))),
        (json!({"value": 7, "currency": {"code": "JPY", "decimals": 19}}), jpy(None)),
    ];
    for (amount, expected) in forms {
        // When parsed / Then each is 7 JPY, with the decimals it gave
        assert_eq!(amount_of(json!({ "payment_amount": amount.clone() })), expected, "{amount}");
    }
}

#[test]
fn amount_given_as_a_digit_string_is_read_exactly() {
    // Given 64-bit amounts sent as strings, as JavaScript-safe SDKs do
    // When parsed / Then the exact integer is kept, even beyond 2^53
    assert_eq!(
        amount_of(json!({"payment_amount": {"value": "9007199254740993", "currency": "SAT"}})),
        Some(money(9_007_199_254_740_993, "SAT"))
    );
    assert_eq!(amount_of(json!({"payment_amount": {"value": "-0", "currency": "SAT"}})), Some(money(0, "SAT")));
}

#[test]
fn minus_zero_is_zero_as_a_number_or_a_string() {
    // Given an amount of -0, written as a JSON number and as a string
    for text in [
        r#"{"payment_amount": {"value": -0, "currency": "SAT"}}"#,
        r#"{"payment_amount": {"value": "-0", "currency": "SAT"}}"#,
        r#"{"uma_invitation_payment_amount": {"uma_currency_amount_value": -0, "uma_currency_amount_currency": {"uma_currency_code": "SAT"}}}"#,
    ] {
        // When parsed, from a `Value` and straight from the text
        let value: Value = serde_json::from_str(text).unwrap();
        let wire: WireSnapshot = serde_json::from_str(text).unwrap();
        // Then it is zero, which owes nothing, not an unusable amount
        assert_eq!(amount_of(value), Some(money(0, "SAT")), "{text}");
        assert_eq!(wire.0.payment_amount, Some(money(0, "SAT")), "{text}");
    }
}

#[test]
fn unusable_amounts_are_invalid_with_the_reason() {
    // Given amounts that cannot be paid
    let cases = [
        (json!(-1), REASON_NEGATIVE),
        (json!("-5"), REASON_NEGATIVE),
        (json!(-1.5), REASON_NEGATIVE),
        (json!(1.5), REASON_FRACTIONAL),
        (json!(1e30), REASON_TOO_BIG),
        (json!(u64::MAX), REASON_TOO_BIG),
        (json!((i64::MAX as u64) + 1), REASON_TOO_BIG),
        (json!("9223372036854775808"), REASON_TOO_BIG),
        (json!("12x"), REASON_NOT_A_NUMBER),
        (json!(""), REASON_NOT_A_NUMBER),
        (json!("-"), REASON_NOT_A_NUMBER),
        (json!("+5"), REASON_NOT_A_NUMBER),
        (json!(true), REASON_NOT_A_NUMBER),
        (json!([500]), REASON_NOT_A_NUMBER),
        (json!(500.0), REASON_NOT_INTEGER_FORM),
    ];
    for (value, expected) in cases {
        // When parsed
        let reason = reason_of(json!({"value": value, "currency": "USD"}));
        // Then the reason says why
        assert_eq!(reason, expected, "for value {value}");
    }
}

#[test]
fn a_literal_beyond_u64_is_too_big_not_a_crash() {
    // Given a body whose amount overflows every integer type, as bytes
    let v: Value =
        serde_json::from_str(r#"{"payment_amount": {"value": 123456789012345678901234567890, "currency": "USD"}}"#)
            .unwrap();
    // When parsed / Then it is "does not fit in 64 bits"
    assert_eq!(amount_of(v), Some(PaymentAmount::Invalid { reason: REASON_TOO_BIG.into() }));
}

#[test]
fn bad_currency_or_shape_or_missing_value_is_invalid() {
    // Given amounts with an unusable currency, shape or value
    for currency in
        [json!(""), json!("US D"), json!("ABCDEFGHIJKLMNOPQ"), json!(840), json!({"symbol": "$"}), json!({"code": 840})]
    {
        // Then the currency shape is named
        assert_eq!(reason_of(json!({"value": 1, "currency": currency})), REASON_CURRENCY);
    }
    assert_eq!(reason_of(json!({"value": 1})), REASON_CURRENCY);
    assert_eq!(reason_of(json!({"currency": "USD"})), REASON_NO_VALUE);
    assert_eq!(reason_of(json!(500)), REASON_SHAPE);
    assert_eq!(reason_of(json!("500 USD")), REASON_SHAPE);
    assert_eq!(reason_of(json!([])), REASON_SHAPE);
}

#[test]
fn a_null_amount_is_absent_and_does_not_hide_another_spelling() {
    // Given a null amount, alone and next to a real one
    assert_eq!(amount_of(json!({"payment_amount": null})), None);
    // When another spelling carries a value / Then that one is used
    assert_eq!(
        amount_of(json!({"payment_amount": null, "amount_to_send": {"amount": 3, "currency": "USD"}})),
        Some(money(3, "USD"))
    );
}

#[test]
fn unknown_enum_values_are_kept_verbatim() {
    // Given statuses this build does not know
    let v = json!({"status": "REVOKED_BY_OPERATOR", "incentives_status": "UNDER_REVIEW", "incentives_ineligibility_reason": "NEW_REASON"});
    // When parsed
    let s = parse(&v);
    // Then they are kept as sent, are not terminal, and serialise back unchanged
    assert_eq!(s.status, Some(InvitationStatus::Other("REVOKED_BY_OPERATOR".into())));
    assert_eq!(s.incentives_status, Some(IncentivesStatus::Other("UNDER_REVIEW".into())));
    assert_eq!(s.incentives_ineligibility_reason.as_deref(), Some("NEW_REASON"));
    assert!(!s.status.as_ref().unwrap().is_terminal());
    assert!(!s.incentives_status.as_ref().unwrap().is_terminal());
    assert_eq!(serde_json::to_value(&s.status).unwrap(), json!("REVOKED_BY_OPERATOR"));
    assert_eq!(InvitationStatus::parse("claimed"), InvitationStatus::Other("claimed".into()));
}

#[test]
fn invalid_incentives_status_means_ineligible() {
    // Given the INVALID spelling the docs mention
    let s = parse(&json!({"incentives_status": "INVALID"}));
    // Then it is the terminal Ineligible state, printed as INELIGIBLE
    assert_eq!(s.incentives_status, Some(IncentivesStatus::Ineligible));
    assert!(IncentivesStatus::Ineligible.is_terminal());
    assert_eq!(IncentivesStatus::parse("INVALID").as_str(), "INELIGIBLE");
}

#[test]
fn statuses_serialise_as_their_upper_case_names_and_round_trip() {
    // Given every known status
    for s in ["PENDING", "CLAIMED", "CANCELLED", "EXPIRED"] {
        let status = InvitationStatus::parse(s);
        // Then it serialises as its name and reads back equal
        assert_eq!(serde_json::to_value(&status).unwrap(), json!(s));
        assert_eq!(serde_json::from_value::<InvitationStatus>(json!(s)).unwrap(), status);
        assert_eq!(status.is_terminal(), s != "PENDING");
    }
    for s in ["PENDING", "VALIDATED", "INELIGIBLE"] {
        let status = IncentivesStatus::parse(s);
        assert_eq!(serde_json::to_value(&status).unwrap(), json!(s));
        assert_eq!(serde_json::from_value::<IncentivesStatus>(json!(s)).unwrap(), status);
        assert_eq!(status.is_terminal(), s != "PENDING");
    }
}

#[test]
fn a_non_object_gives_an_all_none_snapshot() {
    // Given JSON that is not an object
    for v in [json!(null), json!(1), json!("CLAIMED"), json!([{"status": "CLAIMED"}]), json!(true)] {
        // When parsed / Then nothing is known
        assert_eq!(parse(&v), InvitationSnapshot::default());
    }
}

#[test]
fn money_cannot_be_built_negative_or_with_a_malformed_currency() {
    assert!(Money::new(-1, "USD").is_err());
    assert!(Money::new(1, "").is_err());
    assert!(Money::new(1, "U-S").is_err());
    let m = Money::new(0, "usd").unwrap();
    // The currency is kept verbatim, not upper-cased
    assert_eq!((m.value(), m.currency()), (0, "usd"));
}

#[test]
fn money_survives_a_serde_round_trip_and_negative_json_is_rejected() {
    // Given money
    let m = Money::new(500, "USD").unwrap();
    // When serialised / Then it is the value-and-currency object, and reads back equal
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(v, json!({"value": 500, "currency": "USD"}));
    assert_eq!(serde_json::from_value::<Money>(v).unwrap(), m);
    // And deserialising a negative or malformed one fails
    assert!(serde_json::from_value::<Money>(json!({"value": -500, "currency": "USD"})).is_err());
    assert!(serde_json::from_value::<Money>(json!({"value": 5, "currency": ""})).is_err());
}

#[test]
fn a_snapshot_survives_a_serde_round_trip() {
    let mut s = parse(&full_snake());
    let back: InvitationSnapshot = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
    assert_eq!(back, s);
    s.payment_amount = Some(PaymentAmount::Invalid { reason: REASON_FRACTIONAL.into() });
    let back: InvitationSnapshot = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

const WEBHOOK_FIXTURES: [(&str, &str, &str); 5] = [
    (
        "claimed_snake_case",
        include_str!("../../../fixtures/webhooks/claimed_snake_case.json"),
        include_str!("../../../fixtures/webhooks/claimed_snake_case.sig"),
    ),
    (
        "claimed_graphql_aliased",
        include_str!("../../../fixtures/webhooks/claimed_graphql_aliased.json"),
        include_str!("../../../fixtures/webhooks/claimed_graphql_aliased.sig"),
    ),
    (
        "claimed_graphql_plain_nested",
        include_str!("../../../fixtures/webhooks/claimed_graphql_plain_nested.json"),
        include_str!("../../../fixtures/webhooks/claimed_graphql_plain_nested.sig"),
    ),
    (
        "claimed_camel_case",
        include_str!("../../../fixtures/webhooks/claimed_camel_case.json"),
        include_str!("../../../fixtures/webhooks/claimed_camel_case.sig"),
    ),
    (
        "claimed_amount_to_send",
        include_str!("../../../fixtures/webhooks/claimed_amount_to_send.json"),
        include_str!("../../../fixtures/webhooks/claimed_amount_to_send.sig"),
    ),
];

#[test]
fn every_webhook_fixture_and_the_graphql_fixture_give_the_same_snapshot() {
    // Given the five webhook fixtures and the GraphQL answer
    for (name, body, _) in WEBHOOK_FIXTURES {
        let envelope: Value = serde_json::from_str(body).unwrap();
        // When their invitation is parsed
        let snapshot = parse(&envelope["data"]);
        // Then each is the fixture invitation, field for field (the
        // amount_to_send spelling names its currency by code alone, so its
        // decimals are not given)
        let mut expected = fixture_snapshot();
        if name == "claimed_amount_to_send" {
            expected.payment_amount = Some(money(500, "USD"));
        }
        assert_eq!(snapshot, expected, "fixture {name}");
    }
    let answer: Value =
        serde_json::from_str(include_str!("../../../fixtures/graphql/invitation_claimed.json")).unwrap();
    assert_eq!(parse(&answer["data"]["entity"]), fixture_snapshot());
}

#[test]
fn every_webhook_fixture_is_signed_over_its_exact_bytes() {
    use hmac::{Hmac, Mac};
    for (name, body, sig) in WEBHOOK_FIXTURES {
        // Given a fixture and its signature file
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"fixture-signing-secret").unwrap();
        mac.update(body.as_bytes());
        // Then the signature is the lower-case hex HMAC of the bytes, with no newline anywhere
        assert_eq!(sig, hex::encode(mac.finalize().into_bytes()), "fixture {name}");
        assert!(!body.ends_with('\n'), "fixture {name} ends with a newline");
    }
}

// Keys the parser looks at, so that generated objects often hit real paths.
const FIELD_KEYS: &[&str] = &[
    "id",
    "uma_invitation_id",
    "code",
    "uma_invitation_code",
    "url",
    "uma_invitation_url",
    "inviter_uma",
    "uma_invitation_inviter_uma",
    "inviterUma",
    "inviter_first_name",
    "uma_invitation_inviter_first_name",
    "inviterFirstName",
    "invitee_uma",
    "uma_invitation_invitee_uma",
    "inviteeUma",
    "status",
    "uma_invitation_status",
    "incentives_status",
    "uma_invitation_incentives_status",
    "incentivesStatus",
    "incentives_ineligibility_reason",
    "uma_invitation_incentives_ineligibility_reason",
    "incentivesIneligibilityReason",
    "created_at",
    "uma_invitation_created_at",
    "createdAt",
    "updated_at",
    "uma_invitation_updated_at",
    "updatedAt",
    "cancelled_at",
    "uma_invitation_cancelled_at",
    "cancelledAt",
    "expires_at",
    "uma_invitation_expires_at",
    "expiresAt",
    "payment_amount",
    "uma_invitation_payment_amount",
    "paymentAmount",
    "amount_to_send",
    "amountToSend",
    "value",
    "uma_currency_amount_value",
    "amount",
    "currency",
    "uma_currency_amount_currency",
    "code",
    "uma_currency_code",
    "decimals",
    "uma_currency_decimals",
    "symbol",
    "name",
];
const WORDS: &[&str] = &[
    "",
    "CLAIMED",
    "PENDING",
    "VALIDATED",
    "INVALID",
    "INELIGIBLE",
    "USD",
    "SAT",
    "-",
    "-0",
    "500",
    "-500",
    "9223372036854775808",
    "12x",
    "ü€",
];

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELD_KEYS).prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,12}",
    ]
}

fn arb_envelope_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&["event_type", "event_id", "timestamp", "entity_id", "wallet_id", "data"][..]).prop_map(str::to_owned),
        1 => "[a-z_]{0,8}",
    ]
}

/// Amount objects in every spelling, with odd values and currencies.
fn arb_amount() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(&[0.5, -1.0, 500.0, 1e30, -0.0][..]).prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        Just(json!([1])),
        Just(json!({"code": "USD"})),
    ];
    let currency = prop_oneof![
        leaf.clone(),
        prop::collection::vec(
            (prop::sample::select(&["code", "uma_currency_code", "decimals"][..]), leaf.clone()),
            0..3
        )
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
    ];
    let member = prop_oneof![
        (prop::sample::select(AMOUNT_VALUE), leaf.clone()),
        (prop::sample::select(AMOUNT_CURRENCY), currency),
        (Just("name"), leaf.clone()),
    ];
    prop_oneof![
        1 => leaf,
        4 => prop::collection::vec(member, 0..4)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(WORDS).prop_map(Value::from),
        "-?[0-9]{0,25}x?".prop_map(Value::String),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(arb_key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON text of an object with these members, in this order, repeated
/// keys and all (which a `Value` cannot hold).
fn object_text(members: &[(String, Value)]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), serde_json::to_string(v).unwrap()))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// Reads `text` both ways: into a `Value` then [`parse`],
/// and straight through [`WireSnapshot`]. `None` when the text is refused.
fn both_ways(text: &[u8]) -> (Option<InvitationSnapshot>, Option<InvitationSnapshot>) {
    let via_value = serde_json::from_slice::<Value>(text).ok().filter(Value::is_object).map(|v| parse(&v));
    let wire = serde_json::from_slice::<WireSnapshot>(text).ok().map(|w| w.0);
    (via_value, wire)
}

#[test]
fn texts_a_value_refuses_are_refused_when_read_straight_through() {
    // Given texts whose only flaw sits in a value no field reads
    for text in [
        &br#"{"code":"C","other":"\ud800"}"#[..],
        br#"{"code":"C","other":1e999}"#,
        b"{\"code\":\"C\",\"other\":\"\xff\"}",
        br#"{"code":"C","other":[1,{"a":"\x"}]}"#,
        br#"{"code":"C","other":}"#,
    ] {
        // When read both ways, then both refuse them
        assert_eq!(both_ways(text), (None, None), "{}", String::from_utf8_lossy(text));
    }
}

#[test]
fn amounts_of_every_shape_read_straight_through_as_from_their_value() {
    // Given amounts whose first usable-looking spelling is not the one
    // that counts, and shapes that are not amounts at all
    for amount in [
        r#"{"value":500,"currency":{"code":7,"uma_currency_code":"USD"}}"#,
        r#"{"value":500,"currency":{"code":null,"uma_currency_code":"USD"}}"#,
        r#"{"value":null,"amount":"12","currency":"SAT"}"#,
        r#"{"value":"-0","uma_currency_amount_currency":{"uma_currency_code":"EUR"},"currency":null}"#,
        r#"{"value":1.5,"currency":"USD"}"#,
        r#"{"value":18446744073709551615,"currency":"USD"}"#,
        r#"{"value":-3,"currency":"USD"}"#,
        r#"{"value":5,"currency":"U S D"}"#,
        r#"{"value":5,"currency":["USD"]}"#,
        r#"{"value":5,"currency":{"code":{"x":1}}}"#,
        r#"{"value":5,"value":6,"currency":"USD","currency":"EUR"}"#,
        r#"{"currency":"USD"}"#,
        r#""500 USD""#,
        r#"[500,"USD"]"#,
        "42",
        "true",
        "null",
    ] {
        for spelling in AMOUNT {
            let text = format!(r#"{{"payment_amount":null,"{spelling}":{amount}}}"#);
            // When read both ways, then they agree
            let (value, wire) = both_ways(text.as_bytes());
            assert!(value.is_some(), "{text}");
            assert_eq!(value, wire, "{text}");
        }
    }
}

#[test]
fn a_spelling_given_twice_counts_as_its_last_value() {
    let (value, wire) =
        both_ways(br#"{"code":"A","uma_invitation_code":"B","code":"","status":"PENDING","status":"CLAIMED"}"#);
    let wire = wire.unwrap();
    assert_eq!(wire.code.as_deref(), Some("B"));
    assert_eq!(wire.status, Some(InvitationStatus::Claimed));
    assert_eq!(value, Some(wire));
}

proptest! {
    #[test]
    fn from_json_never_panics_on_arbitrary_json(v in arb_json()) {
        let _ = parse(&v);
    }

    #[test]
    fn from_json_only_ever_yields_payable_valid_amounts(
        fields in prop::collection::btree_map(arb_key(), arb_json(), 0..12)
    ) {
        // Given an object whose keys are mostly the real field names
        let v = Value::Object(fields.into_iter().collect());
        // When parsed
        let s = parse(&v);
        // Then a valid amount is non-negative with a well-formed code, and
        // no text field is ever the empty string
        if let Some(PaymentAmount::Valid(m)) = &s.payment_amount {
            prop_assert!(m.value() >= 0);
            prop_assert!(is_currency_code(m.currency()));
        }
        for t in [&s.id, &s.code, &s.url, &s.inviter_uma, &s.invitee_uma, &s.updated_at] {
            prop_assert_ne!(t.as_deref(), Some(""));
        }
    }

    #[test]
    fn read_straight_from_text_an_invitation_is_what_its_value_gives(
        members in prop::collection::vec((arb_key(), arb_json()), 0..16),
        amounts in prop::collection::vec((prop::sample::select(AMOUNT), arb_amount()), 0..3),
        repeat in prop::collection::vec((any::<prop::sample::Index>(), arb_json()), 0..3),
    ) {
        // Given an object in mostly real spellings, amounts of every
        // shape, some keys given twice
        let mut members = members;
        members.extend(amounts.into_iter().map(|(k, v)| (k.to_owned(), v)));
        for (i, v) in repeat {
            if !members.is_empty() {
                let key = members[i.index(members.len())].0.clone();
                members.push((key, v));
            }
        }
        // When read into a Value and parsed, and read straight through
        let (via_value, wire) = both_ways(object_text(&members).as_bytes());
        // Then both give the same snapshot
        prop_assert!(via_value.is_some());
        prop_assert_eq!(via_value, wire);
    }

    #[test]
    fn read_straight_from_text_a_webhook_is_what_its_envelope_gives(
        members in prop::collection::vec((arb_envelope_key(), arb_json()), 0..8),
        data in prop::option::of(prop::collection::vec((arb_key(), arb_json()), 0..10)),
        required in prop::collection::vec(prop::bool::weighted(0.9), 4),
    ) {
        use crate::lightspark::webhook::{WebhookEnvelope, WebhookFacts};
        // Given an envelope with most required fields, odd extra or
        // repeated members, and data that is mostly an invitation object
        let mut members = members;
        for (name, keep) in ["event_type", "event_id", "timestamp", "entity_id"].into_iter().zip(required) {
            if keep {
                members.push((name.to_owned(), Value::from(format!("{name}-1"))));
            }
        }
        let mut text = object_text(&members);
        if let Some(data) = data {
            // Data as text, so that its repeated keys reach both readers.
            text.pop();
            if !members.is_empty() {
                text.push(',');
            }
            text.push_str(&format!("\"data\":{}}}", object_text(&data)));
        }
        // When parsed as the ingest does, and as the fold does
        let envelope = WebhookEnvelope::parse(text.as_bytes());
        let facts = WebhookFacts::parse(text.as_bytes());
        // Then both accept or both refuse, and agree on what they read
        prop_assert_eq!(envelope.is_ok(), facts.is_ok(), "{}", text);
        if let (Ok(e), Ok(f)) = (envelope, facts) {
            prop_assert_eq!(&e.event_type, &*f.event_type);
            prop_assert_eq!(&e.timestamp, &*f.timestamp);
            let data = e.data.as_ref().filter(|d| d.is_object()).map(parse);
            prop_assert_eq!(data, f.data.map(|w| w.0));
        }
    }

}
