//! The one-pass reader of an invitation straight from a webhook's text, for
//! the fold: the same answers as [`super::parse`] on a parsed `Value`,
//! without building one.

use serde::Deserialize;

use super::*;

/// An invitation object read straight from JSON text, in any spelling, to
/// the snapshot [`parse`] gives for the same text
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
// Read once per amount and resolved at once, on the stack.
#[allow(clippy::large_enum_variant)]
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
    /// The last value under each of [`CURRENCY_CODE`], null as `None`, and
    /// under each of [`CURRENCY_DECIMALS`].
    Object([Option<CodeSeen>; 2], [Option<Value>; 2]),
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
                currency.into_iter().flatten().next().and_then(CurrencySeen::currency)
            }),
        }
    }
}

impl CurrencySeen {
    /// [`currency_of`]'s answer for the `Value` this was read from.
    fn currency(self) -> Option<(String, Option<u32>)> {
        let (code, decimals) = match self {
            CurrencySeen::Code(s) => (s, None),
            CurrencySeen::Object(codes, decimals) => match codes.into_iter().flatten().next()? {
                CodeSeen::Text(s) => (s, decimals_of(decimals.iter().flatten().next())),
                CodeSeen::Other => return None,
            },
            CurrencySeen::Other => return None,
        };
        is_currency_code(&code).then_some((code, decimals))
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
                let mut decimals: [Option<Value>; 2] = Default::default();
                while let Some(Key(key)) = map.next_key()? {
                    if let Some(i) = CURRENCY_CODE.iter().position(|s| *s == key) {
                        codes[i] = map.next_value()?;
                    } else if let Some(i) = CURRENCY_DECIMALS.iter().position(|s| *s == key) {
                        decimals[i] = Some(map.next_value::<Value>()?).filter(|v| !v.is_null());
                    } else {
                        map.next_value::<Checked>()?;
                    }
                }
                Ok(CurrencySeen::Object(codes, decimals))
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
pub(crate) struct Key<'de>(pub(crate) std::borrow::Cow<'de, str>);

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
pub(crate) struct Text(pub(crate) Option<String>);

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
pub(crate) struct Checked;

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
