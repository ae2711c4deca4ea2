//! `demo`: the whole flow on localhost in one command, with nothing to
//! configure: a throw-away ledger and signing keys, the real service, a
//! local payment platform and notification sink, a local stand-in of the
//! Lightspark GraphQL API, signed webhooks of every kind, and the resulting
//! states.
//!
//! It shows the real path: Lightspark's deliveries carry only the envelope
//! (the official SDKs parse nothing else), so the service fetches each
//! invitation from the API, again while it can still change (the stand-in
//! lags one webhook and validates one incentive late). One claim comes from
//! Lightspark Grid, signed with a throw-away P-256 key. The payment sink
//! fails one payment once (retried), refuses one for good (failed) and
//! never gives the outcome of one (it answers "still processing" until the
//! demo's short idempotency window has passed, and the payment is in
//! doubt), so the report shows what an operator would have to act on.
//!
//! It is quiet until its report: `main` logs only errors for it unless
//! `LOG` asks for more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use warp::Filter;

use crate::config::{DbArgs, KeyArgs, ReconcileArgs, ServeArgs};
use crate::lightspark::signature::sign;

/// The secret `fixtures/` are signed with (see fixtures/README.md).
const FIXTURE_SECRET: &str = "fixture-signing-secret";

/// The invitation whose first payment the sink fails, to show a retry.
const FLAKY: &str = "UmaInvitation:demo-retry";

/// The invitation whose payment the sink refuses for good (400), to show a
/// failed payment.
const REFUSED: &str = "UmaInvitation:demo-refused";

/// The invitation whose payment's outcome the sink never gives, to show a
/// payment in doubt: it answers 409 (the key is still being processed) to
/// every call, and once the first is older than the demo's idempotency
/// window the reconciler stops and asks an operator.
const UNANSWERED: &str = "UmaInvitation:demo-unanswered";

/// The demo's idempotency window: short, so that [`UNANSWERED`] is in doubt
/// within seconds (above the request timeout and the retry cap, as start-up
/// requires).
const DEMO_WINDOW: &str = "4s";

/// The demo's GraphQL stand-in credentials.
const API_CLIENT_ID: &str = "demo-client";
const API_CLIENT_SECRET: &str = "demo-client-secret";

/// A local payment platform and notification sink: idempotent by key, like
/// a real platform, failing the first payment of [`FLAKY`] with a 503,
/// every payment of [`REFUSED`] with a 400, and those of [`UNANSWERED`]
/// with a 409 (still processing).
/// Beside it, at `/graphql`, a stand-in of the Lightspark GraphQL API that
/// answers `GetUmaInvitation` from its list of answers per id (each call
/// takes the next; the last stays).
#[derive(Default)]
struct Sink {
    executed: Mutex<HashMap<String, String>>,
    failed_once: Mutex<bool>,
    requests: Mutex<u32>,
    api_answers: Mutex<HashMap<String, Vec<Value>>>,
    api_calls: Mutex<u32>,
}

/// Starts the sink; it serves until the handle is aborted. Not stopped
/// gracefully: a graceful stop cancels the service's pooled connections
/// still open, which warp logs as errors, and a successful demo must not
/// end with one.
async fn start_sink(sink: Arc<Sink>) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let api_sink = sink.clone();
    let expected = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{API_CLIENT_ID}:{API_CLIENT_SECRET}")
        )
    );
    let graphql = warp::post()
        .and(warp::path!("graphql"))
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::json::<Value>())
        .map(move |auth: Option<String>, request: Value| {
            *api_sink.api_calls.lock().unwrap() += 1;
            if auth.as_deref() != Some(expected.as_str()) {
                return warp::reply::with_status(
                    warp::reply::json(&json!({"errors": [{"message": "unauthorized"}]})),
                    warp::http::StatusCode::UNAUTHORIZED,
                );
            }
            let id = request.pointer("/variables/id").and_then(Value::as_str).unwrap_or_default();
            let mut answers = api_sink.api_answers.lock().unwrap();
            let entity = match answers.get_mut(id) {
                Some(list) if list.len() > 1 => list.remove(0),
                Some(list) => list[0].clone(),
                None => Value::Null,
            };
            warp::reply::with_status(
                warp::reply::json(&json!({"data": {"entity": entity}})),
                warp::http::StatusCode::OK,
            )
        });
    let route = graphql.or(warp::post()
        .and(warp::path::param::<String>())
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(warp::body::json::<Value>())
        .then(move |_endpoint: String, key: Option<String>, body: Value| {
            let sink = sink.clone();
            async move {
                *sink.requests.lock().unwrap() += 1;
                let answer = |body: Value, status| warp::reply::with_status(warp::reply::json(&body), status);
                let Some(key) = key else {
                    return answer(json!({"error": "missing key"}), warp::http::StatusCode::BAD_REQUEST);
                };
                let payment_of = |id: &str| body["invitation_id"] == id && body["kind"] == "invitee_payment";
                if payment_of(FLAKY) {
                    let mut failed = sink.failed_once.lock().unwrap();
                    if !*failed {
                        *failed = true;
                        let unavailable = warp::http::StatusCode::SERVICE_UNAVAILABLE;
                        return answer(json!({"error": "temporarily unavailable"}), unavailable);
                    }
                }
                if payment_of(REFUSED) {
                    let refused = json!({"error": "receiver_account_closed"});
                    return answer(refused, warp::http::StatusCode::BAD_REQUEST);
                }
                if payment_of(UNANSWERED) {
                    let processing = json!({"error": "a request with this key is still being processed"});
                    return answer(processing, warp::http::StatusCode::CONFLICT);
                }
                let mut executed = sink.executed.lock().unwrap();
                let n = executed.len() + 1;
                let id = executed.entry(key).or_insert_with(|| format!("pay_demo_{n:03}")).clone();
                answer(json!({"payment_id": id}), warp::http::StatusCode::OK)
            }
        }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.context("binding the payment sink")?;
    let addr = listener.local_addr()?;
    let served = tokio::spawn(warp::serve(route).incoming(listener).run());
    Ok((format!("http://{addr}"), served))
}

/// An invitation as the GraphQL API answers it (every field aliased).
fn entity(
    id: &str,
    code: &str,
    status: &str,
    incentives: &str,
    reason: Option<&str>,
    amount: Option<(i64, &str)>,
) -> Value {
    json!({
        "__typename": "UmaInvitation",
        "uma_invitation_id": id, "uma_invitation_code": code, "uma_invitation_url": format!("https://uma.me/i/{code}"),
        "uma_invitation_inviter_uma": "$alice@vasp-a.example", "uma_invitation_inviter_first_name": "Alice",
        "uma_invitation_invitee_uma": format!("${}@vasp-b.example", code.to_lowercase()),
        "uma_invitation_status": status, "uma_invitation_incentives_status": incentives,
        "uma_invitation_incentives_ineligibility_reason": reason,
        "uma_invitation_payment_amount": amount.map(|(value, currency)| json!({
            "uma_currency_amount_value": value,
            "uma_currency_amount_currency": {"uma_currency_code": currency, "uma_currency_decimals": 2}
        })),
        "uma_invitation_created_at": "2026-11-01T10:00:00+00:00", "uma_invitation_updated_at": "2026-11-01T12:00:00+00:00",
        "uma_invitation_cancelled_at": null, "uma_invitation_expires_at": null,
    })
}

/// A claim as Lightspark delivers it: the envelope only.
fn envelope(event_id: &str, invitation_id: &str) -> String {
    json!({"event_type": "UMA_INVITATION_CLAIMED", "event_id": event_id,
           "timestamp": "2026-11-01T12:00:01.000000+00:00", "entity_id": invitation_id, "wallet_id": null})
    .to_string()
}

/// The webhooks the demo sends, each with what it shows.
type Webhooks = Vec<(&'static str, String)>;
/// What the GraphQL stand-in answers for each invitation, in order.
type Answers = Vec<(&'static str, Vec<Value>)>;

/// What the demo sends, and what the API will answer.
fn scenario() -> (Webhooks, Answers) {
    let pay = "UmaInvitation:demo-pay";
    let lag = "UmaInvitation:demo-lagging";
    let late = "UmaInvitation:demo-late-incentive";
    let cancelled = "UmaInvitation:demo-cancelled";
    let pending_incentive = {
        let mut e = entity(late, "DEMOLATE", "CLAIMED", "PENDING", None, Some((300, "USD")));
        e["uma_invitation_updated_at"] = json!("2026-11-01T12:00:00+00:00");
        e
    };
    let validated = {
        let mut e = entity(late, "DEMOLATE", "CLAIMED", "VALIDATED", None, Some((300, "USD")));
        e["uma_invitation_updated_at"] = json!("2026-11-01T13:00:00+00:00");
        e
    };
    let answers = vec![
        (pay, vec![entity(pay, "DEMOPAY", "CLAIMED", "VALIDATED", None, Some((500, "USD")))]),
        (
            lag,
            vec![
                Value::Null,
                entity(lag, "DEMOLAG", "CLAIMED", "INELIGIBLE", Some("NOT_CROSS_BORDER"), Some((250, "USD"))),
            ],
        ),
        (late, vec![pending_incentive, validated]),
        (
            cancelled,
            vec![{
                // Cancelled after the claim was sent: the newest snapshot wins,
                // nothing is paid, and the contradiction is flagged.
                let mut e = entity(cancelled, "DEMOCANCEL", "CANCELLED", "PENDING", None, Some((900, "USD")));
                e["uma_invitation_updated_at"] = json!("2026-11-01T12:30:00+00:00");
                e["uma_invitation_cancelled_at"] = json!("2026-11-01T12:30:00+00:00");
                e
            }],
        ),
        (FLAKY, vec![entity(FLAKY, "DEMORETRY", "CLAIMED", "VALIDATED", None, Some((1200, "EUR")))]),
        (
            REFUSED,
            vec![entity(REFUSED, "DEMOREFUSED", "CLAIMED", "INELIGIBLE", Some("NOT_CROSS_BORDER"), Some((750, "USD")))],
        ),
        (
            UNANSWERED,
            vec![entity(
                UNANSWERED,
                "DEMODOUBT",
                "CLAIMED",
                "INELIGIBLE",
                Some("NOT_CROSS_BORDER"),
                Some((2000, "EUR")),
            )],
        ),
    ];
    let webhooks = vec![
        ("claimed, envelope only: 5.00 USD, incentive validated", envelope("demo-1", pay)),
        ("claimed, envelope only: the API lags, knows it later", envelope("demo-2", lag)),
        ("claimed, envelope only: incentive validated later", envelope("demo-3", late)),
        ("claimed, envelope only: the API says cancelled since", envelope("demo-4", cancelled)),
        ("claimed, envelope only: first payment fails (503)", envelope("demo-5", FLAKY)),
        ("claimed, envelope only: payment refused for good (400)", envelope("demo-6", REFUSED)),
        ("claimed, envelope only: payment's outcome never known", envelope("demo-7", UNANSWERED)),
        (
            "a delivery carrying its invitation (fixture)",
            include_str!("../fixtures/webhooks/claimed_graphql_aliased.json").to_owned(),
        ),
        ("duplicate delivery of the first", envelope("demo-1", pay)),
    ];
    (webhooks, answers)
}

/// A throw-away P-256 key for the demo's Grid claim, and its public PEM.
fn grid_key() -> anyhow::Result<(p256::ecdsa::SigningKey, String)> {
    use p256::pkcs8::EncodePublicKey as _;
    let rng = crate::rng::SplitMix::from_entropy();
    loop {
        let mut secret = [0u8; 32];
        for chunk in secret.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_be_bytes());
        }
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&secret) {
            let pem = key.verifying_key().to_public_key_pem(p256::pkcs8::LineEnding::LF)?;
            return Ok((key, pem));
        }
    }
}

/// A Grid claim in Grid's current shape: 1500 JPY (no decimals).
fn grid_claim() -> String {
    json!({"id": "Webhook:demo-grid-1", "type": "INVITATION.CLAIMED", "timestamp": "2026-11-01T12:00:02Z",
           "data": {"code": "DEMOGRID", "createdAt": "2026-11-01T10:00:00Z", "claimedAt": "2026-11-01T12:00:00Z",
                    "url": "https://uma.me/i/DEMOGRID", "inviterUma": "$carol@vasp-a.example",
                    "inviteeUma": "$dave@vasp-c.example", "status": "CLAIMED", "firstName": "Carol",
                    "amountToSend": {"amount": 1500, "currency": {"code": "JPY", "name": "Japanese Yen", "symbol": "¥", "decimals": 0}}}})
    .to_string()
}

/// Runs the demo and returns its report.
///
/// # Errors
/// When the service cannot start, a step answers unexpectedly, or the
/// reconciler does not settle within a minute.
pub async fn run(keep_running: bool) -> anyhow::Result<String> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let key = format!("demo-{:x}", crate::rng::SplitMix::from_entropy().next_u64());
    let (grid_signing, grid_pem) = grid_key()?;
    let sink = Arc::new(Sink::default());
    let (webhooks, answers) = scenario();
    sink.api_answers.lock().unwrap().extend(answers.into_iter().map(|(id, a)| (id.to_owned(), a)));
    let (sink_url, sink_task) = start_sink(sink.clone()).await?;
    let args = ServeArgs {
        db: DbArgs::file(&dir.path().join("ledger.db")),
        // The fixtures are signed with their own published secret; accepting
        // both shows key rotation at work.
        key: KeyArgs {
            signing_key: Some(format!("{key},{FIXTURE_SECRET}")),
            grid_webhook_public_key: Some(grid_pem.clone()),
        },
        reconcile: ReconcileArgs {
            payout_url: Some(format!("{sink_url}/payments")),
            payout_signing_key: Some(format!("{key}-payout")),
            notify_url: Some(format!("{sink_url}/notify")),
            inviter_incentive: Some("100:USD".into()),
            lightspark_api_url: format!("{sink_url}/graphql"),
            lightspark_api_client_id: Some(API_CLIENT_ID.into()),
            lightspark_api_client_secret: Some(API_CLIENT_SECRET.into()),
            fetch_horizon: "7d".into(),
            grid_api_url: crate::grid::client::DEFAULT_GRID_API_URL.into(),
            grid_api_token_id: None,
            grid_api_client_secret: None,
            reconcile_interval_ms: 500,
            retry_base_ms: 200,
            retry_max_ms: 1000,
            idempotency_window: DEMO_WINDOW.into(),
            request_timeout_ms: 1000,
            reconcile_concurrency: 8,
        },
        listen_addr: "127.0.0.1:0".into(),
        read_api_token: None,
        max_body_bytes: 256 * 1024,
        anchor_interval: "1h".into(),
        unbatched_commits: false,
    };
    let config = args.validate()?;
    let db = config.db.clone();
    let incentive = config.reconcile.inviter_incentive.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(crate::serve(listener, config, async {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::new();
    wait_until(Duration::from_secs(10), || async { client.get(format!("{base}/healthz")).send().await.is_ok() })
        .await?;

    let mut report = String::new();
    report.push_str(&format!("service {base}  ledger {}  payment sink {sink_url}\n\nwebhooks sent:\n", db.display()));
    for (what, body) in webhooks {
        let secret = if body.contains("fixture-0001") { FIXTURE_SECRET } else { key.as_str() };
        let r = post(
            &client,
            &base,
            "lightspark",
            &body,
            ("lightspark-signature", &sign(secret.as_bytes(), body.as_bytes())),
        )
        .await?;
        report.push_str(&format!("  {:<56} -> {r}\n", what));
    }
    let grid = grid_claim();
    let header = crate::grid::signature::sign(&grid_signing, grid.as_bytes());
    let r = post(&client, &base, "grid", &grid, ("x-grid-signature", &header)).await?;
    report.push_str(&format!("  {:<56} -> {r}\n", "Grid claim, 1500 JPY, signed with P-256"));
    let forged = envelope("demo-forged", "UmaInvitation:demo-forged");
    let r =
        post(&client, &base, "lightspark", &forged, ("lightspark-signature", &sign(b"not-the-key", forged.as_bytes())))
            .await?;
    report.push_str(&format!("  {:<56} -> {r}\n", "forged signature"));

    // Wait until nothing is left for the reconciler.
    let settled = wait_until(Duration::from_secs(60), || async {
        let page: Value = match client.get(format!("{base}/v1/invitations?limit=500")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => return false,
        };
        let items = page["items"].as_array().cloned().unwrap_or_default();
        items.len() >= 9
            && items.iter().all(|i| {
                i["fetch"]["wanted"] == false
                    && ["payout", "incentive", "notification", "failure_notice"]
                        .iter()
                        .all(|k| !matches!(i[k]["state"].as_str(), Some("pending" | "requested" | "retry_scheduled")))
            })
    })
    .await;
    let page: Value = client.get(format!("{base}/v1/invitations?limit=500")).send().await?.json().await?;
    report.push_str(&format!(
        "\n{:<38} {:<12} {:<10} {:<24} {:<28} {:<15} {}\n",
        "invitation", "code", "status", "payout", "incentive", "notification", "amount"
    ));
    let mut to_resolve = Vec::new();
    for i in page["items"].as_array().into_iter().flatten() {
        let ob = |k: &str| {
            let o = &i[k];
            let st = o["state"].as_str().unwrap_or("?");
            let extra = match st {
                "succeeded" | "failed" => format!(" ({}x)", o["attempts"]),
                "ineligible" | "invalid" | "in_doubt" => format!(" {}", o["reason"].as_str().unwrap_or("")),
                _ => String::new(),
            };
            format!("{st}{extra}")
        };
        let amount = serde_json::from_value::<crate::money::Money>(i["payment_amount"].clone())
            .map_or_else(|_| "-".to_owned(), |m| m.to_string());
        let code = i["code"].as_str().unwrap_or("-");
        report.push_str(&format!(
            "{:<38} {:<12} {:<10} {:<24} {:<28} {:<15} {amount}\n",
            i["invitation_id"].as_str().unwrap_or("?"),
            code,
            i["status"].as_str().unwrap_or("-"),
            ob("payout"),
            ob("incentive"),
            ob("notification"),
        ));
        for (field, kind) in [("payout", "invitee_payment"), ("incentive", "inviter_incentive")] {
            let o = &i[field];
            if matches!(o["state"].as_str(), Some("failed" | "in_doubt")) {
                let why = [o["reason"].as_str(), o["last_error"].as_str()].into_iter().flatten();
                to_resolve.push(format!(
                    "  {code:<12} {kind:<16} {:<9} key {}  {}",
                    o["state"].as_str().unwrap_or("?"),
                    o["idempotency_key"].as_str().unwrap_or("-"),
                    why.collect::<Vec<_>>().join(": ")
                ));
            }
        }
    }
    if !to_resolve.is_empty() {
        report.push_str(&format!(
            "\nneeds an operator (ask the platform about the key, then record what it says on the invitation's page or with `resolve`):\n{}\n",
            to_resolve.join("\n")
        ));
    }
    let audit: Value = client.get(format!("{base}/v1/audit/incentives")).send().await?.json().await?;
    let t = &audit["totals"];
    report.push_str(&format!(
        "\nincentive audit: inviters={} validated={} ineligible={} pending={} forwarded={} anomalies={}\n",
        t["inviters"],
        t["validated"],
        t["ineligible"],
        t["pending"],
        forwarded(&t["forwarded"], incentive.as_ref()),
        audit["anomalies"].as_array().map_or(0, Vec::len)
    ));
    report.push_str(&format!(
        "payment sink: {} requests, {} distinct payments and notifications executed\n",
        sink.requests.lock().unwrap(),
        sink.executed.lock().unwrap().len()
    ));
    report.push_str(&format!("GraphQL stand-in: {} calls\n", sink.api_calls.lock().unwrap()));
    if settled.is_err() {
        let _ = stop_tx.send(());
        let _ = service.await;
        sink_task.abort();
        anyhow::bail!("the reconciler did not settle within a minute; states so far:\n{report}");
    }

    if keep_running {
        println!("{report}");
        println!("serving at {base} (read API {base}/v1/invitations, metrics {base}/metrics); signing key {key}; Ctrl-C to stop");
        tokio::signal::ctrl_c().await?;
    }
    let _ = stop_tx.send(());
    service.await??;
    sink_task.abort();
    let conn = crate::ledger::open_read_only(&db)?;
    let keys = crate::ledger::verify::WebhookKeys {
        lightspark: crate::lightspark::signature::SigningKeys::parse(&format!("{key},{FIXTURE_SECRET}")),
        grid: Some(crate::grid::signature::GridKeys::parse(&grid_pem)?),
    };
    let v = crate::ledger::verify::verify(&conn, &keys).context("verifying the demo ledger")?;
    report.push_str(&format!(
        "ledger verified: {} events, hash chain intact, {} webhook signatures re-verified, head {}",
        v.events,
        v.by_source.iter().map(|(_, _, checked)| checked).sum::<u64>(),
        hex::encode(v.head)
    ));
    Ok(report)
}

/// The audit's forwarded totals (integers in the smallest unit, by
/// currency) in each currency's decimals: the configured incentive's for
/// its currency, else the standard ones.
fn forwarded(totals: &Value, incentive: Option<&crate::money::Money>) -> String {
    let shown = totals.as_object().into_iter().flatten().map(|(code, v)| {
        let stated = incentive.filter(|i| i.currency() == code).and_then(crate::money::Money::decimals);
        match crate::money::Money::new(v.as_i64().unwrap_or_default(), code.as_str()) {
            Ok(m) => m.with_decimals(stated).to_string(),
            Err(_) => format!("{v} {code} (minor units)"),
        }
    });
    shown.collect::<Vec<_>>().join(", ")
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    route: &str,
    body: &str,
    (header, signature): (&str, &str),
) -> anyhow::Result<String> {
    let r =
        client.post(format!("{base}/webhooks/{route}")).header(header, signature).body(body.to_owned()).send().await?;
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    Ok(match status {
        200 => format!("200 {} seq {}", v["status"].as_str().unwrap_or("?"), v["seq"]),
        _ => format!("{status} {}", v["error"].as_str().unwrap_or("?")),
    })
}

async fn wait_until<F, Fut>(within: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out")
}
