//! The home page (`GET /`): search, what needs an operator, recent
//! invitations, activity charts, obligations by state, the incentive audit.

use std::fmt::Write as _;

use super::charts;
use super::render::{
    badge, detail, escape, invitation_href, invitation_link, ledger_facts, money, obligation_cell, opt, page, uma_link,
    visible,
};
use super::{AUDIT_INVITERS_CAP, SEARCH_CAP};
use crate::projection::audit::{IncentiveAudit, Totals};
use crate::projection::events::{IdempotencyKey, ObligationKind};
use crate::projection::query::{Search, StatusPage};
use crate::projection::trail::Hour;
use crate::projection::view::{self, InvitationView};

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
            invitation_link(&v.invitation_id),
            opt(v.code.as_deref()),
            v.status.as_deref().map_or_else(|| opt(None), badge),
            v.inviter_uma.as_deref().map_or_else(|| opt(None), uma_link),
            v.invitee_uma.as_deref().map_or_else(|| opt(None), uma_link),
            money(v.payment_amount.as_ref()),
            obligation_cell(&v.payout),
            obligation_cell(&v.incentive),
            obligation_cell(&v.notification),
            v.last_seq,
        );
    }
    t.push_str("</tbody></table>");
    t
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
                invitation_link(&v.invitation_id),
                opt(v.code.as_deref()),
                escape(kind.as_str()),
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

/// What was forwarded, per currency, in each currency's decimals.
fn forwarded(t: &Totals) -> String {
    if t.forwarded.is_empty() {
        return opt(None);
    }
    escape(&t.forwarded_shown().join(", "))
}

fn audit_section(a: &IncentiveAudit) -> String {
    let mut s = format!(
        "<section id=\"audit\"><h2>Incentive audit</h2><ul class=\"counts\"><li>inviters <b>{}</b></li><li>validated <b>{}</b></li>\
         <li>ineligible <b>{}</b></li><li>pending <b>{}</b></li><li>forwarded <b>{}</b></li><li>anomalies <b>{}</b></li></ul>",
        a.totals.inviters.unwrap_or(a.inviters.len() as u64),
        a.totals.validated,
        a.totals.ineligible,
        a.totals.pending,
        forwarded(&a.totals),
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
                invitation_link(&an.invitation_id),
                escape(&visible(&an.detail))
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
                uma_link(&inv.inviter_uma),
                inv.invitations.len(),
                inv.totals.validated,
                inv.totals.ineligible,
                inv.totals.pending,
                forwarded(&inv.totals),
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

/// The home page's data: the status page's, and the ledger's last hours.
pub(super) struct Home<'a> {
    pub data: &'a StatusPage,
    pub hours: &'a [Hour],
    pub q: Option<&'a str>,
}

fn activity_section(hours: &[Hour]) -> String {
    let starts: Vec<_> = hours.iter().map(|h| h.start).collect();
    let webhooks = charts::hourly(
        &charts::Hourly {
            id: "chart-webhooks",
            title: "Webhooks received per hour, last 48 hours (UTC)",
            unit: "webhooks",
            hours: &starts,
            series: &[charts::Series {
                name: "webhooks",
                class: "c-webhooks",
                values: hours.iter().map(|h| h.webhooks).collect(),
            }],
        },
        "No webhook received in the last 48 hours.",
    );
    let payments = charts::hourly(
        &charts::Hourly {
            id: "chart-payments",
            title: "Payments made per hour, last 48 hours (UTC)",
            unit: "payments",
            hours: &starts,
            series: &[
                charts::Series {
                    name: "invitee payments",
                    class: "c-payouts",
                    values: hours.iter().map(|h| h.payouts).collect(),
                },
                charts::Series {
                    name: "inviter incentives",
                    class: "c-incentives",
                    values: hours.iter().map(|h| h.incentives).collect(),
                },
            ],
        },
        "No payment made in the last 48 hours.",
    );
    format!("<section id=\"activity\"><h2>Activity</h2><div class=\"charts\">{webhooks}{payments}</div></section>")
}

fn obligations_section(counts: &[(&'static str, String, i64)]) -> String {
    let mut b = String::from("<section id=\"obligations\"><h2>Obligations by state</h2>");
    b.push_str(&charts::obligations(counts));
    b.push_str("<table><tbody>");
    for kind in ObligationKind::ALL.map(ObligationKind::as_str) {
        let items: Vec<String> =
            counts.iter().filter(|c| c.0 == kind).map(|c| format!("<li>{} <b>{}</b></li>", badge(&c.1), c.2)).collect();
        let _ = write!(
            b,
            "<tr><th>{kind}</th><td><ul class=\"counts\">{}</ul></td></tr>",
            if items.is_empty() { "<li class=\"empty\">none</li>".to_owned() } else { items.concat() }
        );
    }
    b.push_str("</tbody></table></section>");
    b
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
                escape(source.fetch_settings()),
            );
        }
    }
    out
}

pub(super) fn render(home: &Home<'_>) -> String {
    let (d, q) = (home.data, home.q);
    let in_doubt: i64 = d.counts.iter().filter(|c| c.1 == "in_doubt").map(|c| c.2).sum();
    let failed: i64 = d.counts.iter().filter(|c| c.1 == "failed").map(|c| c.2).sum();
    let facts = ledger_facts(d.head, d.checkpoint, &format!(" · in doubt <b>{in_doubt}</b> · failed <b>{failed}</b>"));
    let mut b = unfetchable_banner(d);

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
            Search::Exact(v) => {
                b.push_str(&detail(v));
                let _ = write!(
                    b,
                    "<p><a class=\"more\" href=\"{}\">Money trail, signatures and actions →</a></p>",
                    escape(&invitation_href(&v.invitation_id))
                );
            }
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
        b.push_str("<p class=\"hint\">Check the payment platform for the idempotency key, then resolve it on the invitation's page \
                    or with <code>resolve &lt;invitation&gt; &lt;kind&gt; --paid ID | --retry | --failed</code>.</p>");
    }
    b.push_str("<h3>Failed</h3>");
    b.push_str(&attention_table(&d.attention, view::ObligationState::Failed));
    b.push_str("</section>");

    b.push_str(&activity_section(home.hours));

    let _ = write!(b, "<section id=\"recent\"><h2>Recent invitations</h2>");
    if d.recent.is_empty() {
        b.push_str("<p class=\"empty\">No invitation yet.</p>");
    } else {
        b.push_str(&invitation_table(&d.recent));
    }
    b.push_str("</section>");

    b.push_str(&obligations_section(&d.counts));
    b.push_str(&audit_section(&d.audit));
    let _ = write!(
        b,
        "<footer>Rendered {} · each invitation's page has its money trail and actions · JSON: <a href=\"/v1/invitations\">/v1/invitations</a>, \
         <a href=\"/v1/audit/incentives\">/v1/audit/incentives</a>, <a href=\"/v1/openapi.json\">/v1/openapi.json</a></footer>",
        escape(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );
    page(&q.map_or_else(|| "Status — invitation-ledger".to_owned(), |q| format!("{q} — invitation-ledger")), &facts, &b)
}
