//! ReplicaSets: a template, a replica count, and the pods that make it up.
//! The Deployment controller sets the count; [`ReplicaSetRecord::sync_pods`]
//! makes the pods match it, choosing victims as the ReplicaSet controller
//! does (`getPodsToDelete`).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    new_pod_name, owner_reference, pod_from_template, time, PodRecord, PodView, World,
    TEMPLATE_HASH_LABEL,
};

/// A ReplicaSet a Deployment owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub created_ms: i64,
    /// The owning Deployment's name and uid.
    pub deployment: String,
    pub deployment_uid: String,
    /// `pod-template-hash`.
    pub hash: String,
    pub revision: i64,
    /// Revisions this template had before (a rollback moves it to the newest).
    #[serde(default)]
    pub revision_history: Vec<i64>,
    /// Desired pods (`spec.replicas`).
    pub replicas: i32,
    /// `deployment.kubernetes.io/desired-replicas` and `max-replicas`: the
    /// Deployment's size (and size + surge) when this set was last scaled.
    pub desired_replicas: i32,
    pub max_replicas: i32,
    pub min_ready_seconds: i32,
    /// With the `pod-template-hash` label.
    pub template: PodTemplateSpec,
    pub selector: LabelSelector,
    /// Annotations copied from the Deployment (`kubernetes.io/change-cause`, …).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub pods: Vec<PodRecord>,
    /// Names handed out so far (pod names never repeat within a set).
    #[serde(default)]
    pub pod_counter: u64,
}

/// What a ReplicaSet's pods are doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Pods that exist (not being deleted).
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
}

impl ReplicaSetRecord {
    /// The template without `pod-template-hash`: what a Deployment's template is compared with.
    pub fn bare_template(&self) -> PodTemplateSpec {
        let mut t = self.template.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(TEMPLATE_HASH_LABEL);
        }
        t
    }

    /// Counts of its pods as observed.
    pub fn counts(&self, world: &World<'_>) -> Counts {
        let mut c = Counts::default();
        for p in &self.pods {
            let view = world.pod(&self.namespace, &p.name);
            if view.is_some_and(|v| v.deleting) {
                continue;
            }
            c.replicas += 1;
            if let Some(v) = view {
                c.ready += i32::from(v.ready);
                c.available += i32::from(v.available(self.min_ready_seconds, world.now));
            }
        }
        c
    }

    /// Creates or removes pods until there are `replicas`. Returns the names removed.
    pub fn sync_pods(&mut self, world: &World<'_>, taken: &mut BTreeSet<String>) -> Vec<String> {
        let want = usize::try_from(self.replicas.max(0)).unwrap_or(0);
        let mut removed = Vec::new();
        while self.pods.len() < want {
            let name = new_pod_name(&self.name, &self.uid, &mut self.pod_counter, taken);
            taken.insert(name.clone());
            self.pods.push(PodRecord {
                name,
                created_ms: world.now.as_millisecond(),
            });
        }
        if self.pods.len() > want {
            let excess = self.pods.len() - want;
            let mut ranked: Vec<(VictimRank, String)> = self
                .pods
                .iter()
                .map(|p| {
                    let rank = VictimRank::of(p, world.pod(&self.namespace, &p.name));
                    (rank, p.name.clone())
                })
                .collect();
            ranked.sort();
            let victims: BTreeSet<String> =
                ranked.into_iter().take(excess).map(|(_, n)| n).collect();
            self.pods.retain(|p| !victims.contains(&p.name));
            removed.extend(victims);
        }
        removed
    }

    /// Its pods, as they should run.
    pub fn pods(&self) -> impl Iterator<Item = Pod> + '_ {
        let owner = owner_reference("apps/v1", "ReplicaSet", &self.name, &self.uid);
        self.pods.iter().map(move |p| {
            pod_from_template(&self.template, &self.namespace, &p.name, &[], owner.clone())
        })
    }

    /// The ReplicaSet as `outpost get rs -o yaml` shows it.
    pub fn to_json(&self, counts: Counts) -> Value {
        let mut annotations: BTreeMap<String, String> = self.annotations.clone();
        annotations.insert(
            super::REVISION_ANNOTATION.to_owned(),
            self.revision.to_string(),
        );
        annotations.insert(
            "deployment.kubernetes.io/desired-replicas".to_owned(),
            self.desired_replicas.to_string(),
        );
        annotations.insert(
            "deployment.kubernetes.io/max-replicas".to_owned(),
            self.max_replicas.to_string(),
        );
        if !self.revision_history.is_empty() {
            let history: Vec<String> = self.revision_history.iter().map(i64::to_string).collect();
            annotations.insert(
                "deployment.kubernetes.io/revision-history".to_owned(),
                history.join(","),
            );
        }
        let labels = self
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let owner = owner_reference(
            "apps/v1",
            "Deployment",
            &self.deployment,
            &self.deployment_uid,
        );
        json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
                "creationTimestamp": time(self.created_ms),
                "generation": 1,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [owner],
            },
            "spec": {
                "replicas": self.replicas,
                "minReadySeconds": self.min_ready_seconds,
                "selector": self.selector,
                "template": self.template,
            },
            "status": {
                "replicas": counts.replicas,
                "fullyLabeledReplicas": counts.replicas,
                "readyReplicas": counts.ready,
                "availableReplicas": counts.available,
                "observedGeneration": 1,
            },
        })
    }
}

/// The order in which pods are chosen for deletion (smallest first), after
/// the ReplicaSet controller's `ActivePodsWithRanks`: not yet running before
/// running, not ready before ready, ready for less time before longer, more
/// restarts before fewer, newer before older.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct VictimRank {
    phase: u8,
    ready: bool,
    /// Negated: the later it became ready, the sooner it goes.
    ready_since: i64,
    /// Negated: more restarts go first.
    restarts: i32,
    /// Negated: newer go first.
    created: i64,
}

impl VictimRank {
    fn of(record: &PodRecord, view: Option<&PodView>) -> VictimRank {
        let phase = match view.map(|v| v.phase.as_str()) {
            None | Some("") => 0,
            Some("Pending") => 1,
            Some("Running") => 3,
            Some(_) => 2,
        };
        VictimRank {
            phase,
            ready: view.is_some_and(|v| v.ready),
            ready_since: -view
                .and_then(|v| v.ready_since)
                .map_or(i64::MAX, Timestamp::as_millisecond),
            restarts: -view.map_or(0, |v| v.restarts),
            created: -record.created_ms,
        }
    }
}
