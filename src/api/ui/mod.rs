//! The status page for operators: `GET /` (search, what needs an operator,
//! activity charts, recent invitations, the incentive audit), each
//! invitation's page `GET /invitations/{id or code}` (its money trail with
//! re-verified signatures, and forms to act on it), and `POST /login`.
//!
//! Server-rendered HTML with inline CSS and inline SVG: no scripts, no
//! external assets, no build step. Every page is a [`maud`] template, which
//! escapes every value spliced into it (see `render`); the
//! Content-Security-Policy forbids scripts anyway.
//!
//! Reading is protected as the read API is: when `READ_API_TOKEN` is set
//! the pages want `Authorization: Bearer <token>` or the `il_token` cookie
//! that `POST /login` sets, a session derived from the token that expires
//! (see [`Access::session`]), checked in constant time; otherwise they
//! answer 401 with a login form. Without a token only loopback `Host`
//! names are served. Acting (the forms) needs a token: see `actions`.

mod actions;
mod charts;
mod forms;
mod guard;
mod home;
mod invitation;
mod render;
mod show;
mod trail;
mod verdict;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Read as _;
use std::sync::Arc;

use bytes::Buf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::http::{header, HeaderMap, StatusCode};
use warp::{Filter, Rejection, Reply};

use super::access::{Access, Denied};
use super::body::{self, BodyError, BODY_READ_TIMEOUT};
use super::error::{reject, ApiError};
use super::read::percent_decode;
use super::AppState;
use crate::ledger::verify::WebhookKeys;
use crate::projection::query::{self, StatusPageLimits};
use crate::projection::trail as read_trail;
use render::catching_up_page;
use render::login_page;

/// The cookie `POST /login` sets.
pub const COOKIE: &str = "il_token";
/// Rows in "recent invitations".
const RECENT: usize = 50;
/// Most invitations a search lists.
const SEARCH_CAP: usize = 100;
/// Most rows in the in-doubt / failed lists.
const ATTENTION_CAP: usize = 200;
/// Invitations of the audit's first page, whose inviters the audit table shows.
const AUDIT_INVITERS_CAP: usize = 50;
/// Largest form accepted (login, actions): a note and a few fields.
const FORM_BODY_LIMIT: usize = 8192;

/// What every page's handler needs, built once per process by [`routes`].
struct Ui {
    state: Arc<AppState>,
    gate: Access,
    csrf: Csrf,
    /// The configured webhook keys, which the invitation page re-verifies
    /// stored signatures with.
    keys: WebhookKeys,
    /// Which sources invitations can be fetched from.
    fetching: crate::projection::view::Fetching,
}

/// Whether a page may be shown, and to whom.
enum Admit {
    /// No token configured, loopback `Host`: shown, and actions are off.
    Open,
    /// Signed in; the credential presented (the token, from the cookie or
    /// the bearer header), which the forms' CSRF token is derived from.
    Session(Vec<u8>),
    /// Not signed in: the login form to answer with.
    Login(warp::reply::Response),
}

impl Ui {
    /// What this request signed in with, when it is valid: the cookie's
    /// session, else the bearer header's token.
    fn credential(&self, headers: &HeaderMap) -> Option<Vec<u8>> {
        let now = chrono::Utc::now().timestamp();
        let cookie = session_token(headers).filter(|c| self.gate.is_session(c, now));
        cookie.or_else(|| {
            let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes())?;
            let bearer = given.strip_prefix(b"Bearer ")?.trim_ascii();
            self.gate.matches(bearer).then(|| bearer.to_vec())
        })
    }

    /// The status page's read check; `next` is where the login form sends
    /// the browser back to.
    fn admit(&self, headers: &HeaderMap, next: Option<&str>) -> Result<Admit, Rejection> {
        match self.gate.check_with(headers, session_token(headers).as_deref()) {
            Ok(()) if self.gate.is_open() => Ok(Admit::Open),
            Ok(()) => Ok(Admit::Session(self.credential(headers).unwrap_or_default())),
            Err(Denied::NoToken) => Ok(Admit::Login(login_page(
                StatusCode::UNAUTHORIZED,
                "This page needs the read API token (READ_API_TOKEN). It is kept in an HttpOnly cookie for this site.",
                next,
            ))),
            Err(d) => Err(reject(ApiError::from(d))),
        }
    }
}

/// The per-session CSRF token of the action forms: HMAC-SHA256, keyed
/// with a secret drawn at start-up, of the session's credential (the
/// `il_token` cookie's session, or the bearer token). A page from another
/// site can neither read it (same-origin policy) nor compute it (the key
/// never leaves the process); a restart makes old forms stale.
struct Csrf {
    key: [u8; 32],
}

impl Csrf {
    /// A key from the kernel's random source; should that fail, the digest
    /// of the read token (still unknown to other sites, but the same after
    /// a restart).
    fn new(token: Option<&crate::secret::Secret>) -> Self {
        let mut key = [0u8; 32];
        match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key)) {
            Ok(()) => Self { key },
            Err(e) => {
                tracing::warn!(error = %e, "no random source for the CSRF key; deriving it from READ_API_TOKEN");
                Self { key: Sha256::digest(token.map_or("", |t| t.expose()).as_bytes()).into() }
            }
        }
    }

    fn token(&self, credential: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(credential);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `presented` is the token of `credential`, compared in
    /// constant time.
    fn verify(&self, credential: &[u8], presented: &str) -> bool {
        let expected = self.token(credential);
        presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
    }
}

/// The session in the `il_token` cookie, if the request carries one.
fn session_token(headers: &HeaderMap) -> Option<Vec<u8>> {
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

/// An HTML answer with the pages' headers. `Referrer-Policy: same-origin`
/// rather than `no-referrer`: with `no-referrer` browsers send `Origin:
/// null` on the forms' POSTs, and the action routes check that header.
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
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    r
}

/// A 303 to `location` (a path of this site).
fn see_other(location: &str) -> warp::reply::Response {
    let mut r = warp::reply::with_status(String::new(), StatusCode::SEE_OTHER).into_response();
    let value = header::HeaderValue::from_str(location).unwrap_or(header::HeaderValue::from_static("/"));
    r.headers_mut().insert(header::LOCATION, value);
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r
}

/// Where the login form may send the browser: a path of this site only
/// (never `//host` or `/\host`, which browsers read as another site).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n
        }
        _ => "/",
    }
}

/// Whether the browser reached this service over HTTPS. The service itself
/// speaks plain HTTP; a TLS-terminating proxy in front says so with
/// `X-Forwarded-Proto: https`, and then the session cookie is `Secure`
/// (never sent over plain HTTP). Set by a client that is not behind such a
/// proxy, the header only keeps that client's own cookie off plain HTTP.
fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|first| first.trim().eq_ignore_ascii_case("https"))
}

/// Gives the amounts the home page lists (the invitations' and what their
/// obligations asked) the decimals their invitations' own bodies state
/// (the projection may keep an amount without them), so they read 5.00 USD
/// rather than 500 USD.
fn with_stated_decimals(c: &rusqlite::Connection, data: &mut query::StatusPage) -> anyhow::Result<()> {
    let found: Vec<&mut crate::projection::view::InvitationView> = match &mut data.search {
        Some(query::Search::Exact(v)) => vec![v.as_mut()],
        Some(query::Search::Matches { items, .. }) => items.iter_mut().collect(),
        None => Vec::new(),
    };
    for v in found.into_iter().chain(data.recent.iter_mut()).chain(data.attention.iter_mut()) {
        let asked = [&v.payout, &v.incentive].map(|o| o.requested.as_ref().and_then(|r| r.amount.as_ref()));
        if v.payment_amount.iter().chain(asked.into_iter().flatten()).any(|m| m.decimals().is_none()) {
            *v = read_trail::decimals(c, &v.invitation_id)?.view(v);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Routes

async fn read_form(
    declared: Option<u64>,
    stream: impl futures_util::Stream<Item = Result<impl Buf, warp::Error>>,
) -> Result<String, Rejection> {
    let body = body::read(declared, stream, FORM_BODY_LIMIT).await.map_err(|e| match e {
        BodyError::TooLarge => reject(ApiError::TooLarge { limit: FORM_BODY_LIMIT }),
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

/// The [`Ui`], for every handler.
fn with_ui(ui: &Arc<Ui>) -> impl Filter<Extract = (Arc<Ui>,), Error = Infallible> + Clone {
    let ui = ui.clone();
    warp::any().map(move || ui.clone())
}

/// `GET /` (and `HEAD /`): the status page, searching for `q`.
async fn home_page(
    ui: Arc<Ui>,
    headers: HeaderMap,
    query: HashMap<String, String>,
) -> Result<warp::reply::Response, Rejection> {
    if let Admit::Login(page) = ui.admit(&headers, None)? {
        return Ok(page);
    }
    if let Err(e) = ui.state.fresh() {
        return Ok(catching_up_page(&e.to_string()));
    }
    let q = query.get("q").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let horizon = ui.state.config.reconcile.idempotency_window;
    let fetching = ui.fetching;
    let lookup = q.clone();
    let limits =
        StatusPageLimits { search: SEARCH_CAP, recent: RECENT, attention: ATTENTION_CAP, inviters: AUDIT_INVITERS_CAP };
    let now = chrono::Utc::now();
    let (data, hours) = ui
        .state
        .reads
        .run(move |c| {
            let mut data = query::status_page(c, lookup.as_deref(), limits, now, horizon, fetching)?;
            with_stated_decimals(c, &mut data)?;
            Ok((data, read_trail::activity(c, now, read_trail::ACTIVITY_HOURS)?))
        })
        .await
        .map_err(reject)?;
    let reconciling = ui.state.live.get().map(crate::api::Live::reconciling);
    let page = home::render(&home::Home { data: &data, hours: &hours, q: q.as_deref(), now, reconciling });
    Ok(html(StatusCode::OK, page))
}

pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let gate = Access::new(state.config.read_api_token.as_ref());
    let fetching = crate::projection::view::Fetching::new(|s| state.config.reconcile.fetch_configured(s));
    let csrf = Csrf::new(state.config.read_api_token.as_ref());
    let keys =
        WebhookKeys { lightspark: Some(state.config.signing_keys.clone()), grid: state.config.grid_keys.clone() };
    let ui = Arc::new(Ui { state, gate, csrf, keys, fetching });
    // HEAD answers as GET does, without the body (hyper leaves it out), so
    // an uptime check or `curl -I` sees 200, not 405.
    let home = with_ui(&ui)
        .and(warp::path::end())
        .and(warp::get().or(warp::head()).unify())
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(home_page);
    home.or(invitation::routes(&ui)).unify().or(actions::routes(&ui)).unify()
}
