//! What every action's POST passes, in this order, before anything is
//! read or appended:
//! 1. a token is configured (without one the page is open to anyone on the
//!    machine, so it only reads): else 403;
//! 2. `Origin` (or, when absent, `Referer`) names this site, the `Host`
//!    the request was sent to: else 403, whatever else it carries;
//! 3. it is signed in (the `il_token` cookie, `SameSite=Strict`, or a
//!    bearer token): else 401;
//! 4. its `csrf` field is the session's token ([`super::Csrf`]), compared
//!    in constant time: else 403.

use warp::http::{header, HeaderMap, StatusCode};
use warp::Rejection;

use super::render::{login_page, message_page};
use super::{form_field, read_form, Ui};

/// `scheme` and `host[:port]` of an absolute http(s) URL, lower-cased,
/// the scheme's default port dropped; `None` for anything else (`null`).
fn site_of(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') || !matches!(scheme.as_str(), "http" | "https") {
        return None;
    }
    let host = normalized_host(&scheme, authority);
    Some((scheme, host))
}

fn normalized_host(scheme: &str, authority: &str) -> String {
    let a = authority.to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    a.strip_suffix(default).map(str::to_owned).unwrap_or(a)
}

/// Whether the request was sent by a page of this site: its `Origin`
/// (else its `Referer`) names the `Host` it was sent to.
pub(super) fn same_site(headers: &HeaderMap) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| "the request names no Host".to_owned())?;
    let (what, value) = match (headers.get(header::ORIGIN), headers.get(header::REFERER)) {
        (Some(o), _) => ("Origin", o),
        (None, Some(r)) => ("Referer", r),
        (None, None) => return Err("the request carries neither Origin nor Referer".into()),
    };
    let value = value.to_str().map_err(|_| format!("its {what} is not text"))?;
    let (scheme, site) = site_of(value).ok_or_else(|| format!("its {what} {value:?} names no site"))?;
    if site == normalized_host(&scheme, host) {
        Ok(())
    } else {
        Err(format!("its {what} {value:?} is another site than {host}"))
    }
}

/// Why a POST was refused before anything was read or appended.
enum Refusal {
    /// No token configured.
    Off,
    /// Not sent from this site; why.
    CrossSite(String),
    SignedOut,
    /// The form's token is missing, forged or of another process.
    BadToken,
}

impl Refusal {
    fn answer(&self, back: &str) -> warp::reply::Response {
        match self {
            Refusal::Off => message_page(
                StatusCode::FORBIDDEN,
                "Actions are off",
                "Set READ_API_TOKEN to enable actions. Nothing was recorded.",
                back,
            ),
            Refusal::CrossSite(why) => message_page(
                StatusCode::FORBIDDEN,
                "Refused: not sent from this site",
                &format!("This form was not posted from this site's own page: {why}. Nothing was recorded."),
                back,
            ),
            Refusal::SignedOut => login_page(
                StatusCode::UNAUTHORIZED,
                "Sign in to act on invitations. Nothing was recorded.",
                Some(back),
            ),
            Refusal::BadToken => message_page(
                StatusCode::FORBIDDEN,
                "Refused: the form's token is missing or stale",
                "Reload the invitation page and submit again (a restart of the service makes open forms stale). Nothing was recorded.",
                back,
            ),
        }
    }
}

/// Steps 1–3 of the module's list: the signed-in credential.
fn admit_post(ui: &Ui, headers: &HeaderMap) -> Result<Vec<u8>, Refusal> {
    if ui.gate.is_open() {
        return Err(Refusal::Off);
    }
    if let Err(why) = same_site(headers) {
        tracing::warn!(why = %why, "refused a cross-site POST to an action");
        return Err(Refusal::CrossSite(why));
    }
    ui.credential(headers).ok_or(Refusal::SignedOut)
}

/// Step 4: the form's `csrf` field.
fn check_csrf(ui: &Ui, credential: &[u8], form: &str) -> Result<(), Refusal> {
    let presented = form_field(form, "csrf").unwrap_or_default();
    if ui.csrf.verify(credential, &presented) {
        Ok(())
    } else {
        Err(Refusal::BadToken)
    }
}

/// Steps 1–4 for every action, in order: the credential and the form, or
/// (`Ok(Err(_))`) the page refusing the POST, with `back` as its way back.
///
/// # Errors
/// The rejection of a body that is too large, too slow or unreadable,
/// answered as the API answers it.
pub(super) async fn admitted_form(
    ui: &Ui,
    headers: &HeaderMap,
    declared: Option<u64>,
    body: impl futures_util::Stream<Item = Result<impl bytes::Buf, warp::Error>>,
    back: &str,
) -> Result<Result<(Vec<u8>, String), warp::reply::Response>, Rejection> {
    let credential = match admit_post(ui, headers) {
        Ok(c) => c,
        Err(refusal) => return Ok(Err(refusal.answer(back))),
    };
    let form = read_form(declared, body).await?;
    if let Err(refusal) = check_csrf(ui, &credential, &form) {
        return Ok(Err(refusal.answer(back)));
    }
    Ok(Ok((credential, form)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_post_is_same_site_when_its_origin_or_else_referer_names_the_host() {
        // given requests to 127.0.0.1:3000 from various places
        let host = ("host", "127.0.0.1:3000");
        // then this site's own pages pass, in any letter case and with a default port spelled out
        assert_eq!(same_site(&headers(&[host, ("origin", "http://127.0.0.1:3000")])), Ok(()));
        assert_eq!(same_site(&headers(&[host, ("referer", "http://127.0.0.1:3000/invitations/x")])), Ok(()));
        assert_eq!(same_site(&headers(&[("host", "Ops.Example"), ("origin", "https://ops.example:443")])), Ok(()));
        // and other sites, opaque origins, other schemes and nothing at all do not
        for refused in [
            headers(&[host, ("origin", "http://127.0.0.2:3000")]),
            headers(&[host, ("origin", "http://127.0.0.1:3001")]),
            headers(&[host, ("origin", "null")]),
            headers(&[host, ("origin", "file://127.0.0.1:3000")]),
            headers(&[host, ("origin", "http://evil@127.0.0.1:3000")]),
            headers(&[host, ("origin", "http://127.0.0.2:3000"), ("referer", "http://127.0.0.1:3000/")]),
            headers(&[host]),
            headers(&[("origin", "http://127.0.0.1:3000")]),
        ] {
            assert!(same_site(&refused).is_err(), "{refused:?}");
        }
    }
}
