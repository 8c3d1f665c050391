//! The Job controller: pods up to `parallelism` until `completions` succeed
//! (Indexed: until each index 0..completions has succeeded once, each pod
//! told its index as Kubernetes does); failures retried with the Job back-off (10 s,
//! doubling, at most 6 min) until `backoffLimit`; `activeDeadlineSeconds`
//! ends the Job; `suspend` holds it. Finished pods stay, as Kubernetes keeps
//! them, until the Job goes.
//!
//! `ttlSecondsAfterFinished` deletes a finished Job and its pods, as
//! Kubernetes' TTL controller does. Here the source still names the Job, so
//! its record stays behind, marked deleted: the same Job is not run again
//! until its template changes or it leaves the source and comes back (what
//! k3s does with a manifest it has applied once).
//!
//! A Job's pod template cannot change in Kubernetes; here an edited template
//! is a new Job (a new uid): the old one's pods go, the new one starts afresh.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    make_uid, new_pod_name, owner_reference, pod_from_template, published, record_key,
    set_condition, spec_hash, time, Condition, Plan, PodRecord, World,
};
use crate::events::EventType;
use crate::state::ObjectKey;

/// The first retry waits this long; each further failure doubles it.
const BACKOFF_BASE_MS: i64 = 10_000;
/// The longest wait between retries.
const BACKOFF_MAX_MS: i64 = 360_000;

/// What the controller remembers of a Job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub uid: String,
    pub created_ms: i64,
    pub start_ms: Option<i64>,
    pub completion_ms: Option<i64>,
    pub pods: Vec<JobPod>,
    #[serde(default)]
    pub pod_counter: u64,
    /// When the last failure was seen (back-off counts from it).
    #[serde(default)]
    pub last_failure_ms: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Deleted by `ttlSecondsAfterFinished`: nothing is published.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// A pod of a Job and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobPod {
    #[serde(flatten)]
    pub pod: PodRecord,
    /// `Succeeded` or `Failed` once it ended.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Container restarts counted as failures (`restartPolicy: OnFailure`).
    #[serde(default)]
    pub restarts: i32,
    /// Its completion index (Indexed Jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<i32>,
}

/// The label and annotation that carry an Indexed Job pod's index.
const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

impl JobRecord {
    fn finished(&self) -> bool {
        self.finished_ms().is_some()
    }

    /// When it became Complete or Failed.
    fn finished_ms(&self) -> Option<i64> {
        self.conditions
            .iter()
            .find(|c| (c.kind == "Complete" || c.kind == "Failed") && c.status == "True")
            .map(|c| c.last_transition_ms)
    }
}

pub(super) fn reconcile(plan: &mut Plan, world: &World<'_>) {
    let now_ms = world.now.as_millisecond();
    let mut live = BTreeSet::new();
    for (job, source) in &world.jobs {
        let Some(spec) = job.spec.as_ref() else {
            continue;
        };
        let ns = job
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = job.metadata.name.clone().unwrap_or_default();
        let key = record_key(&ns, &name);
        live.insert(key.clone());
        let uid = make_uid(&["Job", &ns, &name, &spec_hash(&spec.template)]);
        // Taken out while it is worked on; put back below.
        let fresh = || JobRecord {
            uid: uid.clone(),
            created_ms: now_ms,
            start_ms: None,
            completion_ms: None,
            pods: Vec::new(),
            pod_counter: 0,
            last_failure_ms: None,
            conditions: Vec::new(),
            deleted: false,
        };
        let mut record = plan
            .records
            .jobs
            .remove(&key)
            .filter(|r| r.uid == uid)
            .unwrap_or_else(fresh);
        let on_failure = spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure");
        // What the pods did.
        for p in &mut record.pods {
            let Some(view) = world.pod(&ns, &p.pod.name) else {
                continue;
            };
            if on_failure && view.restarts > p.restarts {
                p.restarts = view.restarts;
                record.last_failure_ms = Some(now_ms);
            }
            if p.outcome.is_none() && (view.phase == "Succeeded" || view.phase == "Failed") {
                p.outcome = Some(view.phase.clone());
                if view.phase == "Failed" {
                    record.last_failure_ms = Some(now_ms);
                }
            }
        }
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let completions = spec.completions.unwrap_or(1);
        let succeeded_pods: Vec<&JobPod> = record
            .pods
            .iter()
            .filter(|p| p.outcome.as_deref() == Some("Succeeded"))
            .collect();
        // Indexed: the indexes that succeeded (once each counts).
        let completed: BTreeSet<i32> = succeeded_pods
            .iter()
            .filter_map(|p| p.index)
            .filter(|i| (0..completions).contains(i))
            .collect();
        let succeeded = if indexed {
            completed.len()
        } else {
            succeeded_pods.len()
        } as i32;
        let failed = record
            .pods
            .iter()
            .map(|p| i32::from(p.outcome.as_deref() == Some("Failed")) + p.restarts)
            .sum::<i32>();
        let job_key = ObjectKey::namespaced("Job", &ns, &name);
        let suspended = spec.suspend == Some(true);
        if !suspended && record.start_ms.is_none() && !record.finished() {
            record.start_ms = Some(now_ms);
        }
        if !record.finished() {
            // (reason, message): the condition's and the event's.
            let mut failure: Option<(&'static str, &str)> = None;
            if failed > spec.backoff_limit.unwrap_or(6) {
                failure = Some((
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                ));
            } else if let (Some(deadline), Some(start)) =
                (spec.active_deadline_seconds, record.start_ms)
            {
                let at = start + deadline * 1000;
                if now_ms >= at {
                    failure = Some((
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline",
                    ));
                } else if let Ok(t) = Timestamp::from_millisecond(at) {
                    plan.wake_at(t);
                }
            }
            let active_now = record.pods.iter().filter(|p| p.outcome.is_none()).count();
            let complete = match spec.completions {
                Some(c) => succeeded >= c,
                None => succeeded > 0 && active_now == 0,
            };
            if let Some((reason, message)) = failure {
                for kind in ["FailureTarget", "Failed"] {
                    set_condition(
                        &mut record.conditions,
                        kind,
                        "True",
                        reason,
                        message.to_owned(),
                        now_ms,
                    );
                }
                plan.event(
                    job_key.clone(),
                    EventType::Warning,
                    reason,
                    message.to_owned(),
                );
            } else if complete {
                for kind in ["SuccessCriteriaMet", "Complete"] {
                    set_condition(
                        &mut record.conditions,
                        kind,
                        "True",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods".into(),
                        now_ms,
                    );
                }
                record.completion_ms = Some(now_ms);
                plan.event(
                    job_key.clone(),
                    EventType::Normal,
                    "Completed",
                    "Job completed".into(),
                );
            }
        }
        // The TTL after finishing: then the Job and its pods go.
        if let (Some(ttl), Some(finished)) = (spec.ttl_seconds_after_finished, record.finished_ms())
        {
            let at = finished + i64::from(ttl) * 1000;
            if now_ms >= at {
                record.deleted = true;
            } else if let Ok(t) = Timestamp::from_millisecond(at) {
                plan.wake_at(t);
            }
        }
        if record.deleted {
            record.pods.clear();
            plan.records.jobs.insert(key, record);
            continue;
        }
        // Pods that should run now.
        if record.finished() || suspended {
            // Active pods of a finished (or suspended) Job are deleted.
            record.pods.retain(|p| p.outcome.is_some());
            if suspended && !record.finished() {
                set_condition(
                    &mut record.conditions,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended".into(),
                    now_ms,
                );
            }
        } else {
            if let Some(c) = record
                .conditions
                .iter_mut()
                .find(|c| c.kind == "Suspended" && c.status == "True")
            {
                c.status = "False".into();
                c.reason = "JobResumed".into();
                c.message = "Job resumed".into();
                c.last_transition_ms = now_ms;
                c.last_update_ms = now_ms;
            }
            let active = record.pods.iter().filter(|p| p.outcome.is_none()).count() as i32;
            let parallelism = spec.parallelism.unwrap_or(1).max(0);
            let wanted = match spec.completions {
                Some(c) => parallelism.min(c - succeeded).max(0),
                None if succeeded > 0 => 0,
                None => parallelism,
            };
            if active < wanted {
                // Back-off after failures: 10 s, 20 s, … from the last one.
                let wait = if failed > 0 {
                    (BACKOFF_BASE_MS << (failed - 1).min(6)).min(BACKOFF_MAX_MS)
                } else {
                    0
                };
                let ready_at = record.last_failure_ms.map_or(0, |t| t + wait);
                if now_ms >= ready_at {
                    let mut taken = super::taken_names(&plan.records, world, &ns);
                    taken.extend(record.pods.iter().map(|p| p.pod.name.clone()));
                    // Indexed: the lowest indexes neither done nor running.
                    let running: BTreeSet<i32> = record
                        .pods
                        .iter()
                        .filter(|p| p.outcome.is_none())
                        .filter_map(|p| p.index)
                        .collect();
                    let mut free =
                        (0..completions).filter(|i| !completed.contains(i) && !running.contains(i));
                    let mut created = Vec::new();
                    for _ in active..wanted {
                        let index = if indexed { free.next() } else { None };
                        if indexed && index.is_none() {
                            break;
                        }
                        let prefix = match index {
                            Some(i) => format!("{name}-{i}"),
                            None => name.clone(),
                        };
                        let pod_name =
                            new_pod_name(&prefix, &record.uid, &mut record.pod_counter, &taken);
                        taken.insert(pod_name.clone());
                        created.push(pod_name.clone());
                        record.pods.push(JobPod {
                            pod: PodRecord {
                                name: pod_name,
                                created_ms: now_ms,
                            },
                            outcome: None,
                            restarts: 0,
                            index,
                        });
                    }
                    for pod_name in created {
                        plan.event(
                            job_key.clone(),
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("Created pod: {pod_name}"),
                        );
                    }
                } else if let Ok(t) = Timestamp::from_millisecond(ready_at) {
                    plan.wake_at(t);
                }
            } else if active > wanted {
                // Parallelism lowered: the newest active pods go.
                let mut excess = active - wanted;
                for i in (0..record.pods.len()).rev() {
                    if excess == 0 {
                        break;
                    }
                    if record.pods[i].outcome.is_none() {
                        record.pods.remove(i);
                        excess -= 1;
                    }
                }
            }
        }
        // Its pods and the published Job.
        let record = plan.records.jobs.entry(key.clone()).or_insert(record);
        let owner = owner_reference("batch/v1", "Job", &name, &record.uid);
        let labels = [
            ("batch.kubernetes.io/controller-uid", record.uid.as_str()),
            ("batch.kubernetes.io/job-name", name.as_str()),
            ("controller-uid", record.uid.as_str()),
            ("job-name", name.as_str()),
        ];
        let mut ready = 0;
        let mut active = 0;
        let mut pods = Vec::new();
        for p in &record.pods {
            if p.outcome.is_none() {
                active += 1;
                ready += i32::from(world.pod(&ns, &p.pod.name).is_some_and(|v| v.ready));
            }
            let mut pod =
                pod_from_template(&spec.template, &ns, &p.pod.name, &labels, owner.clone());
            if let Some(index) = p.index {
                tell_index(&mut pod, &name, index);
            }
            pods.push(pod);
        }
        let mut status = json!({
            "active": active,
            "ready": ready,
            "succeeded": succeeded,
            "failed": failed,
            "terminating": 0,
        });
        if indexed {
            status["completedIndexes"] = json!(index_ranges(&completed));
        }
        if let Some(start) = record.start_ms {
            status["startTime"] = time(start);
        }
        if let Some(done) = record.completion_ms {
            status["completionTime"] = time(done);
        }
        if !record.conditions.is_empty() {
            status["conditions"] =
                Value::Array(record.conditions.iter().map(|c| c.to_json(false)).collect());
        }
        let mut object = published(*job, &record.uid, record.created_ms, source, status);
        object["spec"]["selector"] =
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": record.uid}});
        for (k, v) in labels {
            object["spec"]["template"]["metadata"]["labels"][k] = json!(v);
        }
        plan.objects.insert(job_key, object);
        for pod in pods {
            plan.pods.insert(
                (ns.clone(), pod.metadata.name.clone().unwrap_or_default()),
                pod,
            );
        }
    }
    plan.records.jobs.retain(|k, _| live.contains(k));
}

/// What the Job controller gives an Indexed Job's pod: its index as label and
/// annotation, the hostname `<job>-<index>`, and `JOB_COMPLETION_INDEX` in
/// every container's environment (from the annotation, as Kubernetes does).
fn tell_index(pod: &mut k8s_openapi::api::core::v1::Pod, job: &str, index: i32) {
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector};
    let value = index.to_string();
    for map in [&mut pod.metadata.labels, &mut pod.metadata.annotations] {
        map.get_or_insert_with(Default::default)
            .insert(INDEX_KEY.to_owned(), value.clone());
    }
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    spec.hostname = Some(format!("{job}-{index}"));
    let env = EnvVar {
        name: "JOB_COMPLETION_INDEX".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: format!("metadata.annotations['{INDEX_KEY}']"),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let init = spec.init_containers.iter_mut().flatten();
    for c in init.chain(spec.containers.iter_mut()) {
        let vars = c.env.get_or_insert_with(Vec::new);
        if !vars.iter().any(|v| v.name == env.name) {
            vars.push(env.clone());
        }
    }
}

/// `status.completedIndexes`: `1,3-5,7`.
pub(super) fn index_ranges(indexes: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in indexes {
        run = match run {
            Some((start, end)) if i == end + 1 => Some((start, i)),
            Some(done) => {
                out.push(range(done));
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    out.extend(run.map(range));
    out.join(",")
}

fn range((start, end): (i32, i32)) -> String {
    if start == end {
        start.to_string()
    } else {
        format!("{start}-{end}")
    }
}
