//! What is sent to the platform for one obligation: a pure function of the
//! projection and the configuration.
//!
//! The first request under a key fixes what every retry sends: the body is
//! repeated byte for byte, whatever the invitation says now, since a
//! platform refuses (422) or, worse, honours a key reused with other
//! parameters, and a payment in flight must not change under it.

use serde_json::{json, Value};

use super::config::ReconcileConfig;
use crate::invitation::is_uma_address;
use crate::money::{Money, PaymentAmount};
use crate::projection::events::{IdempotencyKey, ObligationKind};
use crate::projection::state::{InvitationState, Versioned};
use crate::projection::view::payment_failure_reason;

/// One request of the exactly-once protocol, before it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub url: String,
    /// The JSON body; its serialisation is the bytes sent.
    pub body: Value,
    /// Who the platform is asked to pay (or, for a notification, notify).
    pub receiver_uma: Option<String>,
    pub amount: Option<Money>,
}

impl Request {
    /// The exact bytes sent. A `Value` serialises its members in a fixed
    /// order, so the stored first body re-serialises to the same bytes.
    pub fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).expect("a JSON value serialises")
    }
}

/// The request for `kind` of `state`: the first one sent under its key,
/// repeated, if there was one; else built from the invitation's facts.
/// `None` when the endpoint (or the incentive) is not configured, or a
/// first request cannot be built (no usable amount, or a receiver that is
/// not a well-formed UMA address).
pub fn request_for(
    state: &InvitationState,
    kind: ObligationKind,
    key: &IdempotencyKey,
    config: &ReconcileConfig,
) -> Option<Request> {
    let url = match kind {
        ObligationKind::InviteePayment | ObligationKind::InviterIncentive => config.payout_url.clone()?,
        ObligationKind::InviterNotification | ObligationKind::InviterFailureNotice => config.notify_url.clone()?,
    };
    let rec = state.obligation(kind);
    if let Some(first) = &rec.request {
        return Some(Request {
            url,
            body: first.clone(),
            receiver_uma: rec.receiver_uma.clone(),
            amount: rec.amount.clone(),
        });
    }
    let text = |v: &Option<Versioned<String>>| v.as_ref().map(|v| v.value.clone());
    let (receiver_uma, amount) = match kind {
        ObligationKind::InviteePayment => match state.payment_amount.as_ref().map(|v| &v.value) {
            Some(PaymentAmount::Valid(m)) => (text(&state.invitee_uma), Some(m.clone())),
            _ => return None,
        },
        ObligationKind::InviterIncentive => (text(&state.inviter_uma), Some(config.inviter_incentive.clone()?)),
        ObligationKind::InviterNotification | ObligationKind::InviterFailureNotice => (text(&state.inviter_uma), None),
    };
    // `projection::view::due` already calls such an obligation invalid;
    // this is the last check before anything is sent.
    if !receiver_uma.as_deref().is_some_and(is_uma_address) {
        return None;
    }
    let body = match &amount {
        None if kind == ObligationKind::InviterFailureNotice => json!({
            "idempotency_key": key,
            "kind": "invitee_payment_failed",
            "invitation_id": state.invitation_id,
            "inviter_uma": text(&state.inviter_uma),
            "invitee_uma": text(&state.invitee_uma),
            "reason": payment_failure_reason(state),
        }),
        None => json!({
            "idempotency_key": key,
            "kind": "invitee_joined",
            "invitation_id": state.invitation_id,
            "inviter_uma": text(&state.inviter_uma),
            "invitee_uma": text(&state.invitee_uma),
        }),
        Some(m) => {
            let mut amount = json!({"value": m.value(), "currency": m.currency()});
            if let Some(d) = m.decimals() {
                amount["decimals"] = d.into();
            }
            json!({
                "idempotency_key": key,
                "kind": kind.as_str(),
                "invitation_id": state.invitation_id,
                "invitation_code": text(&state.code),
                "receiver_uma": receiver_uma,
                "amount": amount,
            })
        }
    };
    Some(Request { url, body, receiver_uma, amount })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invitation::InvitationStatus;

    fn config() -> ReconcileConfig {
        crate::config::ReconcileArgs {
            payout_url: Some("http://127.0.0.1:1/pay".into()),
            notify_url: Some("http://127.0.0.1:1/notify".into()),
            inviter_incentive: Some("100:USD".into()),
            ..crate::config::ReconcileArgs::for_tests()
        }
        .validate()
        .unwrap()
    }

    fn v<T>(value: T, seq: u64) -> Option<Versioned<T>> {
        Some(Versioned { value, at: 0, seq })
    }

    fn claimed() -> InvitationState {
        let mut s = InvitationState::new("Inv:1");
        s.status = v(InvitationStatus::Claimed, 1);
        s.code = v("C1".into(), 1);
        s.inviter_uma = v("$alice@a".into(), 1);
        s.invitee_uma = v("$bob@b".into(), 1);
        s.payment_amount = v(PaymentAmount::Valid(Money::new(1500, "JPY").unwrap().with_decimals(Some(0))), 1);
        s
    }

    #[test]
    fn a_first_payment_request_names_receiver_amount_and_decimals() {
        let key = IdempotencyKey::of("Inv:1", ObligationKind::InviteePayment);
        let r = request_for(&claimed(), ObligationKind::InviteePayment, &key, &config()).unwrap();
        assert_eq!(
            r.body,
            json!({"idempotency_key": key, "kind": "invitee_payment", "invitation_id": "Inv:1",
                   "invitation_code": "C1", "receiver_uma": "$bob@b",
                   "amount": {"value": 1500, "currency": "JPY", "decimals": 0}})
        );
        assert_eq!(r.receiver_uma.as_deref(), Some("$bob@b"));
    }

    #[test]
    fn no_first_request_is_built_for_a_malformed_receiver() {
        // given claims whose receivers are not well-formed UMA addresses
        let key = |kind| IdempotencyKey::of("Inv:1", kind);
        let mut bad_invitee = claimed();
        bad_invitee.invitee_uma = v("$bob\u{202E}@b".into(), 1);
        let mut bad_inviter = claimed();
        bad_inviter.inviter_uma = v("alice@a".into(), 1);
        // when requests are built, then none is
        let kind = ObligationKind::InviteePayment;
        assert_eq!(request_for(&bad_invitee, kind, &key(kind), &config()), None);
        for kind in [ObligationKind::InviterIncentive, ObligationKind::InviterNotification] {
            assert_eq!(request_for(&bad_inviter, kind, &key(kind), &config()), None, "{kind:?}");
        }
    }

    #[test]
    fn an_incentive_request_names_the_configured_currency_and_its_decimals_whatever_the_invitations() {
        // given an invitation in JPY and an incentive configured as 100:USD
        let key = IdempotencyKey::of("Inv:1", ObligationKind::InviterIncentive);
        // when its incentive request is built
        let r = request_for(&claimed(), ObligationKind::InviterIncentive, &key, &config()).unwrap();
        // then it asks for 1.00 USD, saying so with the decimals of USD
        assert_eq!(r.body["amount"], json!({"value": 100, "currency": "USD", "decimals": 2}));
        assert_eq!(r.body["receiver_uma"], "$alice@a");
        assert_eq!(r.amount.map(|m| m.to_string()).as_deref(), Some("1.00 USD"));
    }

    #[test]
    fn a_failure_notice_names_both_umas_and_why_the_payment_failed() {
        // given a payment the platform refused, and one an operator recorded failed
        let kind = ObligationKind::InviterFailureNotice;
        let key = IdempotencyKey::of("Inv:1", kind);
        let mut refused = claimed();
        refused.payout.phase = crate::projection::state::ObligationPhase::Failed;
        refused.payout.last_error = Some("HTTP 400: unknown receiver".into());
        let mut by_operator = claimed();
        by_operator.payout.phase = crate::projection::state::ObligationPhase::Failed;
        by_operator.payout.decision = Some(crate::projection::events::Decision::Failed);
        // when their notices are built
        let r = request_for(&refused, kind, &key, &config()).unwrap();
        let o = request_for(&by_operator, kind, &key, &config()).unwrap();
        // then each tells the inviter who was not paid, and why
        assert_eq!(r.url, "http://127.0.0.1:1/notify");
        assert_eq!(
            r.body,
            json!({"idempotency_key": key, "kind": "invitee_payment_failed", "invitation_id": "Inv:1",
                   "inviter_uma": "$alice@a", "invitee_uma": "$bob@b", "reason": "HTTP 400: unknown receiver"})
        );
        assert_eq!(o.body["reason"], "an operator recorded the payment as failed");
        assert_eq!(r.receiver_uma.as_deref(), Some("$alice@a"));
        assert_eq!(r.amount, None);
    }

    #[test]
    fn a_retry_repeats_the_first_body_whatever_the_invitation_says_now() {
        // given a payment requested once, then a newer snapshot naming
        // another receiver and an unusable amount
        let key = IdempotencyKey::of("Inv:1", ObligationKind::InviteePayment);
        let first = request_for(&claimed(), ObligationKind::InviteePayment, &key, &config()).unwrap();
        let mut s = claimed();
        s.payout.request = Some(first.body.clone());
        s.payout.receiver_uma = first.receiver_uma.clone();
        s.payout.amount = first.amount.clone();
        s.invitee_uma = v("$eve@e".into(), 2);
        s.payment_amount = v(PaymentAmount::Invalid { reason: "amount is fractional".into() }, 2);
        // when the retry is built
        let retry = request_for(&s, ObligationKind::InviteePayment, &key, &config()).unwrap();
        // then it is the first request, to the byte
        assert_eq!(retry.bytes(), first.bytes());
        assert_eq!(retry.receiver_uma.as_deref(), Some("$bob@b"));
    }
}
