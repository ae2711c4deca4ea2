//! A real HTTP fake of the VASP's payment platform (and of the inviter
//! notification endpoint: same behaviour, use a second instance or any other
//! path on the same one). It is idempotent like Stripe and can misbehave on cue.
//!
//! Order of evaluation for every request (every request is recorded):
//! 1. injected fault (`fail_next` queue first, else the `fail_first_attempts`
//!    rule when this is the first request ever seen for its key):
//!    `Status`/`Hang`/`Drop`/`HugeAnswer` are applied without executing
//!    anything; `ExecuteThenStatus` and `ExecuteThenHugeAnswer` continue and
//!    only replace the final answer;
//! 2. signature (when `require_signature` was called): missing/wrong → 401;
//! 3. missing `Idempotency-Key` → 400; body that is not JSON → 400;
//! 4. key in progress (its first request is still being processed, see
//!    below): same body → 409 ("a request with this key is in progress",
//!    as the IETF idempotency-key draft says), different body → 422;
//! 5. key already executed: same body → replay (same status and
//!    `payment_id`), different body → 422; new key → executed as
//!    `pay_<n>`.
//!
//! Processing a new key takes no time unless `slow_executions` says
//! otherwise: then the key is in progress for that long, the payment is
//! executed at the end, and the platform keeps processing even if the
//! client gave up (timed out or went away) meanwhile, as a real platform
//! does; only then is its result stored for replays. A `Hang` holds no key:
//! the request never reaches processing.
//!
//! Any path and only `POST` are served (other methods: 405).
//!
//! Its own tests are at the end of this file, so that every binary that
//! relies on the fake also checks it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use invitation_ledger::lightspark::signature::sign;
use invitation_ledger::rng::SplitMix;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub idempotency_key: Option<String>,
    pub ledger_signature: Option<String>,
    /// The parsed JSON body (`Value::Null` when the body is not JSON).
    pub body: serde_json::Value,
    pub raw_body: Vec<u8>,
    /// Status sent, 0 if dropped/hung. For a request processed slowly, the
    /// status the platform answered at the end of the processing, whether
    /// or not the client was still waiting for it.
    pub answered: u16,
    /// When the request (its whole body) arrived.
    pub received_at: Instant,
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
    /// Answer 200 with a JSON body of this many bytes, streamed as it is
    /// written (never held in memory), without executing: an endpoint that
    /// answers far more than anyone should read (any request, with or
    /// without a key: a GraphQL endpoint too).
    HugeAnswer(u64),
    /// Perform the payment and answer 200 with a JSON body of this many
    /// bytes, streamed likewise, whose `payment_id` comes after the
    /// padding.
    ExecuteThenHugeAnswer(u64),
}

/// How a request's final answer is replaced by a fault that lets it
/// continue.
#[derive(Clone, Copy, Debug)]
enum Replace {
    Status(u16),
    Huge(u64),
}

#[derive(Debug)]
struct FirstAttemptRule {
    p: f64,
    rng: SplitMix,
    fault: Fault,
}

/// Which new keys take time to process, and how long.
#[derive(Debug)]
struct SlowRule {
    p: f64,
    rng: SplitMix,
    delay: Duration,
}

#[derive(Debug, Default)]
struct State {
    requests: Vec<RecordedRequest>,
    queue: VecDeque<Fault>,
    /// Faults for the next requests whose body's `kind` is the key, taken
    /// before the general queue: one kind of notification can fail while
    /// another sent to the same endpoint goes through.
    queue_by_kind: HashMap<String, VecDeque<Fault>>,
    first_rule: Option<FirstAttemptRule>,
    slow_rule: Option<SlowRule>,
    /// key → body, for keys whose first request is being processed.
    in_progress: HashMap<String, serde_json::Value>,
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
    /// 200, then `{"padding":"…","payment_id":…}` of about this many bytes.
    Huge(u64, Option<String>),
    Hang,
    Drop,
    /// Process the new key `key` (body `body`) for `delay`, then execute it
    /// and answer, replaced as `replace` says.
    Process {
        key: String,
        body: serde_json::Value,
        delay: Duration,
        replace: Option<Replace>,
    },
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

    /// Apply `fault` to the next `n` requests whose JSON body's `kind` is
    /// `kind` (e.g. `invitee_payment_failed`), whatever comes between them.
    #[allow(dead_code)] // the storm and browser binaries include this file and never use it
    pub fn fail_next_of_kind(&self, kind: &str, n: usize, fault: Fault) {
        let mut s = self.state.lock().unwrap();
        s.queue_by_kind.entry(kind.to_owned()).or_default().extend(std::iter::repeat_n(fault, n));
    }

    /// Drops every fault still queued: the platform answers normally from
    /// now on (a rule set by `fail_first_attempts` stays).
    #[allow(dead_code)] // the storm and browser binaries include this file and never clear faults
    pub fn clear_faults(&self) {
        let mut s = self.state.lock().unwrap();
        s.queue.clear();
        s.queue_by_kind.clear();
    }

    /// For each FIRST request seen for an idempotency key, fail it with
    /// probability `p` (0..=1) using a deterministic RNG seeded with `seed`.
    /// Later requests with the same key are not affected by this rule.
    /// Replaces any previous rule.
    pub fn fail_first_attempts(&self, p: f64, seed: u64, fault: Fault) {
        let mut s = self.state.lock().unwrap();
        s.first_rule = Some(FirstAttemptRule { p, rng: SplitMix::seeded(seed), fault });
    }

    /// Each new key is processed for `delay` with probability `p` (0..=1),
    /// drawn by a deterministic RNG seeded with `seed`: meanwhile the key
    /// is in progress (another request with it gets 409), then the payment
    /// is executed and its result stored, whether or not the client still
    /// waits. `p = 1` makes every execution slow. Replaces any previous rule.
    pub fn slow_executions(&self, p: f64, seed: u64, delay: Duration) {
        let mut s = self.state.lock().unwrap();
        s.slow_rule = Some(SlowRule { p, rng: SplitMix::seeded(seed), delay });
    }

    /// How many requests were answered 409 because their key was in progress.
    pub fn conflicts(&self) -> usize {
        self.state.lock().unwrap().requests.iter().filter(|r| r.answered == 409).count()
    }

    /// Every HTTP request received, in order (including failed ones).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Payments executed, one per distinct idempotency key, in execution order.
    pub fn executed(&self) -> Vec<(String, serde_json::Value)> {
        self.state.lock().unwrap().executed.clone()
    }

    /// How many payments were executed for each invitation (by the
    /// request's `invitation_id`).
    #[allow(dead_code)] // the storm and browser binaries include this file and never use it
    pub fn executed_by_invitation(&self) -> std::collections::BTreeMap<String, usize> {
        let mut n = std::collections::BTreeMap::new();
        for (_, body) in &self.state.lock().unwrap().executed {
            *n.entry(body["invitation_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        n
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

/// Whether `sig` is the hex HMAC-SHA256 of `body` under `key`, in either
/// letter case (the library's own `sign` makes the expected one).
fn signature_ok(key: &str, body: &[u8], sig: Option<&str>) -> bool {
    sig.is_some_and(|sig| sig.trim().eq_ignore_ascii_case(&sign(key.as_bytes(), body)))
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
        received_at: Instant::now(),
    });

    let first_for_key = match &key {
        Some(k) => s.seen_keys.insert(k.clone()),
        None => false,
    };
    let of_kind = parsed
        .as_ref()
        .and_then(|b| b.get("kind")?.as_str())
        .and_then(|kind| s.queue_by_kind.get_mut(kind)?.pop_front());
    let fault = match of_kind.or_else(|| s.queue.pop_front()) {
        Some(f) => Some(f),
        None if first_for_key => match &mut s.first_rule {
            Some(rule) => (rule.rng.unit() < rule.p).then_some(rule.fault),
            None => None,
        },
        None => None,
    };
    let replace = match fault {
        Some(Fault::Status(code)) => return (index, err(code, "injected fault")),
        Some(Fault::Hang) => return (index, Action::Hang),
        Some(Fault::Drop) => return (index, Action::Drop),
        Some(Fault::HugeAnswer(bytes)) => return (index, Action::Huge(bytes, None)),
        Some(Fault::ExecuteThenStatus(code)) => Some(Replace::Status(code)),
        Some(Fault::ExecuteThenHugeAnswer(bytes)) => Some(Replace::Huge(bytes)),
        None => None,
    };

    if let Some(signing_key) = &s.signing_key {
        if !signature_ok(signing_key, &raw, sig.as_deref()) {
            return (index, err(401, "invalid signature"));
        }
    }
    let Some(key) = key else { return (index, err(400, "missing idempotency key")) };
    let Some(body) = parsed else { return (index, err(400, "body is not json")) };

    if let Some(original) = s.in_progress.get(&key) {
        return match *original == body {
            true => (index, err(409, "a request with this key is in progress")),
            false => (index, err(422, "idempotency key reused with different parameters")),
        };
    }
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
            let slow = s.slow_rule.as_mut().and_then(|rule| (rule.rng.unit() < rule.p).then_some(rule.delay));
            if let Some(delay) = slow {
                s.in_progress.insert(key.clone(), body.clone());
                return (index, Action::Process { key, body, delay, replace });
            }
            execute(s, key, body)
        }
    };
    (index, answer(payment_id, replace))
}

/// Executes the new key `key`: the payment is made, and its result stored
/// for replays. Returns its payment id.
fn execute(s: &mut State, key: String, body: serde_json::Value) -> String {
    s.next_payment += 1;
    let payment_id = format!("pay_{}", s.next_payment);
    s.executed_by_key.insert(key.clone(), (body.clone(), payment_id.clone()));
    s.executed.push((key, body));
    payment_id
}

/// The answer to an executed (or replayed) payment.
fn answer(payment_id: String, replace: Option<Replace>) -> Action {
    match replace {
        Some(Replace::Status(code)) => err(code, "injected fault after execution"),
        Some(Replace::Huge(bytes)) => Action::Huge(bytes, Some(payment_id)),
        None => Action::Answer(200, serde_json::json!({ "payment_id": payment_id })),
    }
}

type Answer = Response<Either<Full<Bytes>, Padded>>;

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Result<Answer, DropConnection> {
    if req.method() != Method::POST {
        return Ok(json_response(405, &serde_json::json!({ "error": "method not allowed" })));
    }
    let key = header(&req, "idempotency-key");
    let sig = header(&req, "ledger-signature");
    let raw = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return Err(DropConnection),
    };
    let (index, mut action) = {
        let mut s = state.lock().unwrap();
        decide(&mut s, key, sig, raw)
    };
    if let Action::Process { key, body, delay, replace } = action {
        // The processing is a task of its own: it goes on, and executes,
        // even when the client gives up and this connection is dropped.
        let state = state.clone();
        let processing = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut s = state.lock().unwrap();
            s.in_progress.remove(&key);
            let payment_id = execute(&mut s, key, body);
            let action = answer(payment_id, replace);
            s.requests[index].answered = status_of(&action);
            action
        });
        action = processing.await.map_err(|_| DropConnection)?;
    } else {
        state.lock().unwrap().requests[index].answered = status_of(&action);
    }
    match action {
        Action::Answer(status, body) => Ok(json_response(status, &body)),
        Action::Huge(bytes, payment_id) => Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Either::Right(Padded::new(bytes, payment_id)))
            .expect("valid response")),
        Action::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Err(DropConnection)
        }
        Action::Drop | Action::Process { .. } => Err(DropConnection),
    }
}

/// The status `action` answers; 0 for none.
fn status_of(action: &Action) -> u16 {
    match action {
        Action::Answer(status, _) => *status,
        Action::Huge(..) => 200,
        _ => 0,
    }
}

fn json_response(status: u16, body: &serde_json::Value) -> Answer {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Either::Left(Full::new(Bytes::from(body.to_string()))))
        .expect("valid response")
}

/// A JSON answer of `{"padding":"xxx…"` + (`,"payment_id":"…"`) + `}`,
/// about `len` bytes long, produced chunk by chunk as the connection takes
/// them: every chunk of padding is the same shared 64 KiB, so even a
/// 600 MiB answer costs the fake nothing in memory.
pub struct Padded {
    /// Padding bytes still to send.
    left: u64,
    head: Option<Bytes>,
    tail: Option<Bytes>,
    chunk: Bytes,
}

impl Padded {
    fn new(len: u64, payment_id: Option<String>) -> Self {
        let tail = match payment_id {
            Some(id) => format!(r#"","payment_id":"{id}"}}"#),
            None => r#""}"#.to_owned(),
        };
        let head = r#"{"padding":""#;
        let left = len.saturating_sub((head.len() + tail.len()) as u64);
        Padded {
            left,
            head: Some(Bytes::from_static(head.as_bytes())),
            tail: Some(Bytes::from(tail)),
            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
        }
    }
}

impl Body for Padded {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if self.left > 0 {
            let n = self.left.min(self.chunk.len() as u64) as usize;
            self.left -= n as u64;
            return Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))));
        }
        Poll::Ready(self.tail.take().map(|t| Ok(Frame::data(t))))
    }

    fn size_hint(&self) -> SizeHint {
        let ends = self.head.as_ref().map_or(0, Bytes::len) + self.tail.as_ref().map_or(0, Bytes::len);
        SizeHint::with_exact(self.left + ends as u64)
    }
}

/// Tests of the fake itself: it is test infrastructure, so it has to be
/// trustworthy.
#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use invitation_ledger::lightspark::signature::sign;
    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{FakePlatform, Fault};

    fn payment(invitation: &str, amount: i64) -> Value {
        json!({
            "idempotency_key": format!("{invitation}:invitee_payment"),
            "kind": "invitee_payment",
            "invitation_id": invitation,
            "invitation_code": "CODE",
            "receiver_uma": "$invitee@vasp.example",
            "amount": {"value": amount, "currency": "USD"},
        })
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
    }

    async fn post(
        client: &reqwest::Client,
        url: &str,
        key: Option<&str>,
        body: &Value,
        signature: Option<&str>,
    ) -> reqwest::Result<(u16, Value)> {
        let mut req =
            client.post(url).header("content-type", "application/json").body(serde_json::to_vec(body).unwrap());
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        if let Some(sig) = signature {
            req = req.header("ledger-signature", sig);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let json = resp.json::<Value>().await?;
        Ok((status, json))
    }

    #[tokio::test]
    async fn a_new_key_is_executed_once_and_replays_answer_the_same_payment_id() {
        let fake = FakePlatform::start().await;
        let c = client();
        let a = payment("inv_a", 100);
        let b = payment("inv_b", 200);

        let (s1, r1) = post(&c, &fake.url, Some("k-a"), &a, None).await.unwrap();
        let (s2, r2) = post(&c, &fake.url, Some("k-a"), &a, None).await.unwrap();
        let (s3, r3) = post(&c, &fake.url, Some("k-b"), &b, None).await.unwrap();
        let (s4, r4) = post(&c, &fake.url, Some("k-a"), &a, None).await.unwrap();

        assert_eq!((s1, s2, s3, s4), (200, 200, 200, 200));
        assert_eq!(r1, json!({"payment_id": "pay_1"}));
        assert_eq!(r2, r1);
        assert_eq!(r3, json!({"payment_id": "pay_2"}));
        assert_eq!(r4, r1);
        assert_eq!(fake.executed(), vec![("k-a".to_string(), a.clone()), ("k-b".to_string(), b.clone())]);
        assert_eq!(fake.replays(), 2);

        let reqs = fake.requests();
        assert_eq!(reqs.len(), 4);
        assert!(reqs.iter().all(|r| r.answered == 200));
        assert_eq!(reqs[0].idempotency_key.as_deref(), Some("k-a"));
        assert_eq!(reqs[0].ledger_signature, None);
        assert_eq!(reqs[0].body, a);
        assert_eq!(reqs[0].raw_body, serde_json::to_vec(&a).unwrap());
        assert_eq!(reqs[2].idempotency_key.as_deref(), Some("k-b"));

        // Another path on the same fake (e.g. a notify URL) behaves the same.
        let (s5, r5) = post(&c, &fake.url_for("/notify"), Some("k-a"), &a, None).await.unwrap();
        assert_eq!((s5, r5), (200, r1));
    }

    #[tokio::test]
    async fn a_reused_key_with_a_different_body_is_422() {
        let fake = FakePlatform::start().await;
        let c = client();
        let (s1, _) = post(&c, &fake.url, Some("k"), &payment("inv", 100), None).await.unwrap();
        let (s2, r2) = post(&c, &fake.url, Some("k"), &payment("inv", 101), None).await.unwrap();
        assert_eq!(s1, 200);
        assert_eq!(s2, 422);
        assert_eq!(r2, json!({"error": "idempotency key reused with different parameters"}));
        assert_eq!(fake.executed().len(), 1);
        assert_eq!(fake.executed()[0].1, payment("inv", 100));
        assert_eq!(fake.replays(), 0);
        assert_eq!(fake.requests()[1].answered, 422);
    }

    #[tokio::test]
    async fn a_missing_idempotency_key_is_400() {
        let fake = FakePlatform::start().await;
        let c = client();
        let (s, r) = post(&c, &fake.url, None, &payment("inv", 100), None).await.unwrap();
        assert_eq!(s, 400);
        assert_eq!(r, json!({"error": "missing idempotency key"}));
        assert!(fake.executed().is_empty());
        let reqs = fake.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].idempotency_key, None);
        assert_eq!(reqs[0].answered, 400);
    }

    #[tokio::test]
    async fn status_faults_are_answered_and_not_executed() {
        let fake = FakePlatform::start().await;
        let c = client();
        let body = payment("inv", 100);
        fake.fail_next(1, Fault::Status(500));
        fake.fail_next(1, Fault::Status(429));
        fake.fail_next(1, Fault::Status(409));
        fake.fail_next(1, Fault::Status(400));

        let mut statuses = vec![];
        for _ in 0..5 {
            let (s, _) = post(&c, &fake.url, Some("k"), &body, None).await.unwrap();
            statuses.push(s);
            if statuses.len() < 5 {
                assert!(fake.executed().is_empty(), "a status fault must not execute");
            }
        }
        assert_eq!(statuses, vec![500, 429, 409, 400, 200]);
        assert_eq!(fake.executed(), vec![("k".to_string(), body)]);
        assert_eq!(fake.replays(), 0);
        let answered: Vec<u16> = fake.requests().iter().map(|r| r.answered).collect();
        assert_eq!(answered, vec![500, 429, 409, 400, 200]);

        // A queue of n applies to exactly the next n requests.
        fake.fail_next(2, Fault::Status(503));
        let other = payment("inv2", 5);
        let mut statuses = vec![];
        for _ in 0..3 {
            statuses.push(post(&c, &fake.url, Some("k2"), &other, None).await.unwrap().0);
        }
        assert_eq!(statuses, vec![503, 503, 200]);
        assert_eq!(fake.executed().len(), 2);
    }

    #[tokio::test]
    async fn execute_then_status_executes_but_answers_the_error() {
        let fake = FakePlatform::start().await;
        let c = client();
        let body = payment("inv", 100);
        fake.fail_next(1, Fault::ExecuteThenStatus(500));

        let (s1, _) = post(&c, &fake.url, Some("k"), &body, None).await.unwrap();
        assert_eq!(s1, 500);
        assert_eq!(fake.executed(), vec![("k".to_string(), body.clone())]);
        assert_eq!(fake.replays(), 0);

        let (s2, r2) = post(&c, &fake.url, Some("k"), &body, None).await.unwrap();
        assert_eq!(s2, 200);
        assert_eq!(r2, json!({"payment_id": "pay_1"}));
        assert_eq!(fake.executed().len(), 1, "the retry must not execute twice");
        assert_eq!(fake.replays(), 1);
        let answered: Vec<u16> = fake.requests().iter().map(|r| r.answered).collect();
        assert_eq!(answered, vec![500, 200]);
    }

    #[tokio::test]
    async fn drop_closes_the_connection_without_an_answer() {
        let fake = FakePlatform::start().await;
        let c = client();
        let body = payment("inv", 100);
        fake.fail_next(1, Fault::Drop);

        let err = post(&c, &fake.url, Some("k"), &body, None).await.unwrap_err();
        assert!(err.status().is_none(), "expected a transport error, got {err:?}");
        assert!(!err.is_timeout(), "the connection must be closed, not hung: {err:?}");
        assert!(fake.executed().is_empty());
        assert_eq!(fake.requests().len(), 1);
        assert_eq!(fake.requests()[0].answered, 0);

        // At the byte level: the server sends nothing at all and closes.
        fake.fail_next(1, Fault::Drop);
        let raw_body = serde_json::to_vec(&body).unwrap();
        let mut stream = tokio::net::TcpStream::connect(fake.addr).await.unwrap();
        let head = format!(
            "POST /payments HTTP/1.1\r\nhost: {}\r\nidempotency-key: k\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            fake.addr,
            raw_body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&raw_body).await.unwrap();
        let mut received = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
        assert!(read.is_ok(), "the connection was not closed");
        assert!(received.is_empty(), "expected no bytes, got {:?}", String::from_utf8_lossy(&received));
        assert!(fake.executed().is_empty());

        // The next request is served normally.
        let (s, _) = post(&c, &fake.url, Some("k"), &body, None).await.unwrap();
        assert_eq!(s, 200);
        assert_eq!(fake.executed().len(), 1);
    }

    #[tokio::test]
    async fn hang_never_answers() {
        let fake = FakePlatform::start().await;
        let c = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
        let body = payment("inv", 100);
        fake.fail_next(1, Fault::Hang);

        let started = std::time::Instant::now();
        let err = post(&c, &fake.url, Some("k"), &body, None).await.unwrap_err();
        assert!(err.is_timeout(), "expected a timeout, got {err:?}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(fake.executed().is_empty());
        assert_eq!(fake.requests().len(), 1);
        assert_eq!(fake.requests()[0].answered, 0);

        // The hang is per request: the next one is answered.
        let (s, _) = post(&c, &fake.url, Some("k"), &body, None).await.unwrap();
        assert_eq!(s, 200);
    }

    /// Polls `done` every 10 ms for up to 5 s.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let started = std::time::Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_key_in_progress_answers_409_then_its_stored_result_even_after_its_client_gave_up() {
        // given a platform that takes 600 ms to execute a new key
        let fake = FakePlatform::start().await;
        fake.slow_executions(1.0, 1, Duration::from_millis(600));
        let impatient = reqwest::Client::builder().timeout(Duration::from_millis(150)).build().unwrap();
        let c = client();
        let body = payment("inv", 100);

        // when the first request's client gives up before the platform is done
        let first = post(&impatient, &fake.url, Some("k"), &body, None).await.unwrap_err();
        assert!(first.is_timeout(), "{first:?}");
        // then a retry while it is processed meets a 409, another body a 422,
        // and nothing is executed yet
        let (s2, r2) = post(&c, &fake.url, Some("k"), &body, None).await.unwrap();
        assert_eq!((s2, r2), (409, json!({"error": "a request with this key is in progress"})));
        let (s3, _) = post(&c, &fake.url, Some("k"), &payment("inv", 101), None).await.unwrap();
        assert_eq!(s3, 422);
        assert!(fake.executed().is_empty());
        assert_eq!(fake.conflicts(), 1);

        // and once the processing ends, the payment is executed once and a
        // retry gets its stored result
        until("the slow execution", || !fake.executed().is_empty()).await;
        let (s4, r4) = post(&c, &fake.url, Some("k"), &body, None).await.unwrap();
        assert_eq!((s4, r4), (200, json!({"payment_id": "pay_1"})));
        assert_eq!(fake.executed(), vec![("k".to_string(), body.clone())]);
        assert_eq!(fake.replays(), 1);
        let answered: Vec<u16> = fake.requests().iter().map(|r| r.answered).collect();
        assert_eq!(answered, vec![200, 409, 422, 200], "the first was answered 200 to nobody");
        let at: Vec<std::time::Instant> = fake.requests().iter().map(|r| r.received_at).collect();
        assert!(at.windows(2).all(|w| w[0] <= w[1]), "received_at follows arrival order");

        // A patient client of another key waits for the processing and gets
        // its result; a different key is never held up by another's.
        let other = payment("inv2", 5);
        let started = std::time::Instant::now();
        let waiting = post(&c, &fake.url, Some("k2"), &other, None);
        let beside = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            fake.slow_executions(0.0, 1, Duration::ZERO);
            post(&c, &fake.url, Some("k3"), &payment("inv3", 7), None).await.unwrap()
        };
        let ((s5, r5), (s6, r6)) = tokio::join!(async { waiting.await.unwrap() }, beside);
        assert_eq!((s5, r5), (200, json!({"payment_id": "pay_3"})));
        assert_eq!((s6, r6), (200, json!({"payment_id": "pay_2"})));
        assert!(started.elapsed() >= Duration::from_millis(600));
    }

    #[tokio::test]
    async fn slow_executions_are_drawn_per_new_key_from_the_seed() {
        // given a rule that slows half of the new keys down by a second
        let fake = FakePlatform::start().await;
        fake.slow_executions(0.5, 9, Duration::from_secs(1));
        let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
        // when twenty keys are sent once each
        let mut slow = vec![];
        for i in 0..20 {
            let sent = post(&impatient, &fake.url, Some(&format!("k{i}")), &payment(&format!("inv{i}"), 1), None).await;
            slow.push(sent.is_err());
        }
        // then some, not all, were still in progress when their client gave
        // up, and every one of them is executed in the end, once
        let n = slow.iter().filter(|s| **s).count();
        assert!(n > 0 && n < 20, "{n} of 20 slow");
        until("every slow execution", || fake.executed().len() == 20).await;
        let keys: HashSet<String> = fake.executed().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 20);
    }

    #[tokio::test]
    async fn huge_answers_are_streamed_with_the_payment_id_after_the_padding() {
        let fake = FakePlatform::start().await;
        let c = client();
        let body = payment("inv", 100);
        const LEN: u64 = 3 * 1024 * 1024 + 17;

        // A huge answer without execution: any request, even without a key.
        fake.fail_next(1, Fault::HugeAnswer(LEN));
        let resp = c.post(&fake.url).body("{\"query\":\"q\"}").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, LEN);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v["payment_id"].is_null() && v["padding"].as_str().unwrap().len() > 3_000_000);
        assert!(fake.executed().is_empty());

        // Executed, then a huge answer whose payment id comes last.
        fake.fail_next(1, Fault::ExecuteThenHugeAnswer(LEN));
        let (s, v) = post(&c, &fake.url, Some("k"), &body, None).await.unwrap();
        assert_eq!((s, &v["payment_id"]), (200, &json!("pay_1")));
        assert_eq!(fake.executed().len(), 1);
        assert_eq!(fake.requests()[1].answered, 200);

        // 600 MiB announced, and the first 64 KiB arrive at once: the rest
        // is produced only as it is read.
        fake.fail_next(1, Fault::HugeAnswer(600 * 1024 * 1024));
        let mut resp = c.post(&fake.url).body("{}").send().await.unwrap();
        assert_eq!(resp.content_length(), Some(600 * 1024 * 1024));
        let mut read = 0;
        while read < 64 * 1024 {
            read += resp.chunk().await.unwrap().expect("more of the answer").len();
        }
        drop(resp);
        // The replay of the executed key is an ordinary answer.
        assert_eq!(post(&c, &fake.url, Some("k"), &body, None).await.unwrap(), (200, json!({"payment_id": "pay_1"})));
    }

    /// Sends the first attempt for keys k0..k{n}, returns which ones failed.
    async fn first_attempt_failures(seed: u64, p: f64, n: usize) -> (FakePlatform, Vec<bool>) {
        let fake = FakePlatform::start().await;
        fake.fail_first_attempts(p, seed, Fault::Status(503));
        let c = client();
        let mut failed = vec![];
        for i in 0..n {
            let (s, _) =
                post(&c, &fake.url, Some(&format!("k{i}")), &payment(&format!("inv{i}"), 1), None).await.unwrap();
            assert!(s == 200 || s == 503, "unexpected status {s}");
            failed.push(s == 503);
        }
        (fake, failed)
    }

    #[tokio::test]
    async fn fail_first_attempts_is_deterministic_for_a_seed_and_only_hits_first_attempts() {
        let n = 40;
        let (fake, pattern) = first_attempt_failures(7, 0.5, n).await;
        let (_, again) = first_attempt_failures(7, 0.5, n).await;
        let (_, other_seed) = first_attempt_failures(8, 0.5, n).await;
        assert_eq!(pattern, again, "same seed, same failures");
        assert_ne!(pattern, other_seed, "a different seed gives other failures");
        let failures = pattern.iter().filter(|f| **f).count();
        assert!(failures > 0 && failures < n, "p=0.5 should fail some, not all: {failures}/{n}");
        assert_eq!(fake.executed().len(), n - failures);

        // Later attempts for the same keys are never faulted by the rule.
        let c = client();
        for round in 0..3 {
            for i in 0..n {
                let (s, _) =
                    post(&c, &fake.url, Some(&format!("k{i}")), &payment(&format!("inv{i}"), 1), None).await.unwrap();
                assert_eq!(s, 200, "retry round {round} of k{i}");
            }
        }
        assert_eq!(fake.executed().len(), n);
        assert_eq!(fake.replays(), 3 * n - failures);

        // The extremes: p = 1 fails every first attempt, p = 0 none.
        let (fake_all, all) = first_attempt_failures(1, 1.0, 10).await;
        assert!(all.iter().all(|f| *f));
        assert!(fake_all.executed().is_empty());
        let (_, none) = first_attempt_failures(1, 0.0, 10).await;
        assert!(none.iter().all(|f| !*f));

        // The rule fault can be any fault, e.g. a lost answer.
        let fake = FakePlatform::start().await;
        fake.fail_first_attempts(1.0, 3, Fault::ExecuteThenStatus(500));
        let body = payment("inv", 1);
        assert_eq!(post(&c, &fake.url, Some("k"), &body, None).await.unwrap().0, 500);
        assert_eq!(post(&c, &fake.url, Some("k"), &body, None).await.unwrap().0, 200);
        assert_eq!(fake.executed().len(), 1);
        assert_eq!(fake.replays(), 1);
    }

    #[tokio::test]
    async fn a_required_signature_is_checked() {
        let fake = FakePlatform::start().await;
        let c = client();
        let body = payment("inv", 100);
        let raw = serde_json::to_vec(&body).unwrap();

        // Not required yet: unsigned requests are fine.
        assert_eq!(post(&c, &fake.url, Some("k0"), &payment("inv0", 1), None).await.unwrap().0, 200);

        fake.require_signature("payout-secret");
        let (s_missing, r_missing) = post(&c, &fake.url, Some("k"), &body, None).await.unwrap();
        let (s_wrong_key, _) = post(&c, &fake.url, Some("k"), &body, Some(&sign(b"other-secret", &raw))).await.unwrap();
        let (s_garbage, _) = post(&c, &fake.url, Some("k"), &body, Some("not-hex")).await.unwrap();
        let (s_other_body, _) =
            post(&c, &fake.url, Some("k"), &body, Some(&sign(b"payout-secret", b"{}"))).await.unwrap();
        assert_eq!((s_missing, s_wrong_key, s_garbage, s_other_body), (401, 401, 401, 401));
        assert_eq!(r_missing, json!({"error": "invalid signature"}));
        assert_eq!(fake.executed().len(), 1, "unsigned or badly signed requests are not executed");

        let good = sign(b"payout-secret", &raw);
        let (s, r) = post(&c, &fake.url, Some("k"), &body, Some(&good)).await.unwrap();
        assert_eq!((s, r), (200, json!({"payment_id": "pay_2"})));
        assert_eq!(fake.executed().len(), 2);
        let last = fake.requests().pop().unwrap();
        assert_eq!(last.ledger_signature.as_deref(), Some(good.as_str()));
        assert_eq!(last.answered, 200);
    }
}
