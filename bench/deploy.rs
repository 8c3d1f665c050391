//! Deployment start latency: from `apply` of a 3-replica Deployment to all
//! its pods Ready, outpost vs `podman kube play` of the same YAML on the same
//! image (busybox httpd, no probes: podman has no readiness gate, so Ready
//! means "every container running" on both sides). Prints medians and the
//! ratio; run as root with podman installed (Debian's; see NOTES.md for its
//! containers.conf):
//!
//!     cargo bench -p outpost --bench deploy [-- ITERATIONS]
//!
//! The agent runs in its own network namespace, as in the tests. Not a
//! test: nothing here asserts a time.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const NAME: &str = "localhost/outpost-bench/busybox:1";

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    assert!(
        nix::unistd::geteuid().is_root(),
        "the deploy benchmark runs containers: run it as root"
    );
    assert!(
        Command::new("podman").arg("--version").output().is_ok(),
        "podman is missing: apt-get install podman (see NOTES.md for its containers.conf)"
    );
    let exe = Path::new(env!("CARGO_BIN_EXE_outpost"));
    let work = tempfile::Builder::new()
        .prefix("outpost-bench-")
        .tempdir()
        .expect("tempdir");
    let dir = work.path();
    let archive = dir.join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/busybox-image.sh");
    run(Command::new(&script).arg(&archive).arg(NAME));
    let manifest = dir.join("deploy.yaml");
    std::fs::write(&manifest, DEPLOYMENT).expect("write manifest");

    // outpost: an agent in its own netns with an empty local source.
    let netns = format!("outpost-bench-{}", std::process::id());
    run(Command::new("ip").args(["netns", "add", &netns]));
    let _netns = Cleanup(vec![
        "ip".into(),
        "netns".into(),
        "del".into(),
        netns.clone(),
    ]);
    let (state, run_dir, source) = (dir.join("state"), dir.join("run"), dir.join("manifests"));
    for d in [&state, &run_dir, &source] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let outpost = |args: &[&str]| -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{netns}"))
            .arg(exe)
            .args(args)
            .env("OUTPOST_STATE_DIR", &state)
            .env("OUTPOST_RUN_DIR", &run_dir)
            .env("OUTPOST_MANIFESTS", &source);
        c
    };
    run(&mut outpost(&[
        "images",
        "import",
        archive.to_str().expect("utf-8"),
    ]));
    let mut agent = outpost(&["agent", "--source", &format!("file://{}", source.display())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    let _killall = Cleanup(vec![
        "env".into(),
        format!("OUTPOST_STATE_DIR={}", state.display()),
        format!("OUTPOST_RUN_DIR={}", run_dir.display()),
        "nsenter".into(),
        format!("--net=/run/netns/{netns}"),
        exe.display().to_string(),
        "killall".into(),
    ]);
    wait_until(Duration::from_secs(30), || {
        outpost(&["get", "ns"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let ready = |outpost: &dyn Fn(&[&str]) -> Command| {
        let out = outpost(&["get", "deploy", "bench", "-o", "json"]).output();
        out.ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .is_some_and(|d| d["status"]["readyReplicas"] == 3)
    };
    let mut ours = Vec::new();
    for _ in 0..iterations {
        let t0 = Instant::now();
        run(&mut outpost(&[
            "apply",
            "-f",
            manifest.to_str().expect("utf-8"),
        ]));
        wait_until(Duration::from_secs(60), || ready(&outpost));
        ours.push(t0.elapsed());
        run(&mut outpost(&[
            "delete",
            "-f",
            manifest.to_str().expect("utf-8"),
        ]));
        wait_until(Duration::from_secs(60), || {
            outpost(&["get", "pods", "-o", "name"])
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
        });
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = agent.wait();

    // podman: the same YAML and image, its default (rootful, bridge) network.
    let podman_conf = dir.join("containers.conf");
    std::fs::write(&podman_conf, PODMAN_CONF).expect("write containers.conf");
    let podman = |args: &[&str]| -> Command {
        let mut c = Command::new("podman");
        c.args(args).env("CONTAINERS_CONF", &podman_conf);
        c
    };
    run(&mut podman(&[
        "load",
        "-q",
        "-i",
        archive.to_str().expect("utf-8"),
    ]));
    let _image = Cleanup(vec![
        "podman".into(),
        "rmi".into(),
        "-f".into(),
        NAME.into(),
    ]);
    let mut theirs = Vec::new();
    for _ in 0..iterations {
        let t0 = Instant::now();
        run(&mut podman(&[
            "kube",
            "play",
            "-q",
            manifest.to_str().expect("utf-8"),
        ]));
        wait_until(Duration::from_secs(60), || {
            podman(&[
                "ps",
                "--filter",
                "label=app=bench",
                "--filter",
                "status=running",
                "-q",
            ])
            .output()
            .is_ok_and(|o| {
                o.stdout
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count()
                    >= 3
            })
        });
        theirs.push(t0.elapsed());
        run(&mut podman(&[
            "kube",
            "down",
            manifest.to_str().expect("utf-8"),
        ]));
    }

    let (a, b) = (median(&mut ours), median(&mut theirs));
    println!("apply → 3/3 Ready, median of {iterations}:");
    println!("  outpost             {:8.1} ms", ms(a));
    println!("  podman kube play    {:8.1} ms", ms(b));
    println!("  ratio outpost/podman {:.2} (goal ≤ 0.25)", ms(a) / ms(b));
}

/// The Deployment both run: busybox httpd, three replicas.
const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: bench
  labels: {app: bench}
spec:
  replicas: 3
  selector:
    matchLabels: {app: bench}
  template:
    metadata:
      labels: {app: bench}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: localhost/outpost-bench/busybox:1
        imagePullPolicy: Never
        command: [httpd, -f, -p, "8080", -h, /var/www]
"#;

/// What podman needs on this machine (NOTES.md).
const PODMAN_CONF: &str = "[engine]\nruntime = \"runc\"\n[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n";

fn run(cmd: &mut Command) -> Output {
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

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs a command when dropped (cleanup even when the bench panics).
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(&self.0[0]).args(&self.0[1..]).output();
    }
}
