//! `demo`: the whole flow on localhost in one command, with nothing to
//! configure: a throw-away ledger and signing key, the real service, a local
//! payment platform and notification sink, signed webhooks of every kind, and
//! the resulting states.

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

/// A local payment platform and notification sink: idempotent by key, like
/// a real platform, and failing the first payment of [`FLAKY`] with a 503.
#[derive(Default)]
struct Sink {
    executed: Mutex<HashMap<String, String>>,
    failed_once: Mutex<bool>,
    requests: Mutex<u32>,
}

async fn start_sink(sink: Arc<Sink>) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let route = warp::post()
        .and(warp::path::param::<String>())
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(warp::body::json::<Value>())
        .map(move |_endpoint: String, key: Option<String>, body: Value| {
            *sink.requests.lock().unwrap() += 1;
            let Some(key) = key else {
                return warp::reply::with_status(
                    warp::reply::json(&json!({"error": "missing key"})),
                    warp::http::StatusCode::BAD_REQUEST,
                );
            };
            if body["invitation_id"] == FLAKY && body["kind"] == "invitee_payment" {
                let mut failed = sink.failed_once.lock().unwrap();
                if !*failed {
                    *failed = true;
                    return warp::reply::with_status(
                        warp::reply::json(&json!({"error": "temporarily unavailable"})),
                        warp::http::StatusCode::SERVICE_UNAVAILABLE,
                    );
                }
            }
            let mut executed = sink.executed.lock().unwrap();
            let n = executed.len() + 1;
            let id = executed.entry(key).or_insert_with(|| format!("pay_demo_{n:03}")).clone();
            warp::reply::with_status(warp::reply::json(&json!({"payment_id": id})), warp::http::StatusCode::OK)
        });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.context("binding the payment sink")?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        warp::serve(route)
            .incoming(listener)
            .graceful(async {
                let _ = rx.await;
            })
            .run(),
    );
    Ok((format!("http://{addr}"), tx))
}

fn invitation(
    id: &str,
    code: &str,
    status: &str,
    incentives: &str,
    reason: Option<&str>,
    amount: Option<(i64, &str)>,
) -> Value {
    let mut v = json!({
        "id": id, "code": code, "url": format!("https://uma.me/i/{code}"),
        "inviter_uma": "$alice@vasp-a.example", "invitee_uma": format!("${}@vasp-b.example", code.to_lowercase()),
        "status": status, "incentives_status": incentives, "incentives_ineligibility_reason": reason,
        "created_at": "2026-11-01T10:00:00+00:00", "updated_at": "2026-11-01T12:00:00+00:00",
    });
    if let Some((value, currency)) = amount {
        v["payment_amount"] = json!({"value": value, "currency": {"code": currency, "decimals": 2}});
    }
    v
}

fn webhook(event_id: &str, data: Value) -> String {
    json!({"event_type": "UMA_INVITATION_CLAIMED", "event_id": event_id,
           "timestamp": "2026-11-01T12:00:01.000000+00:00", "entity_id": data["id"], "data": data})
    .to_string()
}

/// What the demo sends, with what it shows.
fn scenario() -> Vec<(&'static str, String)> {
    vec![
        (
            "claimed, 5.00 USD, incentive validated",
            webhook(
                "demo-1",
                invitation("UmaInvitation:demo-pay", "DEMOPAY", "CLAIMED", "VALIDATED", None, Some((500, "USD"))),
            ),
        ),
        (
            "claimed, no amount, incentive ineligible",
            webhook(
                "demo-2",
                invitation(
                    "UmaInvitation:demo-noamount",
                    "DEMONOAMT",
                    "CLAIMED",
                    "INELIGIBLE",
                    Some("NOT_CROSS_BORDER"),
                    None,
                ),
            ),
        ),
        (
            "cancelled (never paid)",
            webhook(
                "demo-3",
                invitation(
                    "UmaInvitation:demo-cancelled",
                    "DEMOCANCEL",
                    "CANCELLED",
                    "PENDING",
                    None,
                    Some((900, "USD")),
                ),
            ),
        ),
        (
            "claimed, 12.00 EUR, first payment fails (503)",
            webhook("demo-4", invitation(FLAKY, "DEMORETRY", "CLAIMED", "VALIDATED", None, Some((1200, "EUR")))),
        ),
        ("GraphQL-aliased fixture shape", include_str!("../fixtures/webhooks/claimed_graphql_aliased.json").to_owned()),
        (
            "duplicate delivery of the first",
            webhook(
                "demo-1",
                invitation("UmaInvitation:demo-pay", "DEMOPAY", "CLAIMED", "VALIDATED", None, Some((500, "USD"))),
            ),
        ),
    ]
}

/// Runs the demo and returns its report.
///
/// # Errors
/// When the service cannot start, a step answers unexpectedly, or the
/// reconciler does not settle within a minute.
pub async fn run(keep_running: bool) -> anyhow::Result<String> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let key = format!("demo-{:x}", crate::rng::SplitMix::from_entropy().next_u64());
    let sink = Arc::new(Sink::default());
    let (sink_url, stop_sink) = start_sink(sink.clone()).await?;
    let args = ServeArgs {
        db: DbArgs { db: dir.path().join("ledger.db") },
        // The fixtures are signed with their own published secret; accepting
        // both shows key rotation at work.
        key: KeyArgs { signing_key: Some(format!("{key},{FIXTURE_SECRET}")), grid_webhook_public_key: None },
        reconcile: ReconcileArgs {
            payout_url: Some(format!("{sink_url}/payments")),
            payout_signing_key: Some(format!("{key}-payout")),
            notify_url: Some(format!("{sink_url}/notify")),
            inviter_incentive: Some("100:USD".into()),
            lightspark_api_url: "http://127.0.0.1:9/unused".into(),
            lightspark_api_client_id: None,
            lightspark_api_client_secret: None,
            fetch_horizon: "7d".into(),
            grid_api_url: crate::grid::client::DEFAULT_GRID_API_URL.into(),
            grid_api_token_id: None,
            grid_api_client_secret: None,
            reconcile_interval_ms: 500,
            retry_base_ms: 200,
            retry_max_ms: 1000,
            idempotency_window: "24h".into(),
            request_timeout_ms: 5000,
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
    for (what, body) in scenario() {
        let secret = if body.contains("fixture-0001") { FIXTURE_SECRET } else { key.as_str() };
        let r = post(&client, &base, &body, &sign(secret.as_bytes(), body.as_bytes())).await?;
        report.push_str(&format!("  {:<48} -> {r}\n", what));
    }
    let forged = webhook(
        "demo-forged",
        invitation("UmaInvitation:demo-forged", "FORGED", "CLAIMED", "VALIDATED", None, Some((1_000_000, "USD"))),
    );
    let r = post(&client, &base, &forged, &sign(b"not-the-key", forged.as_bytes())).await?;
    report.push_str(&format!("  {:<48} -> {r}\n", "forged signature (1,000,000 USD)"));

    // Wait until nothing is left for the reconciler.
    let settled = wait_until(Duration::from_secs(60), || async {
        let page: Value = match client.get(format!("{base}/v1/invitations?limit=500")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => return false,
        };
        let items = page["items"].as_array().cloned().unwrap_or_default();
        items.len() >= 5
            && items.iter().all(|i| {
                ["payout", "incentive", "notification"]
                    .iter()
                    .all(|k| !matches!(i[k]["state"].as_str(), Some("pending" | "requested" | "retry_scheduled")))
            })
    })
    .await;
    let page: Value = client.get(format!("{base}/v1/invitations?limit=500")).send().await?.json().await?;
    report.push_str(&format!(
        "\n{:<38} {:<11} {:<10} {:<22} {:<22} {}\n",
        "invitation", "code", "status", "payout", "incentive", "notification"
    ));
    for i in page["items"].as_array().into_iter().flatten() {
        let ob = |k: &str| {
            let o = &i[k];
            let st = o["state"].as_str().unwrap_or("?");
            let extra = match st {
                "succeeded" => format!(" ({}x)", o["attempts"]),
                "ineligible" | "invalid" => format!(" {}", o["reason"].as_str().unwrap_or("")),
                _ => String::new(),
            };
            format!("{st}{extra}")
        };
        report.push_str(&format!(
            "{:<38} {:<11} {:<10} {:<22} {:<22} {}\n",
            i["invitation_id"].as_str().unwrap_or("?"),
            i["code"].as_str().unwrap_or("-"),
            i["status"].as_str().unwrap_or("-"),
            ob("payout"),
            ob("incentive"),
            ob("notification")
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
        t["forwarded"]
            .as_object()
            .map(|m| m.iter().map(|(c, v)| format!("{v} {c}")).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        audit["anomalies"].as_array().map_or(0, Vec::len)
    ));
    report.push_str(&format!(
        "payment sink: {} requests, {} distinct payments and notifications executed\n",
        sink.requests.lock().unwrap(),
        sink.executed.lock().unwrap().len()
    ));
    if settled.is_err() {
        anyhow::bail!("the reconciler did not settle within a minute; states so far:\n{report}");
    }

    if keep_running {
        println!("{report}");
        println!("serving at {base} (read API {base}/v1/invitations, metrics {base}/metrics); signing key {key}; Ctrl-C to stop");
        tokio::signal::ctrl_c().await?;
    }
    let _ = stop_tx.send(());
    service.await??;
    let _ = stop_sink.send(());
    let conn = crate::ledger::open_read_only(&db)?;
    let v = crate::ledger::verify::verify(&conn, &Default::default()).context("verifying the demo ledger")?;
    report.push_str(&format!("ledger verified: {} events, hash chain intact, head {}", v.events, hex::encode(v.head)));
    Ok(report)
}

async fn post(client: &reqwest::Client, base: &str, body: &str, signature: &str) -> anyhow::Result<String> {
    let r = client
        .post(format!("{base}/webhooks/lightspark"))
        .header("lightspark-signature", signature)
        .body(body.to_owned())
        .send()
        .await?;
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
