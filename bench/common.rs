//! What the agent benchmarks share: a busybox image, an agent in its own
//! network namespace (as in the tests), and small timing helpers.
//!
//! Each benchmark uses some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// An `outpost agent` in its own netns with an empty local source and the
/// busybox image imported as `image`. Stopped, killall'ed and its netns
/// deleted on drop.
pub struct BenchAgent {
    pub netns: String,
    pub dir: tempfile::TempDir,
    exe: PathBuf,
    agent: Option<Child>,
}

impl BenchAgent {
    pub fn start(image: &str) -> BenchAgent {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this benchmark runs containers and namespaces: run it as root"
        );
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_outpost"));
        let dir = tempfile::Builder::new()
            .prefix("outpost-bench-")
            .tempdir()
            .expect("tempdir");
        let netns = format!("outpost-bench-{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &netns]));
        let mut bench = BenchAgent {
            netns,
            dir,
            exe,
            agent: None,
        };
        for d in ["state", "run", "manifests"] {
            std::fs::create_dir_all(bench.dir.path().join(d)).expect("mkdir");
        }
        let archive = bench.archive();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/busybox-image.sh");
        run(Command::new(&script).arg(&archive).arg(image));
        run(&mut bench.outpost(&["images", "import", archive.to_str().expect("utf-8")]));
        let source = format!("file://{}", bench.dir.path().join("manifests").display());
        let child = bench
            .outpost(&["agent", "--source", &source])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the agent");
        bench.agent = Some(child);
        wait_until(Duration::from_secs(30), || {
            bench
                .outpost(&["get", "ns"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        bench
    }

    /// The busybox image as an OCI archive (for other runtimes to load too).
    pub fn archive(&self) -> PathBuf {
        self.dir.path().join("busybox.tar")
    }

    /// `outpost ARGS` for this agent, inside its netns.
    pub fn outpost(&self, args: &[&str]) -> Command {
        let mut c = self.inside(&self.exe);
        c.args(args)
            .env("OUTPOST_STATE_DIR", self.dir.path().join("state"))
            .env("OUTPOST_RUN_DIR", self.dir.path().join("run"))
            .env("OUTPOST_MANIFESTS", self.dir.path().join("manifests"));
        c
    }

    /// Any program inside the agent's netns.
    pub fn inside(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.netns))
            .arg(program);
        c
    }

    /// `outpost get KIND NAME -o json`, when it answers.
    pub fn get(&self, kind: &str, name: &str) -> Option<serde_json::Value> {
        let out = self
            .outpost(&["get", kind, name, "-o", "json"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }
}

impl Drop for BenchAgent {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(agent.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = agent.wait();
        }
        let _ = self.outpost(&["killall"]).output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn median<T: PartialOrd + Copy>(v: &mut [T]) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    v[v.len() / 2]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs a command when dropped (cleanup even when the bench panics).
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(&self.0[0]).args(&self.0[1..]).output();
    }
}
