//! Services through the real agent and the kernel's nftables, inside the test
//! host: ClusterIP from pods and the host, NodePort, hairpin, endpoints
//! following readiness, refusals, and rules that follow the agent's state.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{file_source, Node};

const IMAGE: &str = "example.com/test/busybox:1";

const MANIFESTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: example.com/test/busybox:1
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && touch /www/ready && exec httpd -f -p 8080 -h /www']
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Pod
metadata: {name: hp}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: example.com/test/busybox:1
    command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
    ports: [{containerPort: 8080, hostPort: 8088}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 8090, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb2}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 8090, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  selector: {app: nobody}
  ports: [{port: 80}]
"#;

fn json(node: &Node, args: &[&str]) -> Value {
    serde_json::from_str(&node.ok(args)).expect("json")
}

/// Polls until `f` gives a value (60 s at most), panicking with `what` and the node's state.
fn wait_for<T>(node: &Node, what: &str, f: impl FnMut() -> Option<T>) -> T {
    node.wait_for(what, Duration::from_secs(60), f)
}

/// Ready endpoint addresses of a Service's slices.
fn ready_endpoints(node: &Node, service: &str) -> Vec<String> {
    let slices = json(
        node,
        &[
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={service}"),
            "-o",
            "json",
        ],
    );
    let mut ips: Vec<String> = slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .filter_map(|e| e["addresses"][0].as_str().map(str::to_owned))
        .collect();
    ips.sort();
    ips
}

/// `wget -qO- URL` from a pod: stdout, or the error.
fn from_pod(node: &Node, pod: &str, url: &str) -> Result<String, String> {
    let out = node.outpost(&["exec", pod, "--", "wget", "-qO-", url]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The same from the test host itself.
fn from_host(node: &Node, url: &str) -> Result<String, String> {
    let out = node
        .host
        .command("busybox")
        .args(["wget", "-qO-", url])
        .output()
        .expect("busybox wget");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The names of the pods that answered `tries` requests.
fn answers(mut get: impl FnMut() -> Result<String, String>, tries: usize) -> Vec<String> {
    let mut seen: Vec<String> = (0..tries)
        .map(|_| get().unwrap_or_else(|e| panic!("request failed: {e}")))
        .map(|s| s.trim().to_owned())
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

fn ruleset(node: &Node) -> String {
    let out = node
        .host
        .command("nft")
        .args(["-j", "list", "table", "ip", "outpost"])
        .output()
        .expect("nft");
    assert!(
        out.status.success(),
        "no outpost table: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The table as `nft` prints it (no handles or counters), its sets, maps and
/// chains sorted: `nft` prints them in the order they were made.
fn rule_text(node: &Node) -> Vec<String> {
    let out = node
        .host
        .command("nft")
        .args(["list", "table", "ip", "outpost"])
        .output()
        .expect("nft");
    let text = String::from_utf8_lossy(&out.stdout);
    let inside = text
        .trim()
        .strip_prefix("table ip outpost {")
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or_default();
    let mut blocks: Vec<String> = inside.split("\n\n").map(|b| b.trim().to_owned()).collect();
    blocks.sort();
    blocks
}

fn pod_names(node: &Node) -> Vec<String> {
    let pods = json(node, &["get", "pods", "-l", "app=web", "-o", "json"]);
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn services_route_to_ready_pods_and_refuse_the_rest() {
    let node = Node::with_busybox(IMAGE);
    let manifests = node.manifests_dir();
    std::fs::write(manifests.join("web.yaml"), MANIFESTS).expect("write");
    let source = file_source(&manifests);
    // The bridge's address stands in for the node's (LoadBalancer ingress).
    let args = ["--source", &source, "--node-ip", "10.42.0.1"];
    let agent = node.spawn_agent(&args);
    node.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let pods = pod_names(&node);
    assert_eq!(pods.len(), 2);
    // br_netfilter is there on this machine: no false alarm.
    let events = node.ok(&["get", "events", "-A"]);
    assert!(!events.contains("BridgeNetfilterMissing"), "{events}");

    let svc = json(&node, &["get", "svc", "web", "-o", "json"]);
    let cluster_ip = svc["spec"]["clusterIP"]
        .as_str()
        .expect("clusterIP")
        .to_owned();
    assert!(cluster_ip.starts_with("10.43."), "{cluster_ip}");
    let np = json(&node, &["get", "svc", "web-np", "-o", "json"]);
    assert_eq!(np["spec"]["ports"][0]["nodePort"], 30080);
    wait_for(&node, "two ready endpoints", || {
        (ready_endpoints(&node, "web").len() == 2).then_some(())
    });
    let rules = ruleset(&node);
    assert!(
        rules.contains(&cluster_ip),
        "the kernel has no rule for {cluster_ip}"
    );

    // pod → ClusterIP (both backends answer), host → ClusterIP, host → NodePort.
    let url = format!("http://{cluster_ip}/");
    let client = &pods[0];
    let mut expected = pods.clone();
    expected.sort();
    assert_eq!(answers(|| from_pod(&node, client, &url), 20), expected);
    assert_eq!(answers(|| from_host(&node, &url), 20), expected);
    assert_eq!(
        answers(|| from_host(&node, "http://10.42.0.1:30080/"), 20),
        expected
    );

    // A LoadBalancer answers at its own port on the node, as k3s's ServiceLB
    // does, and says so in its status; a second one on that port is pending.
    assert_eq!(
        answers(|| from_host(&node, "http://10.42.0.1:8090/"), 20),
        expected
    );
    let lb = json(&node, &["get", "svc", "web-lb", "-o", "json"]);
    assert_eq!(
        lb["status"]["loadBalancer"]["ingress"],
        serde_json::json!([{"ip": "10.42.0.1", "ipMode": "VIP"}])
    );
    let pending = json(&node, &["get", "svc", "web-lb2", "-o", "json"]);
    assert!(
        pending["status"]["loadBalancer"]["ingress"].is_null(),
        "{pending}"
    );
    let why = node.ok(&["describe", "svc", "web-lb2"]);
    assert!(
        why.contains("PortConflict")
            && why.contains(
                "load balancer port 8090/tcp is already used by default/web-lb, left out"
            ),
        "{why}"
    );

    // A container hostPort answers on the node's addresses.
    wait_for(&node, "the hostPort pod", || {
        from_host(&node, "http://10.42.0.1:8088/").ok()
    });
    assert_eq!(
        from_host(&node, "http://10.42.0.1:8088/").expect("hostPort"),
        "hp\n"
    );

    // Hairpin: a pod reaches itself through its own Service.
    let mut itself = false;
    for _ in 0..20 {
        if from_pod(&node, client, &url)
            .expect("hairpin request")
            .trim()
            == client
        {
            itself = true;
            break;
        }
    }
    assert!(itself, "{client} never reached itself through its Service");

    // No endpoints, or no service at that address: refused at once.
    let nobody = json(&node, &["get", "svc", "nobody", "-o", "json"]);
    let nobody_ip = nobody["spec"]["clusterIP"]
        .as_str()
        .expect("clusterIP")
        .to_owned();
    let err = from_host(&node, &format!("http://{nobody_ip}/")).expect_err("no endpoints");
    assert!(err.contains("refused"), "{err}");
    let err = from_pod(&node, client, "http://10.43.250.250/").expect_err("no such service");
    assert!(err.contains("refused"), "{err}");

    // Readiness fails: out of the Service within a probe period; back on recovery.
    let sick = &pods[1];
    node.ok(&["exec", sick, "--", "rm", "/www/ready"]);
    wait_for(&node, "the sick pod out of the endpoints", || {
        (ready_endpoints(&node, "web").len() == 1).then_some(())
    });
    assert_eq!(
        answers(|| from_host(&node, &url), 10),
        std::slice::from_ref(client)
    );
    node.ok(&["exec", sick, "--", "touch", "/www/ready"]);
    wait_for(&node, "the pod back in the endpoints", || {
        (ready_endpoints(&node, "web").len() == 2).then_some(())
    });

    // SIGKILL and a new agent: rules rebuilt, still served, same address.
    // A connection open through the ClusterIP across the restart still gets
    // its answer (conntrack keeps its translation; the new table breaks
    // nothing), and the rule set comes back as it was.
    let mut held = node.host.run_in(|| {
        std::net::TcpStream::connect((cluster_ip.as_str(), 80)).expect("connect to the ClusterIP")
    });
    held.write_all(b"GET / HTTP/1.0\r\n")
        .expect("half a request");
    let rules_before = rule_text(&node);
    assert!(
        rules_before.len() > 10,
        "a rule set to compare: {rules_before:?}"
    );
    agent.sigkill();
    let agent = node.spawn_agent(&args);
    wait_for(&node, "endpoints after the restart", || {
        (ready_endpoints(&node, "web").len() == 2).then_some(())
    });
    wait_for(&node, "the rule set rebuilt as it was", || {
        (rule_text(&node) == rules_before).then_some(())
    });
    held.write_all(b"\r\n").expect("the rest of the request");
    held.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reply = String::new();
    held.read_to_string(&mut reply)
        .expect("the held connection answers after the restart");
    let body = reply.rsplit("\r\n\r\n").next().unwrap_or("").trim();
    assert!(
        expected.iter().any(|p| p == body),
        "the held connection reached a backend: {reply:?}"
    );
    let again = json(&node, &["get", "svc", "web", "-o", "json"]);
    assert_eq!(
        again["spec"]["clusterIP"],
        cluster_ip.as_str(),
        "the ClusterIP moved"
    );
    assert_eq!(answers(|| from_host(&node, &url), 20), expected);

    // A deleted Service: its rules and slices go, its address is refused.
    let text = std::fs::read_to_string(manifests.join("web.yaml")).expect("read");
    let cut = text
        .find("---\napiVersion: v1\nkind: Service\nmetadata: {name: web}")
        .expect("web service");
    let end = text[cut + 4..]
        .find("---")
        .map_or(text.len(), |i| cut + 4 + i);
    std::fs::write(
        manifests.join("web.yaml"),
        format!("{}{}", &text[..cut], &text[end..]),
    )
    .expect("write");
    wait_for(&node, "the web Service gone", || {
        let out = node.outpost(&["get", "svc", "web"]);
        (!out.status.success()).then_some(())
    });
    wait_for(&node, "its rules gone", || {
        (!ruleset(&node).contains(&cluster_ip)).then_some(())
    });
    assert!(ready_endpoints(&node, "web").is_empty());
    let err = from_host(&node, &url).expect_err("deleted service");
    assert!(err.contains("refused"), "{err}");

    // killall (agent stopped) leaves the test host as it found it: only lo,
    // no nftables table, no pod namespace.
    agent.stop();
    node.ok(&["killall"]);
    let links = node
        .host
        .command("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert_eq!(links.lines().count(), 1, "links left: {links}");
    let tables = node
        .host
        .command("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    assert!(
        String::from_utf8_lossy(&tables.stdout).trim().is_empty(),
        "tables left"
    );
    let pods_dir = node.run_dir().join("pods");
    let left = std::fs::read_dir(&pods_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "pod sandboxes left in {}", pods_dir.display());
}
