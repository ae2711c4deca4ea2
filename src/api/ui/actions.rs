//! Acting from the invitation page: the forms, and the routes they post
//! to, `POST /invitations/{id}/resolve` and `POST /invitations/{id}/refetch`.
//! A resolve appends through [`crate::operator`], exactly as the CLI's
//! `resolve` does (only its `by` says "page"); a refetch calls the
//! [`Refetch`](crate::api::Refetch) the service wired in, if any.
//!
//! Every POST passes, in this order, before anything is read or appended:
//! 1. a token is configured (without one the page is open to anyone on the
//!    machine, so it only reads): else 403;
//! 2. `Origin` (or, when absent, `Referer`) names this site, the `Host`
//!    the request was sent to: else 403, whatever else it carries;
//! 3. it is signed in (the `il_token` cookie, `SameSite=Strict`, or a
//!    bearer token): else 401;
//! 4. its `csrf` field is the session's token ([`super::Csrf`]), compared
//!    in constant time: else 403.
//!
//! Recording a payment as paid takes a second step: the first POST answers
//! a page asking to confirm, whose form repeats the fields with
//! `confirm=yes`. After an action the browser is sent (303) back to the
//! invitation page, where the new event is in the trail.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use warp::http::{header, HeaderMap, StatusCode};
use warp::{Filter, Rejection};

use super::render::{badge, escape, invitation_href, login_page, message_page, opt, page, uma};
use super::{form_field, html, read_form, see_other, Ui};
use crate::api::error::reject;
use crate::api::read::percent_decode;
use crate::money::Money;
use crate::operator::{self, OperatorError, Resolution};
use crate::projection::events::{Channel, Decision, ObligationKind};
use crate::projection::view::{InvitationView, ObligationState, ObligationView};

/// What the invitation page's forms may do for this request.
pub(super) struct Actions {
    /// The session's CSRF token; `None` when not signed in (no token
    /// configured).
    pub csrf: Option<String>,
    pub token_configured: bool,
    /// A fetcher is wired to the page.
    pub refetch: bool,
}

fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(value))
}

fn obligation_of(v: &InvitationView, kind: ObligationKind) -> &ObligationView {
    match kind {
        ObligationKind::InviteePayment => &v.payout,
        ObligationKind::InviterIncentive => &v.incentive,
        ObligationKind::InviterNotification => &v.notification,
    }
}

/// What the obligation asks for, in words: the amount and receiver of its
/// request, else the invitation's.
fn what_is_owed(v: &InvitationView, kind: ObligationKind) -> (Option<Money>, Option<String>) {
    let o = obligation_of(v, kind);
    if let Some(r) = &o.requested {
        return (r.amount.clone(), r.receiver_uma.clone());
    }
    match kind {
        ObligationKind::InviteePayment => (v.payment_amount.clone(), v.invitee_uma.clone()),
        ObligationKind::InviterIncentive | ObligationKind::InviterNotification => (None, v.inviter_uma.clone()),
    }
}

/// The invitation page's "Actions" section.
pub(super) fn forms(v: &InvitationView, a: &Actions) -> String {
    let enabled = a.token_configured && a.csrf.is_some();
    let csrf = a.csrf.as_deref().map(|t| hidden("csrf", t)).unwrap_or_default();
    let off = if enabled { "" } else { " disabled" };
    let base = invitation_href(&v.invitation_id);
    let mut s = String::from("<section id=\"actions\"><h2>Actions</h2>");
    if !a.token_configured {
        s.push_str(
            "<p class=\"notice\">Actions are off: set READ_API_TOKEN to enable actions. Without a token this page is \
             served to anyone on this machine, so it only reads. The <code>resolve</code> command works either way.</p>",
        );
    }
    s.push_str("<h3>Resolve</h3>");
    let mut any = false;
    for kind in ObligationKind::ALL {
        let o = obligation_of(v, kind);
        if !matches!(o.state, ObligationState::InDoubt | ObligationState::Failed) {
            continue;
        }
        any = true;
        let (amount, receiver) = what_is_owed(v, kind);
        let asked = match (&amount, &receiver) {
            (Some(m), Some(r)) => format!(" · {} to {}", escape(&m.display()), uma(r)),
            (Some(m), None) => format!(" · {} to {}", escape(&m.display()), opt(None)),
            (None, Some(r)) => format!(" · to {}", uma(r)),
            (None, None) => String::new(),
        };
        let key = o.idempotency_key.as_ref().map(|k| k.as_str()).unwrap_or("-");
        // The version the operator decides on: a change meanwhile refuses
        // the decision instead of recording it on facts they did not see.
        let fields = format!("{csrf}{}{}", hidden("kind", kind.as_str()), hidden("seen", &v.last_seq.to_string()));
        let note = "<label>Note <textarea name=\"note\" rows=\"2\" maxlength=\"1000\" placeholder=\"what you checked, a ticket\"></textarea></label>";
        let _ = write!(
            s,
            "<div class=\"resolve\" id=\"resolve-{k}\"><p><b>{k}</b> {state}{reason}{asked} · key <code>{key}</code>. \
             Check the payment platform for this key, then record what it says:</p><fieldset class=\"acts\"{off}>\
             <form class=\"act paid\" method=\"post\" action=\"{action}\">{fields}{paid}\
             <label>Payment id <input name=\"payment_id\" required maxlength=\"200\" autocomplete=\"off\"></label>{note}\
             <button type=\"submit\">It was paid…</button></form>\
             <form class=\"act retry\" method=\"post\" action=\"{action}\">{fields}{retry}{note}\
             <button type=\"submit\">Not paid: send again</button></form>\
             <form class=\"act failed\" method=\"post\" action=\"{action}\">{fields}{failed}{note}\
             <button type=\"submit\" class=\"danger\">Give up: failed</button></form></fieldset></div>",
            k = kind.as_str(),
            state = badge(o.state.as_str()),
            reason = o.reason.as_deref().map(|r| format!(" <span class=\"hint\">{}</span>", escape(r))).unwrap_or_default(),
            key = escape(key),
            action = escape(&format!("{base}/resolve")),
            paid = hidden("decision", "paid"),
            retry = hidden("decision", "retry"),
            failed = hidden("decision", "failed"),
        );
    }
    if !any {
        s.push_str("<p class=\"empty\">Nothing to resolve: only obligations in doubt or failed are resolved.</p>");
    }
    s.push_str("<h3>Refetch</h3>");
    if !a.refetch {
        s.push_str(
            "<p class=\"hint\">Refetch is unavailable here: no fetcher is connected to this page, so the invitation \
             is fetched on its schedule only.</p>",
        );
    }
    let off = if enabled && a.refetch { "" } else { " disabled" };
    let _ = write!(
        s,
        "<form class=\"act refetch\" method=\"post\" action=\"{}\">{csrf}<fieldset class=\"acts\"{off}>\
         <label>Note <input name=\"note\" maxlength=\"1000\" placeholder=\"why\"></label>\
         <button type=\"submit\">Fetch from the source now</button></fieldset></form></section>",
        escape(&format!("{base}/refetch"))
    );
    s
}

// ---------------------------------------------------------------------------
// Protection

/// `scheme` and `host[:port]` of an absolute http(s) URL, lower-cased,
/// the scheme's default port dropped; `None` for anything else (`null`).
fn site_of(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') || !matches!(scheme.as_str(), "http" | "https") {
        return None;
    }
    let host = normalized_host(&scheme, authority);
    Some((scheme, host))
}

fn normalized_host(scheme: &str, authority: &str) -> String {
    let a = authority.to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    a.strip_suffix(default).map(str::to_owned).unwrap_or(a)
}

/// Whether the request was sent by a page of this site: its `Origin`
/// (else its `Referer`) names the `Host` it was sent to.
fn same_site(headers: &HeaderMap) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| "the request names no Host".to_owned())?;
    let (what, value) = match (headers.get(header::ORIGIN), headers.get(header::REFERER)) {
        (Some(o), _) => ("Origin", o),
        (None, Some(r)) => ("Referer", r),
        (None, None) => return Err("the request carries neither Origin nor Referer".into()),
    };
    let value = value.to_str().map_err(|_| format!("its {what} is not text"))?;
    let (scheme, site) = site_of(value).ok_or_else(|| format!("its {what} {value:?} names no site"))?;
    if site == normalized_host(&scheme, host) {
        Ok(())
    } else {
        Err(format!("its {what} {value:?} is another site than {host}"))
    }
}

/// Why a POST was refused before anything was read or appended.
enum Refusal {
    /// No token configured.
    Off,
    /// Not sent from this site; why.
    CrossSite(String),
    SignedOut,
    /// The form's token is missing, forged or of another process.
    BadToken,
}

impl Refusal {
    fn answer(&self, back: &str) -> warp::reply::Response {
        match self {
            Refusal::Off => message_page(
                StatusCode::FORBIDDEN,
                "Actions are off",
                "Set READ_API_TOKEN to enable actions. Nothing was recorded.",
                back,
            ),
            Refusal::CrossSite(why) => message_page(
                StatusCode::FORBIDDEN,
                "Refused: not sent from this site",
                &format!("This form was not posted from this site's own page: {why}. Nothing was recorded."),
                back,
            ),
            Refusal::SignedOut => login_page(
                StatusCode::UNAUTHORIZED,
                "Sign in to act on invitations. Nothing was recorded.",
                Some(back),
            ),
            Refusal::BadToken => message_page(
                StatusCode::FORBIDDEN,
                "Refused: the form's token is missing or stale",
                "Reload the invitation page and submit again (a restart of the service makes open forms stale). Nothing was recorded.",
                back,
            ),
        }
    }
}

/// Steps 1–3 of the module's list: the signed-in credential.
fn admit_post(ui: &Ui, headers: &HeaderMap) -> Result<Vec<u8>, Refusal> {
    if ui.gate.is_open() {
        return Err(Refusal::Off);
    }
    if let Err(why) = same_site(headers) {
        tracing::warn!(why = %why, "refused a cross-site POST to an action");
        return Err(Refusal::CrossSite(why));
    }
    ui.credential(headers).ok_or(Refusal::SignedOut)
}

/// Step 4: the form's `csrf` field.
fn check_csrf(ui: &Ui, credential: &[u8], form: &str) -> Result<(), Refusal> {
    let presented = form_field(form, "csrf").unwrap_or_default();
    if ui.csrf.verify(credential, &presented) {
        Ok(())
    } else {
        Err(Refusal::BadToken)
    }
}

/// Steps 1–4 for every action, in order: the credential and the form, or
/// (`Ok(Err(_))`) the page refusing the POST, with `back` as its way back.
///
/// # Errors
/// The rejection of a body that is too large, too slow or unreadable,
/// answered as the API answers it.
async fn admitted_form(
    ui: &Ui,
    headers: &HeaderMap,
    declared: Option<u64>,
    body: impl futures_util::Stream<Item = Result<impl bytes::Buf, warp::Error>>,
    back: &str,
) -> Result<Result<(Vec<u8>, String), warp::reply::Response>, Rejection> {
    let credential = match admit_post(ui, headers) {
        Ok(c) => c,
        Err(refusal) => return Ok(Err(refusal.answer(back))),
    };
    let form = read_form(declared, body).await?;
    if let Err(refusal) = check_csrf(ui, &credential, &form) {
        return Ok(Err(refusal.answer(back)));
    }
    Ok(Ok((credential, form)))
}

fn refused(e: &OperatorError, back: &str) -> warp::reply::Response {
    let (status, title) = match e {
        OperatorError::UnknownInvitation(_) => (StatusCode::NOT_FOUND, "No such invitation"),
        OperatorError::NotResolvable { .. } => (StatusCode::CONFLICT, "Nothing to resolve"),
        OperatorError::Changed { .. } => (StatusCode::CONFLICT, "Changed meanwhile"),
        OperatorError::Invalid(_) => (StatusCode::BAD_REQUEST, "Not recorded"),
        OperatorError::Ledger(_) => (StatusCode::SERVICE_UNAVAILABLE, "The ledger cannot be written right now"),
        OperatorError::Projection(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Not recorded"),
    };
    if status.is_server_error() {
        tracing::error!(error = %e, "an action from the status page failed");
    }
    message_page(status, title, &e.to_string(), back)
}

/// Waits (briefly) until the projections have folded `seq`, so that the
/// page the browser is sent back to shows the decision's effect too.
async fn projected(ui: &Ui, seq: u64) {
    for _ in 0..100 {
        match ui.state.reads.lookup(|c| Ok(crate::projection::store::checkpoint(c)?)).await {
            Ok(at) if at >= seq => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => return,
        }
    }
}

fn confirm_page(v: &InvitationView, decided: &operator::Decided, csrf: &str) -> warp::reply::Response {
    let d = &decided.resolved;
    let (amount, receiver) = what_is_owed(v, d.obligation);
    let back = invitation_href(&v.invitation_id);
    let of = amount.map(|m| format!(" of <b>{}</b>", escape(&m.display()))).unwrap_or_default();
    let to = receiver.map(|r| format!(" to <b>{}</b>", uma(&r))).unwrap_or_default();
    let payment_id = d.payment_id.as_deref().unwrap_or_default();
    let mut b = format!(
        "<section id=\"confirm\"><h2>Confirm: record as paid</h2>\
         <p class=\"question\">Record <b>{kind}</b>{of}{to} as <b>paid</b> with payment id <b class=\"mono\">{pid}</b>?</p>\
         <p class=\"hint\">Invitation <span class=\"mono\">{id}</span> · idempotency key <code>{key}</code>. \
         The obligation becomes succeeded and is never sent again; the decision is appended to the ledger for good.</p>",
        kind = d.obligation.as_str(),
        pid = escape(payment_id),
        id = escape(&v.invitation_id),
        key = escape(d.idempotency_key.as_str()),
    );
    if let Some(n) = &d.note {
        let _ = write!(b, "<p>Note: <span class=\"note\">{}</span></p>", escape(n));
    }
    let _ = write!(
        b,
        "<form class=\"act confirm\" method=\"post\" action=\"{}\">{}{}{}{}{}{}{}\
         <button type=\"submit\">Yes, record as paid</button> <a class=\"cancel\" href=\"{}\">Cancel</a></form></section>",
        escape(&format!("{back}/resolve")),
        hidden("csrf", csrf),
        hidden("seen", &decided.seen.to_string()),
        hidden("kind", d.obligation.as_str()),
        hidden("decision", "paid"),
        hidden("payment_id", payment_id),
        hidden("note", d.note.as_deref().unwrap_or_default()),
        hidden("confirm", "yes"),
        escape(&back),
    );
    html(StatusCode::OK, page("Confirm — invitation-ledger", "", &b))
}

// ---------------------------------------------------------------------------
// Routes

pub(super) fn routes(ui: Arc<Ui>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let resolve_ui = ui.clone();
    let resolve = warp::path!("invitations" / String / "resolve")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(move |raw: String, headers: HeaderMap, declared: Option<u64>, body| {
            let ui = resolve_ui.clone();
            async move {
                let id = percent_decode(&raw, false);
                let back = invitation_href(&id);
                let (credential, form) = match admitted_form(&ui, &headers, declared, body, &back).await? {
                    Ok(admitted) => admitted,
                    Err(refusal) => return Ok::<_, Rejection>(refusal),
                };
                let field = |name: &str| form_field(&form, name).filter(|v| !v.trim().is_empty());
                let Some(kind) = field("kind").as_deref().and_then(ObligationKind::parse) else {
                    return Ok(message_page(
                        StatusCode::BAD_REQUEST,
                        "Not recorded",
                        "The form names no obligation kind.",
                        &back,
                    ));
                };
                let decision = match field("decision").as_deref() {
                    Some("paid") => Decision::Paid,
                    Some("retry") => Decision::Retry,
                    Some("failed") => Decision::Failed,
                    _ => {
                        return Ok(message_page(
                            StatusCode::BAD_REQUEST,
                            "Not recorded",
                            "The form names no decision (paid, retry or failed).",
                            &back,
                        ))
                    }
                };
                let confirmed = decision != Decision::Paid || field("confirm").as_deref() == Some("yes");
                let resolution = Resolution {
                    kind,
                    decision,
                    payment_id: field("payment_id"),
                    note: field("note"),
                    by: Channel::Page,
                    seen: field("seen").and_then(|s| s.trim().parse().ok()),
                };
                let lookup = id.clone();
                let (decided, view) = ui
                    .state
                    .reads
                    .run(move |c| {
                        let decided = operator::decide(c, &lookup, resolution, chrono::Utc::now());
                        let view = match crate::projection::query::invitation(c, &lookup, Default::default())? {
                            Some(v) if !confirmed => {
                                let decimals = crate::projection::trail::decimals(c, &v.invitation_id)?;
                                Some(decimals.view(&v))
                            }
                            _ => None,
                        };
                        Ok((decided, view))
                    })
                    .await
                    .map_err(reject)?;
                let decided = match decided {
                    Ok(d) => d,
                    Err(e) => return Ok(refused(&e, &back)),
                };
                if let Some(v) = view.filter(|_| !confirmed) {
                    return Ok(confirm_page(&v, &decided, &ui.csrf.token(&credential)));
                }
                let live = match ui.state.live() {
                    Ok(live) => live,
                    Err(e) => {
                        return Ok(message_page(StatusCode::SERVICE_UNAVAILABLE, "Not recorded", &e.to_string(), &back))
                    }
                };
                match operator::record(&live.ledger, decided).await {
                    Ok(recorded) => {
                        tracing::info!(what = %recorded, "resolved from the status page");
                        projected(&ui, recorded.seq).await;
                        Ok(see_other(&format!("{}#seq-{}", invitation_href(&recorded.invitation_id), recorded.seq)))
                    }
                    Err(e) => Ok(refused(&e, &back)),
                }
            }
        });

    let refetch = warp::path!("invitations" / String / "refetch")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(move |raw: String, headers: HeaderMap, declared: Option<u64>, body| {
            let ui = ui.clone();
            async move {
                let id = percent_decode(&raw, false);
                let back = invitation_href(&id);
                let (_, form) = match admitted_form(&ui, &headers, declared, body, &back).await? {
                    Ok(admitted) => admitted,
                    Err(refusal) => return Ok::<_, Rejection>(refusal),
                };
                let Some(fetcher) = ui.state.live.get().and_then(|l| l.refetch.clone()) else {
                    return Ok(message_page(
                        StatusCode::NOT_IMPLEMENTED,
                        "Refetch is unavailable here",
                        "No fetcher is connected to this page. Nothing was fetched.",
                        &back,
                    ));
                };
                let note = form_field(&form, "note").map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
                if note.as_ref().is_some_and(|n| n.chars().count() > operator::NOTE_MAX_CHARS) {
                    let why = format!("the note is longer than {} characters", operator::NOTE_MAX_CHARS);
                    return Ok(message_page(StatusCode::BAD_REQUEST, "Not fetched", &why, &back));
                }
                let lookup = id.clone();
                let found = ui.state.reads.lookup(move |c| Ok(crate::projection::query::find(c, &lookup)?)).await;
                let Some(state) = found.map_err(reject)? else {
                    return Ok(message_page(StatusCode::NOT_FOUND, "No such invitation", &format!("No invitation has the id or code {id:?}."), "/"));
                };
                match fetcher.refetch(state.invitation_id.clone(), note).await {
                    Ok(what) => {
                        tracing::info!(invitation = %state.invitation_id, what = %what, "refetched from the status page");
                        Ok(see_other(&format!("{}#trail", invitation_href(&state.invitation_id))))
                    }
                    Err(why) => Ok(message_page(StatusCode::BAD_GATEWAY, "Refetch failed", &why, &back)),
                }
            }
        });

    resolve.or(refetch).unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_post_is_same_site_when_its_origin_or_else_referer_names_the_host() {
        // given requests to 127.0.0.1:3000 from various places
        let host = ("host", "127.0.0.1:3000");
        // then this site's own pages pass, in any letter case and with a default port spelled out
        assert_eq!(same_site(&headers(&[host, ("origin", "http://127.0.0.1:3000")])), Ok(()));
        assert_eq!(same_site(&headers(&[host, ("referer", "http://127.0.0.1:3000/invitations/x")])), Ok(()));
        assert_eq!(same_site(&headers(&[("host", "Ops.Example"), ("origin", "https://ops.example:443")])), Ok(()));
        // and other sites, opaque origins, other schemes and nothing at all do not
        for refused in [
            headers(&[host, ("origin", "http://127.0.0.2:3000")]),
            headers(&[host, ("origin", "http://127.0.0.1:3001")]),
            headers(&[host, ("origin", "null")]),
            headers(&[host, ("origin", "file://127.0.0.1:3000")]),
            headers(&[host, ("origin", "http://evil@127.0.0.1:3000")]),
            headers(&[host, ("origin", "http://127.0.0.2:3000"), ("referer", "http://127.0.0.1:3000/")]),
            headers(&[host]),
            headers(&[("origin", "http://127.0.0.1:3000")]),
        ] {
            assert!(same_site(&refused).is_err(), "{refused:?}");
        }
    }
}
