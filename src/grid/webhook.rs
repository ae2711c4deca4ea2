//! The Grid webhook body, read tolerantly: a correctly signed body is stored
//! whatever it contains, and this module only reads facts out of it.
//!
//! Two shapes arrive. The current one (`BaseWebhook` in Grid's OpenAPI):
//!
//! ```json
//! {"id": "Webhook:…", "type": "INVITATION.CLAIMED", "timestamp": "…", "data": {…}}
//! ```
//!
//! and the one from before the product was renamed from UMAaaS, where
//! `webhookId` stands for `id`, `invitation` for `data`, and the type is
//! `INVITATION_CLAIMED`. Both carry an `UmaInvitation`, which has no id of its
//! own: it is identified by its `code`.
//!
//! Nothing here panics or refuses a field: a field of the wrong type reads as
//! absent, and an amount that cannot be paid exactly is kept as
//! [`GridAmount::Invalid`] with the reason, never dropped or rounded.

use serde_json::{Map, Value};

use crate::invitation::{InvitationSnapshot, InvitationStatus};
use crate::money::{Money, PaymentAmount};
use crate::source::{Delivery, Report};
use crate::vocab::{EventKey, StreamId};

/// The event type of a claimed invitation in the current shape.
pub const INVITATION_CLAIMED: &str = "INVITATION.CLAIMED";

/// The same event type in deliveries from before the UMAaaS → Grid rename.
pub const LEGACY_INVITATION_CLAIMED: &str = "INVITATION_CLAIMED";

/// How many characters of an offending value a reason repeats: enough to
/// recognise it, short enough for a log line and an operator view.
const SHOWN_CHARS: usize = 40;

/// A body that is not a JSON object at all, so no fact can be read from it.
/// It was still signed by Grid: the caller keeps it, this only says why it
/// has nothing to route on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("the body is not a Grid webhook: {0}")]
pub struct MalformedGridWebhook(String);

/// The facts of a Grid webhook body. Every field is optional because a signed
/// body is kept whatever it holds; which absences matter is the caller's
/// decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridWebhook {
    /// The delivery id (`Webhook:<uuid>`), from `id`, else from `webhookId`;
    /// a blank one counts as absent. Grid documents it as the idempotency key.
    pub id: Option<String>,
    /// `type` as sent, such as [`INVITATION_CLAIMED`].
    pub event_type: Option<String>,
    /// `timestamp` as sent (ISO 8601, when the webhook was sent); kept as text
    /// because an unparsable timestamp on a signed event is still a fact.
    pub timestamp: Option<String>,
    /// The invitation, from `data`, else from `invitation`: whichever is a
    /// JSON object first.
    pub invitation: Option<GridInvitation>,
}

impl GridWebhook {
    /// Reads the facts out of a raw body.
    ///
    /// # Errors
    /// [`MalformedGridWebhook`] only when the body is not UTF-8 JSON or not a
    /// JSON object; any object gives a [`GridWebhook`], even an empty one.
    pub fn parse(body: &[u8]) -> Result<Self, MalformedGridWebhook> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => Ok(Self::from_object(&o)),
            Ok(other) => Err(MalformedGridWebhook(format!("it is JSON {}, not an object", kind(&other)))),
            Err(e) => Err(MalformedGridWebhook(format!("not JSON: {e}"))),
        }
    }

    fn from_object(o: &Map<String, Value>) -> Self {
        let id = ["id", "webhookId"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str).filter(|s| !s.trim().is_empty()))
            .map(str::to_owned);
        let invitation = ["data", "invitation"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_object))
            .map(GridInvitation::from_object);
        Self { id, event_type: text(o, "type"), timestamp: text(o, "timestamp"), invitation }
    }

    /// Whether this is the claim of an invitation, in either shape. Says
    /// nothing about whether the invitation itself came with it.
    pub fn is_invitation_claim(&self) -> bool {
        matches!(self.event_type.as_deref(), Some(INVITATION_CLAIMED | LEGACY_INVITATION_CLAIMED))
    }

    /// The code of the invitation this webhook carries, when it carries one
    /// with a non-blank code: the invitation's identity (see [`stream`]).
    pub fn invitation_code(&self) -> Option<&str> {
        self.invitation.as_ref()?.code.as_deref().filter(|c| !c.trim().is_empty())
    }
}

/// An `UmaInvitation` as Grid sends it in a webhook and answers it from
/// `GET /invitations/{code}`. Every field is optional and as sent; a field of
/// another JSON type than the one documented reads as `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GridInvitation {
    /// The invitation's identity: Grid invitations have no other id.
    pub code: Option<String>,
    pub created_at: Option<String>,
    pub claimed_at: Option<String>,
    /// Where the invitation is claimed, such as `https://uma.me/i/<code>`.
    pub url: Option<String>,
    pub expires_at: Option<String>,
    pub inviter_uma: Option<String>,
    pub invitee_uma: Option<String>,
    /// `PENDING`, `CLAIMED`, `EXPIRED` or `CANCELLED` per the OpenAPI; kept as
    /// text so that a new status is a fact, not a parse failure.
    pub status: Option<String>,
    /// The inviter's first name, shown to the invitee.
    pub first_name: Option<String>,
    /// What the inviter's platform is to send the invitee on claim; `None`
    /// when absent or null (nothing to send).
    pub amount_to_send: Option<GridAmount>,
    /// Not in Grid's published OpenAPI; read because the contract names it.
    pub invitee_country_code: Option<String>,
}

impl GridInvitation {
    /// Reads an invitation from JSON, such as the answer of
    /// [`GridClient::fetch_invitation`](super::client::GridClient::fetch_invitation),
    /// so that fetched and delivered invitations go through the same code.
    /// `None` when `value` is not an object.
    pub fn from_json(value: &Value) -> Option<Self> {
        value.as_object().map(Self::from_object)
    }

    /// The invitation as the projection merges it. Grid has no invitation
    /// id and no incentive fields: those stay unknown.
    pub fn snapshot(&self) -> InvitationSnapshot {
        InvitationSnapshot {
            id: None,
            code: self.code.clone(),
            url: self.url.clone(),
            inviter_uma: self.inviter_uma.clone(),
            inviter_first_name: self.first_name.clone(),
            invitee_uma: self.invitee_uma.clone(),
            status: self.status.as_deref().map(InvitationStatus::parse),
            incentives_status: None,
            incentives_ineligibility_reason: None,
            payment_amount: self.amount_to_send.as_ref().map(|a| match a {
                GridAmount::Valid { value, currency, decimals } => match Money::new(*value, currency.clone()) {
                    Ok(m) => PaymentAmount::Valid(m.with_decimals(*decimals)),
                    Err(reason) => PaymentAmount::Invalid { reason },
                },
                GridAmount::Invalid { reason } => PaymentAmount::Invalid { reason: reason.clone() },
            }),
            created_at: self.created_at.clone(),
            updated_at: None,
            cancelled_at: None,
            expires_at: self.expires_at.clone(),
        }
    }

    fn from_object(o: &Map<String, Value>) -> Self {
        Self {
            code: text(o, "code"),
            created_at: text(o, "createdAt"),
            claimed_at: text(o, "claimedAt"),
            url: text(o, "url"),
            expires_at: text(o, "expiresAt"),
            inviter_uma: text(o, "inviterUma"),
            invitee_uma: text(o, "inviteeUma"),
            status: text(o, "status"),
            first_name: text(o, "firstName"),
            amount_to_send: o.get("amountToSend").filter(|v| !v.is_null()).map(GridAmount::from_json),
            invitee_country_code: text(o, "inviteeCountryCode"),
        }
    }
}

/// A `CurrencyAmount` read for paying it: either exactly what is owed, or why
/// it cannot be paid as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GridAmount {
    /// `value` in the smallest unit of `currency` (cents, satoshis, yen).
    Valid {
        value: i64,
        /// The currency's `code` as sent: 1–16 ASCII letters or digits.
        currency: String,
        /// The currency's `decimals` when sent as an integer from 0 to 18;
        /// display data, since `value` is already in the smallest unit.
        decimals: Option<u32>,
    },
    /// An amount was sent but cannot be paid exactly; the reason names what
    /// is wrong and repeats (a prefix of) the offending value.
    Invalid { reason: String },
}

impl GridAmount {
    /// Reads a `CurrencyAmount`: `{"amount": <int64>, "currency": {"code", "decimals", …}}`.
    ///
    /// `amount` must be an exact non-negative integer that fits `i64`: a JSON
    /// integer, or a string of ASCII digits (as some SDKs send 64-bit values
    /// so JavaScript does not round them). A fraction, an exponent, even
    /// `1500.0`, went through a float that may have rounded digits away, so it
    /// is invalid, not rounded; `-0` (as a number or a string) is zero.
    /// `decimals` outside 0 to 18, or not an integer, are not given
    /// ([`crate::money::decimals_of`]).
    pub fn from_json(value: &Value) -> Self {
        match Self::read(value) {
            Ok(amount) => amount,
            Err(reason) => GridAmount::Invalid { reason },
        }
    }

    fn read(value: &Value) -> Result<Self, String> {
        let o = value.as_object().ok_or_else(|| format!("amountToSend is JSON {}, not an object", kind(value)))?;
        let value = amount_value(o.get("amount").filter(|v| !v.is_null()))?;
        let currency = match o.get("currency").filter(|v| !v.is_null()) {
            None => return Err("currency is missing".into()),
            Some(Value::Object(c)) => c,
            Some(other) => return Err(format!("currency is JSON {}, not an object", kind(other))),
        };
        let code = match currency.get("code").filter(|v| !v.is_null()) {
            None => return Err("currency code is missing".into()),
            Some(Value::String(code)) if is_currency_code(code) => code.clone(),
            Some(other) => return Err(format!("currency code {} is not 1–16 ASCII letters or digits", shown(other))),
        };
        // Display data, by the rule Lightspark's amounts follow too.
        let decimals = currency.get("decimals").and_then(crate::money::decimals_of);
        Ok(GridAmount::Valid { value, currency: code, decimals })
    }
}

/// The exact amount, or why there is none.
fn amount_value(v: Option<&Value>) -> Result<i64, String> {
    let too_big = |v: &Value| format!("amount {} does not fit a signed 64-bit integer", shown(v));
    match v {
        None => Err("amount is missing".into()),
        // `-0` is zero, though serde_json reads it as a float.
        Some(Value::Number(number)) if crate::money::is_minus_zero(number) => Ok(0),
        Some(n @ Value::Number(number)) => {
            if let Some(i) = number.as_i64() {
                if i < 0 {
                    Err(format!("amount {i} is negative"))
                } else {
                    Ok(i)
                }
            } else if number.is_u64() {
                Err(too_big(n))
            } else {
                // Without serde_json's arbitrary_precision, a literal with a
                // fraction or an exponent, or an integer beyond u64, is an f64.
                match number.as_f64() {
                    Some(f) if f < 0.0 => Err(format!("amount {} is negative", shown(n))),
                    Some(f) if f.fract() != 0.0 => Err(format!("amount {} is not an integer", shown(n))),
                    // 2^63: the first integral f64 beyond i64::MAX.
                    Some(f) if f >= 9_223_372_036_854_775_808.0 => Err(too_big(n)),
                    _ => Err(format!("amount {} is written as a float; an exact integer is required", shown(n))),
                }
            }
        }
        Some(Value::String(digits)) if crate::money::is_minus_zero_text(digits) => Ok(0),
        Some(s @ Value::String(digits)) => {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                Err(format!("amount {} is a string that is not all digits", shown(s)))
            } else {
                digits.parse::<i64>().map_err(|_| too_big(s))
            }
        }
        Some(other) => Err(format!("amount is JSON {}, not a number", kind(other))),
    }
}

fn is_currency_code(s: &str) -> bool {
    (1..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A member that is a JSON string, as sent.
fn text(o: &Map<String, Value>, key: &str) -> Option<String> {
    o.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// A value as JSON text, cut to [`SHOWN_CHARS`] characters.
fn shown(v: &Value) -> String {
    let full = v.to_string();
    match full.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &full[..cut]),
        None => full,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Recognises a verified Grid body: keyed by its delivery id (else its
/// bytes), about the invitation whose code it carries.
///
/// # Errors
/// [`MalformedGridWebhook`] when the body is not a JSON object.
pub fn recognise(body: &[u8]) -> Result<Delivery, MalformedGridWebhook> {
    let webhook = GridWebhook::parse(body)?;
    let (event_key, sibling_prefix) = match &webhook.id {
        Some(id) => (EventKey::grid_webhook(id, body), Some(EventKey::grid_prefix(id))),
        None => (EventKey::grid_body(body), None),
    };
    Ok(Delivery {
        event_key,
        stream: webhook.invitation_code().map(StreamId::grid),
        sibling_prefix,
        event_type: webhook.event_type,
        // Without its invitation a Grid claim names no code to fetch by.
        data_missing: false,
    })
}

/// What a stored Grid body says about its invitation: the invitation it
/// carries, dated by its `claimedAt` (Grid invitations have no
/// `updated_at`), else the envelope's `timestamp`; a claim without a status
/// is `CLAIMED`.
///
/// # Errors
/// A sentence when the body is not a JSON object.
pub fn report(body: &[u8]) -> Result<Report, String> {
    let webhook = GridWebhook::parse(body).map_err(|e| e.to_string())?;
    let claim = webhook.is_invitation_claim();
    Ok(match webhook.invitation {
        Some(invitation) => {
            let mut snapshot = invitation.snapshot();
            if snapshot.status.is_none() && claim {
                snapshot.status = Some(InvitationStatus::Claimed);
            }
            Report { dated: invitation.claimed_at.or(webhook.timestamp), snapshot, ..Report::default() }
        }
        None => Report { dated: webhook.timestamp, ..Report::default() },
    })
}

/// What a fetched Grid `UmaInvitation` says, dated by its `claimedAt`
/// (none: the fold dates it by when it was fetched).
pub fn fetched(entity: &Value) -> Report {
    match GridInvitation::from_json(entity) {
        Some(invitation) => {
            Report { snapshot: invitation.snapshot(), dated: invitation.claimed_at, ..Report::default() }
        }
        None => Report::default(),
    }
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
