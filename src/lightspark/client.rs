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
//! which is built once by [`Upstream::new`] and marked sensitive. Every
//! text that ends up in a [`FetchError`] is scrubbed of the secret and of the
//! encoded header first, because error messages end up in logs and in the
//! ledger's operator views.

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::Value;

mod create;

pub use create::NewInvitation;

use crate::lightspark::invitation::ID;
use crate::secret::Secret;
use crate::upstream::{self, excerpt, Api, Upstream, UpstreamError};

/// Lightspark's settings, as messages name them.
const LIGHTSPARK_API: Api = Api {
    name: "Lightspark API",
    url_setting: "LIGHTSPARK_API_URL",
    default_url: "https://api.lightspark.com/graphql/server/2023-09-13",
    // The endpoint is posted to as it is.
    url_is_root: false,
    id_setting: "LIGHTSPARK_API_CLIENT_ID",
    id_is: "the client id of a Lightspark API token",
    secret_setting: "LIGHTSPARK_API_CLIENT_SECRET",
    secret_is: "the secret of a Lightspark API token",
};

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

/// Calls the Lightspark GraphQL API with the API token's client id and secret.
///
/// Cheap to clone: the connection pool is shared.
#[derive(Clone)]
pub struct LightsparkClient {
    upstream: Upstream,
    url: Url,
}

/// Shows where the client points and as whom, never the secret.
impl std::fmt::Debug for LightsparkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LightsparkClient")
            .field("url", &self.url.as_str())
            .field("client_id", &self.upstream.id())
            .field("client_secret", self.upstream.secret())
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
    /// An invitation came back, but not the one asked: its id is another
    /// (`answered`), or it has none (`None`). Stored under the asked id it
    /// would pay another invitation's invitee and amount, so it is refused;
    /// the next fetch may answer right (a caching proxy, a bug upstream),
    /// so it is transient. `answer` is the refused entity (scrubbed), kept
    /// as evidence.
    #[error("the answer is about {}, not {asked:?}", answered.as_ref().map_or_else(|| "no invitation id".to_owned(), |a| format!("{a:?}")))]
    IdentityMismatch { asked: String, answered: Option<String>, answer: Value },
}

impl From<UpstreamError> for FetchError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Config(text) => FetchError::Config(text),
            UpstreamError::Transport(text) => FetchError::Transport(text),
            UpstreamError::Status { status, body_excerpt } => FetchError::Status { status, body_excerpt },
            UpstreamError::Malformed(text) => FetchError::Malformed(text),
        }
    }
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
    /// - HTTP 401/403: **transient on purpose**
    ///   ([`upstream::is_transient_status`] says why). The caller should
    ///   still log these loudly, since they will not heal on their own.
    /// - `Malformed`: transient as well. A 2xx answer that is not JSON is
    ///   typically a proxy or load balancer hiccup, and we cannot tell it from
    ///   a lasting problem by looking at it; retrying loses nothing.
    /// - `IdentityMismatch`: transient for the same reason; the caller
    ///   records it, since unlike a hiccup it is evidence of something wrong.
    /// - Other 4xx (400, 404, 405, 413, 422, …): not transient. The same
    ///   request to the same URL will be refused the same way until the code
    ///   or `LIGHTSPARK_API_URL` changes.
    /// - `Config`: not transient; the client does not exist.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Transport(_)
            | FetchError::GraphQl(_)
            | FetchError::Malformed(_)
            | FetchError::IdentityMismatch { .. } => true,
            FetchError::Status { status, .. } => upstream::is_transient_status(*status),
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
        let url = upstream::parse_url(&LIGHTSPARK_API, api_url)?;
        let upstream = Upstream::new(&LIGHTSPARK_API, client_id, client_secret, timeout)?;
        Ok(Self { upstream, url })
    }

    /// The endpoint this client posts to.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Asks for invitation `id` with the [`GET_UMA_INVITATION`] query.
    ///
    /// `Ok(Some(entity))` is `data.entity` exactly as received (aliased
    /// spelling), the invitation `id` itself, ready to be stored as an
    /// `invitation.fetched` snapshot. `Ok(None)` means Lightspark knows no
    /// entity with that id. Errors never mean "no invitation": see
    /// [`FetchError::is_transient`].
    ///
    /// # Errors
    /// Every answer other than `data.entity` being null or an invitation
    /// whose id is `id` ([`FetchError::IdentityMismatch`] when it is
    /// another's, or has none).
    pub async fn fetch_invitation(&self, id: &str) -> Result<Option<Value>, FetchError> {
        let body = serde_json::json!({ "query": GET_UMA_INVITATION, "variables": { "id": id } });
        let response = self.upstream.send(Method::POST, &self.url, Some(&body)).await?;
        let status = response.status().as_u16();
        let bytes = self.upstream.read_capped(&self.url, response).await?;
        let result = self.interpret(status, id, &bytes);
        match &result {
            Ok(found) => tracing::debug!(invitation = id, status, found = found.is_some(), "fetched invitation"),
            Err(e) => tracing::debug!(invitation = id, status, error = %e, "invitation fetch failed"),
        }
        result
    }

    /// Classifies the answer to a request for invitation `asked`. Separate
    /// from the request so that every shape of answer can be tested without
    /// a server.
    fn interpret(&self, status: u16, asked: &str, body: &[u8]) -> Result<Option<Value>, FetchError> {
        let scrub = |text: &str| self.upstream.scrub(text);
        let answer = self.upstream.json_answer(status, body)?;
        // Errors win over data: a GraphQL answer may carry both, and a
        // partial entity (fields nulled by an error) must not become a
        // snapshot, nor a null entity read as "unknown id".
        match answer.get("errors") {
            None | Some(Value::Null) => {}
            Some(Value::Array(errors)) if errors.is_empty() => {}
            Some(errors) => return Err(FetchError::GraphQl(scrub(&excerpt(&graphql_messages(errors))))),
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
                    Err(FetchError::NotAnInvitation(scrub(&format!("data.entity is a {t}, not an UmaInvitation"))))
                }
                _ => self.same_invitation(asked, entity).map(Some),
            },
            other => Err(FetchError::Malformed(scrub(&format!(
                "data.entity is neither an object nor null: {}",
                excerpt(&other.to_string())
            )))),
        }
    }
}

impl LightsparkClient {
    /// `entity` when it is invitation `asked`: every spelling of the id the
    /// invitation parser reads that is present names `asked`, and one is.
    /// Any other answer is [`FetchError::IdentityMismatch`], whatever else
    /// it holds: the fold would merge its invitee and amount into `asked`.
    fn same_invitation(&self, asked: &str, entity: &Value) -> Result<Value, FetchError> {
        let mut agrees = false;
        for v in ID.iter().filter_map(|k| entity.get(*k)) {
            match v {
                // Absent to the parser as well.
                Value::Null => {}
                Value::String(s) if s.is_empty() => {}
                Value::String(s) if s == asked => agrees = true,
                Value::String(s) => return Err(self.mismatch(asked, Some(s.clone()), entity)),
                other => return Err(self.mismatch(asked, Some(other.to_string()), entity)),
            }
        }
        if agrees {
            Ok(entity.clone())
        } else {
            Err(self.mismatch(asked, None, entity))
        }
    }

    /// The refusal of `entity`, asked as `asked`: every text scrubbed, and
    /// the refused answer kept as evidence without what an echoing server
    /// may have put in it of our credentials.
    fn mismatch(&self, asked: &str, answered: Option<String>, entity: &Value) -> FetchError {
        let scrub = |text: &str| self.upstream.scrub(text);
        let text = entity.to_string();
        let scrubbed = scrub(&text);
        let answer = if scrubbed == text {
            entity.clone()
        } else {
            serde_json::from_str(&scrubbed).unwrap_or(Value::String(scrubbed))
        };
        FetchError::IdentityMismatch {
            asked: scrub(asked),
            answered: answered.map(|a| upstream::cut(&scrub(&a))),
            answer,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::EXCERPT_CHARS;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;
    use serde_json::json;

    const SECRET: &str = "s3cr3t-client-secret-value";
    /// The invitation every test asks for.
    const ASKED: &str = "UmaInvitation:1";

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
        c.interpret(status, ASKED, body.to_string().as_bytes())
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
        let entity = json!({"__typename": "UmaInvitation", "uma_invitation_id": ASKED});
        assert_eq!(answer(&c, 200, json!({"data": {"entity": entity}})).unwrap(), Some(entity.clone()));
        assert_eq!(answer(&c, 200, json!({"data": {"entity": null}})).unwrap(), None);
        assert!(matches!(answer(&c, 200, json!({"data": {}})), Err(FetchError::Malformed(_))));
        assert!(matches!(answer(&c, 200, json!({"data": {"entity": {}}})), Err(FetchError::NotAnInvitation(_))));
        assert!(matches!(
            answer(&c, 200, json!({"data": {"entity": {"__typename": "Wallet"}}})),
            Err(FetchError::NotAnInvitation(_))
        ));
        assert!(matches!(answer(&c, 200, json!({"data": {"entity": 7}})), Err(FetchError::Malformed(_))));
        assert!(matches!(c.interpret(200, ASKED, b"<html>bad gateway</html>"), Err(FetchError::Malformed(_))));
        assert!(matches!(answer(&c, 204, json!(null)), Err(FetchError::Malformed(_))));
    }

    #[test]
    fn client_refuses_an_invitation_that_is_not_the_one_asked() {
        // Given a client asking for UmaInvitation:1
        let c = client();
        let mallory = json!({"__typename": "UmaInvitation", "uma_invitation_id": "UmaInvitation:2",
            "uma_invitation_invitee_uma": "$mallory@evil.example",
            "uma_invitation_payment_amount": {"uma_currency_amount_value": 99999}});
        let mut no_id = mallory.clone();
        no_id.as_object_mut().unwrap().remove("uma_invitation_id");
        for (entity, answered) in [
            // When the answer is another invitation
            (mallory.clone(), Some("UmaInvitation:2")),
            // or the same with no id at all, or an empty or null one
            (no_id.clone(), None),
            (json!({"__typename": "UmaInvitation", "uma_invitation_id": ""}), None),
            (json!({"__typename": "UmaInvitation", "id": null}), None),
            // or an id that differs by a space, or is not text
            (json!({"__typename": "UmaInvitation", "uma_invitation_id": "UmaInvitation:1 "}), Some("UmaInvitation:1 ")),
            (json!({"__typename": "UmaInvitation", "uma_invitation_id": 1}), Some("1")),
            // or two spellings naming two invitations, whichever comes first
            (
                json!({"__typename": "UmaInvitation", "id": ASKED, "uma_invitation_id": "UmaInvitation:2"}),
                Some("UmaInvitation:2"),
            ),
            (
                json!({"__typename": "UmaInvitation", "id": "UmaInvitation:2", "uma_invitation_id": ASKED}),
                Some("UmaInvitation:2"),
            ),
        ] {
            // Then it is refused as a mismatch, with what was asked and
            // answered, the refused answer kept, and asked again later
            match answer(&c, 200, json!({"data": {"entity": entity}})).unwrap_err() {
                e @ FetchError::IdentityMismatch { .. } => {
                    assert!(e.is_transient());
                    let FetchError::IdentityMismatch { asked, answered: got, answer } = &e else { unreachable!() };
                    assert_eq!((asked.as_str(), got.as_deref()), (ASKED, answered), "{entity}");
                    assert_eq!(answer, &entity);
                    assert!(e.to_string().contains("not \"UmaInvitation:1\""), "{e}");
                }
                other => panic!("{entity}: {other:?}"),
            }
        }
        // And the asked invitation, under either spelling or both, is read
        for entity in [
            json!({"__typename": "UmaInvitation", "uma_invitation_id": ASKED}),
            json!({"__typename": "UmaInvitation", "id": ASKED}),
            json!({"__typename": "UmaInvitation", "id": ASKED, "uma_invitation_id": ASKED}),
            json!({"__typename": "UmaInvitation", "id": "", "uma_invitation_id": ASKED}),
        ] {
            assert_eq!(answer(&c, 200, json!({"data": {"entity": entity}})).unwrap(), Some(entity.clone()));
        }
    }

    #[test]
    fn client_scrubs_a_refused_answer_that_echoes_the_secret() {
        // Given an answer about another invitation that echoes the secret
        let c = client();
        let entity = json!({"__typename": "UmaInvitation", "uma_invitation_id": format!("UmaInvitation:{SECRET}"),
            "uma_invitation_inviter_first_name": SECRET});
        // When it is refused
        let e = answer(&c, 200, json!({"data": {"entity": entity}})).unwrap_err();
        // Then neither the error nor the answer kept holds the secret
        assert!(matches!(e, FetchError::IdentityMismatch { .. }), "{e:?}");
        assert!(!format!("{e} {e:?}").contains(SECRET), "{e:?}");
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
        match c.interpret(502, ASKED, long.as_bytes()).unwrap_err() {
            FetchError::Status { status: 502, body_excerpt } => {
                assert!(body_excerpt.chars().count() <= EXCERPT_CHARS + 1)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn client_errors_scrub_an_echoed_secret_or_header() {
        let c = client();
        let header = format!("Basic {}", BASE64.encode(format!("client-id:{SECRET}")));
        for (status, body) in [
            (401, format!("bad secret {SECRET}, header {header}")),
            (200, json!({"errors": [{"message": format!("bad {SECRET} / {header}")}]}).to_string()),
            (200, format!("oops {SECRET} {header}")),
        ] {
            let e = c.interpret(status, ASKED, body.as_bytes()).unwrap_err();
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
            FetchError::IdentityMismatch { asked: "a".into(), answered: None, answer: json!({}) },
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
