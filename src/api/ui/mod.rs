//! `GET /`: a read-only status page for operators, and `POST /login`.
//!
//! Server-rendered HTML with inline CSS: no scripts, no external assets, no
//! build step. It shows a search box (invitation id or code, inviter or
//! invitee UMA), the most recent invitations with their obligation states,
//! the obligations that need an operator (in doubt, failed) and the
//! incentive audit per inviter. Every dynamic string goes through
//! [`escape`]; the Content-Security-Policy forbids scripts anyway.
//!
//! Protection is the read API's: when `READ_API_TOKEN` is set the page wants
//! `Authorization: Bearer <token>` or the `il_token` cookie that `POST /login`
//! sets, compared in constant time; otherwise it answers 401 with a login
//! form.

mod render;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Buf;
use warp::http::{header, StatusCode};
use warp::{Filter, Rejection, Reply};

use super::access::{Access, Denied};
use super::body::{self, BodyError, BODY_READ_TIMEOUT};
use super::error::{reject, ApiError};
use super::read::percent_decode;
use super::AppState;
use crate::projection::query::{self, StatusPageLimits};
pub use render::escape;
use render::{login_page, percent_encode, render};

/// The cookie `POST /login` sets.
pub const COOKIE: &str = "il_token";
/// Rows in "recent invitations".
const RECENT: usize = 50;
/// Most invitations a search lists.
const SEARCH_CAP: usize = 100;
/// Most rows in the in-doubt / failed lists.
const ATTENTION_CAP: usize = 200;
/// Most inviters shown in the audit table.
const AUDIT_INVITERS_CAP: usize = 200;
/// Largest login form accepted.
const LOGIN_BODY_LIMIT: usize = 4096;

/// The token in the `il_token` cookie, if the request carries one.
fn session_token(headers: &warp::http::HeaderMap) -> Option<Vec<u8>> {
    let cookie = headers.get(header::COOKIE)?.to_str().ok()?;
    cookie_value(cookie, COOKIE).map(|v| percent_decode(v, false).into_bytes())
}

/// The value of cookie `name` in a `Cookie` header.
fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .map(str::trim)
        .find_map(|kv| kv.split_once('=').filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim()))
}

fn html(status: StatusCode, body: String) -> warp::reply::Response {
    let mut r = warp::reply::with_status(body, status).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    r
}

// ---------------------------------------------------------------------------
// Routes

async fn read_form(
    declared: Option<u64>,
    stream: impl futures_util::Stream<Item = Result<impl Buf, warp::Error>>,
) -> Result<String, Rejection> {
    let body = body::read(declared, stream, LOGIN_BODY_LIMIT).await.map_err(|e| match e {
        BodyError::TooLarge => reject(ApiError::TooLarge { limit: LOGIN_BODY_LIMIT }),
        BodyError::Timeout => reject(ApiError::BodyTimeout { secs: BODY_READ_TIMEOUT.as_secs() }),
        BodyError::Read(e) => reject(ApiError::BadRequest(format!("could not read the body: {e}"))),
    })?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k, true) == name).then(|| percent_decode(v, true))
    })
}

pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let gate = Access::new(state.config.read_api_token.as_ref());
    let fetching = crate::projection::view::Fetching::new(|s| state.config.reconcile.fetch_configured(s));

    let status = warp::path::end()
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(move |headers: warp::http::HeaderMap, query: HashMap<String, String>| {
            let state = state.clone();
            async move {
                match gate.check_with(&headers, session_token(&headers).as_deref()) {
                    Ok(()) => {}
                    Err(Denied::NoToken) => {
                        return Ok::<_, Rejection>(login_page(
                            StatusCode::UNAUTHORIZED,
                            "This page needs the read API token (READ_API_TOKEN). It is kept in an HttpOnly cookie for this site.",
                        ))
                    }
                    Err(d) => return Err(reject(ApiError::from(d))),
                }
                let q = query.get("q").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
                let horizon = state.config.reconcile.idempotency_window;
                let lookup = q.clone();
                let limits = StatusPageLimits { search: SEARCH_CAP, recent: RECENT, attention: ATTENTION_CAP };
                let data = state
                    .reads
                    .run(move |c| {
                        Ok(query::status_page(c, lookup.as_deref(), limits, chrono::Utc::now(), horizon, fetching)?)
                    })
                    .await
                    .map_err(reject)?;
                Ok(html(StatusCode::OK, render(&data, q.as_deref())))
            }
        });

    let login = warp::path!("login")
        .and(warp::post())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(move |declared: Option<u64>, body| async move {
            let form = read_form(declared, body).await?;
            let token = form_field(&form, "token").map(|t| t.trim().to_owned()).unwrap_or_default();
            let redirect = |cookie: Option<String>| {
                let mut r = warp::reply::with_status(String::new(), StatusCode::SEE_OTHER).into_response();
                r.headers_mut().insert(header::LOCATION, header::HeaderValue::from_static("/"));
                r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
                if let Some(c) = cookie.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
                    r.headers_mut().insert(header::SET_COOKIE, c);
                }
                r
            };
            if gate.is_open() {
                return Ok::<_, Rejection>(redirect(None));
            }
            if gate.matches(token.as_bytes()) {
                Ok(redirect(Some(format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", percent_encode(&token)))))
            } else {
                Ok(login_page(StatusCode::UNAUTHORIZED, "That token is not right. Try again."))
            }
        });

    status.or(login).unify()
}

#[cfg(test)]
mod tests {
    use super::render::badge;
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn escape_neutralises_markup_quotes_and_ampersands() {
        assert_eq!(escape("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
        assert_eq!(escape(r#"a"b'c"#), "a&quot;b&#x27;c");
        assert_eq!(escape("Tom & Jerry &amp;"), "Tom &amp; Jerry &amp;amp;");
        assert_eq!(escape("$bob@x.example"), "$bob@x.example");
        assert_eq!(escape("héllo ✓"), "héllo ✓");
        let hostile = r#"$<script>alert(1)</script>@x" onmouseover="x"#;
        let out = escape(hostile);
        assert!(!out.contains('<') && !out.contains('>') && !out.contains('"') && !out.contains('\''), "{out}");
    }

    #[test]
    fn badges_keep_only_safe_characters_in_the_class() {
        let b = badge("x\" onclick=\"y");
        assert!(b.starts_with("<span class=\"st st-xonclicky\">"), "{b}");
        assert!(b.contains("x&quot; onclick=&quot;y"), "{b}");
    }

    #[test]
    fn percent_encoding_round_trips_and_forms_decode_plus_as_space() {
        for s in ["UmaInvitation:1", "$alice@a.example", "a b&c=d/é", "tok;en,=\"x\""] {
            let e = percent_encode(s);
            assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)), "{e}");
            assert_eq!(percent_decode(&e, false), s);
        }
        assert_eq!(form_field("a=1&token=my+tok%26en&b=2", "token").as_deref(), Some("my tok&en"));
        assert_eq!(form_field("token=", "token").as_deref(), Some(""));
        assert_eq!(form_field("other=1", "token"), None);
        assert_eq!(percent_decode("50%", false), "50%");
        assert_eq!(percent_decode("%4", false), "%4");
    }

    #[test]
    fn the_page_takes_the_bearer_header_or_the_cookie_and_nothing_else() {
        let secret = Secret::new("a-long-read-api-token-0123456789".into());
        let gate = Access::new(Some(&secret));
        let check = |authorization: Option<&str>, cookie: Option<&str>| {
            let mut headers = warp::http::HeaderMap::new();
            if let Some(a) = authorization {
                headers.insert(header::AUTHORIZATION, a.parse().unwrap());
            }
            if let Some(c) = cookie {
                headers.insert(header::COOKIE, c.parse().unwrap());
            }
            gate.check_with(&headers, session_token(&headers).as_deref()).is_ok()
        };
        assert!(!check(None, None));
        assert!(!check(Some("Bearer "), Some("il_token=")));
        assert!(!check(Some("Bearer wrong"), Some("other=a-long-read-api-token-0123456789")));
        assert!(check(Some("Bearer a-long-read-api-token-0123456789"), None));
        assert!(check(None, Some("x=1; il_token=a-long-read-api-token-0123456789; y=2")));
        assert!(!check(Some("a-long-read-api-token-0123456789"), None));
    }
}
