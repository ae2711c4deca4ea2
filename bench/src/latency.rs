//! From a claim's 200 to its payment request at the platform: claims sent
//! at a fixed rate to the real service, whose payment platform is a local
//! one that notes when each invitation's first request arrives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::measure::ms;
use crate::service::{self, Service};
use crate::shape::{self, Mix};

/// When each invitation's first payment request reached the platform.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// A payment platform that answers 200 at once and notes arrivals.
async fn noting_platform() -> anyhow::Result<(String, Arrivals)> {
    let arrivals: Arrivals = Arc::default();
    let noted = arrivals.clone();
    let url = crate::scenarios::answering_platform(move |body| {
        let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        if let Some(id) = body["invitation_id"].as_str() {
            noted.lock().expect("arrivals").entry(id.to_owned()).or_insert_with(Instant::now);
        }
    })
    .await?;
    Ok((format!("{url}/payouts"), arrivals))
}

/// Waits until the service has folded its ledger and no payment is left
/// pending or awaiting its outcome (`/metrics`), at most an hour.
fn wait_paid_up(svc: &Service) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let m = svc.scrape()?;
        let value = |series: &str| m.get(series).copied().unwrap_or(-1.0);
        let open: f64 = ["pending", "requested", "retry_scheduled"]
            .iter()
            .map(|st| value(&format!("invitation_ledger_obligations{{kind=\"invitee_payment\",state=\"{st}\"}}")))
            .sum();
        let current = value("invitation_ledger_projection_catching_up") == 0.0
            && value("invitation_ledger_projection_lag_events") == 0.0;
        if open == 0.0 && current {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(3600), "payments still open after an hour: {open}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The invitation id a generated claim names.
fn invitation_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["entity_id"].as_str().map(str::to_owned)
}

/// Sends `rate` claims a second for `duration`, each a new invitation,
/// and reports the time from each 200 to its payment request.
///
/// With `ledger`, on that ledger (which grows: give it a copy), once every
/// payment it already owes has been requested.
pub fn claim_to_payment(
    rt: &Runtime,
    rate: u64,
    duration: Duration,
    interval_ms: u64,
    ledger: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let (payout_url, arrivals) = rt.block_on(noting_platform())?;
    let dir = service::run_dir()?;
    let db = ledger.clone().unwrap_or_else(|| dir.path().join("ledger.db"));
    let held = if db.exists() { invitation_ledger::ledger::count(&invitation_ledger::ledger::open(&db)?)? } else { 0 };
    let env = [("PAYOUT_URL", payout_url), ("RECONCILE_INTERVAL_MS", interval_ms.to_string())];
    let svc = Service::start_on(Some(dir), &db, &[], &env)?;
    if ledger.is_some() {
        let started = Instant::now();
        wait_paid_up(&svc)?;
        println!(
            "on a ledger of {held} events: {} payments it owed requested first, in {:.1} s",
            arrivals.lock().expect("arrivals").len(),
            started.elapsed().as_secs_f64()
        );
        // Their writes back to disk before the timed claims, not during.
        service::quiesce();
    }
    let count = (rate as f64 * duration.as_secs_f64()) as usize;
    // Invitations of their own on a ledger used before.
    let mix = Mix { shape: shape::Shape::Real, duplicates: 0.0, envelope_share: 0.0, seed: 11 ^ held as u64 };
    let requests = shape::request_list(&mix, count);
    let url = format!("http://{}/webhooks/lightspark", svc.addr);
    let acknowledged: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let before = crate::procfs::sample(svc.pid());
    let started = Instant::now();
    let failures = rt.block_on(async {
        let client = reqwest::Client::new();
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut sent = Vec::with_capacity(count);
        for signed in requests {
            tick.tick().await;
            let (client, url, acknowledged) = (client.clone(), url.clone(), acknowledged.clone());
            sent.push(tokio::spawn(async move {
                let id = invitation_of(&signed.body).unwrap_or_default();
                let answer = client
                    .post(&url)
                    .header("lightspark-signature", &signed.signature)
                    .header("content-type", "application/json")
                    .body(signed.body)
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status().is_success() => {
                        acknowledged.lock().expect("acknowledged").insert(id, Instant::now());
                        0
                    }
                    _ => 1,
                }
            }));
        }
        let mut failures = 0;
        for handle in sent {
            failures += handle.await.unwrap_or(1);
        }
        failures
    });
    let offered = started.elapsed();
    // Every acknowledged claim's payment, or give up after 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (acked, paid) =
            (acknowledged.lock().expect("acknowledged").len(), arrivals.lock().expect("arrivals").len());
        if paid >= acked || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // What the claims cost the service, each from its webhook to its
    // payment's outcome: the commits after the last request settle first.
    svc.settle()?;
    let after = crate::procfs::sample(svc.pid());
    let acked = acknowledged.lock().expect("acknowledged").clone();
    let arrived = arrivals.lock().expect("arrivals").clone();
    let mut latencies: Vec<Duration> =
        acked.iter().filter_map(|(id, ok)| arrived.get(id).map(|at| at.saturating_duration_since(*ok))).collect();
    latencies.sort();
    let at = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default();
    println!(
        "scenario: claim to payment, {count} claims at {rate}/s offered over {:.1} s, RECONCILE_INTERVAL_MS {interval_ms}",
        offered.as_secs_f64()
    );
    println!(
        "acknowledged: {} (failed or refused: {failures}); payment requests seen: {}",
        acked.len(),
        latencies.len()
    );
    println!(
        "from the 200 to the payment request: p50 {}, p99 {}, max {}",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    if let (Some(b), Some(a)) = (before, after) {
        let d = crate::procfs::delta(&b, &a);
        let n = acked.len().max(1) as f64;
        println!(
            "per claim, webhook to recorded outcome: service CPU {:.1} µs, bytes written {}",
            d.cpu.as_secs_f64() * 1e6 / n,
            crate::measure::kb(d.write_bytes as f64 / n)
        );
        for g in &d.groups {
            println!(
                "  {}: CPU {:.1} µs, bytes written {}",
                g.group,
                g.cpu.as_secs_f64() * 1e6 / n,
                crate::measure::kb(g.write_bytes as f64 / n)
            );
        }
    }
    drop(svc);
    Ok(())
}
