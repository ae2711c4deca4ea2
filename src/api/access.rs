//! Who may read: with `READ_API_TOKEN`, whoever presents it (bearer header,
//! or the status page's cookie); without one (the listener is then on
//! loopback), only requests whose `Host` is a loopback name, so that a web
//! page the operator opens cannot read the service through DNS rebinding.
//! Webhook routes are signed and need neither.
//!
//! The status page's cookie never holds the token itself: it holds a
//! session, an expiry and an HMAC over it keyed with the token's digest.
//! A stolen cookie opens the pages until it expires, but gives away
//! neither the token (which also reads `/v1` and `/metrics`) nor a way to
//! make a longer session; changing the token ends every session.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::http::HeaderMap;
use warp::{Filter, Rejection};

use super::error::{reject, ApiError};
use crate::secret::Secret;

/// `READ_API_TOKEN` as the read API, the metrics and the status page check
/// it: the SHA-256 digest of what was presented against the token's, in
/// constant time, so neither the token nor its length leaks.
#[derive(Clone, Copy)]
pub struct Access {
    expected: Option<[u8; 32]>,
}

/// How long a status-page session lasts: the cookie's `Max-Age`, and the
/// expiry its value carries (checked here, whatever the browser keeps).
pub const SESSION_SECONDS: i64 = 12 * 3600;

/// What a session's HMAC covers besides its expiry: a label of its own, so
/// no other value keyed the same way can pass for a session.
const SESSION_LABEL: &[u8] = b"invitation-ledger status page session v1:";

/// Why a read is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token is configured and the `Host` is not a loopback name.
    ForeignHost,
    /// A token is configured and was not presented.
    NoToken,
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::ForeignHost => ApiError::ForbiddenHost,
            Denied::NoToken => ApiError::Unauthorized,
        }
    }
}

impl Access {
    pub fn new(token: Option<&Secret>) -> Self {
        Self { expected: token.map(|t| Sha256::digest(t.expose().as_bytes()).into()) }
    }

    /// No token configured: reads are open to loopback `Host` names.
    pub fn is_open(&self) -> bool {
        self.expected.is_none()
    }

    /// Whether `presented` is the token; an empty value never is.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let Some(expected) = &self.expected else { return false };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        bool::from(digest.ct_eq(expected)) && !presented.is_empty()
    }

    /// A session for the status page's cookie, valid until `now` (Unix
    /// seconds) + [`SESSION_SECONDS`]: `<expiry>.<HMAC-SHA256 hex>`, keyed
    /// with the token's digest. `None` without a token.
    pub fn session(&self, now: i64) -> Option<String> {
        let expires = now.saturating_add(SESSION_SECONDS);
        Some(format!("{expires}.{}", hex::encode(self.session_mac(expires)?)))
    }

    /// Whether `presented` is a session [`session`](Self::session) made and
    /// that has not expired at `now`, its HMAC compared in constant time.
    pub fn is_session(&self, presented: &[u8], now: i64) -> bool {
        let Some((expires, mac)) = std::str::from_utf8(presented).ok().and_then(|t| t.split_once('.')) else {
            return false;
        };
        let mut given = [0u8; 32];
        let (Ok(expires), Ok(())) = (expires.parse::<i64>(), hex::decode_to_slice(mac, &mut given)) else {
            return false;
        };
        let Some(expected) = self.session_mac(expires) else { return false };
        bool::from(given.ct_eq(&expected)) && now < expires
    }

    fn session_mac(&self, expires: i64) -> Option<[u8; 32]> {
        let key = self.expected?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts keys of any length");
        mac.update(SESSION_LABEL);
        mac.update(expires.to_string().as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    /// The read API's check: `Authorization: Bearer <token>`, or, without a
    /// token, a loopback `Host`.
    ///
    /// The header is read as raw bytes: a value that is not visible ASCII
    /// (say, the token followed by a no-break space) is a wrong token, not
    /// a 400 about the header's encoding.
    ///
    /// # Errors
    /// [`Denied`] saying why.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Denied> {
        self.check_with(headers, None)
    }

    /// [`check`](Self::check), also accepting `cookie` when it is a live
    /// [`session`](Self::session) (the status page's), both checked without
    /// short-circuit.
    ///
    /// # Errors
    /// [`Denied`] saying why.
    pub fn check_with(&self, headers: &HeaderMap, cookie: Option<&[u8]>) -> Result<(), Denied> {
        if self.is_open() {
            let host = headers.get(warp::http::header::HOST).map(|h| h.as_bytes());
            return if host.is_some_and(is_loopback_host) { Ok(()) } else { Err(Denied::ForeignHost) };
        }
        let given = headers.get(warp::http::header::AUTHORIZATION).map(|v| v.as_bytes());
        let bearer = given.and_then(|h| h.strip_prefix(b"Bearer ")).unwrap_or(b"").trim_ascii();
        let by_bearer = self.matches(bearer);
        let by_cookie = cookie.is_some_and(|c| self.is_session(c, chrono::Utc::now().timestamp()));
        if by_bearer | by_cookie {
            Ok(())
        } else {
            Err(Denied::NoToken)
        }
    }
}

/// Whether a `Host` header names this machine's loopback: `localhost`
/// (any letter case), `127.0.0.1` or `[::1]`, with any port.
pub fn is_loopback_host(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else { return false };
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inside, port)) if port.is_empty() || valid_port(port) => return inside == "::1",
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        },
    };
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1"
}

fn valid_port(port: &str) -> bool {
    port.strip_prefix(':').unwrap_or(port).parse::<u16>().is_ok() && !port.is_empty()
}

/// The filter every read route takes: [`Access::check`].
pub fn read_access(access: Access) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and_then(
            move |headers: HeaderMap| async move { access.check(&headers).map_err(|d| reject(ApiError::from(d))) },
        )
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_any_port_and_nothing_else() {
        for ok in ["localhost", "LOCALHOST:80", "localhost:3000", "127.0.0.1", "127.0.0.1:65535", "[::1]", "[::1]:3000"]
        {
            assert!(is_loopback_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "attacker.example",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "127.0.0.2",
            "[::2]",
            "[::1]x",
            "localhost:",
            "localhost:99999",
            "localhost:3000:1",
            "",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(bad.as_bytes()), "{bad}");
        }
        assert!(!is_loopback_host(b"\xfflocalhost"));
    }

    #[test]
    fn with_a_token_the_host_does_not_matter_and_the_token_does() {
        let secret = Secret::new("a-long-read-api-token-0123456789".into());
        let access = Access::new(Some(&secret));
        let mut headers = HeaderMap::new();
        headers.insert("host", "attacker.example".parse().unwrap());
        assert_eq!(access.check(&headers), Err(Denied::NoToken));
        headers.insert("authorization", "Bearer a-long-read-api-token-0123456789".parse().unwrap());
        assert_eq!(access.check(&headers), Ok(()));
        let open = Access::new(None);
        assert_eq!(open.check(&headers), Err(Denied::ForeignHost));
        assert!(!open.matches(b"anything"));
    }

    #[test]
    fn a_session_is_no_copy_of_the_token_lives_twelve_hours_and_cannot_be_forged_or_stretched() {
        // given a token, another one, and a session made at noon
        let token = Secret::new("a-long-read-api-token-0123456789".into());
        let access = Access::new(Some(&token));
        let other = Access::new(Some(&Secret::new("another-long-token-0123456789abc".into())));
        let noon = 1_790_000_000;
        let session = access.session(noon).unwrap();
        // then it does not hold the token, and opens the page until it expires
        assert!(!session.contains(token.expose()) && !session.contains("0123456789"), "{session}");
        assert!(access.is_session(session.as_bytes(), noon));
        assert!(access.is_session(session.as_bytes(), noon + SESSION_SECONDS - 1));
        assert!(!access.is_session(session.as_bytes(), noon + SESSION_SECONDS));
        // and it is not a session under another token, nor is the token a session
        assert!(!other.is_session(session.as_bytes(), noon));
        assert!(!access.is_session(token.expose().as_bytes(), noon));
        // and a later expiry with the same HMAC, or a changed HMAC, is refused
        let (expires, mac) = session.split_once('.').unwrap();
        let stretched = format!("{}.{mac}", expires.parse::<i64>().unwrap() + 3600);
        assert!(!access.is_session(stretched.as_bytes(), noon));
        let flipped = format!("{expires}.{}{}", if mac.starts_with('0') { '1' } else { '0' }, &mac[1..]);
        assert!(!access.is_session(flipped.as_bytes(), noon));
        for junk in ["", ".", "x.y", "1.2.3", &format!("{expires}.{mac}.")] {
            assert!(!access.is_session(junk.as_bytes(), noon), "{junk}");
        }
        // and without a token there are no sessions
        assert_eq!(Access::new(None).session(noon), None);
        assert!(!Access::new(None).is_session(session.as_bytes(), noon));
    }
}
