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
