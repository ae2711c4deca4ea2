//! An UMA invitation as this service models it, whichever source told us
//! about it (a Lightspark webhook or GraphQL answer, a Grid webhook or REST
//! answer): its statuses and one snapshot of what an event says about it.
//! Each source parses its own spellings into an [`InvitationSnapshot`]; the
//! projection merges snapshots without knowing where they came from.

use serde::{Deserialize, Serialize};

use crate::money::PaymentAmount;

/// Where an invitation is in its life. Lightspark adds enum values without
/// notice, so an unknown one is kept verbatim instead of failing the event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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

/// The longest UMA address paid or notified, in bytes: far beyond any real
/// one (a user name of 64 and a domain name of 253), short enough to show.
pub const MAX_UMA_BYTES: usize = 256;

/// Whether `s` is a well-formed UMA address, `$user@domain`, that money may
/// be sent to: a `$`, a non-empty user, one `@`, a non-empty domain, at
/// most [`MAX_UMA_BYTES`], and no character that hides what it says.
///
/// A receiver reaches the platform as text and is read by people (the
/// operator, the platform's support, the payee), so an address must look
/// like what it is: control characters and white space could cut or
/// reshape it, and bidirectional overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069, U+200E/U+200F, U+061C) reorder what follows them, so
/// `$bob` U+202E `elpmaxe.live@…` displays as another address. Zero-width
/// characters (U+200B–U+200D, U+2060, U+FEFF) are refused for the same
/// reason. Letters beyond ASCII are allowed: no rule of ours says a user
/// name is ASCII, and the platform judges which addresses exist.
pub fn is_uma_address(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('$') else { return false };
    let Some((user, domain)) = rest.split_once('@') else { return false };
    s.len() <= MAX_UMA_BYTES
        && !user.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !s.chars().any(|c| c == ' ' || hides_text(c))
}

/// Characters that change how the text around them displays, or do not
/// display at all: control characters, white space other than the plain
/// space, bidirectional overrides, isolates and marks, zero-width
/// characters. Pages show them by their code points.
pub fn hides_text(c: char) -> bool {
    ((c.is_control() || c.is_whitespace()) && c != ' ')
        || matches!(
            c,
        '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{061C}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'
            | '\u{FEFF}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uma_address_is_a_dollar_a_user_one_at_and_a_domain() {
        for fine in ["$bob@b.example", "$a@x", "$ä@x", "$Bob.Smith-1+x_y@sub.b.example:8080"] {
            assert!(is_uma_address(fine), "{fine:?}");
        }
        for malformed in ["", "$", "$@", "bob@b.example", "$bob", "$@b.example", "$bob@", "$bob@b@c", "@$bob@b"] {
            assert!(!is_uma_address(malformed), "{malformed:?}");
        }
    }

    #[test]
    fn a_uma_address_hides_nothing_and_is_at_most_256_bytes() {
        // Given well-formed addresses with one hiding character added
        for c in [
            '\u{0}', '\n', '\t', '\u{7F}', '\u{85}', ' ', '\u{A0}', '\u{2028}', '\u{202A}', '\u{202B}', '\u{202C}',
            '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
            '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}',
        ] {
            // Then none is an address, wherever the character is
            for s in [format!("$b{c}ob@b.example"), format!("$bob@b.exa{c}mple"), format!("$bob@b.example{c}")] {
                assert!(!is_uma_address(&s), "{s:?}");
            }
        }
        // And the length is counted in bytes
        let at_most = format!("${}@b.example", "a".repeat(MAX_UMA_BYTES - "$@b.example".len()));
        assert!(is_uma_address(&at_most));
        let one_more = at_most.replacen('$', "$a", 1);
        assert_eq!(one_more.len(), MAX_UMA_BYTES + 1);
        assert!(!is_uma_address(&one_more));
        let two_byte = format!("${}@x", "ä".repeat(127));
        assert_eq!(two_byte.len(), 257);
        assert!(!is_uma_address(&two_byte));
    }
}
