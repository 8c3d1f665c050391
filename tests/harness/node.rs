//! [`Node`]: one test's outpost world, driven through the CLI; [`Agent`]: a running
//! `outpost agent`.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::mount::MntFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{read_lossy, require_root_and_tools, unique_name, TestHost, OUTPOST};

/// How long one CLI command may take before the harness kills it and fails the test.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `spawn_agent` waits for `READY=1`.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `Agent::stop` waits after SIGTERM.
const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `Drop` waits for the supervisor to exit after `outpost killall`.
const SUPERVISOR_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// One outpost installation: temp dir with `state/` and `run/`, its own [`TestHost`],
/// and a unique prefix for container names (see [`Node::name`]).
///
/// `Drop` stops every container and pod sandbox (`outpost killall`), waits for the supervisor to
/// exit, then verifies that no mount under the temp dir and no cgroup named with this
/// node's prefix survived; leftovers are cleaned up by force and reported as a panic.
pub struct Node {
    /// The network namespace every outpost process of this node runs in.
    pub host: TestHost,
    root: PathBuf,
    prefix: String,
    registries: Mutex<Option<PathBuf>>,
    agents: Mutex<Vec<Arc<Mutex<Child>>>>,
    files: AtomicUsize,
    /// Removed last, after `Drop` unmounted everything under it.
    _dir: tempfile::TempDir,
}

impl Node {
    /// A node on a fresh test host.
    pub fn new() -> Node {
        Node::on(TestHost::new())
    }

    /// A node on a fresh test host with the busybox image imported as `name`
    /// (from a docker archive: no registry needed).
    pub fn with_busybox(name: &str) -> Node {
        let node = Node::new();
        let archive = node.dir().join("busybox.tar");
        super::ImageBuilder::busybox()
            .build()
            .docker_archive(&archive, name);
        node.ok(&["images", "import", archive.to_str().expect("utf-8 path")]);
        node
    }

    /// A node on an existing test host (for several nodes or registries sharing one).
    pub fn on(host: TestHost) -> Node {
        require_root_and_tools(&["ip", "nsenter", OUTPOST]);
        let dir = tempfile::Builder::new()
            .prefix("outpost-test-")
            .tempdir()
            .expect("create the node's temp dir");
        // Canonical, so it matches mount points in /proc/self/mountinfo.
        let root = dir.path().canonicalize().expect("canonicalize temp dir");
        std::fs::create_dir(root.join("state")).expect("create state dir");
        std::fs::create_dir(root.join("run")).expect("create run dir");
        Node {
            host,
            _dir: dir,
            root,
            prefix: unique_name("t"),
            registries: Mutex::new(None),
            agents: Mutex::new(Vec::new()),
            files: AtomicUsize::new(0),
        }
    }

    /// The node's temp dir (parent of `state/` and `run/`).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// `OUTPOST_STATE_DIR`.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// `OUTPOST_RUN_DIR`.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// `<state>/airgap`, created: the agent imports `*.tar` from here at start.
    pub fn airgap_dir(&self) -> PathBuf {
        let dir = self.state_dir().join("airgap");
        std::fs::create_dir_all(&dir).expect("create airgap dir");
        dir
    }

    /// `<dir>/manifests`, created: a local source for the agent (`file_source`).
    pub fn manifests_dir(&self) -> PathBuf {
        let dir = self.root.join("manifests");
        std::fs::create_dir_all(&dir).expect("create manifests dir");
        dir
    }

    /// This node's unique container-name prefix, e.g. `t-4242-7`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A container name unique to this node: `<prefix>-<suffix>`.
    ///
    /// Always name containers through this: `Drop` finds leaked cgroups by the prefix.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// Writes a registries.yaml (k3s shape) and points later commands at it through
    /// `OUTPOST_REGISTRIES`.
    pub fn registries_yaml(&self, text: &str) -> PathBuf {
        let path = self.fresh_path("registries", "yaml");
        std::fs::write(&path, text).expect("write registries.yaml");
        *self.registries.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.clone());
        path
    }

    /// `outpost ARGS...` as a command inside the test host with the node's `OUTPOST_*`
    /// environment, for callers who need more control than [`Node::outpost`].
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.host.command(OUTPOST);
        cmd.args(args)
            .env("OUTPOST_STATE_DIR", self.state_dir())
            .env("OUTPOST_RUN_DIR", self.run_dir())
            // Each node its own name: pods (and so their container ids and
            // cgroups) differ between nodes on this one machine.
            .env("OUTPOST_NODE_NAME", &self.prefix)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null());
        match &*self.registries.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(path) => cmd.env("OUTPOST_REGISTRIES", path),
            None => cmd.env_remove("OUTPOST_REGISTRIES"),
        };
        cmd
    }

    /// Runs `outpost ARGS...` to completion (killed and failed after 120 s).
    ///
    /// Output goes to files, not pipes, so a detached supervisor that inherits them
    /// cannot make this hang.
    pub fn outpost(&self, args: &[&str]) -> Output {
        output_with_timeout(&mut self.command(args), COMMAND_TIMEOUT)
    }

    /// Runs `outpost ARGS...`, asserts exit 0 and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.outpost(args);
        assert!(
            out.status.success(),
            "`outpost {}` failed ({}):\n{}",
            args.join(" "),
            out.status,
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `outpost ARGS...`, asserts a non-zero exit and returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.outpost(args);
        assert!(
            !out.status.success(),
            "`outpost {}` succeeded but should have failed:\n{}",
            args.join(" "),
            describe(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Polls `f` every 200 ms until it gives a value; after `timeout`, panics
    /// with `what` and what the agent reports (objects, events).
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if std::time::Instant::now() > deadline {
                let objects = self.outpost(&[
                    "get",
                    "pods,deploy,rs,svc,endpointslices",
                    "-A",
                    "-o",
                    "wide",
                ]);
                let events = self.outpost(&["get", "events", "-A", "--sort-by=.lastTimestamp"]);
                panic!(
                    "timed out waiting for {what}\n{}\nevents:\n{}",
                    String::from_utf8_lossy(&objects.stdout),
                    String::from_utf8_lossy(&events.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts `outpost agent EXTRA_ARGS...` and waits (30 s) for `READY=1` on its
    /// `NOTIFY_SOCKET`; fails with the agent's stderr if it exits or never gets ready.
    pub fn spawn_agent(&self, extra_args: &[&str]) -> Agent {
        let mut args = vec!["agent"];
        args.extend_from_slice(extra_args);
        self.spawn_notifying(self.command(&args))
    }

    /// Spawns any command the way [`Node::spawn_agent`] spawns the agent: own
    /// `NOTIFY_SOCKET`, output to files, wait for `READY=1`, killed with the node.
    /// For harness tests and fakes; real tests use `spawn_agent`.
    pub fn spawn_notifying(&self, mut cmd: Command) -> Agent {
        let socket_path = self.fresh_path("notify", "sock");
        let notify = UnixDatagram::bind(&socket_path).expect("bind NOTIFY_SOCKET");
        let stdout_path = self.fresh_path("agent", "stdout");
        let stderr_path = self.fresh_path("agent", "stderr");
        let stdout = std::fs::File::create(&stdout_path).expect("create agent stdout");
        let stderr = std::fs::File::create(&stderr_path).expect("create agent stderr");
        cmd.env("NOTIFY_SOCKET", &socket_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let pid = child.id() as i32;
        let child = Arc::new(Mutex::new(child));
        self.agents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&child));
        let agent = Agent {
            child,
            pid,
            notify,
            notifications: Mutex::new(Vec::new()),
            stdout: stdout_path,
            stderr: stderr_path,
        };
        agent.wait_notification("READY=1", AGENT_READY_TIMEOUT);
        agent
    }

    /// The supervisor's pid from `<run>/supervisor.pid`, if that process is alive and is
    /// outpost.
    pub fn supervisor_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.run_dir().join("supervisor.pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        is_live_outpost(pid).then_some(pid)
    }

    /// A new path in the node's temp dir: `<dir>/<stem>-<n>.<ext>`.
    fn fresh_path(&self, stem: &str, ext: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        self.root.join(format!("{stem}-{n}.{ext}"))
    }
}

impl Default for Node {
    fn default() -> Self {
        Node::new()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut notes = Vec::new();

        // Agents the test left running are clients of the supervisor: end them first.
        for agent in self
            .agents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let mut child = agent.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        // What a user would do: stop every container and pod sandbox (k3s-killall
        // style), then the supervisor goes away.
        let rm = {
            let mut cmd = self.command(&["killall"]);
            let deadline = Instant::now() + Duration::from_secs(60);
            try_output_until(&mut cmd, deadline)
        };
        let rm_failed = match &rm {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!("`outpost killall` failed:\n{}", describe(out))),
            Err(e) => Some(format!("`outpost killall`: {e}")),
        };
        let deadline = Instant::now() + SUPERVISOR_EXIT_TIMEOUT;
        while self.supervisor_pid().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }

        // Leaks: what outpost's own cleanup left behind.
        let mut leaks = Vec::new();
        if let Some(pid) = self.supervisor_pid() {
            leaks.push(format!(
                "supervisor pid {pid} still running {SUPERVISOR_EXIT_TIMEOUT:?} after `outpost killall`"
            ));
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let cgroups = node_cgroups(&self.prefix);
        if !cgroups.is_empty() {
            leaks.push(format!("cgroups left: {}", show_paths(&cgroups)));
        }
        for cgroup in &cgroups {
            if let Err(e) = remove_cgroup(cgroup) {
                notes.push(format!("cannot remove cgroup {}: {e}", cgroup.display()));
            }
        }
        let mounts = mounts_under(&self.root);
        if !mounts.is_empty() {
            leaks.push(format!("mounts left: {}", show_paths(&mounts)));
        }
        if let Err(e) = unmount_all_under(&self.root) {
            notes.push(e);
        }
        // After the forced cleanup nothing may remain, or the next run inherits it.
        let cgroups = node_cgroups(&self.prefix);
        if !cgroups.is_empty() {
            notes.push(format!(
                "cgroups survive forced cleanup: {}",
                show_paths(&cgroups)
            ));
        }

        if leaks.is_empty() && notes.is_empty() {
            // Nothing leaked, so the test stands; still show why cleanup complained.
            if let Some(rm_failed) = rm_failed {
                eprintln!("node {}: {rm_failed}", self.prefix);
            }
            return;
        }
        let mut msg = format!(
            "node {} ({}) was not left clean:\n- {}",
            self.prefix,
            self.root.display(),
            leaks
                .iter()
                .chain(&notes)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n- ")
        );
        if let Some(rm_failed) = rm_failed {
            msg.push_str(&format!("\n{rm_failed}"));
        }
        if std::thread::panicking() {
            eprintln!("{msg}");
        } else {
            panic!("{msg}");
        }
    }
}

/// A running `outpost agent` (see [`Node::spawn_agent`]); killed in `Drop` if still up.
pub struct Agent {
    child: Arc<Mutex<Child>>,
    pid: i32,
    notify: UnixDatagram,
    notifications: Mutex<Vec<String>>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Agent {
    /// The agent's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends a signal to the agent.
    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.pid), signal);
    }

    /// SIGKILL, then waits; returns the exit status.
    pub fn sigkill(&self) -> ExitStatus {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        child.wait().expect("wait for the agent")
    }

    /// SIGTERM, then waits up to 30 s (fails with the agent's stderr after that).
    pub fn stop(&self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + AGENT_STOP_TIMEOUT;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if Instant::now() > deadline {
                self.sigkill();
                panic!(
                    "outpost agent did not exit {AGENT_STOP_TIMEOUT:?} after SIGTERM; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status if the agent has exited.
    pub fn try_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.try_wait().expect("poll the agent")
    }

    /// Everything the agent wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout)
    }

    /// Everything the agent wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr)
    }

    /// Every sd_notify line received so far (`READY=1`, `STATUS=...`, ...).
    pub fn notifications(&self) -> Vec<String> {
        self.notifications
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for an sd_notify line equal to `line` (e.g. `STOPPING=1`) and returns it;
    /// fails with the agent's stderr if the agent exits or `timeout` passes.
    pub fn wait_notification(&self, line: &str, timeout: Duration) -> String {
        if self.notifications().iter().any(|l| l == line) {
            return line.to_owned();
        }
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            self.notify
                .set_read_timeout(Some(Duration::from_millis(100)))
                .expect("set NOTIFY_SOCKET timeout");
            match self.notify.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let mut seen = false;
                    let mut notifications =
                        self.notifications.lock().unwrap_or_else(|e| e.into_inner());
                    for l in text.lines().filter(|l| !l.is_empty()) {
                        seen |= l == line;
                        notifications.push(l.to_owned());
                    }
                    if seen {
                        return line.to_owned();
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read NOTIFY_SOCKET: {e}"),
            }
            if let Some(status) = self.try_status() {
                panic!(
                    "outpost agent exited ({status}) before sending {line}; stderr:\n{}",
                    self.stderr()
                );
            }
            if Instant::now() > deadline {
                self.sigkill();
                panic!(
                    "outpost agent sent no {line} within {timeout:?} (got {:?}); stderr:\n{}",
                    self.notifications(),
                    self.stderr()
                );
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cmd` with stdout/stderr in anonymous files; kills it and panics after `timeout`.
pub(crate) fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    try_output_until(cmd, Instant::now() + timeout).unwrap_or_else(|e| panic!("{e}"))
}

fn try_output_until(cmd: &mut Command, deadline: Instant) -> Result<Output, String> {
    use std::io::{Read, Seek};
    let capture = || -> Result<std::fs::File, String> {
        tempfile::tempfile().map_err(|e| format!("create capture file: {e}"))
    };
    let (mut out, mut err) = (capture()?, capture()?);
    let clone = |f: &std::fs::File| f.try_clone().map_err(|e| format!("dup capture file: {e}"));
    cmd.stdout(clone(&out)?).stderr(clone(&err)?);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait {cmd:?}: {e}"))? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let read = |f: &mut std::fs::File| {
        let mut bytes = Vec::new();
        let _ = f.rewind().and_then(|()| f.read_to_end(&mut bytes));
        bytes
    };
    let (stdout, stderr) = (read(&mut out), read(&mut err));
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "{cmd:?} did not finish in time and was killed\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )),
    }
}

/// stdout and stderr of a finished command, for failure messages.
pub(crate) fn describe(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn show_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// True if `pid` is alive (not a zombie) and runs the outpost binary.
fn is_live_outpost(pid: i32) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
        return false;
    };
    // State is the first field after the parenthesized command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    let exe = std::fs::read_link(proc_dir.join("exe")).unwrap_or_default();
    exe.starts_with(OUTPOST)
        || String::from_utf8_lossy(&cmdline)
            .split('\0')
            .next()
            .is_some_and(|argv0| argv0.contains("outpost"))
}

/// Mount points at or under `dir` (from /proc/self/mountinfo), deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

/// Decodes mountinfo's octal escapes (`\040` for space, ...).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(value) = u8::from_str_radix(digits, 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts everything at or under `dir`, deepest first, until nothing is left.
pub(crate) fn unmount_all_under(dir: &Path) -> Result<(), String> {
    for _ in 0..10 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return Ok(());
        }
        for mount in mounts {
            let _ = nix::mount::umount2(&mount, MntFlags::MNT_DETACH);
        }
    }
    let left = mounts_under(dir);
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "mounts survive forced unmount: {}",
            show_paths(&left)
        ))
    }
}

/// Cgroup dirs `/sys/fs/cgroup[/<controller>]/outpost/<prefix>-*`.
pub(crate) fn node_cgroups(prefix: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut parents = vec![root.join("outpost")];
    if let Ok(entries) = std::fs::read_dir(root) {
        parents.extend(entries.flatten().map(|e| e.path().join("outpost")));
    }
    let want = format!("{prefix}-");
    let mut found = Vec::new();
    for parent in parents {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&want)
                && entry.file_type().is_ok_and(|t| t.is_dir())
            {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// Kills every process in a cgroup tree and removes its dirs, deepest first.
fn remove_cgroup(dir: &Path) -> Result<(), String> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path())?;
            }
        }
    }
    // A frozen process cannot die: thaw first (v1 freezer, v2 cgroup.freeze).
    let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
    let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("processes {pids:?} do not die"));
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // rmdir can briefly fail with EBUSY while the last task is being reaped.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e.to_string()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
