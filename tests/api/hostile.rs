//! Hostile and malformed input through the real HTTP listener: every bad
//! request gets the right 4xx and stores nothing; slow, huge and idle
//! clients cannot starve the others; absurd amounts are recorded but never
//! paid; the read API's token check and query parameters hold. Property tests
//! show the parsers and the fold never panic on arbitrary input.
//!
//! Each test prints the answers it saw (`cargo test --test api hostile -- --nocapture`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::fake_platform::FakePlatform;
use crate::support::{
    assert_verifies, claimed_body, eventually, json, ledger_keys, ledger_len, raw_exchange, raw_json, raw_status,
    raw_webhook_request, signature_of, InvitationFixture, TestApp,
};

const TOKEN: &str = "hostile-read-token-0123456789";

async fn app_with_token() -> TestApp {
    TestApp::spawn_configured(|a| a.read_api_token = Some(TOKEN.to_owned())).await
}

/// Posts `body` correctly signed; answers status and JSON body.
async fn post_signed_bytes(app: &TestApp, body: &[u8]) -> (u16, Value) {
    let resp = app.post_raw("/webhooks/lightspark", body.to_vec(), Some(&signature_of(body))).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn envelope_with(extra: &str) -> String {
    format!(
        r#"{{"event_type":"NODE_STATUS","event_id":"h1","timestamp":"2026-11-01T12:00:00+00:00","entity_id":"n:1"{extra}}}"#
    )
}

#[tokio::test]
async fn signed_bodies_that_are_not_a_json_object_are_400_and_store_nothing() {
    let app = TestApp::spawn().await;
    let valid = envelope_with("");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "invalid UTF-8 inside a string",
            b"{\"event_type\":\"NODE_STATUS\",\"event_id\":\"\xff\xfe\",\"timestamp\":\"t\",\"entity_id\":\"n\"}"
                .to_vec(),
        ),
        (
            "overlong UTF-8 encoding",
            b"{\"event_type\":\"\xc0\xaf\",\"event_id\":\"e\",\"timestamp\":\"t\",\"entity_id\":\"n\"}".to_vec(),
        ),
        ("bare invalid UTF-8 bytes", b"\xff\xfe\xfd".to_vec()),
        ("UTF-16 encoded JSON", valid.encode_utf16().flat_map(u16::to_le_bytes).collect()),
        (
            "escaped lone surrogate",
            br#"{"event_type":"NODE_STATUS","event_id":"\ud800","timestamp":"t","entity_id":"n"}"#.to_vec(),
        ),
        (
            "raw NUL inside a string",
            b"{\"event_type\":\"NODE_STATUS\",\"event_id\":\"a\0b\",\"timestamp\":\"t\",\"entity_id\":\"n\"}".to_vec(),
        ),
        ("raw NUL after the object", format!("{valid}\0").into_bytes()),
        ("a thousand NUL bytes", vec![0u8; 1000]),
        ("100k nested arrays", "[".repeat(100_000).into_bytes()),
        ("50k nested objects", r#"{"a":"#.repeat(50_000).into_bytes()),
        ("data nested 100k arrays deep", envelope_with(&format!(r#","data":{}"#, "[".repeat(100_000))).into_bytes()),
        ("data nested 200 objects deep (over serde_json's 128)", {
            let deep = format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200));
            envelope_with(&format!(r#","data":{deep}"#)).into_bytes()
        }),
        ("a thousand-element array", serde_json::to_vec(&(0..1000).collect::<Vec<u32>>()).unwrap()),
        ("a thousand webhooks in an array", format!("[{}]", vec![valid.as_str(); 1000].join(",")).into_bytes()),
        ("a bare number", b"42".to_vec()),
        ("a bare huge number", b"1e400".to_vec()),
        ("a bare string", br#""UMA_INVITATION_CLAIMED""#.to_vec()),
        ("null", b"null".to_vec()),
        ("true", b"true".to_vec()),
        ("an empty body", Vec::new()),
        ("whitespace only", b" \r\n\t ".to_vec()),
        ("a UTF-8 byte order mark before the object", [&b"\xef\xbb\xbf"[..], valid.as_bytes()].concat()),
        ("truncated object", valid.as_bytes()[..valid.len() - 1].to_vec()),
        ("two objects back to back", format!("{valid}{valid}").into_bytes()),
    ];
    for (name, body) in cases {
        assert!(body.len() <= 256 * 1024, "{name}: the case must stay under the body limit to reach the parser");
        let (status, answer) = post_signed_bytes(&app, &body).await;
        eprintln!("hostile input: {name} ({} bytes) -> {status} {}", body.len(), answer["error"]);
        assert_eq!(status, 400, "{name}: {answer}");
        assert_eq!(answer["error"], "malformed_webhook", "{name}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {answer}");
        assert_eq!(ledger_len(&app.db), 0, "{name} was stored");
    }
    // The service is still fine afterwards.
    assert_eq!(app.post_signed(&valid).await.status(), 200);
    assert_eq!(ledger_len(&app.db), 1);
}

#[tokio::test]
async fn any_signed_json_object_is_stored_and_acknowledged_whatever_its_fields() {
    // given signed JSON objects that are no well-formed envelope: Lightspark
    // retries a refused one for days, and a signed body is authentic data
    let app = TestApp::spawn().await;
    let valid = envelope_with("");
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("an empty object", b"{}".to_vec(), "lightspark-body:"),
        (
            "duplicate event_id keys",
            br#"{"event_type":"NODE_STATUS","event_id":"a","event_id":"b","timestamp":"t","entity_id":"n"}"#.to_vec(),
            "lightspark:b:",
        ),
        (
            "event_id is a number",
            br#"{"event_type":"NODE_STATUS","event_id":7,"timestamp":"t","entity_id":"n"}"#.to_vec(),
            "lightspark-body:",
        ),
        (
            "event_type is null",
            br#"{"event_type":null,"event_id":"e","timestamp":"t","entity_id":"n"}"#.to_vec(),
            "lightspark:e:",
        ),
        (
            "event_id is empty",
            br#"{"event_type":"NODE_STATUS","event_id":"","timestamp":"t","entity_id":"n"}"#.to_vec(),
            "lightspark-body:",
        ),
        (
            "entity_id is blanks",
            br#"{"event_type":"NODE_STATUS","event_id":"e2","timestamp":"t","entity_id":"   "}"#.to_vec(),
            "lightspark:e2:",
        ),
        (
            "a new event type whose data is an array",
            br#"{"event_type":"SOME_NEW_EVENT","event_id":"n1","timestamp":"t","entity_id":"x","data":[1,2]}"#.to_vec(),
            "lightspark:n1:",
        ),
        (
            "a new event type whose data is a string",
            br#"{"event_type":"SOME_NEW_EVENT","event_id":"n2","timestamp":"t","entity_id":"x","data":"{}"}"#.to_vec(),
            "lightspark:n2:",
        ),
        (
            "a new event type whose data is null",
            br#"{"event_type":"SOME_NEW_EVENT","event_id":"n3","timestamp":"t","entity_id":"x","data":null}"#.to_vec(),
            "lightspark:n3:",
        ),
        ("data is a number", envelope_with(r#","data":1"#).into_bytes(), "lightspark:h1:"),
    ];
    for field in ["event_type", "event_id", "timestamp", "entity_id"] {
        let mut v: Value = serde_json::from_str(&valid).unwrap();
        v.as_object_mut().unwrap().remove(field);
        let name: &'static str = Box::leak(format!("missing {field}").into_boxed_str());
        let key = if field == "event_id" { "lightspark-body:" } else { "lightspark:h1:" };
        cases.push((name, serde_json::to_vec(&v).unwrap(), key));
    }
    let mut stored = 0;
    for (name, body, key_prefix) in cases {
        // when each is posted, twice
        let (status, answer) = post_signed_bytes(&app, &body).await;
        let (again, replay) = post_signed_bytes(&app, &body).await;
        eprintln!("hostile input: {name} -> {status} {}", answer["status"]);
        // then it is stored once, byte for byte, and acknowledged
        assert_eq!((status, again), (200, 200), "{name}: {answer} / {replay}");
        assert_eq!(
            (answer["status"].as_str(), replay["status"].as_str()),
            (Some("accepted"), Some("duplicate")),
            "{name}"
        );
        stored += 1;
        assert_eq!(ledger_len(&app.db), stored, "{name}");
        let conn = rusqlite::Connection::open(&app.db).unwrap();
        let (key, kept): (String, Vec<u8>) = conn
            .query_row("SELECT event_key, body FROM events WHERE seq = ?1", [answer["seq"].as_i64()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert!(key.starts_with(key_prefix), "{name}: {key}");
        assert_eq!(kept, body, "{name}: stored byte for byte");
    }
    assert_verifies(&app.db).await;
}

#[tokio::test]
async fn strange_but_valid_json_is_stored_byte_for_byte_and_the_chain_still_verifies() {
    let app = app_with_token().await;
    // An escaped NUL is valid JSON: the event id, the key and the stream
    // carry a NUL character through SQLite and the hash chain.
    let nul_id = r#"{"event_type":"UMA_INVITATION_CLAIMED","event_id":"nul\u0000id","timestamp":"2026-11-01T12:00:00+00:00","entity_id":"Inv:nul\u0000x"}"#;
    // Nesting within serde_json's limit, on an event type nobody knows.
    let deep = envelope_with(&format!(r#","data":{{"x":{}1{}}}"#, "[".repeat(100), "]".repeat(100)))
        .replace("NODE_STATUS", "SOMETHING_NEW")
        .replace("\"h1\"", "\"deep\"");
    // Non-ASCII everywhere, and a key the envelope does not know.
    let unicode = r#"{"event_type":"UMA_INVITATION_CLAIMED","event_id":"ünï-çødé-🎉","timestamp":"2026-11-01T12:00:00+00:00","entity_id":"Inv:ü","data":{"id":"Inv:ü","status":"CLAIMED","inviter_uma":"$ä@x","extra":"\u2028"}}"#;
    for (name, body) in
        [("escaped NUL in ids", nul_id.to_owned()), ("nesting 102 deep", deep), ("non-ASCII ids", unicode.to_owned())]
    {
        let (status, answer) = post_signed_bytes(&app, body.as_bytes()).await;
        eprintln!("hostile input: {name} -> {status} {answer}");
        assert_eq!(status, 200, "{name}: {answer}");
        assert_eq!(answer["status"], "accepted");
    }
    assert_eq!(ledger_len(&app.db), 3);
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    let stored: Vec<u8> = conn.query_row("SELECT body FROM events WHERE seq = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, nul_id.as_bytes());
    let stream: String = conn.query_row("SELECT stream FROM events WHERE seq = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(stream, "Inv:nul\0x");
    assert_verifies(&app.db).await;
    // The invitation with a NUL in its id is readable through the API, once
    // projected.
    let auth = format!("Bearer {TOKEN}");
    let read = |path: &'static str| {
        let (client, url, auth) = (app.client.clone(), app.url(path), auth.clone());
        async move {
            let r = client.get(url).header("authorization", auth).send().await.map_err(|e| e.to_string())?;
            match r.status().as_u16() {
                200 => Ok(json(r).await),
                other => Err(format!("HTTP {other}")),
            }
        }
    };
    let nul =
        eventually("the NUL id projected", Duration::from_secs(10), || read("/v1/invitations/Inv%3Anul%00x")).await;
    assert_eq!(nul["invitation_id"], "Inv:nul\0x");
    eventually("the non-ASCII id projected", Duration::from_secs(10), || read("/v1/invitations/Inv%3A%C3%BC")).await;
}

#[tokio::test]
async fn bodies_over_256_kib_are_413_with_content_length_chunked_or_a_lying_header() {
    let app = TestApp::spawn().await;
    let padding = "x".repeat(256 * 1024);
    let body = envelope_with(&format!(r#","pad":"{padding}""#));

    let (status, answer) = post_signed_bytes(&app, body.as_bytes()).await;
    eprintln!("hostile input: {} byte body with Content-Length -> {status} {}", body.len(), answer["error"]);
    assert_eq!(status, 413);
    assert_eq!(answer["error"], "body_too_large");
    assert_eq!(ledger_len(&app.db), 0);

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.as_bytes().chunks(8 * 1024).map(|c| Ok(c.to_vec())).collect();
    let resp = app
        .client
        .post(app.url("/webhooks/lightspark"))
        .header("lightspark-signature", signature_of(body.as_bytes()))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let answer = json(resp).await;
    eprintln!("hostile input: {} byte chunked body -> {status} {}", body.len(), answer["error"]);
    assert_eq!(status, 413);
    assert_eq!(answer["error"], "body_too_large");
    assert_eq!(ledger_len(&app.db), 0);

    // A Content-Length far over the limit is refused before any body byte is
    // read: the client never sends the body and still gets its answer.
    for declared in ["300000", "1000000000000", "18446744073709551613"] {
        let head = format!(
            "POST /webhooks/lightspark HTTP/1.1\r\nHost: t\r\nContent-Length: {declared}\r\nlightspark-signature: {}\r\nConnection: close\r\n\r\n",
            "0".repeat(64)
        );
        let answer = raw_exchange(app.addr, head.as_bytes(), Duration::from_secs(5)).await;
        eprintln!("hostile input: Content-Length {declared} and no body -> {:?}", raw_status(&answer));
        assert_eq!(raw_status(&answer), Some(413), "{}", String::from_utf8_lossy(&answer));
        assert_eq!(raw_json(&answer).unwrap()["error"], "body_too_large");
    }
    // The largest values do not even parse in hyper (it keeps u64::MAX and
    // u64::MAX - 1 for itself) and are refused before the service sees them.
    let head = "POST /webhooks/lightspark HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551615\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(app.addr, head.as_bytes(), Duration::from_secs(5)).await;
    eprintln!("hostile input: Content-Length 18446744073709551615 and no body -> {:?}", raw_status(&answer));
    assert!(matches!(raw_status(&answer), Some(400 | 413 | 431)), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(ledger_len(&app.db), 0);
}

#[tokio::test]
async fn ambiguous_framing_is_refused_or_read_safely_and_stores_nothing_unverified() {
    let app = TestApp::spawn().await;
    let body = claimed_body("framing", "Inv:framing");
    let sig = signature_of(body.as_bytes());
    // Two different Content-Length values: hyper refuses the request.
    let two_lengths = format!(
        "POST /webhooks/lightspark HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nContent-Length: 5\r\nlightspark-signature: {sig}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(app.addr, two_lengths.as_bytes(), Duration::from_secs(5)).await;
    eprintln!("hostile input: two different Content-Length headers -> {:?}", raw_status(&answer));
    assert_eq!(raw_status(&answer), Some(400));

    // A Content-Length shorter than the body: only the declared bytes are the
    // body, and their signature does not match.
    let short = format!(
        "POST /webhooks/lightspark HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nlightspark-signature: {sig}\r\nConnection: close\r\n\r\n{body}"
    );
    let answer = raw_exchange(app.addr, short.as_bytes(), Duration::from_secs(5)).await;
    eprintln!("hostile input: Content-Length shorter than the body -> {:?}", raw_status(&answer));
    assert_eq!(raw_status(&answer), Some(401));

    // Transfer-Encoding other than chunked is a bad request.
    let gzip = format!(
        "POST /webhooks/lightspark HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\nlightspark-signature: {sig}\r\nConnection: close\r\n\r\n{body}"
    );
    let answer = raw_exchange(app.addr, gzip.as_bytes(), Duration::from_secs(5)).await;
    eprintln!("hostile input: Transfer-Encoding: gzip -> {:?}", raw_status(&answer));
    assert_eq!(raw_status(&answer), Some(400));
    assert_eq!(ledger_len(&app.db), 0);

    // Content-Length and chunked together: chunked wins (RFC 9112 6.3), the
    // chunked body is the signed one, and it is stored once.
    let both = format!(
        "POST /webhooks/lightspark HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nlightspark-signature: {sig}\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let answer = raw_exchange(app.addr, both.as_bytes(), Duration::from_secs(5)).await;
    eprintln!("hostile input: Content-Length and Transfer-Encoding: chunked -> {:?}", raw_status(&answer));
    assert_eq!(raw_status(&answer), Some(200), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(ledger_len(&app.db), 1);
}

#[tokio::test]
async fn a_one_megabyte_header_or_too_many_headers_are_refused_and_the_service_stays_healthy() {
    let app = TestApp::spawn().await;
    let body = claimed_body("big-header", "Inv:big-header");
    let mut req = format!(
        "POST /webhooks/lightspark HTTP/1.1\r\nHost: t\r\nlightspark-signature: {}\r\nContent-Length: {}\r\nX-Huge: ",
        signature_of(body.as_bytes()),
        body.len()
    )
    .into_bytes();
    req.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    req.extend_from_slice(body.as_bytes());
    let answer = raw_exchange(app.addr, &req, Duration::from_secs(10)).await;
    let status = raw_status(&answer);
    eprintln!("hostile input: 1 MiB header -> {status:?} ({} bytes back)", answer.len());
    // hyper answers 431 and closes; the client may instead see the reset of
    // a connection closed with unread data. Either way: no 2xx, no storage.
    assert!(status.is_none() || status == Some(431), "{}", String::from_utf8_lossy(&answer));

    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("Connection: close\r\n\r\n");
    let answer = raw_exchange(app.addr, many.as_bytes(), Duration::from_secs(10)).await;
    eprintln!("hostile input: 200 headers -> {:?}", raw_status(&answer));
    assert!(matches!(raw_status(&answer), None | Some(431)), "{}", String::from_utf8_lossy(&answer));

    assert_eq!(ledger_len(&app.db), 0);
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(app.post_signed(&body).await.status(), 200);
    assert_eq!(ledger_len(&app.db), 1);
}

/// What a slow client saw.
#[derive(Debug)]
struct Trickled {
    /// Everything the server sent back before closing (or the deadline).
    answer: Vec<u8>,
    /// How many of the slow bytes were written before the server answered
    /// or closed.
    slow_bytes_sent: usize,
    /// When the server answered or closed, after the connection opened.
    ended_after: Option<Duration>,
}

/// Sends `head` at once, then `slow` one byte per `every`, until the server
/// answers or closes the connection (or `deadline` passes).
async fn trickle(addr: SocketAddr, head: Vec<u8>, slow: Vec<u8>, every: Duration, deadline: Duration) -> Trickled {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let (ended_tx, mut ended) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    // A complete answer ends the exchange even if the
                    // server keeps the socket open.
                    if answer_complete(&answer) {
                        break;
                    }
                }
            }
        }
        let _ = ended_tx.send(true);
        (answer, started.elapsed())
    });
    let mut slow_bytes_sent = 0;
    let writer = async {
        if wr.write_all(&head).await.is_err() {
            return;
        }
        for b in &slow {
            tokio::select! {
                _ = ended.wait_for(|e| *e) => return,
                _ = tokio::time::sleep(every) => {}
            }
            if wr.write_all(std::slice::from_ref(b)).await.is_err() {
                return;
            }
            slow_bytes_sent += 1;
        }
        let _ = ended.wait_for(|e| *e).await;
    };
    let _ = tokio::time::timeout(deadline, writer).await;
    match tokio::time::timeout(Duration::from_secs(1), reader).await {
        Ok(Ok((answer, at))) => Trickled { answer, slow_bytes_sent, ended_after: Some(at) },
        _ => Trickled { answer: Vec::new(), slow_bytes_sent, ended_after: None },
    }
}

fn answer_complete(answer: &[u8]) -> bool {
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
        .unwrap_or(0);
    answer.len() >= split + 4 + len
}

#[tokio::test]
async fn slow_headers_and_slow_bodies_are_cut_off_after_ten_seconds_while_other_clients_are_served() {
    let app = TestApp::spawn().await;
    let every = Duration::from_millis(200);
    let deadline = Duration::from_secs(25);

    // Headers one byte per 200 ms: 300 bytes would take a minute.
    let slow_headers =
        format!("POST /webhooks/lightspark HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n", "p".repeat(250)).into_bytes();
    let headers_len = slow_headers.len();
    let headers_client = tokio::spawn(trickle(app.addr, Vec::new(), slow_headers, every, deadline));

    // A body one byte per 200 ms after complete, correctly signed headers.
    let body = claimed_body("trickled", "Inv:trickled").into_bytes();
    let body_len = body.len();
    let head = format!(
        "POST /webhooks/lightspark HTTP/1.1\r\nHost: t\r\nContent-Length: {body_len}\r\nlightspark-signature: {}\r\n\r\n",
        signature_of(&body)
    )
    .into_bytes();
    let body_client = tokio::spawn(trickle(app.addr, head, body.clone(), every, deadline));

    // A body that declares more than it ever sends.
    let short_body = claimed_body("short", "Inv:short").into_bytes();
    let mut short = format!(
        "POST /webhooks/lightspark HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nlightspark-signature: {}\r\n\r\n",
        short_body.len(),
        signature_of(&short_body)
    )
    .into_bytes();
    short.extend_from_slice(&short_body[..short_body.len() / 2]);
    let short_client = tokio::spawn(trickle(app.addr, short, Vec::new(), every, deadline));

    // Meanwhile, everyone else is served.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let normal = claimed_body("served-meanwhile", "Inv:meanwhile");
    let resp = app.post_signed(&normal).await;
    assert_eq!(resp.status(), 200, "a normal webhook must be served while slow clients hang on");
    let served_at = Instant::now();

    let headers = headers_client.await.unwrap();
    eprintln!(
        "hostile input: headers at one byte per 200 ms -> closed after {:?}, {} of {headers_len} bytes sent, answer {:?}",
        headers.ended_after,
        headers.slow_bytes_sent,
        String::from_utf8_lossy(&headers.answer)
    );
    let ended = headers.ended_after.expect("the slow header client must be cut off");
    assert!(ended < Duration::from_secs(20), "cut off after {ended:?}");
    assert!(headers.slow_bytes_sent < headers_len, "the whole header got through");
    assert!(headers.answer.is_empty() || raw_status(&headers.answer).is_some_and(|s| s >= 400));

    for (what, outcome, total) in [
        ("a trickling body", body_client.await.unwrap(), body_len),
        ("a body shorter than its Content-Length", short_client.await.unwrap(), usize::MAX),
    ] {
        eprintln!(
            "hostile input: {what} -> {:?} {} after {:?}, {} slow bytes sent",
            raw_status(&outcome.answer),
            raw_json(&outcome.answer).map(|v| v["error"].to_string()).unwrap_or_default(),
            outcome.ended_after,
            outcome.slow_bytes_sent
        );
        let ended = outcome.ended_after.unwrap_or_else(|| panic!("{what}: no answer"));
        assert!(ended < Duration::from_secs(20), "{what}: answered after {ended:?}");
        assert!(outcome.slow_bytes_sent < total);
        assert_eq!(raw_status(&outcome.answer), Some(408), "{what}: {}", String::from_utf8_lossy(&outcome.answer));
        let err = raw_json(&outcome.answer).expect("a JSON error body");
        assert_eq!(err["error"], "body_timeout");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert!(
        served_at.elapsed() > Duration::from_secs(5),
        "the normal webhook was served before the slow clients were cut off"
    );
    assert_eq!(ledger_keys(&app.db).len(), 1, "only the normal webhook is stored");
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn three_hundred_idle_connections_do_not_keep_a_webhook_from_being_accepted() {
    let app = TestApp::spawn().await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(app.addr).await.expect("idle connection"));
    }
    // A few of them have sent half a request line.
    for s in idle.iter_mut().take(20) {
        use tokio::io::AsyncWriteExt;
        s.write_all(b"POST /webhooks/lig").await.unwrap();
    }
    let started = Instant::now();
    let resp = app.post_signed(&claimed_body("after-idle", "Inv:after-idle")).await;
    eprintln!("hostile input: 300 idle connections, then a webhook -> {} after {:?}", resp.status(), started.elapsed());
    assert_eq!(resp.status(), 200);
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    assert_eq!(ledger_len(&app.db), 1);
    drop(idle);
}

#[tokio::test]
async fn the_signature_header_name_is_accepted_in_any_letter_case() {
    let app = TestApp::spawn().await;
    for (i, name) in ["lightspark-signature", "Lightspark-Signature", "LIGHTSPARK-SIGNATURE", "lIgHtSpArK-sIgNaTuRe"]
        .into_iter()
        .enumerate()
    {
        let body = claimed_body(&format!("case-{i}"), "Inv:case");
        let answer = raw_exchange(app.addr, &raw_webhook_request(body.as_bytes(), name), Duration::from_secs(5)).await;
        eprintln!("hostile input: signature header spelled {name} -> {:?}", raw_status(&answer));
        assert_eq!(raw_status(&answer), Some(200), "{name}: {}", String::from_utf8_lossy(&answer));
        assert_eq!(raw_json(&answer).unwrap()["status"], "accepted");
    }
    assert_eq!(ledger_len(&app.db), 4);
}

/// A claimed invitation webhook whose `payment_amount.value` is `raw`,
/// spliced in as written (some of these are not representable as a number
/// in serde_json, so the text is built by hand).
fn webhook_with_raw_amount(id: &str, event_id: &str, raw: &str) -> String {
    let mut fixture = InvitationFixture::claimed(id);
    fixture.payment_amount = None;
    let data = fixture.data().to_string();
    let data =
        format!(r#"{{"payment_amount":{{"value":{raw},"currency":{{"code":"USD","decimals":2}}}},{}"#, &data[1..]);
    format!(
        r#"{{"event_type":"UMA_INVITATION_CLAIMED","event_id":"{event_id}","timestamp":"{}","entity_id":"{id}","data":{data}}}"#,
        fixture.updated_at
    )
}

#[tokio::test]
async fn absurd_amounts_are_stored_and_acknowledged_shown_invalid_and_never_paid() {
    let platform = FakePlatform::start().await;
    let app = TestApp::spawn_configured(|a| a.reconcile.payout_url = Some(platform.url.clone())).await;

    let absurd = [
        ("Inv:negative", "-500", "negative"),
        ("Inv:fraction", "1.5", "fractional"),
        ("Inv:1e30", "1e30", "64 bits"),
        ("Inv:2pow64", "18446744073709551616", "64 bits"),
        ("Inv:2pow63", "9223372036854775808", "64 bits"),
        ("Inv:minus-zero-point-five", "-0.5", "negative"),
        ("Inv:decimal-form", "500.0", "decimal"),
        ("Inv:string-junk", r#""12abc""#, "not a number"),
        ("Inv:bool", "true", "not a number"),
    ];
    for (id, raw, _) in &absurd {
        let body = webhook_with_raw_amount(id, &format!("evt-{id}"), raw);
        let (status, answer) = post_signed_bytes(&app, body.as_bytes()).await;
        eprintln!("hostile input: payment_amount.value {raw} -> {status} {answer}");
        assert_eq!(status, 200, "{raw}: {answer}");
        assert_eq!(answer["status"], "accepted");
    }

    // A normal invitation is paid: proof that reconciler passes ran.
    let normal = InvitationFixture::claimed("Inv:normal");
    app.claim(&normal, "evt-normal").await;
    app.invitation_when(&normal.id, Duration::from_secs(10), |v| v["payout"]["state"] == "succeeded").await;
    // A few more reconcile intervals (100 ms each in tests).
    tokio::time::sleep(Duration::from_millis(600)).await;

    for (id, raw, reason_word) in &absurd {
        let v = app.invitation(id).await;
        eprintln!("hostile input: payment_amount.value {raw} -> payout {}", v["payout"]);
        assert_eq!(v["status"], "CLAIMED", "{raw}");
        assert_eq!(v["payout"]["state"], "invalid", "{raw}: {v}");
        let reason = v["payout"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(reason_word), "{raw}: reason {reason:?} should mention {reason_word:?}");
        assert_eq!(v["payout"]["attempts"], 0, "{raw}");
    }
    let requests = platform.requests();
    let paid_ids: Vec<String> =
        requests.iter().filter_map(|r| r.body["invitation_id"].as_str().map(str::to_owned)).collect();
    assert!(paid_ids.iter().any(|i| i == "Inv:normal"));
    for (id, raw, _) in &absurd {
        assert!(!paid_ids.iter().any(|p| p == id), "{raw} was sent to the payment platform");
    }
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    let payout_events: i64 = conn
        .query_row("SELECT count(*) FROM events WHERE kind LIKE 'payout.%' AND stream <> 'Inv:normal'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(payout_events, 0, "a payout was requested for an invalid amount");
}

// ---------------------------------------------------------------------------
// The read API: token and query parameters.

#[tokio::test]
async fn without_a_token_only_loopback_host_names_are_served_the_read_side() {
    // given the documented default: loopback listener, no read token
    let app = TestApp::spawn().await;
    let get = |path: &'static str, host: &'static str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let addr = app.addr;
        async move { raw_exchange(addr, req.as_bytes(), Duration::from_secs(5)).await }
    };
    for path in ["/v1/invitations", "/v1/ledger/events", "/v1/audit/incentives", "/v1/openapi.json", "/metrics", "/"] {
        // when a page on another site reaches the service through DNS
        // rebinding, its requests name that site as the Host
        for host in ["attacker.example", "attacker.example:3000", "127.0.0.1.attacker.example", "localhost.evil"] {
            let answer = get(path, host).await;
            // then nothing is read
            assert_eq!(raw_status(&answer), Some(403), "{path} as {host}: {}", String::from_utf8_lossy(&answer));
            assert_eq!(raw_json(&answer).unwrap()["error"], "forbidden_host", "{path} as {host}");
        }
        // and loopback names, any port, are served
        for host in ["localhost", "localhost:3000", "LocalHost:1", "127.0.0.1", "127.0.0.1:3000", "[::1]", "[::1]:3000"]
        {
            let answer = get(path, host).await;
            assert_eq!(raw_status(&answer), Some(200), "{path} as {host}: {}", String::from_utf8_lossy(&answer));
        }
    }
    // Webhooks are signed: they need no such check.
    let body = claimed_body("evt-host", "UmaInvitation:host");
    let mut req = raw_webhook_request(body.as_bytes(), "lightspark-signature");
    let at = req.windows(10).position(|w| w == b"Host: test").unwrap();
    req.splice(at..at + 10, b"Host: attacker.example".iter().copied());
    let answer = raw_exchange(app.addr, &req, Duration::from_secs(5)).await;
    assert_eq!(raw_status(&answer), Some(200), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn missing_wrong_and_almost_right_read_tokens_are_401() {
    let app = app_with_token().await;
    let mut last_differs = TOKEN.to_owned();
    last_differs.pop();
    last_differs.push('X');
    let cases: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("no Authorization header", None),
        ("a wrong token", Some(b"Bearer not-the-token-at-all-000".to_vec())),
        ("same length, last character differs", Some(format!("Bearer {last_differs}").into_bytes())),
        ("a prefix of the token", Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]).into_bytes())),
        ("the first half of the token", Some(format!("Bearer {}", &TOKEN[..TOKEN.len() / 2]).into_bytes())),
        ("the token with one more character", Some(format!("Bearer {TOKEN}x").into_bytes())),
        ("the token twice", Some(format!("Bearer {TOKEN}{TOKEN}").into_bytes())),
        ("the token, a space and more", Some(format!("Bearer {TOKEN} x").into_bytes())),
        (
            "the token with a trailing no-break space",
            Some([format!("Bearer {TOKEN}").as_bytes(), "\u{a0}".as_bytes()].concat()),
        ),
        ("the token upper-cased", Some(format!("Bearer {}", TOKEN.to_uppercase()).into_bytes())),
        ("lower-case scheme", Some(format!("bearer {TOKEN}").into_bytes())),
        ("upper-case scheme", Some(format!("BEARER {TOKEN}").into_bytes())),
        ("no scheme", Some(TOKEN.as_bytes().to_vec())),
        ("Basic scheme", Some(format!("Basic {TOKEN}").into_bytes())),
        ("scheme without a space", Some(format!("Bearer{TOKEN}").into_bytes())),
        ("scheme only", Some(b"Bearer".to_vec())),
        ("empty token", Some(b"Bearer ".to_vec())),
        ("empty header", Some(Vec::new())),
    ];
    for path in ["/v1/invitations", "/v1/ledger/events", "/v1/invitations/Inv:1", "/v1/audit/incentives", "/metrics"] {
        for (name, header) in &cases {
            let mut req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n").into_bytes();
            if let Some(h) = header {
                req.extend_from_slice(b"Authorization: ");
                req.extend_from_slice(h);
                req.extend_from_slice(b"\r\n");
            }
            req.extend_from_slice(b"\r\n");
            let answer = raw_exchange(app.addr, &req, Duration::from_secs(5)).await;
            if path == "/v1/invitations" {
                eprintln!("hostile input: read token, {name} -> {:?}", raw_status(&answer));
            }
            assert_eq!(raw_status(&answer), Some(401), "{path}, {name}: {}", String::from_utf8_lossy(&answer));
            assert_eq!(raw_json(&answer).unwrap()["error"], "unauthorized", "{path}, {name}");
        }
    }
    // The right token works; so does the right token followed by blanks,
    // which are optional whitespace that the HTTP parser removes before the
    // service sees the value (RFC 9110 5.5): it is the exact token.
    for header in [format!("Bearer {TOKEN}"), format!("Bearer {TOKEN} "), format!("Bearer {TOKEN}\t ")] {
        let req =
            format!("GET /v1/invitations HTTP/1.1\r\nHost: t\r\nAuthorization: {header}\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(app.addr, req.as_bytes(), Duration::from_secs(5)).await;
        eprintln!("hostile input: read token, {header:?} -> {:?}", raw_status(&answer));
        assert_eq!(raw_status(&answer), Some(200), "{header:?}");
    }
}

async fn seed_two_invitations(app: &TestApp) {
    app.claim(&InvitationFixture::claimed("Inv:sql-1"), "evt-sql-1").await;
    let mut other = InvitationFixture::claimed("Inv:sql-2");
    other.inviter_uma = "$other@x.example".into();
    app.claim(&other, "evt-sql-2").await;
    eventually("both invitations projected", Duration::from_secs(10), || async {
        let r =
            app.client.get(app.url("/v1/invitations")).bearer_auth(TOKEN).send().await.map_err(|e| e.to_string())?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if v["items"].as_array().map_or(0, Vec::len) == 2 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
}

#[tokio::test]
async fn filter_parameters_with_sql_metacharacters_are_bound_never_spliced() {
    let app = app_with_token().await;
    seed_two_invitations(&app).await;
    let before = ledger_len(&app.db);
    let hostile = [
        "' OR 1=1 --",
        "' OR '1'='1",
        "%",
        "%%",
        "_",
        "*",
        "\"; DROP TABLE events; --",
        "'); DELETE FROM invitations; --",
        "CLAIMED' UNION SELECT invitation_id, state FROM invitations --",
        "\\",
        "\u{0}",
    ];
    for param in ["status", "payout_state", "inviter_uma"] {
        for value in hostile {
            let r = app
                .client
                .get(app.url("/v1/invitations"))
                .query(&[(param, value)])
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v = json(r).await;
            if param == "status" {
                eprintln!(
                    "hostile input: ?{param}={value:?} -> {status}, {} items",
                    v["items"].as_array().map_or(0, Vec::len)
                );
            }
            assert_eq!(status, 200, "{param}={value:?}: {v}");
            assert_eq!(v["items"], json!([]), "{param}={value:?} matched something");
            assert_eq!(v["next"], Value::Null);
        }
    }
    // A raw, unencoded '%' in the query string is taken literally.
    let answer = raw_exchange(
        app.addr,
        format!("GET /v1/invitations?status=%&inviter_uma=%27%20OR%201=1%20-- HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    eprintln!("hostile input: raw ?status=% -> {:?}", raw_status(&answer));
    assert_eq!(raw_status(&answer), Some(200));
    assert_eq!(raw_json(&answer).unwrap()["items"], json!([]));
    // `after` is a cursor compared as text: hostile values answer a normal
    // page (here: both invitations sort after a quote), never an error.
    for value in hostile {
        let r = app
            .client
            .get(app.url("/v1/invitations"))
            .query(&[("after", value)])
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "after={value:?}");
        let ids: Vec<String> = json(r).await["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["invitation_id"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.iter().all(|id| id.as_str() > value), "after={value:?} gave {ids:?}");
    }
    for value in hostile {
        let path = format!("/v1/invitations/{}", urlencode(value));
        let r = app.client.get(app.url(&path)).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let r = app
            .client
            .get(app.url("/v1/audit/incentives"))
            .query(&[("inviter_uma", value)])
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(json(r).await["inviters"], json!([]), "audit inviter_uma={value:?}");
    }
    // The ledger and the projections are intact.
    assert_eq!(ledger_len(&app.db), before);
    let r = app.client.get(app.url("/v1/invitations")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(json(r).await["items"].as_array().unwrap().len(), 2);
    let r = app
        .client
        .get(app.url("/v1/invitations"))
        .query(&[("status", "CLAIMED")])
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["items"].as_array().unwrap().len(), 2);
    assert_verifies(&app.db).await;
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn limits_out_of_range_or_not_numbers_are_400() {
    let app = app_with_token().await;
    app.post_signed(&claimed_body("limit-1", "Inv:limit")).await;
    for path in ["/v1/invitations", "/v1/ledger/events"] {
        for limit in ["0", "501", "-1", "abc", "1.5", "99999999999999999999999", "1e3", " 5"] {
            let r = app.client.get(app.url(path)).query(&[("limit", limit)]).bearer_auth(TOKEN).send().await.unwrap();
            let status = r.status().as_u16();
            let v = json(r).await;
            eprintln!("hostile input: {path}?limit={limit:?} -> {status} {}", v["error"]);
            assert_eq!(status, 400, "{path}?limit={limit}: {v}");
            assert_eq!(v["error"], "bad_request");
        }
        for limit in ["1", "500"] {
            let r = app.client.get(app.url(path)).query(&[("limit", limit)]).bearer_auth(TOKEN).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}?limit={limit}");
        }
    }
    for after in ["-1", "abc", "18446744073709551616"] {
        let r = app
            .client
            .get(app.url("/v1/ledger/events"))
            .query(&[("after", after)])
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "/v1/ledger/events?after={after}");
    }
}

// ---------------------------------------------------------------------------
// Property tests: the parsers and the fold never panic.

mod properties {
    use invitation_ledger::invitation::InvitationSnapshot;
    use invitation_ledger::ledger::LedgerEvent;
    use invitation_ledger::lightspark::webhook::WebhookEnvelope;
    use invitation_ledger::projection::{self, view, InvitationState};
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    /// Field names the parsers look for, so generated objects hit them.
    const KEYS: &[&str] = &[
        "event_type",
        "event_id",
        "timestamp",
        "entity_id",
        "wallet_id",
        "data",
        "id",
        "uma_invitation_id",
        "invitation_id",
        "invitationId",
        "code",
        "uma_invitation_code",
        "url",
        "inviter_uma",
        "uma_invitation_inviter_uma",
        "inviterUma",
        "invitee_uma",
        "uma_invitation_invitee_uma",
        "inviteeUma",
        "status",
        "uma_invitation_status",
        "incentives_status",
        "uma_invitation_incentives_status",
        "incentivesStatus",
        "incentives_ineligibility_reason",
        "payment_amount",
        "uma_invitation_payment_amount",
        "paymentAmount",
        "amount_to_send",
        "amountToSend",
        "value",
        "uma_currency_amount_value",
        "amount",
        "currency",
        "uma_currency_amount_currency",
        "uma_currency_code",
        "decimals",
        "created_at",
        "updated_at",
        "updatedAt",
        "cancelled_at",
        "expires_at",
    ];

    const WORDS: &[&str] = &[
        "",
        " ",
        "UMA_INVITATION_CLAIMED",
        "NODE_STATUS",
        "CLAIMED",
        "PENDING",
        "CANCELLED",
        "EXPIRED",
        "VALIDATED",
        "INELIGIBLE",
        "INVALID",
        "claimed",
        "USD",
        "EUR",
        "US D",
        "$a@x",
        "Inv:1",
        "2026-11-01T12:00:00+00:00",
        "2026-11-01T12:00:00Z",
        "9999-12-31T23:59:59+14:00",
        "0000-01-01T00:00:00Z",
        "not a time",
        "-1",
        "-0",
        "0",
        "18446744073709551616",
        "9223372036854775807",
        "1e3",
        "\u{0}",
        "ü🎉",
        "invitee_payment",
        "inviter_incentive",
        "inviter_notification",
        "paid",
        "retry",
        "failed",
    ];

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![3 => prop::sample::select(WORDS).prop_map(str::to_owned), 1 => ".{0,12}"]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![4 => prop::sample::select(KEYS).prop_map(str::to_owned), 1 => ".{0,8}"]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            prop::sample::select(vec![0i64, -1, 1, 500, i64::MAX, i64::MIN]).prop_map(|n| json!(n)),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    /// An invitation-shaped object: many known spellings, arbitrary values.
    fn invitation_like() -> impl Strategy<Value = Value> {
        let amount = (json_value(), prop_oneof![json_value(), text().prop_map(Value::String)], json_value())
            .prop_map(|(value, currency, code)| json!({"value": value, "currency": currency, "uma_currency_amount_currency": {"uma_currency_code": code}}));
        (
            prop::collection::vec(
                (prop::sample::select(KEYS), prop_oneof![text().prop_map(Value::String), json_value()]),
                0..14,
            ),
            prop::option::of(amount),
        )
            .prop_map(|(fields, amount)| {
                let mut o: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                if let Some(a) = amount {
                    o.insert("payment_amount".into(), a);
                }
                Value::Object(o)
            })
    }

    fn envelope() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::sample::select(vec!["UMA_INVITATION_CLAIMED", "UMA_INVITATION_UPDATED", "NODE_STATUS", ""]),
            text(),
            text(),
            prop_oneof![Just("Inv:1".to_owned()), text()],
            prop_oneof![invitation_like(), json_value(), Just(Value::Null)],
            any::<bool>(),
        )
            .prop_map(|(event_type, event_id, timestamp, entity_id, data, with_data)| {
                let mut v = json!({"event_type": event_type, "event_id": event_id, "timestamp": timestamp, "entity_id": entity_id});
                if with_data {
                    v["data"] = data;
                }
                serde_json::to_vec(&v).unwrap()
            })
    }

    /// A body with every internal event's field names, well typed most of
    /// the time, so the fold's typed branches run as well as its refusals.
    fn internal_body() -> impl Strategy<Value = Vec<u8>> {
        fn typed<T: Strategy<Value = Value> + 'static>(good: T) -> BoxedStrategy<Option<Value>> {
            prop_oneof![4 => good.prop_map(Some), 1 => json_value().prop_map(Some), 1 => Just(None)].boxed()
        }
        let obligation =
            prop::sample::select(vec!["invitee_payment", "inviter_incentive", "inviter_notification", "nope"])
                .prop_map(|s| json!(s));
        let fields = (
            (
                typed(Just(json!("Inv:1"))),
                typed(obligation),
                typed(text().prop_map(Value::String)),
                typed((0u32..5).prop_map(|n| json!(n))),
                typed(text().prop_map(Value::String)),
                typed(text().prop_map(Value::String)),
            ),
            (
                typed(json_value()),
                typed(prop_oneof![Just(json!({"value": 500, "currency": "USD"})), json_value()]),
                typed(prop_oneof![Just(json!(200u16)), Just(json!(500u16)), Just(json!(409u16))]),
                typed(any::<bool>().prop_map(Value::Bool)),
                typed(prop::sample::select(vec!["paid", "retry", "failed"]).prop_map(|s| json!(s))),
                typed(prop_oneof![invitation_like(), Just(Value::Null)]),
            ),
        );
        fields.prop_map(
            |((inv, obligation, key, attempt, t1, t2), (request, amount, http, permanent, decision, entity))| {
                let mut o = Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        o.insert(k.to_owned(), v);
                    }
                };
                put("invitation_id", inv);
                put("obligation", obligation);
                put("idempotency_key", key.clone());
                put("attempt", attempt);
                put("requested_at", t1.clone());
                put("at", t1.clone());
                put("failed_at", t1.clone());
                put("fetched_at", t1);
                put("first_requested_at", t2.clone());
                put("next_attempt_at", t2);
                put("request", request);
                put("amount", amount);
                put("http_status", http);
                put("permanent", permanent);
                put("decision", decision);
                put("entity", entity);
                put("payment_id", key.clone());
                put("error", key);
                serde_json::to_vec(&Value::Object(o)).unwrap()
            },
        )
    }

    const KINDS: &[&str] = &[
        "webhook.received",
        "invitation.fetched",
        "invitation.fetch_failed",
        "obligation.in_doubt",
        "obligation.resolved",
        "payout.requested",
        "payout.succeeded",
        "payout.failed",
        "incentive.requested",
        "incentive.succeeded",
        "incentive.failed",
        "notification.requested",
        "notification.succeeded",
        "notification.failed",
        "payout",
        "payout.",
        ".requested",
        "payout.requested.extra",
        "",
    ];

    fn event_parts() -> impl Strategy<Value = (String, Option<String>, Vec<u8>)> {
        (
            prop_oneof![4 => prop::sample::select(KINDS).prop_map(str::to_owned), 1 => ".{0,16}"],
            prop_oneof![8 => Just(Some("Inv:1".to_owned())), 1 => Just(None), 1 => text().prop_map(Some)],
            prop_oneof![
                2 => envelope(),
                2 => internal_body(),
                1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
                1 => prop::collection::vec(any::<u8>(), 0..64),
            ],
        )
    }

    fn event(seq: u64, (kind, stream, body): (String, Option<String>, Vec<u8>)) -> LedgerEvent {
        LedgerEvent {
            seq,
            event_key: format!("k{seq}"),
            kind,
            stream,
            recorded_at: "2026-11-01T12:00:00.000000Z".into(),
            body,
            signature: None,
            prev_hash: invitation_ledger::ledger::hash::GENESIS,
            hash: invitation_ledger::ledger::hash::GENESIS,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn webhook_envelope_parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = WebhookEnvelope::parse(&bytes);
        }

        #[test]
        fn webhook_envelope_parse_never_panics_on_arbitrary_json(body in prop_oneof![envelope(), json_value().prop_map(|v| serde_json::to_vec(&v).unwrap())]) {
            if let Ok(e) = WebhookEnvelope::parse(&body) {
                let _ = e.invitation_id();
                prop_assert!(!e.event_id.trim().is_empty());
            }
        }

        #[test]
        fn invitation_snapshot_from_json_never_panics(v in prop_oneof![invitation_like(), json_value()]) {
            let snap = invitation_ledger::lightspark::invitation::parse(&v);
            // What the projection stores must survive its own serialisation.
            let text = serde_json::to_string(&snap).unwrap();
            let back: InvitationSnapshot = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, snap);
        }

        #[test]
        fn the_fold_never_panics_and_its_state_round_trips_through_json(parts in prop::collection::vec(event_parts(), 0..12)) {
            let events: Vec<LedgerEvent> = parts.into_iter().enumerate().map(|(i, p)| event(i as u64 + 1, p)).collect();
            let mut state = InvitationState::new("Inv:1");
            for e in &events {
                state = projection::apply(state, e);
                let _ = view::view(&state);
                let _ = view::work(&state);
            }
            // Pure: folding the same events again gives the same state.
            let again = events.iter().fold(InvitationState::new("Inv:1"), projection::apply);
            prop_assert_eq!(&again, &state);
            // The projection store keeps the state as JSON.
            let text = serde_json::to_string(&state).unwrap();
            let back: InvitationState = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, state);
        }
    }
}
