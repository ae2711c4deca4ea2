//! What every page of the status page shares: the frame (header, inline
//! style sheet), the pages that only say something (sign in, a refusal,
//! catching up), links, badges and the invitation's facts.
//!
//! Every page is a [`maud`] template: a value spliced into one, `(value)`,
//! is HTML-escaped as it is written, text or attribute alike, so escaping
//! is by construction. The only markup written unescaped is constant
//! (the doctype and the style sheet); UMA addresses go through [`uma`],
//! which marks the malformed ones.

use std::fmt::Write as _;

use maud::{html, Markup, PreEscaped};
use warp::http::StatusCode;

use super::html;
use super::show::{opt_when, short, when, with_times};
use crate::invitation::{hides_text, is_uma_address};
use crate::money::Money;
use crate::projection::events::IdempotencyKey;
use crate::projection::view::{InvitationView, ObligationView};

/// The pages' style sheet, inlined (the CSP allows inline style, nothing else).
const STYLE: &str = include_str!("style.css");

/// `s` with every character that hides or reorders text
/// ([`hides_text`]) written as its code point, `[U+202E]`: for values
/// that may carry them (an address refused for them), so that the page
/// shows what the value is rather than what it pretends to be.
pub(super) fn visible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if hides_text(c) {
            let _ = write!(out, "[U+{:04X}]", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// A UMA address for people. A well-formed one is shown as it is; one that
/// is not ([`is_uma_address`]: nothing is sent to it) is shown with its
/// hiding characters made [`visible`] and a `malformed` badge.
pub(super) fn uma(u: &str) -> Markup {
    html! {
        @if is_uma_address(u) {
            (u)
        } @else {
            span.malformed { (visible(u)) } " " (badge("malformed"))
        }
    }
}

/// [`uma`], linked to a search of the status page for it.
pub(super) fn uma_link(u: &str) -> Markup {
    html! {
        @if is_uma_address(u) {
            (search_link(u, u))
        } @else {
            (search_link(u, &visible(u))) " " (badge("malformed"))
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters: for path
/// segments and query strings in links, and for the cookie value.
pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A whole page: `header_facts` beside the name, `body` in `<main>`.
pub(super) fn page(title: &str, header_facts: Markup, body: Markup) -> String {
    html! {
        // Constants, not data: the doctype in the spelling the tests and
        // browsers know, and the style sheet, which must not be escaped
        // (`>` is a CSS combinator, and a <style> element's text is not
        // decoded).
        (PreEscaped("<!doctype html>\n"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { h1 { a href="/" { "invitation-ledger" } } (header_facts) }
                main { (body) }
            }
        }
    }
    .into_string()
}

/// The sign-in form; after signing in the browser goes to `next` (a path
/// of this site), else to `/`.
pub(super) fn login_page(status: StatusCode, message: &str, next: Option<&str>) -> warp::reply::Response {
    let body = html! {
        section {
            h2 { "Sign in" }
            p.hint { (message) }
            form.search method="post" action="/login" {
                @if let Some(next) = next {
                    input type="hidden" name="next" value=(next);
                }
                input type="password" name="token" autocomplete="current-password" placeholder="READ_API_TOKEN"
                    aria-label="Read API token" required autofocus;
                button type="submit" { "Sign in" }
            }
        }
    };
    html(status, page("Sign in — invitation-ledger", html! {}, body))
}

/// A page that says why something was not done, with a way back.
pub(super) fn message_page(status: StatusCode, title: &str, message: &str, back: &str) -> warp::reply::Response {
    let body = html! {
        section #message {
            h2 { (title) }
            p { (message) }
            p { a href=(back) { "← Back" } }
        }
    };
    html(status, page(&format!("{title} — invitation-ledger"), html! {}, body))
}

/// The page a read gets while the projections may be behind the ledger:
/// 503 with `Retry-After`, saying why.
pub(super) fn catching_up_page(why: &str) -> warp::reply::Response {
    let page = message_page(StatusCode::SERVICE_UNAVAILABLE, "Catching up", why, "/");
    let secs = crate::api::error::RETRY_AFTER_CATCHING_UP_SECS.to_string();
    warp::Reply::into_response(warp::reply::with_header(page, "retry-after", secs))
}

/// The header's facts about the ledger and the projections, then `extra`.
pub(super) fn ledger_facts(head: u64, checkpoint: u64, extra: Markup) -> Markup {
    html! {
        span.facts {
            "ledger head " b { (head) }
            " · projected " b { (checkpoint) }
            " · lag " b { (head.saturating_sub(checkpoint)) }
            (extra)
        }
    }
}

/// The text, or a dash when there is none.
pub(super) fn opt(s: Option<&str>) -> Markup {
    html! {
        @match s {
            Some(s) => (s),
            None => span.empty { "—" },
        }
    }
}

/// A state badge; its class keeps only the state's letters, digits and `_`.
pub(super) fn badge(state: &str) -> Markup {
    let cls: String = state.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    html! { span class={ "st st-" (cls) } { (state) } }
}

/// An obligation's state, its reason and its attempts.
pub(super) fn obligation_cell(o: &ObligationView) -> Markup {
    html! {
        (badge(o.state.as_str()))
        @if let Some(r) = &o.reason { " " span.hint { (r) } }
        @if o.attempts > 0 { " " span.hint { "×" (o.attempts) } }
    }
}

/// `/invitations/{id}`, the invitation's own page.
pub(super) fn invitation_href(id: &str) -> String {
    format!("/invitations/{}", percent_encode(id))
}

pub(super) fn invitation_link(id: &str) -> Markup {
    html! { a href=(invitation_href(id)) { (id) } }
}

/// An invitation's id linked to its page, as tables show it: cut short,
/// whole on hover and when copied.
pub(super) fn id_link(id: &str) -> Markup {
    html! { a.short href=(invitation_href(id)) title=(id) { (id) } }
}

/// A UMA address as tables show it: [`uma_link`], cut short, whole on
/// hover. A malformed one is shown whole, with its badge.
pub(super) fn uma_cell(u: &str) -> Markup {
    if is_uma_address(u) {
        short(u, uma_link(u))
    } else {
        uma_link(u)
    }
}

/// An idempotency key (or a dash), cut short, whole on hover and when
/// copied: what an operator looks up on the payment platform.
pub(super) fn key(k: Option<&IdempotencyKey>) -> Markup {
    k.map_or_else(|| opt(None), |k| short(k.as_str(), html! { (k.as_str()) }))
}

/// A search of the status page for `q`.
pub(super) fn search_link(q: &str, text: &str) -> Markup {
    html! { a href={ "/?q=" (percent_encode(q)) } { (text) } }
}

/// An amount for people, with its currency's decimals when known.
pub(super) fn money(m: Option<&Money>) -> Markup {
    html! {
        @match m {
            Some(m) => (m.display()),
            None => (opt(None)),
        }
    }
}

/// A UMA address, or a dash.
pub(super) fn opt_uma(u: Option<&str>) -> Markup {
    u.map_or_else(|| opt(None), uma)
}

/// What an obligation asked of the platform, amount and receiver, cut
/// short on one line (whole on hover).
fn asked(o: &ObligationView) -> Markup {
    let Some(r) = &o.requested else { return opt(None) };
    let amount = r.amount.as_ref().map(Money::display);
    let whole = match (&amount, &r.receiver_uma) {
        (Some(a), Some(u)) => format!("{a} to {}", visible(u)),
        (Some(a), None) => format!("{a} to -"),
        (None, u) => u.as_deref().map_or_else(|| "-".to_owned(), visible),
    };
    html! {
        span.short.wide title=(whole) {
            @if let Some(a) = &amount { (a) " to " }
            (opt_uma(r.receiver_uma.as_deref()))
        }
    }
}

/// The invitation's facts, then one row per obligation.
pub(super) fn detail(v: &InvitationView) -> Markup {
    let fetch =
        serde_json::to_value(v.fetch.state).ok().and_then(|s| s.as_str().map(str::to_owned)).unwrap_or_default();
    let obligations = [
        ("payout", &v.payout),
        ("incentive", &v.incentive),
        ("notification", &v.notification),
        ("failure notice", &v.failure_notice),
    ];
    html! {
        dl.detail {
            dt { "Invitation" } dd { span.mono { (invitation_link(&v.invitation_id)) } }
            dt { "Code" } dd { (opt(v.code.as_deref())) }
            dt { "Source" } dd { (v.source.as_str()) }
            dt { "URL" } dd { (opt(v.url.as_deref())) }
            dt { "Status" } dd { (v.status.as_deref().map_or_else(|| opt(None), badge)) }
            dt { "Claimed at" } dd { (opt_when(v.claimed_at.as_deref())) }
            dt { "Inviter" } dd { (v.inviter_uma.as_deref().map_or_else(|| opt(None), uma_link)) }
            dt { "Invitee" } dd { (v.invitee_uma.as_deref().map_or_else(|| opt(None), uma_link)) }
            dt { "Amount" } dd { (money(v.payment_amount.as_ref())) }
            dt { "Incentives" } dd {
                (v.incentives_status.as_deref().map_or_else(|| opt(None), badge))
                " " (v.incentives_ineligibility_reason.as_deref().unwrap_or_default())
            }
            dt { "Fetch from its source" } dd {
                (badge(&fetch))
                @if v.fetch.wanted { " " span.hint { "fetched again while it can change" } }
            }
            dt { "Last seq" } dd { (v.last_seq) }
        }
        div.scroll { table.obligations {
            thead { tr {
                th { "Obligation" } th { "State" } th { "Attempts" } th { "Asked for" } th { "Idempotency key" }
                th { "Payment id" } th { "Last error" } th { "Updated" }
            } }
            tbody {
                @for (name, o) in obligations {
                    tr {
                        td { (name) }
                        td.nowrap { (obligation_cell(o)) }
                        td.num { (o.attempts) }
                        td.asked { (asked(o)) }
                        td.mono { (key(o.idempotency_key.as_ref())) }
                        td.mono { (o.payment_id.as_deref().map_or_else(|| opt(None), |p| short(p, html! { (p) }))) }
                        td { (o.last_error.as_deref().map_or_else(|| opt(None), with_times)) }
                        td.when {
                            (opt_when(o.updated_at.as_deref()))
                            @if let Some(next) = &o.next_attempt_at { br; "next " (when(next)) }
                        }
                    }
                }
            }
        } }
    }
}
