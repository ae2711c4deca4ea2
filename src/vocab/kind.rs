//! What an event is, and what an obligation is.

use serde::{Deserialize, Serialize};

/// The four things owed for a claimed invitation: the invitee's payment,
/// the inviter's incentive, the inviter told that the invitee joined, and
/// the inviter told when the invitee's payment failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObligationKind {
    InviteePayment,
    InviterIncentive,
    InviterNotification,
    InviterFailureNotice,
}

impl ObligationKind {
    pub const ALL: [ObligationKind; 4] = [
        ObligationKind::InviteePayment,
        ObligationKind::InviterIncentive,
        ObligationKind::InviterNotification,
        ObligationKind::InviterFailureNotice,
    ];

    /// The name used in requests, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ObligationKind::InviteePayment => "invitee_payment",
            ObligationKind::InviterIncentive => "inviter_incentive",
            ObligationKind::InviterNotification => "inviter_notification",
            ObligationKind::InviterFailureNotice => "inviter_failure_notice",
        }
    }

    /// Accepts the kind's name or its event prefix (`payout`, `incentive`,
    /// `notification`, `failure_notice`), as an operator might type either.
    pub fn parse(s: &str) -> Option<Self> {
        ObligationKind::ALL.into_iter().find(|k| k.as_str() == s || k.event_prefix() == s)
    }

    /// The prefix of this obligation's ledger event kinds (`payout.requested`, …).
    pub fn event_prefix(self) -> &'static str {
        match self {
            ObligationKind::InviteePayment => "payout",
            ObligationKind::InviterIncentive => "incentive",
            ObligationKind::InviterNotification => "notification",
            ObligationKind::InviterFailureNotice => "failure_notice",
        }
    }
}

/// Every kind of event in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A verified webhook, stored byte for byte.
    WebhookReceived,
    InvitationFetched,
    InvitationFetchFailed,
    /// The service asked a source to create an invitation.
    CreateRequested,
    Created,
    CreateFailed,
    /// The service asked a source to cancel an invitation.
    CancelRequested,
    Cancelled,
    CancelFailed,
    Requested(ObligationKind),
    Succeeded(ObligationKind),
    Failed(ObligationKind),
    InDoubt,
    Resolved,
}

impl EventKind {
    /// Every kind, for the one test that checks names and parsing agree.
    pub const ALL: [EventKind; 23] = [
        EventKind::WebhookReceived,
        EventKind::InvitationFetched,
        EventKind::InvitationFetchFailed,
        EventKind::CreateRequested,
        EventKind::Created,
        EventKind::CreateFailed,
        EventKind::CancelRequested,
        EventKind::Cancelled,
        EventKind::CancelFailed,
        EventKind::Requested(ObligationKind::InviteePayment),
        EventKind::Succeeded(ObligationKind::InviteePayment),
        EventKind::Failed(ObligationKind::InviteePayment),
        EventKind::Requested(ObligationKind::InviterIncentive),
        EventKind::Succeeded(ObligationKind::InviterIncentive),
        EventKind::Failed(ObligationKind::InviterIncentive),
        EventKind::Requested(ObligationKind::InviterNotification),
        EventKind::Succeeded(ObligationKind::InviterNotification),
        EventKind::Failed(ObligationKind::InviterNotification),
        EventKind::Requested(ObligationKind::InviterFailureNotice),
        EventKind::Succeeded(ObligationKind::InviterFailureNotice),
        EventKind::Failed(ObligationKind::InviterFailureNotice),
        EventKind::InDoubt,
        EventKind::Resolved,
    ];

    /// The `kind` column's text.
    pub fn as_str(self) -> &'static str {
        use ObligationKind::*;
        match self {
            EventKind::WebhookReceived => "webhook.received",
            EventKind::InvitationFetched => "invitation.fetched",
            EventKind::InvitationFetchFailed => "invitation.fetch_failed",
            EventKind::CreateRequested => "invitation.create_requested",
            EventKind::Created => "invitation.created",
            EventKind::CreateFailed => "invitation.create_failed",
            EventKind::CancelRequested => "invitation.cancel_requested",
            EventKind::Cancelled => "invitation.cancelled",
            EventKind::CancelFailed => "invitation.cancel_failed",
            EventKind::Requested(InviteePayment) => "payout.requested",
            EventKind::Succeeded(InviteePayment) => "payout.succeeded",
            EventKind::Failed(InviteePayment) => "payout.failed",
            EventKind::Requested(InviterIncentive) => "incentive.requested",
            EventKind::Succeeded(InviterIncentive) => "incentive.succeeded",
            EventKind::Failed(InviterIncentive) => "incentive.failed",
            EventKind::Requested(InviterNotification) => "notification.requested",
            EventKind::Succeeded(InviterNotification) => "notification.succeeded",
            EventKind::Failed(InviterNotification) => "notification.failed",
            EventKind::Requested(InviterFailureNotice) => "failure_notice.requested",
            EventKind::Succeeded(InviterFailureNotice) => "failure_notice.succeeded",
            EventKind::Failed(InviterFailureNotice) => "failure_notice.failed",
            EventKind::InDoubt => "obligation.in_doubt",
            EventKind::Resolved => "obligation.resolved",
        }
    }

    /// The kind a `kind` column names; `None` for a kind this build does not
    /// know (written by a newer one).
    pub fn parse(text: &str) -> Option<Self> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_by_name_or_event_prefix() {
        assert_eq!(ObligationKind::parse("payout"), Some(ObligationKind::InviteePayment));
        assert_eq!(ObligationKind::parse("inviter_incentive"), Some(ObligationKind::InviterIncentive));
        assert_eq!(ObligationKind::parse("failure_notice"), Some(ObligationKind::InviterFailureNotice));
        assert_eq!(ObligationKind::parse("nope"), None);
    }

    #[test]
    fn every_event_kind_reads_back_from_its_name_and_names_are_distinct() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k), "{k:?}");
        }
        let mut names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventKind::ALL.len());
        assert_eq!(EventKind::parse("payout.refunded"), None);
    }
}
