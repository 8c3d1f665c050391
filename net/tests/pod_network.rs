//! The pod network for real, as root: each test makes its own "test host"
//! network namespace, puts the bridge there, attaches pod namespaces, and
//! looks at the result as a user would (`ip`, `ping`, `/proc/sys` through
//! `nsenter`). Nothing touches the real host's network; every namespace is
//! removed on drop and the test checks that no mount of it is left.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use outpost_net::bridge::{self, BridgeConfig};
use outpost_net::host::Host;
use outpost_net::ipam::{Ipam, PodRange, DEFAULT_QUARANTINE};
use outpost_net::netns;
use outpost_net::pod::{host_veth_name, PodNetwork};
use serde_json::Value;

/// A test host namespace and pod namespaces under one temp dir.
struct TestNet {
    dir: tempfile::TempDir,
    host_ns: PathBuf,
    pods: Vec<PathBuf>,
}

impl TestNet {
    async fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests create network namespaces, bridges and veths: run them as root"
        );
        for (tool, args) in [
            ("nsenter", "--version"),
            ("ip", "-V"),
            ("busybox", "--help"),
        ] {
            let found = Command::new(tool).arg(args).output().is_ok();
            assert!(
                found,
                "{tool} is needed (util-linux, iproute2, busybox-static)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("outpost-net-test-")
            .tempdir()
            .expect("tempdir");
        let host_ns = dir.path().join("host");
        netns::create(&host_ns)
            .await
            .expect("create test host netns");
        TestNet {
            dir,
            host_ns,
            pods: Vec::new(),
        }
    }

    async fn pod_ns(&mut self, name: &str) -> PathBuf {
        let path = self.dir.path().join(format!("pod-{name}"));
        netns::create(&path).await.expect("create pod netns");
        self.pods.push(path.clone());
        path
    }

    fn ipam_path(&self) -> PathBuf {
        self.dir.path().join("ipam.json")
    }

    /// Removes the namespaces and checks no mount under the temp dir survives.
    fn cleanup(mut self) {
        self.remove_all();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let ours = self.dir.path().display().to_string();
        assert!(
            !mounts.lines().any(|l| l.contains(&ours)),
            "a namespace mount survived under {ours}"
        );
    }

    fn remove_all(&mut self) {
        for p in self.pods.drain(..) {
            let _ = netns::remove(&p);
        }
        let _ = netns::remove(&self.host_ns);
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.remove_all();
    }
}

fn range() -> PodRange {
    "10.42.0.0/24".parse().expect("range")
}

fn network(net: &TestNet) -> PodNetwork {
    let host = Host::open(Some(&net.host_ns)).expect("open netlink in the test host");
    let range = range();
    let ipam = Ipam::open(&net.ipam_path(), range, DEFAULT_QUARANTINE).expect("ipam");
    let config = BridgeConfig::new(range.gateway(), range.prefix_len());
    PodNetwork::new(host, config, ipam).expect("pod network")
}

/// Runs `cmd` inside the namespace at `ns`.
fn run_in(ns: &Path, cmd: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(cmd)
        .output()
        .expect("run nsenter")
}

/// `ip -j ARGS` inside `ns`, parsed; panics with stderr on failure.
fn ip_json(ns: &Path, args: &[&str]) -> Value {
    let mut cmd = vec!["ip", "-j"];
    cmd.extend_from_slice(args);
    let out = run_in(ns, &cmd);
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ip -j output")
}

fn link_exists(ns: &Path, ifname: &str) -> bool {
    run_in(ns, &["ip", "link", "show", "dev", ifname])
        .status
        .success()
}

/// The IPv4 addresses (`ip/prefix`) of `ifname` in `ns`.
fn addresses(ns: &Path, ifname: &str) -> Vec<String> {
    let v = ip_json(ns, &["-4", "addr", "show", "dev", ifname]);
    v[0]["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| format!("{}/{}", i["local"].as_str().unwrap_or("?"), i["prefixlen"]))
                .collect()
        })
        .unwrap_or_default()
}

fn default_route(ns: &Path) -> Value {
    ip_json(ns, &["-4", "route", "show", "default"])
}

fn ping(from: &Path, to: Ipv4Addr) -> bool {
    let out = run_in(from, &["busybox", "ping", "-c1", "-W2", &to.to_string()]);
    out.status.success()
}

fn sysctl(ns: &Path, key: &str) -> String {
    let out = run_in(
        ns,
        &["cat", &format!("/proc/sys/{}", key.replace('.', "/"))],
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn two_pods_reach_each_other_through_the_bridge() {
    let mut net = TestNet::new().await;
    let p1 = net.pod_ns("1").await;
    let p2 = net.pod_ns("2").await;
    let pods = network(&net);

    // The bridge: made once, then nothing to do.
    let first = pods.ensure_bridge().await.expect("bridge");
    assert!(first.fixed.contains(&"created".to_string()), "{first:?}");
    let again = pods.ensure_bridge().await.expect("bridge again");
    assert_eq!(
        again.fixed,
        Vec::<String>::new(),
        "second run changes nothing"
    );
    assert_eq!(again.index, first.index);

    let a1 = pods.attach("pod-1", &p1, 1500).await.expect("attach pod-1");
    let a2 = pods.attach("pod-2", &p2, 1500).await.expect("attach pod-2");
    assert_eq!(a1.ip, Ipv4Addr::new(10, 42, 0, 2));
    assert_eq!(a2.ip, Ipv4Addr::new(10, 42, 0, 3));
    assert_eq!(
        (a1.gateway, a1.prefix_len),
        (Ipv4Addr::new(10, 42, 0, 1), 24)
    );
    assert_eq!(a1.host_veth, host_veth_name("pod-1"));

    // Inside the pods: address, up, default route via the bridge.
    for (ns, addr) in [(&p1, &a1), (&p2, &a2)] {
        assert_eq!(addresses(ns, "eth0"), vec![format!("{}/24", addr.ip)]);
        let link = ip_json(ns, &["link", "show", "dev", "eth0"]);
        assert_eq!(link[0]["operstate"], "UP", "{link}");
        assert_eq!(link[0]["mtu"], 1500, "{link}");
        let lo = ip_json(ns, &["link", "show", "dev", "lo"]);
        assert!(lo[0]["flags"].to_string().contains("\"UP\""), "{lo}");
        let route = default_route(ns);
        assert_eq!(route[0]["gateway"], "10.42.0.1", "{route}");
        assert_eq!(route[0]["dev"], "eth0", "{route}");
    }

    // Pod to pod by IP through the bridge, and pod to gateway.
    assert!(ping(&p1, a2.ip), "pod-1 cannot ping pod-2");
    assert!(ping(&p2, a1.ip), "pod-2 cannot ping pod-1");
    assert!(ping(&p1, a1.gateway), "pod-1 cannot ping the bridge");

    // In the test host: the bridge and its ports.
    let host = &net.host_ns;
    let br = ip_json(host, &["-d", "link", "show", "dev", "outpost0"]);
    assert_eq!(br[0]["linkinfo"]["info_kind"], "bridge", "{br}");
    assert_eq!(
        br[0]["linkinfo"]["info_data"]["nf_call_iptables"], 1,
        "{br}"
    );
    assert_eq!(br[0]["operstate"], "UP", "{br}");
    assert_eq!(
        addresses(host, "outpost0"),
        vec!["10.42.0.1/24".to_string()]
    );
    assert_eq!(sysctl(host, "net.ipv4.ip_forward"), "1");
    for addr in [&a1, &a2] {
        let port = ip_json(host, &["-d", "link", "show", "dev", &addr.host_veth]);
        assert_eq!(port[0]["master"], "outpost0", "{port}");
        assert_eq!(
            port[0]["linkinfo"]["info_slave_data"]["hairpin"], true,
            "{port}"
        );
        assert_eq!(port[0]["operstate"], "UP", "{port}");
        assert_eq!(port[0]["mtu"], 1500, "{port}");
        assert_eq!(
            port[0]["ifalias"],
            if addr.ip == a1.ip { "pod-1" } else { "pod-2" }
        );
    }
    // Nothing of ours leaked into the real host.
    assert!(!link_exists(Path::new("/proc/self/ns/net"), &a1.host_veth));

    // Attaching again: same address, nothing recreated.
    let eth0_before = ip_json(&p1, &["link", "show", "dev", "eth0"])[0]["ifindex"].clone();
    let again = pods.attach("pod-1", &p1, 1500).await.expect("attach again");
    assert_eq!(again, a1);
    let eth0_after = ip_json(&p1, &["link", "show", "dev", "eth0"])[0]["ifindex"].clone();
    assert_eq!(eth0_before, eth0_after, "eth0 was not recreated");

    // Detach: the pair goes, the address is not handed out again at once.
    pods.detach("pod-2").await.expect("detach");
    assert!(!link_exists(host, &a2.host_veth));
    assert!(!link_exists(&p2, "eth0"));
    pods.detach("pod-2").await.expect("detach twice is fine");
    let a3 = pods.attach("pod-3", &p2, 1500).await.expect("attach pod-3");
    assert_ne!(a3.ip, a2.ip, "a released address came back at once");
    assert!(ping(&p2, a1.ip), "pod-3 cannot ping pod-1");

    // The allocations survive a reload from disk.
    drop(pods);
    let reloaded = Ipam::open(&net.ipam_path(), range(), DEFAULT_QUARANTINE).expect("reload");
    assert_eq!(reloaded.get("pod-1"), Some(a1.ip));
    assert_eq!(reloaded.get("pod-2"), None);
    assert_eq!(reloaded.get("pod-3"), Some(a3.ip));
    let pods = network(&net);
    let a4 = pods
        .attach("pod-4", &net.pod_ns("4").await, 1500)
        .await
        .expect("pod-4");
    assert!(a4.ip != a2.ip && a4.ip != a3.ip && a4.ip != a1.ip, "{a4:?}");

    drop(pods);
    // Let the runtime close the netlink sockets that keep the namespaces alive.
    tokio::time::sleep(Duration::from_millis(10)).await;
    net.cleanup();
}

#[tokio::test]
async fn attach_repairs_what_is_broken_and_gc_removes_the_dead() {
    let mut net = TestNet::new().await;
    let p1 = net.pod_ns("1").await;
    let p2 = net.pod_ns("2").await;
    let pods = network(&net);
    let a1 = pods.attach("pod-1", &p1, 1400).await.expect("attach pod-1");
    let a2 = pods.attach("pod-2", &p2, 1400).await.expect("attach pod-2");
    assert_eq!(
        ip_json(&p1, &["link", "show", "dev", "eth0"])[0]["mtu"],
        1400
    );

    // Break things as a confused admin (or a crash half-way) would.
    let host = net.host_ns.clone();
    let sh = |ns: &Path, cmd: &str| {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        let out = run_in(ns, &args);
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(&p1, "ip route del default");
    sh(&p1, "ip addr flush dev eth0");
    sh(&p1, "ip addr add 10.42.0.77/24 dev eth0");
    sh(&p1, "ip link set lo down");
    sh(&host, &format!("ip link set dev {} nomaster", a1.host_veth));
    sh(&host, "ip addr flush dev outpost0");
    sh(&host, "ip addr add 10.99.0.1/16 dev outpost0");
    sh(&host, "ip link set dev outpost0 down");

    let fixed = pods.attach("pod-1", &p1, 1400).await.expect("repair");
    assert_eq!(fixed, a1);
    assert_eq!(addresses(&p1, "eth0"), vec!["10.42.0.2/24".to_string()]);
    assert_eq!(default_route(&p1)[0]["gateway"], "10.42.0.1");
    assert_eq!(
        addresses(&host, "outpost0"),
        vec!["10.42.0.1/24".to_string()]
    );
    let port = ip_json(&host, &["-d", "link", "show", "dev", &a1.host_veth]);
    assert_eq!(port[0]["master"], "outpost0", "{port}");
    assert_eq!(
        port[0]["linkinfo"]["info_slave_data"]["hairpin"], true,
        "{port}"
    );
    assert!(ping(&p1, a2.ip), "pod-1 cannot ping pod-2 after repair");
    let lo = ip_json(&p1, &["link", "show", "dev", "lo"]);
    assert!(lo[0]["flags"].to_string().contains("\"UP\""), "{lo}");

    // The pod's namespace was replaced (same pod, new sandbox): the old pair
    // goes, a new one is made in the new namespace, same address.
    let p1b = net.pod_ns("1b").await;
    let moved = pods.attach("pod-1", &p1b, 1400).await.expect("new sandbox");
    assert_eq!(moved, a1);
    assert!(!link_exists(&p1, "eth0"), "old pair removed");
    assert!(ping(&p1b, a2.ip), "new sandbox cannot ping pod-2");

    // A crash left pod-2's veth and address behind although pod-2 is gone.
    let live: HashSet<String> = ["pod-1".to_string()].into();
    let report = pods.gc(&live).await.expect("gc");
    assert_eq!(report.links, vec![a2.host_veth.clone()]);
    assert_eq!(report.addresses, vec![("pod-2".to_string(), a2.ip)]);
    assert!(!link_exists(&host, &a2.host_veth));
    assert!(link_exists(&host, &a1.host_veth));
    let report = pods.gc(&live).await.expect("gc again");
    assert!(
        report.links.is_empty() && report.addresses.is_empty(),
        "{report:?}"
    );

    // A bridge that is not one is refused with a clear message.
    let other = Host::open(Some(&host)).expect("netlink");
    sh(&host, "ip link add fake0 type veth peer name fake1");
    let mut cfg = BridgeConfig::new(Ipv4Addr::new(10, 43, 0, 1), 24);
    cfg.name = "fake0".to_string();
    let err = bridge::ensure(&other, &cfg)
        .await
        .expect_err("not a bridge");
    assert!(
        err.to_string().contains("fake0 exists and is not a bridge"),
        "{err}"
    );

    drop((pods, other));
    tokio::time::sleep(Duration::from_millis(10)).await;
    net.cleanup();
}

#[tokio::test]
async fn a_corrupt_ipam_file_is_reported_and_rebuilt_from_live_pods() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ipam.json");
    std::fs::write(&path, "not json").expect("write");
    let err = Ipam::open(&path, range(), DEFAULT_QUARANTINE).expect_err("corrupt");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let live = vec![("pod-1".to_string(), Ipv4Addr::new(10, 42, 0, 9))];
    let mut ipam = Ipam::rebuild(&path, range(), DEFAULT_QUARANTINE, &live).expect("rebuild");
    assert_eq!(
        ipam.allocate("pod-1").expect("same"),
        Ipv4Addr::new(10, 42, 0, 9)
    );
    assert_eq!(
        ipam.allocate("pod-2").expect("next"),
        Ipv4Addr::new(10, 42, 0, 10)
    );
}
