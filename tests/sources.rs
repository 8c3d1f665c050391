//! The HTTPS/HTTP source against a real HTTP server in the test host: bundle
//! changes applied, an unreachable upstream backed off while pods keep
//! running, and minisign signatures enforced.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{require_root_and_tools, Node, Upstream};

const IMAGE: &str = "example.com/test/busybox:1";

fn pod_yaml(name: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sleep, \"1000\"]\n")
}

fn pods(node: &Node) -> Vec<Value> {
    let list: Value = serde_json::from_str(&node.ok(&["get", "pods", "-o", "json"])).expect("json");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn running(node: &Node, name: &str) -> Value {
    wait(node, &format!("{name} Running"), || {
        pods(node)
            .into_iter()
            .find(|p| p["metadata"]["name"] == name && p["status"]["phase"] == "Running")
    })
}

fn wait<T>(node: &Node, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; events:\n{}",
                node.ok(&["get", "events", "-A"])
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn events(node: &Node) -> String {
    node.ok(&["get", "events", "-A", "--sort-by=.lastTimestamp"])
}

#[test]
fn http_bundle_changes_apply_and_an_outage_backs_off() {
    let node = Node::with_busybox(IMAGE);
    let www = node.dir().join("www");
    std::fs::create_dir(&www).expect("www");
    std::fs::write(www.join("bundle.yaml"), pod_yaml("first")).expect("write");
    let mut upstream = Upstream::start(&node, &www);
    let url = format!("http://{}/bundle.yaml", upstream.addr());
    let agent = node.spawn_agent(&[
        "--source",
        &url,
        "--allow-http-source",
        "--source-interval",
        "1s",
    ]);
    let first = running(&node, "first");
    let uid = first["metadata"]["uid"].clone();

    // A change upstream is applied.
    std::fs::write(
        www.join("bundle.yaml"),
        format!("{}---\n{}", pod_yaml("first"), pod_yaml("second")),
    )
    .expect("write");
    running(&node, "second");
    assert_eq!(
        running(&node, "first")["metadata"]["uid"],
        uid,
        "the unchanged pod kept running"
    );

    // The upstream goes away: pods keep running, the agent backs off and says so.
    upstream.stop();
    let log = wait(&node, "three SourceUnreachable retries", || {
        let e = events(&node);
        let retries: Vec<&str> = e
            .lines()
            .filter(|l| l.contains("SourceUnreachable"))
            .collect();
        (retries.len() >= 3).then(|| e.clone())
    });
    // The back-off is visible: each retry says when the next one comes, later ones later.
    let delays: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("SourceUnreachable"))
        .filter_map(|l| {
            l.rsplit("retrying in ")
                .next()?
                .trim_end_matches('s')
                .parse()
                .ok()
        })
        .collect();
    assert!(
        delays.iter().max() > delays.iter().min(),
        "growing back-off: {delays:?}\n{log}"
    );
    assert!(log.contains(&url) && log.contains("retrying in"), "{log}");
    assert_eq!(running(&node, "first")["metadata"]["uid"], uid);
    running(&node, "second");
    agent.stop();
}

/// Makes an unencrypted minisign key pair in `dir`; returns (public key file, secret key file).
fn minisign_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    require_root_and_tools(&["minisign"]);
    let (public, secret) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("minisign")
        .arg("-G")
        .arg("-W")
        .arg("-p")
        .arg(&public)
        .arg("-s")
        .arg(&secret)
        .output()
        .expect("minisign -G");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (public, secret)
}

fn sign(secret: &Path, file: &Path) {
    let out = Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(secret)
        .arg("-m")
        .arg(file)
        .output()
        .expect("minisign -S");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn only_signed_bundles_are_applied() {
    let node = Node::with_busybox(IMAGE);
    let www = node.dir().join("www");
    std::fs::create_dir(&www).expect("www");
    let keys = node.dir().join("keys");
    std::fs::create_dir(&keys).expect("keys");
    let (public, secret) = minisign_keys(&keys, "good");
    let (_, other_secret) = minisign_keys(&keys, "other");
    let bundle = www.join("bundle.yaml");
    std::fs::write(&bundle, pod_yaml("signed")).expect("write");
    sign(&secret, &bundle);
    let upstream = Upstream::start(&node, &www);
    let url = format!("http://{}/bundle.yaml", upstream.addr());
    let key = std::fs::read_to_string(&public).expect("public key");
    let key_line = key.lines().last().expect("key line").to_owned();
    let agent = node.spawn_agent(&[
        "--source",
        &url,
        "--allow-http-source",
        "--source-interval",
        "1s",
        "--source-public-key",
        &key_line,
    ]);
    let signed = running(&node, "signed");

    // Signed with another key: refused, nothing changes.
    std::fs::write(&bundle, pod_yaml("forged")).expect("write");
    sign(&other_secret, &bundle);
    let refused = wait(&node, "a BundleRefused event", || {
        let e = events(&node);
        e.contains("BundleRefused").then_some(e)
    });
    assert!(refused.contains(&url), "{refused}");
    std::thread::sleep(Duration::from_secs(2));
    let names: Vec<Value> = pods(&node)
        .iter()
        .map(|p| p["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, vec![Value::from("signed")]);
    assert_eq!(
        running(&node, "signed")["metadata"]["uid"],
        signed["metadata"]["uid"]
    );

    // Signature missing: refused too.
    std::fs::remove_file(www.join("bundle.yaml.minisig")).expect("rm sig");
    std::fs::write(&bundle, pod_yaml("unsigned")).expect("write");
    std::thread::sleep(Duration::from_secs(3));
    assert!(pods(&node)
        .iter()
        .all(|p| p["metadata"]["name"] != "unsigned"));

    // Properly signed again: applied.
    sign(&secret, &bundle);
    running(&node, "unsigned");
    drop(upstream);
    agent.stop();
}

/// An HTTP upstream in the node's test host that holds each answer for
/// `delay` (`None`: never answers), then serves `body`.
fn slow_upstream(node: &Node, delay: Option<Duration>, body: String) -> String {
    let listener = node
        .host
        .run_in(|| std::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            let Some(delay) = delay else {
                held.push(conn);
                continue;
            };
            std::thread::sleep(delay);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/bundle.yaml")
}

#[test]
fn ready_waits_for_the_first_read_but_not_for_a_silent_upstream() {
    // READY=1 means the sources were read: what the upstream declares is
    // there, without waiting for it.
    let node = Node::with_busybox(IMAGE);
    let slow = slow_upstream(&node, Some(Duration::from_millis(1500)), pod_yaml("slow"));
    let agent = node.spawn_agent(&["--source", &slow, "--allow-http-source"]);
    let got = node.outpost(&["get", "pod", "slow"]);
    assert!(
        got.status.success(),
        "pod slow not there at READY: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    agent.stop();

    // An upstream that accepts and never answers delays READY a little, not
    // until its timeout: the last good state is served meanwhile.
    let silent = slow_upstream(&node, None, String::new());
    let started = Instant::now();
    let _agent = node.spawn_agent(&["--source", &silent, "--allow-http-source"]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "READY waited {:?} for a silent upstream",
        started.elapsed()
    );
}
