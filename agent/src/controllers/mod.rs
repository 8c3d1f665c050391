//! Workload controllers: Deployments (through ReplicaSet revisions), Jobs and
//! node-local DaemonSets turned into the pods this node runs.
//!
//! A pure, level-triggered core, as the controller-manager's controllers
//! are: [`reconcile`] takes what the controllers remember ([`Records`]: the
//! ReplicaSets, their pods, Job progress), the desired workloads, the pods as
//! the pod workers report them, and the time; it returns the new records, the
//! pods to run, the objects to publish with their status, events, and when
//! to look again. No I/O: the agent persists the records *before* it starts
//! the pods they name, so an agent killed at any point finds the same pods
//! (their uids are hashes of their manifests) and never runs duplicates.
//!
//! Running it twice on the same world changes nothing.

pub mod daemonset;
pub mod deployment;
pub mod job;
pub mod node_fit;
mod replicaset;

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use replicaset::ReplicaSetRecord;

use crate::events::EventType;
use crate::state::ObjectKey;

/// The annotation holding a Deployment's (and its ReplicaSets') revision.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The label that ties a ReplicaSet's pods to its template.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The annotation `kubectl rollout restart` sets on a pod template.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// What the controllers remember between runs (persisted by [`store`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Records {
    /// By `namespace/name`.
    pub deployments: BTreeMap<String, deployment::DeploymentRecord>,
    /// By `namespace/name`.
    pub replica_sets: BTreeMap<String, ReplicaSetRecord>,
    /// By `namespace/name`.
    pub jobs: BTreeMap<String, job::JobRecord>,
    /// By `namespace/name`.
    pub daemon_sets: BTreeMap<String, daemonset::DaemonSetRecord>,
}

/// A pod a controller created: its name and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    pub name: String,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
}

/// A pod as its worker reports it (from the published Pod).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    pub uid: String,
    /// `Pending`, `Running`, `Succeeded`, `Failed`.
    pub phase: String,
    pub ready: bool,
    /// When the Ready condition last became true.
    pub ready_since: Option<Timestamp>,
    /// Container restarts, all containers.
    pub restarts: i32,
    /// Being terminated (`deletionTimestamp` set).
    pub deleting: bool,
    /// The uid of its controller (ownerReferences, `controller: true`).
    pub owner_uid: Option<String>,
}

impl PodView {
    /// Reads a published Pod.
    pub fn from_json(pod: &Value) -> PodView {
        let ready = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
        let is_ready = ready.is_some_and(|c| c["status"] == "True");
        let restarts = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .map_or(0, |cs| {
                cs.iter()
                    .map(|c| c["restartCount"].as_i64().unwrap_or(0) as i32)
                    .sum()
            });
        let owner_uid = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
            .and_then(|r| r["uid"].as_str())
            .map(str::to_owned);
        PodView {
            uid: pod
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            phase: pod
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            ready: is_ready,
            ready_since: ready
                .filter(|_| is_ready)
                .and_then(|c| c["lastTransitionTime"].as_str())
                .and_then(|t| t.parse().ok()),
            restarts,
            deleting: pod.pointer("/metadata/deletionTimestamp").is_some(),
            owner_uid,
        }
    }

    /// Ready for at least `min_ready_seconds` (Kubernetes' "available").
    pub fn available(&self, min_ready_seconds: i32, now: Timestamp) -> bool {
        if !self.ready || self.deleting {
            return false;
        }
        if min_ready_seconds <= 0 {
            return true;
        }
        self.ready_since.is_some_and(|since| {
            since.as_millisecond() + i64::from(min_ready_seconds) * 1000 <= now.as_millisecond()
        })
    }
}

/// This node, as node selectors and node affinity see it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Everything a reconcile looks at.
#[derive(Debug)]
pub struct World<'a> {
    pub now: Timestamp,
    pub node: &'a NodeInfo,
    /// Desired workloads with the source that declared each.
    pub deployments: Vec<(&'a Deployment, &'a str)>,
    pub jobs: Vec<(&'a Job, &'a str)>,
    pub daemon_sets: Vec<(&'a DaemonSet, &'a str)>,
    /// Published pods by (namespace, name).
    pub pods: &'a BTreeMap<(String, String), PodView>,
}

impl World<'_> {
    fn pod(&self, namespace: &str, name: &str) -> Option<&PodView> {
        self.pods.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Whether any published pod still belongs to the controller `uid`.
    fn pods_of(&self, uid: &str) -> usize {
        self.pods
            .values()
            .filter(|p| p.owner_uid.as_deref() == Some(uid))
            .count()
    }
}

/// An event a controller reports about its object.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub object: ObjectKey,
    pub event_type: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// What a reconcile decided.
#[derive(Debug, Default)]
pub struct Plan {
    pub records: Records,
    /// Every pod the controllers want running, by (namespace, name).
    pub pods: BTreeMap<(String, String), Pod>,
    /// Deployments, ReplicaSets, Jobs and DaemonSets with their status.
    pub objects: BTreeMap<ObjectKey, Value>,
    pub events: Vec<Event>,
    /// When the world changes by itself (minReadySeconds, deadlines, back-off).
    pub wake: Option<Timestamp>,
}

impl Plan {
    fn wake_at(&mut self, at: Timestamp) {
        if self.wake.is_none_or(|w| at < w) {
            self.wake = Some(at);
        }
    }

    fn event(
        &mut self,
        object: ObjectKey,
        event_type: EventType,
        reason: &'static str,
        message: String,
    ) {
        self.events.push(Event {
            object,
            event_type,
            reason,
            message,
        });
    }
}

/// How many rounds a reconcile takes at most to settle.
const MAX_ROUNDS: usize = 8;

/// Runs the controllers until their records settle for this world: a
/// ReplicaSet scaled down lets the new one grow in the same reconcile, as
/// the controller-manager would in its next sync, so that reconciling the
/// same world again changes nothing. (If they have not settled after
/// `MAX_ROUNDS`, a bug, the last round stands and the next reconcile goes on.)
pub fn reconcile(records: &Records, world: &World<'_>) -> Plan {
    let mut records = records.clone();
    let mut events = Vec::new();
    let mut round = 0;
    loop {
        let mut plan = Plan {
            records: records.clone(),
            ..Plan::default()
        };
        deployment::reconcile(&mut plan, world);
        job::reconcile(&mut plan, world);
        daemonset::reconcile(&mut plan, world);
        events.append(&mut plan.events);
        round += 1;
        if plan.records == records || round > MAX_ROUNDS {
            plan.events = events;
            return plan;
        }
        records = plan.records;
    }
}

/// The pod names in `namespace` a new pod may not take: every pod the
/// controllers' records name there (whatever controller) and every pod
/// published there.
fn taken_names(records: &Records, world: &World<'_>, namespace: &str) -> BTreeSet<String> {
    let prefix = format!("{namespace}/");
    let mine = |key: &String| key.starts_with(&prefix);
    let mut taken: BTreeSet<String> = world
        .pods
        .keys()
        .filter(|(ns, _)| ns == namespace)
        .map(|(_, name)| name.clone())
        .collect();
    for rs in records
        .replica_sets
        .values()
        .filter(|rs| rs.namespace == namespace)
    {
        taken.extend(rs.pods.iter().map(|p| p.name.clone()));
    }
    for (_, job) in records.jobs.iter().filter(|(k, _)| mine(k)) {
        taken.extend(job.pods.iter().map(|p| p.pod.name.clone()));
    }
    for (_, ds) in records.daemon_sets.iter().filter(|(k, _)| mine(k)) {
        taken.extend(ds.pods.iter().map(|p| p.pod.name.clone()));
    }
    taken
}

/// `namespace/name`: how records are keyed.
fn record_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// A uid for a controller object, derived from what makes it unique.
fn make_uid(parts: &[&str]) -> String {
    crate::records::uid(parts.join("\0").as_bytes())
}

/// apimachinery's `rand.SafeEncodeString` alphabet: no vowels, no look-alikes.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a, 32 bits: what `ComputeHash` uses for pod-template-hash.
fn fnv32a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Kubernetes' `ComputeHash`: FNV-32a of the template (and the collision
/// count), its decimal digits mapped through the safe alphabet.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// Five characters for a pod name, derived from its controller and a counter
/// (names look random, as generateName's do, and a plan stays pure).
fn pod_suffix(owner_uid: &str, n: u64) -> String {
    let mut h = u64::from(fnv32a(format!("{owner_uid}/{n}").as_bytes()));
    (0..5)
        .map(|_| {
            let c = SAFE_ALPHABET[(h % SAFE_ALPHABET.len() as u64) as usize] as char;
            h /= SAFE_ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// A name for a new pod of `owner` that `taken` does not hold yet.
fn new_pod_name(
    prefix: &str,
    owner_uid: &str,
    counter: &mut u64,
    taken: &BTreeSet<String>,
) -> String {
    loop {
        *counter += 1;
        let name = format!("{prefix}-{}", pod_suffix(owner_uid, *counter));
        if !taken.contains(&name) {
            return name;
        }
    }
}

/// The owner reference a controller puts on what it creates.
fn owner_reference(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod from a template, as a controller creates it.
fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    name: &str,
    extra_labels: &[(&str, &str)],
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    for (k, v) in extra_labels {
        labels.insert((*k).to_owned(), (*v).to_owned());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: meta.annotations.filter(|a| !a.is_empty()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Kubernetes' timestamp format (RFC 3339, seconds) of a millisecond time.
fn time(ms: i64) -> Value {
    match Timestamp::from_millisecond(ms) {
        Ok(t) => json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        Err(_) => Value::Null,
    }
}

/// A status condition, as Deployments and Jobs report them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_update_ms: i64,
    pub last_transition_ms: i64,
}

impl Condition {
    fn to_json(&self, with_update_time: bool) -> Value {
        let mut c = json!({
            "type": self.kind,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": time(self.last_transition_ms),
        });
        if with_update_time {
            c["lastUpdateTime"] = time(self.last_update_ms);
        } else {
            c["lastProbeTime"] = time(self.last_update_ms);
        }
        c
    }
}

/// Sets condition `kind` in `conditions`: the transition time moves only when
/// the status does (SetDeploymentCondition / the Job controller's helper).
fn set_condition(
    conditions: &mut Vec<Condition>,
    kind: &str,
    status: &str,
    reason: &str,
    message: String,
    now_ms: i64,
) {
    if let Some(c) = conditions.iter_mut().find(|c| c.kind == kind) {
        if c.status == status && c.reason == reason && c.message == message {
            return;
        }
        if c.status != status {
            c.last_transition_ms = now_ms;
        }
        c.status = status.to_owned();
        c.reason = reason.to_owned();
        c.message = message;
        c.last_update_ms = now_ms;
        return;
    }
    conditions.push(Condition {
        kind: kind.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_update_ms: now_ms,
        last_transition_ms: now_ms,
    });
}

/// A published object from its declared form: uid, generation, source
/// annotation and status added.
fn published<T: Serialize>(
    object: &T,
    uid: &str,
    created_ms: i64,
    source: &str,
    status: Value,
) -> Value {
    let mut json = serde_json::to_value(object).unwrap_or_else(|_| json!({}));
    json["metadata"]["uid"] = json!(uid);
    json["metadata"]["creationTimestamp"] = time(created_ms);
    json["metadata"]["annotations"][crate::agent::SOURCE_ANNOTATION] = json!(source);
    json["status"] = status;
    json
}

/// A stable hash of a serializable value (for "did the spec change").
fn spec_hash<T: Serialize>(value: &T) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..12])
}

#[cfg(test)]
mod tests;
