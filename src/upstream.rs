//! Calls to a source's API: credentials, client, bounded answers.
//!
//! The Lightspark GraphQL client and the Grid REST client ask different
//! questions, but call their APIs the same way: HTTP Basic with an API
//! token's id and secret, a bounded timeout, no redirects, an answer read up
//! to a cap, and every text that may reach a log scrubbed of the credentials
//! first. That plumbing lives here once, so that how the secret is guarded
//! cannot drift apart between the two. A leaf module: it knows neither
//! source's answers; each client maps [`UpstreamError`] into its own error
//! type, whose variants its caller decides on.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::{Method, Url};

use crate::secret::Secret;

/// The largest answer read. An invitation is well under a kilobyte; anything
/// near this size is not an answer to our request, and reading it unbounded
/// would let a misbehaving endpoint exhaust memory.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How much of an unexpected answer is kept in an error: enough to recognise
/// an HTML error page or the API's own error message, short enough for a log
/// line.
pub const EXCERPT_CHARS: usize = 200;

/// How one source's API and its settings are named in messages, so that the
/// operator who reads one knows which setting to change.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    /// The API for people, as in "the Grid API timeout is zero".
    pub name: &'static str,
    /// The setting that holds the URL, such as `GRID_API_URL`.
    pub url_setting: &'static str,
    /// The URL suggested when the configured one is unusable.
    pub default_url: &'static str,
    /// Whether the URL is a root that the client appends paths to. A query
    /// or fragment would then stand in the middle of every request's URL, so
    /// one is refused; an endpoint posted to as it is may keep its query.
    pub url_is_root: bool,
    /// The setting that holds the API token's id.
    pub id_setting: &'static str,
    /// What belongs in `id_setting`, as in "set it to the id of a Grid API
    /// token".
    pub id_is: &'static str,
    /// The setting that holds the API token's secret.
    pub secret_setting: &'static str,
    /// What belongs in `secret_setting`.
    pub secret_is: &'static str,
}

/// Why a call gave no answer to read, before any source's meaning is given
/// to it. Every text is scrubbed of the credentials; each client turns these
/// into its own error's variants.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The client cannot be built from its settings; the sentence names the
    /// setting to change.
    #[error("{0}")]
    Config(String),
    /// The request did not get a whole answer: connection refused, reset,
    /// DNS, TLS, or the timeout passed (before or while the body came).
    #[error("{0}")]
    Transport(String),
    /// The API answered with a status other than 2xx; the start of its
    /// answer.
    #[error("HTTP {status}: {body_excerpt}")]
    Status { status: u16, body_excerpt: String },
    /// An answer unusable whatever was asked: larger than
    /// [`MAX_ANSWER_BYTES`], or a 2xx that is not JSON.
    #[error("{0}")]
    Malformed(String),
}

/// Whether an HTTP status from a source's API may be answered otherwise
/// later: 5xx, 408 and 429, the textbook transient failures, and 401/403 on
/// purpose. Wrong credentials are fixed by an operator (new token, restart)
/// and a freshly created or rotated token can take a moment to become valid;
/// a failed fetch says nothing about the invitation, so giving up would only
/// strand the event, while retrying with capped backoff costs one request per
/// interval. Each client's `is_transient` gives the rest of its table.
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 500..=599 | 401 | 403 | 408 | 429)
}

/// The HTTP side of a source's API client: the connection pool, the
/// credentials and what scrubs them from texts.
///
/// Cheap to clone: the connection pool is shared.
#[derive(Clone)]
pub struct Upstream {
    http: reqwest::Client,
    id: String,
    secret: Secret,
    /// `Basic base64(id:secret)`, built once and marked sensitive so that
    /// reqwest and hyper never print it.
    authorization: HeaderValue,
    /// The base64 part of `authorization`, kept only to scrub it from error
    /// texts (a proxy that echoes request headers back must not leak it).
    encoded_credentials: String,
}

impl Upstream {
    /// Checks the credentials and builds the HTTP client; sends nothing.
    ///
    /// `timeout` bounds each request as a whole (connect, headers and body),
    /// so a server that accepts and never answers cannot hold the caller.
    ///
    /// # Errors
    /// [`UpstreamError::Config`], naming `api`'s setting, when `id` is empty
    /// or holds a `:` (Basic auth cannot carry it); when the secret is empty;
    /// when `timeout` is zero; when no HTTP client can be built.
    pub fn new(api: &Api, id: &str, secret: Secret, timeout: Duration) -> Result<Self, UpstreamError> {
        let config = |text: String| Err(UpstreamError::Config(text));
        if id.trim().is_empty() {
            return config(format!("{} is empty: set it to {}.", api.id_setting, api.id_is));
        }
        if id.contains(':') {
            return config(format!(
                "{} contains ':', which HTTP Basic auth cannot carry: check the value.",
                api.id_setting
            ));
        }
        if secret.expose().is_empty() {
            return config(format!("{} is empty: set it to {}.", api.secret_setting, api.secret_is));
        }
        if timeout.is_zero() {
            return config(format!("the {} timeout is zero: give it a positive duration.", api.name));
        }
        // Standard base64 with padding (RFC 4648 §4), as HTTP Basic needs
        // (RFC 7617): not the URL-safe alphabet, not unpadded.
        let encoded_credentials = BASE64.encode(format!("{id}:{}", secret.expose()));
        let mut authorization = HeaderValue::from_str(&format!("Basic {encoded_credentials}"))
            .map_err(|_| UpstreamError::Config("cannot build the Authorization header from base64.".into()))?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would resend the credentials somewhere we were not
            // told to send them; neither API has a reason to redirect.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("invitation-ledger/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UpstreamError::Config(format!("cannot build the HTTP client: {}", e.without_url())))?;
        Ok(Self { http, id: id.to_owned(), secret, authorization, encoded_credentials })
    }

    /// The API token's id, which a client may show.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret, for a client's `Debug` (which prints a placeholder).
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Sends `method url` with the credentials, asking for JSON, with `json`
    /// as the body when given; returns once the answer's head has come.
    ///
    /// # Errors
    /// [`UpstreamError::Transport`] when no answer came.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        json: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut request = self
            .http
            .request(method, url.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(ACCEPT, "application/json");
        if let Some(json) = json {
            request = request.json(json);
        }
        request.send().await.map_err(|e| self.transport_error(url, e))
    }

    /// Reads at most [`MAX_ANSWER_BYTES`] of the answer to `url`, refusing a
    /// larger one as soon as its declared length or the bytes received so
    /// far pass the cap.
    ///
    /// # Errors
    /// [`UpstreamError::Malformed`] when too large;
    /// [`UpstreamError::Transport`] when the body stops coming (the timeout
    /// covers the body too).
    pub async fn read_capped(&self, url: &Url, mut response: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
        let too_large = || UpstreamError::Malformed(format!("answer larger than {MAX_ANSWER_BYTES} bytes"));
        if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_error(url, e))? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// A 2xx answer's JSON, before any meaning is given to it; texts taken
    /// from the answer are shortened to an [`excerpt`] and scrubbed.
    ///
    /// # Errors
    /// [`UpstreamError::Status`] for any other status,
    /// [`UpstreamError::Malformed`] when `body` is not JSON.
    pub fn json_answer(&self, status: u16, body: &[u8]) -> Result<serde_json::Value, UpstreamError> {
        let shown = || excerpt(&String::from_utf8_lossy(body));
        if !(200..300).contains(&status) {
            return Err(UpstreamError::Status { status, body_excerpt: self.scrub(&shown()) });
        }
        serde_json::from_slice(body)
            .map_err(|e| UpstreamError::Malformed(self.scrub(&format!("not JSON ({e}): {:?}", shown()))))
    }

    /// Removes the secret and the encoded credentials from a text taken from
    /// an answer, in case the other side echoes them.
    pub fn scrub(&self, text: &str) -> String {
        text.replace(&self.encoded_credentials, "[redacted]").replace(self.secret.expose(), "[redacted]")
    }

    /// Describes a reqwest failure without reqwest's URL (we add our own,
    /// which [`parse_url`] guarantees holds no credentials) and with its
    /// causes, which is where "connection refused" actually lives.
    fn transport_error(&self, url: &Url, e: reqwest::Error) -> UpstreamError {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        let mut text = format!("{what} ({url})");
        let e = e.without_url();
        let mut cause: Option<&dyn std::error::Error> = Some(&e);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        UpstreamError::Transport(self.scrub(&text))
    }
}

/// Reads `raw`, the value of `api`'s URL setting: an absolute `http(s)` URL
/// without userinfo (and, for a root, without query or fragment); plain
/// `http` only to loopback, where the tests and local fakes run.
///
/// # Errors
/// [`UpstreamError::Config`] when `raw` is not such a URL. Credentials in it
/// would be printed wherever the URL is, and plain `http` to another host
/// would send the secret across the network in clear; the message names the
/// URL with its userinfo redacted.
pub fn parse_url(api: &Api, raw: &str) -> Result<Url, UpstreamError> {
    let bad = |why: &str| UpstreamError::Config(format!("{} {:?} {why}", api.url_setting, redact_userinfo(raw)));
    let default = api.default_url;
    let url = Url::parse(raw.trim()).map_err(|e| bad(&format!("is not a URL ({e}): use {default}.")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(&format!(
            "carries credentials: remove them and use {} / {}.",
            api.id_setting, api.secret_setting
        )));
    }
    if api.url_is_root && (url.query().is_some() || url.fragment().is_some()) {
        return Err(bad(&format!("has a query or fragment, which an API root cannot carry: use {default}.")));
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
        _ => Err(bad(&format!("is not http(s): use {default}."))),
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

/// At most [`EXCERPT_CHARS`] characters, cut on a character boundary.
pub fn excerpt(text: &str) -> String {
    cut(text.trim())
}

/// The first [`EXCERPT_CHARS`] characters of `text`, nothing trimmed: for
/// an id, where a space is a difference.
pub fn cut(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: Api = Api {
        name: "Example API",
        url_setting: "EXAMPLE_API_URL",
        default_url: "https://api.example.com/v1",
        url_is_root: true,
        id_setting: "EXAMPLE_API_ID",
        id_is: "the id of an Example API token",
        secret_setting: "EXAMPLE_API_SECRET",
        secret_is: "the secret of an Example API token",
    };

    #[test]
    fn the_authorization_header_is_standard_padded_base64_and_sensitive() {
        // given the credentials of RFC 7617's example
        let up = Upstream::new(&API, "Aladdin", Secret::new("open sesame".into()), Duration::from_secs(1)).unwrap();
        // then the header is the RFC's, and hyper will not print it
        assert_eq!(up.authorization.to_str().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(up.authorization.is_sensitive());
        // and values 62 and 63 use the standard alphabet, not the URL-safe one
        let up = Upstream::new(&API, "id", Secret::new("???~~~".into()), Duration::from_secs(1)).unwrap();
        assert_eq!(up.encoded_credentials, "aWQ6Pz8/fn5+");
    }

    #[test]
    fn refusals_name_the_setting_to_change() {
        let new = |id: &str, secret: &str, ms: u64| {
            Upstream::new(&API, id, Secret::new(secret.into()), Duration::from_millis(ms)).err().unwrap().to_string()
        };
        assert_eq!(new("", "s", 1), "EXAMPLE_API_ID is empty: set it to the id of an Example API token.");
        assert!(new("a:b", "s", 1).starts_with("EXAMPLE_API_ID contains ':'"));
        assert_eq!(new("id", "", 1), "EXAMPLE_API_SECRET is empty: set it to the secret of an Example API token.");
        assert_eq!(new("id", "s", 0), "the Example API timeout is zero: give it a positive duration.");
        let e = parse_url(&API, "https://id:hunter2@api.example.com/v1").unwrap_err().to_string();
        assert!(e.starts_with("EXAMPLE_API_URL \"https://[redacted]@api.example.com/v1\" carries"), "{e}");
        assert!(parse_url(&API, "https://api.example.com/v1?x=1").is_err());
        assert!(parse_url(&Api { url_is_root: false, ..API }, "https://api.example.com/v1?x=1").is_ok());
    }
}
