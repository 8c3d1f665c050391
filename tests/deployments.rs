//! Workloads through the real agent: a production-shaped Deployment rolled
//! forward, stalled, rolled back and scaled with the CLI; an agent SIGKILL in
//! the middle of a rollout; Jobs that complete or give up; a DaemonSet.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{file_source, ImageBuilder, Layer, Node};

/// Serving images: `/etc/ready-ok` lets the pod pass its readiness probe.
const V1: &str = "example.com/test/web:1";
const V2: &str = "example.com/test/web:2";
/// Without `/etc/ready-ok`: runs, never ready.
const BROKEN: &str = "example.com/test/web:broken";

/// A node with the three web images imported and a manifests dir.
fn node() -> (Node, PathBuf) {
    let node = Node::new();
    for (name, ready) in [(V1, Some("1")), (V2, Some("2")), (BROKEN, None)] {
        let mut image = ImageBuilder::busybox();
        if let Some(version) = ready {
            image = image.layer(Layer::files(&[("etc/ready-ok", version)]));
        }
        let archive = node
            .dir()
            .join(format!("{}.tar", name.replace(['/', ':'], "_")));
        image.build().docker_archive(&archive, name);
        node.ok(&["images", "import", archive.to_str().expect("utf-8 path")]);
    }
    let manifests = node.manifests_dir();
    (node, manifests)
}

/// A typical production Deployment: 3 replicas, surge 1 / unavailable 0,
/// readiness on /ready, liveness on /health, envFrom ConfigMap + Secret, resources.
fn web(replicas: u32, readiness_delay: u32) -> String {
    format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: web-config}}
data: {{GREETING: hello}}
---
apiVersion: v1
kind: Secret
metadata: {{name: web-secret}}
stringData: {{TOKEN: s3cret}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web}}
spec:
  replicas: {replicas}
  progressDeadlineSeconds: 12
  selector:
    matchLabels: {{app: web}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: {V1}
        command: [sh, -c]
        args:
        - mkdir -p /www && echo ok > /www/health && if [ -f /etc/ready-ok ]; then cp /etc/ready-ok /www/ready; fi; exec httpd -f -p 8080 -h /www
        envFrom:
        - configMapRef: {{name: web-config}}
        - secretRef: {{name: web-secret}}
        ports:
        - {{name: http, containerPort: 8080}}
        resources:
          requests: {{cpu: 50m, memory: 16Mi}}
          limits: {{cpu: 250m, memory: 64Mi}}
        readinessProbe:
          httpGet: {{path: /ready, port: http}}
          initialDelaySeconds: {readiness_delay}
          periodSeconds: 1
        livenessProbe:
          httpGet: {{path: /health, port: http}}
          initialDelaySeconds: 5
          periodSeconds: 2
"#
    )
}

fn json(node: &Node, args: &[&str]) -> Value {
    serde_json::from_str(&node.ok(args)).expect("json output")
}

fn items(node: &Node, kind: &str) -> Vec<Value> {
    json(node, &["get", kind, "-o", "json"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Polls until `f` gives a value (90 s at most), panicking with `what` and the node's state.
fn wait_for<T>(node: &Node, what: &str, f: impl FnMut() -> Option<T>) -> T {
    node.wait_for(what, Duration::from_secs(90), f)
}

/// The image of the Deployment's pods, each pod's.
fn pod_images(node: &Node) -> Vec<String> {
    items(node, "pods")
        .iter()
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// Samples the ready pods every 100 ms in a thread until stopped: the fewest seen.
struct ReadySampler {
    stop: Arc<AtomicBool>,
    fewest: Arc<Mutex<usize>>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl ReadySampler {
    fn start(node: &Node) -> ReadySampler {
        let stop = Arc::new(AtomicBool::new(false));
        let fewest = Arc::new(Mutex::new(usize::MAX));
        let mut cmd_args = node.command(&["get", "pods", "-o", "json"]);
        let program = cmd_args.get_program().to_owned();
        let args: Vec<_> = cmd_args.get_args().map(|a| a.to_owned()).collect();
        let envs: Vec<_> = cmd_args
            .get_envs()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
            .collect();
        let _ = &mut cmd_args;
        let (stop2, fewest2) = (stop.clone(), fewest.clone());
        let thread = std::thread::spawn(move || {
            let mut samples = 0;
            while !stop2.load(Ordering::Relaxed) {
                let out = std::process::Command::new(&program)
                    .args(&args)
                    .envs(envs.iter().map(|(k, v)| (k, v)))
                    .output()
                    .expect("run outpost get pods");
                if let Ok(list) = serde_json::from_slice::<Value>(&out.stdout) {
                    let n = list["items"]
                        .as_array()
                        .map_or(0, |ps| ps.iter().filter(|p| ready(p)).count());
                    let mut f = fewest2.lock().expect("lock");
                    *f = (*f).min(n);
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        ReadySampler {
            stop,
            fewest,
            thread: Some(thread),
        }
    }

    /// (fewest ready pods seen, samples taken).
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.take().expect("thread").join().expect("sampler");
        (*self.fewest.lock().expect("lock"), samples)
    }
}

#[test]
fn a_deployment_rolls_forward_stalls_and_rolls_back() {
    let (node, manifests) = node();
    std::fs::write(manifests.join("web.yaml"), web(3, 0)).expect("write manifest");
    // READY comes once the source was read: the Deployment is there at once.
    let _agent = node.spawn_agent(&["--source", &file_source(&manifests)]);

    let status = node.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(
        status.ends_with("deployment \"web\" successfully rolled out\n"),
        "{status}"
    );
    let deploy = json(&node, &["get", "deploy", "web", "-o", "json"]);
    assert_eq!(deploy["status"]["readyReplicas"], 3, "{deploy}");
    assert_eq!(deploy["status"]["availableReplicas"], 3);
    let table = node.ok(&["get", "deployments"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web ") && l.contains("3/3")),
        "{table}"
    );
    let sets = items(&node, "rs");
    assert_eq!(sets.len(), 1);
    let first_rs = sets[0]["metadata"]["name"]
        .as_str()
        .expect("rs name")
        .to_owned();
    assert_eq!(
        sets[0]["metadata"]["ownerReferences"][0]["uid"],
        deploy["metadata"]["uid"]
    );
    let pods = items(&node, "pods");
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["name"],
            first_rs.as_str()
        );
        assert!(p["metadata"]["name"]
            .as_str()
            .expect("name")
            .starts_with(&format!("{first_rs}-")));
    }
    let one = pods[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    let env = node.ok(&["exec", &one, "--", "env"]);
    assert!(
        env.lines().any(|l| l == "GREETING=hello") && env.lines().any(|l| l == "TOKEN=s3cret"),
        "{env}"
    );

    // A ConfigMap change does not restart pods.
    let before: Vec<String> = pods
        .iter()
        .map(|p| p["metadata"]["uid"].as_str().unwrap_or("").to_owned())
        .collect();
    let text = std::fs::read_to_string(manifests.join("web.yaml")).expect("read");
    std::fs::write(
        manifests.join("web.yaml"),
        text.replace("GREETING: hello", "GREETING: bonjour"),
    )
    .expect("write");
    wait_for(&node, "the ConfigMap update", || {
        json(&node, &["get", "cm", "web-config", "-o", "json"])["data"]["GREETING"]
            .as_str()
            .filter(|g| *g == "bonjour")
            .map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<String> = items(&node, "pods")
        .iter()
        .map(|p| p["metadata"]["uid"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(before, after, "a ConfigMap change restarted pods");

    // A new image: never fewer than 3 ready pods while it rolls.
    let sampler = ReadySampler::start(&node);
    let out = node.ok(&["set", "image", "deployment/web", &format!("web={V2}")]);
    assert_eq!(out, "deployment.apps/web image updated\n");
    let status = node.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(status.ends_with("successfully rolled out\n"), "{status}");
    let (fewest, samples) = sampler.finish();
    assert!(samples > 5, "only {samples} samples");
    assert!(
        fewest >= 3,
        "only {fewest} pods were ready at one moment of the rollout"
    );
    wait_for(&node, "only new pods", || {
        let images = pod_images(&node);
        (images.len() == 3 && images.iter().all(|i| i == V2)).then_some(())
    });
    let old = json(&node, &["get", "rs", &first_rs, "-o", "json"]);
    assert_eq!(old["spec"]["replicas"], 0, "the old ReplicaSet scales to 0");
    let history = node.ok(&["rollout", "history", "deployment/web"]);
    assert_eq!(
        history,
        "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
    );

    // An image that never gets ready: the rollout stalls on the old pods.
    node.ok(&["set", "image", "deployment/web", &format!("web={BROKEN}")]);
    let stalled = node.outpost(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(
        !stalled.status.success(),
        "rollout status must fail on a stalled rollout"
    );
    let stderr = String::from_utf8_lossy(&stalled.stderr);
    assert!(
        stderr.contains("deployment \"web\" exceeded its progress deadline"),
        "{stderr}"
    );
    let pods = items(&node, "pods");
    let ready_old: Vec<&Value> = pods
        .iter()
        .filter(|p| ready(p) && p["spec"]["containers"][0]["image"] == V2)
        .collect();
    assert_eq!(ready_old.len(), 3, "3 old pods keep serving");
    let deploy = json(&node, &["get", "deploy", "web", "-o", "json"]);
    let progressing = deploy["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
        .cloned()
        .expect("Progressing condition");
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["reason"], "ProgressDeadlineExceeded");

    // Undo: back to revision 2 (its ReplicaSet becomes revision 4).
    assert_eq!(
        node.ok(&["rollout", "undo", "deployment/web"]),
        "deployment.apps/web rolled back\n"
    );
    node.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    wait_for(&node, "the stalled pod gone", || {
        let images = pod_images(&node);
        (images.len() == 3 && images.iter().all(|i| i == V2)).then_some(())
    });
    let source = std::fs::read_to_string(manifests.join("web.yaml")).expect("read");
    assert!(source.contains(V2) && !source.contains(BROKEN), "{source}");
    let history = node.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("\n3 ") && history.contains("\n4 ") && !history.contains("\n2 "),
        "{history}"
    );

    // rollout restart: every pod replaced, one rollout.
    let before: Vec<String> = items(&node, "pods")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        node.ok(&["rollout", "restart", "deployment/web"]),
        "deployment.apps/web restarted\n"
    );
    node.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    wait_for(&node, "all pods replaced", || {
        let now: Vec<String> = items(&node, "pods")
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_owned())
            .collect();
        (now.len() == 3 && now.iter().all(|n| !before.contains(n))).then_some(())
    });

    // Pause: template changes wait; resume rolls them out.
    assert_eq!(
        node.ok(&["rollout", "pause", "deployment/web"]),
        "deployment.apps/web paused\n"
    );
    let err = node.fails(&["rollout", "pause", "deployment/web"]);
    assert!(
        err.contains("deployments \"web\" in namespace \"default\" is already paused"),
        "{err}"
    );
    node.ok(&["set", "image", "deployment/web", &format!("web={V1}")]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        pod_images(&node).iter().all(|i| i == V2),
        "a paused Deployment rolled"
    );
    node.ok(&["rollout", "resume", "deployment/web"]);
    node.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    wait_for(&node, "v1 pods after resume", || {
        let images = pod_images(&node);
        (images.len() == 3 && images.iter().all(|i| i == V1)).then_some(())
    });
}

#[test]
fn scale_follows_and_a_killed_agent_finishes_the_rollout_without_duplicates() {
    let (node, manifests) = node();
    std::fs::write(manifests.join("web.yaml"), web(3, 2)).expect("write manifest");
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    node.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);

    assert_eq!(
        node.ok(&["scale", "deployment/web", "--replicas=5"]),
        "deployment.apps/web scaled\n"
    );
    wait_for(&node, "5 ready pods", || {
        (items(&node, "pods").iter().filter(|p| ready(p)).count() == 5).then_some(())
    });
    node.ok(&["scale", "deployment/web", "--replicas=2"]);
    wait_for(&node, "2 pods", || {
        (items(&node, "pods").len() == 2).then_some(())
    });
    let deploy = json(&node, &["get", "deploy", "web", "-o", "json"]);
    assert_eq!(deploy["spec"]["replicas"], 2);

    // Kill the agent while the new ReplicaSet's first pod is not ready yet.
    node.ok(&["set", "image", "deployment/web", &format!("web={V2}")]);
    wait_for(&node, "the rollout under way", || {
        items(&node, "pods")
            .iter()
            .any(|p| p["spec"]["containers"][0]["image"] == V2)
            .then_some(())
    });
    agent.sigkill();
    let restarted = node.spawn_agent(&["--source", &file_source(&manifests)]);
    let status = node.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(status.ends_with("successfully rolled out\n"), "{status}");
    wait_for(&node, "2 new pods and nothing else", || {
        let images = pod_images(&node);
        (images.len() == 2 && images.iter().all(|i| i == V2)).then_some(())
    });
    // No duplicates: one running container per pod, nothing else in the supervisor.
    std::thread::sleep(Duration::from_secs(3));
    let ps: Value = serde_json::from_str(&node.ok(&["ctr", "ps", "-o", "json"])).expect("ps json");
    let running: Vec<&Value> = ps
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c["state"] == "running")
        .collect();
    assert_eq!(running.len(), 2, "containers: {ps}");
    let sets = items(&node, "rs");
    let replicas: Vec<i64> = sets
        .iter()
        .map(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(replicas.iter().sum::<i64>(), 2, "{replicas:?}");

    // Corrupt controller state: set aside with an event, the Deployment is
    // rebuilt with new pods, and the old ones do not linger.
    restarted.stop();
    let records = node.state_dir().join("controllers.json");
    std::fs::write(&records, "{\"replicaSets\": [garbage").expect("corrupt");
    let _agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    node.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let events = node.ok(&["get", "events", "-A"]);
    assert!(events.contains("ControllerStateLost"), "{events}");
    assert!(node.state_dir().join("controllers.json.corrupt").exists());
    wait_for(&node, "2 pods and 2 containers", || {
        let ps: Value = serde_json::from_str(&node.ok(&["ctr", "ps", "-o", "json"])).ok()?;
        let running = ps
            .as_array()?
            .iter()
            .filter(|c| c["state"] == "running")
            .count();
        (running == 2 && items(&node, "pods").len() == 2).then_some(())
    });
}

const JOBS: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: batch}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: work, image: example.com/test/web:1, command: [sh, -c, "sleep 1; echo done"]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: shards}
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: work, image: example.com/test/web:1, command: [sh, -c, 'echo "shard $JOB_COMPLETION_INDEX on $(hostname)"']}
---
apiVersion: batch/v1
kind: Job
metadata: {name: doomed}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: work, image: example.com/test/web:1, command: [sh, -c, "exit 3"]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: tidy}
spec:
  ttlSecondsAfterFinished: 8
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: work, image: example.com/test/web:1, command: [echo, tidy]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-agent}
spec:
  selector: {matchLabels: {app: node-agent}}
  template:
    metadata: {labels: {app: node-agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: agent, image: example.com/test/web:1, command: [sleep, "3600"]}
"#;

fn condition(object: &Value, kind: &str) -> Option<(String, String)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_owned(),
                c["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
}

#[test]
fn jobs_complete_or_stop_at_their_backoff_limit_and_a_daemon_set_runs_here() {
    let (node, manifests) = node();
    std::fs::write(manifests.join("jobs.yaml"), JOBS).expect("write manifest");
    let _agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    let job_pods = |job: &str| -> Vec<String> {
        items(&node, "pods")
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["job-name"] == job)
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    };

    // A Job with a TTL is complete, its pod kept, for 8 s.
    wait_for(&node, "the tidy Job complete", || {
        let job = json(&node, &["get", "job", "tidy", "-o", "json"]);
        condition(&job, "Complete").map(|_| ())
    });
    let tidy = job_pods("tidy");
    assert_eq!(tidy.len(), 1, "{tidy:?}");
    assert_eq!(node.ok(&["logs", &tidy[0]]), "tidy\n");

    let job = wait_for(&node, "the batch Job complete", || {
        let job = json(&node, &["get", "job", "batch", "-o", "json"]);
        condition(&job, "Complete").map(|_| job)
    });
    assert_eq!(job["status"]["succeeded"], 3);
    assert_eq!(job["status"]["failed"], 0);
    let batch_pods: Vec<Value> = items(&node, "pods")
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["job-name"] == "batch")
        .collect();
    assert_eq!(batch_pods.len(), 3, "one pod per completion");
    assert!(batch_pods
        .iter()
        .all(|p| p["status"]["phase"] == "Succeeded"));
    let name = batch_pods[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    assert_eq!(node.ok(&["logs", &name]), "done\n");
    let table = node.ok(&["get", "jobs"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("batch ") && l.contains("3/3")),
        "{table}"
    );

    // An Indexed Job: each pod knows its index (env, hostname, label).
    let shards = wait_for(&node, "the Indexed Job complete", || {
        let job = json(&node, &["get", "job", "shards", "-o", "json"]);
        condition(&job, "Complete").map(|_| job)
    });
    assert_eq!(shards["status"]["completedIndexes"], "0-2");
    let mut said: Vec<String> = items(&node, "pods")
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["job-name"] == "shards")
        .map(|p| {
            let name = p["metadata"]["name"].as_str().expect("name").to_owned();
            let index = p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .expect("index label")
                .to_owned();
            assert!(name.starts_with(&format!("shards-{index}-")), "{name}");
            node.ok(&["logs", &name])
        })
        .collect();
    said.sort();
    assert_eq!(
        said,
        [
            "shard 0 on shards-0\n",
            "shard 1 on shards-1\n",
            "shard 2 on shards-2\n"
        ]
    );

    let doomed = wait_for(&node, "the doomed Job failed", || {
        let job = json(&node, &["get", "job", "doomed", "-o", "json"]);
        condition(&job, "Failed").map(|_| job)
    });
    assert_eq!(
        condition(&doomed, "Failed").expect("failed").1,
        "BackoffLimitExceeded"
    );
    assert_eq!(doomed["status"]["failed"], 2, "one try and one retry");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(job_pods("doomed").len(), 2, "no pod after the limit");

    // The TTL over: the tidy Job and its pod are deleted, and not run again.
    wait_for(&node, "the tidy Job deleted", || {
        let out = node.outpost(&["get", "job", "tidy"]);
        (!out.status.success() && job_pods("tidy").is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(job_pods("tidy").is_empty(), "the deleted Job ran again");

    let ds = wait_for(&node, "the DaemonSet pod ready", || {
        let ds = json(&node, &["get", "ds", "node-agent", "-o", "json"]);
        (ds["status"]["numberReady"] == 1).then_some(ds)
    });
    assert_eq!(ds["status"]["desiredNumberScheduled"], 1);
    let agents = items(&node, "pods")
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "node-agent")
        .count();
    assert_eq!(agents, 1);

    // Deleting the Deployment-less objects: the Job's pods and the DaemonSet's pod go.
    std::fs::remove_file(manifests.join("jobs.yaml")).expect("remove manifest");
    wait_for(&node, "every pod gone", || {
        items(&node, "pods").is_empty().then_some(())
    });
    assert!(items(&node, "jobs").is_empty());
}

#[test]
fn workload_verbs_refuse_objects_of_a_remote_source() {
    let (node, manifests) = node();
    let www = node.dir().join("www");
    std::fs::create_dir(&www).expect("www");
    let remote = web(1, 0).replace("name: web\n  labels", "name: remote\n  labels");
    std::fs::write(www.join("bundle.yaml"), remote).expect("write");
    let upstream = crate::harness::Upstream::start(&node, &www);
    let url = format!("http://{}/bundle.yaml", upstream.addr());
    let _agent = node.spawn_agent(&[
        "--source",
        &file_source(&manifests),
        "--source",
        &url,
        "--allow-http-source",
    ]);
    for args in [
        &["scale", "deployment/remote", "--replicas=3"][..],
        &[
            "set",
            "image",
            "deployment/remote",
            "web=example.com/test/web:2",
        ],
        &["rollout", "pause", "deployment/remote"],
        &["rollout", "restart", "deployment/remote"],
    ] {
        let err = node.fails(args);
        assert!(
            err.contains(&format!(
                "deployments \"remote\" in namespace \"default\" is owned by {url}; change it there"
            )),
            "{args:?}: {err}"
        );
    }
    let deploy = json(&node, &["get", "deploy", "remote", "-o", "json"]);
    assert_eq!(deploy["spec"]["replicas"], 1, "nothing changed");
    assert!(
        std::fs::read_dir(&manifests).expect("dir").next().is_none(),
        "nothing written to the local source"
    );
    let err = node.fails(&["scale", "deployment/missing", "--replicas=3"]);
    assert!(
        err.contains("deployments \"missing\" in namespace \"default\" not found"),
        "{err}"
    );
}
