//! Creating and cancelling invitations at Lightspark: the
//! `create_uma_invitation`, `create_uma_invitation_with_payment` and
//! `cancel_uma_invitation` mutations of the Lightspark SDKs, asking back
//! the invitation with the same aliased fields as [`GET_UMA_INVITATION`],
//! so the answer is read by the same parser as a fetched snapshot.

use reqwest::Method;
use serde_json::{json, Value};

use super::{graphql_messages, FetchError, LightsparkClient, GET_UMA_INVITATION};
use crate::money::Money;
use crate::upstream::excerpt;

/// The invitation's fields, as [`GET_UMA_INVITATION`] asks them.
fn fields() -> &'static str {
    let start = GET_UMA_INVITATION.find("__typename").expect("the query names its fields");
    let end =
        GET_UMA_INVITATION.rfind("uma_invitation_expires_at: expires_at").expect("the query ends with expires_at");
    &GET_UMA_INVITATION[start..end + "uma_invitation_expires_at: expires_at".len()]
}

/// `create_uma_invitation`: an invitation without an amount.
pub fn create_mutation() -> String {
    format!(
        "mutation CreateUmaInvitation($inviter_uma: String!) {{\n  create_uma_invitation(input: {{ inviter_uma: $inviter_uma }}) {{\n    invitation {{\n      {}\n    }}\n  }}\n}}",
        fields()
    )
}

/// `create_uma_invitation_with_payment`: an invitation carrying an amount
/// for the invitee, with its currency and an expiry (both required by the
/// mutation's input).
pub fn create_with_payment_mutation() -> String {
    format!(
        "mutation CreateUmaInvitationWithPayment(\n  $inviter_uma: String!\n  $payment_amount: Long!\n  $payment_currency_code: String!\n  $payment_currency_symbol: String!\n  $payment_currency_name: String!\n  $payment_currency_decimals: Int!\n  $expires_at: DateTime!\n) {{\n  create_uma_invitation_with_payment(input: {{\n    inviter_uma: $inviter_uma\n    payment_amount: $payment_amount\n    payment_currency: {{ code: $payment_currency_code, symbol: $payment_currency_symbol, name: $payment_currency_name, decimals: $payment_currency_decimals }}\n    expires_at: $expires_at\n  }}) {{\n    invitation {{\n      {}\n    }}\n  }}\n}}",
        fields()
    )
}

/// `cancel_uma_invitation`: by the invitation's code.
pub fn cancel_mutation() -> String {
    format!(
        "mutation CancelUmaInvitation($invite_code: String!) {{\n  cancel_uma_invitation(input: {{ invite_code: $invite_code }}) {{\n    invitation {{\n      {}\n    }}\n  }}\n}}",
        fields()
    )
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvitation {
    pub inviter_uma: String,
    /// With its decimals known (the caller checked the currency).
    pub amount: Option<Money>,
    /// RFC 3339; required with an amount.
    pub expires_at: Option<String>,
}

impl NewInvitation {
    /// The GraphQL request: its mutation, its variables, and the field of
    /// `data` that answers it.
    pub fn request(&self) -> (Value, &'static str) {
        match (&self.amount, &self.expires_at) {
            (Some(m), Some(expires_at)) => (
                json!({"query": create_with_payment_mutation(), "variables": {
                    "inviter_uma": self.inviter_uma,
                    "payment_amount": m.value(),
                    "payment_currency_code": m.currency(),
                    "payment_currency_symbol": m.currency(),
                    "payment_currency_name": m.currency(),
                    "payment_currency_decimals": m.shown_decimals().unwrap_or(0),
                    "expires_at": expires_at,
                }}),
                "create_uma_invitation_with_payment",
            ),
            _ => (
                json!({"query": create_mutation(), "variables": {"inviter_uma": self.inviter_uma}}),
                "create_uma_invitation",
            ),
        }
    }
}

impl LightsparkClient {
    /// Asks Lightspark to cancel the invitation with `code`; answers the
    /// invitation as it is now (`CANCELLED`).
    ///
    /// # Errors
    /// As [`create_invitation`](Self::create_invitation): GraphQL errors
    /// are a refusal (Lightspark cancels only what can still be cancelled).
    pub async fn cancel_invitation(&self, code: &str) -> Result<Value, FetchError> {
        let body = json!({"query": cancel_mutation(), "variables": {"invite_code": code}});
        self.mutate(&body, "cancel_uma_invitation").await
    }

    /// Asks Lightspark to create `new`; answers the invitation it created,
    /// in the aliased spelling of a fetched snapshot.
    ///
    /// # Errors
    /// As [`fetch_invitation`](Self::fetch_invitation): a transport error or
    /// a 5xx leaves the outcome unknown (see [`FetchError::is_transient`]);
    /// GraphQL errors and other 4xx are refusals; an answer without an
    /// invitation id is [`FetchError::Malformed`].
    pub async fn create_invitation(&self, new: &NewInvitation) -> Result<Value, FetchError> {
        let (body, field) = new.request();
        let invitation = self.mutate(&body, field).await?;
        tracing::info!(invitation = ?invitation.get("uma_invitation_id"), "Lightspark created an invitation");
        Ok(invitation)
    }

    /// Posts a mutation and answers `data.<field>.invitation`, which must
    /// carry an id.
    async fn mutate(&self, body: &Value, field: &str) -> Result<Value, FetchError> {
        let response = self.upstream.send(Method::POST, &self.url, Some(body)).await?;
        let status = response.status().as_u16();
        let bytes = self.upstream.read_capped(&self.url, response).await?;
        let answer = self.upstream.json_answer(status, &bytes)?;
        let scrub = |text: &str| self.upstream.scrub(text);
        match answer.get("errors") {
            None | Some(Value::Null) => {}
            Some(Value::Array(errors)) if errors.is_empty() => {}
            Some(errors) => return Err(FetchError::GraphQl(scrub(&excerpt(&graphql_messages(errors))))),
        }
        let invitation = answer
            .get("data")
            .and_then(|d| d.get(field))
            .and_then(|f| f.get("invitation"))
            .filter(|i| i.get("uma_invitation_id").and_then(Value::as_str).is_some_and(|id| !id.is_empty()))
            .ok_or_else(|| FetchError::Malformed(format!("no data.{field}.invitation with an id in the answer")))?;
        Ok(invitation.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mutations_ask_back_every_field_a_fetch_asks() {
        for m in [create_mutation(), create_with_payment_mutation()] {
            assert!(m.contains("uma_invitation_id: id"), "{m}");
            assert!(m.contains("uma_currency_amount_value: value"), "{m}");
            assert!(m.contains("uma_invitation_expires_at: expires_at"), "{m}");
            assert_eq!(m.matches('{').count(), m.matches('}').count(), "{m}");
        }
        assert!(create_mutation().contains("create_uma_invitation(input: { inviter_uma: $inviter_uma })"));
    }

    #[test]
    fn an_amount_asks_for_the_payment_mutation_with_its_currency_and_decimals() {
        let new = NewInvitation {
            inviter_uma: "$alice@a.example".into(),
            amount: Some(Money::new(1500, "JPY").unwrap().with_decimals(Some(0))),
            expires_at: Some("2026-12-31T00:00:00Z".into()),
        };
        let (body, field) = new.request();
        assert_eq!(field, "create_uma_invitation_with_payment");
        assert_eq!(body["variables"]["payment_amount"], 1500);
        assert_eq!(body["variables"]["payment_currency_code"], "JPY");
        assert_eq!(body["variables"]["payment_currency_decimals"], 0);
        assert_eq!(body["variables"]["expires_at"], "2026-12-31T00:00:00Z");
        let plain = NewInvitation { amount: None, ..new };
        assert_eq!(plain.request().1, "create_uma_invitation");
    }
}
