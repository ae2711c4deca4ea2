//! Command-line entry point: parses flags and environment, calls the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use invitation_ledger::{cli, config};

#[derive(Parser)]
#[command(name = "invitation-ledger", version, about = "Event-sourced ledger for Lightspark UMA invitation webhooks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive webhooks, keep projections current, reconcile, answer the read API.
    Serve(config::ServeArgs),
    /// Recompute the hash chain and re-verify every stored webhook signature.
    Verify {
        #[command(flatten)]
        db: config::DbArgs,
        #[command(flatten)]
        key: config::KeyArgs,
    },
    /// Drop the projections and replay the whole ledger (refused while a service runs).
    Rebuild {
        #[command(flatten)]
        db: config::DbArgs,
        /// Rebuild into a scratch copy and compare with the live projections; only reads.
        #[arg(long)]
        check: bool,
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
    },
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Verify { db, key } => cli::verify(&db, &key).map(|s| println!("{s}")),
        Command::Rebuild { db, check: false } => cli::rebuild(&db).map(|s| println!("{s}")),
        Command::Rebuild { db, check: true } => cli::rebuild_check(&db).map(|s| println!("{s}")),
        Command::Status { db, invitation, json } => cli::status(&db, &invitation, json).map(|s| println!("{s}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn serve(args: config::ServeArgs) -> anyhow::Result<()> {
    let config = args.validate()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = std::net::TcpListener::bind(config.listen_addr)
            .map_err(|e| anyhow::anyhow!("LISTEN_ADDR {} cannot be bound: {e}", config.listen_addr))?;
        invitation_ledger::serve(listener, config, shutdown_signal()).await
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
