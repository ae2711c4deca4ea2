//! Benchmarks of the real service over real HTTP on loopback.
//!
//! `cargo run --release --bin bench -- ingest [--connections 64] [--requests 40000]`
//! starts `invitation-ledger serve` (the release binary beside this one) on a
//! fresh database, drives it with signed webhooks, and prints one line per
//! figure. No figure here is asserted anywhere: this is measurement only.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use invitation_ledger::lightspark::signature::sign;

const SECRET: &str = "bench-signing-secret";

#[derive(Parser)]
#[command(about = "Benchmarks of invitation-ledger on loopback")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Unique claimed webhooks (with a share of duplicates) over many connections.
    Ingest {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 40_000)]
        requests: usize,
        /// Share of requests that repeat an earlier webhook.
        #[arg(long, default_value_t = 0.1)]
        duplicates: f64,
        /// Commit each webhook in its own transaction (to compare with group commit).
        #[arg(long)]
        unbatched: bool,
        /// Cap the offered rate (requests per second); 0 means as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// GET one invitation by id, over many connections, on a populated ledger.
    Read {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 60_000)]
        requests: usize,
        /// Invitations in the ledger (two events each).
        #[arg(long, default_value_t = 20_000)]
        invitations: usize,
    },
    /// Obligations settled per second against a fast local payment endpoint.
    Reconcile {
        /// Claimed invitations, each owing a payment, an incentive and a notification.
        #[arg(long, default_value_t = 2_000)]
        invitations: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Replay a generated ledger of N events (`rebuild` of the real binary).
    Rebuild {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Keep the generated ledger here (and reuse it if it exists).
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.scenario {
        Scenario::Ingest { connections, requests, duplicates, unbatched, rate } => {
            rt.block_on(ingest(connections, requests, duplicates, unbatched, rate))
        }
        Scenario::Rebuild { events, ledger } => rt.block_on(rebuild(events, ledger)),
        Scenario::Read { connections, requests, invitations } => rt.block_on(read(connections, requests, invitations)),
        Scenario::Reconcile { invitations, concurrency } => rt.block_on(reconcile(invitations, concurrency)),
    }
}

/// The service under test, in its own process so its memory is its own.
struct Service {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
    peak_rss_kib: Arc<AtomicUsize>,
    stop_sampling: Arc<AtomicBool>,
}

fn service_binary() -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    me.with_file_name("invitation-ledger")
}

impl Service {
    fn start(extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("ledger.db");
        Self::start_on(dir, &db, extra, &[])
    }

    /// Starts `serve` on an existing (or new) ledger `db` with extra env.
    fn start_on(
        dir: tempfile::TempDir,
        db: &std::path::Path,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        quiesce();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(service_binary())
            .arg("serve")
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("LEDGER_DB", db)
            .env("LISTEN_ADDR", &addr)
            .env("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)
            .env("LOG", "warn")
            .stdin(Stdio::null())
            .spawn()?;
        let peak = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        sample_rss(child.id(), peak.clone(), stop.clone());
        let svc = Service { child, addr, _dir: dir, peak_rss_kib: peak, stop_sampling: stop };
        svc.wait_healthy()?;
        Ok(svc)
    }

    fn wait_healthy(&self) -> anyhow::Result<()> {
        for _ in 0..500 {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        anyhow::bail!("service did not start")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop_sampling.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Peak resident set so far (VmHWM), in KiB.
fn rss_kib(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn sample_rss(pid: u32, peak: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Some(kib) = rss_kib(pid) {
                peak.fetch_max(kib, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

fn signed_bodies(n: usize, duplicates: f64) -> Vec<(bytes::Bytes, String)> {
    let unique = ((n as f64) * (1.0 - duplicates)).ceil().max(1.0) as usize;
    (0..n)
        .map(|i| {
            // Every k-th request repeats an earlier webhook: a cheap, even spread.
            let id = if i >= unique { (i * 7919) % unique } else { i };
            let body = format!(
                r#"{{"event_type":"UMA_INVITATION_CLAIMED","event_id":"bench-{id:08}","timestamp":"2026-11-01T12:00:00.000000+00:00","entity_id":"UmaInvitation:bench-{id:08}","data":{{"id":"UmaInvitation:bench-{id:08}","code":"B{id:08}","inviter_uma":"$inviter{}@a.example","invitee_uma":"$invitee{id}@b.example","status":"CLAIMED","incentives_status":"VALIDATED","payment_amount":{{"value":500,"currency":{{"code":"USD","decimals":2}}}},"updated_at":"2026-11-01T12:00:00+00:00"}}}}"#,
                id % 97
            );
            let sig = sign(SECRET.as_bytes(), body.as_bytes());
            (bytes::Bytes::from(body), sig)
        })
        .collect()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// What a load run measured.
struct Load {
    elapsed: Duration,
    latencies_us: Vec<u32>,
    errors: usize,
}

/// Builds request `i` of a run.
type MakeRequest = Arc<dyn Fn(usize) -> hyper::Request<Full<bytes::Bytes>> + Send + Sync>;

/// Sends `requests` requests over `connections` keep-alive connections,
/// request `i` built by `make(i)` and counted good when it answers 200.
/// `rate > 0` paces the offered load to that many requests per second.
///
/// Each connection is a bare hyper HTTP/1.1 client connection: the load
/// generator shares the two cores with the service, so the less it spends
/// per request (no pool, no URL parsing), the more the figures say about the
/// service.
async fn drive(connections: usize, requests: usize, rate: u64, addr: &str, make: MakeRequest) -> anyhow::Result<Load> {
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (next, errors, make, addr) = (next.clone(), errors.clone(), make.clone(), addr.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut sender: Option<SendRequest<Full<bytes::Bytes>>> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return lat;
                }
                if rate > 0 {
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                if sender.is_none() {
                    sender = connect(&addr).await.ok();
                }
                let ok = match sender.as_mut() {
                    Some(s) => match s.send_request(make(i)).await {
                        Ok(r) => {
                            let status = r.status();
                            r.into_body().collect().await.is_ok() && status == 200
                        }
                        Err(_) => {
                            sender = None;
                            false
                        }
                    },
                    None => false,
                };
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut latencies_us = Vec::with_capacity(requests);
    for t in tasks {
        latencies_us.extend(t.await?);
    }
    Ok(Load { elapsed: started.elapsed(), latencies_us, errors: errors.load(Ordering::Relaxed) })
}

/// One HTTP/1.1 connection to `addr`, its driver running in the background.
async fn connect(addr: &str) -> anyhow::Result<SendRequest<Full<bytes::Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn ingest(
    connections: usize,
    requests: usize,
    duplicates: f64,
    unbatched: bool,
    rate: u64,
) -> anyhow::Result<()> {
    let svc = Service::start(if unbatched { &["--unbatched-commits"] } else { &[] })?;
    let bodies = Arc::new(signed_bodies(requests, duplicates));
    let host = svc.addr.clone();
    let Load { elapsed, latencies_us: mut lat, errors } = drive(
        connections,
        requests,
        rate,
        &svc.addr,
        Arc::new(move |i| {
            let (body, sig) = &bodies[i];
            hyper::Request::post("/webhooks/lightspark")
                .header("host", &host)
                .header("lightspark-signature", sig)
                .body(Full::new(body.clone()))
                .expect("valid request")
        }),
    )
    .await?;
    let mode = if unbatched { "one transaction per event" } else { "group commit" };
    println!(
        "scenario: ingest ({mode}), {requests} requests, {connections} connections, {:.0}% duplicates{}",
        duplicates * 100.0,
        if rate > 0 { format!(", offered {rate}/s") } else { String::new() }
    );
    println!("throughput: {:.0} webhooks/s", requests as f64 / elapsed.as_secs_f64());
    print_latency(&mut lat);
    println!("errors: {errors}");
    println!("service peak RSS: {:.1} MiB", svc.peak_rss_kib.load(Ordering::Relaxed) as f64 / 1024.0);
    Ok(())
}

/// A claimed-invitation webhook body; every invitation gets a PENDING
/// snapshot first and a CLAIMED one later, like real traffic. Codes are
/// unique but in no relation to the ids' order, as Lightspark's are, so that
/// the code index is written in random order, not along its edge.
fn generated_event(i: usize) -> invitation_ledger::ledger::NewEvent {
    let inv = i / 2;
    // Multiplying by an odd constant permutes the 64-bit numbers.
    let code = format!("{:016X}", (inv as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (status, hour) = if i.is_multiple_of(2) { ("PENDING", 10) } else { ("CLAIMED", 12) };
    let body = format!(
        r#"{{"event_type":"UMA_INVITATION_CLAIMED","event_id":"gen-{i:08}","timestamp":"2026-11-01T{hour}:00:01.000000+00:00","entity_id":"UmaInvitation:gen-{inv:08}","data":{{"id":"UmaInvitation:gen-{inv:08}","code":"{code}","inviter_uma":"$inviter{}@a.example","invitee_uma":"$invitee{inv}@b.example","status":"{status}","incentives_status":"VALIDATED","payment_amount":{{"value":{},"currency":{{"code":"USD","decimals":2}}}},"updated_at":"2026-11-01T{hour}:00:00+00:00"}}}}"#,
        inv % 97,
        100 + inv % 900
    );
    let bytes = body.into_bytes();
    invitation_ledger::ledger::NewEvent {
        event_key: invitation_ledger::lightspark::webhook::event_key(&format!("gen-{i:08}"), &bytes),
        kind: "webhook.received".into(),
        stream: Some(format!("UmaInvitation:gen-{inv:08}")),
        signature: Some(sign(SECRET.as_bytes(), &bytes)),
        body: bytes,
        sibling_prefix: None,
    }
}

/// Appends `events` generated events through the real ledger writer.
async fn generate_ledger(path: &std::path::Path, events: usize) -> anyhow::Result<()> {
    let (writer, thread) = invitation_ledger::ledger::LedgerWriter::start(path)?;
    let started = Instant::now();
    let mut i = 0;
    while i < events {
        let n = 5_000.min(events - i);
        writer.append_all((i..i + n).map(generated_event).collect()).await?;
        i += n;
    }
    drop(writer);
    thread.join().map_err(|_| anyhow::anyhow!("writer panicked"))?;
    eprintln!("generated {events} events in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Writes back whatever earlier work left dirty in the page cache (a ledger
/// just generated, the files of the scenario before), so that the kernel's
/// writeback of it does not land in this scenario's figures. What the
/// service writes during the run is still synced by the service itself.
#[allow(unsafe_code)] // sync(2): no safe wrapper in std
fn quiesce() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Runs the release binary with `args` and returns (wall time, peak RSS KiB, stdout).
fn run_measured(args: &[&str], db: &std::path::Path) -> anyhow::Result<(Duration, usize, String)> {
    quiesce();
    let started = Instant::now();
    let child = Command::new(service_binary())
        .args(args)
        .env("LEDGER_DB", db)
        .env("LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let peak = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    sample_rss(child.id(), peak.clone(), stop.clone());
    let out = child.wait_with_output()?;
    stop.store(true, Ordering::Relaxed);
    anyhow::ensure!(out.status.success(), "{args:?} failed");
    Ok((started.elapsed(), peak.load(Ordering::Relaxed), String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

async fn rebuild(events: usize, ledger: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = ledger.unwrap_or_else(|| dir.path().join("ledger.db"));
    let existing = if db.exists() {
        let conn = invitation_ledger::ledger::open(&db)?;
        invitation_ledger::ledger::count(&conn)? as usize
    } else {
        0
    };
    if existing < events {
        anyhow::ensure!(existing == 0, "{} holds {existing} events, fewer than {events}", db.display());
        generate_ledger(&db, events).await?;
    }
    let (elapsed, peak_kib, line) = run_measured(&["rebuild"], &db)?;
    let n: f64 =
        line.split_whitespace().find_map(|w| w.strip_prefix("events=")).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    println!("scenario: rebuild, {n} events");
    println!("{line}");
    println!("rebuild time: {:.2} s", elapsed.as_secs_f64());
    println!("throughput: {:.0} events/s", n / elapsed.as_secs_f64());
    println!("peak RSS: {:.1} MiB", peak_kib as f64 / 1024.0);
    Ok(())
}

/// Latency figures of a sorted list of microsecond samples.
fn print_latency(lat: &mut [u32]) {
    lat.sort_unstable();
    println!("latency p50: {:.2} ms", percentile(lat, 0.50));
    println!("latency p99: {:.2} ms", percentile(lat, 0.99));
    println!("latency max: {:.2} ms", percentile(lat, 1.0));
}

async fn read(connections: usize, requests: usize, invitations: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("ledger.db");
    generate_ledger(&db, invitations * 2).await?;
    let svc = Service::start_on(dir, &db, &[], &[])?;
    // Wait for the projection to cover the ledger.
    let client = reqwest::Client::new();
    let last = format!("http://{}/v1/invitations/UmaInvitation:gen-{:08}", svc.addr, invitations - 1);
    for _ in 0..600 {
        if client.get(&last).send().await.map(|r| r.status() == 200).unwrap_or(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let host = svc.addr.clone();
    let Load { elapsed, latencies_us: mut lat, errors } = drive(
        connections,
        requests,
        0,
        &svc.addr,
        Arc::new(move |i| {
            hyper::Request::get(format!("/v1/invitations/UmaInvitation:gen-{:08}", i.wrapping_mul(7919) % invitations))
                .header("host", &host)
                .body(Full::default())
                .expect("valid request")
        }),
    )
    .await?;
    println!(
        "scenario: read, {requests} GET /v1/invitations/{{id}}, {connections} connections, {invitations} invitations"
    );
    println!("throughput: {:.0} requests/s", requests as f64 / elapsed.as_secs_f64());
    print_latency(&mut lat);
    println!("errors: {errors}");
    println!("service peak RSS: {:.1} MiB", svc.peak_rss_kib.load(Ordering::Relaxed) as f64 / 1024.0);
    Ok(())
}

/// A payment platform that answers 200 at once, idempotent by key.
async fn fast_platform() -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    use warp::Filter;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let route = warp::post().and(warp::header::<String>("idempotency-key")).map(move |key: String| {
        counted.fetch_add(1, Ordering::Relaxed);
        warp::reply::json(&serde_json::json!({"payment_id": format!("pay-{key}")}))
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(warp::serve(route).incoming(listener).run());
    Ok((format!("http://{addr}"), calls))
}

async fn reconcile(invitations: usize, concurrency: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("ledger.db");
    // Only the CLAIMED half of each generated pair owes anything.
    generate_ledger(&db, invitations * 2).await?;
    let (platform, calls) = fast_platform().await?;
    let started = Instant::now();
    let svc = Service::start_on(
        dir,
        &db,
        &[],
        &[
            ("PAYOUT_URL", format!("{platform}/payments")),
            ("NOTIFY_URL", format!("{platform}/notify")),
            ("INVITER_INCENTIVE", "100:USD".into()),
            ("RECONCILE_CONCURRENCY", concurrency.to_string()),
        ],
    )?;
    let expected = invitations * 3;
    let client = reqwest::Client::new();
    let metrics_url = format!("http://{}/metrics", svc.addr);
    let settled = loop {
        let text = client.get(&metrics_url).send().await?.text().await?;
        let succeeded: f64 = text
            .lines()
            .filter(|l| l.starts_with("invitation_ledger_obligations{") && l.contains("state=\"succeeded\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if succeeded as usize >= expected {
            break started.elapsed();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "not settled after 10 minutes ({succeeded} of {expected})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "scenario: reconcile, {invitations} claimed invitations, {expected} obligations, concurrency {concurrency}"
    );
    println!("settled: {expected} obligations in {:.2} s (from service start)", settled.as_secs_f64());
    println!("throughput: {:.0} obligations/s", expected as f64 / settled.as_secs_f64());
    println!("endpoint calls: {}", calls.load(Ordering::Relaxed));
    println!("service peak RSS: {:.1} MiB", svc.peak_rss_kib.load(Ordering::Relaxed) as f64 / 1024.0);
    Ok(())
}
