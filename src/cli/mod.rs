//! The command line: what each command takes ([`Cli`], parsed by
//! `main.rs` with clap) and the dispatch to the functions that do it
//! ([`commands`]).

pub mod commands;
pub mod copy;
pub mod invite;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{config, logging};

#[derive(Parser)]
#[command(name = "invitation-ledger", version, about = "Event-sourced ledger for Lightspark UMA invitation webhooks")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub log: logging::LogArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// Receive webhooks, keep projections current, reconcile, answer the read API.
    Serve(config::ServeArgs),
    /// Recompute the hash chain and re-verify every stored webhook signature.
    Verify {
        #[command(flatten)]
        db: config::DbArgs,
        #[command(flatten)]
        key: config::KeyArgs,
        /// An anchor kept elsewhere (`GET /v1/ledger/head`, or the service's
        /// `ledger head seq=… hash=…` log line): fail unless the ledger holds
        /// exactly this hash at this seq. Repeatable.
        #[arg(long = "expect", value_name = "SEQ:HASH")]
        expect: Vec<String>,
    },
    /// Copy a ledger between stores (a SQLite file, a PostgreSQL URL), verifying it; refuses a target holding another ledger, continues an interrupted copy.
    Copy {
        /// The ledger to copy: a SQLite file or a postgres:// URL.
        #[arg(long = "from", value_name = "PATH|URL")]
        from: String,
        /// Where to copy it: a SQLite file (created) or a postgres:// URL.
        #[arg(long = "to", value_name = "PATH|URL")]
        to: String,
    },
    /// Drop the projections and replay the whole ledger (refused while a service runs).
    Rebuild {
        #[command(flatten)]
        db: config::DbArgs,
        /// Rebuild into a scratch copy and compare with the live projections; only reads.
        #[arg(long)]
        check: bool,
    },
    /// Run one reconciler pass: make the payments, incentives and notifications still owed.
    Reconcile {
        #[command(flatten)]
        db: config::DbArgs,
        #[command(flatten)]
        reconcile: config::ReconcileArgs,
        /// Run a single pass and exit (the service runs passes continuously).
        #[arg(long)]
        once: bool,
        /// Decide and print, but append and send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Record an operator's decision on an in-doubt or failed obligation.
    Resolve {
        #[command(flatten)]
        db: config::DbArgs,
        /// Invitation id or code.
        invitation: String,
        /// invitee_payment, inviter_incentive, inviter_notification or
        /// inviter_failure_notice.
        kind: String,
        /// It was paid outside our knowledge: record the platform's payment id.
        #[arg(long, value_name = "PAYMENT_ID", conflicts_with_all = ["retry", "failed"])]
        paid: Option<String>,
        /// It was not paid: send again with the same idempotency key.
        #[arg(long, conflicts_with = "failed")]
        retry: bool,
        /// Give up on it; it stays failed.
        #[arg(long)]
        failed: bool,
        /// Why, in your words (what you checked, a ticket): kept with the decision in the ledger.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Fetch one invitation from its source now, whatever its schedule, and record what was found.
    Refetch {
        #[command(flatten)]
        db: config::DbArgs,
        #[command(flatten)]
        reconcile: config::ReconcileArgs,
        /// Invitation id or code.
        invitation: String,
        /// Why, for the trail (recorded with the answer).
        #[arg(long, default_value = "refetch from the CLI")]
        note: String,
    },
    /// Create an invitation at its source (Lightspark) and register it; prints its projection.
    Invite {
        #[command(flatten)]
        db: config::DbArgs,
        #[command(flatten)]
        reconcile: config::ReconcileArgs,
        /// Where to create it: lightspark or grid.
        #[arg(long, default_value = "lightspark")]
        source: String,
        /// The inviter's UMA address, e.g. $alice@vasp.example.
        #[arg(long, value_name = "UMA")]
        inviter: String,
        /// An amount for the invitee, VALUE:CURRENCY in the smallest unit, e.g. 500:USD for 5.00 USD.
        #[arg(long, value_name = "VALUE:CURRENCY")]
        amount: Option<String>,
        /// When it expires, RFC 3339 (required with --amount).
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
        /// The inviter's first name.
        #[arg(long, value_name = "NAME")]
        first_name: Option<String>,
    },
    /// Cancel an invitation at its source; a cancelled invitation is never paid.
    Cancel {
        #[command(flatten)]
        db: config::DbArgs,
        #[command(flatten)]
        reconcile: config::ReconcileArgs,
        /// Invitation id or code.
        invitation: String,
    },
    /// The whole flow on localhost with a throw-away ledger, key and payment sink; prints the states.
    Demo {
        /// Keep serving after the report (Ctrl-C stops).
        #[arg(long)]
        keep_running: bool,
    },
    /// Check the incentives forwarded to inviters against those owed (`audit incentives`).
    Audit {
        #[command(subcommand)]
        what: AuditCommand,
    },
    /// Show one invitation's projection by id or code.
    Status {
        #[command(flatten)]
        db: config::DbArgs,
        /// Invitation id or invitation code.
        invitation: String,
        /// Print the same JSON as GET /v1/invitations/{id}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        fetch: config::FetchPresenceArgs,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Per inviter: each invitation's incentive decision, what was forwarded, totals and anomalies.
    Incentives {
        #[command(flatten)]
        db: config::DbArgs,
        /// Only this inviter.
        #[arg(long, value_name = "UMA")]
        inviter: Option<String>,
        /// Print the JSON of GET /v1/audit/incentives, every page of it as one document.
        #[arg(long)]
        json: bool,
        /// How long a validated incentive may stay unforwarded before it is an anomaly.
        #[arg(long = "idempotency-window", env = "IDEMPOTENCY_WINDOW", default_value = "24h")]
        horizon: String,
    },
}

/// Runs the command `cli` names and says how it ended: what `main.rs`
/// does once it has parsed the command line.
pub fn main(cli: Cli) -> ExitCode {
    // The demo prints a report: its service's lines would bury it, so only
    // errors unless LOG asks for more.
    let default_filter = if matches!(cli.command, Command::Demo { .. }) { "error" } else { "info" };
    if let Err(e) = logging::init(&cli.log, default_filter) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Verify { db, key, expect } => commands::verify(&db, &key, &expect).map(|s| println!("{s}")),
        Command::Copy { from, to } => {
            let side = |raw: String| config::DbArgs { db: raw, projections_dir: "./data".into() };
            block_on(copy::copy(&side(from), &side(to)))
        }
        Command::Rebuild { db, check: false } => commands::rebuild(&db).map(|s| println!("{s}")),
        Command::Rebuild { db, check: true } => commands::rebuild_check(&db).map(|s| println!("{s}")),
        Command::Demo { keep_running } => block_on(crate::demo::run(keep_running)),
        Command::Status { db, invitation, json, fetch } => {
            commands::status(&db, &invitation, json, fetch.fetching()).map(|s| println!("{s}"))
        }
        Command::Reconcile { db, reconcile, once, dry_run } => {
            if once {
                block_on(commands::reconcile_once(&db, &reconcile, dry_run))
            } else {
                Err(anyhow::anyhow!("reconcile needs --once (the service reconciles continuously: use `serve`)"))
            }
        }
        Command::Invite { db, reconcile, source, inviter, amount, expires_at, first_name } => {
            let args = invite::InviteArgs { source, inviter_uma: inviter, amount, expires_at, first_name };
            block_on(invite::invite(&db, &reconcile, &args))
        }
        Command::Cancel { db, reconcile, invitation } => block_on(invite::cancel(&db, &reconcile, &invitation)),
        Command::Refetch { db, reconcile, invitation, note } => {
            block_on(commands::refetch(&db, &reconcile, &invitation, note))
        }
        Command::Resolve { db, invitation, kind, paid, retry, failed, note } => {
            use crate::projection::events::Decision;
            let decision = match (&paid, retry, failed) {
                (Some(_), false, false) => Ok(Decision::Paid),
                (None, true, false) => Ok(Decision::Retry),
                (None, false, true) => Ok(Decision::Failed),
                _ => Err(anyhow::anyhow!("resolve needs exactly one of --paid PAYMENT_ID, --retry or --failed")),
            };
            decision.and_then(|d| block_on(commands::resolve(&db, &invitation, &kind, d, paid, note)))
        }
        Command::Audit { what: AuditCommand::Incentives { db, inviter, json, horizon } } => {
            config::parse_duration("IDEMPOTENCY_WINDOW", &horizon).map_err(anyhow::Error::from).and_then(|h| {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                commands::audit_incentives(&db, inviter.as_deref(), json, h, &mut out)?;
                std::io::Write::flush(&mut out)?;
                Ok(())
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(f: impl std::future::Future<Output = anyhow::Result<String>>) -> anyhow::Result<()> {
    let s = tokio::runtime::Runtime::new()?.block_on(f)?;
    println!("{s}");
    Ok(())
}

fn serve(args: config::ServeArgs) -> anyhow::Result<()> {
    let config = args.validate()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = std::net::TcpListener::bind(config.listen_addr)
            .map_err(|e| anyhow::anyhow!("LISTEN_ADDR {} cannot be bound: {e}", config.listen_addr))?;
        crate::serve(listener, config, shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
