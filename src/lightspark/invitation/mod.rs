//! The UMA invitation as Lightspark describes it, read from whatever spelling
//! arrived: a webhook's `data`, or the `entity` of a GraphQL answer.
//!
//! The parser never fails. The raw bytes are already safe in the ledger, so
//! a field we cannot read becomes `None` here rather than an error that would
//! stop the fold: a later snapshot, or an operator, can still fill it in.
//! Amounts are the one exception to "quietly `None`": an amount that is present
//! but unusable becomes [`PaymentAmount::Invalid`] with a reason, because
//! silently dropping it would turn "pay the wrong thing" into "pay nothing and
//! say nothing".

use serde_json::{Map, Value};

use crate::invitation::{IncentivesStatus, InvitationSnapshot, InvitationStatus};
use crate::money::{is_currency_code, Money, PaymentAmount, REASON_NEGATIVE};

#[cfg(test)]
mod tests;
mod wire;

pub use wire::WireSnapshot;
pub(crate) use wire::{Checked, Key, Text};

const REASON_FRACTIONAL: &str = "amount is fractional";
const REASON_TOO_BIG: &str = "amount does not fit in 64 bits";
const REASON_NOT_A_NUMBER: &str = "amount is not a number";
const REASON_NOT_INTEGER_FORM: &str = "amount is written as a decimal number, not an integer";
const REASON_NO_VALUE: &str = "amount has no value";
const REASON_CURRENCY: &str = "unknown currency shape";
const REASON_SHAPE: &str = "unknown amount shape";

// Each field's spellings, in the order they are tried: plain snake_case,
// GraphQL-aliased, camelCase. The order only matters when one object carries
// several spellings of a field with different values, which no producer is
// known to do; it is fixed so that the result is still deterministic.
/// The spellings of the invitation's id, which the GraphQL client checks
/// an answer against before anything of it is kept.
pub(crate) const ID: &[&str] = &["id", "uma_invitation_id"];
const CODE: &[&str] = &["code", "uma_invitation_code"];
const URL: &[&str] = &["url", "uma_invitation_url"];
const INVITER_UMA: &[&str] = &["inviter_uma", "uma_invitation_inviter_uma", "inviterUma"];
const INVITER_FIRST_NAME: &[&str] = &["inviter_first_name", "uma_invitation_inviter_first_name", "inviterFirstName"];
const INVITEE_UMA: &[&str] = &["invitee_uma", "uma_invitation_invitee_uma", "inviteeUma"];
const STATUS: &[&str] = &["status", "uma_invitation_status"];
const INCENTIVES_STATUS: &[&str] = &["incentives_status", "uma_invitation_incentives_status", "incentivesStatus"];
const INCENTIVES_INELIGIBILITY_REASON: &[&str] = &[
    "incentives_ineligibility_reason",
    "uma_invitation_incentives_ineligibility_reason",
    "incentivesIneligibilityReason",
];
const CREATED_AT: &[&str] = &["created_at", "uma_invitation_created_at", "createdAt"];
const UPDATED_AT: &[&str] = &["updated_at", "uma_invitation_updated_at", "updatedAt"];
const CANCELLED_AT: &[&str] = &["cancelled_at", "uma_invitation_cancelled_at", "cancelledAt"];
const EXPIRES_AT: &[&str] = &["expires_at", "uma_invitation_expires_at", "expiresAt"];
const AMOUNT: &[&str] =
    &["payment_amount", "uma_invitation_payment_amount", "paymentAmount", "amount_to_send", "amountToSend"];
const AMOUNT_VALUE: &[&str] = &["value", "uma_currency_amount_value", "amount"];
const AMOUNT_CURRENCY: &[&str] = &["currency", "uma_currency_amount_currency"];
const CURRENCY_CODE: &[&str] = &["code", "uma_currency_code"];
const CURRENCY_DECIMALS: &[&str] = &["decimals", "uma_currency_decimals"];

/// Reads whatever spelling arrived. Never fails and never panics: a
/// webhook is already stored when this runs, and one malformed field must
/// not make the rest of the event unreadable.
pub fn parse(v: &Value) -> InvitationSnapshot {
    let Some(o) = v.as_object() else {
        return InvitationSnapshot::default();
    };
    InvitationSnapshot {
        id: text(o, ID),
        code: text(o, CODE),
        url: text(o, URL),
        inviter_uma: text(o, INVITER_UMA),
        inviter_first_name: text(o, INVITER_FIRST_NAME),
        invitee_uma: text(o, INVITEE_UMA),
        status: text(o, STATUS).map(|s| InvitationStatus::parse(&s)),
        incentives_status: text(o, INCENTIVES_STATUS).map(|s| IncentivesStatus::parse(&s)),
        incentives_ineligibility_reason: text(o, INCENTIVES_INELIGIBILITY_REASON),
        payment_amount: payment_amount(o),
        created_at: text(o, CREATED_AT),
        updated_at: text(o, UPDATED_AT),
        cancelled_at: text(o, CANCELLED_AT),
        expires_at: text(o, EXPIRES_AT),
    }
}

/// What a fetched GraphQL `entity` says: the invitation, dated by its
/// `updated_at` (none: the fold dates it by when it was fetched).
pub fn fetched(entity: &Value) -> crate::source::Report {
    let snapshot = parse(entity);
    crate::source::Report { dated: snapshot.updated_at.clone(), snapshot, data_missing: false, envelope_id: None }
}

/// The first spelling holding a non-empty string. A spelling that is present
/// but null, empty or of another type is skipped, so that a useless value
/// under one name never hides a good one under another.
fn text(o: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match o.get(*k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}

/// The first spelling present with a non-null value, whatever its type: for
/// amounts a wrongly typed value is a finding (`Invalid`), not an absence.
fn first_non_null<'a>(o: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| o.get(*k).filter(|v| !v.is_null()))
}

fn invalid(reason: &str) -> PaymentAmount {
    PaymentAmount::Invalid { reason: reason.to_owned() }
}

fn payment_amount(o: &Map<String, Value>) -> Option<PaymentAmount> {
    amount_from(first_non_null(o, AMOUNT))
}

/// The amount read from the first non-null spelling, `raw`.
fn amount_from(raw: Option<&Value>) -> Option<PaymentAmount> {
    let raw = raw?;
    let Some(amount) = raw.as_object() else {
        return Some(invalid(REASON_SHAPE));
    };
    Some(money_from(first_non_null(amount, AMOUNT_VALUE), || currency_of(first_non_null(amount, AMOUNT_CURRENCY))))
}

/// The amount of an amount object, from its first non-null value and the
/// code its first non-null currency gives (asked only for a usable value).
fn money_from(value: Option<&Value>, currency: impl FnOnce() -> Option<(String, Option<u32>)>) -> PaymentAmount {
    let value = match amount_value(value) {
        Ok(v) => v,
        Err(reason) => return invalid(reason),
    };
    let Some((currency, decimals)) = currency() else {
        return invalid(REASON_CURRENCY);
    };
    match Money::new(value, currency) {
        Ok(m) => PaymentAmount::Valid(m.with_decimals(decimals)),
        Err(reason) => PaymentAmount::Invalid { reason },
    }
}

/// The currency's decimals from the first non-null spelling, by the rule
/// both sources share ([`crate::money::decimals_of`]): the platform is
/// told them as given, and none is guessed.
fn decimals_of(v: Option<&Value>) -> Option<u32> {
    crate::money::decimals_of(v?)
}

/// Only an exact integer is accepted. Anything that went through a float
/// (`1.5`, `1e30`, even `500.0`) is refused: the float may already have
/// rounded away digits, and a payment must be exactly what was meant. The
/// one exception is `-0`, which serde_json can only read as a float: zero,
/// which owes nothing.
fn amount_value(v: Option<&Value>) -> Result<i64, &'static str> {
    match v {
        None => Err(REASON_NO_VALUE),
        // `-0` is zero, though serde_json reads it as a float.
        Some(Value::Number(n)) if crate::money::is_minus_zero(n) => Ok(0),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                if i < 0 {
                    Err(REASON_NEGATIVE)
                } else {
                    Ok(i)
                }
            } else if n.is_u64() {
                // Positive, but beyond i64::MAX.
                Err(REASON_TOO_BIG)
            } else {
                // Without serde_json's arbitrary_precision, a literal with a
                // fraction or exponent, or an integer beyond u64, lands here.
                match n.as_f64() {
                    Some(f) if f < 0.0 => Err(REASON_NEGATIVE),
                    Some(f) if !f.is_finite() => Err(REASON_TOO_BIG),
                    Some(f) if f.fract() != 0.0 => Err(REASON_FRACTIONAL),
                    // 2^63: the first integral f64 beyond i64::MAX.
                    Some(f) if f >= 9_223_372_036_854_775_808.0 => Err(REASON_TOO_BIG),
                    Some(_) => Err(REASON_NOT_INTEGER_FORM),
                    None => Err(REASON_NOT_A_NUMBER),
                }
            }
        }
        Some(Value::String(s)) => digits_value(s),
        Some(_) => Err(REASON_NOT_A_NUMBER),
    }
}

/// Some SDKs send 64-bit amounts as strings so that JavaScript does not round
/// them. Only ASCII digits with an optional leading '-' are accepted: no
/// '+', spaces, separators or exponents, which would each be a guess.
fn digits_value(s: &str) -> Result<i64, &'static str> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(REASON_NOT_A_NUMBER);
    }
    if negative && digits.bytes().any(|b| b != b'0') {
        return Err(REASON_NEGATIVE);
    }
    digits.parse::<i64>().map_err(|_| REASON_TOO_BIG)
}

/// The currency is either its code or a currency object carrying one, and
/// perhaps its `decimals` (passed on to the platform as given); `symbol`
/// and `name` are display data that does not change what is owed.
fn currency_of(v: Option<&Value>) -> Option<(String, Option<u32>)> {
    let (code, decimals) = match v? {
        Value::String(s) => (s.as_str(), None),
        Value::Object(c) => {
            (first_non_null(c, CURRENCY_CODE)?.as_str()?, decimals_of(first_non_null(c, CURRENCY_DECIMALS)))
        }
        _ => return None,
    };
    is_currency_code(code).then(|| (code.to_owned(), decimals))
}
