//! The fold's rules, given / when / then, and the order-independence
//! property.
//!
//! One idea, the fold's contract, over the 600-line guide: its cases read
//! best side by side, each rule next to the ones it must not break.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::events::ObligationKind;
use super::state::{apply, FetchPhase, InvitationState};
use super::view::{self, ObligationState};
use crate::ledger::LedgerEvent;

const INV: &str = "UmaInvitation:1";

fn event(seq: u64, kind: &str, stream: &str, body: Value) -> LedgerEvent {
    LedgerEvent {
        seq,
        event_key: format!("k{seq}"),
        kind: kind.into(),
        stream: Some(stream.into()),
        recorded_at: "2026-11-01T00:00:00Z".into(),
        body: serde_json::to_vec(&body).unwrap(),
        signature: None,
        prev_hash: crate::ledger::hash::GENESIS,
        hash: crate::ledger::hash::GENESIS,
    }
}

fn webhook(seq: u64, timestamp: &str, data: Option<Value>) -> LedgerEvent {
    let mut body = json!({"event_type": "UMA_INVITATION_CLAIMED", "event_id": format!("e{seq}"),
                          "timestamp": timestamp, "entity_id": INV});
    if let Some(d) = data {
        body["data"] = d;
    }
    let mut e = event(seq, "webhook.received", INV, body);
    e.event_key = crate::vocab::EventKey::lightspark_webhook(&format!("e{seq}"), &e.body).to_string();
    e
}

fn snapshot(updated_at: &str, extra: Value) -> Value {
    let mut v = json!({"id": INV, "code": "CODE1", "inviter_uma": "$a@x", "updated_at": updated_at});
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

fn fold(events: &[LedgerEvent]) -> InvitationState {
    events.iter().fold(InvitationState::new(INV), apply)
}

#[test]
fn a_claimed_webhook_with_data_sets_every_fact() {
    // given a claimed webhook carrying the whole invitation
    let e = webhook(
        1,
        "2026-11-01T12:00:01+00:00",
        Some(snapshot(
            "2026-11-01T12:00:00+00:00",
            json!({
        "invitee_uma": "$b@y", "status": "CLAIMED", "incentives_status": "VALIDATED",
        "payment_amount": {"value": 500, "currency": {"code": "USD", "decimals": 2}}}),
        )),
    );
    // when it is folded
    let v = view::view(&fold(&[e]));
    // then the projection shows it all and every obligation is pending
    assert_eq!(v.status.as_deref(), Some("CLAIMED"));
    assert_eq!(v.invitee_uma.as_deref(), Some("$b@y"));
    assert_eq!(v.payment_amount.as_ref().map(|m| (m.value(), m.currency().to_owned())), Some((500, "USD".into())));
    assert_eq!(v.claimed_at.as_deref(), Some("2026-11-01T12:00:00+00:00"));
    assert_eq!(v.last_seq, 1);
    assert_eq!(v.payout.state, ObligationState::Pending);
    assert_eq!(v.incentive.state, ObligationState::Pending);
    assert_eq!(v.notification.state, ObligationState::Pending);
    assert_eq!(v.fetch.state, view::FetchState::NotNeeded);
}

#[test]
fn a_claimed_envelope_whose_invitation_has_no_status_means_claimed() {
    let e = webhook(1, "2026-11-01T12:00:01+00:00", Some(json!({"id": INV, "invitee_uma": "$b@y"})));
    let s = fold(&[e]);
    assert!(s.is_claimed());
    assert_eq!(view::view(&s).claimed_at.as_deref(), Some("2026-11-01T12:00:01+00:00"));
}

#[test]
fn a_claimed_webhook_without_data_asks_for_a_fetch_and_the_snapshot_fills_it_in() {
    // given a bare claimed webhook
    let bare = webhook(1, "2026-11-01T12:00:01+00:00", None);
    let s = fold(std::slice::from_ref(&bare));
    assert!(s.is_claimed());
    assert_eq!(s.fetch.phase, FetchPhase::Pending);
    assert!(view::fetch_wanted(&s) && view::awaiting_data(&s));
    // when the API does not know it yet, then does, incentive still pending
    let fetched = |seq: u64, entity: Value| {
        event(
            seq,
            "invitation.fetched",
            INV,
            json!({"invitation_id": INV, "fetched_at": "2026-11-01T12:00:05Z", "entity": entity}),
        )
    };
    let unknown = fetched(2, Value::Null);
    let known = fetched(
        3,
        json!({"uma_invitation_id": INV, "uma_invitation_code": "C9", "uma_invitation_invitee_uma": "$b@y",
               "uma_invitation_inviter_uma": "$a@x", "uma_invitation_status": "CLAIMED",
               "uma_invitation_incentives_status": "PENDING",
               "uma_invitation_updated_at": "2026-11-01T12:00:00+00:00"}),
    );
    let mid = fold(&[bare.clone(), unknown.clone()]);
    assert_eq!(mid.fetch.phase, FetchPhase::NotFound);
    assert!(view::awaiting_data(&mid) && view::fetch_wanted(&mid));
    let s = fold(&[bare.clone(), unknown.clone(), known.clone()]);
    // then the facts are known; it is still wanted while Lightspark has
    // not assessed the incentive
    assert_eq!(s.fetch.phase, FetchPhase::Fetched);
    assert!(!view::awaiting_data(&s) && view::fetch_wanted(&s));
    assert_eq!(view::view(&s).code.as_deref(), Some("C9"));
    assert_eq!(view::obligation(&s, ObligationKind::InviterNotification).state, ObligationState::Pending);
    // and once the incentive is decided nothing is left to fetch
    let validated = fetched(
        4,
        json!({"uma_invitation_id": INV, "uma_invitation_incentives_status": "VALIDATED",
               "uma_invitation_updated_at": "2026-11-01T13:00:00+00:00"}),
    );
    let s = fold(&[bare, unknown, known, validated]);
    assert!(!view::fetch_wanted(&s));
    assert_eq!(view::work(&s) & view::work_bits::FETCH, 0);
}

#[test]
fn an_id_that_names_another_entity_is_never_fetched_again() {
    let bare = webhook(1, "2026-11-01T12:00:01+00:00", None);
    let failed = event(
        2,
        "invitation.fetch_failed",
        INV,
        json!({"invitation_id": INV, "reason": "not_an_invitation", "error": "data.entity is a Wallet",
               "failed_at": "2026-11-01T12:00:02Z"}),
    );
    let s = fold(&[bare, failed]);
    assert_eq!(s.fetch.phase, FetchPhase::Failed);
    assert!(!view::fetch_wanted(&s));
    assert_eq!(view::view(&s).fetch.last_error.as_deref(), Some("data.entity is a Wallet"));
}

#[test]
fn an_older_pending_snapshot_arriving_later_never_reverts_claimed() {
    let claimed = webhook(
        1,
        "2026-11-01T12:00:01+00:00",
        Some(snapshot("2026-11-01T12:00:00+00:00", json!({"status": "CLAIMED"}))),
    );
    let stale = webhook(
        2,
        "2026-11-01T11:00:01+00:00",
        Some(snapshot("2026-11-01T11:00:00+00:00", json!({"status": "PENDING"}))),
    );
    assert!(fold(&[claimed, stale]).is_claimed());
}

#[test]
fn even_a_newer_pending_snapshot_does_not_move_a_terminal_status_back() {
    let claimed = webhook(1, "t", Some(snapshot("2026-11-01T12:00:00+00:00", json!({"status": "CLAIMED"}))));
    let newer = webhook(2, "t", Some(snapshot("2026-11-02T12:00:00+00:00", json!({"status": "PENDING"}))));
    assert!(fold(&[claimed, newer]).is_claimed());
}

#[test]
fn a_stale_snapshot_does_not_overwrite_a_newer_field() {
    let newer = webhook(1, "t", Some(snapshot("2026-11-01T12:00:00+00:00", json!({"invitee_uma": "$new@y"}))));
    let older = webhook(2, "t", Some(snapshot("2026-11-01T10:00:00+00:00", json!({"invitee_uma": "$old@y"}))));
    assert_eq!(view::view(&fold(&[newer, older])).invitee_uma.as_deref(), Some("$new@y"));
}

#[test]
fn fields_missing_from_a_later_event_keep_their_known_values() {
    let full = webhook(
        1,
        "t",
        Some(snapshot(
            "2026-11-01T10:00:00+00:00",
            json!({"invitee_uma": "$b@y",
        "payment_amount": {"value": 100, "currency": "EUR"}}),
        )),
    );
    let partial =
        webhook(2, "t", Some(json!({"id": INV, "updated_at": "2026-11-01T12:00:00+00:00", "status": "CLAIMED"})));
    let v = view::view(&fold(&[full, partial]));
    assert_eq!(v.invitee_uma.as_deref(), Some("$b@y"));
    assert_eq!(v.code.as_deref(), Some("CODE1"));
    assert_eq!(v.payment_amount.map(|m| m.value()), Some(100));
}

#[test]
fn incentives_move_forward_from_pending_and_never_back() {
    let pending = webhook(
        1,
        "t",
        Some(snapshot("2026-11-01T10:00:00+00:00", json!({"status": "CLAIMED", "incentives_status": "PENDING"}))),
    );
    let validated =
        webhook(2, "t", Some(snapshot("2026-11-01T11:00:00+00:00", json!({"incentives_status": "VALIDATED"}))));
    let later_pending =
        webhook(3, "t", Some(snapshot("2026-11-01T12:00:00+00:00", json!({"incentives_status": "PENDING"}))));
    let s = fold(&[pending, validated, later_pending]);
    assert_eq!(view::view(&s).incentives_status.as_deref(), Some("VALIDATED"));
    assert_eq!(view::obligation(&s, ObligationKind::InviterIncentive).state, ObligationState::Pending);
}

#[test]
fn claimed_at_is_the_earliest_event_that_showed_claimed() {
    let late = webhook(1, "2026-11-01T12:00:09+00:00", None);
    let early = webhook(2, "2026-11-01T12:00:01+00:00", None);
    assert_eq!(view::view(&fold(&[late, early])).claimed_at.as_deref(), Some("2026-11-01T12:00:01+00:00"));
}

#[test]
fn an_unpayable_amount_shows_invalid_with_its_reason_and_is_never_pending() {
    for (amount, reason) in [
        (json!({"value": -5, "currency": "USD"}), "negative"),
        (json!({"value": 1.5, "currency": "USD"}), "fractional"),
        (json!({"value": 1e30, "currency": "USD"}), "64 bits"),
        (json!({"value": 5, "currency": 7}), "currency"),
    ] {
        let e = webhook(
            1,
            "t",
            Some(snapshot(
                "2026-11-01T10:00:00+00:00",
                json!({"status": "CLAIMED",
            "invitee_uma": "$b@y", "payment_amount": amount}),
            )),
        );
        let s = fold(&[e]);
        let payout = view::obligation(&s, ObligationKind::InviteePayment);
        assert_eq!(payout.state, ObligationState::Invalid);
        assert!(payout.reason.as_deref().unwrap().contains(reason), "{:?}", payout.reason);
        assert!(view::view(&s).payment_amount.is_none());
    }
}

#[test]
fn cancelled_expired_and_pending_invitations_owe_nothing() {
    for status in ["CANCELLED", "EXPIRED", "PENDING", "SOMETHING_NEW"] {
        let e = webhook(
            1,
            "t",
            Some(snapshot(
                "2026-11-01T10:00:00+00:00",
                json!({"status": status,
            "invitee_uma": "$b@y", "incentives_status": "VALIDATED", "payment_amount": {"value": 5, "currency": "USD"}}),
            )),
        );
        let s = fold(&[e]);
        for kind in ObligationKind::ALL {
            assert_eq!(view::obligation(&s, kind).state, ObligationState::NotDue, "{status} {kind:?}");
        }
        // nothing for the reconciler to pay; a PENDING one is still fetched
        assert_eq!(view::work(&s) & !view::work_bits::FETCH, 0, "{status}");
        assert_eq!(view::fetch_wanted(&s), status == "PENDING", "{status}");
    }
}

#[test]
fn unknown_enum_values_are_kept_verbatim() {
    let e = webhook(
        1,
        "t",
        Some(snapshot(
            "2026-11-01T10:00:00+00:00",
            json!({"status": "REVOKED_2027",
        "incentives_status": "UNDER_REVIEW"}),
        )),
    );
    let v = view::view(&fold(&[e]));
    assert_eq!(v.status.as_deref(), Some("REVOKED_2027"));
    assert_eq!(v.incentives_status.as_deref(), Some("UNDER_REVIEW"));
}

#[test]
fn an_ineligible_incentive_shows_its_reason() {
    let e = webhook(
        1,
        "t",
        Some(snapshot(
            "2026-11-01T10:00:00+00:00",
            json!({"status": "CLAIMED",
        "incentives_status": "INELIGIBLE", "incentives_ineligibility_reason": "NOT_CROSS_BORDER"}),
        )),
    );
    let inc = view::obligation(&fold(&[e]), ObligationKind::InviterIncentive);
    assert_eq!(inc.state, ObligationState::Ineligible);
    assert_eq!(inc.reason.as_deref(), Some("NOT_CROSS_BORDER"));
}

#[test]
fn events_of_another_invitation_change_nothing() {
    let mut other = webhook(1, "t", Some(json!({"id": "Other", "status": "CLAIMED"})));
    other.stream = Some("Other".into());
    assert_eq!(fold(&[other]), InvitationState::new(INV));
}

#[test]
fn every_event_of_the_stream_is_listed_once_in_seq_order_even_one_the_fold_cannot_read() {
    // Given a webhook, an event of another invitation, one the fold cannot
    // read and a later webhook
    let mut other = webhook(2, "t", Some(json!({"id": "Other", "status": "CLAIMED"})));
    other.stream = Some("Other".into());
    let unreadable = event(3, "webhook.received", INV, json!("not a webhook"));
    let events = [webhook(1, "t1", None), other, unreadable, webhook(5, "t2", None)];
    // When they are folded, and the last one again (a repeated delivery of the same row)
    let mut state = fold(&events);
    state = apply(state, &events[3]);
    // Then the invitation lists its own three, oldest first, once each
    assert_eq!(state.events, [1, 3, 5]);
    assert_eq!(state.undecodable.len(), 1);
}

#[test]
fn requested_then_succeeded_settles_the_payout_with_its_payment_id() {
    let claimed = webhook(
        1,
        "t",
        Some(snapshot(
            "2026-11-01T10:00:00+00:00",
            json!({"status": "CLAIMED",
        "invitee_uma": "$b@y", "payment_amount": {"value": 5, "currency": "USD"}}),
        )),
    );
    let key = super::events::IdempotencyKey::of(INV, ObligationKind::InviteePayment);
    let requested = event(
        2,
        "payout.requested",
        INV,
        json!({"invitation_id": INV, "obligation": "invitee_payment",
        "idempotency_key": key, "attempt": 1, "requested_at": "2026-11-01T10:00:01Z",
        "amount": {"value": 5, "currency": "USD"}, "request": {}}),
    );
    let s = fold(&[claimed.clone(), requested.clone()]);
    assert_eq!(view::obligation(&s, ObligationKind::InviteePayment).state, ObligationState::Requested);
    let failed = event(
        3,
        "payout.failed",
        INV,
        json!({"invitation_id": INV, "obligation": "invitee_payment",
        "idempotency_key": key, "attempt": 1, "http_status": 503, "error": "HTTP 503", "permanent": false,
        "next_attempt_at": "2026-11-01T10:00:03Z", "at": "2026-11-01T10:00:02Z"}),
    );
    let s2 = fold(&[claimed.clone(), requested.clone(), failed.clone()]);
    let p = view::obligation(&s2, ObligationKind::InviteePayment);
    assert_eq!(
        (p.state, p.next_attempt_at.as_deref()),
        (ObligationState::RetryScheduled, Some("2026-11-01T10:00:03Z"))
    );
    let succeeded = event(
        4,
        "payout.succeeded",
        INV,
        json!({"invitation_id": INV, "obligation": "invitee_payment",
        "idempotency_key": key, "attempt": 2, "http_status": 200, "payment_id": "pay_1", "at": "2026-11-01T10:00:04Z"}),
    );
    let s3 = fold(&[claimed, requested, failed, succeeded]);
    let p = view::obligation(&s3, ObligationKind::InviteePayment);
    assert_eq!(p.state, ObligationState::Succeeded);
    assert_eq!(p.payment_id.as_deref(), Some("pay_1"));
    assert_eq!(p.idempotency_key.as_ref(), Some(&key));
    assert!(view::work(&s3) == 0 || view::obligation(&s3, ObligationKind::InviterNotification).state.is_open());
}

// ---- the property: delivery order does not change the facts ----

fn arb_time() -> impl Strategy<Value = String> {
    (0u32..6, 0u32..3).prop_map(|(h, m)| format!("2026-11-01T1{h}:0{m}:00+00:00"))
}

fn arb_snapshot() -> impl Strategy<Value = Value> {
    (
        arb_time(),
        prop::option::of(prop::sample::select(vec!["PENDING", "CLAIMED", "CANCELLED", "EXPIRED"])),
        prop::option::of(prop::sample::select(vec!["PENDING", "VALIDATED", "INELIGIBLE", "INVALID"])),
        prop::option::of(prop::sample::select(vec!["$b@y", "$c@z"])),
        prop::option::of((-2i64..1000, prop::sample::select(vec!["USD", "EUR"]))),
        prop::bool::ANY,
    )
        .prop_map(|(t, status, inc, invitee, amount, aliased)| {
            let mut o = serde_json::Map::new();
            let key = |k: &str| if aliased { format!("uma_invitation_{k}") } else { k.to_owned() };
            o.insert(key("id"), json!(INV));
            o.insert(key("updated_at"), json!(t));
            if let Some(s) = status {
                o.insert(key("status"), json!(s));
            }
            if let Some(s) = inc {
                o.insert(key("incentives_status"), json!(s));
            }
            if let Some(s) = invitee {
                o.insert(key("invitee_uma"), json!(s));
            }
            if let Some((v, c)) = amount {
                o.insert(key("payment_amount"), json!({"value": v, "currency": c}));
            }
            o.insert(key("inviter_uma"), json!("$a@x"));
            Value::Object(o)
        })
}

#[derive(Debug, Clone)]
enum Fact {
    Webhook { timestamp: String, data: Option<Value> },
    Fetched(Value),
}

fn arb_fact() -> impl Strategy<Value = Fact> {
    prop_oneof![
        (arb_time(), prop::option::of(arb_snapshot())).prop_map(|(timestamp, data)| Fact::Webhook { timestamp, data }),
        arb_snapshot().prop_map(Fact::Fetched),
    ]
}

fn to_events(facts: &[Fact]) -> Vec<LedgerEvent> {
    facts
        .iter()
        .enumerate()
        .map(|(i, f)| match f {
            Fact::Webhook { timestamp, data } => webhook(i as u64 + 1, timestamp, data.clone()),
            Fact::Fetched(entity) => event(
                i as u64 + 1,
                "invitation.fetched",
                INV,
                json!({"invitation_id": INV, "fetched_at": "2026-11-01T20:00:00Z", "entity": entity}),
            ),
        })
        .collect()
}

/// The projection without the fields that name ledger positions, which
/// differ between deliveries by construction.
fn facts_of(s: &InvitationState) -> Value {
    let mut v = serde_json::to_value(view::view(s)).unwrap();
    v.as_object_mut().unwrap().remove("last_seq");
    v.as_object_mut().unwrap().remove("claim_seq");
    v
}

/// `facts` with every date made distinct (the i-th fact is dated i
/// minutes after a fixed start), keeping everything else.
fn with_distinct_dates(facts: &[Fact]) -> Vec<Fact> {
    let date = |i: usize| format!("2026-11-01T{:02}:{:02}:00+00:00", 10 + i / 60, i % 60);
    let redate = |v: &Value, d: &str| {
        let mut v = v.clone();
        for k in ["updated_at", "uma_invitation_updated_at"] {
            if v.get(k).is_some() {
                v[k] = json!(d);
            }
        }
        v
    };
    facts
        .iter()
        .enumerate()
        .map(|(i, f)| match f {
            Fact::Webhook { data, .. } => {
                Fact::Webhook { timestamp: date(i), data: data.as_ref().map(|d| redate(d, &date(i))) }
            }
            Fact::Fetched(d) => Fact::Fetched(redate(d, &date(i))),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn with_distinct_dates_delivery_order_and_duplicates_do_not_change_the_projection(
        facts in prop::collection::vec(arb_fact(), 1..12),
        shuffle_seed in any::<u64>(),
        dup_mask in prop::collection::vec(any::<bool>(), 12),
    ) {
        // given snapshots of distinct dates, in date order
        let facts = with_distinct_dates(&facts);
        // and the same snapshots delivered in another order, some twice
        let mut shuffled = facts.clone();
        for (i, f) in facts.iter().enumerate() {
            if dup_mask[i % dup_mask.len()] { shuffled.push(f.clone()); }
        }
        crate::rng::SplitMix::seeded(shuffle_seed).shuffle(&mut shuffled);
        // when both deliveries are folded (each event at its arrival seq)
        let a = fold(&to_events(&facts));
        let b = fold(&to_events(&shuffled));
        // then the projections agree
        prop_assert_eq!(facts_of(&a), facts_of(&b));
    }

    #[test]
    fn on_equal_dates_the_projection_depends_only_on_seq(
        facts in prop::collection::vec(arb_fact(), 1..12),
        shuffle_seed in any::<u64>(),
    ) {
        // given snapshots, many of the same date, appended at seqs 1..n
        let events = to_events(&facts);
        // when they are folded in seq order, and in any other order
        let in_order = fold(&events);
        let mut shuffled = events.clone();
        crate::rng::SplitMix::seeded(shuffle_seed).shuffle(&mut shuffled);
        let out_of_order = fold(&shuffled);
        // then the state is the same: only (date, seq) decided, never the
        // order the fold saw them in or the values
        prop_assert_eq!(in_order, out_of_order);
    }
}

// ---------------------------------------------------------------------------
// Money trail under late, reordered and changed snapshots.

fn claimed_snapshot(seq: u64, updated_at: &str, extra: Value) -> LedgerEvent {
    let mut data = snapshot(updated_at, json!({"invitee_uma": "$b@y"}));
    for (k, v) in extra.as_object().unwrap() {
        data[k] = v.clone();
    }
    webhook(seq, updated_at, Some(data))
}

#[test]
fn a_late_older_expired_snapshot_does_not_undo_a_newer_claim() {
    // given a claim validated at 12:00, then a snapshot from 11:00 saying
    // expired and ineligible, delivered late
    let newer = claimed_snapshot(
        1,
        "2026-11-01T12:00:00+00:00",
        json!({"status": "CLAIMED", "incentives_status": "VALIDATED",
               "payment_amount": {"value": 500, "currency": "USD"}}),
    );
    let older = claimed_snapshot(
        2,
        "2026-11-01T11:00:00+00:00",
        json!({"status": "EXPIRED", "incentives_status": "INELIGIBLE", "incentives_ineligibility_reason": "DISABLED"}),
    );
    // when both are folded
    let s = fold(&[newer, older]);
    // then the newest snapshot's facts stand and the invitation is paid
    let v = view::view(&s);
    assert_eq!(v.status.as_deref(), Some("CLAIMED"));
    assert_eq!(v.incentives_status.as_deref(), Some("VALIDATED"));
    assert_eq!(v.payout.state, ObligationState::Pending);
    assert_eq!(v.incentive.state, ObligationState::Pending);
    // and the two final statuses that cannot both be true are flagged
    let kinds: Vec<&str> = v.anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, ["status_conflict", "incentives_conflict"], "{:?}", v.anomalies);
    assert!(v.anomalies[0].detail.contains("CLAIMED and EXPIRED"), "{}", v.anomalies[0].detail);
}

#[test]
fn a_newer_cancellation_after_the_claim_wins_and_is_a_conflict() {
    let claimed = claimed_snapshot(1, "2026-11-01T11:00:00+00:00", json!({"status": "CLAIMED"}));
    let cancelled = claimed_snapshot(2, "2026-11-01T12:00:00+00:00", json!({"status": "CANCELLED"}));
    for events in [vec![claimed.clone(), cancelled.clone()], vec![cancelled, claimed]] {
        let v = view::view(&fold(&events));
        assert_eq!(v.status.as_deref(), Some("CANCELLED"));
        assert_eq!(v.anomalies.len(), 1, "{:?}", v.anomalies);
        assert_eq!(v.anomalies[0].kind, "status_conflict");
    }
}

#[test]
fn a_receiver_or_amount_changed_after_the_request_is_shown_beside_what_was_requested() {
    // given a payout requested for $b@y, 500 USD
    let claimed = claimed_snapshot(
        1,
        "2026-11-01T12:00:00+00:00",
        json!({"status": "CLAIMED", "payment_amount": {"value": 500, "currency": "USD"}}),
    );
    let key = super::events::IdempotencyKey::of(INV, ObligationKind::InviteePayment);
    let requested = event(
        2,
        "payout.requested",
        INV,
        json!({"invitation_id": INV, "obligation": "invitee_payment", "idempotency_key": key, "attempt": 1,
               "requested_at": "2026-11-01T12:00:01Z", "receiver_uma": "$b@y",
               "amount": {"value": 500, "currency": "USD"},
               "request": {"receiver_uma": "$b@y", "amount": {"value": 500, "currency": "USD"}}}),
    );
    // when a newer snapshot names $eve and 900 USD
    let changed = claimed_snapshot(
        3,
        "2026-11-01T13:00:00+00:00",
        json!({"invitee_uma": "$eve@e", "payment_amount": {"value": 900, "currency": "USD"}}),
    );
    let v = view::view(&fold(&[claimed, requested, changed]));
    // then the obligation still shows what was asked, and the change is flagged
    let req = v.payout.requested.as_ref().expect("requested");
    assert_eq!(req.receiver_uma.as_deref(), Some("$b@y"));
    assert_eq!(req.amount.as_ref().map(|m| m.value()), Some(500));
    assert_eq!(v.invitee_uma.as_deref(), Some("$eve@e"));
    let a: Vec<_> = v.anomalies.iter().filter(|a| a.kind == "changed_after_request").collect();
    assert_eq!(a.len(), 1, "{:?}", v.anomalies);
    assert!(a[0].detail.contains("$b@y") && a[0].detail.contains("$eve@e") && a[0].detail.contains("9.00 USD"));
}

#[test]
fn on_equal_dates_the_later_seq_wins_never_the_larger_value() {
    let at = "2026-11-01T12:00:00+00:00";
    let amount = |value: i64| json!({"status": "CLAIMED", "payment_amount": {"value": value, "currency": "USD"}});
    for (first, second) in [(900_000, 1000), (1000, 900)] {
        // given two snapshots of the same moment, the second a correction
        let s = fold(&[claimed_snapshot(1, at, amount(first)), claimed_snapshot(2, at, amount(second))]);
        // then the one appended later is the truth
        assert_eq!(view::view(&s).payment_amount.map(|m| m.value()), Some(second), "{first} then {second}");
    }
}

#[test]
fn a_zero_amount_is_not_due_with_reason_zero_amount() {
    for zero in [json!(0), json!("0"), json!("-0")] {
        let s = fold(&[claimed_snapshot(
            1,
            "2026-11-01T12:00:00+00:00",
            json!({"status": "CLAIMED", "payment_amount": {"value": zero, "currency": "USD"}}),
        )]);
        let payout = view::obligation(&s, ObligationKind::InviteePayment);
        assert_eq!(payout.state, ObligationState::NotDue, "{zero}");
        assert_eq!(payout.reason.as_deref(), Some("zero_amount"), "{zero}");
    }
}

#[test]
fn a_null_request_body_folds_the_same_whether_or_not_the_state_was_stored_between() {
    // given two requests under one key, the first with a null body (a
    // malformed event: the reconciler always sends an object)
    let key = super::events::IdempotencyKey::of(INV, ObligationKind::InviteePayment);
    let requested = |seq: u64, amount: i64, request: Value| {
        event(
            seq,
            "payout.requested",
            INV,
            json!({"invitation_id": INV, "obligation": "invitee_payment",
            "idempotency_key": key, "attempt": seq, "requested_at": "2026-11-01T10:00:01Z",
            "amount": {"value": amount, "currency": "USD"}, "request": request}),
        )
    };
    let (first, second) = (requested(1, 5, Value::Null), requested(2, 7, json!({"amount": 7})));
    // when one fold keeps the state in memory and the other stores it as
    // JSON between the events (as the projector does between batches)
    let in_memory = fold(&[first.clone(), second.clone()]);
    let stored: InvitationState = serde_json::from_str(&serde_json::to_string(&fold(&[first])).unwrap()).unwrap();
    let resumed = apply(stored, &second);
    // then both record the same first request
    assert_eq!(resumed, in_memory);
}

// ---- answers about the invitation asked ----

fn fetched(seq: u64, source: &str, stream: &str, entity: Value) -> LedgerEvent {
    event(
        seq,
        "invitation.fetched",
        stream,
        json!({"invitation_id": stream, "source": source, "fetched_at": "2026-11-01T12:00:05Z", "entity": entity}),
    )
}

fn kinds(s: &InvitationState) -> Vec<&'static str> {
    view::anomalies(s).iter().map(|a| a.kind).collect()
}

#[test]
fn a_fetched_answer_about_another_invitation_or_none_is_not_merged_and_is_an_anomaly() {
    // given a claim without data, and answers recorded for it that name
    // another invitation, or none (ledgers written before answers were
    // checked hold them)
    let mallory = json!({"uma_invitation_invitee_uma": "$mallory@evil.example", "uma_invitation_status": "CLAIMED",
        "uma_invitation_payment_amount": {"uma_currency_amount_value": 99999,
            "uma_currency_amount_currency": {"uma_currency_code": "USD"}}});
    let mut other = mallory.clone();
    other["uma_invitation_id"] = json!("UmaInvitation:mallory");
    for entity in [other, mallory] {
        // when they are folded
        let s = fold(&[webhook(1, "2026-11-01T12:00:01+00:00", None), fetched(2, "lightspark", INV, entity.clone())]);
        // then nothing of them is merged, the data is still awaited, and
        // the projection says why
        let v = view::view(&s);
        assert_eq!((v.invitee_uma.as_deref(), v.payment_amount.as_ref()), (None, None), "{entity}");
        assert_eq!(v.payout.state, ObligationState::NotDue);
        assert_eq!(s.fetch.phase, FetchPhase::Pending);
        assert!(view::awaiting_data(&s) && view::fetch_wanted(&s));
        assert_eq!(kinds(&s), vec!["identity_mismatch"], "{entity}");
        assert!(v.anomalies[0].detail.contains("seq 2"), "{:?}", v.anomalies);
    }
}

#[test]
fn a_fetched_grid_answer_with_another_code_or_none_is_not_merged() {
    // given a Grid invitation's stream, and answers with another code or none
    let stream = "GridInvitation:CODE1";
    for entity in [
        json!({"code": "OTHER", "status": "CLAIMED", "inviteeUma": "$mallory@evil.example"}),
        json!({"status": "CLAIMED", "inviteeUma": "$mallory@evil.example"}),
    ] {
        // when one is folded
        let s = [fetched(1, "grid", stream, entity.clone())].iter().fold(InvitationState::new(stream), apply);
        // then it is an anomaly, not a fact
        assert_eq!(s.invitee_uma, None, "{entity}");
        assert_eq!(s.status, None, "{entity}");
        assert_eq!(kinds(&s), vec!["identity_mismatch"], "{entity}");
    }
    // and its own code is merged
    let own = [fetched(1, "grid", stream, json!({"code": "CODE1", "status": "CLAIMED"}))]
        .iter()
        .fold(InvitationState::new(stream), apply);
    assert!(own.is_claimed() && kinds(&own).is_empty());
}

#[test]
fn an_answer_refused_for_its_identity_is_an_anomaly_and_fetching_goes_on() {
    // given a claim without data, and a fetch whose answer the reconciler
    // refused for naming another invitation
    let refused = event(
        2,
        "invitation.fetch_failed",
        INV,
        json!({"invitation_id": INV, "reason": "identity_mismatch",
               "error": "the answer is about \"UmaInvitation:mallory\", not \"UmaInvitation:1\"",
               "failed_at": "2026-11-01T12:00:02Z", "answer": {"uma_invitation_id": "UmaInvitation:mallory"}}),
    );
    // when it is folded
    let claim = webhook(1, "2026-11-01T12:00:01+00:00", None);
    let s = fold(&[claim.clone(), refused.clone()]);
    // then the fetch is not failed for good: it is still wanted
    assert_eq!(s.fetch.phase, FetchPhase::Pending);
    assert!(view::fetch_wanted(&s));
    let v = view::view(&s);
    assert!(v.fetch.last_error.as_deref().is_some_and(|e| e.contains("mallory")));
    // and the projection shows the refusal
    assert_eq!(kinds(&s), vec!["identity_mismatch"]);
    assert!(v.anomalies[0].detail.contains("refused"), "{:?}", v.anomalies);
    // and once the invitation's own answer comes, it is used, the refusal
    // is no longer the last error, and stays an anomaly
    let own = fetched(3, "lightspark", INV, json!({"uma_invitation_id": INV, "uma_invitation_invitee_uma": "$b@y"}));
    let s = fold(&[claim, refused, own]);
    assert_eq!((s.fetch.phase, s.fetch.last_error.as_deref()), (FetchPhase::Fetched, None));
    assert_eq!(view::view(&s).invitee_uma.as_deref(), Some("$b@y"));
    assert_eq!(kinds(&s), vec!["identity_mismatch"]);
}

#[test]
fn a_webhook_whose_envelope_and_invitation_name_two_invitations_is_not_merged() {
    // given a claim whose envelope names this invitation and whose data
    // names another, filed under either (ledgers and routing differ)
    let data = json!({"id": "UmaInvitation:2", "invitee_uma": "$mallory@evil.example", "status": "CLAIMED",
        "payment_amount": {"value": 99999, "currency": "USD"}});
    for stream in [INV, "UmaInvitation:2"] {
        let body = json!({"event_type": "UMA_INVITATION_CLAIMED", "event_id": "e1",
            "timestamp": "2026-11-01T12:00:01+00:00", "entity_id": INV, "data": data});
        let mut e = event(1, "webhook.received", stream, body);
        e.event_key = crate::vocab::EventKey::lightspark_webhook("e1", &e.body).to_string();
        // when it is folded into that stream
        let s = [e].iter().fold(InvitationState::new(stream), apply);
        // then nothing of it is merged, the invitation is to be fetched,
        // and the projection says why
        assert_eq!((s.invitee_uma.as_ref(), s.payment_amount.as_ref(), s.status.as_ref()), (None, None, None));
        assert_eq!(s.fetch.phase, FetchPhase::Pending, "{stream}");
        assert_eq!(kinds(&s), vec!["identity_mismatch"], "{stream}");
    }
    // and a blank id inside `data` (routed by the envelope) is no match either
    let blank =
        webhook(1, "2026-11-01T12:00:01+00:00", Some(json!({"id": " ", "invitee_uma": "$mallory@evil.example"})));
    let routed = crate::lightspark::webhook::recognise(&blank.body).unwrap().stream;
    assert_eq!(routed.as_ref().map(crate::vocab::StreamId::as_str), Some(INV));
    let s = fold(&[blank]);
    assert_eq!((s.invitee_uma.as_ref(), kinds(&s)), (None, vec!["identity_mismatch"]));
    // but data without an id of its own is the envelope's invitation
    let s = fold(&[webhook(1, "2026-11-01T12:00:01+00:00", Some(json!({"invitee_uma": "$b@y"})))]);
    assert_eq!(s.invitee_uma.as_ref().map(|v| v.value.as_str()), Some("$b@y"));
    assert!(kinds(&s).is_empty());
}

// ---- receivers and amounts that can be paid ----

/// A Lightspark claim of [`INV`] whose body is `text`, exactly.
fn webhook_text(seq: u64, text: &str) -> LedgerEvent {
    let mut e = event(seq, "webhook.received", INV, json!(null));
    e.body = text.as_bytes().to_vec();
    e.event_key = crate::vocab::EventKey::lightspark_webhook(&format!("e{seq}"), &e.body).to_string();
    e
}

/// A Grid claim of invitation `CODE1` whose body is `text`, exactly.
fn grid_webhook_text(seq: u64, text: &str) -> (InvitationState, LedgerEvent) {
    let stream = "GridInvitation:CODE1";
    let mut e = event(seq, "webhook.received", stream, json!(null));
    e.body = text.as_bytes().to_vec();
    e.event_key = crate::vocab::EventKey::grid_webhook(&format!("Webhook:{seq}"), &e.body).to_string();
    (InvitationState::new(stream), e)
}

#[test]
fn minus_zero_is_a_zero_amount_from_either_source_as_number_or_string() {
    for zero in ["-0", r#""-0""#] {
        // Given a Lightspark claim and a Grid claim of an amount of -0
        let lightspark = webhook_text(
            1,
            &format!(
                r#"{{"event_type":"UMA_INVITATION_CLAIMED","event_id":"e1","timestamp":"2026-11-01T12:00:01+00:00","entity_id":"{INV}","data":{{"id":"{INV}","status":"CLAIMED","invitee_uma":"$b@y","payment_amount":{{"value":{zero},"currency":{{"code":"USD","decimals":2}}}}}}}}"#
            ),
        );
        let (grid_state, grid) = grid_webhook_text(
            1,
            &format!(
                r#"{{"id":"Webhook:1","type":"INVITATION.CLAIMED","timestamp":"2026-11-01T12:00:01Z","data":{{"code":"CODE1","status":"CLAIMED","inviteeUma":"$b@y","amountToSend":{{"amount":{zero},"currency":{{"code":"USD","decimals":2}}}}}}}}"#
            ),
        );
        // When each is folded
        for s in [fold(&[lightspark]), apply(grid_state, &grid)] {
            // Then the payment is not due, for a zero amount
            let payout = view::obligation(&s, ObligationKind::InviteePayment);
            assert_eq!(payout.state, ObligationState::NotDue, "{zero} {}", s.invitation_id);
            assert_eq!(payout.reason.as_deref(), Some("zero_amount"), "{zero} {}", s.invitation_id);
        }
    }
}

#[test]
fn a_malformed_receiver_makes_its_obligation_invalid_and_never_pending() {
    let claimed = |inviter: &str, invitee: &str| {
        fold(&[claimed_snapshot(
            1,
            "2026-11-01T12:00:00+00:00",
            json!({"status": "CLAIMED", "incentives_status": "VALIDATED", "inviter_uma": inviter,
                   "invitee_uma": invitee, "payment_amount": {"value": 500, "currency": "USD"}}),
        )])
    };
    let long = format!("${}@b.example", "a".repeat(250));
    for malformed in [
        "$bob\u{202E}elpmaxe@b.example",
        "$bob@b\u{202A}.example",
        "$bob\u{2066}@b.example",
        "$bob\u{2069}@b.example",
        "$bob\u{200E}@b.example",
        "$bob\u{200F}@b.example",
        "$bob\u{061C}@b.example",
        "$bob\n@b.example",
        "$bob\u{7F}@b.example",
        "$bob\u{85}@b.example",
        "$bob @b.example",
        "bob@b.example",
        "$bob",
        "$@b.example",
        "$bob@",
        "$bob@b@c.example",
        long.as_str(),
    ] {
        // Given a claim whose invitee UMA is not a well-formed address
        let s = claimed("$alice@a.example", malformed);
        // When its obligations are derived
        // Then the payment is invalid, for that reason, and never sent
        let payout = view::obligation(&s, ObligationKind::InviteePayment);
        assert_eq!(payout.state, ObligationState::Invalid, "{malformed:?}");
        assert_eq!(payout.reason.as_deref(), Some("malformed_receiver"), "{malformed:?}");
        assert_eq!(view::work(&s) & view::work_bits::INVITEE_PAYMENT, 0, "{malformed:?}");
        // while the inviter's obligations, to a well-formed UMA, are owed
        assert_eq!(view::obligation(&s, ObligationKind::InviterIncentive).state, ObligationState::Pending);
        assert_eq!(view::obligation(&s, ObligationKind::InviterNotification).state, ObligationState::Pending);

        // Given the same address as the inviter's
        let s = claimed(malformed, "$bob@b.example");
        // Then the incentive and the notification are invalid, the payment owed
        for kind in [ObligationKind::InviterIncentive, ObligationKind::InviterNotification] {
            let o = view::obligation(&s, kind);
            assert_eq!((o.state, o.reason.as_deref()), (ObligationState::Invalid, Some("malformed_receiver")));
        }
        assert_eq!(view::obligation(&s, ObligationKind::InviteePayment).state, ObligationState::Pending);
    }
    // And well-formed addresses, up to 256 bytes, are owed (the failure
    // notice only once the payment fails)
    let longest = format!("${}@b.example", "a".repeat(256 - "$@b.example".len()));
    for fine in ["$bob@b.example", "$ä@x", "$Bob.Smith-1+x_y@sub.b.example:8080", longest.as_str()] {
        let s = claimed(fine, fine);
        for kind in ObligationKind::ALL {
            let want = match kind {
                ObligationKind::InviterFailureNotice => ObligationState::NotDue,
                _ => ObligationState::Pending,
            };
            assert_eq!(view::obligation(&s, kind).state, want, "{fine:?} {kind:?}");
        }
    }
}
