//! `POST /webhooks/lightspark` (alias `POST /webhook`): verify, append, answer.
//!
//! Nothing else happens on this path: no network, no projection work. The
//! answer is sent only after the event's transaction has committed.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use serde::Serialize;
use tracing::Instrument;
use warp::{Filter, Rejection, Reply};

use super::body::{self, BodyError, BODY_READ_TIMEOUT};
use super::error::{reject, ApiError};
use super::AppState;
use crate::ledger::{kinds, NewEvent};
use crate::lightspark::signature::SIGNATURE_HEADER;
use crate::lightspark::webhook::recognise;

fn count(state: &AppState, result: &str) {
    state.metrics.webhooks.with_label_values(&[result]).inc();
}

#[derive(Serialize)]
struct Accepted {
    status: &'static str,
    seq: u64,
}

pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let path = warp::path!("webhooks" / "lightspark").or(warp::path!("webhook")).unify();
    let limit = state.config.max_body_bytes;
    path.and(warp::post())
        .and(warp::header::optional::<String>(SIGNATURE_HEADER))
        .and(limited_body(limit, state.clone()))
        .and(with_state(state))
        .and_then(receive)
}

fn with_state(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Arc<AppState>,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// The body, refused with 413 as soon as it is known to exceed `limit`:
/// from `Content-Length` before reading, or while reading a chunked body;
/// and with 408 when it has not fully arrived within [`BODY_READ_TIMEOUT`].
fn limited_body(limit: usize, state: Arc<AppState>) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |declared: Option<u64>, stream| collect_body(declared, stream, limit, state.clone()))
}

async fn collect_body<S, B>(
    declared: Option<u64>,
    stream: S,
    limit: usize,
    state: Arc<AppState>,
) -> Result<Bytes, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    body::read(declared, stream, limit).await.map_err(|e| match e {
        BodyError::TooLarge => {
            count(&state, "too_large");
            reject(ApiError::TooLarge { limit })
        }
        BodyError::Timeout => {
            count(&state, "body_timeout");
            reject(ApiError::BodyTimeout { secs: BODY_READ_TIMEOUT.as_secs() })
        }
        BodyError::Read(e) => reject(ApiError::BadRequest(format!("could not read the body: {e}"))),
    })
}

async fn receive(
    signature: Option<String>,
    body: Bytes,
    state: Arc<AppState>,
) -> Result<warp::reply::Response, Rejection> {
    if let Err(e) = state.config.signing_keys.verify(&body, signature.as_deref()) {
        count(&state, "bad_signature");
        return Err(reject(e));
    }
    let delivery = recognise(&body).map_err(|e| {
        count(&state, "malformed");
        reject(ApiError::MalformedWebhook(e.to_string()))
    })?;
    let event_type = delivery.event_type.unwrap_or_default();
    let event = NewEvent {
        event_key: delivery.event_key,
        kind: kinds::WEBHOOK_RECEIVED.to_owned(),
        stream: delivery.stream,
        body: body.to_vec(),
        signature,
        sibling_prefix: delivery.sibling_prefix,
    };
    let span = tracing::info_span!(
        "webhook",
        event_key = %event.event_key,
        event_type = %event_type,
        invitation_id = event.stream.as_deref().unwrap_or("-"),
    );
    let appended = state.writer.append(event).instrument(span).await.map_err(|e| {
        count(&state, "unavailable");
        reject(ApiError::LedgerUnavailable(e))
    })?;
    let status = if appended.duplicate {
        count(&state, "duplicate");
        "duplicate"
    } else {
        count(&state, "accepted");
        "accepted"
    };
    tracing::debug!(event_type = %event_type, seq = appended.seq, status, "webhook");
    Ok(warp::reply::json(&Accepted { status, seq: appended.seq }).into_response())
}
