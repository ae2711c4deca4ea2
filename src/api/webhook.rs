//! The webhook routes, one per source: `POST /webhooks/lightspark` (alias
//! `POST /webhook`, signed with HMAC-SHA256 in `lightspark-signature`) and
//! `POST /webhooks/grid` (signed with ECDSA P-256 in `X-Grid-Signature`,
//! or `X-UMAaaS-Signature`; enabled by `GRID_WEBHOOK_PUBLIC_KEY`). Both go
//! the same way: verify the raw bytes, recognise the delivery, append,
//! answer.
//!
//! Nothing else happens on this path: no network, no projection work. The
//! answer is sent only after the event's transaction has committed.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use serde::Serialize;
use tracing::Instrument;
use warp::{Filter, Rejection, Reply};

use super::body::{self, BodyError, BODY_READ_TIMEOUT};
use super::error::{reject, ApiError};
use super::AppState;
use crate::grid::signature::{GRID_SIGNATURE_HEADER, UMAAAS_SIGNATURE_HEADER};
use crate::ledger::NewEvent;
use crate::lightspark::signature::SIGNATURE_HEADER;
use crate::source::{Delivery, Source};
use crate::vocab::{EventKind, StreamId};

fn count(state: &AppState, source: Source, result: &str) {
    state.metrics.webhook(source, result);
}

/// One WARN line per refused webhook: a forged or garbled delivery, or a
/// signing key that no longer matches, must be visible in the log and not
/// only in a counter. It names the source, the answer and why, and the
/// body's size, never the body (which may be anyone's bytes) nor the
/// signature or keys.
fn refused(state: &AppState, source: Source, result: &'static str, status: u16, bytes: Option<u64>, why: &str) {
    count(state, source, result);
    let bytes = bytes.map_or_else(|| "unknown".to_owned(), |b| b.to_string());
    tracing::warn!(source = source.as_str(), status, result, bytes = %bytes, why, "webhook refused");
}

#[derive(Serialize)]
struct Accepted {
    status: &'static str,
    seq: u64,
}

pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let lightspark = warp::path!("webhooks" / "lightspark")
        .or(warp::path!("webhook"))
        .unify()
        .and(warp::post())
        .and(warp::header::optional::<String>(SIGNATURE_HEADER))
        .and(limited_body(Source::Lightspark, state.clone()))
        .and(with_state(state.clone()))
        .and_then(|signature, body, state| receive(Source::Lightspark, signature, body, state));
    let grid_enabled = state.config.grid_keys.is_some();
    let grid = warp::path!("webhooks" / "grid")
        .and(warp::post())
        .and_then(move || async move {
            if grid_enabled {
                Ok(())
            } else {
                Err(reject(ApiError::NotFound(
                    "Grid webhooks are not enabled: set GRID_WEBHOOK_PUBLIC_KEY to Grid's public key".into(),
                )))
            }
        })
        .untuple_one()
        .and(warp::header::optional::<String>(GRID_SIGNATURE_HEADER))
        .and(warp::header::optional::<String>(UMAAAS_SIGNATURE_HEADER))
        .and(limited_body(Source::Grid, state.clone()))
        .and(with_state(state))
        .and_then(|grid: Option<String>, umaaas: Option<String>, body, state| {
            receive(Source::Grid, grid.or(umaaas), body, state)
        });
    lightspark.or(grid).unify()
}

fn with_state(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Arc<AppState>,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// The body, refused with 413 as soon as it is known to exceed the limit:
/// from `Content-Length` before reading, or while reading a chunked body;
/// and with 408 when it has not fully arrived within [`BODY_READ_TIMEOUT`].
fn limited_body(source: Source, state: Arc<AppState>) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |declared: Option<u64>, stream| collect_body(source, declared, stream, state.clone()))
}

async fn collect_body<S, B>(
    source: Source,
    declared: Option<u64>,
    stream: S,
    state: Arc<AppState>,
) -> Result<Bytes, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let limit = state.config.max_body_bytes;
    body::read(declared, stream, limit).await.map_err(|e| match e {
        BodyError::TooLarge => {
            refused(&state, source, "too_large", 413, declared, &format!("the body is over MAX_BODY_BYTES ({limit})"));
            reject(ApiError::TooLarge { limit })
        }
        BodyError::Timeout => {
            let why = format!("the body did not arrive within {} s", BODY_READ_TIMEOUT.as_secs());
            refused(&state, source, "body_timeout", 408, declared, &why);
            reject(ApiError::BodyTimeout { secs: BODY_READ_TIMEOUT.as_secs() })
        }
        BodyError::Read(e) => {
            tracing::warn!(source = source.as_str(), status = 400, error = %e, "webhook refused: its body could not be read");
            reject(ApiError::BadRequest(format!("could not read the body: {e}")))
        }
    })
}

/// Verifies `body` under `source`'s keys and recognises it.
fn verify_and_recognise(
    state: &AppState,
    source: Source,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Delivery, (&'static str, ApiError)> {
    match source {
        Source::Lightspark => {
            state.config.signing_keys.verify(body, signature).map_err(|e| ("bad_signature", e.into()))?;
            crate::lightspark::webhook::recognise(body)
                .map_err(|e| ("malformed", ApiError::MalformedWebhook(e.to_string())))
        }
        Source::Grid => {
            let keys = state.config.grid_keys.as_ref().ok_or(("bad_signature", ApiError::Unauthorized))?;
            keys.verify(body, signature).map_err(|e| ("bad_signature", ApiError::GridSignature(e)))?;
            crate::grid::webhook::recognise(body).map_err(|e| ("malformed", ApiError::MalformedWebhook(e.to_string())))
        }
    }
}

async fn receive(
    source: Source,
    signature: Option<String>,
    body: Bytes,
    state: Arc<AppState>,
) -> Result<warp::reply::Response, Rejection> {
    let delivery = verify_and_recognise(&state, source, signature.as_deref(), &body).map_err(|(result, e)| {
        let bytes = Some(body.len() as u64);
        match result {
            // The signature errors are this program's own sentences.
            "bad_signature" => refused(&state, source, result, 401, bytes, &e.to_string()),
            // The parser's message may quote the body: say only what failed.
            _ => refused(&state, source, result, 400, bytes, "correctly signed, but not a JSON object"),
        }
        reject(e)
    })?;
    let event_type = delivery.event_type.unwrap_or_default();
    let data_missing = delivery.data_missing;
    let event = NewEvent {
        event_key: delivery.event_key,
        kind: EventKind::WebhookReceived,
        stream: delivery.stream,
        body: body.to_vec(),
        signature,
        sibling_prefix: delivery.sibling_prefix,
    };
    let span = tracing::info_span!(
        "webhook",
        source = source.as_str(),
        event_key = %event.event_key,
        event_type = %event_type,
        invitation_id = event.stream.as_ref().map_or("-", StreamId::as_str),
    );
    let live = state.live().inspect_err(|_| count(&state, source, "unavailable")).map_err(reject)?;
    let appended = live.ledger.append(event).instrument(span).await.map_err(|e| {
        count(&state, source, "unavailable");
        reject(ApiError::LedgerUnavailable(e))
    })?;
    let status = if appended.duplicate {
        count(&state, source, "duplicate");
        "duplicate"
    } else {
        count(&state, source, "accepted");
        if data_missing && !state.config.reconcile.fetch_configured(source) {
            state.unfetchable.note(source);
        }
        "accepted"
    };
    tracing::debug!(event_type = %event_type, seq = appended.seq, status, "webhook");
    Ok(warp::reply::json(&Accepted { status, seq: appended.seq }).into_response())
}

/// A warning, at most once a minute, that claims arrive without their
/// invitation while fetching is not configured: nothing can be paid for
/// them, and that must not go unnoticed.
#[derive(Default)]
pub struct UnfetchableClaims {
    /// Unix seconds of the last warning.
    last: AtomicI64,
    /// Claims since the last warning.
    since: AtomicU64,
}

impl UnfetchableClaims {
    fn note(&self, source: Source) {
        let n = self.since.fetch_add(1, Ordering::Relaxed) + 1;
        let now = chrono::Utc::now().timestamp();
        let last = self.last.load(Ordering::Relaxed);
        if now - last >= 60 && self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.since.store(0, Ordering::Relaxed);
            tracing::warn!(
                source = source.as_str(),
                claims = n,
                "claims arrive without their invitation and fetching is not configured: set {}; until then nothing is paid for them",
                source.fetch_settings()
            );
        }
    }
}
