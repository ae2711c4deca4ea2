//! `GET /`: a read-only status page for operators, and `POST /login`.
//!
//! Server-rendered HTML with inline CSS: no scripts, no external assets, no
//! build step. It shows a search box (invitation id or code, inviter or
//! invitee UMA), the most recent invitations with their obligation states,
//! the obligations that need an operator (in doubt, failed) and the
//! incentive audit per inviter. Every dynamic string goes through
//! [`escape`]; the Content-Security-Policy forbids scripts anyway.
//!
//! Protection is the read API's: when `READ_API_TOKEN` is set the page wants
//! `Authorization: Bearer <token>` or the `il_token` cookie that `POST /login`
//! sets, compared in constant time; otherwise it answers 401 with a login
//! form.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Buf;
use rusqlite::{params, Connection};
use warp::http::{header, StatusCode};
use warp::{Filter, Rejection, Reply};

use super::body::{self, BodyError, BODY_READ_TIMEOUT};
use super::error::{reject, ApiError};
use super::read::{percent_decode, ReadToken};
use super::AppState;
use crate::projection::audit::IncentiveAudit;
use crate::projection::events::{IdempotencyKey, ObligationKind};
use crate::projection::state::InvitationState;
use crate::projection::store::{self, ListFilter};
use crate::projection::view::{self, InvitationView, ObligationView};
use crate::secret::Secret;

/// The cookie `POST /login` sets.
pub const COOKIE: &str = "il_token";
/// Rows in "recent invitations".
const RECENT: usize = 50;
/// Most invitations a search lists.
const SEARCH_CAP: usize = 100;
/// Most rows in the in-doubt / failed lists.
const ATTENTION_CAP: usize = 200;
/// Most inviters shown in the audit table.
const AUDIT_INVITERS_CAP: usize = 200;
/// Largest login form accepted.
const LOGIN_BODY_LIMIT: usize = 4096;

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
fn percent_encode(s: &str) -> String {
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

/// The token check shared by the page and the login form.
#[derive(Clone)]
struct Gate {
    token: ReadToken,
}

impl Gate {
    fn new(token: Option<&Secret>) -> Self {
        Self { token: ReadToken::new(token) }
    }

    /// Whether `presented` is the token (see [`ReadToken::matches`]).
    fn matches(&self, presented: &str) -> bool {
        self.token.matches(presented.as_bytes())
    }

    fn admits(&self, authorization: Option<&str>, cookie: Option<&str>) -> bool {
        if self.token.is_open() {
            return true;
        }
        let bearer = authorization.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim).unwrap_or("");
        let from_cookie =
            cookie_value(cookie.unwrap_or(""), COOKIE).map(|v| percent_decode(v, false)).unwrap_or_default();
        // Both are checked, without short-circuit.
        self.matches(bearer) | self.matches(&from_cookie)
    }
}

/// The value of cookie `name` in a `Cookie` header.
fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .map(str::trim)
        .find_map(|kv| kv.split_once('=').filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim()))
}

fn html(status: StatusCode, body: String) -> warp::reply::Response {
    let mut r = warp::reply::with_status(body, status).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    r
}

const STYLE: &str = r#"
:root { --fg:#1d2330; --muted:#5d6675; --line:#dfe3ea; --bg:#f6f7f9; --card:#fff; --accent:#2f5bd3; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; color:var(--fg); background:var(--bg); }
header { background:#1d2330; color:#fff; padding:14px 24px; display:flex; flex-wrap:wrap; gap:8px 28px; align-items:baseline; }
header h1 { font-size:18px; margin:0; font-weight:600; }
header .facts { color:#c5cbd6; font-size:13px; }
header .facts b { color:#fff; font-weight:600; }
main { padding:18px 24px 40px; max-width:1500px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 18px; margin:0 0 18px; }
h2 { font-size:15px; margin:0 0 10px; }
h3 { font-size:13px; margin:14px 0 6px; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; }
form.search { display:flex; gap:8px; }
form.search input { flex:1; max-width:640px; padding:8px 10px; font:inherit; border:1px solid #b9c0cc; border-radius:6px; }
button { padding:8px 14px; font:inherit; border:0; border-radius:6px; background:var(--accent); color:#fff; cursor:pointer; }
.hint, .empty { color:var(--muted); }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; white-space:nowrap; }
tbody tr:nth-child(even) { background:#fafbfc; }
td.id, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12px; word-break:break-all; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
.st { display:inline-block; padding:1px 7px; border-radius:10px; font-size:12px; background:#eceff3; color:#3b4454; white-space:nowrap; }
.st-succeeded, .st-CLAIMED, .st-VALIDATED, .st-fetched { background:#dcf3e3; color:#17663a; }
.st-failed, .st-invalid, .st-CANCELLED, .st-EXPIRED, .st-not_found { background:#fde2e1; color:#a1221b; }
.st-in_doubt { background:#ffe9c7; color:#8a4b00; font-weight:600; }
.st-requested, .st-retry_scheduled { background:#e2ebff; color:#2445a1; }
.st-pending, .st-PENDING { background:#fff6d6; color:#6f5800; }
.st-ineligible, .st-INELIGIBLE, .st-not_due { background:#eceff3; color:#5d6675; }
.counts { display:flex; flex-wrap:wrap; gap:6px 18px; margin:0; padding:0; list-style:none; }
.counts li { white-space:nowrap; }
dl.detail { display:grid; grid-template-columns:max-content 1fr; gap:4px 16px; margin:8px 0 14px; }
dl.detail dt { color:var(--muted); } dl.detail dd { margin:0; }
.anomaly { color:#a1221b; font-weight:600; }
#obligations th { width:14em; }
footer { color:var(--muted); font-size:12px; padding:0 24px 24px; }
"#;

fn page(title: &str, header_facts: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head>\
         <body><header><h1>invitation-ledger</h1>{header_facts}</header><main>{body}</main></body></html>\n",
        escape(title)
    )
}

fn login_page(status: StatusCode, message: &str) -> warp::reply::Response {
    let body = format!(
        "<section><h2>Sign in</h2><p class=\"hint\">{}</p>\
         <form class=\"search\" method=\"post\" action=\"/login\">\
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" placeholder=\"READ_API_TOKEN\" aria-label=\"Read API token\" required autofocus>\
         <button type=\"submit\">Sign in</button></form></section>",
        escape(message)
    );
    html(status, page("Sign in — invitation-ledger", "", &body))
}

// ---------------------------------------------------------------------------
// Data

enum Search {
    Exact(Box<InvitationView>),
    Matches { items: Vec<InvitationView>, truncated: bool },
}

struct PageData {
    head: u64,
    checkpoint: u64,
    counts: Vec<(&'static str, String, i64)>,
    search: Option<Search>,
    recent: Vec<InvitationView>,
    attention: Vec<InvitationView>,
    audit: IncentiveAudit,
}

/// The `limit` invitations whose last event is the most recent.
pub fn recent(conn: &Connection, limit: usize) -> anyhow::Result<Vec<InvitationState>> {
    Ok(store::query(
        conn,
        "SELECT invitation_id, state FROM invitations ORDER BY last_seq DESC LIMIT ?1",
        params![limit as i64],
    )?)
}

/// Invitations with an obligation in doubt or failed, most recent first.
pub fn needing_an_operator(conn: &Connection, limit: usize) -> anyhow::Result<Vec<InvitationState>> {
    Ok(store::query(
        conn,
        "SELECT invitation_id, state FROM invitations
         WHERE payout_state IN ('in_doubt', 'failed') OR incentive_state IN ('in_doubt', 'failed')
            OR notification_state IN ('in_doubt', 'failed')
         ORDER BY last_seq DESC LIMIT ?1",
        params![limit as i64],
    )?)
}

/// Invitations whose invitee is `uma`, in id order.
fn by_invitee(conn: &Connection, uma: &str, limit: usize) -> anyhow::Result<Vec<InvitationState>> {
    Ok(store::query(
        conn,
        "SELECT invitation_id, state FROM invitations WHERE invitee_uma = ?1 ORDER BY invitation_id LIMIT ?2",
        params![uma, limit as i64],
    )?)
}

fn search(conn: &Connection, q: &str) -> anyhow::Result<Search> {
    if let Some(s) = store::find(conn, q)? {
        return Ok(Search::Exact(Box::new(view::view(&s))));
    }
    let filter = ListFilter { inviter_uma: Some(q.to_owned()), limit: SEARCH_CAP, ..ListFilter::default() };
    let (mut states, next) = store::list(conn, &filter)?;
    let mut truncated = next.is_some();
    let invitee = by_invitee(conn, q, SEARCH_CAP + 1)?;
    for s in invitee {
        if states.iter().any(|x| x.invitation_id == s.invitation_id) {
            continue;
        }
        if states.len() >= SEARCH_CAP {
            truncated = true;
            break;
        }
        states.push(s);
    }
    Ok(Search::Matches { items: states.iter().map(view::view).collect(), truncated })
}

fn load(conn: &Connection, q: Option<&str>, horizon: std::time::Duration) -> anyhow::Result<PageData> {
    Ok(PageData {
        head: crate::ledger::head(conn)?.0,
        checkpoint: store::checkpoint(conn)?,
        counts: store::obligation_counts(conn)?,
        search: q.map(|q| search(conn, q)).transpose()?,
        recent: recent(conn, RECENT)?.iter().map(view::view).collect(),
        attention: needing_an_operator(conn, ATTENTION_CAP)?.iter().map(view::view).collect(),
        audit: super::read::audit_incentives(conn, None, chrono::Utc::now(), horizon)?,
    })
}

// ---------------------------------------------------------------------------
// Rendering

fn opt(s: Option<&str>) -> String {
    s.map_or_else(|| "<span class=\"empty\">—</span>".to_owned(), escape)
}

/// A state badge; the class comes from the state text, escaped like the rest.
fn badge(state: &str) -> String {
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
    let fetch_attempts = if v.fetch.attempts > 0 {
        format!(" <span class=\"hint\">×{}</span>", v.fetch.attempts)
    } else {
        String::new()
    };
    row("Fetch from Lightspark", format!("{}{fetch_attempts}", badge(&fetch)));
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

fn render(d: &PageData, q: Option<&str>) -> String {
    let lag = d.head.saturating_sub(d.checkpoint);
    let in_doubt: i64 = d.counts.iter().filter(|c| c.1 == "in_doubt").map(|c| c.2).sum();
    let failed: i64 = d.counts.iter().filter(|c| c.1 == "failed").map(|c| c.2).sum();
    let facts = format!(
        "<span class=\"facts\">ledger head <b>{}</b> · projected <b>{}</b> · lag <b>{lag}</b> · in doubt <b>{in_doubt}</b> · failed <b>{failed}</b></span>",
        d.head, d.checkpoint
    );
    let mut b = String::new();

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

// ---------------------------------------------------------------------------
// Routes

async fn read_form(
    declared: Option<u64>,
    stream: impl futures_util::Stream<Item = Result<impl Buf, warp::Error>>,
) -> Result<String, Rejection> {
    let body = body::read(declared, stream, LOGIN_BODY_LIMIT).await.map_err(|e| match e {
        BodyError::TooLarge => reject(ApiError::TooLarge { limit: LOGIN_BODY_LIMIT }),
        BodyError::Timeout => reject(ApiError::BodyTimeout { secs: BODY_READ_TIMEOUT.as_secs() }),
        BodyError::Read(e) => reject(ApiError::BadRequest(format!("could not read the body: {e}"))),
    })?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k, true) == name).then(|| percent_decode(v, true))
    })
}

pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let gate = Gate::new(state.config.read_api_token.as_ref());

    let page_gate = gate.clone();
    let status = warp::path::end()
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("cookie"))
        .and(warp::query::<HashMap<String, String>>())
        .and_then(move |authorization: Option<String>, cookie: Option<String>, query: HashMap<String, String>| {
            let gate = page_gate.clone();
            let state = state.clone();
            async move {
                if !gate.admits(authorization.as_deref(), cookie.as_deref()) {
                    return Ok::<_, Rejection>(login_page(
                        StatusCode::UNAUTHORIZED,
                        "This page needs the read API token (READ_API_TOKEN). It is kept in an HttpOnly cookie for this site.",
                    ));
                }
                let q = query.get("q").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
                let horizon = state.config.reconcile.idempotency_window;
                let lookup = q.clone();
                let data = state.reads.run(move |c| load(c, lookup.as_deref(), horizon)).await.map_err(reject)?;
                Ok(html(StatusCode::OK, render(&data, q.as_deref())))
            }
        });

    let login = warp::path!("login")
        .and(warp::post())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(move |declared: Option<u64>, body| {
            let gate = gate.clone();
            async move {
                let form = read_form(declared, body).await?;
                let token = form_field(&form, "token").map(|t| t.trim().to_owned()).unwrap_or_default();
                let redirect = |cookie: Option<String>| {
                    let mut r = warp::reply::with_status(String::new(), StatusCode::SEE_OTHER).into_response();
                    r.headers_mut().insert(header::LOCATION, header::HeaderValue::from_static("/"));
                    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
                    if let Some(c) = cookie.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
                        r.headers_mut().insert(header::SET_COOKIE, c);
                    }
                    r
                };
                if gate.token.is_open() {
                    return Ok::<_, Rejection>(redirect(None));
                }
                if gate.matches(&token) {
                    Ok(redirect(Some(format!(
                        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
                        percent_encode(&token)
                    ))))
                } else {
                    Ok(login_page(StatusCode::UNAUTHORIZED, "That token is not right. Try again."))
                }
            }
        });

    status.or(login).unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_quotes_and_ampersands() {
        assert_eq!(escape("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
        assert_eq!(escape(r#"a"b'c"#), "a&quot;b&#x27;c");
        assert_eq!(escape("Tom & Jerry &amp;"), "Tom &amp; Jerry &amp;amp;");
        assert_eq!(escape("$bob@x.example"), "$bob@x.example");
        assert_eq!(escape("héllo ✓"), "héllo ✓");
        let hostile = r#"$<script>alert(1)</script>@x" onmouseover="x"#;
        let out = escape(hostile);
        assert!(!out.contains('<') && !out.contains('>') && !out.contains('"') && !out.contains('\''), "{out}");
    }

    #[test]
    fn badges_keep_only_safe_characters_in_the_class() {
        let b = badge("x\" onclick=\"y");
        assert!(b.starts_with("<span class=\"st st-xonclicky\">"), "{b}");
        assert!(b.contains("x&quot; onclick=&quot;y"), "{b}");
    }

    #[test]
    fn percent_encoding_round_trips_and_forms_decode_plus_as_space() {
        for s in ["UmaInvitation:1", "$alice@a.example", "a b&c=d/é", "tok;en,=\"x\""] {
            let e = percent_encode(s);
            assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)), "{e}");
            assert_eq!(percent_decode(&e, false), s);
        }
        assert_eq!(form_field("a=1&token=my+tok%26en&b=2", "token").as_deref(), Some("my tok&en"));
        assert_eq!(form_field("token=", "token").as_deref(), Some(""));
        assert_eq!(form_field("other=1", "token"), None);
        assert_eq!(percent_decode("50%", false), "50%");
        assert_eq!(percent_decode("%4", false), "%4");
    }

    #[test]
    fn the_gate_takes_the_bearer_header_or_the_cookie_and_nothing_else() {
        let open = Gate::new(None);
        assert!(open.admits(None, None));
        let secret = Secret::new("a-long-read-api-token-0123456789".into());
        let gate = Gate::new(Some(&secret));
        assert!(!gate.admits(None, None));
        assert!(!gate.admits(Some("Bearer "), Some("il_token=")));
        assert!(!gate.admits(Some("Bearer wrong"), Some("other=a-long-read-api-token-0123456789")));
        assert!(gate.admits(Some("Bearer a-long-read-api-token-0123456789"), None));
        assert!(gate.admits(None, Some("x=1; il_token=a-long-read-api-token-0123456789; y=2")));
        assert!(!gate.admits(Some("a-long-read-api-token-0123456789"), None));
    }
}
