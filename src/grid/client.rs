//! The Grid REST client: fetches an invitation by its code
//! (`GET {GRID_API_URL}/invitations/{code}`), for a claim that arrived
//! without the invitation or to check one that did.
//!
//! Like [`crate::lightspark::client`], the client only asks and classifies the
//! answer; it never decides what a failure means for the invitation. A failed
//! fetch says nothing about the invitation, so the caller keeps the event
//! pending and asks again later ([`GridFetchError::is_transient`]); only a 200
//! answer that is the asked invitation becomes a snapshot, and only a 404 means
//! "Grid knows no such invitation".
//!
//! The API client secret is used in exactly one place, the `Authorization`
//! header, built once by [`Upstream::new`] and marked sensitive. Every text
//! that ends up in a [`GridFetchError`] is scrubbed of the secret and of the
//! encoded header first, because error messages end up in logs and in the
//! ledger's operator views.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

mod create;

use crate::secret::Secret;
use crate::upstream::{self, excerpt, Api, Upstream, UpstreamError};

/// Grid's production API, the `servers` entry of its OpenAPI; the date is
/// the API version the invitation schema was read from.
pub const DEFAULT_GRID_API_URL: &str = "https://api.lightspark.com/grid/2025-10-13";

/// Grid's settings, as messages name them.
const GRID_API: Api = Api {
    name: "Grid API",
    url_setting: "GRID_API_URL",
    default_url: DEFAULT_GRID_API_URL,
    // Paths are appended to it.
    url_is_root: true,
    id_setting: "GRID_API_TOKEN_ID",
    id_is: "the id of a Grid API token",
    secret_setting: "GRID_API_CLIENT_SECRET",
    secret_is: "the client secret of a Grid API token",
};

/// Calls the Grid API with an API token's id and client secret (HTTP Basic).
///
/// Cheap to clone: the connection pool is shared.
#[derive(Clone)]
pub struct GridClient {
    upstream: Upstream,
    base_url: Url,
}

/// Shows where the client points and as whom, never the secret.
impl std::fmt::Debug for GridClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridClient")
            .field("base_url", &self.base_url.as_str())
            .field("token_id", &self.upstream.id())
            .field("secret", self.upstream.secret())
            .finish_non_exhaustive()
    }
}

/// Why a fetch gave no invitation. No variant ever holds the client secret or
/// the `Authorization` header: texts taken from answers are scrubbed.
#[derive(Debug, thiserror::Error)]
pub enum GridFetchError {
    /// The request did not get a whole answer: connection refused, reset,
    /// DNS, TLS, or the timeout passed (before or while the body came).
    #[error("Grid API unreachable: {0}")]
    Transport(String),
    /// The API answered with a status other than 2xx and 404 (401/403
    /// included).
    #[error("Grid API answered HTTP {status}: {body_excerpt}")]
    Status { status: u16, body_excerpt: String },
    /// A 2xx answer that is not an invitation: not JSON, larger than
    /// 64 KiB, or not an object.
    #[error("Grid API answer is unusable: {0}")]
    Malformed(String),
    /// An invitation object came back, but not the one asked: its `code` is
    /// another (`answered`), or it has none (`None`). Refused like the
    /// Lightspark client's [`FetchError::IdentityMismatch`], and transient
    /// for the same reason; `answer` is the refused object (scrubbed).
    ///
    /// [`FetchError::IdentityMismatch`]: crate::lightspark::client::FetchError::IdentityMismatch
    #[error("the answer is about {}, not {asked:?}", answered.as_ref().map_or_else(|| "no invitation code".to_owned(), |a| format!("{a:?}")))]
    IdentityMismatch { asked: String, answered: Option<String>, answer: Value },
    /// The code cannot be put in a URL path as one segment (empty, `.` or
    /// `..`), so no request was sent.
    #[error("the invitation code {0:?} cannot name an invitation in a URL path")]
    InvalidCode(String),
    /// The client cannot be built from its settings (bad URL, empty
    /// credentials, zero timeout).
    #[error("Grid API client misconfigured: {0}")]
    Config(String),
}

impl From<UpstreamError> for GridFetchError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Config(text) => GridFetchError::Config(text),
            UpstreamError::Transport(text) => GridFetchError::Transport(text),
            UpstreamError::Status { status, body_excerpt } => GridFetchError::Status { status, body_excerpt },
            UpstreamError::Malformed(text) => GridFetchError::Malformed(text),
        }
    }
}

impl GridFetchError {
    /// Whether asking again later can give a different answer, so the caller
    /// keeps the event pending and retries with backoff instead of asking an
    /// operator. The table is the Lightspark client's, for the same reasons:
    ///
    /// - `Transport`, HTTP 5xx, 408 and 429: the textbook transient failures.
    /// - HTTP 401/403: **transient on purpose**
    ///   ([`upstream::is_transient_status`] says why). The caller should
    ///   still log these loudly.
    /// - `Malformed`: transient as well. A 2xx answer that is not JSON is
    ///   typically a proxy or load balancer hiccup, and we cannot tell it from
    ///   a lasting problem by looking at it; retrying loses nothing.
    /// - `IdentityMismatch`: transient for the same reason; the caller
    ///   records it, since unlike a hiccup it is evidence of something wrong.
    /// - Other 4xx (400, 405, 413, 422, …) and 3xx (redirects are not
    ///   followed): not transient. The same request to the same URL will be
    ///   answered the same way until the code or `GRID_API_URL` changes.
    /// - `InvalidCode` and `Config`: not transient; no request can be made.
    pub fn is_transient(&self) -> bool {
        match self {
            GridFetchError::Transport(_) | GridFetchError::Malformed(_) | GridFetchError::IdentityMismatch { .. } => {
                true
            }
            GridFetchError::Status { status, .. } => upstream::is_transient_status(*status),
            GridFetchError::InvalidCode(_) | GridFetchError::Config(_) => false,
        }
    }
}

impl GridClient {
    /// Builds the client; sends nothing.
    ///
    /// `base_url` is the API root, such as [`DEFAULT_GRID_API_URL`]; paths are
    /// appended to it. `timeout` bounds each request as a whole (connect,
    /// headers and body), so a server that accepts and never answers cannot
    /// hold the caller.
    ///
    /// # Errors
    /// [`GridFetchError::Config`] when `base_url` is not an absolute
    /// `http(s)` URL, carries credentials of its own (they would be printed
    /// wherever the URL is), has a query or fragment, or is plain `http` to a
    /// host other than loopback (the secret would cross the network in clear);
    /// when `token_id` is empty or holds a `:` (Basic auth cannot carry it);
    /// when the secret is empty; when `timeout` is zero.
    pub fn new(base_url: &str, token_id: &str, secret: Secret, timeout: Duration) -> Result<Self, GridFetchError> {
        let base_url = upstream::parse_url(&GRID_API, base_url)?;
        let upstream = Upstream::new(&GRID_API, token_id, secret, timeout)?;
        Ok(Self { upstream, base_url })
    }

    /// The API root this client appends paths to.
    pub fn base_url(&self) -> &str {
        self.base_url.as_str()
    }

    /// Asks for the invitation with this `code`.
    ///
    /// `Ok(Some(invitation))` is the `UmaInvitation` object exactly as
    /// received, ready to be stored as a snapshot and read with
    /// [`GridInvitation::from_json`](super::webhook::GridInvitation::from_json).
    /// `Ok(None)` means Grid answered 404: it knows no invitation with that
    /// code. Errors never mean "no invitation": see
    /// [`GridFetchError::is_transient`].
    ///
    /// # Errors
    /// Every answer other than 404 or a 2xx JSON object whose `code` is the
    /// asked one ([`GridFetchError::IdentityMismatch`] when it is another's,
    /// or has none); a `code` that cannot be one path segment.
    pub async fn fetch_invitation(&self, code: &str) -> Result<Option<Value>, GridFetchError> {
        let url = self.invitation_url(code)?;
        let response = self.upstream.send(Method::GET, &url, None).await?;
        let status = response.status();
        let result = if status == StatusCode::NOT_FOUND {
            Ok(None)
        } else {
            let bytes = self.upstream.read_capped(&url, response).await?;
            self.interpret(status.as_u16(), code, &bytes)
        };
        match &result {
            Ok(found) => {
                tracing::debug!(code, status = status.as_u16(), found = found.is_some(), "fetched Grid invitation")
            }
            Err(e) => tracing::debug!(code, status = status.as_u16(), error = %e, "Grid invitation fetch failed"),
        }
        result
    }

    /// `{base}/invitations/{code}`, the code percent-encoded as one path
    /// segment (`/`, `?`, `#`, `%` and spaces included).
    fn invitation_url(&self, code: &str) -> Result<Url, GridFetchError> {
        // The URL standard reads these as "this" and "parent" segments even
        // when percent-encoded, so they would ask for another resource.
        if code.is_empty() || matches!(code, "." | ".." | "%2e" | "%2E") {
            return Err(GridFetchError::InvalidCode(code.to_owned()));
        }
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| GridFetchError::Config("GRID_API_URL cannot take a path.".into()))?
            .pop_if_empty()
            .push("invitations")
            .push(code);
        Ok(url)
    }

    /// Classifies an answer other than 404. Separate from the request so that
    /// every shape of answer can be tested without a server.
    fn interpret(&self, status: u16, code: &str, body: &[u8]) -> Result<Option<Value>, GridFetchError> {
        let scrub = |text: &str| self.upstream.scrub(text);
        let answer = self.upstream.json_answer(status, body)?;
        let Some(fields) = answer.as_object() else {
            return Err(GridFetchError::Malformed(scrub(&format!(
                "not a JSON object: {}",
                excerpt(&answer.to_string())
            ))));
        };
        // An answer about another invitation (a caching proxy, a list
        // endpoint), or about none, must not be stored as this one: the
        // fold would merge its invitee and amount into it.
        let answered = match fields.get("code") {
            Some(Value::String(answered)) if answered == code => return Ok(Some(answer)),
            // Absent to the invitation reader as well.
            None | Some(Value::Null) => None,
            Some(Value::String(other)) if other.is_empty() => None,
            Some(Value::String(other)) => Some(other.clone()),
            Some(other) => Some(other.to_string()),
        };
        let text = answer.to_string();
        let scrubbed = scrub(&text);
        let kept =
            if scrubbed == text { answer } else { serde_json::from_str(&scrubbed).unwrap_or(Value::String(scrubbed)) };
        Err(GridFetchError::IdentityMismatch {
            asked: scrub(code),
            answered: answered.map(|a| upstream::cut(&scrub(&a))),
            answer: kept,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::EXCERPT_CHARS;
    use base64::Engine as _;
    use serde_json::json;

    const SECRET: &str = "s3cr3t-grid-client-secret";

    fn client() -> GridClient {
        GridClient::new(DEFAULT_GRID_API_URL, "token-id", Secret::new(SECRET.into()), Duration::from_secs(5)).unwrap()
    }

    fn answer(c: &GridClient, status: u16, code: &str, body: Value) -> Result<Option<Value>, GridFetchError> {
        c.interpret(status, code, body.to_string().as_bytes())
    }

    #[test]
    fn client_reads_the_asked_invitation_and_rejects_other_answers() {
        // Given a client
        let c = client();
        let invitation = json!({"code": "019542f5", "status": "CLAIMED", "inviterUma": "$a@b.example"});
        // When Grid answers the asked invitation
        // Then it is returned exactly as received
        assert_eq!(answer(&c, 200, "019542f5", invitation.clone()).unwrap(), Some(invitation));
        // And an invitation with another code, or none, is refused as a
        // mismatch that is asked again later
        for (body, answered) in [
            (json!({"code": "other", "inviteeUma": "$mallory@evil.example"}), Some("other")),
            (json!({"code": "019542f5 "}), Some("019542f5 ")),
            (json!({"code": 19542}), Some("19542")),
            (json!({"status": "CLAIMED"}), None),
            (json!({"code": null, "status": "CLAIMED"}), None),
            (json!({"code": ""}), None),
        ] {
            match answer(&c, 200, "019542f5", body.clone()).unwrap_err() {
                e @ GridFetchError::IdentityMismatch { .. } => {
                    assert!(e.is_transient());
                    let GridFetchError::IdentityMismatch { asked, answered: got, answer } = &e else { unreachable!() };
                    assert_eq!((asked.as_str(), got.as_deref(), answer), ("019542f5", answered, &body));
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        // And every other 2xx answer is malformed
        for (status, body) in [(200, json!([{"code": "019542f5"}])), (200, json!(null)), (200, json!("019542f5"))] {
            assert!(
                matches!(answer(&c, status, "019542f5", body.clone()), Err(GridFetchError::Malformed(_))),
                "{body}"
            );
        }
        assert!(matches!(c.interpret(200, "x", b"<html>bad gateway</html>"), Err(GridFetchError::Malformed(_))));
        assert!(matches!(c.interpret(204, "x", b""), Err(GridFetchError::Malformed(_))));
    }

    #[test]
    fn client_non_2xx_is_a_status_error_with_a_short_excerpt() {
        let c = client();
        match c.interpret(502, "x", "x".repeat(10_000).as_bytes()).unwrap_err() {
            GridFetchError::Status { status: 502, body_excerpt } => {
                assert!(body_excerpt.chars().count() <= EXCERPT_CHARS + 1)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn client_errors_scrub_an_echoed_secret_or_header() {
        // Given an answer that echoes the credentials
        let c = client();
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("token-id:{SECRET}"));
        for (status, body) in [
            (401, format!("bad secret {SECRET}, header Basic {encoded}")),
            (200, format!("oops {SECRET} {encoded}")),
            (200, json!({"code": format!("{SECRET} {encoded}")}).to_string()),
        ] {
            // When it is classified
            let e = c.interpret(status, "x", body.as_bytes()).unwrap_err();
            // Then neither the message nor the debug form holds them
            for text in [format!("{e}"), format!("{e:?}")] {
                assert!(!text.contains(SECRET) && !text.contains(&encoded), "{text}");
            }
        }
        let debug = format!("{c:?}");
        assert!(!debug.contains(SECRET) && !debug.contains(&encoded), "{debug}");
    }

    #[test]
    fn client_transience_follows_the_documented_table() {
        let status = |status| GridFetchError::Status { status, body_excerpt: String::new() };
        for transient in [
            GridFetchError::Transport("refused".into()),
            GridFetchError::Malformed("html".into()),
            GridFetchError::IdentityMismatch { asked: "a".into(), answered: None, answer: json!({}) },
            status(500),
            status(503),
            status(401),
            status(403),
            status(408),
            status(429),
        ] {
            assert!(transient.is_transient(), "{transient:?}");
        }
        for permanent in [
            GridFetchError::Config("url".into()),
            GridFetchError::InvalidCode("..".into()),
            status(400),
            status(405),
            status(422),
            status(301),
        ] {
            assert!(!permanent.is_transient(), "{permanent:?}");
        }
    }

    #[test]
    fn client_new_refuses_unusable_settings_without_printing_them() {
        let ok = |url: &str| GridClient::new(url, "id", Secret::new("s".into()), Duration::from_secs(1));
        for good in [
            DEFAULT_GRID_API_URL,
            "https://api.lightspark.com/grid/2025-10-13/",
            "http://127.0.0.1:8080/grid",
            "http://localhost:8080",
            "http://[::1]:8080/grid",
        ] {
            assert!(ok(good).is_ok(), "{good}");
        }
        for bad in [
            "not a url",
            "ftp://api.lightspark.com/grid",
            "http://api.lightspark.com/grid",
            "/grid",
            "https://api.lightspark.com/grid?v=1",
            "https://api.lightspark.com/grid#x",
        ] {
            assert!(matches!(ok(bad), Err(GridFetchError::Config(_))), "{bad}");
        }
        let e = ok("https://id:hunter2@api.lightspark.com/grid").unwrap_err();
        assert!(matches!(e, GridFetchError::Config(_)));
        assert!(!format!("{e} {e:?}").contains("hunter2"), "{e}");
        let new = |id: &str, secret: &str, t: u64| {
            GridClient::new(DEFAULT_GRID_API_URL, id, Secret::new(secret.into()), Duration::from_millis(t))
        };
        assert!(matches!(new("", "s", 1000), Err(GridFetchError::Config(_))));
        assert!(matches!(new("a:b", "s", 1000), Err(GridFetchError::Config(_))));
        assert!(matches!(new("id", "", 1000), Err(GridFetchError::Config(_))));
        assert!(matches!(new("id", "s", 0), Err(GridFetchError::Config(_))));
    }

    #[test]
    fn client_puts_the_code_in_the_path_as_one_encoded_segment() {
        // Given a client on the default base, with or without a trailing slash
        for base in [DEFAULT_GRID_API_URL, "https://api.lightspark.com/grid/2025-10-13/"] {
            let c = GridClient::new(base, "id", Secret::new("s".into()), Duration::from_secs(1)).unwrap();
            // When codes with path-significant characters are asked
            for (code, path) in [
                ("019542f5", "019542f5"),
                ("a b/c", "a%20b%2Fc"),
                ("?x#y", "%3Fx%23y"),
                ("%41", "%2541"),
                ("...", "..."),
                ("ü", "%C3%BC"),
            ] {
                // Then each is one segment under /invitations
                assert_eq!(
                    c.invitation_url(code).unwrap().as_str(),
                    format!("https://api.lightspark.com/grid/2025-10-13/invitations/{path}"),
                    "{code}"
                );
            }
            // And codes that would name another resource are refused
            for code in ["", ".", "..", "%2e", "%2E"] {
                assert!(matches!(c.invitation_url(code), Err(GridFetchError::InvalidCode(_))), "{code:?}");
            }
        }
    }

    /// A fake Grid on loopback, one task per connection, that answers by path
    /// after checking the Basic credentials of `id:secret`.
    mod fake {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        use tokio::net::{TcpListener, TcpStream};

        pub const BASE_PATH: &str = "/grid/2025-10-13/invitations/";
        /// `base64("token-id:s3cr3t-grid-client-secret")`.
        pub const GOOD_AUTH: &str = "Basic dG9rZW4taWQ6czNjcjN0LWdyaWQtY2xpZW50LXNlY3JldA==";
        pub const TWO_MB: usize = 2 * 1024 * 1024;

        pub async fn start() -> String {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream));
                }
            });
            format!("http://{address}/grid/2025-10-13")
        }

        async fn serve(mut stream: TcpStream) {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let authorized = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(k, v)| k.eq_ignore_ascii_case("authorization") && v.trim() == GOOD_AUTH)
            });
            let code = path.strip_prefix(BASE_PATH).unwrap_or_default();
            if !authorized {
                // Echoes the header it got, as a careless proxy might.
                let echoed = head.lines().find(|l| l.to_ascii_lowercase().starts_with("authorization"));
                return respond(&mut stream, "401 Unauthorized", &format!("{{\"echo\":{:?}}}", echoed)).await;
            }
            match code {
                "019542f5" => respond(&mut stream, "200 OK", r#"{"code":"019542f5","status":"CLAIMED"}"#).await,
                "a%20b%2Fc" => respond(&mut stream, "200 OK", r#"{"code":"a b/c","status":"PENDING"}"#).await,
                "huge-declared" => {
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {TWO_MB}\r\n\r\n");
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&vec![b' '; TWO_MB]).await;
                }
                "huge-streamed" => {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"code\":\"").await;
                    for _ in 0..TWO_MB / 8192 {
                        if stream.write_all(&[b'x'; 8192]).await.is_err() {
                            return;
                        }
                    }
                    let _ = stream.write_all(b"\"}").await;
                }
                "hang" => std::future::pending().await,
                "hang-body" => {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"code\"").await;
                    std::future::pending().await
                }
                "boom" => respond(&mut stream, "503 Service Unavailable", "try later").await,
                _ => {
                    let body = r#"{"status":404,"code":"INVITATION_NOT_FOUND","message":"Invitation not found"}"#;
                    respond(&mut stream, "404 Not Found", body).await
                }
            }
        }

        async fn respond(stream: &mut TcpStream, status: &str, body: &str) {
            let text = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(text.as_bytes()).await;
        }
    }

    #[tokio::test]
    async fn client_against_a_local_fake_grid() {
        // Given a fake Grid on loopback and a client with a short timeout
        let base = fake::start().await;
        let timeout = Duration::from_millis(400);
        let c = GridClient::new(&base, "token-id", Secret::new(SECRET.into()), timeout).unwrap();

        // When a known code is asked with the right credentials
        // Then the invitation comes back as received
        let found = c.fetch_invitation("019542f5").await.unwrap().unwrap();
        assert_eq!(found, json!({"code": "019542f5", "status": "CLAIMED"}));
        // And a code with a space and a slash reaches the server as one encoded segment
        assert_eq!(c.fetch_invitation("a b/c").await.unwrap().unwrap()["code"], "a b/c");

        // When the code is unknown
        // Then the answer is None, not an error
        assert_eq!(c.fetch_invitation("unknown").await.unwrap(), None);

        // When the answer is 2 MB, declared or streamed
        for code in ["huge-declared", "huge-streamed"] {
            // Then it is refused as too large, transiently
            let e = c.fetch_invitation(code).await.unwrap_err();
            assert!(matches!(&e, GridFetchError::Malformed(m) if m.contains("larger than 65536")), "{code}: {e:?}");
            assert!(e.is_transient());
        }

        // When the server never answers, or stops in the middle of the body
        for code in ["hang", "hang-body"] {
            let started = std::time::Instant::now();
            let e = c.fetch_invitation(code).await.unwrap_err();
            // Then the timeout ends the request, transiently
            assert!(matches!(&e, GridFetchError::Transport(m) if m.contains("timed out")), "{code}: {e:?}");
            assert!(e.is_transient());
            assert!(started.elapsed() < timeout * 5, "{code}: {:?}", started.elapsed());
        }

        // When the server fails
        let e = c.fetch_invitation("boom").await.unwrap_err();
        assert!(matches!(e, GridFetchError::Status { status: 503, .. }), "{e:?}");

        // When the credentials are wrong and the server echoes them
        let wrong = GridClient::new(&base, "token-id", Secret::new("wrong-secret".into()), timeout).unwrap();
        let e = wrong.fetch_invitation("019542f5").await.unwrap_err();
        // Then it is a 401, transient, and the error does not repeat the secret or its encoding
        assert!(matches!(e, GridFetchError::Status { status: 401, .. }), "{e:?}");
        assert!(e.is_transient());
        let wrong_encoded = base64::engine::general_purpose::STANDARD.encode("token-id:wrong-secret");
        let text = format!("{e} {e:?}");
        assert!(
            text.contains("[redacted]") && !text.contains("wrong-secret") && !text.contains(&wrong_encoded),
            "{text}"
        );

        // When nothing listens
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let nowhere = GridClient::new(&format!("http://{closed}"), "id", Secret::new(SECRET.into()), timeout).unwrap();
        let e = nowhere.fetch_invitation("019542f5").await.unwrap_err();
        // Then it is a transport failure that names the URL but no secret
        assert!(matches!(&e, GridFetchError::Transport(m) if m.contains(&closed.to_string())), "{e:?}");
        assert!(!format!("{e:?}").contains(SECRET));
    }
}
