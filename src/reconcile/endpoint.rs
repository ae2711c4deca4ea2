//! Calls to the payment platform and the notification endpoint, behind a
//! trait so tests and simulations can stand in for the network.

use std::future::Future;
use std::time::Duration;

/// One HTTP call the protocol makes.
#[derive(Debug, Clone)]
pub struct OutgoingRequest {
    pub url: String,
    pub idempotency_key: String,
    pub body: Vec<u8>,
    /// Hex HMAC-SHA256 of `body` under `PAYOUT_SIGNING_KEY`, when set.
    pub signature: Option<String>,
}

/// What came back, before any interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    Answered {
        status: u16,
        body: Vec<u8>,
    },
    /// Refused, reset, timed out: the request may or may not have arrived.
    Transport(String),
}

pub trait Endpoint: Send + Sync + 'static {
    fn call(&self, request: OutgoingRequest) -> impl Future<Output = CallOutcome> + Send;
}

/// The real thing: reqwest with a bounded timeout and no redirects (a
/// redirect would re-send a payment somewhere we did not configure).
#[derive(Debug, Clone)]
pub struct HttpEndpoint {
    client: reqwest::Client,
}

impl HttpEndpoint {
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("invitation-ledger/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }
}

impl Endpoint for HttpEndpoint {
    async fn call(&self, request: OutgoingRequest) -> CallOutcome {
        let mut req = self
            .client
            .post(&request.url)
            .header("content-type", "application/json")
            .header("Idempotency-Key", &request.idempotency_key)
            .body(request.body);
        if let Some(sig) = &request.signature {
            req = req.header("ledger-signature", sig);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                CallOutcome::Answered { status, body: read_at_most(resp, MAX_ANSWER_BYTES).await }
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                CallOutcome::Transport(format!("{kind}: {}", e.without_url()))
            }
        }
    }
}

/// The most of an answer read. Only a payment id is needed from it, and
/// the status code alone decides the outcome, so an over-long 2xx is still a
/// success: the rest is neither read nor buffered.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The first `limit` bytes of the answer's body, read chunk by chunk; the
/// rest is left unread (the connection is dropped with the response). A
/// body cut short by the peer or the timeout keeps what arrived.
pub async fn read_at_most(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// An outcome, interpreted by the protocol's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Succeeded { status: u16, payment_id: Option<String> },
    /// Another 4xx: the platform will refuse this request however often it
    /// is sent. Needs an operator.
    Permanent { status: u16, error: String },
    /// 5xx, 408, 409, 425, 429, timeout, refused or reset connection: try
    /// again later, with the same key and body.
    Transient { status: Option<u16>, error: String },
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.chars().filter(|c| !c.is_control()).collect()
}

/// Applies the outcome rules of the IETF idempotency-key draft, as
/// docs/design.md ("Exactly once, in effect") tabulates them.
pub fn judge(outcome: &CallOutcome) -> Verdict {
    match outcome {
        CallOutcome::Answered { status, body } => match *status {
            200..=299 => Verdict::Succeeded {
                status: *status,
                payment_id: serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v.get("payment_id").and_then(|p| p.as_str()).map(str::to_owned)),
            },
            // 409: another request with this key is still being processed;
            // a later call with the same key returns its result.
            408 | 409 | 425 | 429 => {
                Verdict::Transient { status: Some(*status), error: format!("HTTP {status}: {}", excerpt(body)) }
            }
            400..=499 => Verdict::Permanent { status: *status, error: format!("HTTP {status}: {}", excerpt(body)) },
            _ => Verdict::Transient { status: Some(*status), error: format!("HTTP {status}: {}", excerpt(body)) },
        },
        CallOutcome::Transport(e) => Verdict::Transient { status: None, error: e.clone() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, body: &str) -> CallOutcome {
        CallOutcome::Answered { status, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn two_hundreds_are_success_keeping_the_payment_id() {
        assert_eq!(
            judge(&answered(200, r#"{"payment_id":"p1"}"#)),
            Verdict::Succeeded { status: 200, payment_id: Some("p1".into()) }
        );
        assert_eq!(judge(&answered(201, "")), Verdict::Succeeded { status: 201, payment_id: None });
    }

    #[test]
    fn a_409_means_still_processing_and_is_retried_with_the_same_key() {
        // The IETF idempotency-key draft: 409 is "a request with this key is
        // being processed", not "already paid".
        assert!(matches!(judge(&answered(409, "in flight")), Verdict::Transient { status: Some(409), .. }));
    }

    #[test]
    fn other_client_errors_are_permanent_and_server_errors_transient() {
        assert!(matches!(judge(&answered(400, "bad")), Verdict::Permanent { status: 400, .. }));
        assert!(matches!(judge(&answered(422, "")), Verdict::Permanent { .. }));
        assert!(matches!(judge(&answered(500, "")), Verdict::Transient { status: Some(500), .. }));
        assert!(matches!(judge(&answered(429, "")), Verdict::Transient { .. }));
        assert!(matches!(judge(&CallOutcome::Transport("reset".into())), Verdict::Transient { status: None, .. }));
    }
}
