//! The HTTP surface: webhook ingest, health, and (behind a token) the read API.

pub mod error;
pub mod read;
pub mod webhook;

use std::sync::Arc;

use warp::http::StatusCode;
use warp::{Filter, Reply};

use crate::config::ServiceConfig;
use crate::ledger::LedgerWriter;

/// What every handler may need. Built once by [`crate::serve`].
pub struct AppState {
    pub config: ServiceConfig,
    pub writer: LedgerWriter,
    pub webhooks: webhook::WebhookCounters,
    pub reads: Arc<read::ReadPool>,
}

/// All routes, with errors mapped by [`error::recover`].
pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());
    let ready_state = state.clone();
    let readyz = warp::path!("readyz").and(warp::get()).then(move || {
        let state = ready_state.clone();
        async move {
            match state.writer.probe().await {
                Ok(()) => warp::reply::json(&serde_json::json!({"status": "ready"})).into_response(),
                Err(e) => {
                    tracing::warn!(error = %e, "not ready: the ledger cannot be written");
                    error::error_reply(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the ledger database cannot be written")
                }
            }
        }
    });
    webhook::routes(state.clone())
        .or(read::routes(state))
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .recover(error::recover)
        .unify()
}
