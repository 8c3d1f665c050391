//! Pods: from a desired Pod to running containers and back to a status.
//!
//! The [`Manager`] keeps one [`worker`] task per pod. A pod's uid is derived
//! from its manifest (as the kubelet does for static pods): an edited manifest
//! is a new pod, which replaces the old one.

pub mod hooks;
pub mod lifecycle;
pub mod probe;
pub mod translate;
pub mod volumes;
pub mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use worker::{Command, ExitEvent, Objects, Shared};

use crate::state::ObjectKey;

/// The uid of a pod: a hash of its namespace, name and manifest, shaped like a UUID.
pub fn pod_uid(pod: &Pod) -> String {
    let mut bare = pod.clone();
    bare.status = None;
    bare.metadata.uid = None;
    bare.metadata.resource_version = None;
    let json = serde_json::to_vec(&bare).unwrap_or_default();
    crate::records::uid(&json)
}

/// The images a pod's containers (init, app and ephemeral) name, normalized as
/// the image store keys them; names that do not parse are left out.
fn pod_images(pod: &Pod) -> Vec<String> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let init = spec.init_containers.iter().flatten().map(|c| &c.image);
    let app = spec.containers.iter().map(|c| &c.image);
    let ephemeral = spec.ephemeral_containers.iter().flatten().map(|c| &c.image);
    init.chain(app)
        .chain(ephemeral)
        .flatten()
        .filter_map(|raw| raw.parse::<outpost_runtime::image::ImageRef>().ok())
        .map(|r| r.to_string())
        .collect()
}

struct Handle {
    key: ObjectKey,
    /// The images the pod's containers name, as the image store keys them.
    images: Vec<String>,
    command: watch::Sender<Command>,
    task: JoinHandle<()>,
}

/// Keeps one worker per desired pod.
pub struct Manager {
    shared: Arc<Shared>,
    workers: HashMap<String, Handle>,
    /// Workers told to delete their pod, until they are done.
    leaving: Vec<Handle>,
    /// Pods that had containers when the agent started, until the first
    /// sync gives them workers (the rest of those containers are orphans).
    readopting: HashSet<String>,
}

impl Manager {
    /// `readopting`: the uids of pods whose containers the supervisor holds.
    pub fn new(shared: Arc<Shared>, readopting: HashSet<String>) -> Manager {
        Manager {
            shared,
            workers: HashMap::new(),
            leaving: Vec::new(),
            readopting,
        }
    }

    /// The uids of pods that have a worker.
    pub fn uids(&self) -> HashSet<String> {
        self.workers.keys().cloned().collect()
    }

    /// The images desired pods name (image GC keeps them).
    pub fn images(&self) -> HashSet<String> {
        self.workers
            .values()
            .flat_map(|h| h.images.iter().cloned())
            .collect()
    }

    /// Whether this pod has containers from before the agent started and
    /// awaits its worker: admitted and placed by an earlier run.
    pub fn readopts(&self, uid: &str) -> bool {
        self.readopting.contains(uid)
    }

    /// Whether a pod with this uid already runs (admission is not repeated).
    pub fn has(&self, uid: &str) -> bool {
        self.workers.contains_key(uid)
    }

    /// Makes the set of workers match `pods` (already admitted), keyed by uid.
    pub fn sync(&mut self, pods: BTreeMap<String, Pod>) {
        self.leaving.retain(|h| !h.task.is_finished());
        let gone: Vec<String> = self
            .workers
            .keys()
            .filter(|uid| !pods.contains_key(*uid))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(h) = self.workers.remove(&uid) {
                tracing::info!(pod = %h.key, uid, "pod no longer desired: terminating");
                let _ = h.command.send(Command::Delete);
                self.leaving.push(h);
            }
        }
        for (uid, mut pod) in pods {
            if self.workers.contains_key(&uid) {
                continue;
            }
            pod.metadata.uid = Some(uid.clone());
            let key = ObjectKey::namespaced(
                "Pod",
                pod.metadata.namespace.as_deref().unwrap_or("default"),
                pod.metadata.name.as_deref().unwrap_or_default(),
            );
            let images = pod_images(&pod);
            let (tx, rx) = watch::channel(Command::Run);
            let worker = worker::Worker::new(self.shared.clone(), Arc::new(pod), uid.clone());
            // A pod is there as soon as it is desired (Pending, containers
            // being created), as the API server shows it; one with containers
            // to re-adopt is published once its worker has looked at them.
            if !self.readopts(&uid) {
                worker.publish();
            }
            let task = tokio::spawn(worker::run(worker, rx));
            self.workers.insert(
                uid,
                Handle {
                    key,
                    images,
                    command: tx,
                    task,
                },
            );
        }
        self.readopting.clear();
    }

    /// Removes what pods that no longer exist left behind: containers in the
    /// supervisor, sandboxes and volumes (a crash between deciding and cleaning).
    pub async fn clean_orphans(&self) {
        let known = self.uids();
        let shared = self.shared.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut orphans: HashSet<String> = HashSet::new();
            for c in shared.runtime.list().unwrap_or_default() {
                if let Some((uid, _, _)) = worker::parse_container_id(&c.id) {
                    orphans.insert(uid.to_owned());
                }
            }
            for dir in [
                shared.run_dir.join("pods"),
                shared.state_dir.join("pod-volumes"),
            ] {
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    orphans.extend(
                        entries
                            .flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned()),
                    );
                }
            }
            orphans.retain(|uid| !known.contains(uid));
            for uid in &orphans {
                tracing::info!(
                    uid,
                    "removing the remains of a pod that is no longer desired"
                );
                if let Err(e) = worker::cleanup_pod(
                    &shared.runtime,
                    &shared.run_dir,
                    &shared.state_dir,
                    uid,
                    None,
                ) {
                    tracing::warn!(uid, "cleaning up: {e}");
                }
            }
        })
        .await;
        if let Err(e) = result {
            tracing::warn!("orphan cleanup task: {e}");
        }
        // Veths and addresses of pods that are gone (a crash between steps).
        match self.shared.network.gc(&self.uids()).await {
            Ok(report) if !report.links.is_empty() || !report.addresses.is_empty() => {
                tracing::info!(
                    ?report,
                    "removed the network remains of pods no longer desired"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("pod network cleanup: {}", crate::pods::worker::chain(&e)),
        }
    }

    /// Agent shutdown: workers stop watching; pods keep running. Terminations
    /// in progress are abandoned rather than waited for (a grace period can be
    /// long): the next agent finds those pods undesired and finishes them.
    pub async fn detach(self) {
        for h in self.workers.values() {
            let _ = h.command.send(Command::Detach);
        }
        for h in self.leaving {
            h.task.abort();
        }
        for h in self.workers.into_values() {
            let _ = h.task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_images_name_every_container_as_the_store_does() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [
                    {"name": "app", "image": "example.com/app:1"},
                    {"name": "bad", "image": "no spaces allowed"},
                ],
                "ephemeralContainers": [{"name": "debug", "image": "busybox:1.36"}],
            },
        }))
        .expect("pod");
        assert_eq!(
            pod_images(&pod),
            [
                "docker.io/library/busybox:latest",
                "example.com/app:1",
                "docker.io/library/busybox:1.36",
            ]
        );
    }
}
