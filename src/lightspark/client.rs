//! The Lightspark GraphQL client: fetches an invitation when a webhook arrived
//! without `data` (docs/design.md, "Fetching the invitation").
//!
//! The client only asks and classifies the answer; it never decides what a
//! failure means for the invitation. A failed fetch says nothing about the
//! invitation, so the caller keeps the event pending and asks again later
//! ([`FetchError::is_transient`]), and only an answer with `data.entity`
//! becomes an `invitation.fetched` event.
//!
//! The client secret is used in exactly one place, the `Authorization` header,
//! which is built once in [`LightsparkClient::new`] and marked sensitive. Every
//! text that ends up in a [`FetchError`] is scrubbed of the secret and of the
//! encoded header first, because error messages end up in logs and in the
//! ledger's operator views.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::Url;
use serde_json::Value;

use crate::secret::Secret;

/// The GetUmaInvitation query: the invitation's fields under the aliases the
/// parser reads.
///
/// Every field is aliased (`uma_invitation_*`), which is the spelling the
/// Lightspark SDKs use and the one the invitation parser already reads, so a
/// fetched snapshot and a webhook's `data` go through the same code.
pub const GET_UMA_INVITATION: &str = r#"query GetUmaInvitation($id: ID!) {
  entity(id: $id) {
    ... on UmaInvitation {
      __typename
      uma_invitation_id: id
      uma_invitation_created_at: created_at
      uma_invitation_updated_at: updated_at
      uma_invitation_code: code
      uma_invitation_url: url
      uma_invitation_inviter_uma: inviter_uma
      uma_invitation_inviter_first_name: inviter_first_name
      uma_invitation_invitee_uma: invitee_uma
      uma_invitation_status: status
      uma_invitation_incentives_status: incentives_status
      uma_invitation_incentives_ineligibility_reason: incentives_ineligibility_reason
      uma_invitation_payment_amount: payment_amount {
        uma_currency_amount_value: value
        uma_currency_amount_currency: currency { uma_currency_code: code uma_currency_decimals: decimals }
      }
      uma_invitation_cancelled_at: cancelled_at
      uma_invitation_expires_at: expires_at
    }
  }
}"#;

/// The largest answer read. An invitation is well under a kilobyte; anything
/// near this size is not an answer to our query, and reading it unbounded
/// would let a misbehaving endpoint exhaust memory.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How much of an unexpected answer is kept in an error: enough to recognise
/// an HTML error page or a GraphQL message, short enough for a log line.
const EXCERPT_CHARS: usize = 200;

/// Calls the Lightspark GraphQL API with the API token's client id and secret.
///
/// Cheap to clone: the connection pool is shared.
#[derive(Clone)]
pub struct LightsparkClient {
    http: reqwest::Client,
    url: Url,
    client_id: String,
    client_secret: Secret,
    /// `Basic base64(client_id:client_secret)`, built once and marked
    /// sensitive so that reqwest and hyper never print it.
    authorization: HeaderValue,
    /// The base64 part of `authorization`, kept only to scrub it from error
    /// texts (a proxy that echoes request headers back must not leak it).
    encoded_credentials: String,
}

/// Shows where the client points and as whom, never the secret.
impl std::fmt::Debug for LightsparkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LightsparkClient")
            .field("url", &self.url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .finish_non_exhaustive()
    }
}

/// Why a fetch gave no invitation. No variant ever holds the client secret or
/// the `Authorization` header: texts taken from answers are scrubbed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request did not get an answer: connection refused, reset, DNS,
    /// TLS, or the timeout passed.
    #[error("Lightspark API unreachable: {0}")]
    Transport(String),
    /// The API answered with a non-2xx status (401/403 included).
    #[error("Lightspark API answered HTTP {status}: {body_excerpt}")]
    Status { status: u16, body_excerpt: String },
    /// The API answered `{"errors": [...]}`; the messages, joined with `; `.
    #[error("Lightspark API returned GraphQL errors: {0}")]
    GraphQl(String),
    /// A 2xx answer that is not a GraphQL answer to our query: not JSON, too
    /// large, no `data.entity`, or an entity that is not an `UmaInvitation`.
    #[error("Lightspark API answer is unusable: {0}")]
    Malformed(String),
    /// The client cannot be built from its settings (bad URL, empty
    /// credentials, zero timeout).
    #[error("Lightspark API client misconfigured: {0}")]
    Config(String),
    /// The id names an entity of another type: asking again will not make
    /// it an invitation.
    #[error("not an invitation: {0}")]
    NotAnInvitation(String),
}

impl FetchError {
    /// Whether asking again later can give a different answer, so the caller
    /// keeps the event pending and retries with backoff instead of asking an
    /// operator.
    ///
    /// - `Transport`, HTTP 5xx, 408 and 429: the textbook transient failures.
    /// - `GraphQl`: Lightspark reports internal failures and rate limits as
    ///   GraphQL errors with HTTP 200, and a well-formed query for an unknown
    ///   id answers `entity: null`, not an error; so an error is most likely
    ///   the server's trouble, not ours.
    /// - HTTP 401/403: **transient on purpose.** Wrong credentials are fixed
    ///   by an operator (new token in the dashboard, restart), and a freshly
    ///   created or rotated token can take a moment to become valid. A fetch
    ///   failure says nothing about the invitation, so giving up would only
    ///   strand the event until someone re-drives it by hand; retrying with
    ///   capped backoff costs one request per interval. The caller should
    ///   still log these loudly, since they will not heal on their own.
    /// - `Malformed`: transient as well. A 2xx answer that is not JSON is
    ///   typically a proxy or load balancer hiccup, and we cannot tell it from
    ///   a lasting problem by looking at it; retrying loses nothing.
    /// - Other 4xx (400, 404, 405, 413, 422, …): not transient. The same
    ///   request to the same URL will be refused the same way until the code
    ///   or `LIGHTSPARK_API_URL` changes.
    /// - `Config`: not transient; the client does not exist.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Transport(_) | FetchError::GraphQl(_) | FetchError::Malformed(_) => true,
            FetchError::Status { status, .. } => {
                matches!(*status, 500..=599 | 401 | 403 | 408 | 429)
            }
            FetchError::Config(_) | FetchError::NotAnInvitation(_) => false,
        }
    }
}

impl LightsparkClient {
    /// Builds the client; sends nothing.
    ///
    /// `timeout` bounds each request as a whole (connect + answer), so a
    /// server that accepts and never answers cannot hold the reconciler.
    ///
    /// # Errors
    /// [`FetchError::Config`] when `api_url` is not an absolute `http(s)` URL,
    /// carries credentials of its own (they would be printed wherever the URL
    /// is), or is plain `http` to a host other than loopback (the secret
    /// would cross the network in clear); when `client_id` is empty or holds
    /// a `:` (Basic auth cannot carry it); when the secret is empty; when
    /// `timeout` is zero.
    pub fn new(api_url: &str, client_id: &str, client_secret: Secret, timeout: Duration) -> Result<Self, FetchError> {
        let url = parse_api_url(api_url)?;
        if client_id.trim().is_empty() {
            return Err(FetchError::Config(
                "LIGHTSPARK_API_CLIENT_ID is empty: set it to the client id of a Lightspark API token.".into(),
            ));
        }
        if client_id.contains(':') {
            return Err(FetchError::Config(
                "LIGHTSPARK_API_CLIENT_ID contains ':', which HTTP Basic auth cannot carry: check the value.".into(),
            ));
        }
        if client_secret.expose().is_empty() {
            return Err(FetchError::Config(
                "LIGHTSPARK_API_CLIENT_SECRET is empty: set it to the secret of a Lightspark API token.".into(),
            ));
        }
        if timeout.is_zero() {
            return Err(FetchError::Config("the Lightspark API timeout is zero: give it a positive duration.".into()));
        }
        let encoded_credentials = base64_encode(format!("{client_id}:{}", client_secret.expose()).as_bytes());
        let mut authorization = HeaderValue::from_str(&format!("Basic {encoded_credentials}")).map_err(|_| {
            FetchError::Config("LIGHTSPARK_API_CLIENT_ID holds characters a header cannot carry.".into())
        })?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would resend the credentials somewhere we were not
            // told to send them; a GraphQL endpoint has no reason to redirect.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("invitation-ledger/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Config(format!("cannot build the HTTP client: {}", e.without_url())))?;
        Ok(Self { http, url, client_id: client_id.to_owned(), client_secret, authorization, encoded_credentials })
    }

    /// The endpoint this client posts to.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Asks for invitation `id` with the [`GET_UMA_INVITATION`] query.
    ///
    /// `Ok(Some(entity))` is `data.entity` exactly as received (aliased
    /// spelling), ready to be stored as an `invitation.fetched` snapshot.
    /// `Ok(None)` means Lightspark knows no entity with that id. Errors never
    /// mean "no invitation": see [`FetchError::is_transient`].
    ///
    /// # Errors
    /// Every answer other than `data.entity` being an object or null.
    pub async fn fetch_invitation(&self, id: &str) -> Result<Option<Value>, FetchError> {
        let body = serde_json::json!({ "query": GET_UMA_INVITATION, "variables": { "id": id } });
        let response = self
            .http
            .post(self.url.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(ACCEPT, "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let bytes = self.read_capped(response).await?;
        let result = self.interpret(status, &bytes);
        match &result {
            Ok(found) => tracing::debug!(invitation = id, status, found = found.is_some(), "fetched invitation"),
            Err(e) => tracing::debug!(invitation = id, status, error = %e, "invitation fetch failed"),
        }
        result
    }

    /// Reads at most [`MAX_ANSWER_BYTES`]; a failure mid-body is a transport
    /// failure (the timeout covers the body too).
    async fn read_capped(&self, mut response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_error(e))? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(FetchError::Malformed(format!("answer larger than {MAX_ANSWER_BYTES} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// Classifies an answer. Separate from the request so that every shape of
    /// answer can be tested without a server.
    fn interpret(&self, status: u16, body: &[u8]) -> Result<Option<Value>, FetchError> {
        if !(200..300).contains(&status) {
            return Err(FetchError::Status {
                status,
                body_excerpt: self.scrub(&excerpt(&String::from_utf8_lossy(body))),
            });
        }
        let answer: Value = serde_json::from_slice(body).map_err(|e| {
            FetchError::Malformed(self.scrub(&format!("not JSON ({e}): {:?}", excerpt(&String::from_utf8_lossy(body)))))
        })?;
        // Errors win over data: a GraphQL answer may carry both, and a
        // partial entity (fields nulled by an error) must not become a
        // snapshot, nor a null entity read as "unknown id".
        match answer.get("errors") {
            None | Some(Value::Null) => {}
            Some(Value::Array(errors)) if errors.is_empty() => {}
            Some(errors) => return Err(FetchError::GraphQl(self.scrub(&excerpt(&graphql_messages(errors))))),
        }
        let entity = answer
            .get("data")
            .and_then(|data| data.get("entity"))
            .ok_or_else(|| FetchError::Malformed("no data.entity in the answer".into()))?;
        match entity {
            Value::Null => Ok(None),
            Value::Object(fields) => match fields.get("__typename") {
                // `... on UmaInvitation` gives `{}` for an entity of another
                // type; storing that as an invitation snapshot would be wrong.
                None if fields.is_empty() => {
                    Err(FetchError::NotAnInvitation("data.entity is not an UmaInvitation (empty object)".into()))
                }
                Some(t) if t != "UmaInvitation" => {
                    Err(FetchError::NotAnInvitation(self.scrub(&format!("data.entity is a {t}, not an UmaInvitation"))))
                }
                _ => Ok(Some(entity.clone())),
            },
            other => Err(FetchError::Malformed(
                self.scrub(&format!("data.entity is neither an object nor null: {}", excerpt(&other.to_string()))),
            )),
        }
    }

    /// Describes a reqwest failure without its URL (we add our own, which
    /// [`parse_api_url`] guarantees holds no credentials) and with its causes,
    /// which is where "connection refused" actually lives.
    fn transport_error(&self, e: reqwest::Error) -> FetchError {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        let mut text = format!("{what} ({})", self.url);
        let e = e.without_url();
        let mut cause: Option<&dyn std::error::Error> = Some(&e);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        FetchError::Transport(self.scrub(&text))
    }

    /// Removes the secret and the encoded credentials from a text taken from
    /// an answer, in case the other side echoes them.
    fn scrub(&self, text: &str) -> String {
        text.replace(&self.encoded_credentials, "[redacted]").replace(self.client_secret.expose(), "[redacted]")
    }
}

/// Accepts absolute `http(s)` URLs without userinfo; plain `http` only to
/// loopback, where the tests and `demo` run their fakes.
fn parse_api_url(api_url: &str) -> Result<Url, FetchError> {
    let bad = |why: &str| FetchError::Config(format!("LIGHTSPARK_API_URL {:?} {why}", redact_userinfo(api_url)));
    let url = Url::parse(api_url.trim())
        .map_err(|e| bad(&format!("is not a URL ({e}): use https://api.lightspark.com/graphql/server/2023-09-13.")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "carries credentials: remove them and use LIGHTSPARK_API_CLIENT_ID / LIGHTSPARK_API_CLIENT_SECRET.",
        ));
    }
    let loopback = match url.host_str() {
        Some(host) => {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => return Err(bad("has no host.")),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(bad("is plain http to a remote host, which would send the client secret in clear: use https.")),
        _ => Err(bad("is not http(s): use https://api.lightspark.com/graphql/server/2023-09-13.")),
    }
}

/// `scheme://user:pass@host` → `scheme://[redacted]@host`, so that a
/// rejected URL can be named in the message without printing what it holds.
fn redact_userinfo(raw: &str) -> String {
    let raw = raw.trim();
    let start = raw.find("://").map_or(0, |i| i + 3);
    let authority_end = raw[start..].find(['/', '?', '#']).map_or(raw.len(), |i| start + i);
    match raw[start..authority_end].rfind('@') {
        Some(at) => format!("{}[redacted]{}", &raw[..start], &raw[start + at..]),
        None => raw.to_owned(),
    }
}

/// The `message` of each GraphQL error, joined; an error without one is
/// shown as its JSON so that nothing is silently dropped.
fn graphql_messages(errors: &Value) -> String {
    match errors {
        Value::Array(items) => items
            .iter()
            .map(|item| match item.get("message").and_then(Value::as_str) {
                Some(m) => m.to_owned(),
                None => item.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// At most [`EXCERPT_CHARS`] characters, cut on a character boundary.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Standard base64 with padding (RFC 4648 §4), as HTTP Basic credentials
/// need (RFC 7617): not the URL-safe alphabet, not unpadded.
fn base64_encode(input: &[u8]) -> String {
    BASE64.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "s3cr3t-client-secret-value";

    fn client() -> LightsparkClient {
        LightsparkClient::new(
            "https://api.lightspark.com/graphql/server/2023-09-13",
            "client-id",
            Secret::new(SECRET.into()),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    fn answer(c: &LightsparkClient, status: u16, body: Value) -> Result<Option<Value>, FetchError> {
        c.interpret(status, body.to_string().as_bytes())
    }

    #[test]
    fn client_base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected, "{input:?}");
        }
        // Values 62 and 63: the standard alphabet, not the URL-safe one.
        assert_eq!(base64_encode(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn client_query_asks_for_every_aliased_field_of_the_design() {
        // Guards against an edit that drops a field the parser and the
        // fake rely on.
        assert!(GET_UMA_INVITATION
            .starts_with("query GetUmaInvitation($id: ID!) {\n  entity(id: $id) {\n    ... on UmaInvitation {\n"));
        for field in [
            "__typename",
            "uma_invitation_id: id",
            "uma_invitation_created_at: created_at",
            "uma_invitation_updated_at: updated_at",
            "uma_invitation_code: code",
            "uma_invitation_url: url",
            "uma_invitation_inviter_uma: inviter_uma",
            "uma_invitation_inviter_first_name: inviter_first_name",
            "uma_invitation_invitee_uma: invitee_uma",
            "uma_invitation_status: status",
            "uma_invitation_incentives_status: incentives_status",
            "uma_invitation_incentives_ineligibility_reason: incentives_ineligibility_reason",
            "uma_invitation_payment_amount: payment_amount {",
            "uma_currency_amount_value: value",
            "uma_currency_amount_currency: currency { uma_currency_code: code uma_currency_decimals: decimals }",
            "uma_invitation_cancelled_at: cancelled_at",
            "uma_invitation_expires_at: expires_at",
        ] {
            assert!(GET_UMA_INVITATION.lines().any(|l| l.trim() == field), "{field}");
        }
    }

    #[test]
    fn client_reads_an_entity_a_null_and_rejects_the_rest() {
        let c = client();
        let entity = json!({"__typename": "UmaInvitation", "uma_invitation_id": "UmaInvitation:1"});
        assert_eq!(answer(&c, 200, json!({"data": {"entity": entity}})).unwrap(), Some(entity.clone()));
        assert_eq!(answer(&c, 200, json!({"data": {"entity": null}})).unwrap(), None);
        assert!(matches!(answer(&c, 200, json!({"data": {}})), Err(FetchError::Malformed(_))));
        assert!(matches!(answer(&c, 200, json!({"data": {"entity": {}}})), Err(FetchError::NotAnInvitation(_))));
        assert!(matches!(
            answer(&c, 200, json!({"data": {"entity": {"__typename": "Wallet"}}})),
            Err(FetchError::NotAnInvitation(_))
        ));
        assert!(matches!(answer(&c, 200, json!({"data": {"entity": 7}})), Err(FetchError::Malformed(_))));
        assert!(matches!(c.interpret(200, b"<html>bad gateway</html>"), Err(FetchError::Malformed(_))));
        assert!(matches!(answer(&c, 204, json!(null)), Err(FetchError::Malformed(_))));
    }

    #[test]
    fn client_graphql_errors_win_over_data_and_are_joined() {
        let c = client();
        let e = answer(
            &c,
            200,
            json!({"data": {"entity": null}, "errors": [{"message": "rate limited"}, {"message": "try later"}]}),
        )
        .unwrap_err();
        assert!(matches!(&e, FetchError::GraphQl(m) if m == "rate limited; try later"), "{e:?}");
        assert_eq!(answer(&c, 200, json!({"data": {"entity": null}, "errors": []})).unwrap(), None);
    }

    #[test]
    fn client_non_2xx_is_a_status_error_with_a_short_excerpt() {
        let c = client();
        let long = "x".repeat(10_000);
        match c.interpret(502, long.as_bytes()).unwrap_err() {
            FetchError::Status { status: 502, body_excerpt } => {
                assert!(body_excerpt.chars().count() <= EXCERPT_CHARS + 1)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn client_errors_scrub_an_echoed_secret_or_header() {
        let c = client();
        let header = format!("Basic {}", base64_encode(format!("client-id:{SECRET}").as_bytes()));
        for (status, body) in [
            (401, format!("bad secret {SECRET}, header {header}")),
            (200, json!({"errors": [{"message": format!("bad {SECRET} / {header}")}]}).to_string()),
            (200, format!("oops {SECRET} {header}")),
        ] {
            let e = c.interpret(status, body.as_bytes()).unwrap_err();
            for text in [format!("{e}"), format!("{e:?}")] {
                assert!(!text.contains(SECRET), "{text}");
                assert!(!text.contains(&header[6..]), "{text}");
            }
        }
        let debug = format!("{c:?}");
        assert!(!debug.contains(SECRET) && !debug.contains(&header[6..]), "{debug}");
    }

    #[test]
    fn client_transience_follows_the_documented_table() {
        let status = |status| FetchError::Status { status, body_excerpt: String::new() };
        for transient in [
            FetchError::Transport("refused".into()),
            FetchError::GraphQl("boom".into()),
            FetchError::Malformed("html".into()),
            status(500),
            status(503),
            status(401),
            status(403),
            status(408),
            status(429),
        ] {
            assert!(transient.is_transient(), "{transient:?}");
        }
        for permanent in [FetchError::Config("url".into()), status(400), status(404), status(422), status(301)] {
            assert!(!permanent.is_transient(), "{permanent:?}");
        }
    }

    #[test]
    fn client_new_refuses_unusable_settings_without_printing_them() {
        let ok = |url: &str| LightsparkClient::new(url, "id", Secret::new("s".into()), Duration::from_secs(1));
        assert!(ok("https://api.lightspark.com/graphql/server/2023-09-13").is_ok());
        assert!(ok("http://127.0.0.1:8080/graphql").is_ok());
        assert!(ok("http://localhost:8080/graphql").is_ok());
        assert!(ok("http://[::1]:8080/graphql").is_ok());
        for bad in ["not a url", "ftp://api.lightspark.com/", "http://api.lightspark.com/graphql", "/graphql"] {
            assert!(matches!(ok(bad), Err(FetchError::Config(_))), "{bad}");
        }
        let e = ok("https://id:hunter2@api.lightspark.com/graphql").unwrap_err();
        assert!(matches!(e, FetchError::Config(_)));
        assert!(!format!("{e} {e:?}").contains("hunter2"), "{e}");
        let new = |id: &str, secret: &str, t: u64| {
            LightsparkClient::new(
                "https://api.lightspark.com/",
                id,
                Secret::new(secret.into()),
                Duration::from_millis(t),
            )
        };
        assert!(matches!(new("", "s", 1000), Err(FetchError::Config(_))));
        assert!(matches!(new("a:b", "s", 1000), Err(FetchError::Config(_))));
        assert!(matches!(new("id", "", 1000), Err(FetchError::Config(_))));
        assert!(matches!(new("id", "s", 0), Err(FetchError::Config(_))));
    }
}
