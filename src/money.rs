//! Amounts of money: an integer count of the currency's smallest unit and
//! its code, never a float. A leaf module: the sources (Lightspark, Grid)
//! read amounts, the reconciler asks for them, the configuration holds the
//! incentive, and none of them should have to import another for it.

use serde::{Deserialize, Serialize};

/// Why an amount is refused when its value is below zero; also what the
/// invitation parser reports for a negative amount.
pub(crate) const REASON_NEGATIVE: &str = "amount is negative";

/// Money in the currency's smallest unit (cents for USD), as Lightspark
/// counts it, so no float ever touches an amount.
///
/// The fields are private so that every `Money` in the program went through
/// [`Money::new`]: a negative amount or a malformed currency can then never
/// reach the payment endpoint, however it was built (including by
/// deserialising a stored event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MoneyRepr")]
pub struct Money {
    value: i64,
    currency: String,
}

/// The unchecked wire form of [`Money`], only used to re-check the invariant
/// on deserialisation.
#[derive(Deserialize)]
struct MoneyRepr {
    value: i64,
    currency: String,
}

impl TryFrom<MoneyRepr> for Money {
    type Error = String;
    fn try_from(r: MoneyRepr) -> Result<Self, String> {
        Money::new(r.value, r.currency)
    }
}

impl Money {
    /// # Errors
    /// A sentence saying why, when `value` is negative or `currency` is not a
    /// code of 1–16 ASCII letters or digits (kept verbatim, not upper-cased:
    /// the platform is the judge of which codes exist).
    pub fn new(value: i64, currency: impl Into<String>) -> Result<Money, String> {
        let currency = currency.into();
        if value < 0 {
            return Err(REASON_NEGATIVE.to_owned());
        }
        if !is_currency_code(&currency) {
            return Err(format!("currency code {currency:?} is not 1 to 16 ASCII letters or digits"));
        }
        Ok(Money { value, currency })
    }

    pub fn value(&self) -> i64 {
        self.value
    }

    pub fn currency(&self) -> &str {
        &self.currency
    }
}

pub(crate) fn is_currency_code(s: &str) -> bool {
    (1..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An amount as found on the invitation. An unusable amount is kept with its
/// reason, not dropped, so that the obligation shows `invalid` and an
/// operator sees why nothing was paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentAmount {
    Valid(Money),
    Invalid { reason: String },
}
