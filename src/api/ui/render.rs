//! What every page of the status page shares: the frame (header, inline
//! style sheet), escaping, links, badges and the invitation's facts. No
//! scripts anywhere; every dynamic string goes through [`escape`], and UMA
//! addresses through [`uma`], which marks the malformed ones.

use std::fmt::Write as _;

use warp::http::StatusCode;

use super::html;
use crate::invitation::{hides_text, is_uma_address};
use crate::money::Money;
use crate::projection::events::IdempotencyKey;
use crate::projection::view::{InvitationView, ObligationView};

/// The pages' style sheet, inlined (the CSP allows inline style, nothing else).
const STYLE: &str = include_str!("style.css");

/// HTML-escapes `s` for text and for quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` with every character that hides or reorders text
/// ([`hides_text`]) written as its code point, `[U+202E]`: for values
/// that may carry them (an address refused for them), so that the page
/// shows what the value is rather than what it pretends to be. The result
/// still needs [`escape`].
pub fn visible(s: &str) -> String {
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

/// A UMA address for people. A well-formed one is shown escaped; one that
/// is not ([`is_uma_address`]: nothing is sent to it) is shown with its
/// hiding characters made [`visible`] and a `malformed` badge.
pub(super) fn uma(u: &str) -> String {
    if is_uma_address(u) {
        escape(u)
    } else {
        format!("<span class=\"malformed\">{}</span> {}", escape(&visible(u)), badge("malformed"))
    }
}

/// [`uma`], linked to a search of the status page for it.
pub(super) fn uma_link(u: &str) -> String {
    if is_uma_address(u) {
        search_link(u, u)
    } else {
        format!("{} {}", search_link(u, &visible(u)), badge("malformed"))
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

/// A whole page: `header_facts` (already HTML) beside the name, `body` (HTML)
/// in `<main>`.
pub(super) fn page(title: &str, header_facts: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head>\
         <body><header><h1><a href=\"/\">invitation-ledger</a></h1>{header_facts}</header><main>{body}</main></body></html>\n",
        escape(title)
    )
}

/// The sign-in form; after signing in the browser goes to `next` (a path
/// of this site), else to `/`.
pub(super) fn login_page(status: StatusCode, message: &str, next: Option<&str>) -> warp::reply::Response {
    let next =
        next.map_or_else(String::new, |n| format!("<input type=\"hidden\" name=\"next\" value=\"{}\">", escape(n)));
    let body = format!(
        "<section><h2>Sign in</h2><p class=\"hint\">{}</p>\
         <form class=\"search\" method=\"post\" action=\"/login\">{next}\
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" placeholder=\"READ_API_TOKEN\" aria-label=\"Read API token\" required autofocus>\
         <button type=\"submit\">Sign in</button></form></section>",
        escape(message)
    );
    html(status, page("Sign in — invitation-ledger", "", &body))
}

/// A page that says why something was not done, with a way back.
pub(super) fn message_page(status: StatusCode, title: &str, message: &str, back: &str) -> warp::reply::Response {
    let body = format!(
        "<section id=\"message\"><h2>{}</h2><p>{}</p><p><a href=\"{}\">← Back</a></p></section>",
        escape(title),
        escape(message),
        escape(back)
    );
    html(status, page(&format!("{title} — invitation-ledger"), "", &body))
}

/// The page a read gets while the projections may be behind the ledger:
/// 503 with `Retry-After`, saying why.
pub(super) fn catching_up_page(why: &str) -> warp::reply::Response {
    let page = message_page(StatusCode::SERVICE_UNAVAILABLE, "Catching up", why, "/");
    warp::Reply::into_response(warp::reply::with_header(page, "retry-after", "1"))
}

/// The header's facts about the ledger and the projections.
pub(super) fn ledger_facts(head: u64, checkpoint: u64, extra: &str) -> String {
    format!(
        "<span class=\"facts\">ledger head <b>{head}</b> · projected <b>{checkpoint}</b> · lag <b>{}</b>{extra}</span>",
        head.saturating_sub(checkpoint)
    )
}

pub(super) fn opt(s: Option<&str>) -> String {
    s.map_or_else(|| "<span class=\"empty\">—</span>".to_owned(), escape)
}

/// A state badge; the class comes from the state text, escaped like the rest.
pub(super) fn badge(state: &str) -> String {
    let cls: String = state.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    format!("<span class=\"st st-{cls}\">{}</span>", escape(state))
}

pub(super) fn obligation_cell(o: &ObligationView) -> String {
    let mut s = badge(o.state.as_str());
    if let Some(r) = &o.reason {
        let _ = write!(s, " <span class=\"hint\">{}</span>", escape(r));
    }
    if o.attempts > 0 {
        let _ = write!(s, " <span class=\"hint\">×{}</span>", o.attempts);
    }
    s
}

/// `/invitations/{id}`, the invitation's own page.
pub(super) fn invitation_href(id: &str) -> String {
    format!("/invitations/{}", percent_encode(id))
}

pub(super) fn invitation_link(id: &str) -> String {
    format!("<a href=\"{}\">{}</a>", escape(&invitation_href(id)), escape(id))
}

/// A search of the status page for `q`.
pub(super) fn search_link(q: &str, text: &str) -> String {
    format!("<a href=\"/?q={}\">{}</a>", escape(&percent_encode(q)), escape(text))
}

/// An amount for people, with its currency's decimals when known.
pub(super) fn money(m: Option<&Money>) -> String {
    m.map_or_else(|| opt(None), |m| escape(&m.display()))
}

/// What an obligation asked of the platform: receiver and amount.
fn asked(o: &ObligationView) -> String {
    match &o.requested {
        None => opt(None),
        Some(r) => {
            let amount = r.amount.as_ref().map(|m| format!("{} to ", escape(&m.display()))).unwrap_or_default();
            format!("{amount}{}", r.receiver_uma.as_deref().map_or_else(|| opt(None), uma))
        }
    }
}

/// The invitation's facts, then one row per obligation.
pub(super) fn detail(v: &InvitationView) -> String {
    let mut d = String::from("<dl class=\"detail\">");
    let mut row = |k: &str, val: String| {
        let _ = write!(d, "<dt>{}</dt><dd>{val}</dd>", escape(k));
    };
    row("Invitation", format!("<span class=\"mono\">{}</span>", invitation_link(&v.invitation_id)));
    row("Code", opt(v.code.as_deref()));
    row("Source", escape(v.source.as_str()));
    row("URL", opt(v.url.as_deref()));
    row("Status", v.status.as_deref().map_or_else(|| opt(None), badge));
    row("Claimed at", opt(v.claimed_at.as_deref()));
    row("Inviter", v.inviter_uma.as_deref().map_or_else(|| opt(None), uma_link));
    row("Invitee", v.invitee_uma.as_deref().map_or_else(|| opt(None), uma_link));
    row("Amount", money(v.payment_amount.as_ref()));
    row(
        "Incentives",
        format!(
            "{} {}",
            v.incentives_status.as_deref().map_or_else(|| opt(None), badge),
            v.incentives_ineligibility_reason.as_deref().map(escape).unwrap_or_default()
        ),
    );
    let fetch =
        serde_json::to_value(v.fetch.state).ok().and_then(|s| s.as_str().map(str::to_owned)).unwrap_or_default();
    let still = if v.fetch.wanted { " <span class=\"hint\">fetched again while it can change</span>" } else { "" };
    row("Fetch from its source", format!("{}{still}", badge(&fetch)));
    row("Last seq", v.last_seq.to_string());
    d.push_str("</dl>");
    d.push_str(
        "<table class=\"obligations\"><thead><tr><th>Obligation</th><th>State</th><th>Attempts</th><th>Asked for</th>\
         <th>Idempotency key</th><th>Payment id</th><th>Last error</th><th>Next attempt</th><th>Updated</th></tr></thead><tbody>",
    );
    for (name, o) in [("payout", &v.payout), ("incentive", &v.incentive), ("notification", &v.notification)] {
        let _ = write!(
            d,
            "<tr><td>{name}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            obligation_cell(o),
            o.attempts,
            asked(o),
            opt(o.idempotency_key.as_ref().map(IdempotencyKey::as_str)),
            opt(o.payment_id.as_deref()),
            opt(o.last_error.as_deref()),
            opt(o.next_attempt_at.as_deref()),
            opt(o.updated_at.as_deref()),
        );
    }
    d.push_str("</tbody></table>");
    d
}
