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
//!
//! Its own tests are at the end of this file, so that every binary that
//! relies on the fake also checks it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
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

/// Tests of the fake itself: it is test infrastructure, so it has to be
/// trustworthy.
#[cfg(test)]
mod tests {
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
