//! The pod network through the real agent, inside its test host: the bridge,
//! pod addresses, pod-to-pod traffic, and nothing left behind when pods go
//! or the agent is killed.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{file_source, Node};

const IMAGE: &str = "example.com/test/busybox:1";

fn node() -> (Node, PathBuf) {
    let node = Node::with_busybox(IMAGE);
    let manifests = node.manifests_dir();
    (node, manifests)
}

/// A pod serving its own name over HTTP on 8080.
fn web(name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: web}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {IMAGE}
    command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -v -p 8080 -h /www']
    ports: [{{containerPort: 8080}}]
"#
    )
}

fn pod(node: &Node, name: &str) -> Option<Value> {
    let out = node.outpost(&["get", "pod", name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("pod json"))
}

/// Polls until `f` gives a value (60 s at most), panicking with `what` and the node's state.
fn wait_for<T>(node: &Node, what: &str, f: impl FnMut() -> Option<T>) -> T {
    node.wait_for(what, Duration::from_secs(60), f)
}

/// The pod's IP once it runs.
fn pod_ip(node: &Node, name: &str) -> String {
    wait_for(node, &format!("{name} running with an IP"), || {
        let p = pod(node, name)?;
        let ip = p["status"]["podIP"].as_str()?.to_owned();
        (p["status"]["phase"] == "Running" && !ip.is_empty()).then_some(ip)
    })
}

/// `ip -o link` names in the test host.
fn links(node: &Node) -> Vec<String> {
    let out = node
        .host
        .command("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

fn fetch(node: &Node, from: &str, url: &str) -> String {
    node.ok(&["exec", from, "--", "wget", "-qO-", url])
}

#[test]
fn pods_get_addresses_reach_each_other_and_leave_nothing_behind() {
    let (node, manifests) = node();
    std::fs::write(manifests.join("a.yaml"), web("alpha")).expect("write");
    std::fs::write(manifests.join("b.yaml"), web("beta")).expect("write");
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    let (a, b) = (pod_ip(&node, "alpha"), pod_ip(&node, "beta"));
    assert_ne!(a, b);
    // A test host has no default route, so no node IP to report.
    let alpha = pod(&node, "alpha").expect("alpha");
    assert!(alpha["status"]["hostIP"].is_null(), "{}", alpha["status"]);
    for ip in [&a, &b] {
        assert!(
            ip.starts_with("10.42.0."),
            "{ip} is not in the node's pod range"
        );
    }
    let wide = node.ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.lines()
            .any(|l| l.starts_with("alpha ") && l.contains(&a)),
        "{wide}"
    );

    // The bridge and one veth per pod, in the test host only.
    let host_links = links(&node);
    assert!(host_links.iter().any(|l| l == "outpost0"), "{host_links:?}");
    assert_eq!(
        host_links.iter().filter(|l| l.starts_with("veth")).count(),
        2,
        "{host_links:?}"
    );
    let inside = node.ok(&[
        "exec", "alpha", "--", "ip", "-o", "-4", "addr", "show", "eth0",
    ]);
    assert!(inside.contains(&format!("{a}/24")), "{inside}");
    let route = node.ok(&["exec", "alpha", "--", "ip", "route"]);
    assert!(route.contains("default via 10.42.0.1"), "{route}");
    // The kubelet's files: the cluster DNS server and search path, the pod's own name.
    let resolv = node.ok(&["exec", "alpha", "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.43.0.10\n"), "{resolv}");
    assert!(
        resolv.starts_with("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    let hosts = node.ok(&["exec", "alpha", "--", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{a}\talpha\n")), "{hosts}");
    assert_eq!(node.ok(&["exec", "alpha", "--", "hostname"]), "alpha\n");

    // Pod to pod by IP, both ways, and the host to a pod.
    assert_eq!(
        fetch(&node, "alpha", &format!("http://{b}:8080/")),
        "beta\n"
    );
    assert_eq!(
        fetch(&node, "beta", &format!("http://{a}:8080/")),
        "alpha\n"
    );
    // Pod-to-pod traffic is not NATed: beta's server saw alpha's own address.
    let log = node.ok(&["logs", "beta"]);
    assert!(
        log.contains(&format!(":{a}]:")),
        "beta saw another client address:\n{log}"
    );
    let from_host = node
        .host
        .command("busybox")
        .args(["wget", "-qO-", &format!("http://{a}:8080/")])
        .output()
        .expect("wget from the host");
    assert_eq!(String::from_utf8_lossy(&from_host.stdout), "alpha\n");

    // SIGKILL and a new agent: same addresses, still reachable, nothing doubled.
    agent.sigkill();
    let _agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    assert_eq!(pod_ip(&node, "alpha"), a);
    assert_eq!(pod_ip(&node, "beta"), b);
    assert_eq!(
        fetch(&node, "alpha", &format!("http://{b}:8080/")),
        "beta\n"
    );
    assert_eq!(
        links(&node),
        host_links,
        "links changed across the agent restart"
    );

    // A deleted pod takes its veth, namespace and address with it.
    let uid = pod(&node, "beta").expect("beta")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    std::fs::remove_file(manifests.join("b.yaml")).expect("remove");
    wait_for(&node, "beta gone", || {
        pod(&node, "beta").is_none().then_some(())
    });
    let after = links(&node);
    assert_eq!(
        after.iter().filter(|l| l.starts_with("veth")).count(),
        1,
        "{after:?}"
    );
    assert!(
        !node.run_dir().join("pods").join(&uid).exists(),
        "beta's sandbox dir is left"
    );
    // The released address is not handed out again at once.
    std::fs::write(manifests.join("c.yaml"), web("gamma")).expect("write");
    let c = pod_ip(&node, "gamma");
    assert_ne!(c, b, "a released address was reused at once");
}

/// Runs a command to success.
fn ok(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pod_egress_and_cluster_node_ports_are_masqueraded_local_ones_keep_the_client() {
    let (node, manifests) = node();
    // "Outside": another namespace behind a link of the test host, with no
    // route back to the pod range, so only masqueraded traffic can return.
    let outside = crate::harness::TestHost::new();
    ok(node.host.command("ip").args([
        "link",
        "add",
        "uplink",
        "type",
        "veth",
        "peer",
        "name",
        "wan",
        "netns",
        outside.name(),
    ]));
    ok(node
        .host
        .command("ip")
        .args(["addr", "add", "192.0.2.1/24", "dev", "uplink"]));
    ok(node
        .host
        .command("ip")
        .args(["link", "set", "uplink", "up"]));
    ok(outside
        .command("ip")
        .args(["addr", "add", "192.0.2.2/24", "dev", "wan"]));
    ok(outside.command("ip").args(["link", "set", "wan", "up"]));
    // The test host's default route leaves by the uplink: with no --node-ip,
    // its source is the node's IP.
    ok(node.host.command("ip").args([
        "route",
        "add",
        "default",
        "via",
        "192.0.2.2",
        "dev",
        "uplink",
    ]));
    let www = node.dir().join("outside-www");
    std::fs::create_dir(&www).expect("www");
    std::fs::write(www.join("index.html"), "outside\n").expect("index");
    let mut server = outside
        .command("busybox")
        .args(["httpd", "-f", "-p", "8080", "-h"])
        .arg(&www)
        .spawn()
        .expect("httpd outside");
    std::fs::write(manifests.join("a.yaml"), web("alpha")).expect("write");
    let _agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    pod_ip(&node, "alpha");
    let alpha = pod(&node, "alpha").expect("alpha");
    assert_eq!(
        alpha["status"]["hostIP"], "192.0.2.1",
        "{}",
        alpha["status"]
    );
    let got = node.outpost(&[
        "exec",
        "alpha",
        "--",
        "wget",
        "-qO-",
        "http://192.0.2.2:8080/",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        got.status.success(),
        "the pod could not reach the outside (no masquerade?): {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&got.stdout), "outside\n");

    // NodePorts from outside: with externalTrafficPolicy Cluster the pod sees
    // the node's address (masqueraded), with Local the client's own.
    std::fs::write(manifests.join("node-ports.yaml"), NODE_PORTS).expect("write");
    let from_outside = |port: u16| {
        let out = outside
            .command("busybox")
            .args(["wget", "-qO-", &format!("http://192.0.2.1:{port}/")])
            .output()
            .expect("wget from outside");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let client_seen = |port: u16| {
        let before = node.ok(&["logs", "alpha"]).len();
        let answer = wait_for(&node, &format!("NodePort {port} from outside"), || {
            from_outside(port)
        });
        assert_eq!(answer, "alpha\n");
        node.ok(&["logs", "alpha"])[before..].to_owned()
    };
    let cluster = client_seen(30080);
    assert!(
        cluster.contains(":10.42.0.1]:") && !cluster.contains("192.0.2.2"),
        "Cluster policy: the pod should see the node's address:\n{cluster}"
    );
    let local = client_seen(30081);
    assert!(
        local.contains(":192.0.2.2]:"),
        "Local policy: the pod should see the client's address:\n{local}"
    );
    // A LoadBalancer: its ingress is the node's IP, and that port answers.
    let lb = wait_for(&node, "the LoadBalancer's ingress", || {
        let out = node.outpost(&["get", "svc", "web-lb", "-o", "json"]);
        let svc: Value = serde_json::from_slice(&out.stdout).ok()?;
        svc["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_owned)
    });
    assert_eq!(lb, "192.0.2.1");
    client_seen(8081);
}

/// Two NodePorts to the `app: web` pods, one per externalTrafficPolicy, and a LoadBalancer.
const NODE_PORTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web-cluster}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30081}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 8081, targetPort: 8080}]
"#;
