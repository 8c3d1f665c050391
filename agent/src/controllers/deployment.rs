//! The Deployment controller (kube-controller-manager's `deployment`
//! package): one ReplicaSet per pod template revision, rolled with
//! RollingUpdate (maxSurge/maxUnavailable, gated on availability) or
//! Recreate, scaled proportionally, paused, rolled back by template, old
//! revisions trimmed to `revisionHistoryLimit`, and the status and
//! conditions (`Progressing`, `Available`) kubectl reads.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::replicaset::Counts;
use super::{
    make_uid, published, record_key, set_condition, spec_hash, template_hash, Condition, Plan,
    ReplicaSetRecord, World, REVISION_ANNOTATION, TEMPLATE_HASH_LABEL,
};
use crate::events::EventType;
use crate::manifest::int_or_percent;
use crate::state::ObjectKey;

/// What the controller remembers of a Deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    pub uid: String,
    pub created_ms: i64,
    /// `metadata.generation`: bumped when the spec changes.
    pub generation: i64,
    pub spec_hash: String,
    #[serde(default)]
    pub collision_count: Option<i32>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The status last reported (progress is measured against it).
    #[serde(default)]
    pub last: Option<Status>,
}

/// The counts of `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub replicas: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
}

/// The Deployment's spec, read once, defaults applied by the manifest layer.
struct Spec<'a> {
    namespace: String,
    name: String,
    source: &'a str,
    object: &'a Deployment,
    replicas: i32,
    template: PodTemplateSpec,
    recreate: bool,
    max_surge: i32,
    max_unavailable: i32,
    min_ready_seconds: i32,
    revision_history_limit: i32,
    progress_deadline_seconds: Option<i32>,
    paused: bool,
}

impl<'a> Spec<'a> {
    fn of(d: &'a Deployment, source: &'a str) -> Option<Spec<'a>> {
        let spec = d.spec.as_ref()?;
        let replicas = spec.replicas.unwrap_or(1);
        let strategy = spec.strategy.clone().unwrap_or_default();
        let recreate = strategy.type_.as_deref() == Some("Recreate");
        let rolling = strategy.rolling_update.unwrap_or_default();
        let (max_surge, max_unavailable) = if recreate {
            (0, 0)
        } else {
            resolve_fenceposts(
                rolling.max_surge.as_ref(),
                rolling.max_unavailable.as_ref(),
                replicas,
            )
        };
        Some(Spec {
            namespace: d
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: d.metadata.name.clone().unwrap_or_default(),
            source,
            object: d,
            replicas,
            template: spec.template.clone(),
            recreate,
            max_surge,
            max_unavailable,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            revision_history_limit: spec.revision_history_limit.unwrap_or(10),
            progress_deadline_seconds: spec.progress_deadline_seconds,
            paused: spec.paused.unwrap_or(false),
        })
    }

    fn key(&self) -> ObjectKey {
        ObjectKey::namespaced("Deployment", &self.namespace, &self.name)
    }
}

/// `ResolveFenceposts`: surge rounds up, unavailable down; both zero means
/// one unavailable (a rollout must be able to move).
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    replicas: i32,
) -> (i32, i32) {
    let quarter = IntOrString::String("25%".into());
    let surge = int_or_percent(max_surge.unwrap_or(&quarter), replicas, true).unwrap_or(0);
    let unavailable =
        int_or_percent(max_unavailable.unwrap_or(&quarter), replicas, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

pub(super) fn reconcile(plan: &mut Plan, world: &World<'_>) {
    let now_ms = world.now.as_millisecond();
    let mut live = BTreeSet::new();
    for (d, source) in &world.deployments {
        let Some(spec) = Spec::of(d, source) else {
            continue;
        };
        let key = record_key(&spec.namespace, &spec.name);
        live.insert(key.clone());
        let hash = spec_hash(&d.spec);
        let record = plan
            .records
            .deployments
            .entry(key.clone())
            .or_insert_with(|| DeploymentRecord {
                uid: make_uid(&[
                    "Deployment",
                    &spec.namespace,
                    &spec.name,
                    &now_ms.to_string(),
                ]),
                created_ms: now_ms,
                generation: 0,
                spec_hash: String::new(),
                collision_count: None,
                conditions: Vec::new(),
                last: None,
            });
        if record.spec_hash != hash {
            record.spec_hash = hash;
            record.generation += 1;
        }
        sync(plan, world, &spec, &key);
    }
    // Deployments no longer declared: their ReplicaSets and pods go with them.
    let gone: Vec<String> = plan
        .records
        .deployments
        .keys()
        .filter(|k| !live.contains(*k))
        .cloned()
        .collect();
    for key in gone {
        if let Some(record) = plan.records.deployments.remove(&key) {
            plan.records
                .replica_sets
                .retain(|_, rs| rs.deployment_uid != record.uid);
        }
    }
    // Every ReplicaSet left runs its pods and is published.
    let sets: Vec<&ReplicaSetRecord> = plan.records.replica_sets.values().collect();
    let mut pods = Vec::new();
    let mut objects = Vec::new();
    for rs in sets {
        pods.extend(rs.pods());
        objects.push((
            ObjectKey::namespaced("ReplicaSet", &rs.namespace, &rs.name),
            rs.to_json(rs.counts(world)),
        ));
    }
    for pod in pods {
        let id = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        plan.pods.insert(id, pod);
    }
    plan.objects.extend(objects);
}

/// One Deployment (`syncDeployment`).
fn sync(plan: &mut Plan, world: &World<'_>, spec: &Spec<'_>, key: &str) {
    let uid = plan.records.deployments[key].uid.clone();
    let mut taken = super::taken_names(&plan.records, world, &spec.namespace);
    let mut rollout = Rollout {
        plan,
        world,
        spec,
        key,
        uid: uid.clone(),
        progressed: false,
    };
    let scaling = rollout.is_scaling_event();
    if spec.paused || scaling {
        // Scale only: a paused Deployment does not roll out its template.
        let new = rollout.new_replica_set(false);
        rollout.scale(new.as_deref());
    } else if spec.recreate {
        rollout.recreate();
    } else {
        rollout.rolling();
    }
    let new = rollout.find_new().map(|rs| rs.name.clone());
    let progressed = rollout.progressed;
    for rs in plan.records.replica_sets.values_mut() {
        if rs.deployment_uid == uid {
            rs.sync_pods(world, &mut taken);
        }
    }
    status(plan, world, spec, key, new.as_deref(), progressed);
}

/// One Deployment's rollout step, over the ReplicaSets it owns.
struct Rollout<'p, 'w, 's> {
    plan: &'p mut Plan,
    world: &'p World<'w>,
    spec: &'p Spec<'s>,
    key: &'p str,
    uid: String,
    /// Something moved (a set scaled, a set created): the deadline restarts.
    progressed: bool,
}

impl Rollout<'_, '_, '_> {
    fn owned(&self) -> impl Iterator<Item = &ReplicaSetRecord> {
        let uid = self.uid.clone();
        self.plan
            .records
            .replica_sets
            .values()
            .filter(move |rs| rs.deployment_uid == uid)
    }

    /// The set whose template is the Deployment's (`FindNewReplicaSet`).
    fn find_new(&self) -> Option<&ReplicaSetRecord> {
        let mut matching: Vec<&ReplicaSetRecord> = self
            .owned()
            .filter(|rs| rs.bare_template() == self.spec.template)
            .collect();
        // Oldest first, as Kubernetes picks among equal templates.
        matching.sort_by_key(|rs| (rs.created_ms, rs.name.clone()));
        matching.first().copied()
    }

    /// Old sets, oldest first.
    fn old_names(&self) -> Vec<String> {
        let new = self.find_new().map(|rs| rs.name.clone());
        let mut old: Vec<&ReplicaSetRecord> = self
            .owned()
            .filter(|rs| Some(&rs.name) != new.as_ref())
            .collect();
        old.sort_by_key(|rs| (rs.created_ms, rs.name.clone()));
        old.into_iter().map(|rs| rs.name.clone()).collect()
    }

    fn rs(&self, name: &str) -> &ReplicaSetRecord {
        &self.plan.records.replica_sets[&record_key(&self.spec.namespace, name)]
    }

    fn counts(&self, name: &str) -> Counts {
        self.rs(name).counts(self.world)
    }

    /// Sets a ReplicaSet's size, with kubectl's ScalingReplicaSet event.
    fn scale_to(&mut self, name: &str, replicas: i32) {
        let size = self.spec.replicas;
        let surge = self.spec.max_surge;
        let rs_key = record_key(&self.spec.namespace, name);
        let Some(rs) = self.plan.records.replica_sets.get_mut(&rs_key) else {
            return;
        };
        let from = rs.replicas;
        let annotations_change = rs.desired_replicas != size || rs.max_replicas != size + surge;
        if from == replicas && !annotations_change {
            return;
        }
        rs.replicas = replicas;
        rs.desired_replicas = size;
        rs.max_replicas = size + surge;
        if from != replicas {
            self.progressed = true;
            let (verb, direction) = if replicas > from {
                ("up", "from")
            } else {
                ("down", "from")
            };
            let message =
                format!("Scaled {verb} replica set {name} to {replicas} {direction} {from}");
            self.plan.event(
                self.spec.key(),
                EventType::Normal,
                "ScalingReplicaSet",
                message,
            );
        }
    }

    /// The new ReplicaSet, its revision synced; created when `create` and
    /// missing (`getNewReplicaSet`). Returns its name.
    fn new_replica_set(&mut self, create: bool) -> Option<String> {
        let max_old = self
            .owned()
            .filter(|rs| Some(&rs.name) != self.find_new().map(|n| &n.name))
            .map(|rs| rs.revision)
            .max()
            .unwrap_or(0);
        let annotations = change_annotations(self.spec.object);
        if let Some(name) = self.find_new().map(|rs| rs.name.clone()) {
            let rs_key = record_key(&self.spec.namespace, &name);
            let rs = self.plan.records.replica_sets.get_mut(&rs_key)?;
            if rs.revision <= max_old {
                // A rollback: the old template becomes the newest revision.
                rs.revision_history.push(rs.revision);
                rs.revision = max_old + 1;
                self.progressed = true;
            }
            rs.annotations = annotations;
            return Some(name);
        }
        if !create {
            return None;
        }
        let now_ms = self.world.now.as_millisecond();
        let collision = self.plan.records.deployments[self.key].collision_count;
        let mut collision_count = collision;
        let (hash, name) = loop {
            let hash = template_hash(&self.spec.template, collision_count);
            let name = format!("{}-{hash}", self.spec.name);
            let rs_key = record_key(&self.spec.namespace, &name);
            // A set of that name with another template (or owner) is a collision.
            if !self.plan.records.replica_sets.contains_key(&rs_key) {
                break (hash, name);
            }
            collision_count = Some(collision_count.unwrap_or(0) + 1);
        };
        if collision_count != collision {
            if let Some(d) = self.plan.records.deployments.get_mut(self.key) {
                d.collision_count = collision_count;
            }
        }
        let mut template = self.spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(TEMPLATE_HASH_LABEL.to_owned(), hash.clone());
        let mut selector = self
            .spec
            .object
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(TEMPLATE_HASH_LABEL.to_owned(), hash.clone());
        let record = ReplicaSetRecord {
            namespace: self.spec.namespace.clone(),
            name: name.clone(),
            uid: super::make_uid(&["ReplicaSet", &self.spec.namespace, &name, &self.uid]),
            created_ms: now_ms,
            deployment: self.spec.name.clone(),
            deployment_uid: self.uid.clone(),
            hash,
            revision: max_old + 1,
            revision_history: Vec::new(),
            replicas: 0,
            desired_replicas: self.spec.replicas,
            max_replicas: self.spec.replicas + self.spec.max_surge,
            min_ready_seconds: self.spec.min_ready_seconds,
            template,
            selector,
            annotations,
            pods: Vec::new(),
            pod_counter: 0,
        };
        self.plan
            .records
            .replica_sets
            .insert(record_key(&self.spec.namespace, &name), record);
        self.progressed = true;
        let now = now_ms;
        if let Some(d) = self.plan.records.deployments.get_mut(self.key) {
            set_condition(
                &mut d.conditions,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set \"{name}\""),
                now,
            );
        }
        Some(name)
    }

    /// Whether the Deployment's size changed since its active sets were
    /// scaled (`isScalingEvent`).
    fn is_scaling_event(&self) -> bool {
        let active: Vec<&ReplicaSetRecord> = self.owned().filter(|rs| rs.replicas > 0).collect();
        !active.is_empty()
            && active
                .iter()
                .any(|rs| rs.desired_replicas != self.spec.replicas)
    }

    /// `scale`: a size change spread over the active sets in proportion.
    fn scale(&mut self, new: Option<&str>) {
        let mut active: Vec<String> = self
            .owned()
            .filter(|rs| rs.replicas > 0)
            .map(|rs| rs.name.clone())
            .collect();
        // One active set (or none: the new one, else the newest) takes the
        // whole size (`FindActiveOrLatest`).
        if active.len() <= 1 {
            let target = active
                .first()
                .cloned()
                .or(new.map(str::to_owned))
                .or_else(|| {
                    self.owned()
                        .max_by_key(|rs| (rs.revision, rs.created_ms))
                        .map(|rs| rs.name.clone())
                });
            if let Some(name) = target {
                self.scale_to(&name, self.spec.replicas);
            }
            return;
        }
        if let Some(new) = new {
            let c = self.counts(new);
            let rs = self.rs(new);
            if rs.replicas == self.spec.replicas && c.available == self.spec.replicas {
                for name in self.old_names() {
                    self.scale_to(&name, 0);
                }
                return;
            }
        }
        if self.spec.recreate {
            return;
        }
        let allowed = if self.spec.replicas > 0 {
            self.spec.replicas + self.spec.max_surge
        } else {
            0
        };
        let total: i32 = active.iter().map(|n| self.rs(n).replicas).sum();
        let to_add = allowed - total;
        if to_add == 0 {
            return;
        }
        // Largest first; on a tie, newer first when growing, older when shrinking.
        active.sort_by(|a, b| {
            let (ra, rb) = (self.rs(a), self.rs(b));
            rb.replicas.cmp(&ra.replicas).then_with(|| {
                if to_add > 0 {
                    rb.created_ms.cmp(&ra.created_ms)
                } else {
                    ra.created_ms.cmp(&rb.created_ms)
                }
            })
        });
        let mut added = 0;
        let mut sizes: Vec<(String, i32)> = Vec::new();
        for name in &active {
            let rs = self.rs(name);
            let fraction = if rs.max_replicas > 0 {
                let target =
                    f64::from(rs.replicas) * f64::from(allowed) / f64::from(rs.max_replicas);
                (target.round() as i32) - rs.replicas
            } else {
                0
            };
            let left = to_add - added;
            let share = if to_add > 0 {
                fraction.min(left)
            } else {
                fraction.max(left)
            };
            added += share;
            sizes.push((name.clone(), rs.replicas + share));
        }
        if let Some(first) = sizes.first_mut() {
            first.1 += to_add - added;
        }
        for (name, size) in sizes {
            self.scale_to(&name, size.max(0));
        }
    }

    /// `rolloutRolling`.
    fn rolling(&mut self) {
        let Some(new) = self.new_replica_set(true) else {
            return;
        };
        // reconcileNewReplicaSet
        let new_size = self.rs(&new).replicas;
        if new_size > self.spec.replicas {
            self.scale_to(&new, self.spec.replicas);
        } else if new_size < self.spec.replicas {
            let current: i32 = self.owned().map(|rs| rs.replicas).sum();
            let max_total = self.spec.replicas + self.spec.max_surge;
            if current < max_total {
                let up = (max_total - current).min(self.spec.replicas - new_size);
                self.scale_to(&new, new_size + up);
            }
        }
        self.reconcile_old(&new);
        if self.complete(&new) {
            self.cleanup();
        }
    }

    /// `reconcileOldReplicaSets`: old pods go as far as availability allows,
    /// unhealthy ones first.
    fn reconcile_old(&mut self, new: &str) {
        let old = self.old_names();
        let old_count: i32 = old.iter().map(|n| self.rs(n).replicas).sum();
        if old_count == 0 {
            return;
        }
        let all: i32 = self.owned().map(|rs| rs.replicas).sum();
        let min_available = self.spec.replicas - self.spec.max_unavailable;
        let new_unavailable = self.rs(new).replicas - self.counts(new).available;
        let max_scaled_down = all - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return;
        }
        // cleanupUnhealthyReplicas
        let mut cleaned = 0;
        for name in &old {
            if cleaned >= max_scaled_down {
                break;
            }
            let (replicas, available) = (self.rs(name).replicas, self.counts(name).available);
            if replicas == 0 || replicas == available {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(replicas - available);
            self.scale_to(name, replicas - down);
            cleaned += down;
        }
        // scaleDownOldReplicaSetsForRollingUpdate: availability counts what
        // was observed; pods just scaled away were not available anyway.
        let available: i32 = self.owned().map(|rs| rs.counts(self.world).available).sum();
        if available <= min_available {
            return;
        }
        let total = available - min_available;
        let mut done = 0;
        for name in &old {
            if done >= total {
                break;
            }
            let replicas = self.rs(name).replicas;
            if replicas == 0 {
                continue;
            }
            let down = replicas.min(total - done);
            self.scale_to(name, replicas - down);
            done += down;
        }
    }

    /// `rolloutRecreate`: every old pod gone before the new set scales up.
    fn recreate(&mut self) {
        let mut scaled = false;
        for name in self.old_names() {
            if self.rs(&name).replicas > 0 {
                self.scale_to(&name, 0);
                scaled = true;
            }
        }
        if scaled {
            return;
        }
        let old_uids: Vec<String> = {
            let new = self.find_new().map(|rs| rs.uid.clone());
            self.owned()
                .filter(|rs| Some(&rs.uid) != new.as_ref())
                .map(|rs| rs.uid.clone())
                .collect()
        };
        // Old pods still terminating: wait (`oldPodsRunning`).
        if old_uids.iter().any(|uid| self.world.pods_of(uid) > 0) {
            return;
        }
        let Some(new) = self.new_replica_set(true) else {
            return;
        };
        self.scale_to(&new, self.spec.replicas);
        if self.complete(&new) {
            self.cleanup();
        }
    }

    /// All replicas updated and available, no old ones (`DeploymentComplete`).
    fn complete(&self, new: &str) -> bool {
        let c = self.counts(new);
        let old: i32 = self
            .old_names()
            .iter()
            .map(|n| self.counts(n).replicas)
            .sum();
        self.rs(new).replicas == self.spec.replicas
            && c.replicas == self.spec.replicas
            && c.available == self.spec.replicas
            && old == 0
    }

    /// `cleanupDeployment`: old sets with no pods beyond revisionHistoryLimit go, oldest revision first.
    fn cleanup(&mut self) {
        let new = self.find_new().map(|rs| rs.name.clone());
        let mut idle: Vec<(i64, String)> = self
            .owned()
            .filter(|rs| Some(&rs.name) != new.as_ref())
            .filter(|rs| rs.replicas == 0 && rs.pods.is_empty() && self.world.pods_of(&rs.uid) == 0)
            .map(|rs| (rs.revision, rs.name.clone()))
            .collect();
        let limit = usize::try_from(self.spec.revision_history_limit.max(0)).unwrap_or(0);
        if idle.len() <= limit {
            return;
        }
        idle.sort();
        let excess = idle.len() - limit;
        for (_, name) in idle.into_iter().take(excess) {
            self.plan
                .records
                .replica_sets
                .remove(&record_key(&self.spec.namespace, &name));
        }
    }
}

/// Annotations a Deployment passes to its ReplicaSets (not kubectl's own).
fn change_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| {
            k.as_str() != REVISION_ANNOTATION
                && k.as_str() != crate::agent::SOURCE_ANNOTATION
                && !k.starts_with("kubectl.kubernetes.io/")
                && !k.starts_with("deployment.kubernetes.io/")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `syncRolloutStatus` / `calculateStatus`: counts and conditions, and the
/// published Deployment.
fn status(
    plan: &mut Plan,
    world: &World<'_>,
    spec: &Spec<'_>,
    key: &str,
    new: Option<&str>,
    progressed: bool,
) {
    let now_ms = world.now.as_millisecond();
    let uid = plan.records.deployments[key].uid.clone();
    let mut s = Status::default();
    let mut revision = 0;
    let mut old_replicas = 0;
    for rs in plan
        .records
        .replica_sets
        .values()
        .filter(|rs| rs.deployment_uid == uid)
    {
        let c = rs.counts(world);
        s.replicas += c.replicas;
        s.ready += c.ready;
        s.available += c.available;
        if Some(rs.name.as_str()) == new {
            s.updated = c.replicas;
            revision = rs.revision;
        } else {
            old_replicas += c.replicas;
        }
    }
    // Taken out while it is worked on; put back below.
    let Some(mut record) = plan.records.deployments.remove(key) else {
        return;
    };
    let last = record.last.unwrap_or_default();
    let min_available = spec.replicas - spec.max_unavailable;
    if s.available >= min_available {
        set_condition(
            &mut record.conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now_ms,
        );
    } else {
        set_condition(
            &mut record.conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now_ms,
        );
    }
    let complete = new.is_some()
        && s.updated == spec.replicas
        && s.replicas == spec.replicas
        && s.available == spec.replicas
        && old_replicas == 0;
    let rs_name = new.unwrap_or_default();
    // The deadline passed in this reconcile (the event is told once).
    let mut became_exceeded = false;
    let mut wake = None;
    if spec.paused {
        set_condition(
            &mut record.conditions,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
            now_ms,
        );
    } else if let Some(deadline) = spec.progress_deadline_seconds {
        let current = record
            .conditions
            .iter()
            .find(|c| c.kind == "Progressing")
            .cloned();
        let moved = progressed
            || s.updated > last.updated
            || s.ready > last.ready
            || s.available > last.available
            || old_replicas < last.replicas - last.updated;
        if complete {
            set_condition(
                &mut record.conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                now_ms,
            );
        } else if current
            .as_ref()
            .is_some_and(|c| c.reason == "DeploymentPaused")
        {
            // Resumed: the clock starts again.
            set_condition(
                &mut record.conditions,
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
                now_ms,
            );
        } else if moved && new.is_some() {
            let message = format!("ReplicaSet \"{rs_name}\" is progressing.");
            let c = record
                .conditions
                .iter_mut()
                .find(|c| c.kind == "Progressing");
            match c {
                // Progress keeps the transition time and moves the update time.
                Some(c) if c.status == "True" && c.reason != "NewReplicaSetAvailable" => {
                    c.reason = "ReplicaSetUpdated".into();
                    c.message = message;
                    c.last_update_ms = now_ms;
                }
                _ => set_condition(
                    &mut record.conditions,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    message,
                    now_ms,
                ),
            }
        } else if let Some(c) = current {
            let timed_out = c.reason == "ProgressDeadlineExceeded"
                || (c.reason != "NewReplicaSetAvailable"
                    && c.last_update_ms + i64::from(deadline) * 1000 <= now_ms);
            if timed_out {
                became_exceeded = c.reason != "ProgressDeadlineExceeded";
                set_condition(
                    &mut record.conditions,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    now_ms,
                );
            } else if c.reason != "NewReplicaSetAvailable" {
                wake = Some(c.last_update_ms + i64::from(deadline) * 1000);
            }
        }
    }
    record.last = Some(Status {
        replicas: s.replicas,
        updated: s.updated,
        ready: s.ready,
        available: s.available,
    });
    if let Some(at) = wake.and_then(|ms| Timestamp::from_millisecond(ms).ok()) {
        plan.wake_at(at);
    }
    let conditions: Vec<Value> = {
        // Kubernetes lists Available before Progressing.
        let mut cs = record.conditions.clone();
        cs.sort_by_key(|c| c.kind != "Available");
        cs.iter().map(|c| c.to_json(true)).collect()
    };
    let generation = record.generation;
    let collision = record.collision_count;
    let (uid, created) = (record.uid.clone(), record.created_ms);
    plan.records.deployments.insert(key.to_owned(), record);
    let mut status = json!({
        "observedGeneration": generation,
        "replicas": s.replicas,
        "updatedReplicas": s.updated,
        "readyReplicas": s.ready,
        "availableReplicas": s.available,
        "unavailableReplicas": (spec.replicas - s.available).max(0),
        "conditions": conditions,
    });
    if let Some(c) = collision {
        status["collisionCount"] = json!(c);
    }
    let mut object = published(spec.object, &uid, created, spec.source, status);
    object["metadata"]["generation"] = json!(generation);
    if revision > 0 {
        object["metadata"]["annotations"][REVISION_ANNOTATION] = json!(revision.to_string());
    }
    plan.objects.insert(spec.key(), object);
    if became_exceeded {
        plan.event(
            spec.key(),
            EventType::Warning,
            "ProgressDeadlineExceeded",
            format!("Deployment \"{}\" has timed out progressing.", spec.name),
        );
    }
    // Pods turning available after minReadySeconds: look again then.
    if spec.min_ready_seconds > 0 {
        let wakes: Vec<Timestamp> = plan
            .records
            .replica_sets
            .values()
            .filter(|rs| rs.deployment_uid == uid)
            .flat_map(|rs| rs.pods.iter().map(move |p| (rs, p)))
            .filter_map(|(rs, p)| {
                let v = world.pod(&rs.namespace, &p.name)?;
                if !v.ready || v.available(rs.min_ready_seconds, world.now) {
                    return None;
                }
                let at = v.ready_since?.as_millisecond() + i64::from(rs.min_ready_seconds) * 1000;
                Timestamp::from_millisecond(at).ok()
            })
            .collect();
        for at in wakes {
            plan.wake_at(at);
        }
    }
}
