//! Container start latency: `true` from create to exit, through outpost's
//! runtime (supervisor already up, as under a running agent), through the
//! `outpost ctr run --rm` CLI, and through `runc run` and `crun run` on a copy of
//! the same rootfs. Prints medians and ratios; run as root:
//!
//!     cargo bench -p outpost --bench start [-- ITERATIONS]
//!
//! Not a test: nothing here asserts a time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_runtime::container::spec::{ContainerSpec, Namespace, NamespaceKind};
use outpost_runtime::container::{LogConfig, Runtime};
use outpost_runtime::image::store::Store;

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    assert!(
        nix::unistd::geteuid().is_root(),
        "the start benchmark runs containers: run it as root"
    );
    let exe = Path::new(env!("CARGO_BIN_EXE_outpost"));
    let work = tempfile::Builder::new()
        .prefix("outpost-bench-")
        .tempdir()
        .expect("tempdir");
    let (state, run) = (work.path().join("state"), work.path().join("run"));
    // The run dir is tmpfs in production (/run/outpost): the same here.
    let _run_mount = TmpfsMount::new(&run);
    let archive = work.path().join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/busybox-image.sh");
    let status = Command::new(&script)
        .arg(&archive)
        .status()
        .expect("run examples/busybox-image.sh");
    assert!(
        status.success(),
        "building the busybox image failed (needs umoci, skopeo, busybox-static)"
    );
    let store = Store::open(&state).expect("store");
    let record = outpost_runtime::image::import::import(&store, &archive, false)
        .expect("import")
        .remove(0);
    let rootfs = store.rootfs(&record).expect("rootfs");
    let runtime = Runtime::new(&state, &run, exe);
    runtime.ping().expect("start the supervisor");

    // outpost, library: create + start + wait (start→exit), then delete.
    let mut lib = Vec::new();
    let mut lib_cycle = Vec::new();
    for i in 0..iterations {
        let id = format!("bench-{i}");
        let spec = ContainerSpec {
            args: Some(vec!["true".into()]),
            namespaces: [
                NamespaceKind::Pid,
                NamespaceKind::Ipc,
                NamespaceKind::Uts,
                NamespaceKind::Mount,
                NamespaceKind::Network,
            ]
            .into_iter()
            .map(|kind| Namespace { kind, path: None })
            .collect(),
            cgroups_path: Runtime::cgroups_path(&id),
            ..ContainerSpec::default()
        };
        let log = LogConfig {
            path: work.path().join(format!("logs/{id}.log")),
            max_size: 1 << 20,
            max_files: 1,
        };
        let t0 = Instant::now();
        runtime.create(&id, &spec, &rootfs, &log).expect("create");
        runtime.start(&id).expect("start");
        let exit = runtime.wait(&id, None).expect("wait").expect("exit");
        let t1 = Instant::now();
        runtime.delete(&id, true).expect("delete");
        lib_cycle.push(t0.elapsed());
        lib.push(t1 - t0);
        assert_eq!(exit.code, 0);
    }

    // outpost, CLI: what a user runs (process start, store lookup, run, wait, rm).
    let mut cli = Vec::new();
    for i in 0..iterations {
        let t0 = Instant::now();
        let out = Command::new(exe)
            .args([
                "ctr",
                "run",
                "--rm",
                "--pull",
                "never",
                "--name",
                &format!("cli-{i}"),
                "busybox",
                "--",
                "true",
            ])
            .env("OUTPOST_STATE_DIR", &state)
            .env("OUTPOST_RUN_DIR", &run)
            .output()
            .expect("outpost ctr run");
        cli.push(t0.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // runc and crun on a copy of the same rootfs (their own bundle, default spec).
    let bundle = work.path().join("bundle");
    copy_layers(&rootfs.layers, &bundle.join("rootfs"));
    let status = Command::new("runc")
        .arg("spec")
        .current_dir(&bundle)
        .status()
        .expect("runc spec");
    assert!(status.success());
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).expect("read")).expect("json");
    config["process"]["args"] = serde_json::json!(["true"]);
    config["process"]["terminal"] = serde_json::json!(false);
    std::fs::write(&config_path, serde_json::to_vec(&config).expect("json")).expect("write");
    let runc = time_runs(iterations, |i| {
        Command::new("runc")
            .args([
                "--root",
                &work.path().join("runc").to_string_lossy(),
                "run",
                "--bundle",
            ])
            .arg(&bundle)
            .arg(format!("runc-{i}"))
            .status()
    });
    let crun = crun_runs(iterations, &bundle, work.path());

    let median_ms = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1000.0
    };
    let runc_ms = median_ms(&runc);
    println!("container start->exit of `true`, median of {iterations} (ms); ratio = x / runc run");
    println!("{:<44} {:>8} {:>8}", "what", "median", "ratio");
    let row = |name: &str, ms: f64| println!("{name:<44} {ms:>8.1} {:>8.2}", ms / runc_ms);
    row("outpost runtime: create+start+wait", median_ms(&lib));
    row(
        "outpost runtime: create+start+wait+delete",
        median_ms(&lib_cycle),
    );
    row("outpost ctr run --rm (CLI process)", median_ms(&cli));
    row("runc run (create+start+wait+delete)", runc_ms);
    match crun {
        Some(c) => row(
            "crun run (private mount ns, no cgroup2 mount)",
            median_ms(&c),
        ),
        None => println!("crun run: refused on this host (see NOTES.md)"),
    }
    let _ = runtime.clean_orphans(Duration::ZERO);
}

/// A tmpfs mounted for the benchmark's lifetime.
struct TmpfsMount(PathBuf);

impl TmpfsMount {
    fn new(at: &Path) -> TmpfsMount {
        std::fs::create_dir_all(at).expect("mkdir run dir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(at)
            .status()
            .expect("mount");
        assert!(status.success(), "mount tmpfs at {}", at.display());
        TmpfsMount(at.to_path_buf())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn time_runs(
    n: usize,
    mut run: impl FnMut(usize) -> std::io::Result<std::process::ExitStatus>,
) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let t0 = Instant::now();
            let status = run(i).expect("run");
            assert!(status.success(), "run {i} failed: {status}");
            t0.elapsed()
        })
        .collect()
}

/// crun 1.8 refuses hybrid cgroup hosts unless the cgroup2 mount is hidden: run
/// it inside a private mount namespace where that mount is gone. One shell does
/// every run and reports nanoseconds, so the namespace setup is not timed.
fn crun_runs(n: usize, bundle: &Path, work: &Path) -> Option<Vec<Duration>> {
    let root = work.join("crun");
    let script = format!(
        "umount /sys/fs/cgroup/unified 2>/dev/null; for i in $(seq 1 {n}); do t0=$(date +%s%N); crun --root {root} run --bundle {bundle} crun-$i >/dev/null 2>&1 || exit 1; t1=$(date +%s%N); echo $((t1-t0)); done",
        root = root.display(),
        bundle = bundle.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let times: Vec<Duration> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .map(Duration::from_nanos)
        .collect();
    (times.len() == n).then_some(times)
}

/// Merges the image's unpacked layers into one directory (the busybox image has one).
fn copy_layers(layers: &[PathBuf], dest: &Path) {
    std::fs::create_dir_all(dest).expect("mkdir");
    for layer in layers {
        let status = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", layer.display()))
            .arg(dest)
            .status()
            .expect("cp");
        assert!(status.success());
    }
}
