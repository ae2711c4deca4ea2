//! Unit tests of the status page's pieces, and of the refetch form
//! against a test double of [`Refetch`] (the service wires none yet, so
//! the black-box tests cannot reach a working one).

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::Service as _;

use super::render::{badge, percent_encode, uma, uma_link, visible};
use super::*;
use crate::api::Refetch;
use crate::config::{DbArgs, KeyArgs, ReconcileArgs, ServeArgs};
use crate::ledger::NewEvent;
use crate::secret::Secret;

const TOKEN: &str = "a-long-read-api-token-0123456789";

/// A value as the pages write it: spliced into a [`maud`] template.
fn escape(s: &str) -> String {
    maud::html! { (s) }.into_string()
}

#[test]
fn escape_neutralises_markup_quotes_and_ampersands() {
    assert_eq!(escape("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
    // maud leaves `'` as it is: every attribute it writes is double-quoted
    assert_eq!(escape(r#"a"b'c"#), "a&quot;b'c");
    assert_eq!(maud::html! { a title=(r#"a"b'c"#) {} }.into_string(), "<a title=\"a&quot;b'c\"></a>");
    assert_eq!(escape("Tom & Jerry &amp;"), "Tom &amp; Jerry &amp;amp;");
    assert_eq!(escape("$bob@x.example"), "$bob@x.example");
    assert_eq!(escape("héllo ✓"), "héllo ✓");
    let hostile = r#"$<script>alert(1)</script>@x" onmouseover="x"#;
    let out = escape(hostile);
    assert!(!out.contains('<') && !out.contains('>') && !out.contains('"') && !out.contains('\''), "{out}");
}

#[test]
fn a_malformed_uma_is_shown_escaped_with_its_hidden_characters_visible_and_marked() {
    // given a well-formed address, and malformed ones hiding characters or markup
    // when they are shown
    // then the well-formed one is only escaped
    assert_eq!(uma("$bob@b.example").into_string(), "$bob@b.example");
    assert_eq!(uma_link("$bob@b.example").into_string(), "<a href=\"/?q=%24bob%40b.example\">$bob@b.example</a>");
    // and a malformed one shows its hiding characters by code point, escaped, with a badge
    let shown = uma("$bob\u{202E}<b>@b.example").into_string();
    assert_eq!(
        shown,
        "<span class=\"malformed\">$bob[U+202E]&lt;b&gt;@b.example</span> <span class=\"st st-malformed\">malformed</span>"
    );
    let linked = uma_link("$bob\u{2066}\n@b").into_string();
    assert!(!linked.contains('\u{2066}') && !linked.contains('\n'), "{linked}");
    assert!(linked.contains("$bob[U+2066][U+000A]@b</a>") && linked.contains("st-malformed"), "{linked}");
    // and text without such characters is left as it is
    assert_eq!(visible("a b ä ✓"), "a b ä ✓");
}

#[test]
fn badges_keep_only_safe_characters_in_the_class() {
    let b = badge("x\" onclick=\"y").into_string();
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
fn the_page_takes_the_bearer_header_or_a_session_cookie_and_nothing_else() {
    // given a token and a session made from it now
    let secret = Secret::new(TOKEN.into());
    let gate = Access::new(Some(&secret));
    let session = gate.session(chrono::Utc::now().timestamp()).unwrap();
    let check = |authorization: Option<&str>, cookie: Option<&str>| {
        let mut headers = HeaderMap::new();
        if let Some(a) = authorization {
            headers.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        if let Some(c) = cookie {
            headers.insert(header::COOKIE, c.parse().unwrap());
        }
        gate.check_with(&headers, session_token(&headers).as_deref()).is_ok()
    };
    // then the bearer token or the session cookie opens the page
    assert!(check(Some("Bearer a-long-read-api-token-0123456789"), None));
    assert!(check(None, Some(&format!("x=1; il_token={session}; y=2"))));
    // and nothing else does: no credential, a wrong one, the session under
    // another name, or the raw token in the cookie
    assert!(!check(None, None));
    assert!(!check(Some("Bearer "), Some("il_token=")));
    assert!(!check(Some("Bearer wrong"), Some(&format!("other={session}"))));
    assert!(!check(None, Some("il_token=a-long-read-api-token-0123456789")));
    assert!(!check(Some("a-long-read-api-token-0123456789"), None));
}

#[test]
fn the_csrf_token_belongs_to_its_session_and_its_process() {
    // given two processes' keys and two credentials
    let (a, b) = (Csrf::new(None), Csrf::new(None));
    let token = a.token(b"session-1");
    // then the token verifies for its credential only, in its process only
    assert!(a.verify(b"session-1", &token));
    assert!(!a.verify(b"session-2", &token));
    assert!(!b.verify(b"session-1", &token));
    assert!(!a.verify(b"session-1", "") && !a.verify(b"session-1", &token[..63]));
    assert_eq!(token.len(), 64);
}

#[test]
fn the_login_form_sends_the_browser_back_to_a_path_of_this_site_only() {
    assert_eq!(safe_next(Some("/invitations/Inv%3A1")), "/invitations/Inv%3A1");
    for elsewhere in
        [None, Some("//evil.example/x"), Some("/\\evil.example"), Some("https://evil.example/"), Some("/a b")]
    {
        assert_eq!(safe_next(elsewhere), "/", "{elsewhere:?}");
    }
}

/// Records every refetch asked of it and answers that nothing changed.
#[derive(Default)]
struct RecordingRefetch {
    calls: Mutex<Vec<(String, Option<String>)>>,
}

impl Refetch for RecordingRefetch {
    fn refetch(
        &self,
        invitation_id: String,
        note: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> {
        self.calls.lock().unwrap().push((invitation_id, note));
        Box::pin(async { Ok("the source says nothing new".to_owned()) })
    }
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

#[tokio::test]
async fn the_refetch_form_reaches_the_wired_fetcher_only_from_this_site_signed_in_and_with_the_session_token() {
    // Given a service with a token, one invitation, and a recording fetcher
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let args = ServeArgs {
        db: DbArgs::file(&db),
        key: KeyArgs { signing_key: Some("k".into()), grid_webhook_public_key: None },
        reconcile: ReconcileArgs::for_tests(),
        listen_addr: "127.0.0.1:0".into(),
        read_api_token: Some(TOKEN.into()),
        max_body_bytes: 256 * 1024,
        anchor_interval: "1h".into(),
        unbatched_commits: false,
    };
    let location = crate::config::LedgerLocation::Sqlite(db.clone());
    let ledger = crate::service::LiveLedger::open(&location, &db, true, Default::default()).await.unwrap();
    let claim = br#"{"event_type":"UMA_INVITATION_CLAIMED","event_id":"e1","timestamp":"2026-11-01T12:00:00+00:00","entity_id":"Inv:1"}"#;
    let appended = ledger
        .ledger
        .append(NewEvent {
            event_key: crate::vocab::EventKey::stored("lightspark:e1:00"),
            kind: crate::vocab::EventKind::WebhookReceived,
            stream: Some("Inv:1".into()),
            body: claim.to_vec(),
            signature: None,
            sibling_prefix: None,
        })
        .await
        .unwrap();
    ledger.projected.clone().wait_for(|s| *s >= appended.seq).await.unwrap();
    let fetcher = Arc::new(RecordingRefetch::default());
    let state = Arc::new(AppState::new(args.validate().unwrap().api, Default::default()));
    let live = crate::api::Live {
        ledger: ledger.ledger.clone(),
        instance: "test".into(),
        projection: ledger.health.clone(),
        refetch: Some(fetcher.clone()),
        register: None,
        leader: None,
    };
    assert!(state.live.set(live).is_ok());
    let service = hyper_util::service::TowerToHyperService::new(warp::service(crate::api::routes(state)));
    let call = |method: &str, path: &str, headers: &[(&str, &str)], body: String| {
        let mut req = warp::http::Request::builder().method(method).uri(path).header("host", "127.0.0.1:3000");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let answer = service.call(req);
        async move {
            let (parts, body) = answer.await.unwrap().into_parts();
            let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
            Answer { status: parts.status.as_u16(), headers: parts.headers, body }
        }
    };
    let session = Access::new(Some(&Secret::new(TOKEN.into()))).session(chrono::Utc::now().timestamp()).unwrap();
    let cookie = format!("{COOKIE}={session}");
    let page = call("GET", "/invitations/Inv%3A1", &[("cookie", &cookie)], String::new()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let refetch_form = &page.body[page.body.find("class=\"act refetch\"").expect("a refetch form")..];
    assert!(!refetch_form[..refetch_form.find("</form>").unwrap()].contains(" disabled"), "{refetch_form}");
    let csrf = {
        let at = refetch_form.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
        refetch_form[at..at + 64].to_owned()
    };
    let form = |csrf: &str| format!("csrf={csrf}&note=ops+ticket+7");
    let own = ("origin", "http://127.0.0.1:3000");
    let form_type = ("content-type", "application/x-www-form-urlencoded");

    // When it is posted without the token, from another site, or signed out
    let without_csrf =
        call("POST", "/invitations/Inv%3A1/refetch", &[own, form_type, ("cookie", &cookie)], "note=x".into()).await;
    let cross_site = call(
        "POST",
        "/invitations/Inv%3A1/refetch",
        &[("origin", "http://127.0.0.2:8080"), form_type, ("cookie", &cookie)],
        form(&csrf),
    )
    .await;
    let signed_out = call("POST", "/invitations/Inv%3A1/refetch", &[own, form_type], form(&csrf)).await;

    // Then each is refused and the fetcher is not called
    assert_eq!((without_csrf.status, cross_site.status, signed_out.status), (403, 403, 401));
    assert!(cross_site.body.contains("not sent from this site"), "{}", cross_site.body);
    assert!(fetcher.calls.lock().unwrap().is_empty());

    // When it is posted from the page, signed in, with the session's token
    let done = call("POST", "/invitations/Inv%3A1/refetch", &[own, form_type, ("cookie", &cookie)], form(&csrf)).await;

    // Then the fetcher is asked for the invitation, with the note, and the browser goes back to the trail
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.headers["location"], "/invitations/Inv%3A1#trail");
    assert_eq!(*fetcher.calls.lock().unwrap(), vec![("Inv:1".to_owned(), Some("ops ticket 7".to_owned()))]);
    ledger.close().await.unwrap();
}
