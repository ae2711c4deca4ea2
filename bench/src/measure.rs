//! One measured run against a running service: counters before, the load,
//! throughput per window while it runs, the service left to finish what
//! the load caused (the fold, the checkpoints), counters after; and the
//! figures, one line each.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::load::Outcome;
use crate::procfs::{self, MachineDelta, ProcDelta};
use crate::service::{Files, Service, Sizes};

/// What the load generator reports beside the client-side figures.
pub struct LoadResult {
    pub outcome: Outcome,
    /// Which generator ran, for the report.
    pub generator: String,
    /// Its own CPU time during the run, when known.
    pub generator_cpu: Option<Duration>,
}

/// Everything a run measured.
pub struct Run {
    pub load: LoadResult,
    pub service: ProcDelta,
    pub machine: MachineDelta,
    pub loadavg_before: String,
    pub rows_before: u64,
    pub rows_after: u64,
    pub settle: Duration,
    /// The files' sizes once the service settled.
    pub sizes: Sizes,
    pub peak_rss_kib: u64,
    /// Rows appended in each full window, when windows were asked for.
    pub windows: Option<(Duration, Vec<u64>)>,
    /// The ledger writer's group commits during the run, from `/metrics`.
    pub commits: Option<Commits>,
}

/// Group commits between two readings of `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Commits {
    pub count: f64,
    /// Appends committed (duplicates included: they are looked up in the batch).
    pub appends: f64,
    pub seconds: f64,
}

/// The ledger writer's commit histograms from the service's `/metrics`.
fn commits(addr: &str) -> Option<Commits> {
    let text = reqwest::blocking::get(format!("http://{addr}/metrics")).ok()?.text().ok()?;
    let value = |name: &str| -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    Some(Commits {
        count: value("invitation_ledger_ledger_commit_batch_size_count")?,
        appends: value("invitation_ledger_ledger_commit_batch_size_sum")?,
        seconds: value("invitation_ledger_ledger_commit_seconds_sum")?,
    })
}

/// Samples the ledger's row count every `every` from the first appended
/// row on, until stopped; the counts per full window.
fn sample_windows(db: std::path::PathBuf, every: Duration, stop: Arc<AtomicBool>) -> anyhow::Result<Vec<u64>> {
    let files = Files::open(&db)?;
    let first = files.rows()?;
    // The load starts when its first row is appended (wrk first loads its
    // bodies): count windows from there.
    let mut at = loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        if files.rows()? > first {
            break Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut last = files.rows()?;
    let mut out = Vec::new();
    loop {
        at += every;
        while Instant::now() < at {
            if stop.load(Ordering::Relaxed) {
                return Ok(out);
            }
            std::thread::sleep(Duration::from_millis(5).min(at.saturating_duration_since(Instant::now())));
        }
        let rows = files.rows()?;
        out.push(rows - last);
        last = rows;
    }
}

/// The counters when the load starts.
struct Start {
    commits: Option<Commits>,
    loadavg: String,
    rows: u64,
    machine: procfs::MachineSample,
    service: procfs::ProcSample,
}

fn start(svc: &Service, files: &Files) -> anyhow::Result<Start> {
    Ok(Start {
        commits: commits(&svc.addr),
        loadavg: procfs::loadavg(),
        rows: files.rows()?,
        machine: procfs::machine(),
        service: procfs::sample(svc.pid()).ok_or_else(|| anyhow::anyhow!("the service has exited"))?,
    })
}

/// Runs `load` against `svc` and measures the service around it. `load`
/// calls the function it is given when its requests start (wrk first
/// loads its bodies): the counters are read then.
pub fn run(
    svc: &Service,
    windows: Option<Duration>,
    load: impl FnOnce(&mut dyn FnMut()) -> anyhow::Result<LoadResult>,
) -> anyhow::Result<Run> {
    let files = Files::open(&svc.db)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = windows.map(|every| {
        let (db, stop) = (svc.db.clone(), stop.clone());
        std::thread::spawn(move || sample_windows(db, every, stop))
    });
    let mut started = None;
    let load = load(&mut || started = Some(start(svc, &files)));
    stop.store(true, Ordering::Relaxed);
    let window_rows = match sampler {
        Some(s) => Some(s.join().map_err(|_| anyhow::anyhow!("window sampler panicked"))??),
        None => None,
    };
    let load = load?;
    let Start {
        commits: commits_before,
        loadavg: loadavg_before,
        rows: rows_before,
        machine: machine_before,
        service: before,
    } = started.ok_or_else(|| anyhow::anyhow!("the load never started"))??;
    let settle = svc.settle()?;
    let after = procfs::sample(svc.pid()).ok_or_else(|| anyhow::anyhow!("the service has exited"))?;
    let machine_after = procfs::machine();
    let service = procfs::delta(&before, &after);
    let commits = commits_before.zip(commits(&svc.addr)).map(|(b, a)| Commits {
        count: a.count - b.count,
        appends: a.appends - b.appends,
        seconds: a.seconds - b.seconds,
    });
    Ok(Run {
        commits,
        machine: procfs::machine_delta(&machine_before, &machine_after, service.wall),
        service,
        load,
        loadavg_before,
        rows_before,
        rows_after: files.rows()?,
        settle,
        sizes: files.sizes(),
        peak_rss_kib: procfs::peak_rss_kib(svc.pid()).unwrap_or(0),
        windows: windows.zip(window_rows),
    })
}

pub fn kb(bytes: f64) -> String {
    format!("{:.1} KB", bytes / 1000.0)
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn us_per(d: Duration, n: u64) -> f64 {
    d.as_secs_f64() * 1e6 / n.max(1) as f64
}

/// Prints the figures of `run`, per appended row (`unit` names it) or per
/// request when the run appends nothing.
pub fn print(run: &Run, unit: &str) {
    let o = &run.load.outcome;
    let rows = run.rows_after - run.rows_before;
    let per = if rows > 0 { rows } else { o.requests };
    let secs = o.elapsed.as_secs_f64();
    println!("load generator: {}", run.load.generator);
    println!("throughput: {:.0} {unit}s/s ({} requests in {secs:.2} s)", o.requests as f64 / secs, o.requests);
    println!("latency p50: {}", ms(o.p50));
    println!("latency p99: {}", ms(o.p99));
    println!("latency max: {}", ms(o.max));
    println!(
        "errors: {} (non-2xx {}, socket {}: {})",
        o.non_2xx + o.socket_errors,
        o.non_2xx,
        o.socket_errors,
        o.socket_detail
    );
    if o.wrapped > 0 {
        println!(
            "warning: the prepared bodies ran out; {} requests repeated earlier ones (duplicates, no rows)",
            o.wrapped
        );
    }
    println!("rows appended: {rows} ({:.0}/s)", rows as f64 / secs);
    let what = if rows > 0 { format!("appended {unit}") } else { "request".to_owned() };
    let s = &run.service;
    println!(
        "bytes written per {what}: {} (write_bytes {}, cancelled {})",
        kb(s.write_bytes as f64 / per as f64),
        mib(s.write_bytes),
        mib(s.cancelled_write_bytes)
    );
    let by_thread: Vec<String> = s
        .groups
        .iter()
        .filter(|g| g.write_bytes > 0)
        .map(|g| format!("{} {}", g.group, kb(g.write_bytes as f64 / per as f64)))
        .collect();
    println!("bytes written per {what} by thread: {}", listed(&by_thread));
    print_syscall_bytes(s, per, &what);
    let z = run.sizes;
    if rows > 0 {
        println!(
            "file size per {what}: ledger {}, projections {} (ledger.db {}, -projections {})",
            kb(z.ledger as f64 / run.rows_after.max(1) as f64),
            kb(z.projections as f64 / run.rows_after.max(1) as f64),
            mib(z.ledger),
            mib(z.projections)
        );
    }
    println!("WAL at end: ledger {}, projections {}", mib(z.ledger_wal), mib(z.projections_wal));
    if let Some(c) = run.commits.filter(|c| c.count > 0.0) {
        let writer = s.groups.iter().find(|g| g.group == "ledger-writer").map_or(0, |g| g.write_bytes);
        println!(
            "group commits: {:.0}, {:.1} webhooks and {} written by the ledger writer each, {} per commit",
            c.count,
            c.appends / c.count,
            kb(writer as f64 / c.count),
            ms(Duration::from_secs_f64(c.seconds / c.count))
        );
    }
    println!(
        "CPU per {what}: {:.1} µs (service {:.2} s of CPU in {:.2} s, {:.2} cores)",
        us_per(s.cpu, per),
        s.cpu.as_secs_f64(),
        s.wall.as_secs_f64(),
        s.cpu.as_secs_f64() / s.wall.as_secs_f64()
    );
    let by_thread: Vec<String> = s
        .groups
        .iter()
        .filter(|g| !g.cpu.is_zero())
        .map(|g| format!("{} {:.1}", g.group, us_per(g.cpu, per)))
        .collect();
    println!("CPU per {what} by thread (µs): {}", listed(&by_thread));
    if let Some(cpu) = run.load.generator_cpu {
        println!(
            "load generator CPU: {:.1} µs per request ({:.2} cores)",
            us_per(cpu, o.requests),
            cpu.as_secs_f64() / secs
        );
    }
    println!("service peak RSS: {}", mib(run.peak_rss_kib * 1024));
    print_machine(&run.machine, s.cpu + run.load.generator_cpu.unwrap_or_default(), s.wall, &run.loadavg_before);
    println!("settled after the load in {:.2} s (projections caught up, service quiet)", run.settle.as_secs_f64());
    if let Some((every, w)) = &run.windows {
        print_windows(*every, w);
    }
}

/// How busy the machine was while `ours` (CPU of the measured processes)
/// ran for `wall`: what everything else took is the noise in the figures.
pub fn print_machine(m: &MachineDelta, ours: Duration, wall: Duration, loadavg_before: &str) {
    println!(
        "machine: {:.2} cores busy of {}, of which other processes and the kernel {:.2}; iowait {:.2} cores, steal {:.1} %; load average before {loadavg_before}",
        m.busy_cores,
        m.cpus,
        (m.busy_cores - ours.as_secs_f64() / wall.as_secs_f64().max(1e-9)).max(0.0),
        m.iowait_cores,
        m.steal_share * 100.0,
    );
}

/// Bytes passed to write() and returned by read() (files and sockets), per
/// `what` and by thread: what the threads ask of the kernel, which
/// `write_bytes` (pages dirtied) does not show when the same pages are
/// rewritten in the page cache.
pub fn print_syscall_bytes(s: &ProcDelta, per: u64, what: &str) {
    type Pick = fn(&procfs::GroupDelta) -> u64;
    let figures: [(&str, u64, Pick); 2] = [("write()", s.wchar, |g| g.wchar), ("read()", s.rchar, |g| g.rchar)];
    for (name, total, pick) in figures {
        let by_thread: Vec<String> = s
            .groups
            .iter()
            .filter(|g| pick(g) > 0)
            .map(|g| format!("{} {}", g.group, kb(pick(g) as f64 / per as f64)))
            .collect();
        println!("{name} bytes per {what}: {}", kb(total as f64 / per as f64));
        println!("{name} bytes per {what} by thread: {}", listed(&by_thread));
    }
}

/// A by-thread list, or `none` when no thread did any of it (a read run
/// writes nothing), rather than an empty line.
pub fn listed(parts: &[String]) -> String {
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Throughput per window, and the worst window against the mean.
pub fn print_windows(every: Duration, rows: &[u64]) {
    let secs = every.as_secs_f64();
    if rows.is_empty() {
        println!("windows: none complete");
        return;
    }
    let rates: Vec<f64> = rows.iter().map(|r| *r as f64 / secs).collect();
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let list: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    println!("windows ({secs} s, rows appended/s): {}", list.join(" "));
    println!("windows min / mean: {min:.0} / {mean:.0} = {:.2}", min / mean.max(1e-9));
}
