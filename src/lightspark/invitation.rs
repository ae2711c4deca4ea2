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

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::money::{is_currency_code, Money, PaymentAmount, REASON_NEGATIVE};

/// Where an invitation is in its life. Lightspark adds enum values without
/// notice, so an unknown one is kept verbatim instead of failing the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum InvitationStatus {
    Pending,
    Claimed,
    Cancelled,
    Expired,
    /// A value this build does not know, exactly as received.
    Other(String),
}

impl InvitationStatus {
    /// The wire spelling, so that what we store and print matches what
    /// Lightspark sent.
    pub fn as_str(&self) -> &str {
        match self {
            InvitationStatus::Pending => "PENDING",
            InvitationStatus::Claimed => "CLAIMED",
            InvitationStatus::Cancelled => "CANCELLED",
            InvitationStatus::Expired => "EXPIRED",
            InvitationStatus::Other(s) => s,
        }
    }

    /// Case-sensitive: Lightspark's enums are upper case, and a near miss is
    /// kept as `Other` rather than guessed into a state that triggers a payment.
    pub fn parse(s: &str) -> Self {
        match s {
            "PENDING" => InvitationStatus::Pending,
            "CLAIMED" => InvitationStatus::Claimed,
            "CANCELLED" => InvitationStatus::Cancelled,
            "EXPIRED" => InvitationStatus::Expired,
            other => InvitationStatus::Other(other.to_owned()),
        }
    }

    /// Terminal states never move again, which is what lets the projection
    /// ignore a stale `PENDING` snapshot arriving after a `CLAIMED` one. An
    /// unknown value is not terminal: we cannot know that it is final.
    pub fn is_terminal(&self) -> bool {
        matches!(self, InvitationStatus::Claimed | InvitationStatus::Cancelled | InvitationStatus::Expired)
    }
}

impl From<InvitationStatus> for String {
    fn from(s: InvitationStatus) -> String {
        match s {
            InvitationStatus::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl From<String> for InvitationStatus {
    fn from(s: String) -> Self {
        InvitationStatus::parse(&s)
    }
}

/// Whether the inviter earns Lightspark's incentive for this invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum IncentivesStatus {
    Pending,
    Validated,
    /// Also what `INVALID` becomes: Lightspark's docs name both and say to
    /// treat `INVALID` as ineligible, so the projection sees one state.
    Ineligible,
    /// A value this build does not know, exactly as received.
    Other(String),
}

impl IncentivesStatus {
    /// The wire spelling (`INVALID` comes back as `INELIGIBLE`, see
    /// [`IncentivesStatus::Ineligible`]).
    pub fn as_str(&self) -> &str {
        match self {
            IncentivesStatus::Pending => "PENDING",
            IncentivesStatus::Validated => "VALIDATED",
            IncentivesStatus::Ineligible => "INELIGIBLE",
            IncentivesStatus::Other(s) => s,
        }
    }

    /// Case-sensitive for the same reason as [`InvitationStatus::parse`]:
    /// `VALIDATED` releases money, so it is never guessed.
    pub fn parse(s: &str) -> Self {
        match s {
            "PENDING" => IncentivesStatus::Pending,
            "VALIDATED" => IncentivesStatus::Validated,
            "INELIGIBLE" | "INVALID" => IncentivesStatus::Ineligible,
            other => IncentivesStatus::Other(other.to_owned()),
        }
    }

    /// Once decided, an incentive decision is not revisited by an older
    /// snapshot.
    pub fn is_terminal(&self) -> bool {
        matches!(self, IncentivesStatus::Validated | IncentivesStatus::Ineligible)
    }
}

impl From<IncentivesStatus> for String {
    fn from(s: IncentivesStatus) -> String {
        match s {
            IncentivesStatus::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl From<String> for IncentivesStatus {
    fn from(s: String) -> Self {
        IncentivesStatus::parse(&s)
    }
}

const REASON_FRACTIONAL: &str = "amount is fractional";
const REASON_TOO_BIG: &str = "amount does not fit in 64 bits";
const REASON_NOT_A_NUMBER: &str = "amount is not a number";
const REASON_NOT_INTEGER_FORM: &str = "amount is written as a decimal number, not an integer";
const REASON_NO_VALUE: &str = "amount has no value";
const REASON_CURRENCY: &str = "unknown currency shape";
const REASON_SHAPE: &str = "unknown amount shape";

/// Everything one event says about an invitation. Every field is optional
/// because snapshots are partial: the projection merges them, and a field an
/// event does not carry must not erase what an earlier one said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationSnapshot {
    pub id: Option<String>,
    pub code: Option<String>,
    pub url: Option<String>,
    pub inviter_uma: Option<String>,
    pub inviter_first_name: Option<String>,
    pub invitee_uma: Option<String>,
    pub status: Option<InvitationStatus>,
    pub incentives_status: Option<IncentivesStatus>,
    pub incentives_ineligibility_reason: Option<String>,
    pub payment_amount: Option<PaymentAmount>,
    /// Timestamps are kept as sent: ordering snapshots is the projection's
    /// job, and an odd format is still worth showing to an operator.
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub cancelled_at: Option<String>,
    pub expires_at: Option<String>,
}

// Each field's spellings, in the order they are tried: plain snake_case,
// GraphQL-aliased, camelCase. The order only matters when one object carries
// several spellings of a field with different values, which no producer is
// known to do; it is fixed so that the result is still deterministic.
const ID: &[&str] = &["id", "uma_invitation_id"];
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

impl InvitationSnapshot {
    /// Reads whatever spelling arrived. Never fails and never panics: a
    /// webhook is already stored when this runs, and one malformed field must
    /// not make the rest of the event unreadable.
    pub fn from_json(v: &Value) -> Self {
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
    Some(money_from(first_non_null(amount, AMOUNT_VALUE), || currency_code(first_non_null(amount, AMOUNT_CURRENCY))))
}

/// The amount of an amount object, from its first non-null value and the
/// code its first non-null currency gives (asked only for a usable value).
fn money_from(value: Option<&Value>, currency: impl FnOnce() -> Option<String>) -> PaymentAmount {
    let value = match amount_value(value) {
        Ok(v) => v,
        Err(reason) => return invalid(reason),
    };
    let Some(currency) = currency() else {
        return invalid(REASON_CURRENCY);
    };
    match Money::new(value, currency) {
        Ok(m) => PaymentAmount::Valid(m),
        Err(reason) => PaymentAmount::Invalid { reason },
    }
}

/// Only an exact integer is accepted. Anything that went through a float
/// (`1.5`, `1e30`, even `500.0`) is refused: the float may already have
/// rounded away digits, and a payment must be exactly what was meant.
fn amount_value(v: Option<&Value>) -> Result<i64, &'static str> {
    match v {
        None => Err(REASON_NO_VALUE),
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

/// The currency is either its code or a currency object carrying one; the
/// other currency fields (`decimals`, `symbol`, `name`) are display data that
/// does not change what is owed.
fn currency_code(v: Option<&Value>) -> Option<String> {
    let code = match v? {
        Value::String(s) => s.as_str(),
        Value::Object(c) => first_non_null(c, CURRENCY_CODE)?.as_str()?,
        _ => return None,
    };
    is_currency_code(code).then(|| code.to_owned())
}

/// An invitation object read straight from JSON text, in any spelling, to
/// the snapshot [`InvitationSnapshot::from_json`] gives for the same text
/// parsed into a `Value`.
///
/// A rebuild folds every webhook in the ledger, and building a `Value` for
/// each (a tree of owned keys and strings, freed at once) cost more than the
/// rest of the fold. This reads each key once, keeps only the values of the
/// spellings above, and resolves them with the same rules: the first
/// spelling holding a non-empty string, the first non-null amount, and,
/// within one spelling given twice, the last (as a `Value` map keeps it).
/// Everything else is still read through and checked as a `Value` would
/// be, so the same texts are accepted and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WireSnapshot(pub InvitationSnapshot);

/// The fields read as text, in the order [`WireSnapshot`] keeps them.
const TEXT_FIELDS: [&[&str]; 13] = [
    ID,
    CODE,
    URL,
    INVITER_UMA,
    INVITER_FIRST_NAME,
    INVITEE_UMA,
    STATUS,
    INCENTIVES_STATUS,
    INCENTIVES_INELIGIBILITY_REASON,
    CREATED_AT,
    UPDATED_AT,
    CANCELLED_AT,
    EXPIRES_AT,
];

/// The most spellings any one field has.
const MAX_SPELLINGS: usize = 5;

/// What a key of the invitation object stands for.
enum Slot {
    /// Spelling `.1` of text field `.0` (an index into [`TEXT_FIELDS`]).
    Text(usize, usize),
    /// Spelling `.0` of the amount.
    Amount(usize),
}

fn slot_of(key: &str) -> Option<Slot> {
    for (field, spellings) in TEXT_FIELDS.iter().enumerate() {
        if let Some(i) = spellings.iter().position(|s| *s == key) {
            return Some(Slot::Text(field, i));
        }
    }
    AMOUNT.iter().position(|s| *s == key).map(Slot::Amount)
}

impl<'de> Deserialize<'de> for WireSnapshot {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(WireVisitor)
    }
}

struct WireVisitor;

impl<'de> serde::de::Visitor<'de> for WireVisitor {
    type Value = WireSnapshot;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an invitation object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<WireSnapshot, A::Error> {
        // The last value seen under each spelling: a non-empty string, or
        // nothing; for the amount, any value but null.
        let mut texts: [[Option<String>; MAX_SPELLINGS]; TEXT_FIELDS.len()] = Default::default();
        let mut amounts: [Option<AmountSeen>; MAX_SPELLINGS] = Default::default();
        while let Some(Key(key)) = map.next_key()? {
            match slot_of(&key) {
                Some(Slot::Text(field, i)) => texts[field][i] = map.next_value::<Text>()?.0,
                Some(Slot::Amount(i)) => amounts[i] = map.next_value::<Option<AmountSeen>>()?,
                None => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        // The first spelling holding text wins, as in `text`.
        let [id, code, url, inviter_uma, inviter_first_name, invitee_uma, status, incentives_status, reason, created_at, updated_at, cancelled_at, expires_at] =
            std::array::from_fn(|field| texts[field].iter_mut().find_map(Option::take));
        Ok(WireSnapshot(InvitationSnapshot {
            id,
            code,
            url,
            inviter_uma,
            inviter_first_name,
            invitee_uma,
            status: status.map(|s| InvitationStatus::parse(&s)),
            incentives_status: incentives_status.map(|s| IncentivesStatus::parse(&s)),
            incentives_ineligibility_reason: reason,
            created_at,
            updated_at,
            cancelled_at,
            expires_at,
            payment_amount: amounts.into_iter().flatten().next().map(AmountSeen::resolve),
        }))
    }
}

/// What one spelling of the amount held (null is `None` around it), read
/// without building a `Value` for the object: only the leaves
/// [`amount_from`] looks at are kept, and resolved by the same rules.
enum AmountSeen {
    NotObject,
    Object {
        /// The last value under each of [`AMOUNT_VALUE`], null as `None`.
        value: [Option<Value>; 3],
        /// The last currency under each of [`AMOUNT_CURRENCY`], null as `None`.
        currency: [Option<CurrencySeen>; 2],
    },
}

/// What one spelling of the currency held.
enum CurrencySeen {
    Code(String),
    /// The last value under each of [`CURRENCY_CODE`], null as `None`.
    Object([Option<CodeSeen>; 2]),
    Other,
}

/// What one spelling of a currency object's code held.
enum CodeSeen {
    Text(String),
    Other,
}

impl AmountSeen {
    /// [`amount_from`]'s answer for the `Value` this was read from.
    fn resolve(self) -> PaymentAmount {
        match self {
            AmountSeen::NotObject => invalid(REASON_SHAPE),
            AmountSeen::Object { value, currency } => money_from(value.iter().flatten().next(), || {
                currency.into_iter().flatten().next().and_then(CurrencySeen::code)
            }),
        }
    }
}

impl CurrencySeen {
    /// [`currency_code`]'s answer for the `Value` this was read from.
    fn code(self) -> Option<String> {
        let code = match self {
            CurrencySeen::Code(s) => s,
            CurrencySeen::Object(codes) => match codes.into_iter().flatten().next()? {
                CodeSeen::Text(s) => s,
                CodeSeen::Other => return None,
            },
            CurrencySeen::Other => return None,
        };
        is_currency_code(&code).then_some(code)
    }
}

/// Implements the visitor methods for the values that are neither text nor
/// an object: each is `$other`. Arrays are read through and checked.
macro_rules! other_values {
    ($other:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            CheckedVisitor.visit_seq(seq).map(|()| $other)
        }
    };
}

impl<'de> Deserialize<'de> for AmountSeen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AmountSeen;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an amount")
            }
            other_values!(AmountSeen::NotObject);
            fn visit_str<E>(self, _: &str) -> Result<AmountSeen, E> {
                Ok(AmountSeen::NotObject)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<AmountSeen, A::Error> {
                let mut value: [Option<Value>; 3] = Default::default();
                let mut currency: [Option<CurrencySeen>; 2] = Default::default();
                while let Some(Key(key)) = map.next_key()? {
                    if let Some(i) = AMOUNT_VALUE.iter().position(|s| *s == key) {
                        value[i] = Some(map.next_value::<Value>()?).filter(|v| !v.is_null());
                    } else if let Some(i) = AMOUNT_CURRENCY.iter().position(|s| *s == key) {
                        currency[i] = map.next_value()?;
                    } else {
                        map.next_value::<Checked>()?;
                    }
                }
                Ok(AmountSeen::Object { value, currency })
            }
        }
        // Null never gets here: `Option<AmountSeen>` takes it.
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for CurrencySeen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CurrencySeen;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a currency")
            }
            other_values!(CurrencySeen::Other);
            fn visit_str<E>(self, s: &str) -> Result<CurrencySeen, E> {
                Ok(CurrencySeen::Code(s.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<CurrencySeen, A::Error> {
                let mut codes: [Option<CodeSeen>; 2] = Default::default();
                while let Some(Key(key)) = map.next_key()? {
                    match CURRENCY_CODE.iter().position(|s| *s == key) {
                        Some(i) => codes[i] = map.next_value()?,
                        None => {
                            map.next_value::<Checked>()?;
                        }
                    }
                }
                Ok(CurrencySeen::Object(codes))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for CodeSeen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CodeSeen;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a currency code")
            }
            other_values!(CodeSeen::Other);
            fn visit_str<E>(self, s: &str) -> Result<CodeSeen, E> {
                Ok(CodeSeen::Text(s.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<CodeSeen, A::Error> {
                CheckedVisitor.visit_map(map).map(|()| CodeSeen::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A map key, borrowed from the text when it has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(s.into()))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(s.to_owned().into()))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(s.into()))
            }
        }
        d.deserialize_str(V)
    }
}

/// A value where text is expected: the text when it is a non-empty string
/// ([`text`]'s rule), else nothing. Any other value is read and checked.
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_str<E>(self, s: &str) -> Result<Text, E> {
                Ok(Text((!s.is_empty()).then(|| s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text, E> {
                Ok(Text((!s.is_empty()).then_some(s)))
            }
            other_values!(Text(None));
            fn visit_unit<E>(self) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Text, A::Error> {
                CheckedVisitor.visit_map(map).map(|()| Text(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A value read only to be checked, exactly as far as a `Value` would be:
/// unlike `serde::de::IgnoredAny`, its strings are checked for UTF-8 and
/// its numbers for range, so a text a `Value` refuses is refused here too.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor).map(|()| Checked)
    }
}

struct CheckedVisitor;

impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<Key<'_>>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const FIXTURE_ID: &str = "UmaInvitation:0191a8b6-fixture-0001";

    fn money(value: i64, currency: &str) -> PaymentAmount {
        PaymentAmount::Valid(Money::new(value, currency).unwrap())
    }

    fn amount_of(v: Value) -> Option<PaymentAmount> {
        InvitationSnapshot::from_json(&v).payment_amount
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
            payment_amount: Some(money(500, "USD")),
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
        let expected = InvitationSnapshot::from_json(&full_snake());
        // Then they give the same snapshot, with every field filled
        assert_eq!(InvitationSnapshot::from_json(&aliased), expected);
        assert!(expected.inviter_first_name.is_some() && expected.expires_at.is_some());
        assert_eq!(expected.payment_amount, Some(money(1234, "EUR")));
    }

    #[test]
    fn camel_case_invitation_parses_like_snake_case() {
        // Given the same invitation in camelCase
        let camel = json!({
            "id": "UmaInvitation:1", "code": "C0DE", "url": "https://uma.me/i/C0DE",
            "inviterUma": "$a@x.example", "inviterFirstName": "Alice", "inviteeUma": "$b@y.example",
            "status": "EXPIRED", "incentivesStatus": "INELIGIBLE",
            "incentivesIneligibilityReason": "NOT_CROSS_BORDER",
            "paymentAmount": {"value": 1234, "currency": {"code": "EUR"}},
            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-02T00:00:00Z",
            "cancelledAt": "2026-01-03T00:00:00Z", "expiresAt": "2026-01-04T00:00:00Z"
        });
        // When parsed
        let snapshot = InvitationSnapshot::from_json(&camel);
        // Then it equals the snake_case snapshot
        assert_eq!(snapshot, InvitationSnapshot::from_json(&full_snake()));
    }

    #[test]
    fn graphql_outer_names_with_plain_nested_amount_parse_like_snake_case() {
        // Given aliased outer names around a plainly named amount
        let v = json!({
            "uma_invitation_id": "UmaInvitation:1",
            "uma_invitation_payment_amount": {"value": 1234, "currency": {"code": "EUR"}}
        });
        // When parsed
        let snapshot = InvitationSnapshot::from_json(&v);
        // Then the amount is read all the same
        assert_eq!(snapshot.id.as_deref(), Some("UmaInvitation:1"));
        assert_eq!(snapshot.payment_amount, Some(money(1234, "EUR")));
    }

    #[test]
    fn snake_case_spelling_wins_when_several_spellings_are_present() {
        // Given an object carrying two spellings of the same field
        let v = json!({"uma_invitation_code": "ALIASED", "code": "SNAKE", "inviteeUma": "$camel@x", "uma_invitation_invitee_uma": "$aliased@x"});
        // When parsed
        let s = InvitationSnapshot::from_json(&v);
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
        let s = InvitationSnapshot::from_json(&v);
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
    fn currency_object_and_currency_code_give_the_same_money() {
        // Given the currency as an object (either naming) and as a bare code
        let forms = [
            json!({"value": 7, "currency": "JPY"}),
            json!({"value": 7, "currency": {"code": "JPY", "decimals": 0, "symbol": "¥", "name": "Yen"}}),
            json!({"value": 7, "currency": {"uma_currency_code": "JPY", "uma_currency_decimals": 0}}),
            json!({"uma_currency_amount_value": 7, "uma_currency_amount_currency": "JPY"}),
        ];
        for amount in forms {
            // When parsed / Then each is 7 JPY
            assert_eq!(amount_of(json!({ "payment_amount": amount })), Some(money(7, "JPY")));
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
        for currency in [
            json!(""),
            json!("US D"),
            json!("ABCDEFGHIJKLMNOPQ"),
            json!(840),
            json!({"symbol": "$"}),
            json!({"code": 840}),
        ] {
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
        let s = InvitationSnapshot::from_json(&v);
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
        let s = InvitationSnapshot::from_json(&json!({"incentives_status": "INVALID"}));
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
            assert_eq!(InvitationSnapshot::from_json(&v), InvitationSnapshot::default());
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
        let mut s = InvitationSnapshot::from_json(&full_snake());
        let back: InvitationSnapshot = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        s.payment_amount = Some(PaymentAmount::Invalid { reason: REASON_FRACTIONAL.into() });
        let back: InvitationSnapshot = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    const WEBHOOK_FIXTURES: [(&str, &str, &str); 5] = [
        (
            "claimed_snake_case",
            include_str!("../../fixtures/webhooks/claimed_snake_case.json"),
            include_str!("../../fixtures/webhooks/claimed_snake_case.sig"),
        ),
        (
            "claimed_graphql_aliased",
            include_str!("../../fixtures/webhooks/claimed_graphql_aliased.json"),
            include_str!("../../fixtures/webhooks/claimed_graphql_aliased.sig"),
        ),
        (
            "claimed_graphql_plain_nested",
            include_str!("../../fixtures/webhooks/claimed_graphql_plain_nested.json"),
            include_str!("../../fixtures/webhooks/claimed_graphql_plain_nested.sig"),
        ),
        (
            "claimed_camel_case",
            include_str!("../../fixtures/webhooks/claimed_camel_case.json"),
            include_str!("../../fixtures/webhooks/claimed_camel_case.sig"),
        ),
        (
            "claimed_amount_to_send",
            include_str!("../../fixtures/webhooks/claimed_amount_to_send.json"),
            include_str!("../../fixtures/webhooks/claimed_amount_to_send.sig"),
        ),
    ];

    #[test]
    fn every_webhook_fixture_and_the_graphql_fixture_give_the_same_snapshot() {
        // Given the five webhook fixtures and the GraphQL answer
        for (name, body, _) in WEBHOOK_FIXTURES {
            let envelope: Value = serde_json::from_str(body).unwrap();
            // When their invitation is parsed
            let snapshot = InvitationSnapshot::from_json(&envelope["data"]);
            // Then each is the fixture invitation, field for field
            assert_eq!(snapshot, fixture_snapshot(), "fixture {name}");
        }
        let answer: Value =
            serde_json::from_str(include_str!("../../fixtures/graphql/invitation_claimed.json")).unwrap();
        assert_eq!(InvitationSnapshot::from_json(&answer["data"]["entity"]), fixture_snapshot());
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
                prop::collection::btree_map(arb_key(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
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

    /// Reads `text` both ways: into a `Value` then [`InvitationSnapshot::from_json`],
    /// and straight through [`WireSnapshot`]. `None` when the text is refused.
    fn both_ways(text: &[u8]) -> (Option<InvitationSnapshot>, Option<InvitationSnapshot>) {
        let via_value = serde_json::from_slice::<Value>(text)
            .ok()
            .filter(Value::is_object)
            .map(|v| InvitationSnapshot::from_json(&v));
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
            let _ = InvitationSnapshot::from_json(&v);
        }

        #[test]
        fn from_json_only_ever_yields_payable_valid_amounts(
            fields in prop::collection::btree_map(arb_key(), arb_json(), 0..12)
        ) {
            // Given an object whose keys are mostly the real field names
            let v = Value::Object(fields.into_iter().collect());
            // When parsed
            let s = InvitationSnapshot::from_json(&v);
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
                let data = e.data.as_ref().filter(|d| d.is_object()).map(InvitationSnapshot::from_json);
                prop_assert_eq!(data, f.data.map(|w| w.0));
            }
        }

    }
}
