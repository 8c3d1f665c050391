//! DaemonSets on this node: one pod when the node matches the pod
//! template's `nodeSelector` and required node affinity, none otherwise. A
//! template change replaces the pod as the RollingUpdate strategy says
//! (`maxSurge: 0`: the old pod goes first; `maxSurge: 1`: the new one becomes
//! available first); `OnDelete` leaves the old pod running.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::DaemonSet;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    make_uid, new_pod_name, owner_reference, pod_from_template, published, record_key, spec_hash,
    template_hash, NodeInfo, Plan, PodRecord, World,
};
use crate::manifest::int_or_percent;
use crate::state::ObjectKey;

/// The label that names the template revision of a DaemonSet's pod.
const REVISION_LABEL: &str = "controller-revision-hash";

/// What the controller remembers of a DaemonSet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetRecord {
    pub uid: String,
    pub created_ms: i64,
    pub generation: i64,
    pub spec_hash: String,
    pub pods: Vec<DaemonPod>,
    #[serde(default)]
    pub pod_counter: u64,
}

/// A pod of a DaemonSet and the template revision it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonPod {
    #[serde(flatten)]
    pub pod: PodRecord,
    pub hash: String,
    pub generation: i64,
}

/// Whether this node is one the DaemonSet's pods go to (`nodeSelector` and
/// required node affinity).
fn node_matches(ds: &DaemonSet, node: &NodeInfo) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .is_some_and(|spec| super::node_fit::fits(spec, node))
}

pub(super) fn reconcile(plan: &mut Plan, world: &World<'_>) {
    let now_ms = world.now.as_millisecond();
    let mut live = BTreeSet::new();
    for (ds, source) in &world.daemon_sets {
        let Some(spec) = ds.spec.as_ref() else {
            continue;
        };
        let ns = ds
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = ds.metadata.name.clone().unwrap_or_default();
        let key = record_key(&ns, &name);
        live.insert(key.clone());
        let taken = super::taken_names(&plan.records, world, &ns);
        let record = plan
            .records
            .daemon_sets
            .entry(key.clone())
            .or_insert_with(|| DaemonSetRecord {
                uid: make_uid(&["DaemonSet", &ns, &name, &now_ms.to_string()]),
                created_ms: now_ms,
                generation: 0,
                spec_hash: String::new(),
                pods: Vec::new(),
                pod_counter: 0,
            });
        let spec_changed = spec_hash(spec);
        if record.spec_hash != spec_changed {
            record.spec_hash = spec_changed;
            record.generation += 1;
        }
        let hash = template_hash(&spec.template, None);
        let wanted = node_matches(ds, world.node);
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        let on_delete = strategy.type_.as_deref() == Some("OnDelete");
        let surge = strategy
            .rolling_update
            .and_then(|r| r.max_surge)
            .and_then(|s| int_or_percent(&s, 1, true).ok())
            .unwrap_or(0);
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let available = |p: &DaemonPod| {
            world
                .pod(&ns, &p.pod.name)
                .is_some_and(|v| v.available(min_ready, world.now))
        };
        if !wanted {
            record.pods.clear();
        } else {
            let has_new = record.pods.iter().any(|p| p.hash == hash);
            let new_available = record.pods.iter().any(|p| p.hash == hash && available(p));
            if !on_delete {
                // Old pods go first without surge, or once the new pod is available with it.
                if surge == 0 || new_available {
                    record.pods.retain(|p| p.hash == hash);
                }
            }
            let old_left = record.pods.iter().any(|p| p.hash != hash);
            let may_create = !has_new
                && (on_delete && record.pods.is_empty() || !on_delete && (!old_left || surge > 0));
            if may_create {
                let pod_name = new_pod_name(&name, &record.uid, &mut record.pod_counter, &taken);
                record.pods.push(DaemonPod {
                    pod: PodRecord {
                        name: pod_name,
                        created_ms: now_ms,
                    },
                    hash: hash.clone(),
                    generation: record.generation,
                });
            }
        }
        let record = &plan.records.daemon_sets[&key];
        let owner = owner_reference("apps/v1", "DaemonSet", &name, &record.uid);
        let (mut ready, mut updated, mut avail) = (0, 0, 0);
        for p in &record.pods {
            let generation = p.generation.to_string();
            let labels = [
                (REVISION_LABEL, p.hash.as_str()),
                ("pod-template-generation", generation.as_str()),
            ];
            let pod = pod_from_template(&spec.template, &ns, &p.pod.name, &labels, owner.clone());
            plan.pods.insert((ns.clone(), p.pod.name.clone()), pod);
            ready += i32::from(world.pod(&ns, &p.pod.name).is_some_and(|v| v.ready));
            updated += i32::from(p.hash == hash);
            avail += i32::from(available(p));
        }
        let desired = i32::from(wanted);
        let scheduled = i32::from(!record.pods.is_empty());
        let status = json!({
            "currentNumberScheduled": scheduled,
            "desiredNumberScheduled": desired,
            "numberMisscheduled": 0,
            "numberReady": ready.min(1),
            "updatedNumberScheduled": updated.min(1),
            "numberAvailable": avail.min(1),
            "numberUnavailable": (desired - avail.min(1)).max(0),
            "observedGeneration": record.generation,
        });
        let mut object = published(*ds, &record.uid, record.created_ms, source, status);
        object["metadata"]["generation"] = json!(record.generation);
        plan.objects
            .insert(ObjectKey::namespaced("DaemonSet", &ns, &name), object);
    }
    plan.records.daemon_sets.retain(|k, _| live.contains(k));
}
