//! Service proxy update latency: 1,000 services × 3 endpoints programmed in
//! a network namespace of the benchmark's own, then one endpoint changed at a
//! time. Each figure is a whole `Proxy::sync` (render, diff, one nftables
//! transaction through netlink, kernel ack). Prints medians; run as root:
//!
//!     cargo bench -p outpost-net --bench proxy [-- ITERATIONS]
//!
//! Not a test: nothing here asserts a time.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use outpost_net::proxy::{Protocol, Proxy, ProxyConfig, Service, ServicePort};

const SERVICES: u32 = 1000;
const ENDPOINTS: u32 = 3;

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50);
    assert!(
        nix::unistd::geteuid().is_root(),
        "the proxy benchmark programs nftables in a network namespace: run it as root"
    );
    let dir = tempfile::Builder::new()
        .prefix("outpost-bench-")
        .tempdir()
        .expect("tempdir");
    let netns = dir.path().join("net");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(outpost_net::netns::create(&netns))
        .expect("create netns");
    let result = std::panic::catch_unwind(|| run(&netns, iterations));
    let _ = outpost_net::netns::remove(&netns);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn run(netns: &std::path::Path, iterations: usize) {
    let config = ProxyConfig {
        table: "outpost".to_string(),
        service_cidr: (Ipv4Addr::new(10, 43, 0, 0), 16),
        pod_cidr: (Ipv4Addr::new(10, 42, 0, 0), 16),
        bridge: "outpost0".to_string(),
        node_ips: Vec::new(),
    };
    let mut proxy = Proxy::open(config, Some(netns)).expect("open proxy");
    let mut services = services();

    let mut full = Vec::new();
    let mut full_ops = 0;
    for _ in 0..5 {
        proxy.force_full_sync();
        let started = Instant::now();
        let stats = proxy.sync(&services, &[]).expect("full sync");
        full.push(started.elapsed());
        full_ops = stats.operations;
        assert!(stats.full);
    }

    let mut change = Vec::new();
    let mut commit = Vec::new();
    let mut ops = Vec::new();
    for i in 0..iterations {
        // A different service each time; its second endpoint moves.
        let s = (i * 397) % services.len();
        let [_, _, b, c] = (0x00ff_0000 + i as u32).to_be_bytes();
        services[s].ports[0].endpoints[1] = (Ipv4Addr::new(10, 42, b, c), 8080);
        let started = Instant::now();
        let stats = proxy.sync(&services, &[]).expect("sync");
        change.push(started.elapsed());
        commit.push(stats.commit_time);
        ops.push(stats.operations);
        assert!(!stats.full);
    }
    // Render and diff alone, for the same kind of change.
    let (mut render, mut diff) = (Vec::new(), Vec::new());
    for i in 0..iterations {
        let before = outpost_net::proxy::render(proxy.config(), &services, &[]).ruleset;
        let s = (i * 131) % services.len();
        services[s].ports[0].endpoints[0] = (Ipv4Addr::new(10, 41, 0, i as u8), 8080);
        let started = Instant::now();
        let after = outpost_net::proxy::render(proxy.config(), &services, &[]).ruleset;
        render.push(started.elapsed());
        let started = Instant::now();
        std::hint::black_box(outpost_net::proxy::plan::update(&before, &after));
        diff.push(started.elapsed());
    }

    println!(
        "service proxy, {SERVICES} services × {ENDPOINTS} endpoints (kernel {})",
        kernel()
    );
    println!(
        "  whole table (first sync), median of {}: {:.1} ms ({full_ops} operations)",
        full.len(),
        ms(median(&mut full))
    );
    ops.sort_unstable();
    println!(
        "  one endpoint changed, median of {iterations}: {:.2} ms (commit {:.2} ms, p90 {:.2} ms, max {:.2} ms; {} operations)",
        ms(median(&mut change.clone())),
        ms(median(&mut commit)),
        ms(percentile(&mut change, 0.9)),
        ms(change.iter().copied().max().unwrap_or_default()),
        ops[ops.len() / 2]
    );
    println!(
        "  of which: render {:.2} ms, diff {:.2} ms (medians)",
        ms(median(&mut render)),
        ms(median(&mut diff))
    );
}

fn services() -> Vec<Service> {
    (0..SERVICES)
        .map(|i| {
            let [_, _, hi, lo] = (i + 1).to_be_bytes();
            Service {
                namespace: "bench".to_string(),
                name: format!("svc-{i}"),
                cluster_ip: Some(Ipv4Addr::new(10, 43, hi, lo)),
                ports: vec![ServicePort {
                    name: "http".to_string(),
                    protocol: Protocol::Tcp,
                    port: 80,
                    node_port: None,
                    load_balancer: false,
                    endpoints: (0..ENDPOINTS)
                        .map(|e| {
                            let [_, a, b, c] = (i * ENDPOINTS + e + 1).to_be_bytes();
                            (Ipv4Addr::new(10, 42 + a, b, c), 8080)
                        })
                        .collect(),
                }],
                affinity: None,
                external_local: false,
            }
        })
        .collect()
}

fn median(v: &mut [Duration]) -> Duration {
    percentile(v, 0.5)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_default()
}
