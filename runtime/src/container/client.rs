//! The agent's side of the runtime: prepares bundles (overlay rootfs, OCI spec),
//! then asks the node's supervisor to create, start, signal, exec and delete.
//! Blocking calls: async callers use `spawn_blocking`.

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::paths::RunPaths;
use super::proto::{self, ContainerInfo, CreateRequest, ExecRequest, ExitInfo, Request, Response};
use super::rootfs;
use super::spec::{build_spec, ContainerSpec, HostLimits, ImageConfig};
use crate::error::{Error, Result};

/// The image a container runs, as the store hands it over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRootfs {
    /// Image name for display and records.
    pub image: String,
    pub config: ImageConfig,
    /// Unpacked layer directories, bottom layer first.
    pub layers: Vec<PathBuf>,
}

/// Where a container's log goes and how it rotates.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub path: PathBuf,
    pub max_size: u64,
    pub max_files: u32,
}

/// What the runtime keeps on disk for a container (its writable layer, and
/// which image it uses so image GC keeps those layers).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub image: String,
    pub layers: Vec<PathBuf>,
}

/// Handle on the node's containers.
#[derive(Debug, Clone)]
pub struct Runtime {
    run: RunPaths,
    state_dir: PathBuf,
    /// The `outpost` binary, started as `outpost supervisor` when none runs.
    exe: PathBuf,
}

impl Runtime {
    /// A runtime over `state_dir` (writable layers) and `run_dir` (supervisor,
    /// bundles); `exe` is the binary that provides the `supervisor` subcommand.
    pub fn new(state_dir: &Path, run_dir: &Path, exe: &Path) -> Self {
        Runtime {
            run: RunPaths::new(run_dir),
            state_dir: state_dir.to_path_buf(),
            exe: exe.to_path_buf(),
        }
    }

    /// Directory holding every container's writable layer and record.
    fn containers_dir(&self) -> PathBuf {
        self.state_dir.join("containers")
    }

    /// The cgroup path given to a container (unique per container id).
    pub fn cgroups_path(id: &str) -> String {
        format!("/outpost/{id}")
    }

    /// Creates a container (OCI create: namespaces and cgroup set up, the
    /// process waits for `start`). On failure nothing is left behind.
    pub fn create(
        &self,
        id: &str,
        spec: &ContainerSpec,
        image: &ImageRootfs,
        log: &LogConfig,
    ) -> Result<()> {
        validate_id(id)?;
        let dir = self.containers_dir().join(id);
        let bundle = self.run.bundle(id);
        if dir.exists() || bundle.exists() {
            return Err(Error::Container {
                id: id.to_owned(),
                message: "a container with this name already exists".into(),
            });
        }
        let result = self.prepare(id, spec, image, &dir, &bundle).and_then(|()| {
            let req = CreateRequest {
                id: id.to_owned(),
                bundle: bundle.clone(),
                cgroups_path: spec.cgroups_path.clone(),
                log_path: log.path.clone(),
                log_max_size: log.max_size,
                log_max_files: log.max_files,
            };
            self.call_ok(id, &Request::Create(req))
        });
        if result.is_err() {
            let _ = self.remove_files(id);
        }
        result
    }

    fn prepare(
        &self,
        id: &str,
        spec: &ContainerSpec,
        image: &ImageRootfs,
        dir: &Path,
        bundle: &Path,
    ) -> Result<()> {
        let upper = dir.join("upper");
        let work = dir.join("work");
        let target = bundle.join("rootfs");
        for d in [&upper, &work, &target] {
            fs::create_dir_all(d).map_err(Error::io("create", d))?;
        }
        let record = ContainerRecord {
            id: id.to_owned(),
            image: image.image.clone(),
            layers: image.layers.clone(),
        };
        write_json(&dir.join("record.json"), &record)?;
        rootfs::mount(&image.layers, &upper, &work, &target)?;
        let oci =
            build_spec(spec, &image.config, &target, &HostLimits::current()).map_err(|e| {
                Error::Container {
                    id: id.to_owned(),
                    message: e.to_string(),
                }
            })?;
        let config = bundle.join("config.json");
        oci.save(&config).map_err(|e| Error::Container {
            id: id.to_owned(),
            message: format!("write {}: {e}", config.display()),
        })?;
        Ok(())
    }

    /// OCI start: the container's process runs.
    pub fn start(&self, id: &str) -> Result<()> {
        self.call_ok(id, &Request::Start { id: id.to_owned() })
    }

    /// Sends a signal (to every process of the container with `all`).
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        self.call_ok(
            id,
            &Request::Kill {
                id: id.to_owned(),
                signal,
                all,
            },
        )
    }

    /// Stops a container as Kubernetes does: SIGTERM, then SIGKILL to every
    /// process once `grace` has passed. Returns how it ended.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<ExitInfo> {
        if let Some(exit) = self.info(id)?.exit {
            return Ok(exit);
        }
        self.kill(id, libc_signal(nix::sys::signal::Signal::SIGTERM), false)?;
        if let Some(exit) = self.wait(id, Some(grace))? {
            return Ok(exit);
        }
        self.kill(id, libc_signal(nix::sys::signal::Signal::SIGKILL), true)?;
        self.wait(id, Some(Duration::from_secs(30)))?
            .ok_or_else(|| Error::Container {
                id: id.to_owned(),
                message: "still running 30s after SIGKILL".into(),
            })
    }

    /// Waits for the container to exit; `None` if `timeout` passed first.
    pub fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<Option<ExitInfo>> {
        let conn = self.connect()?;
        conn.set_read_timeout(timeout)
            .map_err(Error::io("set timeout on", &self.run.supervisor_socket))?;
        proto::send(&conn, &Request::Wait { id: id.to_owned() }, &[])
            .map_err(Error::io("send to", &self.run.supervisor_socket))?;
        let mut buf = Vec::new();
        match proto::recv::<Response>(&conn, &mut buf) {
            Ok(Some((Response::Exited { exit }, _))) => Ok(Some(exit)),
            Ok(Some((Response::Error { message }, _))) => Err(Error::Container {
                id: id.to_owned(),
                message,
            }),
            Ok(other) => Err(unexpected(other.map(|(r, _)| r))),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::io("receive from", &self.run.supervisor_socket)(e)),
        }
    }

    /// Starts a process in a running container with the given stdio.
    pub fn exec(&self, id: &str, req: ExecRequest, stdio: [OwnedFd; 3]) -> Result<Exec> {
        let conn = self.connect()?;
        let raw = stdio.each_ref().map(|fd| fd.as_raw_fd());
        proto::send(
            &conn,
            &Request::Exec(ExecRequest {
                id: id.to_owned(),
                ..req
            }),
            &raw,
        )
        .map_err(Error::io("send to", &self.run.supervisor_socket))?;
        drop(stdio);
        let mut buf = Vec::new();
        match proto::recv::<Response>(&conn, &mut buf)
            .map_err(Error::io("receive from", &self.run.supervisor_socket))?
        {
            Some((Response::Started { pid }, _)) => Ok(Exec { conn, buf, pid }),
            Some((Response::Error { message }, _)) => Err(Error::Container {
                id: id.to_owned(),
                message,
            }),
            other => Err(unexpected(other.map(|(r, _)| r))),
        }
    }

    /// Runs a command in a running container and collects its output.
    pub fn exec_output(&self, id: &str, args: Vec<String>) -> Result<ExecOutput> {
        let (out_r, out_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| Error::io("pipe", "")(e.into()))?;
        let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| Error::io("pipe", "")(e.into()))?;
        let stdin: OwnedFd = File::open("/dev/null")
            .map_err(Error::io("open", "/dev/null"))?
            .into();
        let exec = self.exec(
            id,
            ExecRequest {
                id: id.to_owned(),
                args,
                env: Vec::new(),
                cwd: None,
            },
            [stdin, out_w, err_w],
        )?;
        // Read both pipes to the end on two threads so neither can fill and block the process.
        let stderr = std::thread::spawn(move || read_all(err_r));
        let stdout = read_all(out_r);
        let stderr = stderr.join().unwrap_or_default();
        let exit = exec.wait()?;
        Ok(ExecOutput {
            stdout,
            stderr,
            exit,
        })
    }

    /// Subscribes to every container exit from now on.
    pub fn watch_exits(&self) -> Result<ExitWatch> {
        let conn = self.connect()?;
        proto::send(&conn, &Request::Watch, &[])
            .map_err(Error::io("send to", &self.run.supervisor_socket))?;
        Ok(ExitWatch {
            conn,
            buf: Vec::new(),
        })
    }

    /// Removes a container: the process (with `force`, even running), its
    /// cgroup, rootfs mount, writable layer and records.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        match self.call_ok(
            id,
            &Request::Delete {
                id: id.to_owned(),
                force,
            },
        ) {
            Ok(()) => {}
            // Unknown to the supervisor: only our files can be left.
            Err(Error::Container { message, .. }) if message.starts_with("no such container") => {}
            Err(e) => return Err(e),
        }
        self.remove_files(id)
    }

    fn remove_files(&self, id: &str) -> Result<()> {
        let bundle = self.run.bundle(id);
        rootfs::unmount(&bundle.join("rootfs"))?;
        for dir in [bundle, self.containers_dir().join(id)] {
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &dir)(e)),
            }
        }
        Ok(())
    }

    /// Every container the supervisor knows (none when no supervisor runs).
    pub fn list(&self) -> Result<Vec<ContainerInfo>> {
        if !self.supervisor_running() {
            return Ok(Vec::new());
        }
        match self.call(&Request::List)? {
            Response::Containers { containers } => Ok(containers),
            other => Err(unexpected(Some(other))),
        }
    }

    /// One container's state.
    pub fn info(&self, id: &str) -> Result<ContainerInfo> {
        self.list()?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Error::Container {
                id: id.to_owned(),
                message: "no such container".into(),
            })
    }

    /// The records of every container with files on disk, including ones the
    /// supervisor lost (used by image GC to keep their layers).
    pub fn records(&self) -> Vec<ContainerRecord> {
        let Ok(dir) = fs::read_dir(self.containers_dir()) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| fs::read(e.path().join("record.json")).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }

    /// Removes what a crash left between preparing a bundle and the supervisor
    /// knowing the container: mounts, bundles and writable layers of containers
    /// the supervisor does not know. Skips anything younger than `min_age`, which
    /// may be a creation in progress in another process. Returns the ids cleaned.
    pub fn clean_orphans(&self, min_age: Duration) -> Result<Vec<String>> {
        let known: std::collections::HashSet<String> =
            self.list()?.into_iter().map(|c| c.id).collect();
        let old_enough = |path: &Path| {
            fs::metadata(path)
                .and_then(|m| m.modified())
                .map_or(true, |t| t.elapsed().unwrap_or_default() >= min_age)
        };
        let mut ids: Vec<String> = [self.containers_dir(), self.run.bundles.clone()]
            .iter()
            .filter_map(|d| fs::read_dir(d).ok())
            .flat_map(|d| d.flatten())
            .filter(|e| old_enough(&e.path()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|id| !known.contains(id))
            .collect();
        ids.sort();
        ids.dedup();
        for id in &ids {
            tracing::info!(
                id,
                "removing files of a container the supervisor does not know"
            );
            self.remove_files(id)?;
        }
        Ok(ids)
    }

    /// Whether a supervisor answers on this run dir.
    pub fn supervisor_running(&self) -> bool {
        UnixStream::connect(&self.run.supervisor_socket).is_ok()
    }

    /// Pid and version of the running supervisor, starting one if needed.
    pub fn ping(&self) -> Result<(u32, String)> {
        match self.call(&Request::Ping)? {
            Response::Pong { pid, version } => Ok((pid, version)),
            other => Err(unexpected(Some(other))),
        }
    }

    fn call_ok(&self, id: &str, req: &Request) -> Result<()> {
        match self.call(req)? {
            Response::Ok => Ok(()),
            Response::Error { message } => Err(Error::Container {
                id: id.to_owned(),
                message,
            }),
            other => Err(unexpected(Some(other))),
        }
    }

    fn call(&self, req: &Request) -> Result<Response> {
        let conn = self.connect()?;
        let sock = &self.run.supervisor_socket;
        proto::send(&conn, req, &[]).map_err(Error::io("send to", sock))?;
        let mut buf = Vec::new();
        match proto::recv::<Response>(&conn, &mut buf).map_err(Error::io("receive from", sock))? {
            Some((response, _)) => Ok(response),
            None => Err(Error::io("receive from", sock)(
                std::io::ErrorKind::UnexpectedEof.into(),
            )),
        }
    }

    /// Connects to the supervisor, starting it first if none runs.
    fn connect(&self) -> Result<UnixStream> {
        if let Ok(conn) = UnixStream::connect(&self.run.supervisor_socket) {
            return Ok(conn);
        }
        fs::create_dir_all(&self.run.root).map_err(Error::io("create", &self.run.root))?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.run.supervisor_log)
            .map_err(Error::io("open", &self.run.supervisor_log))?;
        // `outpost supervisor` forks, and its parent exits once the socket is up.
        let status = Command::new(&self.exe)
            .arg("supervisor")
            .arg("--run-dir")
            .arg(&self.run.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .status()
            .map_err(Error::io("run", &self.exe))?;
        // Another client may have won the race to start it: connecting is what counts.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match UnixStream::connect(&self.run.supervisor_socket) {
                Ok(conn) => return Ok(conn),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    return Err(Error::Supervisor {
                        message: format!(
                            "cannot reach the supervisor at {} ({e}; `outpost supervisor` exited with {status}); see {}",
                            self.run.supervisor_socket.display(),
                            self.run.supervisor_log.display()
                        ),
                    })
                }
            }
        }
    }
}

/// A process started by [`Runtime::exec`].
#[derive(Debug)]
pub struct Exec {
    conn: UnixStream,
    buf: Vec<u8>,
    pub pid: i32,
}

impl Exec {
    /// Waits for the process to end.
    pub fn wait(mut self) -> Result<ExitInfo> {
        match proto::recv::<Response>(&self.conn, &mut self.buf)
            .map_err(Error::io("receive exec exit", ""))?
        {
            Some((Response::Exited { exit }, _)) => Ok(exit),
            other => Err(unexpected(other.map(|(r, _)| r))),
        }
    }
}

/// A stream of container exits (see [`Runtime::watch_exits`]).
#[derive(Debug)]
pub struct ExitWatch {
    conn: UnixStream,
    buf: Vec<u8>,
}

impl ExitWatch {
    /// Blocks for the next exit; an error when the supervisor went away.
    pub fn next_exit(&mut self) -> Result<(String, ExitInfo)> {
        match proto::recv::<Response>(&self.conn, &mut self.buf)
            .map_err(Error::io("receive exits", ""))?
        {
            Some((Response::Event { id, exit }, _)) => Ok((id, exit)),
            None => Err(Error::Supervisor {
                message: "the supervisor closed the exit stream".into(),
            }),
            other => Err(unexpected(other.map(|(r, _)| r))),
        }
    }
}

/// Output and exit of [`Runtime::exec_output`].
#[derive(Debug)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: ExitInfo,
}

/// Container ids become directory and cgroup names: keep them plain.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::Container {
            id: id.to_owned(),
            message: "invalid name: use letters, digits, '-', '_' and '.', at most 128 characters"
                .into(),
        })
    }
}

fn read_all(fd: OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = File::from(fd).read_to_end(&mut out);
    out
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let data = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::io("encode", path)(std::io::Error::other(e)))?;
    // No fsync: the record is void after a reboot, like the container it describes.
    crate::fsutil::replace_file(path, &data).map_err(Error::io("write", path))
}

fn libc_signal(s: nix::sys::signal::Signal) -> i32 {
    s as i32
}

fn unexpected(response: Option<Response>) -> Error {
    Error::Supervisor {
        message: format!("unexpected answer from the supervisor: {response:?}"),
    }
}
