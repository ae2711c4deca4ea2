//! Invitations as Lightspark sends them in webhooks, and the one mix of
//! invitation kinds the many-invitation tests (the reconciler's hundred, the
//! storm) draw from, with what each kind finally owes.

use invitation_ledger::projection::events::ObligationKind;

/// An invitation as Lightspark sends it in a webhook's `data` (snake_case).
#[derive(Debug, Clone)]
pub struct InvitationFixture {
    pub id: String,
    pub code: String,
    pub inviter_uma: String,
    pub invitee_uma: Option<String>,
    /// `CLAIMED`, `CANCELLED`, `PENDING`, …
    pub status: String,
    /// `VALIDATED`, `INELIGIBLE`, `PENDING`.
    pub incentives_status: String,
    pub incentives_ineligibility_reason: Option<String>,
    /// In the smallest unit of [`currency`](Self::currency).
    pub payment_amount: Option<i64>,
    /// The amount's currency code and the decimals Lightspark states for it.
    pub currency: (&'static str, u32),
    pub updated_at: String,
}

impl InvitationFixture {
    /// Claimed, incentives validated, 10.00 USD (1000 cents) for the invitee.
    pub fn claimed(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            code: format!("CODE-{id}"),
            inviter_uma: "$inviter@sending.example".into(),
            invitee_uma: Some(format!("$invitee-{id}@receiving.example")),
            status: "CLAIMED".into(),
            incentives_status: "VALIDATED".into(),
            incentives_ineligibility_reason: None,
            payment_amount: Some(1000),
            currency: ("USD", 2),
            updated_at: "2026-11-01T12:00:00.000000+00:00".into(),
        }
    }

    pub fn data(&self) -> serde_json::Value {
        let mut d = serde_json::json!({
            "id": self.id,
            "code": self.code,
            "url": format!("https://uma.me/i/{}", self.code),
            "inviter_uma": self.inviter_uma,
            "status": self.status,
            "incentives_status": self.incentives_status,
            "created_at": "2026-10-01T00:00:00.000000+00:00",
            "updated_at": self.updated_at,
        });
        if let Some(u) = &self.invitee_uma {
            d["invitee_uma"] = u.clone().into();
        }
        if let Some(r) = &self.incentives_ineligibility_reason {
            d["incentives_ineligibility_reason"] = r.clone().into();
        }
        if let Some(v) = self.payment_amount {
            let currency = match self.currency {
                ("USD", 2) => serde_json::json!({"code": "USD", "symbol": "$", "decimals": 2, "name": "US Dollar"}),
                (code, decimals) => serde_json::json!({"code": code, "decimals": decimals}),
            };
            d["payment_amount"] = serde_json::json!({"value": v, "currency": currency});
        }
        d
    }

    /// The signed-ready `UMA_INVITATION_CLAIMED` webhook body carrying this invitation.
    pub fn webhook(&self, event_id: &str) -> String {
        serde_json::json!({
            "event_type": "UMA_INVITATION_CLAIMED",
            "event_id": event_id,
            "timestamp": self.updated_at,
            "entity_id": self.id,
            "data": self.data(),
        })
        .to_string()
    }
}

/// The three obligations of an invitation: the field of the read API that
/// shows each, and its kind.
pub const OBLIGATIONS: [(&str, ObligationKind); 4] = [
    ("payout", ObligationKind::InviteePayment),
    ("incentive", ObligationKind::InviterIncentive),
    ("notification", ObligationKind::InviterNotification),
    ("failure_notice", ObligationKind::InviterFailureNotice),
];

/// The kinds of invitation the many-invitation tests mix, and what each one
/// finally owes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Claimed, amount, incentives validated: payment, incentive, notification.
    Full,
    /// Claimed without an amount, incentives pending: notification only.
    NoAmount,
    /// Claimed with an amount, incentives ineligible: payment and notification.
    Ineligible,
    /// Cancelled (never claimed, so no invitee) with an amount and validated
    /// incentives: nothing.
    Cancelled,
    /// Still pending, with an amount: nothing.
    Pending,
    /// Claimed with an amount but no invitee known yet: incentive only.
    NoInvitee,
}

impl Mix {
    /// Every kind, in the order the tests cycle through them: a test that
    /// mixes fewer kinds takes the first ones (`Mix::ALL[n % 4]`).
    pub const ALL: [Mix; 6] = [Mix::Full, Mix::NoAmount, Mix::Ineligible, Mix::Cancelled, Mix::Pending, Mix::NoInvitee];

    /// Makes `f`, a claimed invitation with an amount and validated
    /// incentives (as [`InvitationFixture::claimed`] makes it), this kind.
    pub fn shape(self, f: &mut InvitationFixture) {
        match self {
            Mix::Full => {}
            Mix::NoAmount => {
                f.payment_amount = None;
                f.incentives_status = "PENDING".into();
            }
            Mix::Ineligible => {
                f.incentives_status = "INELIGIBLE".into();
                f.incentives_ineligibility_reason = Some("NOT_CROSS_BORDER".into());
            }
            Mix::Cancelled => {
                f.status = "CANCELLED".into();
                f.invitee_uma = None;
            }
            Mix::Pending => {
                f.status = "PENDING".into();
                f.incentives_status = "PENDING".into();
            }
            Mix::NoInvitee => f.invitee_uma = None,
        }
    }

    /// Final states of the [`OBLIGATIONS`] (payout, incentive, notification,
    /// failure notice) once every due one is settled: no payment of a mix
    /// fails for good, so no inviter is told of one.
    pub fn expected(self) -> [&'static str; 4] {
        match self {
            Mix::Full => ["succeeded", "succeeded", "succeeded", "not_due"],
            Mix::NoAmount => ["not_due", "not_due", "succeeded", "not_due"],
            Mix::Ineligible => ["succeeded", "ineligible", "succeeded", "not_due"],
            Mix::Cancelled | Mix::Pending => ["not_due", "not_due", "not_due", "not_due"],
            Mix::NoInvitee => ["not_due", "succeeded", "not_due", "not_due"],
        }
    }
}
