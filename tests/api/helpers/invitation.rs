//! Invitations as Lightspark sends them in webhooks.

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
    /// Smallest unit of USD.
    pub payment_amount: Option<i64>,
    pub updated_at: String,
}

impl InvitationFixture {
    /// Claimed, incentives validated, 1000 USD for the invitee.
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
            d["payment_amount"] = serde_json::json!({"value": v, "currency": {"code": "USD", "symbol": "$", "decimals": 2, "name": "US Dollar"}});
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
