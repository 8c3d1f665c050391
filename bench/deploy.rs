//! Deployment start latency: from `apply` of a 3-replica Deployment to all
//! its pods Ready, outpost vs `podman kube play` of the same YAML on the same
//! image (busybox httpd, no probes: podman has no readiness gate, so Ready
//! means "every container running" on both sides). Prints medians and the
//! ratio; run as root with podman installed (Debian's; see NOTES.md for its
//! containers.conf):
//!
//!     cargo bench -p outpost --bench deploy [-- ITERATIONS]
//!
//! The agent and podman run in the bench's own network namespace, as in the
//! tests: podman's bridge and netavark's nftables tables go with it. Not a
//! test: nothing here asserts a time.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{median, ms, run, wait_until, BenchAgent, Cleanup};

const NAME: &str = "localhost/outpost-bench/busybox:1";

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    assert!(
        Command::new("podman").arg("--version").output().is_ok(),
        "podman is missing: apt-get install podman (see NOTES.md for its containers.conf)"
    );
    let bench = BenchAgent::start(NAME);
    let dir = bench.dir.path();
    let archive = bench.archive();
    let manifest = dir.join("deploy.yaml");
    std::fs::write(&manifest, DEPLOYMENT).expect("write manifest");
    let ready = || {
        bench
            .get("deploy", "bench")
            .is_some_and(|d| d["status"]["readyReplicas"] == 3)
    };
    let mut ours = Vec::new();
    for _ in 0..iterations {
        let t0 = Instant::now();
        run(&mut bench.outpost(&["apply", "-f", manifest.to_str().expect("utf-8")]));
        wait_until(Duration::from_secs(60), ready);
        ours.push(t0.elapsed());
        run(&mut bench.outpost(&["delete", "-f", manifest.to_str().expect("utf-8")]));
        wait_until(Duration::from_secs(60), || {
            bench
                .outpost(&["get", "pods", "-o", "name"])
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
        });
    }

    // podman: the same YAML and image, its default (rootful, bridge) network,
    // inside the bench's netns.
    let work = tempfile::tempdir().expect("tempdir");
    let podman_conf = work.path().join("containers.conf");
    std::fs::write(&podman_conf, PODMAN_CONF).expect("write containers.conf");
    let podman = |args: &[&str]| -> Command {
        let mut c = bench.inside("podman");
        c.args(args).env("CONTAINERS_CONF", &podman_conf);
        c
    };
    // `kube play` makes this network's configuration the first time: remove it if we made it.
    let kube_network = "podman-default-kube-network";
    let had_network = podman(&["network", "exists", kube_network])
        .status()
        .is_ok_and(|s| s.success());
    let _network = (!had_network).then(|| {
        Cleanup(vec![
            "podman".into(),
            "network".into(),
            "rm".into(),
            "-f".into(),
            kube_network.into(),
        ])
    });
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
