//! Command-line entry point: parses flags and environment, then runs the
//! command through the library.

use std::process::ExitCode;

use clap::Parser;
use invitation_ledger::cli::{self, Cli};

fn main() -> ExitCode {
    cli::main(Cli::parse())
}
