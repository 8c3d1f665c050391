//! `outpost`: parse and validate everything first, then run.
//!
//! The `supervisor` subcommand forks before any thread exists (libcontainer's
//! fork safety, see ARCHITECTURE.md); everything else runs on tokio.

use std::process::ExitCode;

use clap::Parser;
use outpost::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    outpost::logging::init(cli.verbose);
    if let Command::Supervisor(args) = &cli.command {
        return match outpost_runtime::container::supervisor::spawn_detached(&args.run_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(outpost::cli::run(cli));
    // Blocking tasks still running (a container's grace period) must not hold
    // the exit: what they were doing is picked up by the next agent.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
