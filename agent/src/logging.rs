//! Logs go to stderr, one line per event, without colour when not on a terminal
//! (journald adds its own timestamps, but plain runs want them).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Sets up logging: `OUTPOST_LOG` (or `RUST_LOG`) filters, `-v` lowers the default to debug.
pub fn init(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    let filter = std::env::var("OUTPOST_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .map(EnvFilter::new)
        .unwrap_or_else(|_| {
            EnvFilter::new(format!("{default},libcontainer=warn,libcgroups=error"))
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
