//! Benchmarks of the real service over real HTTP on loopback.
//!
//! `cargo run --release --bin bench -- <scenario>` starts `invitation-ledger
//! serve` (the release binary beside this one) on a fresh ledger in a
//! folder on the repository's disk, drives it, and prints one line per
//! figure: throughput, latency, errors, rows appended, and what the service
//! spent per webhook as the kernel counts it (CPU per thread, bytes
//! written). `docs/benchmarks.md` says how each figure is measured. No
//! figure here is asserted anywhere: this is measurement only.

mod bounded;
mod latency;
mod load;
mod measure;
mod postgres;
mod procfs;
mod scenarios;
mod service;
mod shape;
mod wrk;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::shape::{Mix, Shape};

#[derive(Parser)]
#[command(about = "Benchmarks of invitation-ledger on loopback")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// The webhooks a run sends.
/// How much load, for the scenarios that send the requests themselves.
#[derive(clap::Args, Clone, Debug)]
struct LoadArgs {
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Send this many requests instead of running for --duration.
    #[arg(long)]
    requests: Option<usize>,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
}

#[derive(clap::Args, Clone, Debug)]
pub struct BodyArgs {
    /// Shape of the webhooks: `real` (Lightspark's) or `compact` (the bench's before 2026-11).
    #[arg(long, value_enum, default_value_t = Shape::Real)]
    pub shape: Shape,
    /// Share of requests that repeat an earlier webhook byte for byte.
    #[arg(long, default_value_t = 0.05)]
    pub duplicates: f64,
    /// Send every webhook without `data`, as most real deliveries come.
    #[arg(long)]
    pub envelope_only: bool,
    /// Share of webhooks sent without `data`.
    #[arg(long, default_value_t = 0.0, conflicts_with = "envelope_only")]
    pub envelope_share: f64,
    /// Seed of the generated ids, codes and duplicates.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl BodyArgs {
    pub fn mix(&self) -> Mix {
        Mix {
            shape: self.shape,
            duplicates: self.duplicates,
            envelope_share: if self.envelope_only { 1.0 } else { self.envelope_share },
            seed: self.seed,
        }
    }
}

/// `10s`, `500ms`, `2m`, or seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = number.trim().parse().map_err(|_| format!("`{s}` is not a duration such as 10s, 500ms or 2m"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("`{s}` must be more than 0"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

#[derive(Subcommand)]
enum Scenario {
    /// Webhooks from the bench's own hyper client (paced with --rate).
    Ingest {
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        bodies: BodyArgs,
        /// Commit each webhook in its own transaction (to compare with group commit).
        #[arg(long)]
        unbatched: bool,
        /// Offer this many requests per second (0: as fast as answered).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Report rows appended per window of this length (e.g. 5s).
        #[arg(long, value_parser = parse_duration)]
        windows: Option<Duration>,
        /// Bodies prepared per second of --duration when not paced.
        #[arg(long, default_value_t = 20_000)]
        budget: usize,
    },
    /// Webhooks from wrk (installed from Debian when missing) with pre-signed bodies.
    Wrk {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Offer this many requests per second. wrk cannot pace and Debian has
        /// no wrk2: a paced run uses the bench's own hyper client (as `ingest --rate`).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Report rows appended per window of this length (e.g. 5s).
        #[arg(long, value_parser = parse_duration)]
        windows: Option<Duration>,
        #[command(flatten)]
        bodies: BodyArgs,
        /// Send the bodies of this file (from `wrk-bodies`) instead of generating them.
        #[arg(long)]
        bodies_file: Option<PathBuf>,
        /// Bodies generated per second of --duration (more than the service answers:
        /// once they run out, wrk repeats them, as duplicates).
        #[arg(long, default_value_t = 20_000)]
        budget: usize,
        /// The wrk Lua script.
        #[arg(long)]
        script: Option<PathBuf>,
    },
    /// Webhooks from wrk into instances on one PostgreSQL ledger (one wrk per instance).
    Postgres {
        /// The server: a postgres:// URL whose user may create databases (a fresh one is made per run).
        #[arg(long, env = "BENCH_DATABASE_URL")]
        url: String,
        #[arg(long, default_value_t = 1)]
        instances: usize,
        /// Connections in all, shared among the instances.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        #[command(flatten)]
        bodies: BodyArgs,
        /// Bodies generated per second of --duration, in all.
        #[arg(long, default_value_t = 20_000)]
        budget: usize,
    },
    /// Two instances on one PostgreSQL ledger: SIGKILL the reconciler's leader, time the successor.
    Failover {
        #[arg(long, env = "BENCH_DATABASE_URL")]
        url: String,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Claims at a fixed rate; the time from each 200 to its payment request at a local platform.
    ClaimLatency {
        #[arg(long, default_value_t = 1_000)]
        rate: u64,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// The reconciler's safety-net interval (a due payment should not wait for it).
        #[arg(long, default_value_t = 2_000)]
        interval_ms: u64,
        /// Run on this ledger (it grows: give a copy), once the payments it
        /// already owes are requested; a fresh one when not given.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// Write pre-signed webhooks for wrk: one `SIGNATURE BODY` a line.
    WrkBodies {
        #[arg(long)]
        count: usize,
        #[command(flatten)]
        bodies: BodyArgs,
        #[arg(long, default_value = "webhook-bodies.txt")]
        out: PathBuf,
    },
    /// GET one invitation by id, over many connections, on a generated ledger.
    Read {
        #[command(flatten)]
        load: LoadArgs,
        /// Invitations in the ledger (two events each).
        #[arg(long, default_value_t = 20_000)]
        invitations: usize,
        #[arg(long, value_enum, default_value_t = Shape::Real)]
        shape: Shape,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Obligations settled per second against a fast local payment endpoint.
    Reconcile {
        /// Claimed invitations, each owing a payment, an incentive and a notification.
        #[arg(long, default_value_t = 2_000)]
        invitations: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, value_enum, default_value_t = Shape::Real)]
        shape: Shape,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// On a generated ledger of N events: rebuild, verify, start-up (current and
    /// after a simulated reboot), and what pages, the audit, a scrape and lists cost.
    Bounded {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Keep the generated ledger here (and reuse it if it exists).
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// Requests timed per page (point reads: ten times as many).
        #[arg(long, default_value_t = 50)]
        samples: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// New claims a second while the reads are timed again, then a
        /// SIGKILL with claims still arriving (0: idle only).
        #[arg(long, default_value_t = 1_000)]
        ingest_rate: u64,
        /// Stop once the ledger is generated (or found).
        #[arg(long)]
        generate_only: bool,
        /// Leave out `rebuild` and `verify` (minutes at 10M).
        #[arg(long)]
        skip_commands: bool,
    },
    /// Replay a generated ledger of N events (`rebuild` of the real binary).
    Rebuild {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Keep the generated ledger here (and reuse it if it exists).
        #[arg(long)]
        ledger: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Shape::Real)]
        shape: Shape,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.scenario {
        Scenario::Ingest { load, bodies, unbatched, rate, windows, budget } => scenarios::ingest(
            &rt,
            &scenarios::Ingest {
                connections: load.connections,
                requests: load.requests,
                duration: load.duration,
                mix: bodies.mix(),
                unbatched,
                rate,
                windows,
                budget,
            },
        ),
        Scenario::Wrk { connections, threads, duration, rate, windows, bodies, bodies_file, budget, script } => {
            if rate > 0 {
                println!("note: wrk cannot pace and Debian has no wrk2; paced runs use the bench's own hyper client");
                return scenarios::ingest(
                    &rt,
                    &scenarios::Ingest {
                        connections,
                        requests: None,
                        duration,
                        mix: bodies.mix(),
                        unbatched: false,
                        rate,
                        windows,
                        budget,
                    },
                );
            }
            scenarios::wrk(&scenarios::Wrk {
                connections,
                threads,
                duration,
                windows,
                mix: bodies.mix(),
                bodies_file,
                budget,
                script: script.unwrap_or_else(wrk::default_script),
            })
        }
        Scenario::Postgres { url, instances, connections, duration, bodies, budget } => postgres::ingest(
            &rt,
            &postgres::Ingest { admin: &url, instances, connections, duration, mix: bodies.mix(), budget },
        ),
        Scenario::Failover { url, rounds } => postgres::failover(&rt, &url, rounds.max(1)),
        Scenario::ClaimLatency { rate, duration, interval_ms, ledger } => {
            latency::claim_to_payment(&rt, rate, duration, interval_ms, ledger)
        }
        Scenario::WrkBodies { count, bodies, out } => {
            let mean = wrk::write_bodies(&out, &bodies.mix(), count)?;
            println!(
                "wrote {count} signed bodies to {} ({}; mean body {mean:.0} bytes)",
                out.display(),
                bodies.mix().describe()
            );
            Ok(())
        }
        Scenario::Read { load, invitations, shape, seed } => {
            scenarios::read(&rt, load.connections, load.requests, load.duration, invitations, shape, seed)
        }
        Scenario::Reconcile { invitations, concurrency, shape, seed } => {
            scenarios::reconcile(&rt, invitations, concurrency, shape, seed)
        }
        Scenario::Rebuild { events, ledger, shape, seed } => scenarios::rebuild(&rt, events, ledger, shape, seed),
        Scenario::Bounded { events, ledger, samples, seed, ingest_rate, generate_only, skip_commands } => {
            let a = bounded::Bounded { events, ledger, samples, seed, ingest_rate, generate_only, skip_commands };
            bounded::bounded(&rt, &a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["bench", "wrk", "--envelope-only", "--windows", "5s"]).unwrap();
        let Scenario::Wrk { bodies, windows, .. } = cli.scenario else { panic!("not wrk") };
        assert_eq!(bodies.mix().envelope_share, 1.0);
        assert_eq!(windows, Some(Duration::from_secs(5)));
        assert!(Cli::try_parse_from(["bench", "ingest", "--requests", "60000"]).is_ok());
    }
}
