//! `GET /v1/openapi.json`: the OpenAPI 3 description of every route, kept
//! in the repository as `openapi.json` and served byte for byte (behind the
//! same token as the rest of `/v1`). `tests/openapi.rs` probes the running
//! service to keep the document and the router in step.

use std::sync::Arc;

use warp::{Filter, Rejection, Reply};

use super::access::{read_access, Access};
use super::AppState;

/// The document, embedded at compile time.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("v1" / "openapi.json")
        .and(warp::get())
        .and(read_access(Access::new(state.config.read_api_token.as_ref())))
        .map(|| warp::reply::with_header(DOCUMENT, "content-type", "application/json").into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_document_is_openapi_3_json() {
        let v: serde_json::Value = serde_json::from_str(super::DOCUMENT).expect("openapi.json is JSON");
        assert!(v["openapi"].as_str().is_some_and(|s| s.starts_with("3.")), "{}", v["openapi"]);
    }
}
