//! The service proxy against the real kernel, as root. Every test makes its
//! own network namespace (a "test host" with a veth interface and a default
//! route into it, so anything the rules miss would visibly leave) and
//! programs the table only there; nothing touches the host's namespace. What
//! the kernel holds is read back with `nft -j`, and the data path is driven
//! with real sockets from threads that enter the namespace.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use outpost_net::proxy::{
    Batch, HostPort, NetlinkTables, Op, Protocol, Proxy, ProxyConfig, ProxyError, Service,
    ServicePort, Tables,
};
use serde_json::Value;

/// A network namespace of the test's own, removed on drop (even on failure).
struct TestNs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestNs {
    /// A namespace with `lo` up and a veth `d0` holding `10.99.0.2/24` and
    /// `10.99.0.3/24`, the default route out of it.
    fn new() -> TestNs {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the proxy tests program nftables in network namespaces: run them as root"
        );
        for tool in ["nft", "ip", "nsenter"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "{tool} is needed (Debian: nftables, iproute2, util-linux)"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("net");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(outpost_net::netns::create(&path))
            .expect("create netns");
        let ns = TestNs { path, _dir: dir };
        for cmd in [
            // No dummy driver on every kernel: a veth pair whose far end
            // has no address swallows what is routed out, as a dummy would.
            "ip link add d0 type veth peer name d1",
            "ip link set d1 up",
            "ip link set d0 up",
            "ip addr add 10.99.0.2/24 dev d0",
            "ip addr add 10.99.0.3/24 dev d0",
            "ip route add default dev d0",
        ] {
            ns.run(cmd);
        }
        ns
    }

    /// Runs a command inside, asserting success; its stdout.
    fn run(&self, cmd: &str) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .args(cmd.split_whitespace())
            .output()
            .expect("nsenter");
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Loads an nft script inside (a test's own instruments).
    fn nft(&self, script: &str) {
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .args(["nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nsenter nft");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write script");
        assert!(child.wait().expect("nft").success(), "nft -f: {script}");
    }

    /// The table as `nft -j` shows it: the list of objects.
    fn nft_json(&self) -> Vec<Value> {
        let text = self.run("nft -j list table ip outpost");
        let v: Value = serde_json::from_str(&text).expect("nft -j output is JSON");
        v["nftables"].as_array().cloned().unwrap_or_default()
    }

    /// Runs `f` on a thread inside the namespace.
    fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
        let file = File::open(&self.path).expect("open netns");
        std::thread::spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }

    fn proxy(&self, config: ProxyConfig) -> Proxy {
        Proxy::open(config, Some(&self.path)).expect("open proxy")
    }

    /// Connects over TCP from inside; what the server said, or the error.
    fn connect(&self, to: &str) -> Result<String, std::io::Error> {
        let to: SocketAddr = to.parse().expect("address");
        self.spawn(move || {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer)
        })
        .join()
        .expect("client thread")
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        // The table goes with the namespace.
        let _ = outpost_net::netns::remove(&self.path);
    }
}

/// A server inside a namespace that answers with its own address: TCP
/// ([`Server::start`]) or UDP ([`Server::start_udp`]); stopped on drop.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Each TCP connection gets the address, then is closed.
    fn start(ns: &TestNs, at: &str) -> Server {
        Server::spawn(
            ns,
            at,
            |at| {
                let listener = TcpListener::bind(at).expect("bind");
                listener.set_nonblocking(true).expect("nonblocking");
                listener
            },
            |listener, at| match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.write_all(at.to_string().as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            },
        )
    }

    /// Each UDP datagram is answered with the address.
    fn start_udp(ns: &TestNs, at: &str) -> Server {
        Server::spawn(
            ns,
            at,
            |at| {
                let socket = UdpSocket::bind(at).expect("bind");
                socket
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .expect("timeout");
                socket
            },
            |socket, at| {
                let mut buf = [0u8; 64];
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(at.to_string().as_bytes(), from);
                }
            },
        )
    }

    /// Binds with `bind` on a thread inside `ns` (returning once bound), then
    /// calls `serve` until dropped; `serve` must not block for long.
    fn spawn<S>(
        ns: &TestNs,
        at: &str,
        bind: impl FnOnce(SocketAddr) -> S + Send + 'static,
        serve: impl Fn(&S, SocketAddr) + Send + 'static,
    ) -> Server {
        let at: SocketAddr = at.parse().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready, bound) = std::sync::mpsc::channel();
        let thread = ns.spawn(move || {
            let socket = bind(at);
            ready.send(()).expect("ready");
            while !flag.load(Ordering::Relaxed) {
                serve(&socket, at);
            }
        });
        bound.recv().expect("server up");
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("address")
}

fn config() -> ProxyConfig {
    ProxyConfig {
        table: "outpost".to_string(),
        service_cidr: (ip("10.43.0.0"), 16),
        pod_cidr: (ip("10.42.0.0"), 16),
        bridge: "outpost0".to_string(),
        node_ips: Vec::new(),
    }
}

fn web(endpoints: &[&str]) -> Service {
    Service {
        namespace: "default".to_string(),
        name: "web".to_string(),
        cluster_ip: Some(ip("10.43.0.5")),
        ports: vec![ServicePort {
            name: "http".to_string(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: Some(30080),
            load_balancer: false,
            endpoints: endpoints.iter().map(|e| (ip(e), 8080)).collect(),
        }],
        affinity: None,
        external_local: false,
    }
}

fn empty() -> Service {
    Service {
        namespace: "default".to_string(),
        name: "empty".to_string(),
        cluster_ip: Some(ip("10.43.0.6")),
        ports: vec![
            ServicePort {
                name: "http".to_string(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port: Some(30081),
                load_balancer: false,
                endpoints: Vec::new(),
            },
            ServicePort {
                name: "dns".to_string(),
                protocol: Protocol::Udp,
                port: 53,
                node_port: None,
                load_balancer: false,
                endpoints: Vec::new(),
            },
        ],
        affinity: None,
        external_local: false,
    }
}

fn objects<'a>(json: &'a [Value], kind: &str) -> Vec<&'a Value> {
    json.iter().filter_map(|o| o.get(kind)).collect()
}

fn chain<'a>(json: &'a [Value], name: &str) -> Option<&'a Value> {
    objects(json, "chain")
        .into_iter()
        .find(|c| c["name"] == name)
}

/// The rules of chains whose name starts with `prefix`, as JSON text.
fn rules_of(json: &[Value], prefix: &str) -> Vec<String> {
    objects(json, "rule")
        .into_iter()
        .filter(|r| r["chain"].as_str().is_some_and(|c| c.starts_with(prefix)))
        .map(|r| r["expr"].to_string())
        .collect()
}

#[test]
fn the_kernel_holds_the_rendered_table() {
    let ns = TestNs::new();
    let mut proxy = ns.proxy(config());
    let stats = proxy
        .sync(&[web(&["10.99.0.2", "10.99.0.3"]), empty()], &[])
        .expect("sync");
    assert!(stats.full);
    if std::env::var_os("PROXY_TEST_SHOW").is_some() {
        eprintln!("{}", ns.run("nft list table ip outpost"));
    }
    let json = ns.nft_json();

    for (name, kind, hook, prio) in [
        ("nat-prerouting", "nat", "prerouting", -100),
        ("nat-output", "nat", "output", -100),
        ("nat-postrouting", "nat", "postrouting", 100),
        ("filter-input", "filter", "input", -110),
        ("filter-forward", "filter", "forward", -110),
        ("filter-output", "filter", "output", -110),
        ("filter-output-post-dnat", "filter", "output", -90),
    ] {
        let c = chain(&json, name).unwrap_or_else(|| panic!("chain {name}"));
        assert_eq!(
            (c["type"].as_str(), c["hook"].as_str()),
            (Some(kind), Some(hook)),
            "{c}"
        );
        assert_eq!(c["prio"].as_i64(), Some(prio), "{c}");
    }

    let endpoints = rules_of(&json, "endpoint-");
    for target in ["10.99.0.2", "10.99.0.3"] {
        let dnat = format!(r#"{{"dnat":{{"addr":"{target}","port":8080}}}}"#);
        assert!(
            endpoints.iter().any(|r| r.contains(&dnat)),
            "{dnat} in {endpoints:#?}"
        );
    }
    // One endpoint in two is taken by a random draw, the other by default.
    let service = rules_of(&json, "service-");
    assert_eq!(service.len(), 2, "{service:#?}");
    assert!(
        service[0].contains(r#""numgen":{"mod":2,"mode":"random""#) && service[0].contains("goto"),
        "{service:#?}"
    );
    let masq = rules_of(&json, "masquerading");
    assert_eq!(masq.len(), 2, "{masq:#?}");
    assert!(
        masq.iter().all(|r| r.contains(r#"{"masquerade":null}"#)),
        "{masq:#?}"
    );
    assert!(
        masq[1].contains("10.42.0.0") && masq[1].contains("outpost0"),
        "{masq:#?}"
    );

    let maps = objects(&json, "map");
    let service_ips = maps
        .iter()
        .find(|m| m["name"] == "service-ips")
        .expect("service-ips");
    let elems = service_ips["elem"].to_string();
    assert!(
        elems.contains("10.43.0.5") && elems.contains("service-"),
        "{elems}"
    );
    let no_endpoints = maps
        .iter()
        .find(|m| m["name"] == "no-endpoint-services")
        .expect("map");
    let elems = no_endpoints["elem"].to_string();
    assert!(
        elems.contains("10.43.0.6") && elems.contains("reject-chain"),
        "{elems}"
    );

    // The kernel's view matches the model, rule for rule.
    let ours = proxy.ruleset().expect("committed");
    for (name, c) in &ours.chains {
        let theirs = objects(&json, "rule")
            .into_iter()
            .filter(|r| r["chain"] == name.as_str())
            .count();
        assert_eq!(theirs, c.rules.len(), "rules in {name}");
    }
    assert_eq!(objects(&json, "chain").len(), ours.chains.len());
    assert_eq!(maps.len() + objects(&json, "set").len(), ours.sets.len());
}

/// Whether a connection attempt was refused at once (not a timeout, not routed).
fn assert_refused_quickly(ns: &TestNs, to: &str) {
    let started = Instant::now();
    let err = ns.connect(to).expect_err(&format!("{to} must be refused"));
    let took = started.elapsed();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{to}: {err}"
    );
    assert!(
        took < Duration::from_millis(500),
        "{to}: refused after {took:?}"
    );
}

#[test]
fn cluster_ips_and_node_ports_reach_every_endpoint() {
    let ns = TestNs::new();
    let _a = Server::start(&ns, "10.99.0.2:8080");
    let _b = Server::start(&ns, "10.99.0.3:8080");
    let mut proxy = ns.proxy(config());
    proxy
        .sync(&[web(&["10.99.0.2", "10.99.0.3"])], &[])
        .expect("sync");
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..40 {
        let answer = ns.connect("10.43.0.5:80").expect("through the ClusterIP");
        *seen.entry(answer).or_default() += 1;
    }
    assert_eq!(seen.len(), 2, "both endpoints answer: {seen:?}");
    // The NodePort, on this host's address, from this host.
    let answer = ns.connect("10.99.0.2:30080").expect("through the NodePort");
    assert!(answer.ends_with(":8080"), "{answer}");
    // Loopback is not a node address (a DNAT'd 127.0.0.1 could not leave).
    assert_refused_quickly(&ns, "127.0.0.1:30080");
}

#[test]
fn no_endpoints_and_unknown_service_addresses_are_refused_at_once() {
    let ns = TestNs::new();
    ns.nft(
        "table ip watch {
            chain post {
                type filter hook postrouting priority 300;
                oifname \"d0\" ip daddr 10.43.0.0/16 counter
            }
        }",
    );
    let mut proxy = ns.proxy(config());
    proxy
        .sync(&[web(&["10.99.0.2"]), empty()], &[])
        .expect("sync");
    // A service port without endpoints, its NodePort, a port the ClusterIP
    // does not have, an address nobody has: refused, nothing routed.
    for to in [
        "10.43.0.6:80",
        "10.99.0.2:30081",
        "10.43.0.5:81",
        "10.43.0.99:80",
    ] {
        assert_refused_quickly(&ns, to);
    }
    // UDP to a service port without endpoints: a local sender's datagram is
    // refused on the spot (EPERM), a pod's gets ICMP port unreachable back.
    let started = Instant::now();
    let refused = ns
        .spawn(|| {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.connect("10.43.0.6:53")?;
            s.send(b"hello")?;
            let mut buf = [0u8; 16];
            s.recv(&mut buf).map(|_| ())
        })
        .join()
        .expect("client thread")
        .expect_err("refused");
    assert!(
        matches!(
            refused.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::PermissionDenied
        ),
        "{refused}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    // Nothing addressed to the service range left through the default route.
    let watch = ns.run("nft list table ip watch");
    assert!(watch.contains("counter packets 0 bytes 0"), "{watch}");
}

#[test]
fn host_ports_reach_the_pod() {
    let ns = TestNs::new();
    let _pod = Server::start(&ns, "10.99.0.3:8080");
    let mut proxy = ns.proxy(config());
    let host_ports = [
        HostPort {
            protocol: Protocol::Tcp,
            host_ip: None,
            host_port: 8081,
            pod_ip: ip("10.99.0.3"),
            container_port: 8080,
        },
        HostPort {
            protocol: Protocol::Tcp,
            host_ip: Some(ip("10.99.0.3")),
            host_port: 8082,
            pod_ip: ip("10.99.0.3"),
            container_port: 8080,
        },
    ];
    proxy.sync(&[], &host_ports).expect("sync");
    assert_eq!(
        ns.connect("10.99.0.2:8081").expect("hostPort"),
        "10.99.0.3:8080"
    );
    assert_eq!(
        ns.connect("10.99.0.3:8082").expect("hostPort on its IP"),
        "10.99.0.3:8080"
    );
    // Bound to 10.99.0.3 only.
    assert!(ns.connect("10.99.0.2:8082").is_err());
}

#[test]
fn session_affinity_keeps_a_client_on_its_endpoint() {
    let ns = TestNs::new();
    let _a = Server::start(&ns, "10.99.0.2:8080");
    let _b = Server::start(&ns, "10.99.0.3:8080");
    let mut proxy = ns.proxy(config());
    let mut sticky = web(&["10.99.0.2", "10.99.0.3"]);
    sticky.affinity = Some(Duration::from_secs(600));
    proxy.sync(&[sticky], &[]).expect("sync");
    let first = ns.connect("10.43.0.5:80").expect("connect");
    for _ in 0..20 {
        assert_eq!(ns.connect("10.43.0.5:80").expect("connect"), first);
    }
    let json = ns.nft_json();
    let sets: Vec<&Value> = objects(&json, "set")
        .into_iter()
        .filter(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("affinity-"))
        })
        .collect();
    assert_eq!(sets.len(), 2);
    assert!(sets.iter().all(|s| s["timeout"] == 600), "{sets:?}");
    let remembered: Vec<&&Value> = sets.iter().filter(|s| s.get("elem").is_some()).collect();
    assert_eq!(
        remembered.len(),
        1,
        "one endpoint remembers the client: {sets:?}"
    );
}

#[test]
fn endpoint_changes_are_small_and_never_drop_a_connection() {
    let ns = TestNs::new();
    // Counts new connections to the service range that got past DNAT.
    ns.nft(
        "table ip watch {
            chain escaped {
                type filter hook output priority -91;
                ip daddr 10.43.0.0/16 ct state new counter
            }
        }",
    );
    let _a = Server::start(&ns, "10.99.0.2:8080");
    let _b = Server::start(&ns, "10.99.0.3:8080");
    let mut proxy = ns.proxy(config());
    proxy.sync(&[web(&["10.99.0.2"])], &[]).expect("sync");
    assert_eq!(
        ns.connect("10.43.0.5:80").expect("connect"),
        "10.99.0.2:8080"
    );

    let stats = proxy.sync(&[web(&["10.99.0.3"])], &[]).expect("sync");
    assert!(!stats.full && stats.operations < 10, "{stats:?}");
    assert_eq!(
        ns.connect("10.43.0.5:80").expect("connect"),
        "10.99.0.3:8080"
    );
    let endpoint_chains = |ns: &TestNs| -> Vec<String> {
        objects(&ns.nft_json(), "chain")
            .into_iter()
            .filter_map(|c| c["name"].as_str())
            .filter(|n| n.starts_with("endpoint-"))
            .map(str::to_string)
            .collect()
    };
    let left = endpoint_chains(&ns);
    assert_eq!(left.len(), 1, "the old endpoint's chain is gone: {left:?}");
    assert!(left[0].ends_with("10.99.0.3/8080"));

    // A client connecting all the time while the endpoints change under it
    // (without, then with session affinity): every transaction is atomic, so
    // no connection is ever refused or escapes DNAT.
    let sets = [
        vec!["10.99.0.2"],
        vec!["10.99.0.2", "10.99.0.3"],
        vec!["10.99.0.3"],
        vec!["10.99.0.3", "10.99.0.2"],
    ];
    let mut ok = 0;
    for affinity in [None, Some(Duration::from_secs(600))] {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let client = ns.spawn(move || {
            let to: SocketAddr = "10.43.0.5:80".parse().expect("addr");
            let (mut ok, mut failed) = (0, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                match TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        });
        for i in 0..400 {
            let mut service = web(&sets[i % sets.len()]);
            service.affinity = affinity;
            proxy.sync(&[service], &[]).expect("sync");
        }
        stop.store(true, Ordering::Relaxed);
        let (done, failed) = client.join().expect("client");
        assert!(
            failed.is_empty(),
            "affinity {affinity:?}: {} of {} refused: {:?}",
            failed.len(),
            done + failed.len(),
            &failed[..failed.len().min(3)]
        );
        ok += done;
    }
    let watch = ns.run("nft list table ip watch");
    assert!(watch.contains("counter packets 0 bytes 0"), "{watch}");
    assert!(ok > 0);
}

#[test]
fn a_refused_batch_changes_nothing_and_says_why() {
    let ns = TestNs::new();
    let mut proxy = ns.proxy(config());
    proxy
        .sync(&[web(&["10.99.0.2"]), empty()], &[])
        .expect("sync");
    let before = ns.run("nft list table ip outpost");

    // A batch whose second half the kernel refuses: a jump to no chain.
    let mut tables = NetlinkTables::open("outpost", Some(&ns.path)).expect("open");
    let bad = Batch {
        table: "outpost".to_string(),
        ops: vec![
            Op::AddChain {
                name: "half-made".to_string(),
                base: None,
            },
            Op::FlushChain("services".to_string()),
            Op::AddRule {
                chain: "half-made".to_string(),
                rule: outpost_net::proxy::model::Rule(vec![outpost_net::proxy::model::Stmt::Jump(
                    "no-such-chain".to_string(),
                )]),
            },
        ],
    };
    let err = tables.commit(&bad).expect_err("refused");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ProxyError::Commit {
                errno: Some(2),
                full: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains("table ip outpost") && text.contains("half-made"),
        "{text}"
    );
    assert_eq!(
        ns.run("nft list table ip outpost"),
        before,
        "the old table is intact"
    );

    // The proxy itself recovers from a table changed behind its back.
    ns.run("nft delete table ip outpost");
    let stats = proxy
        .sync(&[web(&["10.99.0.3"]), empty()], &[])
        .expect("sync");
    assert!(stats.recovered && stats.full, "{stats:?}");
    assert!(ns
        .run("nft list table ip outpost")
        .contains("dnat to 10.99.0.3:8080"));
}

#[test]
fn a_restarted_proxy_replaces_stale_rules() {
    let ns = TestNs::new();
    let mut first = ns.proxy(config());
    first
        .sync(&[web(&["10.99.0.2"]), empty()], &[])
        .expect("sync");
    drop(first); // an agent that crashed: its table stays
    ns.run("nft add chain ip outpost stray");
    ns.run("nft add rule ip outpost services ip daddr 10.43.9.9 drop");

    let mut second = ns.proxy(config());
    let stats = second.sync(&[web(&["10.99.0.3"])], &[]).expect("sync");
    assert!(stats.full);
    let listing = ns.run("nft list table ip outpost");
    for stale in ["stray", "10.43.9.9", "10.99.0.2", "10.43.0.6"] {
        assert!(!listing.contains(stale), "{stale} survived:\n{listing}");
    }
    assert!(listing.contains("dnat to 10.99.0.3:8080"), "{listing}");
}

#[test]
fn remove_deletes_the_table() {
    let ns = TestNs::new();
    let mut proxy = ns.proxy(config());
    proxy.sync(&[web(&["10.99.0.2"])], &[]).expect("sync");
    proxy.remove().expect("remove");
    assert_eq!(ns.run("nft list tables"), "");
    proxy.remove().expect("removing a missing table is fine");
    assert!(proxy.sync(&[web(&["10.99.0.2"])], &[]).expect("sync").full);
    assert!(ns.run("nft list tables").contains("outpost"));
}

#[test]
fn a_proxy_in_a_namespace_leaves_the_host_alone() {
    let host_before = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    let ns = TestNs::new();
    let mut proxy = ns.proxy(config());
    proxy.sync(&[web(&["10.99.0.2"])], &[]).expect("sync");
    let host_after = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    assert_eq!(host_before.stdout, host_after.stdout);
}

#[test]
fn a_udp_flow_leaves_an_endpoint_that_left_the_service() {
    let ns = TestNs::new();
    let _a = Server::start_udp(&ns, "10.99.0.2:5353");
    let _b = Server::start_udp(&ns, "10.99.0.3:5353");
    let dns = |endpoint: &str| Service {
        namespace: "kube-system".to_string(),
        name: "dns".to_string(),
        cluster_ip: Some(ip("10.43.0.10")),
        ports: vec![ServicePort {
            name: "dns".to_string(),
            protocol: Protocol::Udp,
            port: 53,
            node_port: None,
            load_balancer: false,
            endpoints: vec![(ip(endpoint), 5353)],
        }],
        affinity: None,
        external_local: false,
    };
    // One client socket, so one source port and one conntrack entry, as a
    // long-lived resolver or syslog sender has.
    let (questions, inbox) = std::sync::mpsc::channel::<()>();
    let (replies, answers) = std::sync::mpsc::channel::<String>();
    let client = ns.spawn(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        s.connect("10.43.0.10:53").expect("connect");
        let mut buf = [0u8; 64];
        while inbox.recv().is_ok() {
            s.send(b"who?").expect("send");
            let answer = match s.recv(&mut buf) {
                Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                Err(e) => format!("error: {e}"),
            };
            replies.send(answer).expect("answer");
        }
    });
    let ask = || {
        questions.send(()).expect("ask");
        answers.recv().expect("answer")
    };

    let mut proxy = ns.proxy(config());
    proxy.sync(&[dns("10.99.0.2")], &[]).expect("sync");
    assert_eq!(ask(), "10.99.0.2:5353");
    assert_eq!(ask(), "10.99.0.2:5353", "the flow keeps its endpoint");
    // The endpoint leaves (its server still answers, as a pod in its grace
    // period would): the flow's next datagram goes to the new one.
    let stats = proxy.sync(&[dns("10.99.0.3")], &[]).expect("sync");
    assert_eq!(stats.stale_flows, 1, "{stats:?}");
    assert_eq!(ask(), "10.99.0.3:5353");
    drop(questions);
    client.join().expect("client");
}
