//! Tests of the typed events (`super`): each kind's key, row and decoding.

use super::*;

fn key() -> IdempotencyKey {
    IdempotencyKey::of("Inv:1", ObligationKind::InviteePayment)
}

fn examples() -> Vec<InternalEvent> {
    let requested = ObligationRequested {
        invitation_id: "Inv:1".into(),
        obligation: ObligationKind::InviteePayment,
        idempotency_key: key(),
        attempt: 2,
        requested_at: "2026-11-01T00:00:00.000000Z".into(),
        receiver_uma: Some("$b@y".into()),
        amount: Some(Money::new(500, "USD").unwrap()),
        request: serde_json::json!({"a": 1}),
    };
    vec![
        InternalEvent::Fetched(InvitationFetched {
            invitation_id: "Inv:1".into(),
            source: Source::Lightspark,
            fetched_at: "t".into(),
            entity: None,
            operator_note: None,
            found_by: None,
        }),
        InternalEvent::FetchFailed(InvitationFetchFailed {
            invitation_id: "Inv:1".into(),
            source: Source::Lightspark,
            reason: NOT_AN_INVITATION.into(),
            error: "e".into(),
            failed_at: "t".into(),
            attempt: None,
            answer: None,
        }),
        InternalEvent::FetchFailed(InvitationFetchFailed {
            invitation_id: "Inv:1".into(),
            source: Source::Grid,
            reason: IDENTITY_MISMATCH.into(),
            error: "the answer is about \"other\", not \"Inv:1\"".into(),
            failed_at: "t".into(),
            attempt: None,
            answer: Some(serde_json::json!({"code": "other"})),
        }),
        InternalEvent::Requested(requested),
        InternalEvent::Succeeded(ObligationSucceeded {
            invitation_id: "Inv:1".into(),
            obligation: ObligationKind::InviteePayment,
            idempotency_key: key(),
            attempt: 2,
            http_status: 200,
            payment_id: Some("p".into()),
            at: "t".into(),
        }),
        InternalEvent::Failed(ObligationFailed {
            invitation_id: "Inv:1".into(),
            obligation: ObligationKind::InviteePayment,
            idempotency_key: key(),
            attempt: 2,
            http_status: Some(503),
            error: "e".into(),
            permanent: false,
            next_attempt_at: Some("u".into()),
            at: "t".into(),
        }),
        InternalEvent::InDoubt(ObligationInDoubt {
            invitation_id: "Inv:1".into(),
            obligation: ObligationKind::InviteePayment,
            idempotency_key: key(),
            first_requested_at: "w".into(),
            at: "t".into(),
            reason: InDoubtReason::NoLongerDue,
        }),
        InternalEvent::Resolved(ObligationResolved {
            invitation_id: "Inv:1".into(),
            obligation: ObligationKind::InviteePayment,
            idempotency_key: key(),
            decision: Decision::Retry,
            payment_id: None,
            at: "t".into(),
            occurrence: "2:t".into(),
            note: Some("checked the platform: not paid".into()),
            by: Some(Channel::Page),
        }),
    ]
}

#[test]
fn every_internal_event_key_format() {
    let k = key();
    let keys: Vec<String> = examples().iter().map(|e| e.event_key().to_string()).collect();
    assert_eq!(
        keys,
        vec![
            format!("lightspark-fetch:Inv:1:{}", hex::encode(&Sha256::digest(b"null")[..8])),
            "lightspark-fetch:Inv:1:not_an_invitation".to_owned(),
            format!("grid-fetch:Inv:1:identity_mismatch:{}", hex::encode(&Sha256::digest(br#"{"code":"other"}"#)[..8])),
            format!("{k}:requested:2"),
            format!("{k}:succeeded"),
            format!("{k}:failed:2"),
            format!("{k}:in_doubt:w"),
            format!("{k}:resolved:2:t:retry"),
        ]
    );
}

#[test]
fn every_internal_event_decodes_back_from_its_row() {
    for event in examples() {
        let row = event.to_new_event();
        let view = EventView {
            seq: 9,
            event_key: row.event_key.as_str(),
            kind: row.kind.as_str(),
            stream: row.stream.as_ref().map(StreamId::as_str),
            recorded_at: "2026-11-01T00:00:00.000000Z",
            body: &row.body,
        };
        match decode(view) {
            Ok(Fact::Internal(back)) => assert_eq!(back, event),
            other => panic!("{event:?} decoded as {other:?}"),
        }
    }
}

#[test]
fn a_decision_recorded_before_notes_existed_reads_without_note_or_channel() {
    // given the body of a resolution as the CLI wrote it before notes
    let k = key();
    let old = format!(
        r#"{{"invitation_id":"Inv:1","obligation":"invitee_payment","idempotency_key":"{k}","decision":"paid","payment_id":"p","at":"t","occurrence":"1:t"}}"#
    );
    // when it is read back, then it has neither, and written again it is the same bytes
    let e: ObligationResolved = serde_json::from_str(&old).unwrap();
    assert_eq!((e.note.as_deref(), e.by), (None, None));
    assert_eq!(serde_json::to_string(&e).unwrap(), old);
}

#[test]
fn bodies_that_break_their_kinds_promise_are_undecodable_with_the_seq() {
    let row = examples()[3].to_new_event();
    let view = |kind: &'static str, stream: &'static str, body: &'static [u8]| EventView {
        seq: 7,
        event_key: "lightspark:e:0",
        kind,
        stream: Some(stream),
        recorded_at: "2026-11-01T00:00:00.000000Z",
        body,
    };
    let body: &'static [u8] = Box::leak(row.body.clone().into_boxed_slice());
    for (v, why) in [
        (view("payout.requested", "Inv:1", b"{}"), "missing field"),
        (view("payout.requested", "Inv:1", b"\xff"), "expected value"),
        (view("incentive.requested", "Inv:1", body), "about invitee_payment"),
        (view("payout.requested", "Inv:2", body), "stream is another"),
        (view("payout.refunded", "Inv:1", body), "does not know"),
        (view("webhook.received", "Inv:1", b"[1]"), "not a JSON object"),
    ] {
        let e = decode(v).unwrap_err();
        assert_eq!(e.seq, 7);
        assert!(e.to_string().contains(why), "{e} should say {why:?}");
    }
}
