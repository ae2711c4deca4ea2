//! An invitation's own page, `GET /invitations/{id or code}`: its facts,
//! the forms to act on it ([`forms`]), and its whole trail from the ledger
//! ([`trail`]); and the exact stored bytes of one of its events,
//! `GET /invitations/{id}/events/{seq}/body`.

use std::sync::Arc;

use maud::html;
use warp::http::{header, HeaderMap, StatusCode};
use warp::{Filter, Rejection};

use super::forms::{self, Actions};
use super::render::{catching_up_page, detail, invitation_href, ledger_facts, message_page, page, visible};
use super::show::with_times;
use super::verdict::{self, Verdict};
use super::{html, trail, with_ui, Admit, Ui};
use crate::api::error::reject;
use crate::api::read::percent_decode;
use crate::projection::trail::{self as read_trail, Said, Trail};

/// The version of the invitation the page shows: its last event, with
/// that event's hash when the page read it.
fn seen_on(t: &Trail) -> crate::operator::Seen {
    let seq = t.invitation.last_seq;
    crate::operator::Seen { seq, hash: t.events.iter().find(|e| e.event.seq == seq).map(|e| e.event.hash) }
}

/// `GET /invitations/{id or code}`: the page, or the login form, or 404.
async fn invitation_page(ui: Arc<Ui>, raw: String, headers: HeaderMap) -> Result<warp::reply::Response, Rejection> {
    let id = percent_decode(&raw, false);
    let here = invitation_href(&id);
    let credential = match ui.admit(&headers, Some(&here))? {
        Admit::Login(page) => return Ok(page),
        Admit::Open => None,
        Admit::Session(c) => Some(c),
    };
    if let Err(e) = ui.state.fresh() {
        return Ok(catching_up_page(&e.to_string()));
    }
    let lookup = id.clone();
    let found = ui.state.reads.run(move |c| Ok(read_trail::trail(c, &lookup)?)).await.map_err(reject)?;
    let Some(t) = found else {
        let why = format!("No invitation has the id or code {id:?}.");
        return Ok(message_page(StatusCode::NOT_FOUND, "No such invitation", &why, "/"));
    };
    // A source without keys here (Grid, unless its key is set): its
    // webhooks say so instead of a verdict.
    let verdicts: Vec<Option<Verdict>> = t
        .events
        .iter()
        .map(|e| match &e.said {
            Said::Webhook { source, .. } => {
                Some(verdict::check(&ui.keys, *source, &e.event.body, e.event.signature.as_deref()))
            }
            _ => None,
        })
        .collect();
    let acts = Actions {
        csrf: credential.map(|c| ui.csrf.token(&c)),
        token_configured: !ui.gate.is_open(),
        refetch: ui.state.live.get().is_some_and(|l| l.refetch.is_some()),
        seen: seen_on(&t),
    };
    Ok(html(StatusCode::OK, render(&t, &verdicts, &acts)))
}

/// `GET /invitations/{id}/events/{seq}/body`: the exact stored bytes. The
/// seq is read here rather than by the router, so that any path of this
/// shape gets this route's answers (a 404 page for a seq that is not a
/// number), as the OpenAPI check expects of a documented route.
async fn event_body(
    ui: Arc<Ui>,
    raw: String,
    seq: String,
    headers: HeaderMap,
) -> Result<warp::reply::Response, Rejection> {
    let id = percent_decode(&raw, false);
    if let Admit::Login(page) = ui.admit(&headers, Some(&invitation_href(&id)))? {
        return Ok(page);
    }
    let lookup = id.clone();
    let number = seq.parse::<u64>().ok();
    let event = ui
        .state
        .reads
        .lookup(move |c| {
            let Some(seq) = number else { return Ok(None) };
            let Some(state) = crate::projection::query::find(c, &lookup)? else { return Ok(None) };
            Ok(read_trail::event_of_invitation(c, &state.invitation_id, seq)?)
        })
        .await
        .map_err(reject)?;
    let Some(event) = event else {
        let why = format!("The invitation {id:?} has no event at seq {seq}.");
        return Ok(message_page(StatusCode::NOT_FOUND, "No such event", &why, &invitation_href(&id)));
    };
    let mut r = warp::reply::Response::new(event.body.into());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static("default-src 'none'"));
    if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"ledger-seq-{seq}.body\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

fn render(t: &Trail, verdicts: &[Option<Verdict>], acts: &Actions) -> String {
    let v = &t.decimals.view(&t.invitation);
    let body = html! {
        section #invitation {
            h2 { "Invitation " span.mono { (v.invitation_id) } }
            (detail(v))
            @if !v.anomalies.is_empty() {
                h3 { "Anomalies" }
                ul { @for a in &v.anomalies { li { span.anomaly { (a.kind) } " " (with_times(&visible(&a.detail))) } } }
            }
        }
        (forms::actions(v, acts))
        (trail::section(t, verdicts))
    };
    let facts = ledger_facts(t.head, t.checkpoint, html! { " · " a href="/" { "all invitations" } });
    page(&format!("{} — invitation-ledger", v.code.as_deref().unwrap_or(&v.invitation_id)), facts, body)
}

pub(super) fn routes(ui: &Arc<Ui>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let page = with_ui(ui)
        .and(warp::path!("invitations" / String))
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and_then(invitation_page);
    let body = with_ui(ui)
        .and(warp::path!("invitations" / String / "events" / String / "body"))
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and_then(event_body);
    page.or(body).unify()
}
