//! `POST /v1/invitations` and `POST /v1/invitations/{id or code}/cancel`:
//! creating and cancelling an invitation at its source through the
//! service. The handler is thin: the checks, the call and the records are
//! the reconciler's (`reconcile::register`), reached through [`Register`]
//! as the page's refetch is; this maps their outcome to HTTP.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::access::{read_access, Access};
use super::body::{BodyError, BODY_READ_TIMEOUT};
use super::error::{error_reply, reject, ApiError};
use super::AppState;
use crate::projection::state::InvitationState;
use crate::projection::view::{shown, Fetching};

/// How often, and how far apart, a cancellation looks its invitation up
/// before answering 404: about a second in all.
const LOOKUP_TRIES: usize = 20;
const LOOKUP_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Largest creation request read: a few short fields.
const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Why no invitation is answered: the status, the machine code and the
/// sentence of the `{"error", "message"}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

/// What [`Register`]'s calls answer: the invitation's state, or a refusal.
pub type Answer = Pin<Box<dyn Future<Output = Result<InvitationState, Refusal>> + Send>>;

/// Creates an invitation from a request's JSON body, as
/// `invitation-ledger invite` does. A trait object, wired by whoever
/// builds [`AppState`], like [`super::Refetch`].
pub trait Register: Send + Sync {
    /// `Ok`: the new invitation's state; `Err`: what to answer instead
    /// (a bad request is refused before anything is sent or stored).
    fn create(&self, body: serde_json::Value) -> Answer;

    /// Cancels `invitation_id` (an id the projection knows) at its source.
    fn cancel(&self, invitation_id: String) -> Answer;
}

pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    create_route(state.clone()).or(cancel_route(state)).unify()
}

/// Only POST; any other method is refused as an unknown route, not 405:
/// `GET /v1/invitations` is the list, and a 405 from here would win over
/// its own answers (a bad `limit` must stay a 400).
fn post_only() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and_then(|m: warp::http::Method| async move {
            if m == warp::http::Method::POST {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

fn cancel_route(state: Arc<AppState>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let auth = read_access(Access::new(state.config.read_api_token.as_ref()));
    let fetching = Fetching::new(|s| state.config.reconcile.fetch_configured(s));
    warp::path!("v1" / "invitations" / String / "cancel").and(post_only()).and(auth).and_then(move |raw: String| {
        let state = state.clone();
        async move {
            let live = state.fresh().map_err(reject)?;
            let Some(register) = live.register.clone() else {
                return Ok::<_, Rejection>(error_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_configured",
                    "this service cancels no invitations: it has no source to cancel them at",
                ));
            };
            let wanted = super::read::percent_decode(&raw, false);
            // An invitation created a moment ago may not be folded yet (the
            // projector follows the ledger within milliseconds): asked
            // again for a short while before it is called unknown.
            let mut found = None;
            for _ in 0..LOOKUP_TRIES {
                let lookup = wanted.clone();
                found = state
                    .reads
                    .lookup(move |c| Ok(crate::projection::query::invitation(c, &lookup, fetching)?))
                    .await
                    .map_err(reject)?;
                if found.is_some() {
                    break;
                }
                tokio::time::sleep(LOOKUP_PAUSE).await;
            }
            let Some(found) = found else {
                return Err(reject(ApiError::NotFound(format!("no invitation with id or code {wanted:?}"))));
            };
            Ok(match register.cancel(found.invitation_id).await {
                Ok(state) => warp::reply::json(&shown(&state, fetching)).into_response(),
                Err(r) => error_reply(r.status, r.code, &r.message),
            })
        }
    })
}

fn create_route(state: Arc<AppState>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let auth = read_access(Access::new(state.config.read_api_token.as_ref()));
    let fetching = Fetching::new(|s| state.config.reconcile.fetch_configured(s));
    warp::path!("v1" / "invitations")
        .and(post_only())
        .and(auth)
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(move |declared: Option<u64>, stream| {
            let state = state.clone();
            async move {
                let bytes = super::body::read(declared, stream, MAX_REQUEST_BYTES).await.map_err(|e| match e {
                    BodyError::TooLarge => reject(ApiError::TooLarge { limit: MAX_REQUEST_BYTES }),
                    BodyError::Timeout => reject(ApiError::BodyTimeout { secs: BODY_READ_TIMEOUT.as_secs() }),
                    BodyError::Read(e) => reject(ApiError::BadRequest(format!("could not read the body: {e}"))),
                })?;
                let live = state.live().map_err(reject)?;
                let Some(register) = live.register.clone() else {
                    return Ok::<_, Rejection>(error_reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not_configured",
                        "this service creates no invitations: it has no source to create them at",
                    ));
                };
                let body: serde_json::Value = match serde_json::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(e) => {
                        return Ok(error_reply(
                            StatusCode::BAD_REQUEST,
                            "bad_request",
                            &format!("the body is not JSON: {e}"),
                        ))
                    }
                };
                Ok(match register.create(body).await {
                    Ok(created) => {
                        warp::reply::with_status(warp::reply::json(&shown(&created, fetching)), StatusCode::CREATED)
                            .into_response()
                    }
                    Err(r) => error_reply(r.status, r.code, &r.message),
                })
            }
        })
}
