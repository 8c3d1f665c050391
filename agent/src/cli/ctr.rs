//! `outpost ctr`: containers without pods, straight on the runtime — what
//! `crictl`/`ctr` are to containerd. For debugging a node and for tests of the
//! runtime layer; pods come from manifests through the agent.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use outpost_runtime::container::log::{read_tail, Stream};
use outpost_runtime::container::spec::{ContainerSpec, Namespace, NamespaceKind, Resources};
use outpost_runtime::container::{ContainerInfo, ExecRequest, ExitInfo, LogConfig, Runtime, State};
use outpost_runtime::image::pull::PullOptions;
use outpost_runtime::image::ImageRef;

use super::images::parse_duration;
use super::{age, table, NodeDirs};
use crate::quantity;

/// kubelet's defaults for container log rotation.
const LOG_MAX_SIZE: u64 = 10 << 20;
const LOG_MAX_FILES: u32 = 5;

#[derive(Debug, Subcommand)]
pub enum CtrCommand {
    /// Create and start a container; without -d, wait for it and print its output.
    Run(Box<RunArgs>),
    /// Create a container without starting it, printing its name (`ctr start` starts it).
    Create(Box<RunArgs>),
    /// Start a created container.
    Start {
        #[command(flatten)]
        dirs: NodeDirs,
        name: String,
    },
    /// List containers.
    Ps {
        #[command(flatten)]
        dirs: NodeDirs,
        /// Show exited containers too.
        #[arg(short, long)]
        all: bool,
        /// Output format: json for the full state.
        #[arg(short, long)]
        output: Option<String>,
    },
    /// Print a container's log.
    Logs {
        #[command(flatten)]
        dirs: NodeDirs,
        name: String,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Prefix each line with its RFC 3339 time.
        #[arg(long)]
        timestamps: bool,
    },
    /// Run a command in a running container, with this terminal's stdin/stdout/stderr.
    Exec {
        #[command(flatten)]
        dirs: NodeDirs,
        name: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Stop a container: SIGTERM, then SIGKILL after the grace period.
    Stop {
        #[command(flatten)]
        dirs: NodeDirs,
        name: String,
        /// Grace period in seconds.
        #[arg(short = 't', long = "time", default_value_t = 30)]
        grace: u64,
    },
    /// Wait for a container to exit and print its exit code.
    Wait {
        #[command(flatten)]
        dirs: NodeDirs,
        name: String,
    },
    /// Remove containers (with -f, also running ones).
    Rm {
        #[command(flatten)]
        dirs: NodeDirs,
        #[arg(short, long)]
        force: bool,
        /// Remove every container.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        names: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    dirs: NodeDirs,
    /// Return once started, printing the name.
    #[arg(short, long)]
    detach: bool,
    /// Remove the container after it exits (not with -d).
    #[arg(long, conflicts_with = "detach")]
    rm: bool,
    /// Container name (default: generated).
    #[arg(long)]
    name: Option<String>,
    /// Environment variable K=V (repeatable).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Memory limit (e.g. 32Mi).
    #[arg(long, value_parser = quantity::parse_bytes)]
    memory: Option<u64>,
    /// CPU limit (e.g. 500m or 0.5).
    #[arg(long, value_parser = quantity::parse_millicpu)]
    cpus: Option<u64>,
    /// Process count limit.
    #[arg(long)]
    pids: Option<i64>,
    /// uid[:gid] to run as.
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Replace the image's entrypoint (the command after -- then follows it).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Set no_new_privs (Kubernetes' allowPrivilegeEscalation: false).
    #[arg(long)]
    no_new_privileges: bool,
    /// Network: "none" (own namespace, loopback only) or "host".
    #[arg(long, default_value = "none", value_parser = ["none", "host"])]
    net: String,
    /// When to pull: missing, always or never (like imagePullPolicy).
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pull: String,
    /// Deadline for a pull.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pull_timeout: Duration,
    image: String,
    /// Command and arguments (replace the image's CMD).
    #[arg(last = true)]
    command: Vec<String>,
}

pub async fn run(cmd: CtrCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CtrCommand::Run(args) => run_container(*args, true).await,
        CtrCommand::Create(args) => run_container(*args, false).await,
        CtrCommand::Start { dirs, name } => {
            let runtime = dirs.runtime()?;
            blocking(move || Ok(runtime.start(&name)?)).await?;
            Ok(ExitCode::SUCCESS)
        }
        CtrCommand::Ps { dirs, all, output } => {
            let runtime = dirs.runtime()?;
            let (containers, records) =
                blocking(move || Ok((runtime.list()?, runtime.records()))).await?;
            let shown: Vec<&ContainerInfo> = containers
                .iter()
                .filter(|c| all || c.state != State::Exited)
                .collect();
            if output.as_deref() == Some("json") {
                println!("{}", serde_json::to_string_pretty(&shown)?);
                return Ok(ExitCode::SUCCESS);
            }
            let image_of = |id: &str| {
                records
                    .iter()
                    .find(|r| r.id == id)
                    .map(|r| r.image.clone())
                    .unwrap_or_default()
            };
            let rows: Vec<Vec<String>> = shown
                .iter()
                .map(|c| {
                    let (exit, reason) = match &c.exit {
                        Some(e) => (e.code.to_string(), e.reason().to_owned()),
                        None => (String::new(), String::new()),
                    };
                    vec![
                        c.id.clone(),
                        image_of(&c.id),
                        format!("{:?}", c.state),
                        exit,
                        reason,
                        c.pid.map(|p| p.to_string()).unwrap_or_default(),
                        age(&c.created_at),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &[
                        "CONTAINER",
                        "IMAGE",
                        "STATE",
                        "EXIT",
                        "REASON",
                        "PID",
                        "CREATED"
                    ],
                    &rows,
                    false
                )
            );
            Ok(ExitCode::SUCCESS)
        }
        CtrCommand::Logs {
            dirs,
            name,
            tail,
            timestamps,
        } => {
            let runtime = dirs.runtime()?;
            let info = blocking(move || Ok(runtime.info(&name)?)).await?;
            print_log(&info.log_path, tail, timestamps)?;
            Ok(ExitCode::SUCCESS)
        }
        CtrCommand::Exec {
            dirs,
            name,
            command,
        } => {
            let runtime = dirs.runtime()?;
            let exit = blocking(move || {
                // The process gets this terminal's own stdin/stdout/stderr.
                let stdio: [OwnedFd; 3] = [
                    std::io::stdin().as_fd_owned()?,
                    std::io::stdout().as_fd_owned()?,
                    std::io::stderr().as_fd_owned()?,
                ];
                let exec = runtime.exec(
                    &name,
                    ExecRequest {
                        id: name.clone(),
                        args: command,
                        env: Vec::new(),
                        cwd: None,
                    },
                    stdio,
                )?;
                Ok(exec.wait()?)
            })
            .await?;
            Ok(exit_code(&exit))
        }
        CtrCommand::Stop { dirs, name, grace } => {
            let runtime = dirs.runtime()?;
            let exit =
                blocking(move || Ok(runtime.stop(&name, Duration::from_secs(grace))?)).await?;
            println!("{} {}", exit.code, exit.reason());
            Ok(ExitCode::SUCCESS)
        }
        CtrCommand::Wait { dirs, name } => {
            let runtime = dirs.runtime()?;
            let exit =
                blocking(move || runtime.wait(&name, None)?.context("no exit reported")).await?;
            println!("{}", exit.code);
            Ok(ExitCode::SUCCESS)
        }
        CtrCommand::Rm {
            dirs,
            force,
            all,
            names,
        } => {
            let runtime = dirs.runtime()?;
            let state_dir = dirs.state_dir.clone();
            blocking(move || {
                let names = if all {
                    runtime.list()?.into_iter().map(|c| c.id).collect()
                } else {
                    names
                };
                if names.is_empty() && !all {
                    anyhow::bail!("name the containers to remove, or pass --all");
                }
                for name in names {
                    runtime.delete(&name, force)?;
                    remove_logs(&log_path(&state_dir, &name));
                    println!("{name}");
                }
                if all {
                    // Asked for explicitly: everything the supervisor does not know goes.
                    runtime.clean_orphans(Duration::ZERO)?;
                }
                Ok(())
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `ctr run` (`start`), or `ctr create` (only create, print the name).
async fn run_container(args: RunArgs, start: bool) -> anyhow::Result<ExitCode> {
    if !start && (args.detach || args.rm) {
        anyhow::bail!("create never starts the container: -d and --rm are for run");
    }
    let dirs = args.dirs.clone();
    let name: ImageRef = args.image.parse()?;
    let store = dirs.store()?;
    let record = match (store.get(&name)?, args.pull.as_str()) {
        (Some(r), "missing" | "never") => r,
        (None, "never") => {
            anyhow::bail!("image {name} is not present and --pull=never; pull or import it first")
        }
        _ => {
            dirs.puller()?
                .pull(
                    &name,
                    &PullOptions {
                        timeout: args.pull_timeout,
                        progress: None,
                    },
                )
                .await?
        }
    };
    let id = args.name.clone().unwrap_or_else(generated_name);
    outpost_runtime::container::validate_id(&id)?;
    let spec = container_spec(&args, &id)?;
    let log = LogConfig {
        path: log_path(&dirs.state_dir, &id),
        max_size: LOG_MAX_SIZE,
        max_files: LOG_MAX_FILES,
    };
    let runtime = dirs.runtime()?;
    let rt = runtime.clone();
    let cid = id.clone();
    blocking(move || {
        // GC must not take the layers between choosing them and the container's record.
        let _guard = store.use_guard()?;
        let rootfs = store.rootfs(&record)?;
        rt.create(&cid, &spec, &rootfs, &log)?;
        if start {
            rt.start(&cid)?;
        }
        Ok(())
    })
    .await?;
    if args.detach || !start {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let rt = runtime.clone();
    let cid = id.clone();
    let (exit, info) = blocking(move || {
        let exit = rt.wait(&cid, None)?.context("no exit reported")?;
        Ok((exit, rt.info(&cid)?))
    })
    .await?;
    print_log(&info.log_path, None, false)?;
    if args.rm {
        let state_dir = dirs.state_dir.clone();
        blocking(move || {
            runtime.delete(&id, true)?;
            remove_logs(&log_path(&state_dir, &id));
            Ok(())
        })
        .await?;
    }
    Ok(exit_code(&exit))
}

fn container_spec(args: &RunArgs, id: &str) -> anyhow::Result<ContainerSpec> {
    let env = args
        .env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--env {kv:?}: expected K=V"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (user, group) = match &args.user {
        None => (None, None),
        Some(u) => {
            let (uid, gid) = u
                .split_once(':')
                .map_or((u.as_str(), None), |(a, b)| (a, Some(b)));
            let num = |s: &str| {
                s.parse::<u32>()
                    .with_context(|| format!("--user {u:?}: expected uid[:gid] as numbers"))
            };
            (Some(num(uid)?), gid.map(num).transpose()?)
        }
    };
    let mut namespaces: Vec<Namespace> = [
        NamespaceKind::Pid,
        NamespaceKind::Ipc,
        NamespaceKind::Uts,
        NamespaceKind::Mount,
    ]
    .into_iter()
    .map(|kind| Namespace { kind, path: None })
    .collect();
    if args.net == "none" {
        namespaces.push(Namespace {
            kind: NamespaceKind::Network,
            path: None,
        });
    }
    let (command, cmd_args) = match &args.entrypoint {
        Some(ep) => (Some(vec![ep.clone()]), Some(args.command.clone())),
        None => (
            None,
            (!args.command.is_empty()).then(|| args.command.clone()),
        ),
    };
    let mut resources = Resources::from_kubernetes(None, args.cpus, args.memory.map(|m| m as i64));
    resources.pids_limit = args.pids;
    Ok(ContainerSpec {
        command,
        args: cmd_args,
        env,
        working_dir: args.workdir.clone(),
        user,
        group,
        readonly_rootfs: args.read_only,
        // Kubernetes' default: allowPrivilegeEscalation is true unless set.
        allow_privilege_escalation: !args.no_new_privileges,
        resources,
        namespaces,
        hostname: Some(id.to_owned()),
        cgroups_path: Runtime::cgroups_path(id),
        ..ContainerSpec::default()
    })
}

fn log_path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("logs").join(format!("{id}.log"))
}

fn remove_logs(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let name = name.to_string_lossy().into_owned();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f == name || f.starts_with(&format!("{name}.")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn print_log(path: &Path, tail: Option<usize>, timestamps: bool) -> anyhow::Result<()> {
    let records = read_tail(path, tail).with_context(|| format!("read log {}", path.display()))?;
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for r in records {
        let sink: &mut dyn Write = match r.stream {
            Stream::Stdout => &mut out,
            Stream::Stderr => &mut err,
        };
        if timestamps {
            write!(sink, "{} ", r.time)?;
        }
        sink.write_all(&r.content)?;
        sink.write_all(b"\n")?;
    }
    Ok(())
}

/// The container's exit code as this process's (truncated to 0..=255 as a shell does).
fn exit_code(exit: &ExitInfo) -> ExitCode {
    ExitCode::from((exit.code & 0xff) as u8)
}

fn generated_name() -> String {
    let mut bytes = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    format!(
        "ctr-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("blocking task")?
}

trait AsFdOwned {
    fn as_fd_owned(&self) -> anyhow::Result<OwnedFd>;
}

impl<T: std::os::fd::AsFd> AsFdOwned for T {
    fn as_fd_owned(&self) -> anyhow::Result<OwnedFd> {
        Ok(self.as_fd().try_clone_to_owned()?)
    }
}
