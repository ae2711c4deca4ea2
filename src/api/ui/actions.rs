//! What the pages' forms post to, one handler each: `POST /login`,
//! `POST /invitations/{id}/resolve` and `POST /invitations/{id}/refetch`;
//! the routing is at the bottom. A resolve appends through
//! [`crate::operator`], exactly as the CLI's `resolve` does (only its `by`
//! says "page"); a refetch calls the [`Refetch`](crate::api::Refetch) the
//! service wired in, if any. Both pass [`guard`](super::guard) first.
//!
//! Recording a payment as paid takes a second step: the first POST answers
//! a page asking to confirm, whose form repeats the fields with
//! `confirm=yes`. After an action the browser is sent (303) back to the
//! invitation page, where the new event is in the trail.

use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use futures_util::Stream;
use warp::http::{header, HeaderMap, StatusCode};
use warp::{Filter, Rejection};

use super::forms::confirm_page;
use super::guard::admitted_form;
use super::render::{invitation_href, login_page, message_page};
use super::{behind_https, form_field, read_form, safe_next, see_other, with_ui, Ui, COOKIE};
use crate::api::error::reject;
use crate::api::read::percent_decode;
use crate::operator::{self, OperatorError, Resolution};
use crate::projection::events::{Channel, Decision, ObligationKind};

type Response = warp::reply::Response;

/// The page saying why an operator's action was not recorded.
fn refused(e: &OperatorError, back: &str) -> Response {
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

/// The decision a resolve form states, and whether it is confirmed
/// (only "paid" needs `confirm=yes`); else why it cannot be recorded.
fn resolution_of(form: &str) -> Result<(Resolution, bool), &'static str> {
    let field = |name: &str| form_field(form, name).filter(|v| !v.trim().is_empty());
    let kind = field("kind").as_deref().and_then(ObligationKind::parse).ok_or("The form names no obligation kind.")?;
    let decision = match field("decision").as_deref() {
        Some("paid") => Decision::Paid,
        Some("retry") => Decision::Retry,
        Some("failed") => Decision::Failed,
        _ => return Err("The form names no decision (paid, retry or failed)."),
    };
    let confirmed = decision != Decision::Paid || field("confirm").as_deref() == Some("yes");
    let resolution = Resolution {
        kind,
        decision,
        payment_id: field("payment_id"),
        note: field("note"),
        by: Channel::Page,
        seen: field("seen").as_deref().and_then(operator::Seen::parse),
    };
    Ok((resolution, confirmed))
}

/// A POST to an invitation's action that passed the guard.
struct Posted {
    /// The invitation's id or code, as the path names it.
    id: String,
    /// Its page, where the browser goes back to.
    back: String,
    /// The signed-in credential, and the form.
    credential: Vec<u8>,
    form: String,
}

/// An invitation's action, `POST /invitations/{id}/{action}`, guarded:
/// the handler gets the form, or the page refusing it.
fn guarded(
    ui: &Arc<Ui>,
    action: &'static str,
) -> impl Filter<Extract = (Arc<Ui>, Result<Posted, Response>), Error = Rejection> + Clone {
    with_ui(ui)
        .and(warp::path("invitations"))
        .and(warp::path::param::<String>())
        .and(warp::path(action))
        .and(warp::path::end())
        .and(posted())
        .and_then(|ui: Arc<Ui>, raw: String, headers: HeaderMap, declared: Option<u64>, body| async move {
            let id = percent_decode(&raw, false);
            let back = invitation_href(&id);
            let admitted = admitted_form(&ui, &headers, declared, body, &back).await?;
            let posted = admitted.map(|(credential, form)| Posted { id, back, credential, form });
            Ok::<_, Rejection>((ui, posted))
        })
        .untuple_one()
}

/// `POST /invitations/{id}/resolve`: checks the decision against the
/// invitation now, asks to confirm "paid", then appends it and sends the
/// browser to the new event.
async fn resolve(ui: Arc<Ui>, posted: Result<Posted, Response>) -> Result<Response, Rejection> {
    let Posted { id, back, credential, form } = match posted {
        Ok(p) => p,
        Err(refusal) => return Ok(refusal),
    };
    let (resolution, confirmed) = match resolution_of(&form) {
        Ok(r) => r,
        Err(why) => return Ok(message_page(StatusCode::BAD_REQUEST, "Not recorded", why, &back)),
    };
    let lookup = id.clone();
    let (decided, view) = ui
        .state
        .reads
        .run(move |c| {
            let decided = operator::decide(c, &lookup, resolution, chrono::Utc::now());
            // The confirmation page names the amount and receiver.
            let view = match crate::projection::query::invitation(c, &lookup, Default::default())? {
                Some(v) if !confirmed => Some(crate::projection::trail::decimals(c, &v.invitation_id)?.view(&v)),
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
        Err(e) => return Ok(message_page(StatusCode::SERVICE_UNAVAILABLE, "Not recorded", &e.to_string(), &back)),
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

/// `POST /invitations/{id}/refetch`: fetches the invitation now through
/// the wired fetcher, then sends the browser back to the trail.
async fn refetch(ui: Arc<Ui>, posted: Result<Posted, Response>) -> Result<Response, Rejection> {
    let Posted { id, back, form, .. } = match posted {
        Ok(p) => p,
        Err(refusal) => return Ok(refusal),
    };
    let Some(fetcher) = ui.state.live.get().and_then(|l| l.refetch.clone()) else {
        let why = "No fetcher is connected to this page. Nothing was fetched.";
        return Ok(message_page(StatusCode::NOT_IMPLEMENTED, "Refetch is unavailable here", why, &back));
    };
    let note = form_field(&form, "note").map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > operator::NOTE_MAX_CHARS) {
        let why = format!("the note is longer than {} characters", operator::NOTE_MAX_CHARS);
        return Ok(message_page(StatusCode::BAD_REQUEST, "Not fetched", &why, &back));
    }
    let lookup = id.clone();
    let found = ui.state.reads.lookup(move |c| Ok(crate::projection::query::find(c, &lookup)?)).await;
    let Some(state) = found.map_err(reject)? else {
        let why = format!("No invitation has the id or code {id:?}.");
        return Ok(message_page(StatusCode::NOT_FOUND, "No such invitation", &why, "/"));
    };
    match fetcher.refetch(state.invitation_id.clone(), note).await {
        Ok(what) => {
            tracing::info!(invitation = %state.invitation_id, what = %what, "refetched from the status page");
            Ok(see_other(&format!("{}#trail", invitation_href(&state.invitation_id))))
        }
        Err(why) => Ok(message_page(StatusCode::BAD_GATEWAY, "Refetch failed", &why, &back)),
    }
}

/// `POST /login`: the right token sets the session cookie and sends the
/// browser on to `next`; a wrong one gets the form again.
async fn login(
    ui: Arc<Ui>,
    headers: HeaderMap,
    declared: Option<u64>,
    body: impl Stream<Item = Result<impl Buf, warp::Error>>,
) -> Result<Response, Rejection> {
    let form = read_form(declared, body).await?;
    let token = form_field(&form, "token").map(|t| t.trim().to_owned()).unwrap_or_default();
    let next = form_field(&form, "next");
    let mut r = see_other(safe_next(next.as_deref()));
    if ui.gate.is_open() {
        return Ok(r);
    }
    if !ui.gate.matches(token.as_bytes()) {
        return Ok(login_page(StatusCode::UNAUTHORIZED, "That token is not right. Try again.", next.as_deref()));
    }
    let Some(session) = ui.gate.session(chrono::Utc::now().timestamp()) else { return Ok(r) };
    let secure = if behind_https(&headers) { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        crate::api::access::SESSION_SECONDS
    );
    if let Ok(c) = header::HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(r)
}

/// A POSTed form as the handlers take it: the headers, the declared
/// length and the body, not read yet (the guard runs first).
fn posted() -> impl Filter<
    Extract = (HeaderMap, Option<u64>, impl Stream<Item = Result<impl Buf, warp::Error>> + Send),
    Error = Rejection,
> + Clone {
    warp::post()
        .and(warp::header::headers_cloned())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
}

pub(super) fn routes(ui: &Arc<Ui>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let resolve = guarded(ui, "resolve").and_then(resolve);
    let refetch = guarded(ui, "refetch").and_then(refetch);
    let login = with_ui(ui).and(warp::path!("login")).and(posted()).and_then(login);
    resolve.or(refetch).unify().or(login).unify()
}
