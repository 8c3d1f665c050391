//! The `outpost` command line: kubectl-shaped verbs, plus `images` and `ctr`
//! that work on the node's image store and containers directly.

mod apply;
pub(crate) mod client;
mod ctr;
mod delete;
mod describe;
mod exec;
mod get;
mod images;
mod killall;
mod logs;
mod rollout;
mod table;

pub use images::parse_duration;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// outpost: a lightweight edge node agent that runs Kubernetes manifests.
#[derive(Debug, Parser)]
#[command(name = "outpost", version, propagate_version = true)]
pub struct Cli {
    /// Log debug detail.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent.
    Agent(crate::agent::AgentArgs),
    /// Manage the image store: ls, pull, import, rm (safe while an agent runs).
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// Low-level containers, without pods (like `crictl`/`ctr`): run, ps, logs, exec, stop, wait, rm.
    #[command(subcommand)]
    Ctr(ctr::CtrCommand),
    /// Show objects, as `kubectl get`: pods, configmaps, secrets, events, namespaces, ….
    Get(get::GetArgs),
    /// Show an object in detail with its events, as `kubectl describe`.
    Describe(describe::DescribeArgs),
    /// Print a pod container's log, as `kubectl logs`.
    Logs(logs::LogsArgs),
    /// Run a command in a pod container, as `kubectl exec`.
    Exec(exec::ExecArgs),
    /// Put objects into the local source (the agent's file:// directory), as `kubectl apply -f`.
    Apply(apply::ApplyArgs),
    /// Remove objects from the local source, as `kubectl delete`.
    Delete(delete::DeleteArgs),
    /// Set a Deployment's replica count in the local source, as `kubectl scale`.
    Scale(rollout::ScaleArgs),
    /// Change objects in the local source: `set image`, as `kubectl set`.
    #[command(subcommand)]
    Set(rollout::SetCommand),
    /// Manage rollouts, as `kubectl rollout`: status, history, undo, restart, pause, resume.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Stop every container and remove every pod sandbox (stop the agent first).
    Killall(NodeDirs),
    /// Print the version.
    Version,
    /// The node's container supervisor (started on demand; not for direct use).
    #[command(hide = true)]
    Supervisor(SupervisorArgs),
}

/// Where the node keeps its state; shared by every subcommand that touches it.
#[derive(Debug, Clone, Args)]
pub struct NodeDirs {
    /// Persistent state: images, writable layers, logs.
    #[arg(
        long,
        env = "OUTPOST_STATE_DIR",
        default_value = "/var/lib/outpost",
        global = true
    )]
    pub state_dir: PathBuf,
    /// Runtime state (tmpfs): supervisor socket, container bundles.
    #[arg(
        long,
        env = "OUTPOST_RUN_DIR",
        default_value = "/run/outpost",
        global = true
    )]
    pub run_dir: PathBuf,
    /// Registry mirrors and credentials, in the k3s registries.yaml shape.
    #[arg(
        long,
        env = "OUTPOST_REGISTRIES",
        default_value = "/etc/outpost/registries.yaml",
        global = true
    )]
    pub registries: PathBuf,
}

impl NodeDirs {
    /// The node's container runtime (the supervisor is this same binary).
    pub fn runtime(&self) -> anyhow::Result<outpost_runtime::container::Runtime> {
        let exe = std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("cannot find the outpost binary: {e}"))?;
        Ok(outpost_runtime::container::Runtime::new(
            &self.state_dir,
            &self.run_dir,
            &exe,
        ))
    }

    /// The node's image store.
    pub fn store(&self) -> anyhow::Result<outpost_runtime::image::store::Store> {
        Ok(outpost_runtime::image::store::Store::open(&self.state_dir)?)
    }

    /// A puller over the store with this node's registries.yaml.
    pub fn puller(&self) -> anyhow::Result<outpost_runtime::image::pull::Puller> {
        let registries = outpost_runtime::image::registries::load(&self.registries)?;
        Ok(outpost_runtime::image::pull::Puller::new(
            self.store()?,
            registries,
        ))
    }
}

#[derive(Debug, Args)]
pub struct SupervisorArgs {
    #[arg(long)]
    pub run_dir: PathBuf,
}

/// Runs a parsed command; the exit code is the command's (e.g. a container's).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Agent(args) => crate::agent::run(args).await,
        Command::Images(cmd) => images::run(cmd).await,
        Command::Ctr(cmd) => ctr::run(cmd).await,
        Command::Get(args) => get::run(args).await,
        Command::Describe(args) => describe::run(args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Exec(args) => exec::run(args).await,
        Command::Apply(args) => apply::run(args).await,
        Command::Delete(args) => delete::run(args).await,
        Command::Scale(args) => rollout::scale(args).await,
        Command::Set(cmd) => rollout::set(cmd).await,
        Command::Rollout(cmd) => rollout::rollout(cmd).await,
        Command::Killall(dirs) => killall::run(dirs).await,
        Command::Version => {
            println!("outpost {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Supervisor(_) => unreachable!("main runs the supervisor before starting tokio"),
    }
}

/// Formats a byte count the way kubectl/crictl users read them.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// How long ago an RFC 3339 time was, as kubectl prints ages (`5s`, `3m`, `2h`, `4d`).
pub fn age(since: &str) -> String {
    let Ok(then) = since.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = jiff::Timestamp::now()
        .as_second()
        .saturating_sub(then.as_second())
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_crictl() {
        let check = |n: u64, want: &str| assert_eq!(human_bytes(n), want);
        check(512, "512B");
        check(2048, "2.0KiB");
        check(5 << 20, "5.0MiB");
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
