//! The service data path: `wrk` through a ClusterIP (nftables DNAT) against
//! `wrk` straight to the pod IP, same pod, same run, alternating rounds.
//! Prints requests/s medians and the ratio; run as root with wrk installed:
//!
//!     cargo bench -p outpost --bench service [-- ROUNDS]
//!
//! The agent and wrk run in the bench's own network namespace. The server
//! is busybox httpd (a process per connection, no keep-alive), so every
//! request is a new connection: the NAT path is paid per request, the worst
//! case for the proxy. Not a test: nothing here asserts a figure.

mod common;

use std::time::Duration;

use common::{median, run, wait_until, BenchAgent};

const IMAGE: &str = "localhost/outpost-bench/busybox:1";

const MANIFESTS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: localhost/outpost-bench/busybox:1
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www']
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"#;

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    assert!(
        std::process::Command::new("wrk")
            .arg("--version")
            .output()
            .is_ok(),
        "wrk is missing: apt-get install wrk"
    );
    let bench = BenchAgent::start(IMAGE);
    let manifest = bench.dir.path().join("web.yaml");
    std::fs::write(&manifest, MANIFESTS).expect("write manifest");
    run(&mut bench.outpost(&["apply", "-f", manifest.to_str().expect("utf-8")]));
    let mut ips = None;
    wait_until(Duration::from_secs(60), || {
        let ready = bench
            .get("deploy", "web")
            .is_some_and(|d| d["status"]["readyReplicas"] == 1);
        let slices = bench
            .outpost(&["get", "endpointslices", "-o", "json"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
        let pod_ip = slices.as_ref().and_then(|s| {
            s["items"][0]["endpoints"][0]["addresses"][0]
                .as_str()
                .map(str::to_owned)
        });
        let cluster_ip = bench
            .get("svc", "web")
            .and_then(|s| s["spec"]["clusterIP"].as_str().map(str::to_owned));
        if let (true, Some(p), Some(c)) = (ready, pod_ip, cluster_ip) {
            ips = Some((p, c));
        }
        ips.is_some()
    });
    let (pod_ip, cluster_ip) = ips.expect("addresses");
    let direct = format!("http://{pod_ip}:8080/");
    let service = format!("http://{cluster_ip}/");
    let wrk = |url: &str| -> f64 {
        let out = run(bench.inside("wrk").args(["-t2", "-c16", "-d5s", url]));
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"))
    };
    // Warm up both paths (conntrack, page cache), then alternate.
    wrk(&direct);
    wrk(&service);
    let (mut pod, mut svc) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        pod.push(wrk(&direct));
        svc.push(wrk(&service));
    }
    let (p, s) = (median(&mut pod), median(&mut svc));
    println!("wrk -t2 -c16 -d5s, busybox httpd, median of {rounds} rounds:");
    println!("  pod IP     {p:10.0} req/s");
    println!("  ClusterIP  {s:10.0} req/s");
    println!("  ratio ClusterIP/pod {:.3} (goal ≥ 0.95)", s / p);
}
