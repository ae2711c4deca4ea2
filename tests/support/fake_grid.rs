//! A real HTTP fake of the Grid invitations API on `127.0.0.1:0`: create
//! (`POST /invitations`), fetch by code (`GET /invitations/{code}`) and
//! cancel (`POST /invitations/{code}/cancel`, `PENDING` only, as Grid
//! does), behind HTTP Basic with the API token's id and secret. It can be
//! told to claim an invitation, as an invitee at Grid would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Filter;

#[derive(Default)]
struct State {
    invitations: BTreeMap<String, Value>,
    requests: Vec<(String, String, Value)>,
}

/// A running fake; the server stops with the test's runtime.
pub struct FakeGrid {
    /// `http://127.0.0.1:PORT/grid/2025-10-13`
    pub url: String,
    state: Arc<Mutex<State>>,
}

type Reply = warp::reply::WithStatus<warp::reply::Json>;

fn reply(status: StatusCode, body: Value) -> Reply {
    warp::reply::with_status(warp::reply::json(&body), status)
}

impl FakeGrid {
    pub async fn start(token: &str, secret: &str) -> Self {
        let expected =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{token}:{secret}")));
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let route = warp::path::full()
            .and(warp::method())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::bytes())
            .map(move |path: warp::path::FullPath, method: warp::http::Method, auth: Option<String>, body: bytes::Bytes| {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mut s = shared.lock().unwrap();
                s.requests.push((method.to_string(), path.as_str().to_owned(), body.clone()));
                if auth.as_deref() != Some(expected.as_str()) {
                    return reply(StatusCode::UNAUTHORIZED, json!({"code": "UNAUTHORIZED", "message": "bad credentials"}));
                }
                let rest = path.as_str().strip_prefix("/grid/2025-10-13/invitations").unwrap_or("?");
                let parts: Vec<&str> = rest.trim_start_matches('/').split('/').filter(|p| !p.is_empty()).collect();
                match (method.as_str(), parts.as_slice()) {
                    ("POST", []) => {
                        let code = format!("GRID{:04}", s.invitations.len() + 1);
                        let mut inv = json!({
                            "code": code, "createdAt": "2026-12-01T00:00:00Z",
                            "url": format!("https://uma.me/i/{code}"),
                            "inviterUma": body["inviterUma"], "status": "PENDING"
                        });
                        if let Some(a) = body.get("amountToSend") {
                            inv["amountToSend"] = json!({"amount": a, "currency": {"code": "USD", "name": "US Dollar", "symbol": "$", "decimals": 2}});
                        }
                        if let Some(t) = body.get("expiresAt") {
                            inv["expiresAt"] = t.clone();
                        }
                        s.invitations.insert(code, inv.clone());
                        reply(StatusCode::CREATED, inv)
                    }
                    ("GET", [code]) => match s.invitations.get(*code) {
                        Some(inv) => reply(StatusCode::OK, inv.clone()),
                        None => reply(StatusCode::NOT_FOUND, json!({"code": "INVITATION_NOT_FOUND", "message": "not found"})),
                    },
                    ("POST", [code, "cancel"]) => match s.invitations.get_mut(*code) {
                        Some(inv) if inv["status"] == "PENDING" => {
                            inv["status"] = json!("CANCELLED");
                            reply(StatusCode::OK, inv.clone())
                        }
                        Some(_) => reply(
                            StatusCode::BAD_REQUEST,
                            json!({"code": "INVALID_INVITATION_STATUS", "message": "Only PENDING invitations can be cancelled"}),
                        ),
                        None => reply(StatusCode::NOT_FOUND, json!({"code": "INVITATION_NOT_FOUND", "message": "not found"})),
                    },
                    _ => reply(StatusCode::NOT_FOUND, json!({"code": "NOT_FOUND", "message": "no such route"})),
                }
            });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the fake Grid API");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self { url: format!("http://{addr}/grid/2025-10-13"), state }
    }

    /// Claims `code` at Grid by `invitee`, as an invitee would.
    pub fn claim(&self, code: &str, invitee: &str) {
        let mut s = self.state.lock().unwrap();
        let inv = s.invitations.get_mut(code).expect("an invitation the fake created");
        inv["status"] = json!("CLAIMED");
        inv["inviteeUma"] = json!(invitee);
        inv["claimedAt"] = json!("2026-12-02T00:00:00Z");
    }

    /// Every request: method, path, JSON body (`Null` when none).
    pub fn requests(&self) -> Vec<(String, String, Value)> {
        self.state.lock().unwrap().requests.clone()
    }
}
