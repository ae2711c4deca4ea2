//! A real HTTP fake of the Lightspark GraphQL endpoint, on `127.0.0.1:0`.
//!
//! It checks what the real API checks that matters to us (Basic credentials,
//! a `GetUmaInvitation` query with `variables.id`) and answers the shapes the
//! real API answers: `{"data": {"entity": ...}}`, `{"errors": [...]}`, 401.
//! Like the real API it can lag a webhook (`entity: null` before it knows
//! the invitation), change an invitation between calls (Lightspark assesses
//! incentives after the claim), and answer `{}` for an id of another entity
//! type (the query's `... on UmaInvitation` selects nothing from it).
//! Failures can be scheduled so that retry paths are exercised over real
//! sockets. It also creates invitations (the `create_uma_invitation` and
//! `create_uma_invitation_with_payment` mutations), which it then serves
//! by id like any other, and can answer a creation late (after the
//! client's timeout: created, but the client never hears). The server stops
//! when the `FakeLightspark` is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Filter;

/// The path of the real endpoint, so URLs built from the fake look like the
/// production setting.
pub const GRAPHQL_PATH: &str = "/graphql/server/2023-09-13";

#[derive(Default)]
struct State {
    /// Per id, the answers still to give: each call takes the first, the
    /// last stays.
    invitations: HashMap<String, Vec<Value>>,
    calls_by_id: HashMap<String, usize>,
    fail_next: usize,
    graphql_errors_next: usize,
    calls: usize,
    unauthorized_calls: usize,
    requests: Vec<Value>,
    /// Invitations created by mutations, in order.
    created: Vec<Value>,
    /// The next creations are made, then answered only after this long.
    slow_creates: Vec<Duration>,
    /// The next cancellations are refused with a GraphQL error.
    refuse_cancels: usize,
}

/// A running fake. Dropping it stops the server.
pub struct FakeLightspark {
    /// `http://127.0.0.1:PORT/graphql/server/2023-09-13`
    pub url: String,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeLightspark {
    /// Starts the fake; only `Basic base64(client_id:client_secret)` is let in.
    pub async fn start(client_id: &str, client_secret: &str) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let expected = base64_encode(format!("{client_id}:{client_secret}").as_bytes());
        let shared = state.clone();
        let route = warp::any()
            .and(warp::method())
            .and(warp::path::full())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::bytes())
            .then(
                move |method: warp::http::Method,
                      path: warp::path::FullPath,
                      auth: Option<String>,
                      body: bytes::Bytes| {
                    let (status, answer, delay) =
                        handle(&shared, &expected, &method, path.as_str(), auth.as_deref(), &body);
                    async move {
                        if let Some(delay) = delay {
                            tokio::time::sleep(delay).await;
                        }
                        warp::reply::with_status(warp::reply::json(&answer), status)
                    }
                },
            );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listener =
            tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the fake Lightspark API on 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(
            warp::serve(route)
                .incoming(listener)
                .graceful(async move {
                    let _ = rx.await;
                })
                .run(),
        );
        Self { url: format!("http://{addr}{GRAPHQL_PATH}"), state, shutdown: Some(tx) }
    }

    /// What `data.entity` is for `id` from now on (aliased spelling, see
    /// [`aliased_entity`]). Ids never set answer `entity: null`.
    pub fn set_invitation(&self, id: &str, entity: Value) {
        self.set_answers(id, vec![entity]);
    }

    /// What `data.entity` is for `id` on its next calls, in order; the last
    /// answer stays. `Value::Null` is "not known yet" (the API lagging the
    /// webhook).
    pub fn set_answers(&self, id: &str, answers: Vec<Value>) {
        assert!(!answers.is_empty());
        self.state.lock().unwrap().invitations.insert(id.to_owned(), answers);
    }

    /// `id` names an entity of another type: the query's
    /// `... on UmaInvitation` selects nothing, so the entity is `{}`.
    pub fn set_other_entity(&self, id: &str) {
        self.set_answers(id, vec![json!({})]);
    }

    /// Authorised `GetUmaInvitation` calls for `id`.
    pub fn calls_for(&self, id: &str) -> usize {
        self.state.lock().unwrap().calls_by_id.get(id).copied().unwrap_or(0)
    }

    /// The next `n` authorised calls answer HTTP 500.
    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    /// The next `n` authorised calls (after any scheduled 500s) answer HTTP
    /// 200 with `{"errors": [{"message": ...}]}`.
    pub fn fail_with_graphql_errors_next(&self, n: usize) {
        self.state.lock().unwrap().graphql_errors_next = n;
    }

    /// Every request received, failed and unauthorised ones included.
    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }

    /// The bodies received, in order; a body that is not JSON is recorded as
    /// a JSON string of its (lossy UTF-8) text.
    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The invitations created so far by mutations, as answered.
    pub fn created(&self) -> Vec<Value> {
        self.state.lock().unwrap().created.clone()
    }

    /// The next creation is made at once but answered only after `delay`:
    /// past the client's timeout, the invitation exists and the client does
    /// not know it.
    pub fn answer_next_create_after(&self, delay: Duration) {
        self.state.lock().unwrap().slow_creates.push(delay);
    }

    /// The next `cancel_uma_invitation` is refused, as Lightspark refuses
    /// to cancel an invitation claimed meanwhile.
    pub fn refuse_next_cancel(&self) {
        self.state.lock().unwrap().refuse_cancels += 1;
    }

    /// Requests refused with 401 (missing or wrong credentials).
    pub fn unauthorized_calls(&self) -> usize {
        self.state.lock().unwrap().unauthorized_calls
    }
}

impl Drop for FakeLightspark {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// One request, in the order the real API would judge it: credentials, then
/// scheduled failures, then the request itself.
fn handle(
    state: &Mutex<State>,
    expected_credentials: &str,
    method: &warp::http::Method,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> (StatusCode, Value, Option<Duration>) {
    let (status, answer) = judge(state, expected_credentials, method, path, auth, body);
    let mut s = state.lock().unwrap();
    let creation = answer.get("data").is_some_and(|d| {
        d.get("create_uma_invitation").is_some() || d.get("create_uma_invitation_with_payment").is_some()
    });
    let delay = (creation && !s.slow_creates.is_empty()).then(|| s.slow_creates.remove(0));
    (status, answer, delay)
}

fn judge(
    state: &Mutex<State>,
    expected_credentials: &str,
    method: &warp::http::Method,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> (StatusCode, Value) {
    let mut s = state.lock().unwrap();
    s.calls += 1;
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    s.requests.push(parsed.clone().unwrap_or_else(|| Value::String(String::from_utf8_lossy(body).into_owned())));

    if path != GRAPHQL_PATH {
        return (StatusCode::NOT_FOUND, errors("not found"));
    }
    if method != warp::http::Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, errors("method not allowed"));
    }
    let authorised = auth
        .and_then(|h| h.trim().split_once(' '))
        .is_some_and(|(scheme, token)| scheme.eq_ignore_ascii_case("basic") && token.trim() == expected_credentials);
    if !authorised {
        s.unauthorized_calls += 1;
        return (StatusCode::UNAUTHORIZED, errors("unauthorized"));
    }
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, errors("internal server error"));
    }
    if s.graphql_errors_next > 0 {
        s.graphql_errors_next -= 1;
        return (StatusCode::OK, errors("Something went wrong. Please try again later."));
    }
    let Some(request) = parsed else {
        return (StatusCode::BAD_REQUEST, errors("body is not JSON"));
    };
    let query = request.get("query").and_then(Value::as_str).unwrap_or_default();
    if query.contains("cancel_uma_invitation(input:") {
        return cancel(&mut s, &request);
    }
    for mutation in ["create_uma_invitation_with_payment", "create_uma_invitation"] {
        if query.contains(&format!("{mutation}(input:")) {
            return create(&mut s, mutation, &request);
        }
    }
    let query_ok = query.contains("GetUmaInvitation");
    if !query_ok {
        return (StatusCode::BAD_REQUEST, errors("expected the GetUmaInvitation query"));
    }
    let Some(id) = request.pointer("/variables/id").and_then(Value::as_str) else {
        return (StatusCode::BAD_REQUEST, errors("Variable \"$id\" of required type \"ID!\" was not provided."));
    };
    *s.calls_by_id.entry(id.to_owned()).or_default() += 1;
    let entity = match s.invitations.get_mut(id) {
        Some(answers) if answers.len() > 1 => answers.remove(0),
        Some(answers) => answers[0].clone(),
        None => Value::Null,
    };
    (StatusCode::OK, json!({ "data": { "entity": entity } }))
}

/// A creation: the invitation is made (and served by id from now on) from
/// the mutation's variables, as Lightspark would.
fn create(s: &mut State, mutation: &str, request: &Value) -> (StatusCode, Value) {
    let vars = &request["variables"];
    let Some(inviter) = vars["inviter_uma"].as_str() else {
        return (StatusCode::OK, errors("Variable \"$inviter_uma\" of required type \"String!\" was not provided."));
    };
    let n = s.created.len() + 1;
    let id = format!("UmaInvitation:created-{n:04}");
    let code = format!("NEW{n:04}");
    let mut entity = aliased_entity(&id, &code, "PENDING", "PENDING", None, None);
    entity["uma_invitation_inviter_uma"] = json!(inviter);
    if mutation == "create_uma_invitation_with_payment" {
        entity["uma_invitation_payment_amount"] = json!({
            "uma_currency_amount_value": vars["payment_amount"],
            "uma_currency_amount_currency": {
                "uma_currency_code": vars["payment_currency_code"],
                "uma_currency_decimals": vars["payment_currency_decimals"]
            }
        });
        entity["uma_invitation_expires_at"] = vars["expires_at"].clone();
    }
    s.invitations.insert(id, vec![entity.clone()]);
    s.created.push(entity.clone());
    (StatusCode::OK, json!({ "data": { mutation: { "invitation": entity } } }))
}

/// A cancellation by code: a `PENDING` invitation becomes `CANCELLED`;
/// any other, or a scheduled refusal, is a GraphQL error.
fn cancel(s: &mut State, request: &Value) -> (StatusCode, Value) {
    let code = request["variables"]["invite_code"].as_str().unwrap_or_default().to_owned();
    if s.refuse_cancels > 0 {
        s.refuse_cancels -= 1;
        return (StatusCode::OK, errors(&format!("Invitation {code} cannot be cancelled")));
    }
    let found = s.invitations.values_mut().find(|answers| answers[0]["uma_invitation_code"] == code.as_str());
    let Some(answers) = found else { return (StatusCode::OK, errors(&format!("Invitation {code} not found"))) };
    let last = answers.last_mut().expect("answers are never empty");
    if last["uma_invitation_status"] != "PENDING" {
        return (StatusCode::OK, errors(&format!("Invitation {code} cannot be cancelled")));
    }
    last["uma_invitation_status"] = json!("CANCELLED");
    last["uma_invitation_cancelled_at"] = json!("2026-12-02T00:00:00+00:00");
    last["uma_invitation_updated_at"] = json!("2026-12-02T00:00:00+00:00");
    let entity = last.clone();
    (StatusCode::OK, json!({ "data": { "cancel_uma_invitation": { "invitation": entity } } }))
}

fn errors(message: &str) -> Value {
    json!({ "errors": [{ "message": message }] })
}

/// An `UmaInvitation` as the `GetUmaInvitation` query returns it (every field
/// aliased, absent optionals as `null`), like
/// `fixtures/graphql/invitation_claimed.json`. The url is derived from the
/// code, the inviter is `$alice@vasp-a.example`, and the times are the
/// fixture's.
pub fn aliased_entity(
    id: &str,
    code: &str,
    status: &str,
    incentives: &str,
    amount: Option<(i64, &str)>,
    invitee: Option<&str>,
) -> Value {
    let payment_amount = match amount {
        Some((value, currency)) => json!({
            "uma_currency_amount_value": value,
            "uma_currency_amount_currency": {
                "uma_currency_code": currency,
                "uma_currency_decimals": 2
            }
        }),
        None => Value::Null,
    };
    json!({
        "__typename": "UmaInvitation",
        "uma_invitation_id": id,
        "uma_invitation_created_at": "2026-11-01T10:00:00+00:00",
        "uma_invitation_updated_at": "2026-11-01T12:00:00+00:00",
        "uma_invitation_code": code,
        "uma_invitation_url": format!("https://uma.me/i/{code}"),
        "uma_invitation_inviter_uma": "$alice@vasp-a.example",
        "uma_invitation_inviter_first_name": null,
        "uma_invitation_invitee_uma": invitee,
        "uma_invitation_status": status,
        "uma_invitation_incentives_status": incentives,
        "uma_invitation_incentives_ineligibility_reason": null,
        "uma_invitation_payment_amount": payment_amount,
        "uma_invitation_cancelled_at": null,
        "uma_invitation_expires_at": null
    })
}

/// The same invitation with plain nested names, as SDKs that query without
/// aliases receive it (`id`, `payment_amount: {value, currency: {code,
/// decimals}}`).
pub fn plain_entity(
    id: &str,
    code: &str,
    status: &str,
    incentives: &str,
    amount: Option<(i64, &str, u32)>,
    invitee: Option<&str>,
) -> Value {
    json!({
        "__typename": "UmaInvitation",
        "id": id,
        "created_at": "2026-11-01T10:00:00+00:00",
        "updated_at": "2026-11-01T12:00:00+00:00",
        "code": code,
        "url": format!("https://uma.me/i/{code}"),
        "inviter_uma": "$alice@vasp-a.example",
        "inviter_first_name": "Alice",
        "invitee_uma": invitee,
        "status": status,
        "incentives_status": incentives,
        "incentives_ineligibility_reason": null,
        "payment_amount": amount.map(|(value, code, decimals)| json!({
            "value": value, "currency": {"code": code, "decimals": decimals}
        })),
        "cancelled_at": null,
        "expires_at": null
    })
}

/// Standard base64 with padding (RFC 4648), straight from the `base64`
/// crate so that the fake does not go through the library's code. Public so
/// that tests can look for the encoded credentials in error texts.
pub fn base64_encode(input: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(input)
}
