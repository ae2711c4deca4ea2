//! What to do about one obligation now: a pure function of the projection,
//! the time and the configuration.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::projection::events::{InDoubtReason, ObligationKind};
use crate::projection::state::InvitationState;
use crate::projection::view::{obligation, still_owed, ObligationState};
use crate::time::parse_time;

/// What the reconciler may do, as far as the decision needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    pub payout_configured: bool,
    pub notify_configured: bool,
    pub incentive_configured: bool,
    /// How long the platform remembers a key, from the first request that
    /// carried it: `IDEMPOTENCY_WINDOW`.
    pub idempotency_window: Duration,
    /// How long a call may take (`REQUEST_TIMEOUT_MS`): a request decided
    /// now may start up to one timeout later (the pre-call check) and
    /// reach the platform up to one timeout after that.
    pub request_timeout: Duration,
}

impl Capabilities {
    /// The age of a window after which no re-send is decided: a request
    /// decided before it starts before `window − timeout` (see
    /// [`may_call`]) and so arrives inside the window.
    fn resend_until(&self) -> Duration {
        self.idempotency_window.saturating_sub(self.request_timeout.saturating_mul(2))
    }
}

/// Whether a recorded request may still be sent now: it must start at
/// least one request timeout before its window ends, so that it reaches
/// the platform while the platform still remembers its key. A process
/// paused between its decision and its call (SIGSTOP, a suspended VM)
/// must not send a request decided long ago. `window_started_at` is the
/// obligation's window as the request was decided on (`None` for a first
/// request, whose window starts at its own `requested_at`).
pub fn may_call(
    window_started_at: Option<&str>,
    requested_at: DateTime<Utc>,
    now: DateTime<Utc>,
    caps: &Capabilities,
) -> bool {
    let start = match window_started_at {
        None => Some(requested_at),
        Some(text) => parse_time(text),
    };
    let Some(start) = start else { return false };
    let last_start = caps.idempotency_window.saturating_sub(caps.request_timeout);
    now.signed_duration_since(start).to_std().map_or(true, |age| age < last_start)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Settled, not owed, or waiting on an operator.
    Nothing,
    /// Owed, but the endpoint (or the incentive) is not configured: it stays
    /// `pending` and listed.
    NotConfigured,
    /// Call the endpoint; this is the `attempt`-th call.
    Send { attempt: u32 },
    /// A transient failure's retry is not due before this time.
    WaitUntil(DateTime<Utc>),
    /// Requested, and now either so long ago that the platform may have
    /// forgotten the key (re-sending could pay twice), or no longer owed
    /// (the platform may already have acted): record it and stop.
    MarkInDoubt(InDoubtReason),
}

/// Where an obligation's idempotency window stands now.
#[derive(Debug, Clone, Copy)]
enum Window {
    /// No request yet, or one recent enough to be sent again.
    Open,
    /// Too old to send again, not old enough to be in doubt: a request
    /// sent a moment ago may still be on its way until the window ends.
    Closing(DateTime<Utc>),
    /// Every request sent has arrived or never will, and the platform may
    /// have forgotten the key.
    Expired,
}

/// Decides for one obligation of one invitation.
pub fn next_action(state: &InvitationState, kind: ObligationKind, now: DateTime<Utc>, caps: &Capabilities) -> Action {
    let view = obligation(state, kind);
    let configured = match kind {
        ObligationKind::InviteePayment => caps.payout_configured,
        ObligationKind::InviterIncentive => caps.payout_configured && caps.incentive_configured,
        ObligationKind::InviterNotification | ObligationKind::InviterFailureNotice => caps.notify_configured,
    };
    let record = state.obligation(kind);
    // Where the window stands: a re-send is decided only while it is sure
    // to reach the platform inside the window; in doubt only once every
    // request sent could have arrived and the platform may have forgotten
    // the key. A window start that cannot be read counts as expired:
    // re-sending could pay twice, so an operator decides. (A retry time
    // that cannot be read counts as due now: the window still bounds it.)
    let window = match record.window_started_at.as_deref() {
        None => Window::Open,
        Some(text) => match parse_time(text) {
            None => Window::Expired,
            Some(start) => {
                let age = now.signed_duration_since(start).to_std().unwrap_or_default();
                if age >= caps.idempotency_window {
                    Window::Expired
                } else if age >= caps.resend_until() {
                    Window::Closing(start + caps.idempotency_window)
                } else {
                    Window::Open
                }
            }
        },
    };
    let in_flight = matches!(view.state, ObligationState::Requested | ObligationState::RetryScheduled);
    if in_flight && !still_owed(state, kind) {
        // Decided before anything else: neither re-sent nor completed in
        // silence, whatever the window or the retry time.
        return Action::MarkInDoubt(InDoubtReason::NoLongerDue);
    }
    match view.state {
        ObligationState::Pending if !configured => Action::NotConfigured,
        ObligationState::Pending => Action::Send { attempt: record.attempts + 1 },
        // Requested with no outcome: the process died mid-call, or the
        // outcome could not be recorded. The same key is safe to re-send
        // while the platform still remembers it.
        ObligationState::Requested | ObligationState::RetryScheduled => {
            let due = view.next_attempt_at.as_deref().and_then(parse_time);
            match (window, due) {
                (Window::Expired, _) => Action::MarkInDoubt(InDoubtReason::WindowExpired),
                (_, Some(t)) if view.state == ObligationState::RetryScheduled && t > now => Action::WaitUntil(t),
                (Window::Closing(end), _) => Action::WaitUntil(end),
                (Window::Open, _) if configured => Action::Send { attempt: record.attempts + 1 },
                (Window::Open, _) => Action::NotConfigured,
            }
        }
        _ => Action::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invitation::InvitationStatus;
    use crate::money::{Money, PaymentAmount};
    use crate::projection::state::{ObligationPhase, Versioned};

    const HOUR: Duration = Duration::from_secs(3600);

    fn caps() -> Capabilities {
        Capabilities {
            payout_configured: true,
            notify_configured: true,
            incentive_configured: true,
            idempotency_window: 24 * HOUR,
            request_timeout: HOUR,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    fn claimed_with_amount() -> InvitationState {
        let mut s = InvitationState::new("Inv:1");
        let v = |value: String| Some(Versioned { value, at: 0, seq: 0 });
        s.status = Some(Versioned { value: InvitationStatus::Claimed, at: 0, seq: 0 });
        s.invitee_uma = v("$b@y".into());
        s.inviter_uma = v("$a@x".into());
        s.payment_amount =
            Some(Versioned { value: PaymentAmount::Valid(Money::new(500, "USD").unwrap()), at: 0, seq: 0 });
        s
    }

    #[test]
    fn a_due_payment_with_nothing_sent_is_sent_as_attempt_one() {
        // given a claimed invitation with an amount and nothing sent
        let s = claimed_with_amount();
        // when deciding
        let a = next_action(&s, ObligationKind::InviteePayment, at("2026-11-01T00:00:00Z"), &caps());
        // then it is sent
        assert_eq!(a, Action::Send { attempt: 1 });
    }

    #[test]
    fn without_a_payout_url_a_due_payment_stays_pending() {
        let s = claimed_with_amount();
        let c = Capabilities { payout_configured: false, ..caps() };
        assert_eq!(
            next_action(&s, ObligationKind::InviteePayment, at("2026-11-01T00:00:00Z"), &c),
            Action::NotConfigured
        );
    }

    #[test]
    fn a_retry_waits_for_its_time_then_resends_with_the_next_attempt() {
        let mut s = claimed_with_amount();
        s.payout.phase = ObligationPhase::RetryScheduled;
        s.payout.attempts = 2;
        s.payout.window_started_at = Some("2026-11-01T00:00:00Z".into());
        s.payout.next_attempt_at = Some("2026-11-01T00:00:10Z".into());
        assert_eq!(
            next_action(&s, ObligationKind::InviteePayment, at("2026-11-01T00:00:05Z"), &caps()),
            Action::WaitUntil(at("2026-11-01T00:00:10Z"))
        );
        assert_eq!(
            next_action(&s, ObligationKind::InviteePayment, at("2026-11-01T00:00:10Z"), &caps()),
            Action::Send { attempt: 3 }
        );
    }

    #[test]
    fn a_request_older_than_the_window_becomes_in_doubt_instead_of_being_resent() {
        let mut s = claimed_with_amount();
        s.payout.phase = ObligationPhase::Requested;
        s.payout.attempts = 1;
        s.payout.window_started_at = Some("2026-11-01T00:00:00Z".into());
        assert_eq!(
            next_action(&s, ObligationKind::InviteePayment, at("2026-11-01T21:00:00Z"), &caps()),
            Action::Send { attempt: 2 }
        );
        assert_eq!(
            next_action(&s, ObligationKind::InviteePayment, at("2026-11-02T00:00:00Z"), &caps()),
            Action::MarkInDoubt(InDoubtReason::WindowExpired)
        );
    }

    #[test]
    fn a_request_is_resent_only_while_it_can_reach_the_platform_inside_the_window_then_waits_for_its_end() {
        // given a request with no outcome, its window 24 h and the request
        // timeout 1 h: a re-send decided now may be called up to one
        // timeout later and arrive up to one timeout after that
        for phase in [ObligationPhase::Requested, ObligationPhase::RetryScheduled] {
            let mut s = claimed_with_amount();
            s.payout.phase = phase;
            s.payout.attempts = 1;
            s.payout.window_started_at = Some("2026-11-01T00:00:00Z".into());
            s.payout.next_attempt_at = Some("2026-11-01T00:00:01Z".into());
            let decide = |now: &str| next_action(&s, ObligationKind::InviteePayment, at(now), &caps());
            // when deciding two timeouts before the window ends, then it is sent
            assert_eq!(decide("2026-11-01T21:59:59Z"), Action::Send { attempt: 2 }, "{phase:?}");
            // when deciding later, then it is neither sent nor in doubt:
            // a request sent a moment ago may still be on its way
            assert_eq!(decide("2026-11-01T22:00:00Z"), Action::WaitUntil(at("2026-11-02T00:00:00Z")), "{phase:?}");
            assert_eq!(decide("2026-11-01T23:59:59Z"), Action::WaitUntil(at("2026-11-02T00:00:00Z")), "{phase:?}");
            // when the whole window has passed, then it is in doubt
            assert_eq!(decide("2026-11-02T00:00:00Z"), Action::MarkInDoubt(InDoubtReason::WindowExpired), "{phase:?}");
        }
    }

    #[test]
    fn a_request_is_called_only_while_it_reaches_the_platform_inside_the_window() {
        // given a window of 24 h opened by the first request, and a request
        // timeout of 1 h
        let start = at("2026-11-01T00:00:00Z");
        // then a call may start up to one timeout before the window ends
        assert!(may_call(Some("2026-11-01T00:00:00Z"), start, at("2026-11-01T22:59:59Z"), &caps()));
        assert!(!may_call(Some("2026-11-01T00:00:00Z"), start, at("2026-11-01T23:00:00Z"), &caps()));
        // and a first request opens its own window
        assert!(may_call(None, at("2026-11-05T00:00:00Z"), at("2026-11-05T00:00:01Z"), &caps()));
        assert!(!may_call(None, at("2026-11-05T00:00:00Z"), at("2026-11-05T23:00:00Z"), &caps()));
        // and a window start that cannot be read allows no call
        assert!(!may_call(Some("yesterday"), start, start, &caps()));
    }

    #[test]
    fn an_unreadable_window_start_counts_as_expired_and_makes_the_request_in_doubt() {
        // given a request whose window start cannot be read (a ledger
        // written by hand, or by a build that wrote times otherwise)
        for phase in [ObligationPhase::Requested, ObligationPhase::RetryScheduled] {
            let mut s = claimed_with_amount();
            s.payout.phase = phase;
            s.payout.attempts = 1;
            s.payout.window_started_at = Some("yesterday".into());
            // when deciding
            let a = next_action(&s, ObligationKind::InviteePayment, at("2026-11-01T00:00:00Z"), &caps());
            // then it is not re-sent blindly: the platform may have
            // forgotten the key, so an operator decides
            assert_eq!(a, Action::MarkInDoubt(InDoubtReason::WindowExpired), "{phase:?}");
        }
    }

    #[test]
    fn an_unreadable_retry_time_counts_as_due_now() {
        // given a retry whose time cannot be read, inside its window
        let mut s = claimed_with_amount();
        s.payout.phase = ObligationPhase::RetryScheduled;
        s.payout.attempts = 1;
        s.payout.window_started_at = Some("2026-11-01T00:00:00Z".into());
        s.payout.next_attempt_at = Some("soon".into());
        // when deciding, then it is sent again now
        let a = next_action(&s, ObligationKind::InviteePayment, at("2026-11-01T00:01:00Z"), &caps());
        assert_eq!(a, Action::Send { attempt: 2 });
    }

    #[test]
    fn settled_failed_and_in_doubt_obligations_are_left_alone() {
        for phase in [ObligationPhase::Succeeded, ObligationPhase::Failed, ObligationPhase::InDoubt] {
            let mut s = claimed_with_amount();
            s.payout.phase = phase;
            assert_eq!(
                next_action(&s, ObligationKind::InviteePayment, at("2026-11-01T00:00:00Z"), &caps()),
                Action::Nothing
            );
        }
    }

    #[test]
    fn an_in_flight_payment_no_longer_owed_goes_in_doubt_instead_of_being_resent() {
        for (change, retry_due) in [("cancelled", true), ("cancelled", false), ("zero amount", true)] {
            // given a payout retrying after a 5xx
            let mut s = claimed_with_amount();
            s.payout.phase = ObligationPhase::RetryScheduled;
            s.payout.attempts = 1;
            s.payout.request = Some(serde_json::json!({"amount": {"value": 500, "currency": "USD"}}));
            s.payout.window_started_at = Some("2026-11-01T00:00:00Z".into());
            s.payout.next_attempt_at =
                Some(if retry_due { "2026-11-01T00:00:01Z" } else { "2026-11-01T05:00:00Z" }.into());
            // when a newer snapshot cancels the invitation, or zeroes the amount
            match change {
                "cancelled" => s.status = Some(Versioned { value: InvitationStatus::Cancelled, at: 1, seq: 2 }),
                _ => {
                    s.payment_amount =
                        Some(Versioned { value: PaymentAmount::Valid(Money::new(0, "USD").unwrap()), at: 1, seq: 2 })
                }
            }
            // then it is not re-sent, nor waited for, but put in doubt
            assert_eq!(
                next_action(&s, ObligationKind::InviteePayment, at("2026-11-01T00:00:02Z"), &caps()),
                Action::MarkInDoubt(InDoubtReason::NoLongerDue),
                "{change}, retry due: {retry_due}"
            );
        }
    }

    #[test]
    fn an_in_flight_payment_whose_amount_became_unusable_is_still_resent() {
        let mut s = claimed_with_amount();
        s.payout.phase = ObligationPhase::RetryScheduled;
        s.payout.attempts = 1;
        s.payout.window_started_at = Some("2026-11-01T00:00:00Z".into());
        s.payout.next_attempt_at = Some("2026-11-01T00:00:01Z".into());
        s.payment_amount =
            Some(Versioned { value: PaymentAmount::Invalid { reason: "amount is fractional".into() }, at: 1, seq: 2 });
        assert_eq!(
            next_action(&s, ObligationKind::InviteePayment, at("2026-11-01T00:00:02Z"), &caps()),
            Action::Send { attempt: 2 }
        );
    }

    #[test]
    fn a_cancelled_invitation_is_never_paid() {
        let mut s = claimed_with_amount();
        s.status = Some(Versioned { value: InvitationStatus::Cancelled, at: 0, seq: 0 });
        for kind in ObligationKind::ALL {
            assert_eq!(next_action(&s, kind, at("2026-11-01T00:00:00Z"), &caps()), Action::Nothing);
        }
    }

    #[test]
    fn a_payment_failed_for_good_owes_the_inviter_a_failure_notice_through_the_notify_url() {
        // given a claim whose payment is pending, then refused for good
        let mut s = claimed_with_amount();
        let now = at("2026-11-01T00:00:00Z");
        let kind = ObligationKind::InviterFailureNotice;
        assert_eq!(next_action(&s, kind, now, &caps()), Action::Nothing, "nothing failed yet");
        s.payout.phase = ObligationPhase::Failed;
        s.payout.attempts = 1;
        s.payout.last_error = Some("HTTP 400: refused".into());
        // when deciding, then the inviter is told, once a notify URL is set
        assert_eq!(next_action(&s, kind, now, &caps()), Action::Send { attempt: 1 });
        let no_notify = Capabilities { notify_configured: false, ..caps() };
        assert_eq!(next_action(&s, kind, now, &no_notify), Action::NotConfigured);
        // and not when the invitee is unknown
        s.invitee_uma = None;
        assert_eq!(next_action(&s, kind, now, &caps()), Action::Nothing);
    }

    #[test]
    fn a_failure_notice_in_flight_goes_in_doubt_when_the_payment_turns_out_paid() {
        // given a failure notice retrying, and an operator who then records
        // the payment as paid after all
        let mut s = claimed_with_amount();
        s.payout.phase = ObligationPhase::Succeeded;
        s.failure_notice.phase = ObligationPhase::RetryScheduled;
        s.failure_notice.attempts = 1;
        s.failure_notice.window_started_at = Some("2026-11-01T00:00:00Z".into());
        // when deciding, then it is neither re-sent nor forgotten
        assert_eq!(
            next_action(&s, ObligationKind::InviterFailureNotice, at("2026-11-01T00:00:02Z"), &caps()),
            Action::MarkInDoubt(InDoubtReason::NoLongerDue)
        );
    }

    #[test]
    fn an_incentive_needs_both_the_platform_and_a_configured_amount() {
        let mut s = claimed_with_amount();
        s.incentives_status = Some(Versioned { value: crate::invitation::IncentivesStatus::Validated, at: 0, seq: 0 });
        let no_amount = Capabilities { incentive_configured: false, ..caps() };
        assert_eq!(
            next_action(&s, ObligationKind::InviterIncentive, at("2026-11-01T00:00:00Z"), &no_amount),
            Action::NotConfigured
        );
        assert_eq!(
            next_action(&s, ObligationKind::InviterIncentive, at("2026-11-01T00:00:00Z"), &caps()),
            Action::Send { attempt: 1 }
        );
    }
}
