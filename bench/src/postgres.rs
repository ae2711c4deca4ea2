//! The PostgreSQL ledger under load: one or more real instances on one
//! fresh database, each driven by its own `wrk` with bodies of its own
//! (so no instance sees another's webhooks as duplicates), and the time a
//! successor takes to lead and record after the leader is SIGKILLed.
//!
//! What the database did is read from the database: rows appended (its
//! gapless `seq`), WAL bytes (`pg_current_wal_lsn`), and the CPU of every
//! `postgres` process on the machine (`/proc`), beside the instances' own.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls};

use crate::load::Outcome;
use crate::measure::{kb, ms};
use crate::procfs::{self, TICKS_PER_SECOND};
use crate::service::{self, Service};
use crate::shape::{self, Mix};
use crate::wrk;

/// A new database on the server of `admin` (a `postgres://` URL), dropped
/// with the value; the URL of the new one.
pub struct Database {
    admin: String,
    name: String,
    pub url: String,
}

impl Database {
    pub fn create(rt: &Runtime, admin: &str) -> anyhow::Result<Self> {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_nanos();
        let name = format!("il_bench_{}_{}", std::process::id(), nanos % 1_000_000_000);
        let client = connect(rt, admin)?;
        rt.block_on(client.batch_execute(&format!("CREATE DATABASE {name}")))?;
        Ok(Self { admin: admin.to_owned(), url: with_database(admin, &name), name })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        if let Ok(client) = connect(&rt, &self.admin) {
            let _ = rt.block_on(client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)));
        }
    }
}

fn connect(rt: &Runtime, url: &str) -> anyhow::Result<Client> {
    let (client, connection) = rt.block_on(tokio_postgres::connect(url, NoTls))?;
    rt.spawn(connection);
    Ok(client)
}

/// `url` naming database `name` instead of its own
/// (`postgresql://user@/postgres?host=…` → `postgresql://user@/<name>?host=…`).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |at| at + 3);
    let base = match base[scheme_end..].find('/') {
        Some(at) => &base[..scheme_end + at],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// An instance of the service on the PostgreSQL ledger `url`, its
/// projections in a folder of its own.
fn instance(url: &str, env: &[(&str, String)]) -> anyhow::Result<Service> {
    let dir = service::run_dir()?;
    let mut env = env.to_vec();
    env.push(("PROJECTIONS_DIR", dir.path().display().to_string()));
    Service::start_on(Some(dir), Path::new(url), &[], &env)
}

/// Every `postgres` process's CPU ticks, by pid (the server and its
/// backends, which do the ledger's work for the instances).
fn postgres_ticks() -> std::collections::BTreeMap<u32, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else { continue };
        if comm.trim() == "postgres" {
            if let Some(s) = procfs::sample(pid) {
                out.insert(pid, s.cpu_ticks);
            }
        }
    }
    out
}

/// Ticks the `postgres` processes spent between two readings (a backend
/// that started meanwhile counts whole).
fn ticks_between(before: &std::collections::BTreeMap<u32, u64>, after: &std::collections::BTreeMap<u32, u64>) -> u64 {
    after.iter().map(|(pid, t)| t.saturating_sub(*before.get(pid).unwrap_or(&0))).sum()
}

fn head(rt: &Runtime, db: &Client) -> anyhow::Result<i64> {
    Ok(rt.block_on(db.query_one("SELECT coalesce(max(seq), 0)::bigint FROM events", &[]))?.get(0))
}

fn wal_lsn(rt: &Runtime, db: &Client) -> anyhow::Result<String> {
    Ok(rt.block_on(db.query_one("SELECT pg_current_wal_lsn()::text", &[]))?.get(0))
}

/// How an ingest run on PostgreSQL is set up.
pub struct Ingest<'a> {
    pub admin: &'a str,
    pub instances: usize,
    pub connections: usize,
    pub duration: Duration,
    pub mix: Mix,
    pub budget: usize,
}

/// Webhooks through `wrk` into `instances` instances on one database.
pub fn ingest(rt: &Runtime, a: &Ingest<'_>) -> anyhow::Result<()> {
    anyhow::ensure!(a.instances >= 1, "--instances must be at least 1");
    let version = wrk::ensure_wrk()?;
    let database = Database::create(rt, a.admin)?;
    let dir = service::run_dir()?;
    let count = (a.budget as f64 * a.duration.as_secs_f64()) as usize / a.instances;
    let mut bodies = Vec::new();
    let mut mean = 0.0;
    for n in 0..a.instances {
        let path = dir.path().join(format!("bodies-{n}.txt"));
        let mix = Mix { seed: a.mix.seed.wrapping_add(n as u64 * 1_000_003), ..a.mix };
        mean = wrk::write_bodies(&path, &mix, count)?;
        bodies.push(path);
    }
    let services: Vec<Service> =
        (0..a.instances).map(|_| instance(&database.url, &[])).collect::<anyhow::Result<_>>()?;
    let db = connect(rt, &database.url)?;
    let (rows_before, wal_before) = (head(rt, &db)?, wal_lsn(rt, &db)?);
    let cpu_before: Vec<u64> = services.iter().map(|s| procfs::sample(s.pid()).map_or(0, |p| p.cpu_ticks)).collect();
    let pg_before = postgres_ticks();
    let started = Instant::now();
    let script = wrk::default_script();
    let results: Vec<anyhow::Result<crate::measure::LoadResult>> = std::thread::scope(|scope| {
        let runs: Vec<_> = services
            .iter()
            .zip(&bodies)
            .map(|(svc, body)| {
                let (version, script) = (&version, &script);
                scope.spawn(move || {
                    let w = wrk::WrkRun {
                        threads: 1,
                        connections: (a.connections / a.instances).max(1),
                        duration: a.duration,
                        script,
                        bodies: body,
                    };
                    wrk::run(&mut || {}, &svc.addr, &w, version)
                })
            })
            .collect();
        runs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("wrk thread panicked")))).collect()
    });
    let wall = started.elapsed();
    let outcomes: Vec<Outcome> = results.into_iter().map(|r| r.map(|l| l.outcome)).collect::<anyhow::Result<_>>()?;
    let rows_after = head(rt, &db)?;
    let wal: i64 = rt
        .block_on(
            db.query_one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint", &[&wal_before]),
        )?
        .get(0);
    let cpu_after: Vec<u64> = services.iter().map(|s| procfs::sample(s.pid()).map_or(0, |p| p.cpu_ticks)).collect();
    let pg_ticks = ticks_between(&pg_before, &postgres_ticks());
    let table: i64 = rt.block_on(db.query_one("SELECT pg_total_relation_size('events')", &[]))?.get(0);

    let requests: u64 = outcomes.iter().map(|o| o.requests).sum();
    let errors: u64 = outcomes.iter().map(|o| o.non_2xx + o.socket_errors).sum();
    let elapsed = outcomes.iter().map(|o| o.elapsed).max().unwrap_or(wall);
    let rows = (rows_after - rows_before).max(0) as u64;
    let per_row = |ticks: u64| Duration::from_micros(ticks * 1_000_000 / TICKS_PER_SECOND / rows.max(1));
    let service_ticks: u64 = cpu_after.iter().zip(&cpu_before).map(|(a, b)| a.saturating_sub(*b)).sum();
    println!(
        "scenario: postgres, {} instance(s), {} s, {} (mean body {mean:.0} bytes), {} connections in all",
        a.instances,
        a.duration.as_secs(),
        a.mix.describe(),
        a.connections
    );
    println!("generator: {version}, one wrk -t1 per instance, its own bodies");
    println!(
        "throughput: {:.0} requests/s, {:.0} rows appended/s ({rows} rows in {:.1} s)",
        requests as f64 / elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    for (n, o) in outcomes.iter().enumerate() {
        println!(
            "instance {n}: {} requests, p50 {}, p99 {}, max {}, errors {}",
            o.requests,
            ms(o.p50),
            ms(o.p99),
            ms(o.max),
            o.non_2xx + o.socket_errors
        );
    }
    println!("errors: {errors}");
    println!("CPU per appended row: instances {:?}, postgres {:?}", per_row(service_ticks), per_row(pg_ticks));
    println!(
        "WAL per appended row: {}; events table with its indexes: {} per row",
        kb(wal as f64 / rows.max(1) as f64),
        kb(table as f64 / rows_after.max(1) as f64)
    );
    drop(services);
    Ok(())
}

/// A payment platform that is not there (a loopback port nobody listens
/// on): every request fails at once, transiently, so the leader keeps
/// recording attempts until the run ends.
fn absent_platform() -> anyhow::Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    Ok(format!("http://127.0.0.1:{port}/payouts"))
}

/// Whether an instance's `/metrics` says it leads the reconciler.
fn leads(addr: &str) -> bool {
    let Ok(text) = reqwest::blocking::get(format!("http://{addr}/metrics")).and_then(|r| r.text()) else {
        return false;
    };
    text.lines().any(|l| l.trim() == "invitation_ledger_reconciler_leader 1")
}

/// Leader SIGKILL → the successor's first append, `rounds` times.
pub fn failover(rt: &Runtime, admin: &str, rounds: usize) -> anyhow::Result<()> {
    let database = Database::create(rt, admin)?;
    let payout = absent_platform()?;
    let env = vec![
        ("PAYOUT_URL", payout),
        ("RECONCILE_INTERVAL_MS", "100".to_owned()),
        ("RETRY_BASE_MS", "50".to_owned()),
        ("RETRY_MAX_MS", "200".to_owned()),
        ("REQUEST_TIMEOUT_MS", "2000".to_owned()),
    ];
    let mut instances = [Some(instance(&database.url, &env)?), Some(instance(&database.url, &env)?)];
    // Claims whose payments cannot be made: the leader records an attempt
    // every few hundred milliseconds.
    let mix = Mix { shape: shape::Shape::Real, duplicates: 0.0, envelope_share: 0.0, seed: 7 };
    let client = reqwest::blocking::Client::new();
    let first_addr = instances[0].as_ref().map(|s| s.addr.clone()).unwrap_or_default();
    for signed in shape::request_list(&mix, 20) {
        let status = client
            .post(format!("http://{first_addr}/webhooks/lightspark"))
            .header("lightspark-signature", &signed.signature)
            .header("content-type", "application/json")
            .body(signed.body.clone())
            .send()?
            .status();
        anyhow::ensure!(status.is_success(), "a claim was answered {status}");
    }
    let db = connect(rt, &database.url)?;
    let mut takeovers = Vec::new();
    let mut first_appends = Vec::new();
    for round in 0..rounds {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = |n: usize| instances[n].as_ref().map(|s| s.addr.clone()).unwrap_or_default();
        let leader = loop {
            match (leads(&addr(0)), leads(&addr(1))) {
                (true, false) => break 0,
                (false, true) => break 1,
                _ => {}
            }
            anyhow::ensure!(Instant::now() < deadline, "no single leader within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        };
        let attempts: i64 =
            rt.block_on(db.query_one("SELECT count(*) FROM events WHERE kind = 'payout.requested'", &[]))?.get(0);
        anyhow::ensure!(attempts > 0, "the leader recorded no payment attempt");
        let successor = addr(1 - leader);
        let before = head(rt, &db)?;
        let killed_at = chrono::Utc::now();
        let t0 = Instant::now();
        // Dropping a Service kills it with SIGKILL.
        drop(instances[leader].take());
        let mut took_over = None;
        let first = loop {
            if took_over.is_none() && leads(&successor) {
                took_over = Some(t0.elapsed());
            }
            let rows = rt.block_on(db.query(
                "SELECT recorded_at FROM events WHERE seq > $1 AND kind <> 'webhook.received' ORDER BY seq",
                &[&before],
            ))?;
            let after_kill = rows.iter().any(|r| {
                let at: String = r.get(0);
                chrono::DateTime::parse_from_rfc3339(&at).is_ok_and(|t| t > killed_at)
            });
            if after_kill {
                break t0.elapsed();
            }
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(60), "no append within 60 s of the kill");
            std::thread::sleep(Duration::from_millis(5));
        };
        let took_over = took_over.unwrap_or(first);
        println!(
            "round {round}: leader killed; successor leads after {}, first append after {}",
            ms(took_over),
            ms(first)
        );
        takeovers.push(took_over);
        first_appends.push(first);
        instances[leader] = Some(instance(&database.url, &env)?);
    }
    takeovers.sort();
    first_appends.sort();
    println!(
        "failover, median of {rounds}: successor leads {}, first append {} (min {}, max {})",
        ms(takeovers[rounds / 2]),
        ms(first_appends[rounds / 2]),
        ms(first_appends[0]),
        ms(first_appends[rounds - 1])
    );
    Ok(())
}
