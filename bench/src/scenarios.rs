//! The scenarios: what each starts, sends and prints.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use tokio::runtime::Runtime;

use crate::load::{self, Bound};
use crate::measure::{self, LoadResult};
use crate::procfs;
use crate::service::{self, Files, Service};
use crate::shape::{self, Mix, Shape};
use crate::wrk;

pub struct Ingest {
    pub connections: usize,
    pub requests: Option<usize>,
    pub duration: Duration,
    pub mix: Mix,
    pub unbatched: bool,
    pub rate: u64,
    pub windows: Option<Duration>,
    pub budget: usize,
}

/// Webhooks from the bench's own hyper client.
pub fn ingest(rt: &Runtime, a: &Ingest) -> anyhow::Result<()> {
    let (bound, count) = match a.requests {
        Some(n) => (Bound::Requests(n), n),
        None if a.rate > 0 => {
            (Bound::Time(a.duration), (a.rate as f64 * a.duration.as_secs_f64() * 1.05) as usize + 100)
        }
        None => (Bound::Time(a.duration), (a.budget as f64 * a.duration.as_secs_f64()) as usize),
    };
    let bodies = Arc::new(shape::request_list(&a.mix, count));
    let mean = bodies.iter().map(|s| s.body.len()).sum::<usize>() as f64 / bodies.len().max(1) as f64;
    let svc = Service::start(if a.unbatched { &["--unbatched-commits"] } else { &[] })?;
    let make = posting(bodies.clone(), svc.addr.clone());
    let (connections, rate, addr) = (a.connections, a.rate, svc.addr.clone());
    let run = measure::run(&svc, a.windows, |started| {
        started();
        let before = procfs::sample(std::process::id());
        let mut outcome = rt.block_on(load::drive(connections, bound, rate, &addr, make))?;
        let after = procfs::sample(std::process::id());
        outcome.wrapped = outcome.requests.saturating_sub(bodies.len() as u64);
        Ok(LoadResult {
            generator: format!(
                "the bench's hyper client, {connections} connections{}",
                if rate > 0 {
                    format!(", paced at {rate}/s (latency from when each request was due)")
                } else {
                    String::new()
                }
            ),
            generator_cpu: before.zip(after).map(|(b, a)| procfs::delta(&b, &a).cpu),
            outcome,
        })
    })?;
    let mode = if a.unbatched { "one transaction per event" } else { "group commit" };
    let length = match a.requests {
        Some(n) => format!("{n} requests"),
        None => format!("{} s", a.duration.as_secs_f64()),
    };
    println!("scenario: ingest ({mode}), {length}, {} (mean body {mean:.0} bytes)", a.mix.describe());
    measure::print(&run, "webhook");
    Ok(())
}

pub struct Wrk {
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    pub windows: Option<Duration>,
    pub mix: Mix,
    pub bodies_file: Option<PathBuf>,
    pub budget: usize,
    pub script: PathBuf,
}

/// Webhooks from `wrk`.
pub fn wrk(a: &Wrk) -> anyhow::Result<()> {
    let version = wrk::ensure_wrk()?;
    let dir = service::run_dir()?;
    let (bodies, what) = match &a.bodies_file {
        Some(f) => (f.clone(), format!("bodies of {}", f.display())),
        None => {
            let path = dir.path().join("bodies.txt");
            let count = (a.budget as f64 * a.duration.as_secs_f64()) as usize;
            let started = Instant::now();
            let mean = wrk::write_bodies(&path, &a.mix, count)?;
            eprintln!("generated {count} signed bodies in {:.1} s", started.elapsed().as_secs_f64());
            (path, format!("{} (mean body {mean:.0} bytes)", a.mix.describe()))
        }
    };
    let svc = Service::start(&[])?;
    let run = measure::run(&svc, a.windows, |started| {
        wrk::run(
            started,
            &svc.addr,
            &wrk::WrkRun {
                threads: a.threads,
                connections: a.connections,
                duration: a.duration,
                script: &a.script,
                bodies: &bodies,
            },
            &version,
        )
    })?;
    println!("scenario: wrk, {} s, {what}", a.duration.as_secs());
    measure::print(&run, "webhook");
    Ok(())
}

/// Appends the `events` of a generated ledger through the real ledger
/// writer; returns every invitation's (id, code).
pub(crate) fn generate_ledger(
    rt: &Runtime,
    path: &Path,
    events: usize,
    shape: Shape,
    seed: u64,
) -> anyhow::Result<Vec<(String, String)>> {
    let (writer, thread) = invitation_ledger::ledger::LedgerWriter::start(path)?;
    let started = Instant::now();
    let mut ids = Vec::with_capacity(shape::invitations_in(events));
    let mut batch = Vec::with_capacity(5_000);
    let mut failed = None;
    shape::ledger_events(
        shape,
        events,
        seed,
        |e| {
            batch.push(e);
            if batch.len() == 5_000 && failed.is_none() {
                failed = rt.block_on(writer.append_all(std::mem::take(&mut batch))).err();
            }
        },
        |id, code| ids.push((id.to_owned(), code.to_owned())),
    );
    if let Some(e) = failed {
        return Err(e.into());
    }
    if !batch.is_empty() {
        rt.block_on(writer.append_all(batch))?;
    }
    drop(writer);
    thread.join().map_err(|_| anyhow::anyhow!("writer panicked"))?;
    eprintln!("generated {events} {} events in {:.1} s", shape.name(), started.elapsed().as_secs_f64());
    Ok(ids)
}

/// Request `i` posts webhook `i` of `bodies` (round and round) to `host`.
pub(crate) fn posting(bodies: Arc<Vec<shape::Signed>>, host: String) -> load::MakeRequest {
    Arc::new(move |i| {
        let s = &bodies[i % bodies.len()];
        hyper::Request::post("/webhooks/lightspark")
            .header("host", &host)
            .header("lightspark-signature", &s.signature)
            .body(Full::new(s.body.clone()))
            .expect("valid request")
    })
}

/// Waits until the service's projections cover its ledger.
fn wait_projected(svc: &Service) -> anyhow::Result<()> {
    let files = Files::open(&svc.db)?;
    let started = Instant::now();
    while files.projected()? < files.rows()? {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "projections not caught up after 10 minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub fn read(
    rt: &Runtime,
    connections: usize,
    requests: Option<usize>,
    duration: Duration,
    invitations: usize,
    shape: Shape,
    seed: u64,
) -> anyhow::Result<()> {
    let dir = service::run_dir()?;
    let db = dir.path().join("ledger.db");
    let ids = generate_ledger(rt, &db, invitations * 2, shape, seed)?;
    let svc = Service::start_on(Some(dir), &db, &[], &[])?;
    wait_projected(&svc)?;
    let host = svc.addr.clone();
    // Percent-encoding is not needed: ids are letters, digits, `:` and `-`.
    let paths: Arc<Vec<String>> = Arc::new(ids.iter().map(|(id, _)| format!("/v1/invitations/{id}")).collect());
    let make: load::MakeRequest = Arc::new(move |i| {
        hyper::Request::get(&paths[i.wrapping_mul(7919) % paths.len()])
            .header("host", &host)
            .body(Full::default())
            .expect("valid request")
    });
    let bound = requests.map_or(Bound::Time(duration), Bound::Requests);
    let addr = svc.addr.clone();
    let run = measure::run(&svc, None, |started| {
        started();
        let before = procfs::sample(std::process::id());
        let outcome = rt.block_on(load::drive(connections, bound, 0, &addr, make))?;
        let after = procfs::sample(std::process::id());
        Ok(LoadResult {
            generator: format!("the bench's hyper client, {connections} connections"),
            generator_cpu: before.zip(after).map(|(b, a)| procfs::delta(&b, &a).cpu),
            outcome,
        })
    })?;
    println!(
        "scenario: read, GET /v1/invitations/{{id}}, {invitations} invitations ({} ledger of {} events)",
        shape.name(),
        invitations * 2
    );
    measure::print(&run, "request");
    Ok(())
}

/// A payment platform that answers 200 at once, idempotent by key, and
/// hands each request's body to `note` first.
pub async fn answering_platform(
    note: impl Fn(&bytes::Bytes) + Clone + Send + Sync + 'static,
) -> anyhow::Result<String> {
    use warp::Filter;
    let route = warp::post().and(warp::header::<String>("idempotency-key")).and(warp::body::bytes()).map(
        move |key: String, body: bytes::Bytes| {
            note(&body);
            warp::reply::json(&serde_json::json!({"payment_id": format!("pay-{key}")}))
        },
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(warp::serve(route).incoming(listener).run());
    Ok(format!("http://{addr}"))
}

/// [`answering_platform`], counting the requests.
async fn fast_platform() -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let url = answering_platform(move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
    })
    .await?;
    Ok((url, calls))
}

pub fn reconcile(rt: &Runtime, invitations: usize, concurrency: usize, shape: Shape, seed: u64) -> anyhow::Result<()> {
    let dir = service::run_dir()?;
    let db = dir.path().join("ledger.db");
    // Only the CLAIMED half of each generated pair owes anything.
    generate_ledger(rt, &db, invitations * 2, shape, seed)?;
    let (platform, calls) = rt.block_on(fast_platform())?;
    let started = Instant::now();
    let svc = Service::start_on(
        Some(dir),
        &db,
        &[],
        &[
            ("PAYOUT_URL", format!("{platform}/payments")),
            ("NOTIFY_URL", format!("{platform}/notify")),
            ("INVITER_INCENTIVE", "100:USD".into()),
            ("RECONCILE_CONCURRENCY", concurrency.to_string()),
        ],
    )?;
    let before = procfs::sample(svc.pid()).ok_or_else(|| anyhow::anyhow!("the service has exited"))?;
    let (machine_before, loadavg) = (procfs::machine(), procfs::loadavg());
    // The platform answers from this process.
    let platform_before = procfs::sample(std::process::id());
    let rows_before = Files::open(&db)?.rows()?;
    let expected = invitations * 3;
    let client = reqwest::blocking::Client::new();
    let metrics_url = format!("http://{}/metrics", svc.addr);
    let settled = loop {
        let text = client.get(&metrics_url).send()?.text()?;
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
        std::thread::sleep(Duration::from_millis(50));
    };
    svc.settle()?;
    let after = procfs::sample(svc.pid()).ok_or_else(|| anyhow::anyhow!("the service has exited"))?;
    let machine = procfs::machine_delta(&machine_before, &procfs::machine(), after.at.duration_since(before.at));
    let d = procfs::delta(&before, &after);
    let rows = Files::open(&db)?.rows()? - rows_before;
    println!(
        "scenario: reconcile, {invitations} claimed invitations ({} ledger), {expected} obligations, concurrency {concurrency}",
        shape.name()
    );
    println!("settled: {expected} obligations in {:.2} s (from service start)", settled.as_secs_f64());
    println!("throughput: {:.0} obligations/s", expected as f64 / settled.as_secs_f64());
    println!("endpoint calls: {}", calls.load(Ordering::Relaxed));
    println!("rows appended: {rows} (requested and succeeded events)");
    print_process(&d, expected as u64, "obligation");
    println!("service peak RSS: {}", measure::mib(procfs::peak_rss_kib(svc.pid()).unwrap_or(0) * 1024));
    let platform = platform_before.zip(procfs::sample(std::process::id())).map(|(b, a)| procfs::delta(&b, &a).cpu);
    println!(
        "platform CPU (the bench process): {:.1} µs per obligation",
        platform.unwrap_or_default().as_secs_f64() * 1e6 / expected as f64
    );
    measure::print_machine(&machine, d.cpu + platform.unwrap_or_default(), d.wall, &loadavg);
    Ok(())
}

/// CPU and bytes written per `unit`, in total and by thread group.
fn print_process(d: &procfs::ProcDelta, n: u64, unit: &str) {
    let n = n.max(1);
    let us = |c: Duration| c.as_secs_f64() * 1e6 / n as f64;
    println!(
        "CPU per {unit}: {:.1} µs ({:.2} s of CPU in {:.2} s)",
        us(d.cpu),
        d.cpu.as_secs_f64(),
        d.wall.as_secs_f64()
    );
    let groups: Vec<String> =
        d.groups.iter().filter(|g| !g.cpu.is_zero()).map(|g| format!("{} {:.1}", g.group, us(g.cpu))).collect();
    println!("CPU per {unit} by thread (µs): {}", measure::listed(&groups));
    println!("bytes written per {unit}: {}", measure::kb(d.write_bytes as f64 / n as f64));
    let groups: Vec<String> = d
        .groups
        .iter()
        .filter(|g| g.write_bytes > 0)
        .map(|g| format!("{} {}", g.group, measure::kb(g.write_bytes as f64 / n as f64)))
        .collect();
    println!("bytes written per {unit} by thread: {}", measure::listed(&groups));
    measure::print_syscall_bytes(d, n, unit);
}

/// The shape of an existing generated ledger, from its first event's key.
pub(crate) fn shape_of(db: &Path) -> anyhow::Result<Option<Shape>> {
    let conn = invitation_ledger::ledger::open_read_only(db)?;
    let first = invitation_ledger::ledger::read_after(&conn, 0, 1)?;
    Ok(first.first().map(|e| if e.event_key.starts_with("lightspark:gen-") { Shape::Compact } else { Shape::Real }))
}

pub fn rebuild(rt: &Runtime, events: usize, ledger: Option<PathBuf>, shape: Shape, seed: u64) -> anyhow::Result<()> {
    let dir = service::run_dir()?;
    let db = ledger.unwrap_or_else(|| dir.path().join("ledger.db"));
    let existing = if db.exists() {
        invitation_ledger::ledger::count(&invitation_ledger::ledger::open(&db)?)? as usize
    } else {
        0
    };
    if existing > 0 {
        let found = shape_of(&db)?;
        anyhow::ensure!(
            found == Some(shape),
            "{} holds a {} ledger, not a {} one: give another --ledger",
            db.display(),
            found.map_or("?", Shape::name),
            shape.name()
        );
    }
    if existing < events {
        anyhow::ensure!(existing == 0, "{} holds {existing} events, fewer than {events}", db.display());
        generate_ledger(rt, &db, events, shape, seed)?;
    }
    service::quiesce();
    let mut cmd = std::process::Command::new(service::service_binary());
    cmd.arg("rebuild").env("LEDGER_DB", &db).env("LOG", "warn");
    let (machine_before, loadavg) = (procfs::machine(), procfs::loadavg());
    let (finished, out) = service::run_measured(cmd)?;
    let machine = procfs::machine_delta(&machine_before, &procfs::machine(), finished.wall);
    anyhow::ensure!(finished.status.success(), "rebuild failed ({})", finished.status);
    let line = out.trim();
    let n: u64 =
        line.split_whitespace().find_map(|w| w.strip_prefix("events=")).and_then(|v| v.parse().ok()).unwrap_or(0);
    println!("scenario: rebuild, {n} events ({} ledger)", shape.name());
    println!("{line}");
    println!("rebuild time: {:.2} s", finished.wall.as_secs_f64());
    println!("throughput: {:.0} events/s", n as f64 / finished.wall.as_secs_f64());
    println!("peak RSS: {}", measure::mib(finished.max_rss_kib * 1024));
    if let Some(total) = &finished.total {
        // From the start: a sample of nothing, the threads of the last sample.
        let start = procfs::ProcSample {
            pid: total.pid,
            at: Instant::now(),
            cpu_ticks: 0,
            write_bytes: 0,
            cancelled_write_bytes: 0,
            wchar: 0,
            rchar: 0,
            threads: Default::default(),
        };
        let mut d = procfs::delta(&start, total);
        if let Some(last) = &finished.last {
            let threads = procfs::delta(
                &start,
                &procfs::ProcSample {
                    cpu_ticks: total.cpu_ticks,
                    write_bytes: total.write_bytes,
                    wchar: total.wchar,
                    rchar: total.rchar,
                    ..last.clone()
                },
            );
            d.groups = threads.groups;
        }
        d.wall = finished.wall;
        print_process(&d, n, "event");
        measure::print_machine(&machine, d.cpu, d.wall, &loadavg);
    }
    let files = Files::open(&db)?;
    let sizes = files.sizes();
    println!(
        "file size per event: ledger {}, projections {}",
        measure::kb(sizes.ledger as f64 / n.max(1) as f64),
        measure::kb(sizes.projections as f64 / n.max(1) as f64)
    );
    Ok(())
}
