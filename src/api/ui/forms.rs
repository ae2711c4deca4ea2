//! The invitation page's forms — resolve an obligation in doubt or failed,
//! refetch the invitation — and the page asking to confirm "paid". What
//! they post to, and how it is guarded, is [`super::actions`].

use maud::{html, Markup};
use warp::http::StatusCode;

use super::html;
use super::render::{badge, invitation_href, opt, page, uma};
use crate::money::Money;
use crate::operator;
use crate::projection::events::ObligationKind;
use crate::projection::view::{InvitationView, ObligationState, ObligationView};

/// What the invitation page's forms may do for this request.
pub(super) struct Actions {
    /// The session's CSRF token; `None` when not signed in (no token
    /// configured).
    pub csrf: Option<String>,
    pub token_configured: bool,
    /// A fetcher is wired to the page.
    pub refetch: bool,
    /// The version of the invitation shown, which its forms decide on.
    pub seen: operator::Seen,
}

fn hidden(name: &str, value: &str) -> Markup {
    html! { input type="hidden" name=(name) value=(value); }
}

pub(super) fn obligation_of(v: &InvitationView, kind: ObligationKind) -> &ObligationView {
    match kind {
        ObligationKind::InviteePayment => &v.payout,
        ObligationKind::InviterIncentive => &v.incentive,
        ObligationKind::InviterNotification => &v.notification,
        ObligationKind::InviterFailureNotice => &v.failure_notice,
    }
}

/// What the obligation asks for, in words: the amount and receiver of its
/// request, else the invitation's.
pub(super) fn what_is_owed(v: &InvitationView, kind: ObligationKind) -> (Option<Money>, Option<String>) {
    let o = obligation_of(v, kind);
    if let Some(r) = &o.requested {
        return (r.amount.clone(), r.receiver_uma.clone());
    }
    match kind {
        ObligationKind::InviteePayment => (v.payment_amount.clone(), v.invitee_uma.clone()),
        ObligationKind::InviterIncentive
        | ObligationKind::InviterNotification
        | ObligationKind::InviterFailureNotice => (None, v.inviter_uma.clone()),
    }
}

const NOTE_PLACEHOLDER: &str = "what you checked, a ticket";

/// The three decisions on one obligation in doubt or failed.
fn resolve_forms(
    v: &InvitationView,
    kind: ObligationKind,
    csrf: &Markup,
    enabled: bool,
    seen: operator::Seen,
) -> Markup {
    let o = obligation_of(v, kind);
    let (amount, receiver) = what_is_owed(v, kind);
    let key = o.idempotency_key.as_ref().map(|k| k.as_str()).unwrap_or("-");
    let action = format!("{}/resolve", invitation_href(&v.invitation_id));
    // The version the operator decides on: a change meanwhile refuses the
    // decision instead of recording it on facts they did not see.
    let fields = html! { (csrf) (hidden("kind", kind.as_str())) (hidden("seen", &seen.to_string())) };
    let note = html! {
        label { "Note " textarea name="note" rows="2" maxlength="1000" placeholder=(NOTE_PLACEHOLDER) {} }
    };
    html! {
        div.resolve id={ "resolve-" (kind.as_str()) } {
            p {
                b { (kind.as_str()) } " " (badge(o.state.as_str()))
                @if let Some(r) = &o.reason { " " span.hint { (r) } }
                @if amount.is_some() || receiver.is_some() {
                    " · "
                    @if let Some(m) = &amount { (m.display()) " " }
                    "to " (receiver.as_deref().map_or_else(|| opt(None), uma))
                }
                " · key " code { (key) } ". Check the payment platform for this key, then record what it says:"
            }
            fieldset.acts disabled[!enabled] {
                form.act.paid method="post" action=(action) {
                    (fields) (hidden("decision", "paid"))
                    label { "Payment id " input name="payment_id" required maxlength="200" autocomplete="off"; }
                    (note)
                    button type="submit" { "It was paid…" }
                }
                form.act.retry method="post" action=(action) {
                    (fields) (hidden("decision", "retry")) (note)
                    button type="submit" { "Not paid: send again" }
                }
                form.act.failed method="post" action=(action) {
                    (fields) (hidden("decision", "failed")) (note)
                    button.danger type="submit" { "Give up: failed" }
                }
            }
        }
    }
}

/// The invitation page's "Actions" section.
pub(super) fn actions(v: &InvitationView, a: &Actions) -> Markup {
    let enabled = a.token_configured && a.csrf.is_some();
    let csrf = html! { @if let Some(t) = &a.csrf { (hidden("csrf", t)) } };
    let resolvable: Vec<ObligationKind> = ObligationKind::ALL
        .into_iter()
        .filter(|k| matches!(obligation_of(v, *k).state, ObligationState::InDoubt | ObligationState::Failed))
        .collect();
    html! {
        section #actions {
            h2 { "Actions" }
            @if !a.token_configured {
                p.notice {
                    "Actions are off: set READ_API_TOKEN to enable actions. Without a token this page is served to \
                     anyone on this machine, so it only reads. The " code { "resolve" } " command works either way."
                }
            }
            h3 { "Resolve" }
            @for kind in &resolvable { (resolve_forms(v, *kind, &csrf, enabled, a.seen)) }
            @if resolvable.is_empty() {
                p.empty { "Nothing to resolve: only obligations in doubt or failed are resolved." }
            }
            h3 { "Refetch" }
            @if !a.refetch {
                p.hint {
                    "Refetch is unavailable here: no fetcher is connected to this page, so the invitation is fetched \
                     on its schedule only."
                }
            }
            form.act.refetch method="post" action={ (invitation_href(&v.invitation_id)) "/refetch" } {
                (csrf)
                fieldset.acts disabled[!(enabled && a.refetch)] {
                    label { "Note " input name="note" maxlength="1000" placeholder="why"; }
                    button type="submit" { "Fetch from the source now" }
                }
            }
        }
    }
}

/// The page asking to confirm "paid", whose form repeats the fields with
/// `confirm=yes`.
pub(super) fn confirm_page(v: &InvitationView, decided: &operator::Decided, csrf: &str) -> warp::reply::Response {
    let d = &decided.resolved;
    let (amount, receiver) = what_is_owed(v, d.obligation);
    let back = invitation_href(&v.invitation_id);
    let payment_id = d.payment_id.as_deref().unwrap_or_default();
    let body = html! {
        section #confirm {
            h2 { "Confirm: record as paid" }
            p.question {
                "Record " b { (d.obligation.as_str()) }
                @if let Some(m) = &amount { " of " b { (m.display()) } }
                @if let Some(r) = &receiver { " to " b { (uma(r)) } }
                " as " b { "paid" } " with payment id " b.mono { (payment_id) } "?"
            }
            p.hint {
                "Invitation " span.mono { (v.invitation_id) } " · idempotency key " code { (d.idempotency_key.as_str()) }
                ". The obligation becomes succeeded and is never sent again; the decision is appended to the ledger \
                 for good."
            }
            @if let Some(n) = &d.note { p { "Note: " span.note { (n) } } }
            form.act.confirm method="post" action={ (back) "/resolve" } {
                (hidden("csrf", csrf))
                (hidden("seen", &decided.seen.to_string()))
                (hidden("kind", d.obligation.as_str()))
                (hidden("decision", "paid"))
                (hidden("payment_id", payment_id))
                (hidden("note", d.note.as_deref().unwrap_or_default()))
                (hidden("confirm", "yes"))
                button type="submit" { "Yes, record as paid" } " "
                a.cancel href=(back) { "Cancel" }
            }
        }
    };
    html(StatusCode::OK, page("Confirm — invitation-ledger", html! {}, body))
}
