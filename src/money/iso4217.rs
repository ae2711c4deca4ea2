//! The minor units of currencies: how many decimals an amount counted in a
//! currency's smallest unit has, for the currencies whose count is fixed
//! by a standard rather than by whoever sent the amount.
//!
//! [`ISO_4217`] is ISO 4217's list of current currency and fund codes with
//! their minor units, as the maintenance agency published it in 2025
//! (XCG and ZWG listed; ANG, ZWL, SLL, HRK and CUC withdrawn). Codes whose
//! minor unit the standard gives as "N.A." (gold, silver, platinum,
//! palladium, the bond-market units, XDR, XSU, XUA, XTS, XXX) are left
//! out: no amount is paid in them, so none should be shown as if it were.
//!
//! [`BITCOIN`] adds the two units Lightspark's UMA amounts use that ISO
//! 4217 does not list: BTC (8 decimals: a satoshi is 10⁻⁸ BTC) and SAT
//! (the satoshi itself, 0 decimals).
//!
//! A new or withdrawn code changes this table and nothing else: the
//! configuration refuses a code it does not know unless its decimals are
//! stated (`INVITER_INCENTIVE=100:XYZ:2`).

/// ISO 4217 alphabetic codes and minor units, sorted by code.
pub const ISO_4217: &[(&str, u32)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BOV", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHE", 2),
    ("CHF", 2),
    ("CHW", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("COU", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MXV", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("USN", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAD", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// Bitcoin's units as UMA names them, which ISO 4217 does not list.
pub const BITCOIN: &[(&str, u32)] = &[("BTC", 8), ("SAT", 0)];

/// The decimals of `code` in [`ISO_4217`] or [`BITCOIN`]; `None` for any
/// other code, lower-case spellings included (codes are compared as
/// given, as the platform compares them).
pub fn minor_units(code: &str) -> Option<u32> {
    ISO_4217
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|i| ISO_4217[i].1)
        .or_else(|| BITCOIN.iter().find(|(c, _)| *c == code).map(|(_, d)| *d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_without_duplicates_so_a_binary_search_finds_every_code() {
        // given the embedded table
        // then each code is three upper-case letters and follows the one before it
        for pair in ISO_4217.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (code, units) in ISO_4217 {
            assert!(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()), "{code}");
            assert!(*units <= 4, "{code} {units}");
            assert_eq!(minor_units(code), Some(*units), "{code}");
        }
    }

    #[test]
    fn known_currencies_have_their_standard_decimals_and_others_none() {
        // given codes with two, zero, three and four decimals, bitcoin's, and unknown ones
        let cases = [
            ("USD", Some(2)),
            ("EUR", Some(2)),
            ("JPY", Some(0)),
            ("KRW", Some(0)),
            ("KWD", Some(3)),
            ("CLF", Some(4)),
            ("XCG", Some(2)),
            ("BTC", Some(8)),
            ("SAT", Some(0)),
            ("usd", None),
            ("XAU", None),
            ("ANG", None),
            ("XYZ", None),
        ];
        // then each is what ISO 4217 (or bitcoin) says
        for (code, want) in cases {
            assert_eq!(minor_units(code), want, "{code}");
        }
    }
}
