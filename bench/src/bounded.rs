//! The `bounded` scenario (issue 27): what the read side, start-up,
//! `verify` and `rebuild` cost on a large ledger. Every figure should stay
//! flat from 100k to 10M events.
//!
//! On a generated ledger of N real-shaped events (kept with `--ledger` and
//! reused): `rebuild` and `verify` (time, peak RSS); the service's start
//! with current projections, after a SIGKILL under ingest and after a
//! simulated reboot (the projection file marked as written under another
//! boot); sequential latencies of the status page, an audit page, a
//! scrape, filtered lists and point reads, idle and while new claims
//! arrive at a fixed rate; the service's peak RSS across all of them;
//! disk per event.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::load::{self, Bound};
use crate::measure;
use crate::procfs;
use crate::scenarios::{generate_ledger, posting, shape_of};
use crate::service::{self, Files, Service};
use crate::shape::{self, Mix, Shape, SECRET};

/// The paths timed, with what each is called in the output.
const PATHS: &[(&str, &str)] = &[
    ("status page", "/"),
    ("audit page", "/v1/audit/incentives"),
    ("metrics scrape", "/metrics"),
    ("list, filter matching little", "/v1/invitations?payout_state=failed"),
    ("list, filter matching much", "/v1/invitations?status=CLAIMED&limit=50"),
    ("list, first page", "/v1/invitations"),
];

/// What the scenario is asked to do.
pub struct Bounded {
    pub events: usize,
    pub ledger: Option<PathBuf>,
    pub samples: usize,
    pub seed: u64,
    /// New claims a second while the reads are timed again (0: idle only).
    pub ingest_rate: u64,
    /// Stop once the ledger is generated (or found).
    pub generate_only: bool,
    /// Leave out `rebuild` and `verify` (minutes at 10M).
    pub skip_commands: bool,
}

pub fn bounded(rt: &Runtime, a: &Bounded) -> anyhow::Result<()> {
    let dir = service::run_dir()?;
    let db = a.ledger.clone().unwrap_or_else(|| dir.path().join("ledger.db"));
    let existing = if db.exists() {
        invitation_ledger::ledger::count(&invitation_ledger::ledger::open(&db)?)? as usize
    } else {
        0
    };
    if existing > 0 {
        anyhow::ensure!(shape_of(&db)? == Some(Shape::Real), "{} holds another shape of ledger", db.display());
        // Earlier runs' claims under ingest are kept: a few more events.
        anyhow::ensure!(
            existing >= a.events && existing < a.events + a.events / 10 + 1_000_000,
            "{} holds {existing} events, not about {}",
            db.display(),
            a.events
        );
    } else {
        generate_ledger(rt, &db, a.events, Shape::Real, a.seed)?;
    }
    if a.generate_only {
        return Ok(());
    }
    let events = existing.max(a.events);
    println!("scenario: bounded, {events} events (real-shaped, generated through the ledger writer)");

    if a.skip_commands {
        println!("rebuild and verify: skipped (--skip-commands)");
    } else {
        // rebuild: also makes the projections current for what follows.
        let mut cmd = std::process::Command::new(service::service_binary());
        cmd.arg("rebuild").env("LEDGER_DB", &db).env("LOG", "warn");
        service::quiesce();
        let (finished, _) = service::run_measured(cmd)?;
        anyhow::ensure!(finished.status.success(), "rebuild failed ({})", finished.status);
        println!(
            "rebuild: {:.2} s, peak RSS {}",
            finished.wall.as_secs_f64(),
            measure::mib(finished.max_rss_kib * 1024)
        );

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
    }
    let sizes = Files::open(&db)?.sizes();
    println!(
        "disk per event: ledger {}, projections {}",
        measure::kb((sizes.ledger + sizes.ledger_wal) as f64 / events as f64),
        measure::kb((sizes.projections + sizes.projections_wal) as f64 / events as f64)
    );

    // Start-up with current projections: spawn to /readyz 200.
    let (svc, started) = start_ready(&db)?;
    println!("start-up, projections current: {started}");
    let client = reqwest::blocking::Client::new();
    let ids = some_ids(&client, &svc)?;
    println!("idle:");
    time_reads(&client, &svc, &ids, a.samples)?;
    let mut peak = procfs::peak_rss_kib(svc.pid()).unwrap_or(0);

    if a.ingest_rate > 0 {
        // New claims at a fixed rate, from the bench's own load generator,
        // while the same reads are timed again; the service is SIGKILLed
        // with claims still arriving.
        let seconds = 15;
        let count = a.ingest_rate as usize * seconds + 100;
        let mix = Mix { shape: Shape::Real, duplicates: 0.0, envelope_share: 0.0, seed: a.seed ^ events as u64 };
        let make = posting(Arc::new(shape::request_list(&mix, count)), svc.addr.clone());
        let (rate, addr) = (a.ingest_rate, svc.addr.clone());
        let ingest = rt.spawn(async move {
            load::drive(8, Bound::Time(Duration::from_secs(seconds as u64)), rate, &addr, make).await
        });
        std::thread::sleep(Duration::from_secs(1));
        println!("under ingest of {rate} new claims/s:");
        time_reads(&client, &svc, &ids, a.samples)?;
        peak = peak.max(procfs::peak_rss_kib(svc.pid()).unwrap_or(0));
        let lag = match svc.scrape() {
            Ok(m) => m.get("invitation_ledger_projection_lag_events").map_or("unknown".into(), ToString::to_string),
            Err(e) => format!("unknown ({e})"),
        };
        println!("  events not yet folded when it is killed: {lag}");
        let addr = svc.addr.clone();
        drop(svc);
        let (svc, started) = start_ready_at(&db, Some(&addr))?;
        println!("start-up after a SIGKILL under ingest (claims still arriving): {started}");
        let outcome = rt.block_on(ingest)??;
        println!(
            "ingest: {} claims acknowledged in {:.1} s (p50 {}, p99 {}), {} refused or unanswered across the kill",
            outcome.requests - outcome.non_2xx - outcome.socket_errors,
            outcome.elapsed.as_secs_f64(),
            measure::ms(outcome.p50),
            measure::ms(outcome.p99),
            outcome.non_2xx + outcome.socket_errors,
        );
        peak = peak.max(procfs::peak_rss_kib(svc.pid()).unwrap_or(0));
        drop(svc);
    }
    println!("service peak RSS across all of them: {}", measure::mib(peak * 1024));

    // A simulated reboot: the projection file last written under another
    // boot (versions before 2026-12-07 folded the whole ledger again), and
    // nothing of either file in the page cache.
    let projections = invitation_ledger::projection::store::path(&db);
    rusqlite::Connection::open(&projections)?
        .execute("UPDATE projection_boot SET boot_id = 'bench-simulated-reboot'", [])?;
    let cache = drop_page_cache();
    let (svc, started) = start_ready(&db)?;
    println!("start-up after a simulated reboot ({cache}): {started}");
    drop(svc);
    Ok(())
}

/// Empties the kernel's page cache, as a reboot does (root only); says
/// whether it could.
fn drop_page_cache() -> String {
    service::quiesce();
    match std::fs::write("/proc/sys/vm/drop_caches", "3") {
        Ok(()) => "page cache dropped".to_owned(),
        Err(e) => format!("page cache kept: {e}"),
    }
}

/// How long a start took: to the first answer (webhooks accepted from
/// then on) and to ready (reads current).
struct Started {
    answering: Duration,
    ready: Duration,
}

impl std::fmt::Display for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} to answer webhooks, {} to ready", measure::ms(self.answering), measure::ms(self.ready))
    }
}

/// Starts `serve` on `db` and waits until `/readyz` answers 200.
fn start_ready(db: &Path) -> anyhow::Result<(Service, Started)> {
    start_ready_at(db, None)
}

/// [`start_ready`] listening on `addr` when given.
fn start_ready_at(db: &Path, addr: Option<&str>) -> anyhow::Result<(Service, Started)> {
    // The write-back of what came before, out of the time (the service's
    // start syncs again, with little left to write).
    service::quiesce();
    let started = Instant::now();
    let svc = match addr {
        Some(addr) => Service::start_at(None, addr, db, &[], &[])?,
        None => Service::start_on(None, db, &[], &[])?,
    };
    let answering = started.elapsed();
    let client = reqwest::blocking::Client::new();
    let url = format!("http://{}/readyz", svc.addr);
    loop {
        if client.get(&url).send().is_ok_and(|r| r.status().is_success()) {
            return Ok((svc, Started { answering, ready: started.elapsed() }));
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(3600), "not ready after an hour");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Times each of [`PATHS`] `samples` times and point reads ten times as
/// often, sequentially, and prints p50 and p99 of each.
fn time_reads(client: &reqwest::blocking::Client, svc: &Service, ids: &[String], samples: usize) -> anyhow::Result<()> {
    for (name, path) in PATHS {
        let (p50, p99, bytes) = timed(client, svc, samples, |_| path.to_string())?;
        println!("  {name} (GET {path}): p50 {}, p99 {}, {bytes} bytes", measure::ms(p50), measure::ms(p99));
    }
    let (p50, p99, _) = timed(client, svc, samples * 10, |i| format!("/v1/invitations/{}", ids[i % ids.len()]))?;
    println!("  point read (GET /v1/invitations/{{id}}): p50 {}, p99 {}", measure::ms(p50), measure::ms(p99));
    Ok(())
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
