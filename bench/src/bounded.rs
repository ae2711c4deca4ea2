//! The `bounded` scenario (issue 27): what the read side, start-up,
//! `verify` and `rebuild` cost on a large ledger. Every figure should stay
//! flat from 100k to 10M events.
//!
//! On a generated ledger of N real-shaped events (kept with `--ledger` and
//! reused): `rebuild` and `verify` (time, peak RSS); the service's start
//! with current projections and after a simulated reboot (the projection
//! file marked as written under another boot); sequential latencies of the
//! status page, an audit page, a scrape, filtered lists and point reads;
//! the service's peak RSS across all of them; disk per event.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::measure;
use crate::procfs;
use crate::scenarios::{generate_ledger, shape_of};
use crate::service::{self, Files, Service};
use crate::shape::{Shape, SECRET};

/// The paths timed, with what each is called in the output.
const PATHS: &[(&str, &str)] = &[
    ("status page", "/"),
    ("audit page", "/v1/audit/incentives"),
    ("metrics scrape", "/metrics"),
    ("list, filter matching little", "/v1/invitations?payout_state=failed"),
    ("list, filter matching much", "/v1/invitations?status=CLAIMED&limit=50"),
    ("list, first page", "/v1/invitations"),
];

pub fn bounded(rt: &Runtime, events: usize, ledger: Option<PathBuf>, samples: usize, seed: u64) -> anyhow::Result<()> {
    let dir = service::run_dir()?;
    let db = ledger.unwrap_or_else(|| dir.path().join("ledger.db"));
    let existing = if db.exists() {
        invitation_ledger::ledger::count(&invitation_ledger::ledger::open(&db)?)? as usize
    } else {
        0
    };
    if existing > 0 {
        anyhow::ensure!(shape_of(&db)? == Some(Shape::Real), "{} holds another shape of ledger", db.display());
        anyhow::ensure!(existing == events, "{} holds {existing} events, not {events}", db.display());
    } else {
        generate_ledger(rt, &db, events, Shape::Real, seed)?;
    }
    println!("scenario: bounded, {events} events (real-shaped, generated through the ledger writer)");

    // rebuild: also makes the projections current for what follows.
    let mut cmd = std::process::Command::new(service::service_binary());
    cmd.arg("rebuild").env("LEDGER_DB", &db).env("LOG", "warn");
    service::quiesce();
    let (finished, _) = service::run_measured(cmd)?;
    anyhow::ensure!(finished.status.success(), "rebuild failed ({})", finished.status);
    println!("rebuild: {:.2} s, peak RSS {}", finished.wall.as_secs_f64(), measure::mib(finished.max_rss_kib * 1024));

    let mut cmd = std::process::Command::new(service::service_binary());
    cmd.arg("verify").env("LEDGER_DB", &db).env("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET).env("LOG", "warn");
    service::quiesce();
    let (finished, _) = service::run_measured(cmd)?;
    anyhow::ensure!(finished.status.success(), "verify failed ({})", finished.status);
    let cpu = finished.total.as_ref().map_or(0.0, |t| t.cpu_ticks as f64 / 100.0);
    println!(
        "verify: {:.2} s ({cpu:.2} s of CPU), peak RSS {}",
        finished.wall.as_secs_f64(),
        measure::mib(finished.max_rss_kib * 1024)
    );

    let sizes = Files::open(&db)?.sizes();
    println!(
        "disk per event: ledger {}, projections {}",
        measure::kb((sizes.ledger + sizes.ledger_wal) as f64 / events as f64),
        measure::kb((sizes.projections + sizes.projections_wal) as f64 / events as f64)
    );

    // Start-up with current projections: spawn to /readyz 200.
    let (svc, ready) = start_ready(&db)?;
    println!("start-up, projections current: {} to ready", measure::ms(ready));
    let client = reqwest::blocking::Client::new();
    let ids = some_ids(&client, &svc)?;
    for (name, path) in PATHS {
        let (p50, p99, bytes) = timed(&client, &svc, samples, |_| path.to_string())?;
        println!("{name} (GET {path}): p50 {}, p99 {}, {bytes} bytes", measure::ms(p50), measure::ms(p99));
    }
    let (p50, p99, _) = timed(&client, &svc, samples * 10, |i| format!("/v1/invitations/{}", ids[i % ids.len()]))?;
    println!("point read (GET /v1/invitations/{{id}}): p50 {}, p99 {}", measure::ms(p50), measure::ms(p99));
    println!(
        "service peak RSS across all of them: {}",
        measure::mib(procfs::peak_rss_kib(svc.pid()).unwrap_or(0) * 1024)
    );
    drop(svc);

    // A simulated reboot: the projection file last written under another
    // boot (versions before 2026-12-07 folded the whole ledger again).
    let projections = invitation_ledger::projection::store::path(&db);
    rusqlite::Connection::open(&projections)?
        .execute("UPDATE projection_boot SET boot_id = 'bench-simulated-reboot'", [])?;
    let (svc, ready) = start_ready(&db)?;
    println!("start-up after a simulated reboot: {} to ready", measure::ms(ready));
    drop(svc);
    Ok(())
}

/// Starts `serve` on `db` and waits until `/readyz` answers 200.
fn start_ready(db: &Path) -> anyhow::Result<(Service, Duration)> {
    let started = Instant::now();
    let svc = Service::start_on(None, db, &[], &[])?;
    let client = reqwest::blocking::Client::new();
    let url = format!("http://{}/readyz", svc.addr);
    loop {
        if client.get(&url).send().is_ok_and(|r| r.status().is_success()) {
            return Ok((svc, started.elapsed()));
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(3600), "not ready after an hour");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Up to 500 invitation ids, from the first page of the list.
fn some_ids(client: &reqwest::blocking::Client, svc: &Service) -> anyhow::Result<Vec<String>> {
    let text = client.get(format!("http://{}/v1/invitations?limit=500", svc.addr)).send()?.text()?;
    let page: serde_json::Value = serde_json::from_str(&text)?;
    let ids: Vec<String> = page["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["invitation_id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    anyhow::ensure!(!ids.is_empty(), "no invitation listed: {text}");
    Ok(ids)
}

/// `n` sequential GETs of `path(i)` after one to warm up: p50, p99 and the
/// size of the last answer.
fn timed(
    client: &reqwest::blocking::Client,
    svc: &Service,
    n: usize,
    path: impl Fn(usize) -> String,
) -> anyhow::Result<(Duration, Duration, usize)> {
    let get = |p: &str| -> anyhow::Result<(Duration, usize)> {
        let started = Instant::now();
        let r = client.get(format!("http://{}{}", svc.addr, p.replace('$', "%24"))).send()?;
        anyhow::ensure!(r.status().is_success(), "GET {p}: HTTP {}", r.status());
        let bytes = r.bytes()?.len();
        Ok((started.elapsed(), bytes))
    };
    get(&path(0))?;
    let mut times = Vec::with_capacity(n);
    let mut bytes = 0;
    for i in 0..n {
        let (t, b) = get(&path(i))?;
        times.push(t);
        bytes = b;
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    Ok((at(0.5), at(0.99), bytes))
}
