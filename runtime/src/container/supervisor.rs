//! The node's supervisor: one small, single-threaded process that is the parent
//! of every container.
//!
//! Why it exists (see NOTES.md and ARCHITECTURE.md): libcontainer forks with raw
//! `clone3` and runs Rust code in the child, so containers must be created from a
//! single-threaded process, not from the agent's tokio runtime; and only a
//! container's parent can `waitpid` it for its exit code. The supervisor outlives
//! the agent (the agent may crash, be SIGKILLed or upgraded), so containers keep
//! running and their exit codes are still known when the agent comes back.
//!
//! It also pumps every container's stdout/stderr into CRI-format log files, so
//! there is no process per container besides the workload itself.
//!
//! Everything it knows is also written to `<run-dir>/containers/<id>/record.json`
//! when it changes (create, start, exit: not in steady state), so a restarted
//! supervisor re-adopts what a previous one left.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::log::{LogWriter, Stream};
use super::paths::RunPaths;
use super::proto::{
    self, ContainerInfo, CreateRequest, ExecRequest, ExitInfo, Request, Response, State,
};

/// How long the supervisor stays up with nothing to supervise and nobody connected.
const IDLE_EXIT: Duration = Duration::from_secs(3);
/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on reading one log pipe per wake-up, so one chatty container
/// cannot starve the others.
const LOG_READ_BUDGET: usize = 256 << 10;

/// Runs the supervisor for `run_dir` until it is idle. `ready` is called once the
/// socket accepts connections (the daemonising parent waits for it).
pub fn run(run_dir: &Path, ready: impl FnOnce()) -> io::Result<()> {
    let paths = RunPaths::new(run_dir);
    fs::create_dir_all(&paths.containers).map_err(annotate("create", &paths.containers))?;
    fs::create_dir_all(&paths.youki).map_err(annotate("create", &paths.youki))?;

    // One supervisor per run dir: the lock is held for the life of the process.
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&paths.supervisor_lock)
        .map_err(annotate("open", &paths.supervisor_lock))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |e| {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another supervisor holds {}: {e}",
                    paths.supervisor_lock.display()
                ),
            )
        },
    )?;

    // Containers inherit the signal dispositions of their creator through exec:
    // the Rust runtime ignores SIGPIPE, which a workload must not inherit. All
    // socket writes here use MSG_NOSIGNAL instead.
    // SAFETY: restoring a default disposition installs no handler.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    }
    .map_err(io::Error::from)?;

    let _ = fs::remove_file(&paths.supervisor_socket);
    let listener = UnixListener::bind(&paths.supervisor_socket)
        .map_err(annotate("bind", &paths.supervisor_socket))?;
    fs::set_permissions(&paths.supervisor_socket, fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    fs::write(&paths.supervisor_pid, format!("{}\n", std::process::id()))?;

    let mut sup = Supervisor {
        paths,
        listener,
        containers: BTreeMap::new(),
        waiters: Vec::new(),
        execs: HashMap::new(),
        watchers: Vec::new(),
        last_activity: Instant::now(),
    };
    sup.adopt();
    ready();
    let result = sup.serve();
    let _ = fs::remove_file(&sup.paths.supervisor_socket);
    let _ = fs::remove_file(&sup.paths.supervisor_pid);
    drop(lock);
    result
}

fn annotate<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> io::Error + 'a {
    move |e| io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

struct Supervisor {
    paths: RunPaths,
    listener: UnixListener,
    containers: BTreeMap<String, Entry>,
    /// Connections waiting for a container to exit.
    waiters: Vec<(String, UnixStream)>,
    /// Exec'd processes by pid, with the connection waiting for their exit.
    execs: HashMap<i32, ExecProc>,
    /// Connections that asked to hear about every exit.
    watchers: Vec<UnixStream>,
    last_activity: Instant,
}

struct Entry {
    info: ContainerInfo,
    /// Readable when the init process ends (while it is running).
    pidfd: Option<OwnedFd>,
    /// Our child (exit code knowable) or adopted from a previous supervisor.
    child: bool,
    logs: Option<Logs>,
}

struct Logs {
    writer: LogWriter,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

struct ExecProc {
    pidfd: OwnedFd,
    conn: UnixStream,
}

/// What a poll slot stands for.
#[derive(Clone)]
enum Slot {
    Listener,
    /// A container init or exec'd process ended: reap.
    ProcessExit,
    Log(String, Stream),
    Waiter(usize),
    Watcher(usize),
}

impl Supervisor {
    fn serve(&mut self) -> io::Result<()> {
        loop {
            let mut slots = vec![Slot::Listener];
            let mut fds: Vec<BorrowedFd<'_>> = vec![self.listener.as_fd()];
            for (id, entry) in &self.containers {
                if let Some(fd) = &entry.pidfd {
                    slots.push(Slot::ProcessExit);
                    fds.push(fd.as_fd());
                }
                if let Some(logs) = &entry.logs {
                    for (stream, fd) in [
                        (Stream::Stdout, &logs.stdout),
                        (Stream::Stderr, &logs.stderr),
                    ] {
                        if let Some(fd) = fd {
                            slots.push(Slot::Log(id.clone(), stream));
                            fds.push(fd.as_fd());
                        }
                    }
                }
            }
            for exec in self.execs.values() {
                slots.push(Slot::ProcessExit);
                fds.push(exec.pidfd.as_fd());
            }
            for (i, (_, conn)) in self.waiters.iter().enumerate() {
                slots.push(Slot::Waiter(i));
                fds.push(conn.as_fd());
            }
            for (i, conn) in self.watchers.iter().enumerate() {
                slots.push(Slot::Watcher(i));
                fds.push(conn.as_fd());
            }
            let mut pollfds: Vec<PollFd<'_>> = fds
                .iter()
                .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
                .collect();

            let idle =
                self.containers.is_empty() && self.execs.is_empty() && self.waiters.is_empty();
            let timeout = if idle {
                let left = IDLE_EXIT.saturating_sub(self.last_activity.elapsed());
                if left.is_zero() {
                    tracing::info!("nothing left to supervise: exiting");
                    return Ok(());
                }
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
            } else {
                // Untracked children (libcontainer helpers) are reaped on this beat at the latest.
                PollTimeout::from(60_000u16)
            };
            match poll(&mut pollfds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let woke = pollfds
                .iter()
                .filter(|p| p.revents().is_some_and(|r| !r.is_empty()))
                .count();
            let ready: Vec<(Slot, PollFlags)> = pollfds
                .iter()
                .zip(slots)
                .filter_map(|(p, slot)| p.revents().filter(|r| !r.is_empty()).map(|r| (slot, r)))
                .collect();
            drop(pollfds);
            drop(fds);

            let mut hung_up = Vec::new();
            let mut watcher_gone = Vec::new();
            let mut reap = false;
            for (slot, _) in ready {
                match slot {
                    Slot::Listener => self.accept_all(),
                    Slot::ProcessExit => reap = true,
                    Slot::Log(id, stream) => self.pump_log(&id, stream),
                    Slot::Waiter(i) => hung_up.push(i),
                    Slot::Watcher(i) => watcher_gone.push(i),
                }
            }
            watcher_gone.sort_unstable();
            for i in watcher_gone.into_iter().rev() {
                self.watchers.swap_remove(i);
            }
            // A waiting client that hung up (or wrote more) is dropped.
            hung_up.sort_unstable();
            for i in hung_up.into_iter().rev() {
                self.waiters.swap_remove(i);
            }
            // On the timeout beat nothing is ready: reap untracked children then.
            if reap || woke == 0 {
                self.reap();
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((conn, _)) => {
                    self.last_activity = Instant::now();
                    if let Err(e) = self.handle(conn) {
                        tracing::warn!("request failed: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn handle(&mut self, conn: UnixStream) -> io::Result<()> {
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        let mut buf = Vec::new();
        let Some((request, fds)) = proto::recv::<Request>(&conn, &mut buf)? else {
            return Ok(());
        };
        tracing::debug!(?request, "request");
        let response = match request {
            Request::Ping => Response::Pong {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            },
            Request::Create(req) => self
                .create(req)
                .map(|()| Response::Ok)
                .unwrap_or_else(error),
            Request::Start { id } => self.start(&id).map(|()| Response::Ok).unwrap_or_else(error),
            Request::Kill { id, signal, all } => self
                .kill(&id, signal, all)
                .map(|()| Response::Ok)
                .unwrap_or_else(error),
            Request::Delete { id, force } => self
                .delete(&id, force)
                .map(|()| Response::Ok)
                .unwrap_or_else(error),
            Request::List => Response::Containers {
                containers: self.containers.values().map(|e| e.info.clone()).collect(),
            },
            Request::Wait { id } => match self.containers.get(&id) {
                None => error(format!("no such container {id:?}")),
                Some(Entry {
                    info:
                        ContainerInfo {
                            exit: Some(exit), ..
                        },
                    ..
                }) => Response::Exited { exit: exit.clone() },
                Some(_) => {
                    self.waiters.push((id, conn));
                    return Ok(());
                }
            },
            Request::Watch => {
                conn.set_nonblocking(true)?;
                self.watchers.push(conn);
                return Ok(());
            }
            Request::Exec(req) => match self.exec(req, fds) {
                Ok((pid, pidfd)) => {
                    reply(&conn, &Response::Started { pid })?;
                    self.execs.insert(pid, ExecProc { pidfd, conn });
                    return Ok(());
                }
                Err(e) => error(e),
            },
        };
        reply(&conn, &response)
    }

    fn create(&mut self, req: CreateRequest) -> Result<(), String> {
        if self.containers.contains_key(&req.id) {
            return Err(format!("container {:?} already exists", req.id));
        }
        let record_dir = self.paths.record_dir(&req.id);
        fs::create_dir_all(&record_dir)
            .map_err(|e| format!("create {}: {e}", record_dir.display()))?;
        let writer = LogWriter::open(&req.log_path, req.log_max_size, req.log_max_files)
            .map_err(|e| format!("open log {}: {e}", req.log_path.display()))?;
        let (out_r, out_w) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )
        .map_err(|e| format!("pipe: {e}"))?;
        let (err_r, err_w) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )
        .map_err(|e| format!("pipe: {e}"))?;
        // The write ends are the container's stdout/stderr: they must block.
        for w in [&out_w, &err_w] {
            rustix::fs::fcntl_setfl(w, rustix::fs::OFlags::empty())
                .map_err(|e| format!("fcntl: {e}"))?;
        }
        let devnull = File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?;

        let built = ContainerBuilder::new(req.id.clone(), SyscallType::default())
            .with_root_path(&self.paths.youki)
            .and_then(|b| {
                b.with_stdin(devnull)
                    .with_stdout(out_w)
                    .with_stderr(err_w)
                    .validate_id()
            })
            .and_then(|b| {
                b.as_init(&req.bundle)
                    .with_systemd(false)
                    .with_detach(true)
                    .as_sibling(false)
                    .build()
            });
        let container = match built {
            Ok(c) => c,
            Err(e) => {
                // libcontainer may have left its state dir and cgroup behind.
                if let Ok(mut c) = Container::load(self.paths.youki.join(&req.id)) {
                    let _ = c.delete(true);
                }
                remove_cgroup(&req.cgroups_path);
                let _ = fs::remove_dir_all(&record_dir);
                return Err(format!("create container {:?}: {e}", req.id));
            }
        };
        let pid = container.pid().map(Pid::as_raw);
        let pidfd = pid.and_then(|p| {
            rustix::process::pidfd_open(
                rustix::process::Pid::from_raw(p)?,
                rustix::process::PidfdFlags::empty(),
            )
            .ok()
        });
        let info = ContainerInfo {
            id: req.id.clone(),
            state: State::Created,
            pid,
            bundle: req.bundle,
            log_path: req.log_path,
            cgroups_path: req.cgroups_path,
            created_at: now(),
            started_at: None,
            exit: None,
        };
        let entry = Entry {
            info,
            pidfd,
            child: true,
            logs: Some(Logs {
                writer,
                stdout: Some(out_r),
                stderr: Some(err_r),
            }),
        };
        self.save(&entry.info);
        self.containers.insert(req.id, entry);
        Ok(())
    }

    fn start(&mut self, id: &str) -> Result<(), String> {
        let entry = self
            .containers
            .get_mut(id)
            .ok_or_else(|| format!("no such container {id:?}"))?;
        if entry.info.state != State::Created {
            return Err(format!(
                "container {id:?} is {:?}, not created",
                entry.info.state
            ));
        }
        let mut container = Container::load(self.paths.youki.join(id))
            .map_err(|e| format!("load container {id:?}: {e}"))?;
        container
            .start()
            .map_err(|e| format!("start container {id:?}: {e}"))?;
        entry.info.state = State::Running;
        entry.info.started_at = Some(now());
        let info = entry.info.clone();
        self.save(&info);
        Ok(())
    }

    fn kill(&mut self, id: &str, signal: i32, all: bool) -> Result<(), String> {
        let entry = self
            .containers
            .get(id)
            .ok_or_else(|| format!("no such container {id:?}"))?;
        if entry.info.state == State::Exited && !all {
            return Ok(());
        }
        let signal = Signal::try_from(signal).map_err(|e| format!("signal {signal}: {e}"))?;
        let mut container = Container::load(self.paths.youki.join(id))
            .map_err(|e| format!("load container {id:?}: {e}"))?;
        match container.kill(signal, all) {
            Ok(()) => Ok(()),
            // Ended between our check and the signal: that is what the caller wanted.
            Err(_) if !pid_alive(entry.info.pid) => Ok(()),
            Err(e) => Err(format!("kill container {id:?}: {e}")),
        }
    }

    fn delete(&mut self, id: &str, force: bool) -> Result<(), String> {
        let entry = self
            .containers
            .get(id)
            .ok_or_else(|| format!("no such container {id:?}"))?;
        if entry.info.state != State::Exited {
            if !force {
                return Err(format!(
                    "container {id:?} is {:?}: stop it first",
                    entry.info.state
                ));
            }
            self.kill(id, libc_sigkill(), true)?;
            self.wait_exit(id, Duration::from_secs(10))?;
        }
        if let Ok(mut container) = Container::load(self.paths.youki.join(id)) {
            container
                .delete(true)
                .map_err(|e| format!("delete container {id:?}: {e}"))?;
        }
        let Some(mut entry) = self.containers.remove(id) else {
            return Ok(());
        };
        if let Some(logs) = entry.logs.as_mut() {
            // Whatever is still buffered in the pipes belongs in the log.
            for stream in [Stream::Stdout, Stream::Stderr] {
                drain(logs, stream, usize::MAX);
                let _ = logs.writer.close_stream(stream, jiff::Timestamp::now());
            }
        }
        remove_cgroup(&entry.info.cgroups_path);
        let _ = fs::remove_dir_all(self.paths.record_dir(id));
        self.waiters.retain(|(w, _)| w != id);
        Ok(())
    }

    /// Blocks (bounded) until a container's init is reaped.
    fn wait_exit(&mut self, id: &str, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            self.reap();
            match self.containers.get(id) {
                Some(e) if e.info.state != State::Exited => {}
                _ => return Ok(()),
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "container {id:?} did not exit within {limit:?} of SIGKILL"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn exec(&mut self, req: ExecRequest, fds: Vec<OwnedFd>) -> Result<(i32, OwnedFd), String> {
        let entry = self
            .containers
            .get(&req.id)
            .ok_or_else(|| format!("no such container {:?}", req.id))?;
        if entry.info.state != State::Running {
            return Err(format!("container {:?} is not running", req.id));
        }
        let [stdin, stdout, stderr]: [OwnedFd; 3] = fds.try_into().map_err(|_| {
            "exec needs exactly three descriptors (stdin, stdout, stderr)".to_owned()
        })?;
        let pid = ContainerBuilder::new(req.id.clone(), SyscallType::default())
            .with_root_path(&self.paths.youki)
            .map(|b| b.with_stdin(stdin).with_stdout(stdout).with_stderr(stderr))
            .and_then(|b| {
                b.as_tenant()
                    .with_container_args(req.args.clone())
                    .with_env(req.env.iter().cloned().collect())
                    .with_cwd(req.cwd.as_ref())
                    .with_detach(true)
                    .build()
            })
            .map_err(|e| {
                format!(
                    "exec {:?} in container {:?}: {e}",
                    req.args.join(" "),
                    req.id
                )
            })?;
        let pidfd = rustix::process::Pid::from_raw(pid.as_raw())
            .ok_or_else(|| "exec returned no pid".to_owned())
            .and_then(|p| {
                rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
                    .map_err(|e| format!("pidfd_open: {e}"))
            })?;
        Ok((pid.as_raw(), pidfd))
    }

    /// Reaps every ended child and records how containers and execs ended.
    fn reap(&mut self) {
        loop {
            let (pid, code, signal) = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), code, None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    (pid.as_raw(), 128 + sig as i32, Some(sig as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!("waitpid: {e}");
                    break;
                }
            };
            if let Some(exec) = self.execs.remove(&pid) {
                let exit = ExitInfo {
                    code,
                    signal,
                    oom_killed: false,
                    unknown: false,
                    finished_at: now(),
                };
                let _ = reply(&exec.conn, &Response::Exited { exit });
                continue;
            }
            let Some(id) = self
                .containers
                .iter()
                .find(|(_, e)| e.child && e.info.pid == Some(pid) && e.info.exit.is_none())
                .map(|(id, _)| id.clone())
            else {
                continue;
            };
            self.record_exit(&id, code, signal, false);
        }
        // Adopted containers are not our children: their pidfd tells us they ended.
        let ended: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, e)| !e.child && e.info.exit.is_none() && !pid_alive(e.info.pid))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            self.record_exit(&id, 137, None, true);
        }
    }

    fn record_exit(&mut self, id: &str, code: i32, signal: Option<i32>, unknown: bool) {
        let Some(entry) = self.containers.get_mut(id) else {
            return;
        };
        let exit = ExitInfo {
            code,
            signal,
            oom_killed: oom_kills(&entry.info.cgroups_path) > 0,
            unknown,
            finished_at: now(),
        };
        tracing::info!(id, code, reason = exit.reason(), "container exited");
        entry.info.state = State::Exited;
        entry.info.exit = Some(exit.clone());
        entry.pidfd = None;
        let info = entry.info.clone();
        self.save(&info);
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(w, _)| w == id);
        self.waiters = waiting;
        for (_, conn) in done {
            let _ = reply(&conn, &Response::Exited { exit: exit.clone() });
        }
        // A watcher that cannot take the event (gone, or not reading) is dropped.
        let event = Response::Event {
            id: id.to_owned(),
            exit,
        };
        self.watchers.retain(|conn| reply(conn, &event).is_ok());
    }

    fn pump_log(&mut self, id: &str, stream: Stream) {
        let Some(logs) = self.containers.get_mut(id).and_then(|e| e.logs.as_mut()) else {
            return;
        };
        if drain(logs, stream, LOG_READ_BUDGET) {
            let _ = logs.writer.close_stream(stream, jiff::Timestamp::now());
            match stream {
                Stream::Stdout => logs.stdout = None,
                Stream::Stderr => logs.stderr = None,
            }
        }
    }

    /// Re-adopts what a previous supervisor of this run dir left.
    fn adopt(&mut self) {
        let Ok(dir) = fs::read_dir(&self.paths.containers) else {
            return;
        };
        for record in dir.flatten() {
            let path = record.path().join("record.json");
            let info: ContainerInfo = match fs::read(&path).map(|b| serde_json::from_slice(&b)) {
                Ok(Ok(info)) => info,
                _ => continue,
            };
            let pidfd = match (info.state, info.pid) {
                (State::Exited, _) | (_, None) => None,
                (_, Some(pid)) => rustix::process::Pid::from_raw(pid).and_then(|p| {
                    rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
                }),
            };
            tracing::info!(id = %info.id, state = ?info.state, "adopted container from a previous supervisor");
            let mut entry = Entry {
                info,
                pidfd,
                child: false,
                logs: None,
            };
            if entry.info.state != State::Exited && entry.pidfd.is_none() {
                // Gone while nobody watched: the code is lost.
                entry.info.state = State::Exited;
                entry.info.exit = Some(ExitInfo {
                    code: 137,
                    signal: None,
                    oom_killed: false,
                    unknown: true,
                    finished_at: now(),
                });
                self.save(&entry.info);
            }
            self.containers.insert(entry.info.id.clone(), entry);
        }
    }

    /// Persists a container's record (atomic against our own crash; no fsync:
    /// after a power loss the containers are gone too).
    fn save(&self, info: &ContainerInfo) {
        let path = self.paths.record_dir(&info.id).join("record.json");
        if let Err(e) =
            crate::fsutil::replace_file(&path, &serde_json::to_vec_pretty(info).unwrap_or_default())
        {
            tracing::error!("save {}: {e}", path.display());
        }
    }
}

/// Reads what is available on one log pipe into the writer. Returns true at EOF.
fn drain(logs: &mut Logs, stream: Stream, budget: usize) -> bool {
    let fd = match stream {
        Stream::Stdout => logs.stdout.as_ref(),
        Stream::Stderr => logs.stderr.as_ref(),
    };
    let Some(fd) = fd else { return false };
    let mut file = File::from(match fd.try_clone() {
        Ok(fd) => fd,
        Err(_) => return false,
    });
    let mut buf = [0u8; 16 << 10];
    let mut read = 0;
    while read < budget {
        match file.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                read += n;
                if let Err(e) = logs.writer.write(stream, &buf[..n], jiff::Timestamp::now()) {
                    tracing::warn!("write container log: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
    false
}

fn reply(conn: &UnixStream, response: &Response) -> io::Result<()> {
    proto::send(conn, response, &[])
}

fn error(message: impl ToString) -> Response {
    Response::Error {
        message: message.to_string(),
    }
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn libc_sigkill() -> i32 {
    nix::sys::signal::Signal::SIGKILL as i32
}

fn pid_alive(pid: Option<i32>) -> bool {
    pid.is_some_and(|p| nix::sys::signal::kill(Pid::from_raw(p), None).is_ok())
}

/// The hierarchies a container's cgroup lives in: one per controller on cgroup
/// v1 (and hybrid) hosts, the unified root on v2.
fn cgroup_roots() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("memory").is_dir() {
        fs::read_dir(root)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        vec![root.to_path_buf()]
    }
}

/// How many OOM kills the container's memory cgroup has seen.
fn oom_kills(cgroups_path: &str) -> u64 {
    let rel = cgroups_path.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(rel)
        .join("memory.oom_control");
    let v2 = Path::new("/sys/fs/cgroup").join(rel).join("memory.events");
    let text = fs::read_to_string(&v1)
        .or_else(|_| fs::read_to_string(&v2))
        .unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("oom_kill ")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Removes a container's cgroup directories and then its parents while empty
/// (libcontainer's delete leaves the parents behind).
fn remove_cgroup(cgroups_path: &str) {
    for root in cgroup_roots() {
        let mut rel = Some(Path::new(cgroups_path.trim_start_matches('/')));
        while let Some(dir) = rel.filter(|r| !r.as_os_str().is_empty()) {
            match fs::remove_dir(root.join(dir)) {
                // Gone already (libcontainer removes the leaf in some controllers): go up.
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Not empty: another container still lives under this parent.
                Err(_) => break,
            }
            rel = dir.parent();
        }
    }
}

/// `outpost supervisor`: forks a detached supervisor for `run_dir` and returns
/// in the parent once it accepts connections. The child never returns.
///
/// Must be called before the process starts any thread (fork safety).
pub fn spawn_detached(run_dir: &Path) -> io::Result<()> {
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: the `supervisor` subcommand calls this before any thread exists,
    // so the child is a complete copy of a single-threaded process.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(ready_w);
            let mut byte = [0u8; 1];
            match File::from(ready_r).read(&mut byte) {
                Ok(1) => Ok(()),
                _ => Err(io::Error::other(
                    "the supervisor failed to start; its log says why",
                )),
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(ready_r);
            let _ = nix::unistd::setsid();
            // Hold no directory busy (a test's temp dir, an unmounted path).
            let _ = std::env::set_current_dir("/");
            let result = run(run_dir, move || {
                let _ = File::from(ready_w).write_all(b"1");
            });
            let code = match result {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("supervisor: {e}");
                    1
                }
            };
            std::process::exit(code)
        }
    }
}
