//! The HTML pages over plain HTTP, as the page tests read them: a client
//! that follows no redirect (a 303 is what they check), an answer kept
//! whole, parts of its HTML, and query and form values percent-encoded.

use std::time::Duration;

use super::TestApp;

/// Answers as they are: no redirect followed.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A page's answer.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The HTML from `<{tag} … id="{id}"` to its closing tag.
    pub fn part(&self, tag: &str, id: &str) -> &str {
        let at = self.body.find(&format!(" id=\"{id}\"")).unwrap_or_else(|| panic!("no id={id} in:\n{}", self.body));
        let start = self.body[..at].rfind(&format!("<{tag}")).expect("the element opens");
        let len = self.body[start..].find(&format!("</{tag}>")).expect("closed");
        &self.body[start..start + len]
    }

    /// The HTML of `<section id="{id}">…</section>`.
    pub fn section(&self, id: &str) -> &str {
        let start = self
            .body
            .find(&format!("<section id=\"{id}\""))
            .unwrap_or_else(|| panic!("no section {id} in:\n{}", self.body));
        let len = self.body[start..].find("</section>").expect("section closed");
        &self.body[start..start + len]
    }
}

/// `GET path` of `app` with `headers`, no redirect followed.
pub async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Page {
    let mut req = client().get(app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    Page { status: resp.status().as_u16(), headers: resp.headers().clone(), body: resp.text().await.unwrap() }
}

/// `s` as a query string or form value: every byte but the unreserved ones
/// percent-encoded.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
