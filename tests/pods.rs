//! Pods from manifests through the real agent: the file source, status and
//! events through the local API, crash loops, bad manifests, re-adoption after
//! SIGKILL, and a "reboot" with the upstream gone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{file_source, Node};

/// The image every pod here runs (imported, so no registry is needed).
const IMAGE: &str = "example.com/test/busybox:1";

/// A node with the busybox image imported and a manifests dir.
fn node() -> (Node, PathBuf) {
    let node = Node::with_busybox(IMAGE);
    let manifests = node.manifests_dir();
    (node, manifests)
}

fn pods(node: &Node) -> Vec<Value> {
    let out = node.ok(&["get", "pods", "-A", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("pod list json");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn pod(node: &Node, name: &str) -> Option<Value> {
    pods(node)
        .into_iter()
        .find(|p| p["metadata"]["name"] == name)
}

/// Polls until `f` gives a value (60 s at most), panicking with `what` and the node's state.
fn wait_for<T>(node: &Node, what: &str, f: impl FnMut() -> Option<T>) -> T {
    node.wait_for(what, Duration::from_secs(60), f)
}

fn running(node: &Node, name: &str) -> Value {
    wait_for(node, &format!("pod {name} Running and Ready"), || {
        pod(node, name)
            .filter(|p| p["status"]["phase"] == "Running" && condition(p, "Ready") == "True")
    })
}

fn condition(pod: &Value, kind: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// The supervisor id of a container, from its status (`outpost://<id>`).
fn container_id(pod: &Value, index: usize) -> String {
    pod["status"]["containerStatuses"][index]["containerID"]
        .as_str()
        .and_then(|s| s.strip_prefix("outpost://"))
        .expect("containerID")
        .to_owned()
}

fn ctr_pid(node: &Node, id: &str) -> i64 {
    let ps: Value =
        serde_json::from_str(&node.ok(&["ctr", "ps", "-a", "-o", "json"])).expect("ps json");
    ps.as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == id))
        .and_then(|c| c["pid"].as_i64())
        .unwrap_or_else(|| panic!("no container {id}"))
}

fn events(node: &Node) -> String {
    node.ok(&["get", "events", "-A", "--sort-by=.lastTimestamp"])
}

const WEB: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  GREETING: hello
  MODE: edge
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
stringData:
  TOKEN: s3cret
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: web
    image: example.com/test/busybox:1
    command: ["sh", "-c"]
    args:
    - mkdir -p /www && echo ok > /www/health && echo "web $(GREETING) starting" && exec httpd -f -v -p 8080 -h /www
    envFrom:
    - configMapRef:
        name: web-config
    - secretRef:
        name: web-secret
      prefix: APP_
    env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    resources:
      requests: {cpu: 100m, memory: 32Mi}
      limits: {cpu: 500m, memory: 64Mi}
    readinessProbe:
      httpGet: {path: /health, port: http}
      periodSeconds: 1
    livenessProbe:
      httpGet: {path: /health, port: 8080}
      # Time for httpd to listen even on a loaded CI machine, as real manifests allow.
      initialDelaySeconds: 3
      periodSeconds: 1
      failureThreshold: 2
    ports:
    - name: http
      containerPort: 8080
"#;

#[test]
fn a_web_pod_runs_from_the_file_source() {
    let (node, manifests) = node();
    std::fs::write(manifests.join("web.yaml"), WEB).expect("write manifest");
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    let web = running(&node, "web");
    assert_eq!(web["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(web["status"]["qosClass"], "Burstable");

    let table = node.ok(&["get", "pods"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("1/1") && row.contains("Running"), "{table}");
    assert!(node.ok(&["get", "cm"]).contains("web-config"));

    let id = container_id(&web, 0);
    let env = node.ok(&["exec", "web", "--", "env"]);
    for want in [
        "GREETING=hello",
        "MODE=edge",
        "APP_TOKEN=s3cret",
        "POD_NAME=web",
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "{want} missing from the container's env:\n{env}"
        );
    }
    let health = node.ok(&[
        "ctr",
        "exec",
        &id,
        "--",
        "wget",
        "-qO-",
        "http://127.0.0.1:8080/health",
    ]);
    assert_eq!(health, "ok\n");
    let logs = wait_for(&node, "the web log", || {
        let l = node.ok(&["logs", "web"]);
        l.contains("web hello starting").then_some(l)
    });
    assert!(logs.starts_with("web hello starting"), "{logs}");
    let cgroup = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/outpost/{id}/memory.limit_in_bytes"
    ))
    .expect("memory cgroup");
    assert_eq!(cgroup.trim(), (64u64 << 20).to_string());
    let describe = node.ok(&["describe", "pod", "web"]);
    assert!(
        describe.contains("Started") && describe.contains("web-config"),
        "{describe}"
    );

    // Removing the manifest removes the pod, and everything it had.
    std::fs::remove_file(manifests.join("web.yaml")).expect("rm");
    wait_for(&node, "web to go", || {
        pod(&node, "web").is_none().then_some(())
    });
    let ps = node.ok(&["ctr", "ps", "-a"]);
    assert!(!ps.contains(&id), "{ps}");
    assert!(
        std::fs::read_dir(node.run_dir().join("pods"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "sandbox left"
    );
    agent.stop();
}

#[test]
fn probes_drive_readiness_and_restart_an_unhealthy_container() {
    let (node, manifests) = node();
    std::fs::write(manifests.join("web.yaml"), WEB).expect("write manifest");
    let hooks = node.dir().join("hooks");
    std::fs::create_dir(&hooks).expect("hooks dir");
    std::fs::write(
        manifests.join("hooked.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hooked\nspec:\n  terminationGracePeriodSeconds: 5\n  volumes:\n  - name: out\n    hostPath: {{path: {}}}\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sleep, \"1000\"]\n    volumeMounts:\n    - {{name: out, mountPath: /out}}\n    lifecycle:\n      postStart:\n        exec: {{command: [sh, -c, 'echo started > /out/post-start']}}\n      preStop:\n        exec: {{command: [sh, -c, 'echo stopping > /out/pre-stop']}}\n",
            hooks.display()
        ),
    )
    .expect("write");
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    let web = running(&node, "web");
    assert_eq!(web["status"]["containerStatuses"][0]["ready"], true);
    running(&node, "hooked");
    assert_eq!(
        std::fs::read_to_string(hooks.join("post-start")).expect("postStart ran"),
        "started\n"
    );

    // Health goes away: readiness drops, liveness restarts the container, which comes back healthy.
    let id = container_id(&web, 0);
    node.ok(&["ctr", "exec", &id, "--", "rm", "/www/health"]);
    wait_for(&node, "web restarted by its liveness probe", || {
        let p = pod(&node, "web")?;
        let restarts = p["status"]["containerStatuses"][0]["restartCount"].as_u64()?;
        (restarts >= 1 && condition(&p, "Ready") == "True").then_some(())
    });
    let e = events(&node);
    assert!(
        e.contains("Liveness probe failed")
            && e.contains("failed liveness probe, will be restarted"),
        "{e}"
    );
    assert!(e.contains("Readiness probe failed"), "{e}");
    let web = pod(&node, "web").expect("web");
    assert_eq!(
        web["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 137,
        "{web}"
    );

    // Deleting a pod runs its preStop hook before the container stops.
    std::fs::remove_file(manifests.join("hooked.yaml")).expect("rm");
    wait_for(&node, "hooked to go", || {
        pod(&node, "hooked").is_none().then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(hooks.join("pre-stop")).expect("preStop ran"),
        "stopping\n"
    );
    agent.stop();
}

#[test]
fn apply_and_delete_edit_the_local_source() {
    let (node, manifests) = node();
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    let input = node.dir().join("input.yaml");
    std::fs::write(&input, format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: applied\nspec:\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sleep, \"1000\"]\n")).expect("write");
    let path = input.to_str().expect("utf-8");
    assert_eq!(
        node.ok(&["apply", "-f", path]).trim(),
        "pod/applied created"
    );
    running(&node, "applied");
    assert_eq!(
        node.ok(&["apply", "-f", path]).trim(),
        "pod/applied unchanged"
    );
    // An invalid object is refused with its field, and nothing is written.
    std::fs::write(
        node.dir().join("bad.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers: []\n",
    )
    .expect("write");
    let err = node.fails(&[
        "apply",
        "-f",
        node.dir().join("bad.yaml").to_str().expect("utf-8"),
    ]);
    assert!(err.contains("spec.containers"), "{err}");
    assert_eq!(
        node.ok(&["delete", "pod", "applied"]).trim(),
        "pod \"applied\" deleted"
    );
    assert!(pod(&node, "applied").is_none());
    let err = node.fails(&["delete", "pod", "applied"]);
    assert!(
        err.contains("NotFound") && err.contains("\"applied\" not found"),
        "{err}"
    );
    agent.stop();
}

#[test]
fn quota_and_limit_ranges_are_enforced_at_admission() {
    let (node, manifests) = node();
    let pod = |name: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sleep, \"1000\"]\n")
    };
    std::fs::write(
        manifests.join("policy.yaml"),
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: defaults\nspec:\n  limits:\n  - type: Container\n    default: {memory: 48Mi}\n---\napiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: two-pods\nspec:\n  hard: {pods: \"2\"}\n",
    )
    .expect("write");
    for name in ["q1", "q2", "q3"] {
        std::fs::write(manifests.join(format!("{name}.yaml")), pod(name)).expect("write");
    }
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    let q1 = running(&node, "q1");
    running(&node, "q2");
    // The LimitRange's default limit landed on the container (and its cgroup).
    let id = container_id(&q1, 0);
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/outpost/{id}/memory.limit_in_bytes"
    ))
    .expect("cgroup");
    assert_eq!(limit.trim(), (48u64 << 20).to_string());
    let e = wait_for(&node, "q3 refused by the quota", || {
        let e = events(&node);
        e.contains("FailedCreate").then_some(e)
    });
    assert!(e.contains("exceeded quota: two-pods"), "{e}");
    assert!(pod_absent(&node, "q3"));

    // A lowered quota stops nothing that runs, not even after a restart:
    // the agent does not admit the pods it re-adopts again.
    std::fs::write(
        manifests.join("policy.yaml"),
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: two-pods\nspec:\n  hard: {pods: \"1\"}\n",
    )
    .expect("write");
    wait_for(&node, "the quota lowered", || {
        let q = node.ok(&["get", "resourcequota", "two-pods", "-o", "json"]);
        q.contains("\"pods\": \"1\"").then_some(())
    });
    agent.stop();
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    assert_eq!(container_id(&running(&node, "q1"), 0), id);
    running(&node, "q2");
    agent.stop();
}

fn pod_absent(node: &Node, name: &str) -> bool {
    pod(node, name).is_none()
}

#[test]
fn config_map_secret_and_empty_dir_volumes() {
    let (node, manifests) = node();
    std::fs::write(
        manifests.join("vols.yaml"),
        format!(
            r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{app.conf: "level=debug\n"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{password: hunter2}}
---
apiVersion: v1
kind: Pod
metadata: {{name: vols}}
spec:
  volumes:
  - name: conf
    configMap: {{name: settings}}
  - name: creds
    secret: {{secretName: creds, defaultMode: 0400}}
  - name: scratch
    emptyDir: {{medium: Memory}}
  containers:
  - name: main
    image: {IMAGE}
    command: [sleep, "1000"]
    volumeMounts:
    - {{name: conf, mountPath: /etc/app}}
    - {{name: creds, mountPath: /secrets, readOnly: true}}
    - {{name: scratch, mountPath: /scratch}}
"#
        ),
    )
    .expect("write");
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    let p = running(&node, "vols");
    let id = container_id(&p, 0);
    let exec = |script: &str| node.ok(&["ctr", "exec", &id, "--", "sh", "-c", script]);
    assert_eq!(exec("cat /etc/app/app.conf"), "level=debug\n");
    assert_eq!(
        exec("cat /secrets/password; stat -L -c %a /secrets/password"),
        "hunter2400\n"
    );
    assert_eq!(exec("echo x > /scratch/f && cat /scratch/f && grep ' /scratch ' /proc/mounts | cut -d' ' -f3"), "x\ntmpfs\n");
    assert!(exec("touch /secrets/nope 2>&1 || echo read-only").contains("read-only"));
    // The secret never touches the disk: its volume is a tmpfs on the node.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let uid = p["metadata"]["uid"].as_str().expect("uid");
    let secret_mount = mounts
        .lines()
        .find(|l| l.contains(uid) && l.contains("secret"))
        .unwrap_or_else(|| panic!("no secret tmpfs:\n{mounts}"));
    assert!(secret_mount.contains(" - tmpfs "), "{secret_mount}");
    // A ConfigMap change reaches the mounted file (not the env, as in Kubernetes).
    let updated = std::fs::read_to_string(manifests.join("vols.yaml"))
        .expect("read")
        .replace("level=debug", "level=info");
    std::fs::write(manifests.join("vols.yaml"), updated).expect("write");
    // The pod's manifest is unchanged, so the same pod keeps running with the new file.
    wait_for(&node, "the projected file to update", || {
        (exec("cat /etc/app/app.conf") == "level=info\n").then_some(())
    });
    assert_eq!(container_id(&pod(&node, "vols").expect("vols"), 0), id);
    agent.stop();
}

#[test]
fn init_containers_run_in_order_and_a_missing_key_waits() {
    let (node, manifests) = node();
    std::fs::write(
        manifests.join("init.yaml"),
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: init}}
spec:
  volumes:
  - {{name: work, emptyDir: {{}}}}
  initContainers:
  - name: first
    image: {IMAGE}
    command: [sh, -c, "echo first >> /work/order"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  - name: second
    image: {IMAGE}
    command: [sh, -c, "echo second >> /work/order"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: main
    image: {IMAGE}
    command: [sh, -c, "cat /work/order; echo $LEVEL; exec sleep 1000"]
    volumeMounts: [{{name: work, mountPath: /work}}]
    env:
    - name: LEVEL
      valueFrom:
        configMapKeyRef: {{name: late, key: level}}
"#
        ),
    )
    .expect("write");
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    // The ConfigMap does not exist yet: the main container waits, as the kubelet does.
    let waiting = wait_for(&node, "CreateContainerConfigError", || {
        let p = pod(&node, "init")?;
        (p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            == "CreateContainerConfigError")
            .then_some(p)
    });
    let message = waiting["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(message.contains("late"), "{message}");
    let inits = &waiting["status"]["initContainerStatuses"];
    assert_eq!(inits[0]["state"]["terminated"]["exitCode"], 0, "{inits}");
    assert_eq!(inits[1]["state"]["terminated"]["exitCode"], 0, "{inits}");
    assert!(node
        .ok(&["get", "pods"])
        .contains("CreateContainerConfigError"));

    // The ConfigMap arrives: the same pod goes on, without re-running its init containers.
    std::fs::write(
        manifests.join("late.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late}\ndata: {level: info}\n",
    )
    .expect("write");
    running(&node, "init");
    let logs = wait_for(&node, "main's log", || {
        let l = node.ok(&["logs", "init", "-c", "main"]);
        (!l.is_empty()).then_some(l)
    });
    assert_eq!(logs, "first\nsecond\ninfo\n");
    agent.stop();
}

#[test]
fn a_crash_loop_backs_off() {
    let (node, manifests) = node();
    std::fs::write(
        manifests.join("crash.yaml"),
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: crash\nspec:\n  containers:\n  - name: crash\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo boom; exit 2\"]\n"),
    )
    .expect("write");
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    // Record when each restart is first seen.
    let mut seen: Vec<(u64, Instant)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(50);
    let mut crash_loop = false;
    while Instant::now() < deadline && seen.len() < 3 {
        if let Some(p) = pod(&node, "crash") {
            let status = &p["status"]["containerStatuses"][0];
            let restarts = status["restartCount"].as_u64().unwrap_or(0);
            if seen.last().is_none_or(|(r, _)| *r < restarts) {
                seen.push((restarts, Instant::now()));
            }
            crash_loop |= status["state"]["waiting"]["reason"] == "CrashLoopBackOff";
            if restarts > 0 {
                assert_eq!(status["lastState"]["terminated"]["exitCode"], 2, "{p}");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen.len() >= 3,
        "restarts seen: {:?}",
        seen.iter().map(|(r, _)| r).collect::<Vec<_>>()
    );
    assert!(crash_loop, "status showed CrashLoopBackOff");
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(
        gaps[gaps.len() - 1] > gaps[0],
        "back-off gaps grow: {gaps:?}"
    );
    assert!(events(&node).contains("BackOff"), "{}", events(&node));
    assert_eq!(node.ok(&["logs", "crash", "--previous"]), "boom\n");
    let table = node.ok(&["get", "pods"]);
    assert!(
        table.contains("CrashLoopBackOff") || table.contains("Error"),
        "{table}"
    );
    agent.stop();
}

#[test]
fn an_invalid_manifest_changes_nothing_until_fixed() {
    let (node, manifests) = node();
    std::fs::write(manifests.join("web.yaml"), WEB).expect("write");
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    let web = running(&node, "web");
    let id = container_id(&web, 0);
    let pid = ctr_pid(&node, &id);

    let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: second\nspec:\n  containers:\n  - name: second\n    image: example.com/test/busybox:1\n    command: [sleep, \"1000\"]\n    ports:\n    - containerPort: 99999\n";
    std::fs::write(manifests.join("second.yaml"), bad).expect("write");
    let rejected = wait_for(&node, "a BundleRejected event", || {
        let e = events(&node);
        e.contains("BundleRejected").then_some(e)
    });
    assert!(
        rejected.contains("second.yaml") && rejected.contains("containerPort"),
        "{rejected}"
    );
    assert!(pod(&node, "second").is_none());
    assert_eq!(ctr_pid(&node, &id), pid, "the running pod was untouched");

    std::fs::write(manifests.join("second.yaml"), bad.replace("99999", "8081")).expect("fix");
    running(&node, "second");
    assert_eq!(ctr_pid(&node, &id), pid);
    agent.stop();
}

#[test]
fn agent_sigkill_readopts_every_pod_without_restarts() {
    let (node, manifests) = node();
    for i in 0..5 {
        std::fs::write(
            manifests.join(format!("p{i}.yaml")),
            format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\nspec:\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [\"sleep\", \"1000\"]\n"),
        )
        .expect("write");
    }
    let args = ["--source".to_owned(), file_source(&manifests)];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = node.spawn_agent(&args);
    let before: Vec<(String, i64)> = (0..5)
        .map(|i| {
            let p = running(&node, &format!("p{i}"));
            let id = container_id(&p, 0);
            let pid = ctr_pid(&node, &id);
            (id, pid)
        })
        .collect();
    agent.sigkill();
    let agent = node.spawn_agent(&args);
    for (i, kept) in before.iter().enumerate() {
        let p = running(&node, &format!("p{i}"));
        assert_eq!(
            p["status"]["containerStatuses"][0]["restartCount"], 0,
            "p{i} was not restarted"
        );
        let id = container_id(&p, 0);
        assert_eq!(
            (id.clone(), ctr_pid(&node, &id)),
            *kept,
            "p{i} kept its container"
        );
    }
    agent.stop();
}

#[test]
fn a_reboot_with_the_upstream_gone_brings_every_pod_back() {
    let (node, manifests) = node();
    // The upstream: a real HTTP server in the test host, serving one bundle.
    let www = node.dir().join("www");
    std::fs::create_dir(&www).expect("www");
    let bundle = (0..2)
        .map(|i| format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: r{i}\nspec:\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [\"sleep\", \"1000\"]\n"))
        .collect::<Vec<_>>()
        .join("---\n");
    std::fs::write(www.join("bundle.yaml"), bundle).expect("bundle");
    let mut upstream = crate::harness::Upstream::start(&node, &www);
    let url = format!("http://{}/bundle.yaml", upstream.addr());
    let args = [
        "--source",
        &url,
        "--allow-http-source",
        "--source-interval",
        "1s",
    ];
    let agent = node.spawn_agent(&args);
    running(&node, "r0");
    running(&node, "r1");

    // Power off: the agent stops, every container dies, the run dir (tmpfs) is gone,
    // and the upstream is unreachable when the node comes back.
    agent.stop();
    node.ok(&["ctr", "rm", "-f", "--all"]);
    wait_for(&node, "the supervisor to exit", || {
        node.supervisor_pid().is_none().then_some(())
    });
    // tmpfs is empty after a reboot: no mounts (pinned namespaces) survive either.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let run = node.run_dir();
    for point in mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(&run))
    {
        nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH).expect("unmount");
    }
    std::fs::remove_dir_all(node.run_dir()).expect("clear run dir");
    std::fs::create_dir(node.run_dir()).expect("run dir");
    upstream.stop();
    let _ = manifests;

    let agent = node.spawn_agent(&args);
    running(&node, "r0");
    running(&node, "r1");
    let e = wait_for(&node, "a SourceUnreachable event", || {
        let e = events(&node);
        e.contains("SourceUnreachable").then_some(e)
    });
    assert!(e.contains(&url), "{e}");
    agent.stop();
}

/// The node's arch as its `kubernetes.io/arch` label says it.
fn node_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn pods_this_node_does_not_fit_stay_pending() {
    let (node, manifests) = node();
    let manifest = |name: &str, placement: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{placement}  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sleep, \"1000\"]\n")
    };
    let arch_in = |arch: &str| {
        format!("  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions:\n          - {{key: kubernetes.io/arch, operator: In, values: [{arch}]}}\n")
    };
    std::fs::write(
        manifests.join("ssd.yaml"),
        manifest("ssd", "  nodeSelector: {disk: ssd}\n"),
    )
    .expect("write");
    std::fs::write(
        manifests.join("other.yaml"),
        manifest("other", &arch_in("s390x")),
    )
    .expect("write");
    std::fs::write(
        manifests.join("hdd.yaml"),
        manifest("hdd", "  nodeSelector: {disk: hdd}\n"),
    )
    .expect("write");
    std::fs::write(manifests.join("ds.yaml"), DAEMON_SET_ELSEWHERE).expect("write");
    let agent = node.spawn_agent(&[
        "--source",
        &file_source(&manifests),
        "--node-label",
        "disk=ssd",
    ]);

    // A --node-label satisfies a nodeSelector.
    running(&node, "ssd");
    // A selector or affinity this node does not meet: Pending, as the
    // scheduler leaves it, with its reason; nothing runs for it.
    for name in ["other", "hdd"] {
        let p = wait_for(&node, &format!("{name} Pending"), || pod(&node, name));
        assert_eq!(p["status"]["phase"], "Pending", "{p}");
        assert_eq!(condition(&p, "PodScheduled"), "False", "{p}");
        assert!(p["spec"]["nodeName"].is_null(), "{p}");
    }
    let e = events(&node);
    assert!(
        e.contains("FailedScheduling") && e.contains("didn't match Pod's node affinity/selector"),
        "{e}"
    );
    let ds: Value =
        serde_json::from_str(&node.ok(&["get", "ds", "agent", "-o", "json"])).expect("ds json");
    assert_eq!(ds["status"]["desiredNumberScheduled"], 0, "{ds}");
    assert!(pods(&node)
        .iter()
        .all(|p| p["metadata"]["labels"]["app"] != "agent"));
    let ps: Value = serde_json::from_str(&node.ok(&["ctr", "ps", "-o", "json"])).expect("ps json");
    assert_eq!(ps.as_array().map(Vec::len), Some(1), "only ssd runs: {ps}");

    // Fixed to this node's arch, the pod runs; a removed one goes.
    std::fs::write(
        manifests.join("other.yaml"),
        manifest("other", &arch_in(node_arch())),
    )
    .expect("write");
    running(&node, "other");
    std::fs::remove_file(manifests.join("hdd.yaml")).expect("remove");
    wait_for(&node, "hdd gone", || pod_absent(&node, "hdd").then_some(()));

    // The label goes with a restart: the running pod stays (required during
    // scheduling, ignored during execution), a new one asking for it waits.
    let ssd = container_id(&running(&node, "ssd"), 0);
    agent.stop();
    std::fs::write(
        manifests.join("ssd2.yaml"),
        manifest("ssd2", "  nodeSelector: {disk: ssd}\n"),
    )
    .expect("write");
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    assert_eq!(container_id(&running(&node, "ssd"), 0), ssd);
    let p = wait_for(&node, "ssd2 Pending", || pod(&node, "ssd2"));
    assert_eq!(condition(&p, "PodScheduled"), "False", "{p}");
    agent.stop();
}

/// A DaemonSet for nodes of another arch.
const DAEMON_SET_ELSEWHERE: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions:
              - {key: kubernetes.io/arch, operator: In, values: [s390x]}
      containers:
      - name: main
        image: example.com/test/busybox:1
        command: [sleep, "1000"]
"#;

#[test]
fn a_container_created_but_never_started_by_a_killed_agent_is_made_again() {
    let (node, manifests) = node();
    std::fs::write(
        manifests.join("solo.yaml"),
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: solo\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sleep, \"1000\"]\n"),
    )
    .expect("write");
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    let id = container_id(&running(&node, "solo"), 0);
    // The agent dies between creating the container and starting it: the
    // supervisor holds it, created, under the pod's own container id.
    agent.sigkill();
    node.ok(&["ctr", "rm", "-f", &id]);
    node.ok(&[
        "ctr", "create", "--pull", "never", "--name", &id, IMAGE, "--", "sleep", "1000",
    ]);
    let _agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    let pod = running(&node, "solo");
    assert_eq!(container_id(&pod, 0), id, "the same attempt, made again");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    assert!(ctr_pid(&node, &id) > 0);
}
