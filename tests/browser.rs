//! The status page in a real headless Chromium, driven through
//! chromedriver's W3C WebDriver HTTP API: search for the fixture invitation
//! by its code and read what the page shows. Leaves a screenshot at
//! `target/status-page.png` for people to look at.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages
//! `chromium` and `chromium-driver`; `scripts/test` installs them). Without
//! them this test fails: it never skips.

#[path = "api/helpers/app.rs"]
mod app;
#[path = "api/helpers/poll.rs"]
mod poll;
#[path = "api/helpers/secret.rs"]
mod secret;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use app::{serve_args, TestApp};
use poll::eventually;

const FIXTURE_ID: &str = "UmaInvitation:0191a8b6-fixture-0001";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The binary at `default` (or the path in `env`), which must exist.
fn required_binary(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found: the browser test needs Chromium and chromedriver. Run `scripts/test` (it installs them), \
         or install them with `apt-get install chromium chromium-driver` (or point {env} at the binary).",
        path.display()
    );
    path
}

/// A chromedriver process and (once created) its browser session; both are
/// ended when this is dropped, also when the test panics.
struct Driver {
    child: Child,
    port: u16,
    base: String,
    http: reqwest::Client,
    session: Option<String>,
    log: PathBuf,
}

impl Driver {
    async fn start(chromedriver: &Path, log: PathBuf) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let driver = Driver {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
            session: None,
            log,
        };
        eventually("chromedriver to become ready", Duration::from_secs(20), || async {
            let status = driver.http.get(format!("{}/status", driver.base)).send().await.map_err(|e| e.to_string())?;
            let v: Value = status.json().await.map_err(|e| e.to_string())?;
            if v["value"]["ready"] == true {
                Ok(())
            } else {
                Err(format!("{v}; its log:\n{}", driver.log_text()))
            }
        })
        .await;
        driver
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One WebDriver command; returns its `value`, panics on a WebDriver error.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or_else(|e| panic!("{method} {path}: answer is not JSON: {e}"));
        assert!(status.is_success(), "{method} {path} -> {status}: {}", v["value"]);
        v["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().expect("a session"))
    }

    async fn new_session(&mut self, chromium: &Path, profile: &Path) {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_str().unwrap(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1280,2000",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = self.call(reqwest::Method::POST, "/session", Some(caps)).await;
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {v}; chromedriver log:\n{}", self.log_text()));
        self.session = Some(id.to_owned());
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, &self.session_path("/url"), Some(json!({ "url": url }))).await;
    }

    async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, &self.session_path("/url"), None).await.as_str().unwrap().to_owned()
    }

    /// The element matching `css`, or `None` when there is none.
    async fn find(&self, css: &str) -> Option<String> {
        let resp = self
            .http
            .post(format!("{}{}", self.base, self.session_path("/element")))
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .unwrap();
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.unwrap();
        ok.then(|| v["value"][ELEMENT].as_str().expect("element reference").to_owned())
    }

    async fn element(&self, css: &str) -> String {
        self.find(css).await.unwrap_or_else(|| panic!("no element {css} on the page"))
    }

    async fn type_into(&self, element: &str, text: &str) {
        self.call(
            reqwest::Method::POST,
            &self.session_path(&format!("/element/{element}/value")),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, element: &str) {
        self.call(reqwest::Method::POST, &self.session_path(&format!("/element/{element}/click")), Some(json!({})))
            .await;
    }

    async fn text(&self, element: &str) -> String {
        self.call(reqwest::Method::GET, &self.session_path(&format!("/element/{element}/text")), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, &self.session_path("/source"), None).await.as_str().unwrap().to_owned()
    }

    async fn screenshot_png(&self) -> Vec<u8> {
        let b64 = self.call(reqwest::Method::GET, &self.session_path("/screenshot"), None).await;
        BASE64.decode(b64.as_str().expect("base64 text")).expect("the screenshot is standard base64")
    }

    async fn quit(&mut self) {
        if self.session.is_some() {
            self.call(reqwest::Method::DELETE, &self.session_path(""), None).await;
            self.session = None;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // After a panic the async client may be unusable: end the session
        // (and so the browser) with a plain blocking request.
        if let Some(id) = self.session.take() {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(s, "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port);
                let _ = s.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the screenshot goes: `target/status-page.png` (the target folder
/// of this build, wherever it is).
fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target folder").join("status-page.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_the_fixture_invitation_by_its_code_in_a_real_browser() {
    let chromium = required_binary("CHROMIUM", "/usr/bin/chromium");
    let chromedriver = required_binary("CHROMEDRIVER", "/usr/bin/chromedriver");

    // The service, with the fixture's signing secret and no payment endpoint.
    let dir = tempfile::tempdir().unwrap();
    let mut args = serve_args(&dir.path().join("ledger.db"));
    args.key.signing_key = Some("fixture-signing-secret".into());
    let app = TestApp::spawn_with(dir, args).await;
    let root = env!("CARGO_MANIFEST_DIR");
    let body = std::fs::read(format!("{root}/fixtures/webhooks/claimed_snake_case.json")).unwrap();
    let sig = std::fs::read_to_string(format!("{root}/fixtures/webhooks/claimed_snake_case.sig")).unwrap();
    assert_eq!(app.post_raw("/webhooks/lightspark", body, Some(sig.trim())).await.status(), 200);
    eventually("the fixture is projected", Duration::from_secs(20), || async {
        let (status, v) = app.get_json("/v1/invitations/FIXTURE1").await;
        if status == 200 && v["last_seq"] == 1 {
            Ok(())
        } else {
            Err(format!("{status} {v}"))
        }
    })
    .await;

    // The browser.
    let scratch = tempfile::tempdir().unwrap();
    let profile = scratch.path().join("profile");
    std::fs::create_dir(&profile).unwrap();
    let mut driver = Driver::start(&chromedriver, scratch.path().join("chromedriver.log")).await;
    driver.new_session(&chromium, &profile).await;

    driver.go(&app.url("/")).await;
    let recent = driver.element("#recent").await;
    assert!(driver.text(&recent).await.contains("FIXTURE1"), "the recent invitations list the fixture");

    // Type the code into the search box and submit the form.
    let search = driver.element("form.search input[name=q]").await;
    driver.type_into(&search, "FIXTURE1").await;
    let submit = driver.element("form.search button[type=submit]").await;
    driver.click(&submit).await;

    let results = eventually("search results after submitting", Duration::from_secs(20), || async {
        if driver.current_url().await.contains("q=FIXTURE1") {
            if let Some(el) = driver.find("#search-results").await {
                return Ok(el);
            }
        }
        Err(format!("page:\n{}", driver.source().await))
    })
    .await;
    let shown = driver.text(&results).await;
    assert!(shown.contains(FIXTURE_ID), "the invitation id is shown:\n{shown}");
    assert!(shown.contains("CLAIMED"), "its status is shown:\n{shown}");
    let payout_row =
        shown.lines().find(|l| l.starts_with("payout")).unwrap_or_else(|| panic!("a payout row:\n{shown}"));
    assert!(payout_row.contains("pending"), "no PAYOUT_URL: the payout is pending: {payout_row}");
    let search_box = driver.element("form.search input[name=q]").await;
    let kept = driver
        .call(reqwest::Method::GET, &driver.session_path(&format!("/element/{search_box}/property/value")), None)
        .await;
    assert_eq!(kept, "FIXTURE1", "the search box keeps the query");

    // A screenshot for people to look at.
    let png = driver.screenshot_png().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a real PNG ({} bytes)", png.len());
    let path = screenshot_path();
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());

    driver.quit().await;
    drop(driver);
    app.stop_promptly().await;
}
