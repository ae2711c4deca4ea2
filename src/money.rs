//! Amounts of money: an integer count of the currency's smallest unit and
//! its code, never a float. A leaf module: the sources (Lightspark, Grid)
//! read amounts, the reconciler asks for them, the configuration holds the
//! incentive, and none of them should have to import another for it.
//!
//! Every amount a person reads (pages, the audit, the CLI, the demo, log
//! lines) is formatted by one function, [`Money`]'s `Display`: in its
//! currency's decimals, so 100 cents read 1.00 USD wherever they appear.

pub mod iso4217;

use std::fmt;

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
    /// How many of the smallest units make one whole unit, as a power of
    /// ten (2 for USD, 0 for JPY, 8 for BTC), when the source said so. Sent
    /// to the platform as given, never guessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decimals: Option<u32>,
}

/// The unchecked wire form of [`Money`], only used to re-check the invariant
/// on deserialisation.
#[derive(Deserialize)]
struct MoneyRepr {
    value: i64,
    currency: String,
    #[serde(default)]
    decimals: Option<u32>,
}

impl TryFrom<MoneyRepr> for Money {
    type Error = String;
    fn try_from(r: MoneyRepr) -> Result<Self, String> {
        Ok(Money::new(r.value, r.currency)?.with_decimals(r.decimals))
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
        Ok(Money { value, currency, decimals: None })
    }

    /// The same amount, with the currency's decimals as the source gave
    /// them (`None`: not given). More than [`MAX_DECIMALS`] count as not
    /// given, however they got here (a stored event included).
    pub fn with_decimals(mut self, decimals: Option<u32>) -> Money {
        self.decimals = decimals.filter(|d| *d <= MAX_DECIMALS);
        self
    }

    pub fn value(&self) -> i64 {
        self.value
    }

    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The decimals as stated with the amount (by its source, or in
    /// `INVITER_INCENTIVE`): what is sent to the platform, never a guess.
    pub fn decimals(&self) -> Option<u32> {
        self.decimals
    }

    /// The decimals the amount is shown with: the stated ones, else the
    /// standard ones of its currency ([`iso4217::minor_units`]), since a
    /// count of cents shown as dollars is a hundred times wrong. `None`
    /// for a code no standard knows, stated without decimals.
    pub fn shown_decimals(&self) -> Option<u32> {
        self.decimals.filter(|d| *d <= MAX_DECIMALS).or_else(|| iso4217::minor_units(&self.currency))
    }

    /// For people: `5.00 USD`, `1500 JPY`. The same as `to_string()`; kept
    /// as a method because every page calls it by this name.
    pub fn display(&self) -> String {
        self.to_string()
    }
}

/// `5.00 USD`, `0.05 USD`, `1500 JPY`, `1.23456789 BTC`; a code whose
/// decimals nobody stated and no standard gives shows its count of
/// smallest units, marked so: `500 XYZ (minor units)`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value.unsigned_abs();
        match self.shown_decimals() {
            Some(0) => write!(f, "{v} {}", self.currency),
            Some(d) => {
                let unit = 10u64.pow(d);
                write!(f, "{}.{:0width$} {}", v / unit, v % unit, self.currency, width = d as usize)
            }
            None => write!(f, "{v} {} (minor units)", self.currency),
        }
    }
}

/// The most decimals a currency is taken to have. No currency has more
/// (ISO 4217 stops at 4, bitcoin's millisatoshis need 11, many tokens 18),
/// and 10^18 is the largest power of ten an `i64` holds, so an amount can
/// always be shown in whole units. A source stating more has said
/// something wrong, and the platform is better told nothing than that.
pub const MAX_DECIMALS: u32 = 18;

/// A currency's `decimals` as a source states them, Lightspark or Grid
/// alike: an integer from 0 to [`MAX_DECIMALS`]. Anything else (negative,
/// fractional, text, larger) is treated as not given rather than refusing
/// the amount: the amount itself is already in the smallest unit, and the
/// decimals are only passed on and shown.
pub(crate) fn decimals_of(v: &serde_json::Value) -> Option<u32> {
    v.as_u64().filter(|d| *d <= u64::from(MAX_DECIMALS)).map(|d| d as u32)
}

/// Whether a JSON number is `-0`: serde_json reads that literal as the
/// float -0.0 (JSON has no negative integer zero), so a source writing
/// `-0` for zero would otherwise send a "float". `-0.0` reads the same and
/// is the same amount.
pub(crate) fn is_minus_zero(n: &serde_json::Number) -> bool {
    n.is_f64() && n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative())
}

/// Whether a string amount is `-0` (or `-00`…): zero, written with a sign.
pub(crate) fn is_minus_zero_text(s: &str) -> bool {
    s.strip_prefix('-').is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b == b'0'))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_show_with_their_currencys_decimals() {
        // given amounts with their decimals stated
        let m = |v, c: &str, d| Money::new(v, c).unwrap().with_decimals(d);
        // then each shows in them
        assert_eq!(m(500, "USD", Some(2)).display(), "5.00 USD");
        assert_eq!(m(5, "USD", Some(2)).display(), "0.05 USD");
        assert_eq!(m(1500, "JPY", Some(0)).display(), "1500 JPY");
        assert_eq!(m(123_456_789, "BTC", Some(8)).display(), "1.23456789 BTC");
        assert_eq!(m(5, "XYZ", Some(3)).to_string(), "0.005 XYZ");
        assert_eq!(m(i64::MAX, "XYZ", Some(18)).to_string(), "9.223372036854775807 XYZ");
    }

    #[test]
    fn an_amount_without_stated_decimals_shows_in_its_currencys_standard_ones_or_says_it_is_in_minor_units() {
        // given amounts whose source stated no decimals (or impossible ones)
        let m = |v, c: &str| Money::new(v, c).unwrap();
        // then a standard currency shows in its ISO 4217 decimals
        assert_eq!(m(100, "USD").to_string(), "1.00 USD");
        assert_eq!(m(1500, "JPY").to_string(), "1500 JPY");
        assert_eq!(m(1234, "KWD").to_string(), "1.234 KWD");
        assert_eq!(m(21, "SAT").to_string(), "21 SAT");
        assert_eq!(m(100, "USD").with_decimals(Some(19)).to_string(), "1.00 USD");
        assert_eq!(m(100, "USD").decimals(), None, "what is sent stays as stated");
        // and any other code says that the number counts its smallest unit
        assert_eq!(m(500, "XYZ").to_string(), "500 XYZ (minor units)");
    }

    #[test]
    fn decimals_beyond_18_count_as_not_given() {
        // Given money told 19 decimals, directly or as stored
        let told = Money::new(500, "USD").unwrap().with_decimals(Some(19));
        let stored: Money =
            serde_json::from_value(serde_json::json!({"value": 500, "currency": "USD", "decimals": 19})).unwrap();
        // Then neither states any: it is sent without them, and shown with
        // the currency's standard ones
        assert_eq!((told.decimals(), stored.decimals()), (None, None));
        assert_eq!(told.display(), "5.00 USD");
        assert_eq!(serde_json::to_value(&told).unwrap(), serde_json::json!({"value": 500, "currency": "USD"}));
        // And 18 is still given
        assert_eq!(Money::new(5, "USD").unwrap().with_decimals(Some(18)).decimals(), Some(18));
    }

    #[test]
    fn decimals_survive_a_round_trip_and_are_left_out_when_unknown() {
        let with = Money::new(500, "USD").unwrap().with_decimals(Some(2));
        let json = serde_json::to_value(&with).unwrap();
        assert_eq!(json, serde_json::json!({"value": 500, "currency": "USD", "decimals": 2}));
        assert_eq!(serde_json::from_value::<Money>(json).unwrap(), with);
        let without = serde_json::to_value(Money::new(500, "USD").unwrap()).unwrap();
        assert_eq!(without, serde_json::json!({"value": 500, "currency": "USD"}));
        assert!(serde_json::from_value::<Money>(serde_json::json!({"value": -1, "currency": "USD"})).is_err());
    }
}
