//! Pod network setup time: per pod, create its network namespace and attach
//! it to the bridge (IP allocation with fsync, veth pair, address, routes),
//! inside a throw-away "test host" namespace; then detach and remove. Prints
//! medians; run as root:
//!
//!     cargo bench -p outpost-net --bench pod_network [-- PODS] [IPAM_DIR]
//!
//! `IPAM_DIR` (an absolute path, default: a temp dir) holds the allocator's
//! file, which is fsync'd on every change: compare a disk with a tmpfs.
//!
//! Not a test: nothing here asserts a time. It does check that attaching
//! leaks no file descriptor (each attach opens netlink inside the pod).

use std::path::Path;
use std::time::{Duration, Instant};

use outpost_net::bridge::BridgeConfig;
use outpost_net::host::Host;
use outpost_net::ipam::{Ipam, PodRange, DEFAULT_QUARANTINE};
use outpost_net::netns;
use outpost_net::pod::PodNetwork;

fn main() {
    let pods: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50);
    let ipam_dir = std::env::args()
        .skip(1)
        .find(|a| a.starts_with('/'))
        .map(std::path::PathBuf::from);
    assert!(
        nix::unistd::geteuid().is_root(),
        "the pod network benchmark creates namespaces and links: run it as root"
    );
    // Like the agent: a multi-threaded runtime on a small machine.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(pods, ipam_dir));
}

async fn run(pods: usize, ipam_dir: Option<std::path::PathBuf>) {
    let work = tempfile::Builder::new()
        .prefix("outpost-bench-net-")
        .tempdir()
        .expect("tempdir");
    let host_ns = work.path().join("host");
    netns::create(&host_ns).await.expect("test host netns");
    let range: PodRange = "10.42.0.0/24".parse().expect("range");
    let ipam_dir = match ipam_dir {
        Some(d) => tempfile::Builder::new()
            .prefix("outpost-bench-ipam-")
            .tempdir_in(d)
            .expect("ipam dir"),
        None => tempfile::Builder::new()
            .prefix("outpost-bench-ipam-")
            .tempdir()
            .expect("ipam dir"),
    };
    let ipam_path = ipam_dir.path().join("ipam.json");
    let ipam = Ipam::open(&ipam_path, range, DEFAULT_QUARANTINE).expect("ipam");
    let host = Host::open(Some(&host_ns)).expect("netlink in the test host");
    let network = PodNetwork::new(
        host,
        BridgeConfig::new(range.gateway(), range.prefix_len()),
        ipam,
    )
    .expect("pod network");
    network.ensure_bridge().await.expect("bridge");

    let fds_before = open_fds();
    let (mut setup, mut attach) = (Vec::new(), Vec::new());
    let (mut detach, mut teardown) = (Vec::new(), Vec::new());
    let mut paths = Vec::new();
    for i in 0..pods {
        let path = work.path().join(format!("pod-{i}"));
        let owner = format!("bench-pod-{i}");
        let t0 = Instant::now();
        netns::create(&path).await.expect("pod netns");
        let t1 = Instant::now();
        network.attach(&owner, &path, 1500).await.expect("attach");
        let t2 = Instant::now();
        setup.push(t2 - t0);
        attach.push(t2 - t1);
        paths.push((owner, path));
    }
    // Let finished netlink connections be dropped by the runtime.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fds_after = open_fds();
    for (owner, path) in &paths {
        let t0 = Instant::now();
        network.detach(owner).await.expect("detach");
        detach.push(t0.elapsed());
        netns::remove(path).expect("remove pod netns");
        teardown.push(t0.elapsed());
    }
    drop(network);
    tokio::time::sleep(Duration::from_millis(50)).await;
    netns::remove(&host_ns).expect("remove test host netns");

    println!(
        "pod network, {pods} pods, ipam file {}, ms: median / p90 / max",
        ipam_path.display()
    );
    report("netns create + attach", &mut setup);
    report("attach only", &mut attach);
    report("detach only", &mut detach);
    report("detach + netns remove", &mut teardown);
    println!("open fds before {fds_before}, after {pods} attaches {fds_after}");
    assert!(
        fds_after <= fds_before + 1,
        "attach leaks file descriptors: {fds_before} -> {fds_after}"
    );
    leftovers(work.path());
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "  {what:<24} {:>7.2} / {:>7.2} / {:>7.2}",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(1.0))
    );
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn leftovers(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let ours = dir.display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&ours)),
        "a namespace mount survived under {ours}"
    );
}
