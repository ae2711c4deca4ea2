//! A W3C WebDriver client for the browser tests: a chromedriver process
//! and its headless Chromium session, driven over chromedriver's HTTP API,
//! both ended when dropped (also when a test panics).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::poll::eventually;

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The binary at `default` (or the path in `env`), which must exist.
pub fn required_binary(env: &str, default: &str) -> PathBuf {
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
pub struct Driver {
    child: Child,
    port: u16,
    base: String,
    http: reqwest::Client,
    session: Option<String>,
    log: PathBuf,
}

impl Driver {
    pub async fn start(chromedriver: &Path, log: PathBuf) -> Driver {
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

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One WebDriver command; returns its `value`, panics on a WebDriver error.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
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

    pub fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().expect("a session"))
    }

    pub async fn new_session(&mut self, chromium: &Path, profile: &Path) {
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

    pub async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, &self.session_path("/url"), Some(json!({ "url": url }))).await;
    }

    pub async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, &self.session_path("/url"), None).await.as_str().unwrap().to_owned()
    }

    /// The element matching `css`, or `None` when there is none.
    pub async fn find(&self, css: &str) -> Option<String> {
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

    pub async fn element(&self, css: &str) -> String {
        self.find(css).await.unwrap_or_else(|| panic!("no element {css} on the page"))
    }

    pub async fn type_into(&self, element: &str, text: &str) {
        self.call(
            reqwest::Method::POST,
            &self.session_path(&format!("/element/{element}/value")),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, element: &str) {
        self.call(reqwest::Method::POST, &self.session_path(&format!("/element/{element}/click")), Some(json!({})))
            .await;
    }

    pub async fn text(&self, element: &str) -> String {
        self.call(reqwest::Method::GET, &self.session_path(&format!("/element/{element}/text")), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, &self.session_path("/source"), None).await.as_str().unwrap().to_owned()
    }

    pub async fn screenshot_png(&self) -> Vec<u8> {
        let b64 = self.call(reqwest::Method::GET, &self.session_path("/screenshot"), None).await;
        BASE64.decode(b64.as_str().expect("base64 text")).expect("the screenshot is standard base64")
    }

    pub async fn quit(&mut self) {
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

impl Driver {
    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn execute(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// A started driver with a fresh browser session (its profile in `scratch`).
    pub async fn launch(scratch: &Path) -> Driver {
        let chromium = required_binary("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = required_binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let profile = scratch.join("profile");
        std::fs::create_dir_all(&profile).unwrap();
        let mut driver = Driver::start(&chromedriver, scratch.join("chromedriver.log")).await;
        driver.new_session(&chromium, &profile).await;
        driver
    }

    /// Saves a screenshot of the viewport at `target/{name}` (the target
    /// folder of this build, wherever it is) and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.screenshot_png().await;
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a real PNG ({} bytes)", png.len());
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target folder").join(name);
        std::fs::write(&path, &png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Driver {
    /// Lays the page out for a screen `width` × `height` CSS pixels wide
    /// (a desktop's layout, not a phone's: no zooming out to fit), as
    /// Chromium's DevTools do; `window.innerWidth` is then `width`.
    pub async fn set_viewport(&self, width: u32, height: u32) {
        let params = json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false});
        self.call(
            reqwest::Method::POST,
            &self.session_path("/goog/cdp/execute"),
            Some(json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": params})),
        )
        .await;
    }
}
