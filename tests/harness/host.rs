//! [`TestHost`]: a network namespace standing in for a machine of its own.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{require_root_and_tools, unique_name};

/// `ip netns add` makes `/run/netns` a shared mount the first time: concurrent first calls
/// can stack mounts, so namespace creation and deletion are serialized in this process.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// A named network namespace (`/run/netns/opt-<pid>-<n>`) with only `lo` up.
///
/// Cheap to clone: the namespace is deleted when the last clone is dropped, after every
/// process still inside it has been killed. Everything a test runs (outpost, registries,
/// in-process servers and clients) lives in one, so traffic to 127.0.0.1 stays inside.
#[derive(Clone)]
pub struct TestHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    name: String,
    next_port: AtomicU16,
}

impl TestHost {
    /// Creates the namespace and brings `lo` up; panics if not root or `ip`/`nsenter` lack.
    pub fn new() -> TestHost {
        require_root_and_tools(&["ip", "nsenter"]);
        let name = unique_name("opt");
        {
            let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            run_ok(Command::new("ip").args(["netns", "add", &name]));
        }
        let host = TestHost {
            inner: Arc::new(HostInner {
                name,
                next_port: AtomicU16::new(5000),
            }),
        };
        run_ok(Command::new("ip").args(["-n", host.name(), "link", "set", "lo", "up"]));
        host
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `/run/netns/<name>`.
    pub fn netns_path(&self) -> PathBuf {
        netns_path(self.name())
    }

    /// A TCP port not handed out before on this host (namespaces do not share ports, so
    /// counting from 5000 is enough; ephemeral binds use 32768 and up).
    pub fn free_port(&self) -> u16 {
        self.inner.next_port.fetch_add(1, Ordering::Relaxed)
    }

    /// A command running `program` inside this host's network namespace.
    ///
    /// Uses `nsenter --net` (which execs the program: the child's pid is the program's),
    /// not `ip netns exec`, which also unshares the mount namespace and would hide mounts.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns_path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs `f` on a fresh thread that has entered this host's network namespace.
    ///
    /// Sockets created inside `f` stay in the namespace for their whole life, whichever
    /// thread uses them later. Panics in `f` propagate to the caller.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.enter_current_thread();
                    f()
                })
                .join()
        })
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Moves the calling thread into this host's network namespace, for good.
    ///
    /// Only for threads the harness owns (never the test's own thread).
    pub(crate) fn enter_current_thread(&self) {
        let path = self.netns_path();
        let ns = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("cannot open netns {}: {e}", path.display()));
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("cannot enter netns {}: {e}", path.display()));
    }

    /// Pids of the processes inside this host (`ip netns pids`).
    pub fn pids(&self) -> Vec<i32> {
        netns_pids(self.name())
    }
}

impl Default for TestHost {
    fn default() -> Self {
        TestHost::new()
    }
}

impl std::fmt::Debug for TestHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TestHost").field(&self.inner.name).finish()
    }
}

impl Drop for HostInner {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        let path = netns_path(&self.name);
        let inode = std::fs::metadata(&path).map(|m| m.ino()).ok();

        // Kill whatever is still inside (agents, registries, strays) and wait for it.
        let me = std::process::id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids: Vec<i32> = netns_pids(&self.name)
                .into_iter()
                .filter(|&p| p != me)
                .collect();
            if pids.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                problems.push(format!("processes still in netns after SIGKILL: {pids:?}"));
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }

        {
            let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            let out = Command::new("ip")
                .args(["netns", "del", &self.name])
                .stdin(Stdio::null())
                .output();
            match out {
                Ok(out) if out.status.success() => {}
                Ok(out) => problems.push(format!(
                    "ip netns del {} failed: {}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => problems.push(format!("cannot run ip netns del: {e}")),
            }
        }
        if path.exists() {
            problems.push(format!("{} still exists", path.display()));
        }
        // A deleted name is not enough: no thread may still hold the namespace itself.
        if let Some(inode) = inode {
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                let holders = threads_in_netns(inode);
                if holders.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    problems.push(format!(
                        "netns {} (inode {inode}) still held by tasks {holders:?}",
                        self.name
                    ));
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        if !problems.is_empty() {
            let msg = format!("test host {} cleanup: {}", self.name, problems.join("; "));
            if std::thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}

fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

fn netns_pids(name: &str) -> Vec<i32> {
    let Ok(out) = Command::new("ip")
        .args(["netns", "pids", name])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Tasks (`pid/tid`) whose network namespace is the one with this inode.
fn threads_in_netns(inode: u64) -> Vec<String> {
    let want = format!("net:[{inode}]");
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for proc_entry in procs.flatten() {
        let pid = proc_entry.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(proc_entry.path().join("task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let link = std::fs::read_link(task.path().join("ns/net"));
            if link.is_ok_and(|l| l.as_os_str() == want.as_str()) {
                found.push(format!(
                    "{}/{}",
                    pid.to_string_lossy(),
                    task.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// Runs a setup command to completion, panicking with its output if it fails.
pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
