//! A real HTTP fake of the VASP's payment platform (and of the inviter
//! notification endpoint: same behaviour, use a second instance or any other
//! path on the same one). It is idempotent like Stripe and can misbehave on cue.
//!
//! Order of evaluation for every request (every request is recorded):
//! 1. injected fault (`fail_next` queue first, else the `fail_first_attempts`
//!    rule when this is the first request ever seen for its key):
//!    `Status`/`Hang`/`Drop` are applied without executing anything;
//!    `ExecuteThenStatus` continues and only replaces the final status;
//! 2. signature (when `require_signature` was called): missing/wrong → 401;
//! 3. missing `Idempotency-Key` → 400; body that is not JSON → 400;
//! 4. key already executed: same body → replay (same `payment_id`),
//!    different body → 422; new key → executed as `pay_<n>`.
//!
//! Any path and only `POST` are served (other methods: 405).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use invitation_ledger::rng::SplitMix;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub idempotency_key: Option<String>,
    pub ledger_signature: Option<String>,
    /// The parsed JSON body (`Value::Null` when the body is not JSON).
    pub body: serde_json::Value,
    pub raw_body: Vec<u8>,
    /// Status sent, 0 if dropped/hung.
    pub answered: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status (e.g. 500, 400, 409, 429) without executing.
    Status(u16),
    /// Accept the request and never answer (sleep for an hour).
    Hang,
    /// Close the connection without any HTTP answer.
    Drop,
    /// Perform the payment (record it as executed) but answer this status —
    /// simulates a lost answer.
    ExecuteThenStatus(u16),
}

#[derive(Debug)]
struct FirstAttemptRule {
    p: f64,
    rng: SplitMix,
    fault: Fault,
}

#[derive(Debug, Default)]
struct State {
    requests: Vec<RecordedRequest>,
    queue: VecDeque<Fault>,
    first_rule: Option<FirstAttemptRule>,
    /// Every idempotency key ever received (faulted or not).
    seen_keys: HashSet<String>,
    /// key → (body, payment_id), for executed keys.
    executed_by_key: HashMap<String, (serde_json::Value, String)>,
    /// Executed payments in execution order.
    executed: Vec<(String, serde_json::Value)>,
    replays: usize,
    next_payment: u64,
    signing_key: Option<String>,
}

/// What the connection should do once the decision is made.
enum Action {
    Answer(u16, serde_json::Value),
    Hang,
    Drop,
}

pub struct FakePlatform {
    /// e.g. `http://127.0.0.1:PORT/payments` (any path is served).
    pub url: String,
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

/// Error returned by the service to make hyper close the connection without
/// writing a response.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault: drop the connection")
    }
}

impl std::error::Error for DropConnection {}

impl FakePlatform {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake platform");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let accept = tokio::spawn(async move {
            // Connection tasks live in the set: aborting the accept task drops
            // the set, which aborts every connection (hung ones included).
            let mut conns = JoinSet::new();
            loop {
                while conns.try_join_next().is_some() {}
                let (stream, _) = match listener.accept().await {
                    Ok(s) => s,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let st = st.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    // An Err here is either a client going away or our Drop
                    // fault; either way the stream is dropped (closed).
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        FakePlatform { url: format!("http://{addr}/payments"), addr, state, accept }
    }

    /// `http://127.0.0.1:PORT` + `path` (e.g. `/notify`), served identically.
    pub fn url_for(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Apply `fault` to the next `n` requests (queue; each request pops one).
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut s = self.state.lock().unwrap();
        s.queue.extend(std::iter::repeat_n(fault, n));
    }

    /// For each FIRST request seen for an idempotency key, fail it with
    /// probability `p` (0..=1) using a deterministic RNG seeded with `seed`.
    /// Later requests with the same key are not affected by this rule.
    /// Replaces any previous rule.
    pub fn fail_first_attempts(&self, p: f64, seed: u64, fault: Fault) {
        let mut s = self.state.lock().unwrap();
        s.first_rule = Some(FirstAttemptRule { p, rng: SplitMix::seeded(seed), fault });
    }

    /// Every HTTP request received, in order (including failed ones).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Payments executed, one per distinct idempotency key, in execution order.
    pub fn executed(&self) -> Vec<(String, serde_json::Value)> {
        self.state.lock().unwrap().executed.clone()
    }

    /// How many requests arrived with an already-executed key (and the same
    /// body) and were answered with the original result.
    pub fn replays(&self) -> usize {
        self.state.lock().unwrap().replays
    }

    /// Verify `ledger-signature` (hex HMAC-SHA256 of the raw body) with `key`;
    /// a missing or wrong signature answers 401 and is not executed.
    pub fn require_signature(&self, key: &str) {
        self.state.lock().unwrap().signing_key = Some(key.to_owned());
    }
}

impl Drop for FakePlatform {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(|s| s.to_owned())
}

fn signature_ok(key: &str, body: &[u8], sig: Option<&str>) -> bool {
    let Some(sig) = sig else { return false };
    let Ok(sig) = hex::decode(sig.trim()) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("hmac accepts any key");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn err(status: u16, msg: &str) -> Action {
    Action::Answer(status, serde_json::json!({ "error": msg }))
}

/// Decide the outcome of one request atomically (under the lock), recording
/// it and any execution.
fn decide(s: &mut State, key: Option<String>, sig: Option<String>, raw: Vec<u8>) -> (usize, Action) {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&raw).ok();
    let index = s.requests.len();
    s.requests.push(RecordedRequest {
        idempotency_key: key.clone(),
        ledger_signature: sig.clone(),
        body: parsed.clone().unwrap_or(serde_json::Value::Null),
        raw_body: raw.clone(),
        answered: 0,
    });

    let first_for_key = match &key {
        Some(k) => s.seen_keys.insert(k.clone()),
        None => false,
    };
    let fault = match s.queue.pop_front() {
        Some(f) => Some(f),
        None if first_for_key => match &mut s.first_rule {
            Some(rule) => (rule.rng.unit() < rule.p).then_some(rule.fault),
            None => None,
        },
        None => None,
    };
    let final_status = match fault {
        Some(Fault::Status(code)) => return (index, err(code, "injected fault")),
        Some(Fault::Hang) => return (index, Action::Hang),
        Some(Fault::Drop) => return (index, Action::Drop),
        Some(Fault::ExecuteThenStatus(code)) => Some(code),
        None => None,
    };

    if let Some(signing_key) = &s.signing_key {
        if !signature_ok(signing_key, &raw, sig.as_deref()) {
            return (index, err(401, "invalid signature"));
        }
    }
    let Some(key) = key else { return (index, err(400, "missing idempotency key")) };
    let Some(body) = parsed else { return (index, err(400, "body is not json")) };

    let payment_id = match s.executed_by_key.get(&key) {
        Some((original, _)) if *original != body => {
            return (index, err(422, "idempotency key reused with different parameters"));
        }
        Some((_, payment_id)) => {
            let payment_id = payment_id.clone();
            s.replays += 1;
            payment_id
        }
        None => {
            s.next_payment += 1;
            let payment_id = format!("pay_{}", s.next_payment);
            s.executed_by_key.insert(key.clone(), (body.clone(), payment_id.clone()));
            s.executed.push((key, body));
            payment_id
        }
    };
    match final_status {
        Some(code) => (index, err(code, "injected fault after execution")),
        None => (index, Action::Answer(200, serde_json::json!({ "payment_id": payment_id }))),
    }
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, DropConnection> {
    if req.method() != Method::POST {
        return Ok(json_response(405, &serde_json::json!({ "error": "method not allowed" })));
    }
    let key = header(&req, "idempotency-key");
    let sig = header(&req, "ledger-signature");
    let raw = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return Err(DropConnection),
    };
    let action = {
        let mut s = state.lock().unwrap();
        let (index, action) = decide(&mut s, key, sig, raw);
        if let Action::Answer(status, _) = &action {
            s.requests[index].answered = *status;
        }
        action
    };
    match action {
        Action::Answer(status, body) => Ok(json_response(status, &body)),
        Action::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Err(DropConnection)
        }
        Action::Drop => Err(DropConnection),
    }
}

fn json_response(status: u16, body: &serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}
