//! `openapi.json` against the running service: every documented route is
//! answered by a route (not the router's own 404/405), every route that
//! answers is documented, the served document is the file, and the
//! documented schemas describe what the API really answers.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::support::fake_platform::FakePlatform;
use crate::support::page::client;
use crate::support::{json, InvitationFixture, TestApp};

const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

fn document_text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"))
        .expect("openapi.json at the repository root")
}

fn document() -> Value {
    serde_json::from_str(&document_text()).expect("openapi.json is valid JSON")
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("only local references are used: {r}"));
            let target = doc.pointer(pointer).unwrap_or_else(|| panic!("dangling reference {r}"));
            resolve(doc, target)
        }
        None => v,
    }
}

/// The path with each `{param}` replaced by the parameter's example (or `x`).
fn fill(doc: &Value, template: &str, op: &Value) -> String {
    let params: Vec<&Value> =
        op["parameters"].as_array().map(|a| a.iter().map(|p| resolve(doc, p)).collect()).unwrap_or_default();
    template
        .split('/')
        .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => params
                .iter()
                .find(|p| p["in"] == "path" && p["name"] == name)
                .and_then(|p| p["example"].as_str())
                .unwrap_or("x")
                .to_owned(),
            None => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn matches_template(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

fn documented(doc: &Value, method: &str, path: &str) -> bool {
    doc["paths"].as_object().unwrap().iter().any(|(t, item)| matches_template(t, path) && item.get(method).is_some())
}

/// Sends `method path` and tells whether the router itself refused it
/// (no route has this path, or none takes this method), with what it saw.
async fn router_refused(app: &TestApp, client: &reqwest::Client, method: &str, path: &str) -> (bool, String) {
    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let resp = client.request(m, app.url(path)).send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let refused = (status == 404 && body["error"] == "not_found" && body["message"] == "no such route")
        || (status == 405 && body["error"] == "method_not_allowed");
    let mut shown = body.to_string();
    if shown.len() > 200 {
        shown = format!("{}…", &shown[..shown.char_indices().nth(200).map_or(shown.len(), |(i, _)| i)]);
    }
    (refused, format!("{} {path} -> {status} {shown}", method.to_uppercase()))
}

#[tokio::test]
async fn every_route_the_service_answers_is_documented_and_vice_versa() {
    let text = document_text();
    let doc = document();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "openapi version: {}", doc["openapi"]);
    let app = TestApp::spawn().await;
    let client = client();

    // Documented → answered by a route.
    let mut probes: BTreeSet<String> = BTreeSet::new();
    let mut operations = 0;
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            operations += 1;
            let path = fill(&doc, template, op);
            let (refused, seen) = router_refused(&app, &client, method, &path).await;
            assert!(!refused, "documented but not served: {seen}");
            probes.insert(path);
        }
    }
    assert!(operations >= 12, "only {operations} operations documented");

    // Answered by a route → documented.
    for extra in [
        "/v1",
        "/v1/invitations/x/y",
        "/webhooks",
        "/webhooks/lightspark/x",
        "/admin",
        "/v1/ledger",
        "/v1/audit",
        "/v1/openapi",
        "/openapi.json",
        "/index.html",
        "/login/x",
        "/status",
        "/webhooks/grid",
        "/v1/ledger/head",
        "/invitations/x",
        "/invitations/x/resolve",
        "/invitations/x/refetch",
        "/invitations/x/events/1/body",
    ] {
        probes.insert(extra.to_owned());
    }
    let mut answered = Vec::new();
    for path in &probes {
        for method in ["get", "post", "put", "delete"] {
            let (refused, seen) = router_refused(&app, &client, method, path).await;
            if !refused {
                assert!(documented(&doc, method, path), "answered but not documented: {seen}");
                answered.push(seen);
            }
        }
    }
    assert!(answered.len() >= operations, "{answered:#?}");

    // The served document is the file, byte for byte.
    let resp = client.get(app.url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().await.unwrap(), text);
}

#[tokio::test]
async fn every_reference_resolves_and_every_operation_says_what_it_answers() {
    let doc = document();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut refs = Vec::new();
    walk(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        assert!(r.starts_with("#/") && doc.pointer(&r[1..]).is_some(), "dangling $ref {r}");
    }
    let mut ids = BTreeSet::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {template} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} used twice");
            let responses =
                op["responses"].as_object().unwrap_or_else(|| panic!("{method} {template} has no responses"));
            assert!(
                responses.keys().any(|k| k.starts_with('2') || k.starts_with('3')),
                "{method} {template}: no success answer"
            );
            assert!(op.get("security").is_some(), "{method} {template}: security not stated");
        }
    }
    // The webhook documents its header and every answer it can give.
    for path in ["/webhooks/lightspark", "/webhook"] {
        let op = &doc["paths"][path]["post"];
        for code in ["200", "400", "401", "413", "503"] {
            assert!(op["responses"].get(code).is_some(), "POST {path} lacks {code}");
        }
        let header = resolve(&doc, &op["parameters"][0]);
        assert_eq!(header["name"], "lightspark-signature");
        assert_eq!(header["in"], "header");
    }
    assert!(doc["paths"]["/v1/invitations/{id}"]["get"]["responses"].get("404").is_some());
    // Bearer security on /v1, /metrics and the status page.
    assert_eq!(doc["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer");
    for (template, item) in doc["paths"].as_object().unwrap() {
        let op = item.get("get").or_else(|| item.get("post")).unwrap();
        let bearer = op["security"].as_array().unwrap().iter().any(|s| s.get("bearerAuth").is_some());
        let protected = template.starts_with("/v1/")
            || template == "/metrics"
            || template == "/"
            || template.starts_with("/invitations/");
        assert_eq!(bearer, protected, "{template}: bearer security {bearer}");
        if protected {
            assert!(op["responses"].get("401").is_some(), "{template} lacks 401");
        }
    }
}

/// Checks `value` against the subset of JSON Schema the document uses
/// (`$ref`, `oneOf`, `type`, `const`, `enum`, `properties`, `required`,
/// `additionalProperties`, `items`); returns what does not fit.
fn conform(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(branches) = schema["oneOf"].as_array() {
        let fits = branches
            .iter()
            .filter(|b| {
                let mut e = Vec::new();
                conform(doc, b, value, at, &mut e);
                e.is_empty()
            })
            .count();
        if fits != 1 {
            errors.push(format!("{at}: {value} fits {fits} branches of oneOf"));
        }
        return;
    }
    if let Some(c) = schema.get("const") {
        if c != value {
            errors.push(format!("{at}: {value} is not {c}"));
        }
    }
    if let Some(e) = schema["enum"].as_array() {
        if !e.contains(value) {
            errors.push(format!("{at}: {value} is not one of {}", schema["enum"]));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let fits = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "object" => value.is_object(),
            "array" => value.is_array(),
            other => panic!("type {other} not handled"),
        });
        if !fits {
            errors.push(format!("{at}: {value} is not of type {}", schema["type"]));
            return;
        }
    }
    if let Some(obj) = value.as_object() {
        let props = schema["properties"].as_object();
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => conform(doc, s, v, &format!("{at}.{k}"), errors),
                None => match &schema["additionalProperties"] {
                    Value::Bool(false) => errors.push(format!("{at}.{k}: field not documented")),
                    s @ Value::Object(_) => conform(doc, s, v, &format!("{at}.{k}"), errors),
                    _ => {}
                },
            }
        }
        for r in schema["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(r.as_str().unwrap()) {
                errors.push(format!("{at}: required field {r} missing"));
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            conform(doc, items, v, &format!("{at}[{i}]"), errors);
        }
    }
}

fn response_schema<'a>(doc: &'a Value, path: &str, method: &str, status: u16) -> &'a Value {
    let r = resolve(doc, &doc["paths"][path][method]["responses"][status.to_string()]);
    &r["content"]["application/json"]["schema"]
}

#[tokio::test]
async fn the_documented_schemas_describe_what_the_api_answers() {
    let doc = document();
    // A platform that pays, and an incentive, so that amounts, payment ids
    // and ledger seqs are filled in.
    let payments = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| {
        a.reconcile.payout_url = Some(payments.url.clone());
        a.reconcile.inviter_incentive = Some("250:USD".into());
    })
    .await;

    let paid = InvitationFixture::claimed("UmaInvitation:schema-paid");
    let resp = app.post_signed(&paid.webhook("evt-schema-1")).await;
    assert_eq!(resp.status(), 200);
    let mut checks: Vec<(String, &str, &str, u16, Value)> =
        vec![("webhook answer".into(), "/webhooks/lightspark", "post", 200, resp.json().await.unwrap())];
    let mut ineligible = InvitationFixture::claimed("UmaInvitation:schema-ineligible");
    ineligible.incentives_status = "INELIGIBLE".into();
    ineligible.incentives_ineligibility_reason = Some("NOT_CROSS_BORDER".into());
    ineligible.invitee_uma = None;
    app.claim(&ineligible, "evt-schema-2").await;

    let settled = app
        .invitation_when(&paid.id, Duration::from_secs(20), |v| {
            v["payout"]["state"] == "succeeded" && v["incentive"]["state"] == "succeeded"
        })
        .await;
    checks.push(("invitation".into(), "/v1/invitations/{id}", "get", 200, settled));

    for (what, path, template, status) in [
        ("ineligible invitation", "/v1/invitations/UmaInvitation%3Aschema-ineligible", "/v1/invitations/{id}", 200),
        ("unknown invitation", "/v1/invitations/nope", "/v1/invitations/{id}", 404),
        ("invitation page", "/v1/invitations?limit=1", "/v1/invitations", 200),
        ("bad limit", "/v1/invitations?limit=0", "/v1/invitations", 400),
        ("audit", "/v1/audit/incentives", "/v1/audit/incentives", 200),
        ("events", "/v1/ledger/events?limit=2", "/v1/ledger/events", 200),
        ("head", "/v1/ledger/head", "/v1/ledger/head", 200),
        ("healthz", "/healthz", "/healthz", 200),
        ("readyz", "/readyz", "/readyz", 200),
    ] {
        let (got, v) = app.get_json(path).await;
        assert_eq!(got, status, "{what}: {v}");
        checks.push((what.into(), template, "get", status, v));
    }
    // A request for another host name, as a DNS-rebinding page would send.
    let foreign = app.client.get(app.url("/v1/ledger/head")).header("host", "attacker.example").send().await.unwrap();
    assert_eq!(foreign.status(), 403);
    checks.push(("foreign host".into(), "/v1/ledger/head", "get", 403, foreign.json().await.unwrap()));
    let unsigned = app.post_raw("/webhook", b"{}".to_vec(), None).await;
    assert_eq!(unsigned.status(), 401);
    checks.push(("unsigned webhook".into(), "/webhook", "post", 401, unsigned.json().await.unwrap()));

    let audit = &checks.iter().find(|c| c.0 == "audit").unwrap().4;
    assert!(audit["inviters"][0]["invitations"].as_array().is_some_and(|a| !a.is_empty()), "{audit}");
    let mut errors = Vec::new();
    for (what, template, method, status, value) in &checks {
        let schema = response_schema(&doc, template, method, *status);
        assert!(!schema.is_null(), "{what}: no JSON schema documented for {method} {template} {status}");
        conform(&doc, schema, value, what, &mut errors);
    }
    assert!(errors.is_empty(), "answers that the document does not describe:\n{}", errors.join("\n"));
}

#[tokio::test]
async fn the_document_wants_the_read_token_when_one_is_set() {
    let token = "a-long-read-api-token-0123456789";
    let app = TestApp::spawn_configured(|a| a.read_api_token = Some(token.into())).await;
    let url = app.url("/v1/openapi.json");
    let denied = app.client.get(&url).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(json(denied).await["error"], "unauthorized");
    let ok = app.client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), document_text());
}
