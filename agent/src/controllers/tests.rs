//! The controllers against a simulated node: pods appear as the plan asks,
//! become ready (or not) as each test says, and vanish when dropped.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::deployment::resolve_fenceposts;
use super::*;
use crate::manifest::{parse_bundle, BundleFile, Object};

/// One object from YAML, defaulted and validated as the agent reads it.
fn object(yaml: &str) -> Object {
    let file = BundleFile {
        name: "t.yaml".into(),
        content: yaml.as_bytes().to_vec(),
    };
    let mut objects = parse_bundle(&[file]).expect("valid manifest");
    objects.remove(0).object
}

fn deployment(extra_spec: &str, image: &str) -> Deployment {
    let yaml = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: app, image: {image}}}]}}\n{extra_spec}"
    );
    match object(&yaml) {
        Object::Deployment(d) => *d,
        other => panic!("not a deployment: {other:?}"),
    }
}

fn job(extra_spec: &str) -> Job {
    let yaml = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: work}}\nspec:\n  template:\n    spec: {{restartPolicy: Never, containers: [{{name: app, image: busybox}}]}}\n{extra_spec}"
    );
    match object(&yaml) {
        Object::Job(j) => *j,
        other => panic!("not a job: {other:?}"),
    }
}

fn daemon_set(image: &str, extra_pod_spec: &str) -> DaemonSet {
    let yaml = format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: agent}}\nspec:\n  selector: {{matchLabels: {{app: a}}}}\n  template:\n    metadata: {{labels: {{app: a}}}}\n    spec: {{containers: [{{name: app, image: {image}}}]{extra_pod_spec}}}\n"
    );
    match object(&yaml) {
        Object::DaemonSet(d) => *d,
        other => panic!("not a daemonset: {other:?}"),
    }
}

/// A node whose pods do what the test says.
struct Sim {
    records: Records,
    pods: BTreeMap<(String, String), PodView>,
    now_ms: i64,
    node: NodeInfo,
    last: Plan,
    /// Every event since the test began.
    events: Vec<Event>,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            records: Records::default(),
            pods: BTreeMap::new(),
            now_ms: 1_700_000_000_000,
            node: NodeInfo {
                name: "edge-1".into(),
                labels: BTreeMap::from([("kubernetes.io/os".into(), "linux".into())]),
            },
            last: Plan::default(),
            events: Vec::new(),
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millisecond(self.now_ms).expect("time")
    }

    /// One reconcile; pods it dropped are gone at once, new ones are Pending.
    fn run(&mut self, deployments: &[&Deployment], jobs: &[&Job], daemon_sets: &[&DaemonSet]) {
        let world = World {
            now: self.now(),
            node: &self.node,
            deployments: deployments.iter().map(|d| (*d, "file:///m")).collect(),
            jobs: jobs.iter().map(|j| (*j, "file:///m")).collect(),
            daemon_sets: daemon_sets.iter().map(|d| (*d, "file:///m")).collect(),
            pods: &self.pods,
        };
        let plan = reconcile(&self.records, &world);
        // Level-triggered: the same world again changes nothing.
        let again = reconcile(&plan.records, &world);
        assert_eq!(
            again.records, plan.records,
            "a second reconcile changed the records"
        );
        assert_eq!(
            again.pods.keys().collect::<Vec<_>>(),
            plan.pods.keys().collect::<Vec<_>>()
        );
        self.records = plan.records.clone();
        self.pods.retain(|k, _| plan.pods.contains_key(k));
        for (k, pod) in &plan.pods {
            let owner = pod
                .metadata
                .owner_references
                .as_ref()
                .and_then(|o| o.first())
                .map(|o| o.uid.clone());
            self.pods.entry(k.clone()).or_insert_with(|| PodView {
                uid: crate::pods::pod_uid(pod),
                phase: "Pending".into(),
                owner_uid: owner,
                ..PodView::default()
            });
        }
        self.events.extend(plan.events.iter().cloned());
        self.last = plan;
    }

    /// Runs until nothing changes (as the agent does on every pod change).
    fn settle(&mut self, deployments: &[&Deployment]) {
        for _ in 0..20 {
            let before = self.records.clone();
            self.run(deployments, &[], &[]);
            if self.records == before {
                return;
            }
        }
        panic!("no fixpoint");
    }

    /// Every pending pod of a ReplicaSet whose name has `prefix` becomes ready.
    fn ready(&mut self, prefix: &str) {
        let now = self.now();
        for ((_, name), v) in self.pods.iter_mut() {
            if name.starts_with(prefix) && v.phase == "Pending" {
                v.phase = "Running".into();
                v.ready = true;
                v.ready_since = Some(now);
            }
        }
    }

    fn set_phase(&mut self, name: &str, phase: &str) {
        let v = self
            .pods
            .iter_mut()
            .find(|((_, n), _)| n == name)
            .map(|(_, v)| v)
            .expect("pod");
        v.phase = phase.into();
        v.ready = false;
    }

    fn ready_count(&self) -> usize {
        self.pods.values().filter(|v| v.ready).count()
    }

    /// `name=replicas` of every ReplicaSet, by revision.
    fn sets(&self) -> String {
        let mut sets: Vec<&ReplicaSetRecord> = self.records.replica_sets.values().collect();
        sets.sort_by_key(|rs| rs.revision);
        sets.iter()
            .map(|rs| format!("r{}={}/{}", rs.revision, rs.replicas, rs.pods.len()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn object(&self, kind: &str, name: &str) -> &serde_json::Value {
        &self.last.objects[&ObjectKey::namespaced(kind, "default", name)]
    }

    fn condition(&self, kind: &str, name: &str, cond: &str) -> (String, String) {
        let c = self.object(kind, name)["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == cond).cloned())
            .unwrap_or_default();
        (
            c["status"].as_str().unwrap_or("").to_owned(),
            c["reason"].as_str().unwrap_or("").to_owned(),
        )
    }

    fn advance(&mut self, seconds: i64) {
        self.now_ms += seconds * 1000;
    }
}

#[test]
fn fenceposts_round_as_kubernetes_does() {
    let check =
        |surge: IntOrString, unavailable: IntOrString, replicas: i32, expect: (i32, i32)| {
            assert_eq!(
                resolve_fenceposts(Some(&surge), Some(&unavailable), replicas),
                expect,
                "{surge:?} {unavailable:?} of {replicas}"
            );
        };
    let pct = |s: &str| IntOrString::String(s.into());
    check(pct("25%"), pct("25%"), 3, (1, 0));
    check(pct("25%"), pct("25%"), 4, (1, 1));
    check(pct("25%"), pct("25%"), 10, (3, 2));
    check(IntOrString::Int(1), IntOrString::Int(0), 3, (1, 0));
    check(IntOrString::Int(0), IntOrString::Int(0), 3, (0, 1));
    check(pct("0%"), pct("10%"), 5, (0, 1));
    check(pct("50%"), pct("100%"), 3, (2, 3));
}

#[test]
fn a_new_deployment_gets_one_replica_set_and_its_pods() {
    let mut sim = Sim::new();
    let d = deployment("  replicas: 3\n", "web:1");
    sim.settle(&[&d]);
    assert_eq!(sim.sets(), "r1=3/3");
    assert_eq!(sim.pods.len(), 3);
    let rs = sim
        .records
        .replica_sets
        .values()
        .next()
        .expect("a set")
        .clone();
    assert!(rs.name.starts_with("web-"), "{}", rs.name);
    for pod in sim.last.pods.values() {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        assert!(name.starts_with(&format!("{}-", rs.name)), "{name}");
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["pod-template-hash"], rs.hash);
        assert_eq!(labels["app"], "web");
        let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("ReplicaSet", rs.uid.as_str())
        );
    }
    let published = sim.object("Deployment", "web");
    assert_eq!(
        published["metadata"]["annotations"][REVISION_ANNOTATION],
        "1"
    );
    assert_eq!(published["status"]["replicas"], 3);
    assert_eq!(published["status"]["readyReplicas"], 0);
    assert_eq!(sim.condition("Deployment", "web", "Available").0, "False");
    sim.ready("web-");
    sim.settle(&[&d]);
    let published = sim.object("Deployment", "web");
    assert_eq!(published["status"]["availableReplicas"], 3);
    assert_eq!(published["status"]["updatedReplicas"], 3);
    assert_eq!(
        sim.condition("Deployment", "web", "Progressing"),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    let rs_object = sim.object("ReplicaSet", &rs.name);
    assert_eq!(
        rs_object["metadata"]["ownerReferences"][0]["kind"],
        "Deployment"
    );
    assert_eq!(rs_object["status"]["readyReplicas"], 3);
}

#[test]
fn rolling_update_keeps_every_replica_available() {
    let mut sim = Sim::new();
    let strategy = "  replicas: 3\n  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n";
    let v1 = deployment(strategy, "web:1");
    sim.settle(&[&v1]);
    sim.ready("web-");
    sim.settle(&[&v1]);
    let v2 = deployment(strategy, "web:2");
    let mut steps = Vec::new();
    for _ in 0..10 {
        sim.settle(&[&v2]);
        steps.push(sim.sets());
        assert!(
            sim.ready_count() >= 3,
            "fewer than 3 ready at {}",
            sim.sets()
        );
        assert!(sim.pods.len() <= 4, "more than 4 pods at {}", sim.sets());
        sim.ready("web-");
    }
    assert_eq!(
        steps[..4],
        [
            "r1=3/3 r2=1/1",
            "r1=2/2 r2=2/2",
            "r1=1/1 r2=3/3",
            "r1=0/0 r2=3/3"
        ]
    );
    let published = sim.object("Deployment", "web");
    assert_eq!(
        published["metadata"]["annotations"][REVISION_ANNOTATION],
        "2"
    );
    assert_eq!(
        sim.condition("Deployment", "web", "Progressing").1,
        "NewReplicaSetAvailable"
    );
    let scaled: Vec<&str> = sim.last.events.iter().map(|e| e.reason).collect();
    assert!(
        scaled.is_empty(),
        "a settled rollout reports nothing more: {scaled:?}"
    );
}

#[test]
fn a_stalled_rollout_exceeds_its_deadline_and_undo_restores() {
    let mut sim = Sim::new();
    let strategy =
        "  replicas: 3\n  progressDeadlineSeconds: 30\n  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n";
    let v1 = deployment(strategy, "web:1");
    sim.settle(&[&v1]);
    sim.ready("web-");
    sim.settle(&[&v1]);
    let broken = deployment(strategy, "web:broken");
    sim.settle(&[&broken]);
    assert_eq!(sim.sets(), "r1=3/3 r2=1/1");
    sim.advance(20);
    sim.settle(&[&broken]);
    assert_eq!(
        sim.condition("Deployment", "web", "Progressing"),
        ("True".into(), "ReplicaSetUpdated".into())
    );
    assert!(sim.last.wake.is_some(), "the deadline is a wake-up");
    sim.advance(11);
    sim.settle(&[&broken]);
    assert_eq!(
        sim.condition("Deployment", "web", "Progressing"),
        ("False".into(), "ProgressDeadlineExceeded".into())
    );
    assert_eq!(sim.ready_count(), 3, "the old pods keep serving");
    sim.advance(5);
    sim.settle(&[&broken]);
    let told = sim
        .events
        .iter()
        .filter(|e| e.reason == "ProgressDeadlineExceeded")
        .count();
    assert_eq!(told, 1, "the deadline is reported once");
    // Undo: the template of revision 1 again; that set becomes revision 3.
    sim.settle(&[&v1]);
    assert_eq!(sim.sets(), "r2=0/0 r3=3/3");
    let old = sim
        .records
        .replica_sets
        .values()
        .find(|rs| rs.revision == 3)
        .expect("revision 3");
    assert_eq!(old.revision_history, [1]);
    assert_eq!(
        sim.condition("Deployment", "web", "Progressing").1,
        "NewReplicaSetAvailable"
    );
}

#[test]
fn scaling_picks_not_ready_and_newest_pods_first() {
    let mut sim = Sim::new();
    let d3 = deployment("  replicas: 3\n", "web:1");
    sim.settle(&[&d3]);
    sim.ready("web-");
    sim.advance(5);
    let d5 = deployment("  replicas: 5\n", "web:1");
    sim.settle(&[&d5]);
    assert_eq!(sim.sets(), "r1=5/5");
    let first: Vec<String> = sim
        .pods
        .iter()
        .filter(|(_, v)| v.ready)
        .map(|((_, n), _)| n.clone())
        .collect();
    let d2 = deployment("  replicas: 2\n", "web:1");
    sim.settle(&[&d2]);
    assert_eq!(sim.sets(), "r1=2/2");
    for (_, name) in sim.pods.keys() {
        assert!(first.contains(name), "{name} was not one of the ready ones");
    }
    let reasons: Vec<String> = sim.events.iter().map(|e| e.message.clone()).collect();
    assert!(
        reasons
            .iter()
            .any(|m| m.contains("Scaled down replica set") && m.ends_with("to 2 from 5")),
        "{reasons:?}"
    );
}

#[test]
fn recreate_waits_for_old_pods_to_go() {
    let mut sim = Sim::new();
    let v1 = deployment("  replicas: 2\n  strategy: {type: Recreate}\n", "web:1");
    sim.settle(&[&v1]);
    sim.ready("web-");
    sim.settle(&[&v1]);
    let v2 = deployment("  replicas: 2\n  strategy: {type: Recreate}\n", "web:2");
    sim.run(&[&v2], &[], &[]);
    assert_eq!(sim.sets(), "r1=0/0");
    sim.settle(&[&v2]);
    assert_eq!(sim.sets(), "r1=0/0 r2=2/2");
}

#[test]
fn paused_deployments_scale_but_do_not_roll_and_history_is_trimmed() {
    let mut sim = Sim::new();
    let paused = deployment("  replicas: 2\n  paused: true\n", "web:2");
    let v1 = deployment("  replicas: 2\n", "web:1");
    sim.settle(&[&v1]);
    sim.ready("web-");
    sim.settle(&[&v1]);
    sim.settle(&[&paused]);
    assert_eq!(sim.sets(), "r1=2/2");
    assert_eq!(
        sim.condition("Deployment", "web", "Progressing"),
        ("Unknown".into(), "DeploymentPaused".into())
    );
    // Three more revisions with a history of one: the oldest idle sets go.
    let limited = |image: &str| deployment("  replicas: 2\n  revisionHistoryLimit: 1\n", image);
    for image in ["web:2", "web:3", "web:4"] {
        let d = limited(image);
        for _ in 0..6 {
            sim.settle(&[&d]);
            sim.ready("web-");
        }
    }
    assert_eq!(sim.sets(), "r3=0/0 r4=2/2");
}

#[test]
fn deleting_a_deployment_deletes_its_sets_and_pods() {
    let mut sim = Sim::new();
    let d = deployment("  replicas: 2\n", "web:1");
    sim.settle(&[&d]);
    sim.settle(&[]);
    assert_eq!(sim.sets(), "");
    assert!(sim.pods.is_empty());
    assert!(sim.records.deployments.is_empty());
}

#[test]
fn jobs_run_to_completion_in_parallel() {
    let mut sim = Sim::new();
    let j = job("  completions: 3\n  parallelism: 2\n");
    sim.run(&[], &[&j], &[]);
    assert_eq!(sim.pods.len(), 2);
    let names: Vec<String> = sim.pods.keys().map(|(_, n)| n.clone()).collect();
    sim.set_phase(&names[0], "Succeeded");
    sim.run(&[], &[&j], &[]);
    assert_eq!(sim.pods.len(), 3, "a third pod replaces the finished one");
    let active: Vec<String> = sim
        .pods
        .iter()
        .filter(|(_, v)| v.phase == "Pending")
        .map(|((_, n), _)| n.clone())
        .collect();
    assert_eq!(active.len(), 2);
    for name in &active {
        sim.set_phase(name, "Succeeded");
    }
    sim.run(&[], &[&j], &[]);
    let status = &sim.object("Job", "work")["status"];
    assert_eq!(status["succeeded"], 3);
    assert_eq!(status["active"], 0);
    assert_eq!(sim.condition("Job", "work", "Complete").0, "True");
    assert!(status["completionTime"].is_string());
    assert_eq!(sim.pods.len(), 3, "finished pods stay");
    let pod = sim.last.pods.values().next().expect("pod");
    assert_eq!(
        pod.metadata.labels.as_ref().expect("labels")["job-name"],
        "work"
    );
}

#[test]
fn a_failing_job_backs_off_and_stops_at_its_limit() {
    let mut sim = Sim::new();
    let j = job("  backoffLimit: 1\n");
    sim.run(&[], &[&j], &[]);
    let first = sim.pods.keys().next().expect("pod").1.clone();
    sim.set_phase(&first, "Failed");
    sim.run(&[], &[&j], &[]);
    assert_eq!(sim.pods.len(), 1, "no retry before the back-off");
    assert!(sim.last.wake.is_some());
    sim.advance(10);
    sim.run(&[], &[&j], &[]);
    assert_eq!(sim.pods.len(), 2, "retried after 10 s");
    let second = sim
        .pods
        .keys()
        .map(|(_, n)| n.clone())
        .find(|n| *n != first)
        .expect("second pod");
    sim.set_phase(&second, "Failed");
    sim.run(&[], &[&j], &[]);
    assert_eq!(
        sim.condition("Job", "work", "Failed"),
        ("True".into(), "BackoffLimitExceeded".into())
    );
    assert_eq!(sim.object("Job", "work")["status"]["failed"], 2);
    sim.advance(60);
    sim.run(&[], &[&j], &[]);
    assert_eq!(sim.pods.len(), 2, "a failed Job starts nothing more");
}

#[test]
fn a_finished_job_goes_after_its_ttl_and_is_not_run_again() {
    let mut sim = Sim::new();
    let j = job("  ttlSecondsAfterFinished: 30\n");
    sim.run(&[], &[&j], &[]);
    let pod = sim.pods.keys().next().expect("pod").1.clone();
    sim.advance(5);
    sim.set_phase(&pod, "Succeeded");
    sim.run(&[], &[&j], &[]);
    assert_eq!(sim.condition("Job", "work", "Complete").0, "True");
    assert_eq!(sim.pods.len(), 1, "the finished pod stays until the TTL");
    let wake = sim.last.wake.expect("a wake-up for the TTL");
    assert_eq!(wake.as_millisecond(), sim.now_ms + 30_000);
    sim.advance(29);
    sim.run(&[], &[&j], &[]);
    assert_eq!(sim.pods.len(), 1, "not before the TTL");
    sim.advance(1);
    sim.run(&[], &[&j], &[]);
    assert!(sim.pods.is_empty(), "its pods go with it");
    assert!(
        !sim.last
            .objects
            .contains_key(&ObjectKey::namespaced("Job", "default", "work")),
        "the Job is deleted"
    );
    // The source still names it: it is not run again (nor after a restart,
    // which reloads the same records), and a new template is a new Job.
    sim.advance(3600);
    sim.run(&[], &[&j], &[]);
    assert!(sim.pods.is_empty() && sim.last.wake.is_none());
    let changed = job("  ttlSecondsAfterFinished: 30\n  backoffLimit: 2\n");
    sim.run(&[], &[&changed], &[]);
    assert!(sim.pods.is_empty(), "only the template makes a new Job");
    let mut edited = j.clone();
    edited
        .spec
        .as_mut()
        .expect("spec")
        .template
        .spec
        .as_mut()
        .expect("pod")
        .containers[0]
        .image = Some("busybox:2".into());
    sim.run(&[], &[&edited], &[]);
    assert_eq!(sim.pods.len(), 1, "a new template runs afresh");
    // A failed Job goes too, counted from when it failed.
    let mut sim = Sim::new();
    let j = job("  ttlSecondsAfterFinished: 0\n  backoffLimit: 0\n");
    sim.run(&[], &[&j], &[]);
    let pod = sim.pods.keys().next().expect("pod").1.clone();
    sim.set_phase(&pod, "Failed");
    sim.run(&[], &[&j], &[]);
    assert!(sim.pods.is_empty(), "a TTL of 0 deletes it at once");
    assert!(sim.last.objects.is_empty());
}

#[test]
fn an_active_deadline_ends_a_job() {
    let mut sim = Sim::new();
    let j = job("  activeDeadlineSeconds: 5\n");
    sim.run(&[], &[&j], &[]);
    assert_eq!(sim.pods.len(), 1);
    sim.advance(5);
    sim.run(&[], &[&j], &[]);
    assert_eq!(
        sim.condition("Job", "work", "Failed"),
        ("True".into(), "DeadlineExceeded".into())
    );
    assert!(sim.pods.is_empty(), "the running pod is stopped");
}

#[test]
fn a_daemon_set_runs_one_pod_here_and_replaces_it_on_update() {
    let mut sim = Sim::new();
    let v1 = daemon_set("agent:1", "");
    sim.run(&[], &[], &[&v1]);
    assert_eq!(sim.pods.len(), 1);
    sim.ready("agent-");
    sim.run(&[], &[], &[&v1]);
    let status = &sim.object("DaemonSet", "agent")["status"];
    assert_eq!(status["desiredNumberScheduled"], 1);
    assert_eq!(status["numberReady"], 1);
    let old: Vec<String> = sim.pods.keys().map(|(_, n)| n.clone()).collect();
    let v2 = daemon_set("agent:2", "");
    sim.run(&[], &[], &[&v2]);
    assert_eq!(sim.pods.len(), 1);
    assert!(!old.contains(&sim.pods.keys().next().expect("pod").1));
    let elsewhere = daemon_set("agent:2", ", nodeSelector: {disk: ssd}");
    sim.run(&[], &[], &[&elsewhere]);
    assert!(sim.pods.is_empty(), "the node does not match");
    assert_eq!(
        sim.object("DaemonSet", "agent")["status"]["desiredNumberScheduled"],
        0
    );
}

#[test]
fn template_hashes_are_stable_and_safe() {
    let d = deployment("", "web:1");
    let template = &d.spec.as_ref().expect("spec").template;
    let a = template_hash(template, None);
    assert_eq!(a, template_hash(template, None));
    assert_ne!(a, template_hash(template, Some(1)));
    assert!(a.chars().all(|c| SAFE_ALPHABET.contains(&(c as u8))), "{a}");
}

#[test]
fn an_indexed_job_runs_each_index_until_it_succeeds() {
    let mut sim = Sim::new();
    let j = job("  completionMode: Indexed\n  completions: 3\n  parallelism: 2\n");
    let index_of = |sim: &Sim, name: &str| -> String {
        let pod = sim
            .last
            .pods
            .values()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .expect("pod in the plan");
        let index = pod.metadata.annotations.as_ref().expect("annotations")
            ["batch.kubernetes.io/job-completion-index"]
            .clone();
        assert_eq!(
            pod.metadata.labels.as_ref().expect("labels")
                ["batch.kubernetes.io/job-completion-index"],
            index
        );
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(
            spec.hostname.as_deref(),
            Some(format!("work-{index}").as_str())
        );
        let env = spec.containers[0].env.as_ref().expect("env");
        let var = env
            .iter()
            .find(|v| v.name == "JOB_COMPLETION_INDEX")
            .expect("JOB_COMPLETION_INDEX");
        assert_eq!(
            var.value_from
                .as_ref()
                .and_then(|f| f.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("metadata.annotations['batch.kubernetes.io/job-completion-index']")
        );
        assert!(name.starts_with(&format!("work-{index}-")), "{name}");
        index
    };
    let active = |sim: &Sim| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = sim
            .pods
            .iter()
            .filter(|(_, v)| v.phase == "Pending")
            .map(|((_, n), _)| (index_of(sim, n), n.clone()))
            .collect();
        out.sort();
        out
    };

    sim.run(&[], &[&j], &[]);
    let first = active(&sim);
    assert_eq!(
        first.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(),
        ["0", "1"]
    );
    // Index 1 succeeds, index 0 fails: after the Job's back-off, index 0
    // runs again and index 2 starts.
    sim.set_phase(&first[1].1, "Succeeded");
    sim.set_phase(&first[0].1, "Failed");
    sim.run(&[], &[&j], &[]);
    assert!(active(&sim).is_empty(), "nothing new within the back-off");
    sim.advance(10);
    sim.run(&[], &[&j], &[]);
    let now = active(&sim);
    assert_eq!(
        now.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(),
        ["0", "2"]
    );
    assert_ne!(now[0].1, first[0].1, "a new pod for the failed index");
    for (_, name) in &now {
        sim.set_phase(name, "Succeeded");
    }
    sim.run(&[], &[&j], &[]);
    let status = &sim.object("Job", "work")["status"];
    assert_eq!(status["completedIndexes"], "0-2");
    assert_eq!(status["succeeded"], 3);
    assert_eq!(status["failed"], 1);
    assert_eq!(sim.condition("Job", "work", "Complete").0, "True");
}

#[test]
fn completed_indexes_are_written_as_ranges() {
    let ranges = |v: &[i32]| super::job::index_ranges(&v.iter().copied().collect());
    assert_eq!(ranges(&[]), "");
    assert_eq!(ranges(&[0]), "0");
    assert_eq!(ranges(&[0, 1, 2, 4, 6, 7]), "0-2,4,6-7");
}
