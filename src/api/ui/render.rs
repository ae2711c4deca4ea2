//! The status page's HTML: server-rendered, inline CSS from `style.css`,
//! no scripts. Every dynamic string goes through [`escape`].

use std::fmt::Write as _;

use warp::http::StatusCode;

use super::{html, AUDIT_INVITERS_CAP, SEARCH_CAP};
use crate::projection::audit::IncentiveAudit;
use crate::projection::events::{IdempotencyKey, ObligationKind};
use crate::projection::query::{Search, StatusPage};
use crate::projection::view::{self, InvitationView, ObligationView};

/// The page's style sheet, inlined (the CSP allows inline style, nothing else).
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

/// Percent-encodes everything but RFC 3986 unreserved characters: for query
/// strings in links and for the cookie value.
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

fn page(title: &str, header_facts: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head>\
         <body><header><h1>invitation-ledger</h1>{header_facts}</header><main>{body}</main></body></html>\n",
        escape(title)
    )
}

pub(super) fn login_page(status: StatusCode, message: &str) -> warp::reply::Response {
    let body = format!(
        "<section><h2>Sign in</h2><p class=\"hint\">{}</p>\
         <form class=\"search\" method=\"post\" action=\"/login\">\
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" placeholder=\"READ_API_TOKEN\" aria-label=\"Read API token\" required autofocus>\
         <button type=\"submit\">Sign in</button></form></section>",
        escape(message)
    );
    html(status, page("Sign in — invitation-ledger", "", &body))
}

fn opt(s: Option<&str>) -> String {
    s.map_or_else(|| "<span class=\"empty\">—</span>".to_owned(), escape)
}

/// A state badge; the class comes from the state text, escaped like the rest.
pub(super) fn badge(state: &str) -> String {
    let cls: String = state.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    format!("<span class=\"st st-{cls}\">{}</span>", escape(state))
}

fn obligation_cell(o: &ObligationView) -> String {
    let mut s = badge(o.state.as_str());
    if let Some(r) = &o.reason {
        let _ = write!(s, " <span class=\"hint\">{}</span>", escape(r));
    }
    if o.attempts > 0 {
        let _ = write!(s, " <span class=\"hint\">×{}</span>", o.attempts);
    }
    s
}

fn link_to(q: &str, text: &str) -> String {
    format!("<a href=\"/?q={}\">{}</a>", escape(&percent_encode(q)), escape(text))
}

fn amount(v: &InvitationView) -> String {
    v.payment_amount.as_ref().map_or_else(|| opt(None), |m| escape(&format!("{} {}", m.value(), m.currency())))
}

fn invitation_table(items: &[InvitationView]) -> String {
    let mut t = String::from(
        "<table><thead><tr><th>Invitation</th><th>Code</th><th>Status</th><th>Inviter</th><th>Invitee</th>\
         <th>Amount</th><th>Payout</th><th>Incentive</th><th>Notification</th><th>Last seq</th></tr></thead><tbody>",
    );
    for v in items {
        let _ = write!(
            t,
            "<tr><td class=\"id\">{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            link_to(&v.invitation_id, &v.invitation_id),
            opt(v.code.as_deref()),
            v.status.as_deref().map_or_else(|| opt(None), badge),
            v.inviter_uma.as_deref().map_or_else(|| opt(None), |u| link_to(u, u)),
            v.invitee_uma.as_deref().map_or_else(|| opt(None), |u| link_to(u, u)),
            amount(v),
            obligation_cell(&v.payout),
            obligation_cell(&v.incentive),
            obligation_cell(&v.notification),
            v.last_seq,
        );
    }
    t.push_str("</tbody></table>");
    t
}

fn detail(v: &InvitationView) -> String {
    let mut d = String::from("<dl class=\"detail\">");
    let mut row = |k: &str, val: String| {
        let _ = write!(d, "<dt>{}</dt><dd>{val}</dd>", escape(k));
    };
    row("Invitation", format!("<span class=\"mono\">{}</span>", escape(&v.invitation_id)));
    row("Code", opt(v.code.as_deref()));
    row("URL", opt(v.url.as_deref()));
    row("Status", v.status.as_deref().map_or_else(|| opt(None), badge));
    row("Claimed at", opt(v.claimed_at.as_deref()));
    row("Inviter", opt(v.inviter_uma.as_deref()));
    row("Invitee", opt(v.invitee_uma.as_deref()));
    row("Amount", amount(v));
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
        "<table><thead><tr><th>Obligation</th><th>State</th><th>Attempts</th><th>Idempotency key</th><th>Payment id</th>\
         <th>Last error</th><th>Next attempt</th><th>Updated</th></tr></thead><tbody>",
    );
    for (name, o) in [("payout", &v.payout), ("incentive", &v.incentive), ("notification", &v.notification)] {
        let _ = write!(
            d,
            "<tr><td>{name}</td><td>{}</td><td class=\"num\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            obligation_cell(o),
            o.attempts,
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

fn attention_table(items: &[InvitationView], wanted: view::ObligationState) -> String {
    let mut rows = String::new();
    for v in items {
        for (kind, o) in [
            (ObligationKind::InviteePayment, &v.payout),
            (ObligationKind::InviterIncentive, &v.incentive),
            (ObligationKind::InviterNotification, &v.notification),
        ] {
            if o.state != wanted {
                continue;
            }
            let _ = write!(
                rows,
                "<tr><td class=\"id\">{}</td><td class=\"mono\">{}</td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"mono\">{}</td><td>{}</td><td>{}</td></tr>",
                link_to(&v.invitation_id, &v.invitation_id),
                opt(v.code.as_deref()),
                escape(kind_name(kind)),
                o.attempts,
                opt(o.idempotency_key.as_ref().map(IdempotencyKey::as_str)),
                opt(o.last_error.as_deref()),
                opt(o.updated_at.as_deref()),
            );
        }
    }
    if rows.is_empty() {
        return "<p class=\"empty\">None.</p>".to_owned();
    }
    format!(
        "<table><thead><tr><th>Invitation</th><th>Code</th><th>Obligation</th><th>Attempts</th><th>Idempotency key</th>\
         <th>Last error</th><th>Updated</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

fn kind_name(k: ObligationKind) -> &'static str {
    match k {
        ObligationKind::InviteePayment => "invitee_payment",
        ObligationKind::InviterIncentive => "inviter_incentive",
        ObligationKind::InviterNotification => "inviter_notification",
    }
}

fn forwarded(m: &std::collections::BTreeMap<String, i64>) -> String {
    if m.is_empty() {
        return opt(None);
    }
    escape(&m.iter().map(|(c, v)| format!("{v} {c}")).collect::<Vec<_>>().join(", "))
}

fn audit_section(a: &IncentiveAudit) -> String {
    let mut s = format!(
        "<section id=\"audit\"><h2>Incentive audit</h2><ul class=\"counts\"><li>inviters <b>{}</b></li><li>validated <b>{}</b></li>\
         <li>ineligible <b>{}</b></li><li>pending <b>{}</b></li><li>forwarded <b>{}</b></li><li>anomalies <b>{}</b></li></ul>",
        a.totals.inviters.unwrap_or(a.inviters.len() as u64),
        a.totals.validated,
        a.totals.ineligible,
        a.totals.pending,
        forwarded(&a.totals.forwarded),
        a.anomalies.len(),
    );
    s.push_str("<h3>Anomalies</h3>");
    if a.anomalies.is_empty() {
        s.push_str("<p class=\"empty\">None.</p>");
    } else {
        s.push_str("<table><thead><tr><th>Kind</th><th>Invitation</th><th>Detail</th></tr></thead><tbody>");
        for an in &a.anomalies {
            let _ = write!(
                s,
                "<tr><td class=\"anomaly\">{}</td><td class=\"id\">{}</td><td>{}</td></tr>",
                escape(an.kind),
                link_to(&an.invitation_id, &an.invitation_id),
                escape(&an.detail)
            );
        }
        s.push_str("</tbody></table>");
    }
    s.push_str("<h3>Per inviter</h3>");
    if a.inviters.is_empty() {
        s.push_str("<p class=\"empty\">No inviter yet.</p>");
    } else {
        s.push_str(
            "<table><thead><tr><th>Inviter</th><th>Invitations</th><th>Validated</th><th>Ineligible</th><th>Pending</th>\
             <th>Forwarded</th></tr></thead><tbody>",
        );
        for inv in a.inviters.iter().take(AUDIT_INVITERS_CAP) {
            let _ = write!(
                s,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                link_to(&inv.inviter_uma, &inv.inviter_uma),
                inv.invitations.len(),
                inv.totals.validated,
                inv.totals.ineligible,
                inv.totals.pending,
                forwarded(&inv.totals.forwarded),
            );
        }
        s.push_str("</tbody></table>");
        if a.inviters.len() > AUDIT_INVITERS_CAP {
            let _ = write!(
                s,
                "<p class=\"hint\">{} more inviters: see <code>GET /v1/audit/incentives</code> or <code>audit incentives</code>.</p>",
                a.inviters.len() - AUDIT_INVITERS_CAP
            );
        }
    }
    s.push_str("</section>");
    s
}

/// A banner for every source whose invitations wait for their data while
/// it cannot be fetched from: nothing is paid for them, and the page says
/// so first, naming the settings to set.
fn unfetchable_banner(d: &StatusPage) -> String {
    let mut out = String::new();
    for (source, waiting, configured) in &d.awaiting_data {
        if *waiting > 0 && !configured {
            let _ = write!(
                out,
                "<section class=\"banner\" id=\"not-configured\" role=\"alert\"><b>Fetching from {} is not configured.</b> \
                 {} invitation{} arrived without {} data and cannot be paid until it is fetched: set <code>{}</code>.</section>",
                escape(source.as_str()),
                waiting,
                if *waiting == 1 { "" } else { "s" },
                if *waiting == 1 { "its" } else { "their" },
                escape(crate::config::ReconcileConfig::fetch_settings(*source)),
            );
        }
    }
    out
}

pub(super) fn render(d: &StatusPage, q: Option<&str>) -> String {
    let lag = d.head.saturating_sub(d.checkpoint);
    let in_doubt: i64 = d.counts.iter().filter(|c| c.1 == "in_doubt").map(|c| c.2).sum();
    let failed: i64 = d.counts.iter().filter(|c| c.1 == "failed").map(|c| c.2).sum();
    let facts = format!(
        "<span class=\"facts\">ledger head <b>{}</b> · projected <b>{}</b> · lag <b>{lag}</b> · in doubt <b>{in_doubt}</b> · failed <b>{failed}</b></span>",
        d.head, d.checkpoint
    );
    let mut b = String::new();
    b.push_str(&unfetchable_banner(d));

    let _ = write!(
        b,
        "<section><form class=\"search\" method=\"get\" action=\"/\" role=\"search\">\
         <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"Invitation id or code, inviter or invitee UMA\" aria-label=\"Search\" autofocus>\
         <button type=\"submit\">Search</button></form></section>",
        escape(q.unwrap_or(""))
    );

    if let (Some(q), Some(found)) = (q, &d.search) {
        let _ = write!(b, "<section id=\"search-results\"><h2>Search: {}</h2>", escape(q));
        match found {
            Search::Exact(v) => b.push_str(&detail(v)),
            Search::Matches { items, .. } if items.is_empty() => {
                b.push_str("<p class=\"empty\">No invitation has this id or code, and no invitation has this inviter or invitee UMA.</p>");
            }
            Search::Matches { items, truncated } => {
                b.push_str(&invitation_table(items));
                if *truncated {
                    let _ = write!(b, "<p class=\"hint\">Only the first {SEARCH_CAP} are shown; the read API pages through all of them.</p>");
                }
            }
        }
        b.push_str("</section>");
    }

    b.push_str("<section id=\"attention\"><h2>Needs an operator</h2><h3>In doubt</h3>");
    let in_doubt_rows = attention_table(&d.attention, view::ObligationState::InDoubt);
    let any_in_doubt = in_doubt_rows.starts_with("<table");
    b.push_str(&in_doubt_rows);
    if any_in_doubt {
        b.push_str("<p class=\"hint\">Check the payment platform for the idempotency key, then <code>resolve &lt;invitation&gt; &lt;kind&gt; --paid ID | --retry | --failed</code>.</p>");
    }
    b.push_str("<h3>Failed</h3>");
    b.push_str(&attention_table(&d.attention, view::ObligationState::Failed));
    b.push_str("</section>");

    let _ = write!(b, "<section id=\"recent\"><h2>Recent invitations</h2>");
    if d.recent.is_empty() {
        b.push_str("<p class=\"empty\">No invitation yet.</p>");
    } else {
        b.push_str(&invitation_table(&d.recent));
    }
    b.push_str("</section>");

    b.push_str("<section id=\"obligations\"><h2>Obligations by state</h2><table><tbody>");
    for kind in ["invitee_payment", "inviter_incentive", "inviter_notification"] {
        let items: Vec<String> = d
            .counts
            .iter()
            .filter(|c| c.0 == kind)
            .map(|c| format!("<li>{} <b>{}</b></li>", badge(&c.1), c.2))
            .collect();
        let _ = write!(
            b,
            "<tr><th>{kind}</th><td><ul class=\"counts\">{}</ul></td></tr>",
            if items.is_empty() { "<li class=\"empty\">none</li>".to_owned() } else { items.concat() }
        );
    }
    b.push_str("</tbody></table></section>");

    b.push_str(&audit_section(&d.audit));
    let _ = write!(
        b,
        "<footer>Rendered {} · read-only · JSON: <a href=\"/v1/invitations\">/v1/invitations</a>, \
         <a href=\"/v1/audit/incentives\">/v1/audit/incentives</a>, <a href=\"/v1/openapi.json\">/v1/openapi.json</a></footer>",
        escape(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );
    page(&q.map_or_else(|| "Status — invitation-ledger".to_owned(), |q| format!("{q} — invitation-ledger")), &facts, &b)
}
