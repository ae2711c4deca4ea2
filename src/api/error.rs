//! The one place where failures become HTTP answers.
//!
//! Every rejection ends in [`recover`], which answers
//! `{"error": "<code>", "message": "<sentence>"}`. Internal errors are logged
//! with their cause chain and answered as an opaque 500.

use std::convert::Infallible;

use warp::http::StatusCode;
use warp::reject::Reject;
use warp::{Rejection, Reply};

use crate::ledger::LedgerError;
use crate::lightspark::signature::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    GridSignature(crate::grid::signature::GridSignatureError),
    #[error("{0}")]
    MalformedWebhook(String),
    #[error("the body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body did not arrive within {secs} s of the headers")]
    BodyTimeout { secs: u64 },
    #[error("the ledger cannot be written right now; retry later")]
    LedgerUnavailable(#[source] LedgerError),
    /// Derived state (the projections) lags behind what the ledger holds:
    /// the answer would be stale or a false "unknown".
    #[error("{0}")]
    CatchingUp(String),
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("without READ_API_TOKEN only requests to a loopback host name (localhost, 127.0.0.1, [::1]) are served; set a token to serve others")]
    ForbiddenHost,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Reject for ApiError {}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Signature(SignatureError::Missing) => (StatusCode::UNAUTHORIZED, "missing_signature"),
            ApiError::Signature(_) => (StatusCode::UNAUTHORIZED, "bad_signature"),
            ApiError::GridSignature(crate::grid::signature::GridSignatureError::Missing) => {
                (StatusCode::UNAUTHORIZED, "missing_signature")
            }
            ApiError::GridSignature(_) => (StatusCode::UNAUTHORIZED, "bad_signature"),
            ApiError::MalformedWebhook(_) => (StatusCode::BAD_REQUEST, "malformed_webhook"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::BodyTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            ApiError::LedgerUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable"),
            ApiError::CatchingUp(_) => (StatusCode::SERVICE_UNAVAILABLE, "catching_up"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::ForbiddenHost => (StatusCode::FORBIDDEN, "forbidden_host"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// Seconds a client should wait before asking again, for the answers that
/// say "not now": Lightspark retries a webhook on its own schedule, but
/// other clients (and load balancers) read it.
const RETRY_AFTER_LEDGER_SECS: u32 = 5;
pub(crate) const RETRY_AFTER_CATCHING_UP_SECS: u32 = 1;

/// Helper to turn an [`ApiError`] into a rejection.
pub fn reject(e: impl Into<ApiError>) -> Rejection {
    warp::reject::custom(e.into())
}

/// Builds the JSON error answer.
pub fn error_reply(status: StatusCode, code: &str, message: &str) -> warp::reply::Response {
    let body = serde_json::json!({ "error": code, "message": message });
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// Maps every rejection to a JSON answer.
pub async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    if let Some(e) = rejection.find::<ApiError>() {
        let (status, code) = e.parts();
        let message = match e {
            ApiError::Internal(inner) => {
                tracing::error!(error = %format!("{inner:#}"), "internal error");
                "internal error".to_owned()
            }
            ApiError::LedgerUnavailable(inner) => {
                // The writer logs when appends start and stop failing, with
                // how many were refused: a line per webhook would flood.
                tracing::debug!(error = %cause_chain(inner), "ledger unavailable");
                e.to_string()
            }
            _ => e.to_string(),
        };
        let reply = error_reply(status, code, &message);
        let retry_after = match e {
            ApiError::LedgerUnavailable(_) => Some(RETRY_AFTER_LEDGER_SECS),
            ApiError::CatchingUp(_) => Some(RETRY_AFTER_CATCHING_UP_SECS),
            _ => None,
        };
        return Ok(match retry_after {
            Some(secs) => warp::reply::with_header(reply, "retry-after", secs.to_string()).into_response(),
            None => reply,
        });
    }
    if rejection.is_not_found() {
        return Ok(error_reply(StatusCode::NOT_FOUND, "not_found", "no such route"));
    }
    if let Some(h) = rejection.find::<warp::reject::InvalidHeader>() {
        if h.name() == crate::lightspark::signature::SIGNATURE_HEADER {
            return Ok(error_reply(
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                "the lightspark-signature header is not valid text",
            ));
        }
        return Ok(error_reply(StatusCode::BAD_REQUEST, "bad_request", &format!("invalid header {}", h.name())));
    }
    if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        return Ok(error_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        ));
    }
    if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        return Ok(error_reply(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()));
    }
    if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        return Ok(error_reply(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the body is too large"));
    }
    tracing::debug!(?rejection, "unhandled rejection");
    Ok(error_reply(StatusCode::BAD_REQUEST, "bad_request", "the request could not be understood"))
}
