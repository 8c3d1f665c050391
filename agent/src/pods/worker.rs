//! One task per pod, level-triggered: observe the pod's containers in the
//! supervisor, decide with the pure rules of `lifecycle`, act through the
//! runtime, publish the status. Everything it needs to resume after an agent
//! restart is in the supervisor (container ids carry the pod uid, container
//! name and attempt number), so a restarted agent re-adopts without restarting.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use outpost_runtime::container::{ContainerInfo, ExitInfo, LogConfig, Runtime, State};
use outpost_runtime::image::pull::{PullOptions, Puller};
use outpost_runtime::image::store::Store;
use outpost_runtime::image::ImageRef;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

use super::hooks;
use super::lifecycle::{self, Backoff, ContainerState, Observed, RestartPolicy, StatusInput};
use super::probe::{self, ContainerProbes, ProbeKind, Target, Verdict};
use super::translate::{self, Lookup, PodRuntimeInfo, SandboxNamespaces};
use super::volumes;
use crate::events::{EventType, Involved, Recorder};
use crate::state::{ClusterState, ObjectKey};

/// Container log rotation (the kubelet's defaults).
const LOG_MAX_SIZE: u64 = 10 << 20;
const LOG_MAX_FILES: u32 = 5;
/// How long to wait before retrying what failed for a reason that may pass
/// (a missing ConfigMap, a failed mount) when nothing else wakes the worker.
const RETRY: Duration = Duration::from_secs(10);

/// What every worker shares.
#[derive(Debug)]
pub struct Shared {
    pub runtime: Runtime,
    pub store: Store,
    pub puller: Puller,
    pub state: ClusterState,
    pub events: Recorder,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub node_name: String,
    pub host_ip: Option<String>,
    /// (cpu millis, memory bytes) for resourceFieldRef defaults.
    pub node_capacity: (u64, u64),
    pub exits: broadcast::Sender<ExitEvent>,
    pub objects: watch::Receiver<Arc<Objects>>,
    /// The pod network (bridge, IPAM, veths).
    pub network: Arc<outpost_net::pod::PodNetwork>,
    /// The MTU of pods' `eth0`.
    pub mtu: u32,
    /// The cluster DNS server and domain for pods' resolv.conf.
    pub cluster_dns: Option<translate::ClusterDns>,
}

/// What pods may refer to: ConfigMaps and Secrets by (namespace, name).
#[derive(Debug, Default)]
pub struct Objects {
    pub config_maps: BTreeMap<(String, String), ConfigMap>,
    pub secrets: BTreeMap<(String, String), Secret>,
}

/// From the supervisor's exit stream.
#[derive(Debug, Clone)]
pub enum ExitEvent {
    Exited(String, ExitInfo),
    /// The stream broke and was re-opened: exits may have been missed.
    Resync,
}

/// The supervisor id of one attempt of one container of a pod.
pub fn container_id(uid: &str, container: &str, attempt: u32) -> String {
    format!("pod.{uid}.{container}.{attempt}")
}

/// Splits a pod container id into (uid, container, attempt).
pub fn parse_container_id(id: &str) -> Option<(&str, &str, u32)> {
    let rest = id.strip_prefix("pod.")?;
    let (rest, attempt) = rest.rsplit_once('.')?;
    let (uid, container) = rest.split_once('.')?;
    Some((uid, container, attempt.parse().ok()?))
}

/// Per-pod runtime dirs (sandbox namespaces).
pub fn sandbox_dir(run_dir: &std::path::Path, uid: &str) -> PathBuf {
    run_dir.join("pods").join(uid)
}

/// One container slot of the pod (init or regular).
#[derive(Debug)]
struct Slot {
    spec: Container,
    init: bool,
    /// Attempts made so far (the next one is `attempts`); restartCount = attempts - 1.
    attempts: u32,
    backoff: Backoff,
    not_before: Option<Instant>,
    state: ContainerState,
    last_state: Option<ContainerState>,
    started_at: Option<Instant>,
    image_id: String,
    /// Probe state while the container runs.
    probes: Option<ContainerProbes>,
}

impl Slot {
    fn restart_count(&self) -> u32 {
        self.attempts.saturating_sub(1)
    }

    fn current_id(&self, uid: &str) -> Option<String> {
        self.attempts
            .checked_sub(1)
            .map(|a| container_id(uid, &self.spec.name, a))
    }

    fn waiting(&mut self, reason: &str, message: Option<String>) {
        self.state = ContainerState::Waiting {
            reason: reason.to_owned(),
            message,
        };
    }
}

/// What the manager wants of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Run,
    /// The pod is no longer desired: stop its containers and clean up.
    Delete,
    /// The agent is stopping: leave everything running for the next agent.
    Detach,
}

/// Runs a pod until told otherwise.
pub async fn run(mut worker: Worker, mut stop: watch::Receiver<Command>) {
    worker.adopt().await;
    let mut exits = worker.shared.exits.subscribe();
    let mut objects = worker.shared.objects.clone();
    let command = loop {
        let command = *stop.borrow();
        if command != Command::Run {
            break command;
        }
        let wake = worker.reconcile().await;
        worker.publish();
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            changed = stop.changed() => if changed.is_err() { break Command::Detach },
            _ = objects.changed() => {}
            event = exits.recv() => match event {
                Ok(ExitEvent::Exited(id, exit)) => worker.exited(&id, exit),
                Ok(ExitEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => worker.adopt().await,
                Err(broadcast::error::RecvError::Closed) => break Command::Detach,
            },
        }
    };
    if command == Command::Delete {
        worker.terminate().await;
    }
}

pub struct Worker {
    shared: Arc<Shared>,
    pod: Arc<Pod>,
    uid: String,
    key: ObjectKey,
    slots: Vec<Slot>,
    start_time: String,
    blocked: Option<(String, String)>,
    sandbox: Option<SandboxNamespaces>,
    /// The pod's address on the pod network, once attached.
    ip: Option<std::net::Ipv4Addr>,
    volumes: Option<volumes::PreparedVolumes>,
}

impl Worker {
    pub fn new(shared: Arc<Shared>, pod: Arc<Pod>, uid: String) -> Worker {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let slot = |c: &Container, init: bool| Slot {
            spec: c.clone(),
            init,
            attempts: 0,
            backoff: Backoff::default(),
            not_before: None,
            state: ContainerState::Waiting {
                reason: if init {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                }
                .into(),
                message: None,
            },
            last_state: None,
            started_at: None,
            image_id: String::new(),
            probes: None,
        };
        let slots = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| slot(c, true))
            .chain(spec.containers.iter().map(|c| slot(c, false)))
            .collect();
        Worker {
            key: ObjectKey::namespaced("Pod", &ns, &name),
            shared,
            pod,
            uid,
            slots,
            start_time: crate::events::now(),
            blocked: None,
            sandbox: None,
            ip: None,
            volumes: None,
        }
    }

    fn involved(&self, container: Option<&Slot>) -> Involved {
        let mut i = Involved::object(&self.key);
        i.uid = Some(self.uid.clone());
        i.field_path = container.map(|s| {
            let list = if s.init {
                "initContainers"
            } else {
                "containers"
            };
            format!("spec.{list}{{{}}}", s.spec.name)
        });
        i
    }

    fn event(&self, slot: Option<usize>, kind: EventType, reason: &str, message: &str) {
        let involved = self.involved(slot.map(|i| &self.slots[i]));
        self.shared.events.record(&involved, kind, reason, message);
    }

    /// Learns the state of this pod's containers from the supervisor (at start,
    /// and after the exit stream was interrupted).
    async fn adopt(&mut self) {
        let runtime = self.shared.runtime.clone();
        let Ok(Ok(all)) = tokio::task::spawn_blocking(move || runtime.list()).await else {
            return;
        };
        let mut ours: BTreeMap<(String, u32), ContainerInfo> = BTreeMap::new();
        for c in all {
            if let Some((uid, name, attempt)) = parse_container_id(&c.id) {
                if uid == self.uid {
                    ours.insert((name.to_owned(), attempt), c);
                }
            }
        }
        let mut never_started = Vec::new();
        for slot in &mut self.slots {
            let mut attempts: Vec<(&u32, &ContainerInfo)> = ours
                .iter()
                .filter(|((n, _), _)| *n == slot.spec.name)
                .map(|((_, a), c)| (a, c))
                .collect();
            attempts.sort_by_key(|(a, _)| **a);
            let Some((latest, info)) = attempts.last() else {
                continue;
            };
            if info.state == State::Created && info.exit.is_none() {
                // Created by an agent killed before it started it: made
                // again under the same attempt, and started now.
                never_started.push(info.id.clone());
                slot.attempts = **latest;
                slot.not_before = Some(Instant::now());
                attempts.pop();
                if let Some((_, before)) = attempts.last() {
                    slot.last_state = Some(observed_state(before));
                }
                continue;
            }
            slot.attempts = **latest + 1;
            slot.state = observed_state(info);
            if info.state == State::Running {
                slot.started_at = Some(Instant::now());
                // Probe results start afresh, as after a kubelet restart.
                slot.probes = Some(ContainerProbes::new(&slot.spec, Instant::now()));
            }
            if attempts.len() >= 2 {
                slot.last_state = Some(observed_state(attempts[attempts.len() - 2].1));
            }
            if slot.attempts > 1 {
                // The back-off history is not kept across agent restarts: start from its first step.
                slot.backoff.current = Some(lifecycle::BACKOFF_INITIAL);
            }
        }
        if !never_started.is_empty() {
            let runtime = self.shared.runtime.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for id in never_started {
                    if let Err(e) = runtime.delete(&id, true) {
                        tracing::warn!(id, "removing a container that was never started: {e}");
                    }
                }
            })
            .await;
        }
    }

    /// A container of ours ended.
    fn exited(&mut self, id: &str, exit: ExitInfo) {
        let Some((uid, name, attempt)) = parse_container_id(id) else {
            return;
        };
        if uid != self.uid {
            return;
        }
        let Some(i) = self
            .slots
            .iter()
            .position(|s| s.spec.name == name && s.attempts == attempt + 1)
        else {
            return;
        };
        let started_at = match &self.slots[i].state {
            ContainerState::Running { started_at } => Some(started_at.clone()),
            _ => None,
        };
        let reason = exit.reason().to_owned();
        self.slots[i].probes = None;
        self.slots[i].state = ContainerState::Terminated {
            exit_code: exit.code,
            signal: exit.signal,
            reason,
            started_at,
            finished_at: exit.finished_at.clone(),
        };
    }

    /// One pass: make the next step happen. Returns when to look again (a
    /// back-off or retry timer), `None` to wait for an event.
    async fn reconcile(&mut self) -> Option<Instant> {
        if let Err((reason, message)) = self.ensure_sandbox().await {
            self.blocked = Some((reason.to_owned(), message.clone()));
            self.event(None, EventType::Warning, reason, &message);
            return Some(Instant::now() + RETRY);
        }
        self.blocked = None;
        let policy = RestartPolicy::of(&self.pod);
        let now = Instant::now();
        let mut wake: Option<Instant> = None;
        let mut earliest = |t: Instant| wake = Some(wake.map_or(t, |w: Instant| w.min(t)));

        // Init containers run one at a time, in order; regular ones once all succeeded.
        let init_count = self.slots.iter().filter(|s| s.init).count();
        let mut runnable: Vec<usize> = Vec::new();
        let mut init_done = true;
        for i in 0..init_count {
            match &self.slots[i].state {
                ContainerState::Terminated { exit_code: 0, .. } => continue,
                ContainerState::Terminated { exit_code, .. }
                    if !policy.restarts(*exit_code, true) =>
                {
                    init_done = false;
                    break;
                }
                ContainerState::Running { .. } => {
                    init_done = false;
                    break;
                }
                _ => {
                    runnable.push(i);
                    init_done = false;
                    break;
                }
            }
        }
        if init_done {
            runnable.extend(init_count..self.slots.len());
        }
        for i in runnable {
            let slot = &self.slots[i];
            let want_start = match &slot.state {
                ContainerState::Running { .. } => false,
                ContainerState::Waiting { .. } => slot.attempts == 0 || slot.not_before.is_some(),
                ContainerState::Terminated { exit_code, .. } => {
                    policy.restarts(*exit_code, slot.init)
                }
            };
            if !want_start {
                continue;
            }
            if let ContainerState::Terminated { .. } = slot.state {
                // Decide the back-off once per exit.
                let ran = slot
                    .started_at
                    .map(|t| now.duration_since(t))
                    .unwrap_or_default();
                let slot = &mut self.slots[i];
                let delay = slot.backoff.next_delay(ran);
                slot.last_state = Some(slot.state.clone());
                slot.not_before = Some(now + delay);
                if !delay.is_zero() {
                    let message = format!(
                        "back-off {}s restarting failed container={} pod={}_{}",
                        delay.as_secs(),
                        slot.spec.name,
                        self.key.name,
                        self.key.namespace.as_deref().unwrap_or("")
                    );
                    slot.waiting("CrashLoopBackOff", Some(message.clone()));
                    self.event(
                        Some(i),
                        EventType::Warning,
                        "BackOff",
                        "Back-off restarting failed container",
                    );
                }
            }
            let slot = &self.slots[i];
            if let Some(at) = slot.not_before {
                if at > now {
                    earliest(at);
                    continue;
                }
            }
            if let Err(retry_at) = self.start(i).await {
                earliest(retry_at);
            }
            // An init container runs alone: wait for its exit.
            if self.slots[i].init {
                break;
            }
        }
        if let Some(at) = self.run_probes().await {
            earliest(at);
        }
        wake
    }

    /// Runs the probes that are due, acts on their verdicts, and returns when
    /// the next one is due.
    async fn run_probes(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let netns = self.sandbox.as_ref().and_then(|s| s.network.clone());
        let pod_ip = self.pod_ip();
        let mut due: Vec<(usize, ProbeKind, String)> = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let (Some(probes), Some(id)) = (&slot.probes, slot.current_id(&self.uid)) else {
                continue;
            };
            if matches!(slot.state, ContainerState::Running { .. }) {
                due.extend(probes.due(now).into_iter().map(|k| (i, k, id.clone())));
            }
        }
        let runs = due.iter().map(|(i, kind, id)| {
            let target = Target {
                runtime: &self.shared.runtime,
                container_id: id,
                netns: netns.as_deref(),
                pod_ip: pod_ip.as_deref(),
                container: &self.slots[*i].spec,
            };
            let probe = kind.of(&self.slots[*i].spec).cloned().unwrap_or_default();
            async move { probe::run(&probe, &target).await }
        });
        let outcomes = futures_util::future::join_all(runs).await;
        let now = Instant::now();
        for ((i, kind, id), outcome) in due.into_iter().zip(outcomes) {
            if let Some(message) = outcome.event_message(kind) {
                self.event(Some(i), EventType::Warning, "Unhealthy", &message);
            }
            let Some(probes) = self.slots[i].probes.as_mut() else {
                continue;
            };
            let verdict = probes.record(kind, &outcome, now);
            let grace = probes.termination_grace_period(kind);
            if let (Some(Verdict::Unhealthy(_)), ProbeKind::Liveness | ProbeKind::Startup) =
                (verdict, kind)
            {
                let name = self.slots[i].spec.name.clone();
                self.event(
                    Some(i),
                    EventType::Normal,
                    "Killing",
                    &kind.kill_message(&name),
                );
                self.slots[i].probes = None;
                // Killed in the background: the exit arrives as an event and the
                // restart policy takes it from there; the worker never waits out a grace period.
                let grace = Duration::from_secs(
                    grace.unwrap_or_else(|| self.grace_seconds()).max(0) as u64,
                );
                let runtime = self.shared.runtime.clone();
                tokio::task::spawn_blocking(move || runtime.stop(&id, grace));
            }
        }
        self.slots
            .iter()
            .filter_map(|s| s.probes.as_ref()?.next_due())
            .min()
    }

    fn grace_seconds(&self) -> i64 {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
    }

    /// A lifecycle hook of slot `i`'s running container (`postStart` or `preStop`).
    async fn hook(&self, i: usize, post_start: bool, timeout: Duration) -> Result<(), String> {
        let slot = &self.slots[i];
        let lifecycle = slot.spec.lifecycle.as_ref();
        let handler = if post_start {
            lifecycle.and_then(|l| l.post_start.as_ref())
        } else {
            lifecycle.and_then(|l| l.pre_stop.as_ref())
        };
        let (Some(handler), Some(id)) = (handler, slot.current_id(&self.uid)) else {
            return Ok(());
        };
        let netns = self.sandbox.as_ref().and_then(|s| s.network.clone());
        let pod_ip = self.pod_ip();
        let target = Target {
            runtime: &self.shared.runtime,
            container_id: &id,
            netns: netns.as_deref(),
            pod_ip: pod_ip.as_deref(),
            container: &slot.spec,
        };
        hooks::run(handler, &target, timeout).await
    }

    /// Sandbox namespaces and volumes, made once (volumes refreshed each pass).
    async fn ensure_sandbox(&mut self) -> Result<(), (&'static str, String)> {
        let host_network = self.host_network();
        if self.sandbox.is_none() {
            let dir = sandbox_dir(&self.shared.run_dir, &self.uid);
            let hostname = self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.hostname.clone())
                .unwrap_or_else(|| self.key.name.clone());
            let network = if host_network {
                None
            } else {
                let path = dir.join("net");
                if !outpost_runtime::sandbox::is_pinned(&path) {
                    let _ = std::fs::create_dir_all(&dir);
                    outpost_net::netns::remove(&path)
                        .map_err(|e| ("FailedCreatePodSandBox", chain(&e)))?;
                    outpost_net::netns::create(&path)
                        .await
                        .map_err(|e| ("FailedCreatePodSandBox", chain(&e)))?;
                }
                // Idempotent: a re-adopted pod keeps its address.
                let address = self
                    .shared
                    .network
                    .attach(&self.uid, &path, self.shared.mtu)
                    .await
                    .map_err(|e| ("FailedCreatePodSandBox", chain(&e)))?;
                self.ip = Some(address.ip);
                Some(path)
            };
            let pins = {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || {
                    outpost_runtime::sandbox::create(&dir.join("shared"), &hostname)
                })
                .await
                .map_err(|e| ("FailedCreatePodSandBox", e.to_string()))?
                .map_err(|e| ("FailedCreatePodSandBox", chain(&e)))?
            };
            self.sandbox = Some(SandboxNamespaces {
                network,
                ipc: pins.ipc,
                uts: (!host_network).then_some(pins.uts),
            });
        }
        let objects = self.shared.objects.borrow().clone();
        let lookup = self.lookup(&objects);
        let pod_dir = crate::paths::pod_dir(&self.shared.state_dir, &self.uid);
        let info = PodRuntimeInfo {
            pod_ip: self.pod_ip(),
            host_ip: self.shared.host_ip.clone(),
            dns: self.shared.cluster_dns.clone(),
        };
        let prepared = volumes::prepare(&self.pod, &lookup, &info, &pod_dir)
            .map_err(|e| ("FailedMount", e.message))?;
        self.volumes = Some(prepared);
        Ok(())
    }

    fn lookup<'a>(&'a self, objects: &'a Objects) -> Lookup<'a> {
        Lookup {
            config_maps: &objects.config_maps,
            secrets: &objects.secrets,
            node_name: &self.shared.node_name,
            node_capacity: self.shared.node_capacity,
        }
    }

    /// Starts the next attempt of slot `i`. On failure, sets its waiting
    /// reason and returns when to retry.
    async fn start(&mut self, i: usize) -> Result<(), Instant> {
        let retry = || Instant::now() + RETRY;
        let image = match self.ensure_image(i).await {
            Ok(r) => r,
            Err(()) => {
                let slot = &mut self.slots[i];
                let delay = slot
                    .backoff
                    .next_delay(Duration::ZERO)
                    .max(Duration::from_secs(1));
                slot.not_before = Some(Instant::now() + delay);
                return Err(Instant::now() + delay);
            }
        };
        let objects = self.shared.objects.borrow().clone();
        let (Some(sandbox), Some(prepared)) = (&self.sandbox, &self.volumes) else {
            return Err(retry());
        };
        let attempt = self.slots[i].attempts;
        let id = container_id(&self.uid, &self.slots[i].spec.name, attempt);
        let info = PodRuntimeInfo {
            pod_ip: self.pod_ip(),
            host_ip: self.shared.host_ip.clone(),
            dns: self.shared.cluster_dns.clone(),
        };
        let translated = translate::container_spec(
            &self.pod,
            &self.slots[i].spec,
            &self.lookup(&objects),
            &info,
            sandbox,
            prepared,
            Runtime::cgroups_path(&id),
        );
        let (spec, non_root) = match translated {
            Ok(t) => {
                for w in &t.warnings {
                    self.event(
                        Some(i),
                        EventType::Warning,
                        "InvalidEnvironmentVariableNames",
                        w,
                    );
                }
                (t.spec, t.non_root)
            }
            Err(e) => {
                self.slots[i].waiting(e.reason, Some(e.message.clone()));
                self.event(
                    Some(i),
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {}", e.message),
                );
                return Err(retry());
            }
        };
        let ns = self.key.namespace.clone().unwrap_or_default();
        let log = LogConfig {
            path: crate::paths::container_log(
                &self.shared.state_dir,
                &ns,
                &self.key.name,
                &self.uid,
                &self.slots[i].spec.name,
                attempt,
            ),
            max_size: LOG_MAX_SIZE,
            max_files: LOG_MAX_FILES,
        };
        let (store, runtime) = (self.shared.store.clone(), self.shared.runtime.clone());
        let old = attempt
            .checked_sub(2)
            .map(|a| container_id(&self.uid, &self.slots[i].spec.name, a));
        let cid = id.clone();
        let created = tokio::task::spawn_blocking(move || -> Result<(), StartError> {
            // The container before the previous one is no longer needed (the previous one gives lastState).
            if let Some(old) = old {
                let _ = runtime.delete(&old, true);
            }
            let _guard = store.use_guard()?;
            let record = store
                .get(&image)?
                .ok_or_else(|| outpost_runtime::Error::Store {
                    message: format!("image {image} vanished"),
                })?;
            let rootfs = store.rootfs(&record)?;
            if let Some(check) = non_root {
                check
                    .verify(rootfs.config.user.as_deref())
                    .map_err(StartError::Config)?;
            }
            runtime.create(&cid, &spec, &rootfs, &log)?;
            Ok(runtime.start(&cid)?)
        })
        .await;
        let slot_name = self.slots[i].spec.name.clone();
        match created {
            Ok(Ok(())) => {
                let slot = &mut self.slots[i];
                slot.attempts = attempt + 1;
                slot.not_before = None;
                slot.started_at = Some(Instant::now());
                slot.state = ContainerState::Running {
                    started_at: crate::events::now(),
                };
                self.event(
                    Some(i),
                    EventType::Normal,
                    "Created",
                    &format!("Created container {slot_name}"),
                );
                self.event(
                    Some(i),
                    EventType::Normal,
                    "Started",
                    &format!("Started container {slot_name}"),
                );
                self.slots[i].probes =
                    Some(ContainerProbes::new(&self.slots[i].spec, Instant::now()));
                // A failing postStart hook kills the container, as the kubelet does.
                let grace = Duration::from_secs(self.grace_seconds().max(0) as u64);
                if let Err(message) = self.hook(i, true, grace).await {
                    self.event(Some(i), EventType::Warning, "FailedPostStartHook", &message);
                    self.slots[i].probes = None;
                    let runtime = self.shared.runtime.clone();
                    tokio::task::spawn_blocking(move || runtime.stop(&id, grace));
                }
                Ok(())
            }
            Ok(Err(StartError::Config(e))) => {
                self.slots[i].waiting(e.reason, Some(e.message.clone()));
                self.event(
                    Some(i),
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {}", e.message),
                );
                Err(retry())
            }
            Ok(Err(StartError::Runtime(e))) => {
                let message = chain(&e);
                let runtime = self.shared.runtime.clone();
                let _ = tokio::task::spawn_blocking(move || runtime.delete(&id, true)).await;
                self.slots[i].waiting("CreateContainerError", Some(message.clone()));
                self.event(
                    Some(i),
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {message}"),
                );
                Err(retry())
            }
            Err(e) => {
                self.slots[i].waiting("CreateContainerError", Some(e.to_string()));
                Err(retry())
            }
        }
    }

    fn host_network(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
    }

    /// The pod's IP: the node's on the host network (pod networking comes later).
    fn pod_ip(&self) -> Option<String> {
        if self.host_network() {
            self.shared.host_ip.clone()
        } else {
            self.ip.map(|ip| ip.to_string())
        }
    }

    /// Makes the slot's image present per its pull policy.
    async fn ensure_image(&mut self, i: usize) -> Result<ImageRef, ()> {
        let spec = &self.slots[i].spec;
        let raw = spec.image.clone().unwrap_or_default();
        let image: ImageRef = match raw.parse() {
            Ok(r) => r,
            Err(e) => {
                self.slots[i].waiting("InvalidImageName", Some(e.to_string()));
                return Err(());
            }
        };
        let policy = spec
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| "IfNotPresent".into());
        let present = self.shared.store.get(&image).ok().flatten();
        let pull = match (policy.as_str(), &present) {
            ("Never", None) => {
                let message =
                    format!("Container image \"{raw}\" is not present with pull policy of Never");
                self.slots[i].waiting("ErrImageNeverPull", Some(message.clone()));
                self.event(Some(i), EventType::Warning, "ErrImageNeverPull", &message);
                return Err(());
            }
            ("Always", _) | (_, None) => true,
            _ => false,
        };
        if pull {
            self.event(
                Some(i),
                EventType::Normal,
                "Pulling",
                &format!("Pulling image \"{raw}\""),
            );
            let started = Instant::now();
            match self
                .shared
                .puller
                .pull(&image, &PullOptions::default())
                .await
            {
                Ok(record) => {
                    let message = format!(
                        "Successfully pulled image \"{raw}\" in {:?}",
                        started.elapsed()
                    );
                    self.event(Some(i), EventType::Normal, "Pulled", &message);
                    self.slots[i].image_id = record.manifest.to_string();
                }
                Err(e) => {
                    let message = chain(&e);
                    let reason =
                        if self.slots[i].attempts == 0 && self.slots[i].backoff.current.is_none() {
                            "ErrImagePull"
                        } else {
                            "ImagePullBackOff"
                        };
                    self.slots[i].waiting(reason, Some(message.clone()));
                    self.event(
                        Some(i),
                        EventType::Warning,
                        "Failed",
                        &format!("Failed to pull image \"{raw}\": {message}"),
                    );
                    return Err(());
                }
            }
        } else if let Some(record) = present {
            self.slots[i].image_id = record.manifest.to_string();
        }
        Ok(image)
    }

    /// Publishes the pod with its status.
    pub fn publish(&self) {
        let observed = |s: &Slot| Observed {
            name: s.spec.name.clone(),
            image: s.spec.image.clone().unwrap_or_default(),
            image_id: s.image_id.clone(),
            container_id: s.current_id(&self.uid),
            state: s.state.clone(),
            last_state: s.last_state.clone(),
            restart_count: s.restart_count(),
            ready: matches!(s.state, ContainerState::Running { .. })
                && !s.init
                && s.probes.as_ref().is_some_and(ContainerProbes::ready),
            started: matches!(s.state, ContainerState::Running { .. })
                && s.probes.as_ref().is_some_and(ContainerProbes::started),
        };
        let init: Vec<Observed> = self.slots.iter().filter(|s| s.init).map(observed).collect();
        let containers: Vec<Observed> = self
            .slots
            .iter()
            .filter(|s| !s.init)
            .map(observed)
            .collect();
        let pod_ip = self.pod_ip();
        let host_ip = self.shared.host_ip.as_deref();
        let now = crate::events::now();
        let blocked = self.blocked.as_ref().map(|(r, m)| (r.as_str(), m.as_str()));
        let status = lifecycle::pod_status(&StatusInput {
            policy: RestartPolicy::of(&self.pod),
            init: &init,
            containers: &containers,
            pod_ip: pod_ip.as_deref(),
            host_ip,
            start_time: &self.start_time,
            blocked,
            now: &now,
            qos: lifecycle::qos_class(&self.pod),
        });
        let mut object = serde_json::to_value(&*self.pod).unwrap_or_else(|_| json!({}));
        object["apiVersion"] = json!("v1");
        object["kind"] = json!("Pod");
        object["metadata"]["uid"] = json!(self.uid);
        object["metadata"]["creationTimestamp"] = json!(self.start_time);
        object["spec"]["nodeName"] = json!(self.shared.node_name);
        object["status"] = keep_transition_times(self.shared.state.get(&self.key).as_ref(), status);
        self.shared.state.upsert(self.key.clone(), object);
    }

    /// Stops every container with the pod's grace period, then removes the
    /// containers, the sandbox, the volumes and the logs.
    async fn terminate(&mut self) {
        let grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        // Terminating from now on: controllers and `get pods` see it go.
        if let Some(mut object) = self.shared.state.get(&self.key) {
            if object["metadata"]["uid"] == self.uid.as_str() {
                object["metadata"]["deletionTimestamp"] = json!(crate::events::now());
                object["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                self.shared.state.upsert(self.key.clone(), object);
            }
        }
        let running: Vec<usize> = (0..self.slots.len())
            .filter(|&i| matches!(self.slots[i].state, ContainerState::Running { .. }))
            .collect();
        for &slot in &running {
            let name = self.slots[slot].spec.name.clone();
            self.event(
                Some(slot),
                EventType::Normal,
                "Killing",
                &format!("Stopping container {name}"),
            );
        }
        // Each container: preStop within the grace period, then SIGTERM with what is left of it.
        let this: &Worker = self;
        let stops = running.iter().map(|&i| async move {
            let started = Instant::now();
            let total = Duration::from_secs(grace);
            if let Err(message) = this.hook(i, false, total).await {
                this.event(Some(i), EventType::Warning, "FailedPreStopHook", &message);
            }
            let left = total.saturating_sub(started.elapsed());
            let (runtime, id) = (
                this.shared.runtime.clone(),
                this.slots[i].current_id(&this.uid),
            );
            if let Some(id) = id {
                let _ = tokio::task::spawn_blocking(move || runtime.stop(&id, left)).await;
            }
        });
        futures_util::future::join_all(stops).await;
        if let Err(e) = self.shared.network.detach(&self.uid).await {
            self.event(None, EventType::Warning, "FailedKillPod", &chain(&e));
        }
        let (runtime, uid) = (self.shared.runtime.clone(), self.uid.clone());
        let run_dir = self.shared.run_dir.clone();
        let state_dir = self.shared.state_dir.clone();
        let ns = self.key.namespace.clone().unwrap_or_default();
        let name = self.key.name.clone();
        let cleaned = tokio::task::spawn_blocking(move || {
            cleanup_pod(&runtime, &run_dir, &state_dir, &uid, Some((&ns, &name)))
        })
        .await;
        if let Ok(Err(e)) = cleaned {
            self.event(None, EventType::Warning, "FailedKillPod", &e);
        }
        // A newer pod of the same name (its manifest changed) may already be published.
        let ours = self
            .shared
            .state
            .get(&self.key)
            .is_some_and(|p| p["metadata"]["uid"] == self.uid.as_str());
        if ours {
            self.shared.state.delete(&self.key);
        }
    }
}

/// Why starting a container failed.
enum StartError {
    Config(translate::ConfigError),
    Runtime(outpost_runtime::Error),
}

impl From<outpost_runtime::Error> for StartError {
    fn from(e: outpost_runtime::Error) -> Self {
        StartError::Runtime(e)
    }
}

/// Removes everything a pod left: containers, sandbox namespaces, volumes and
/// (when its name is known) logs. Used on deletion and for orphans at start.
pub fn cleanup_pod(
    runtime: &Runtime,
    run_dir: &std::path::Path,
    state_dir: &std::path::Path,
    uid: &str,
    name: Option<(&str, &str)>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for c in runtime.list().map_err(|e| chain(&e))? {
        if parse_container_id(&c.id).is_some_and(|(u, _, _)| u == uid) {
            if let Err(e) = runtime.delete(&c.id, true) {
                problems.push(chain(&e));
            }
        }
    }
    let dir = sandbox_dir(run_dir, uid);
    if let Err(e) = outpost_net::netns::remove(&dir.join("net")) {
        problems.push(chain(&e));
    }
    if let Err(e) = outpost_runtime::sandbox::remove(&dir.join("shared")) {
        problems.push(chain(&e));
    }
    let _ = std::fs::remove_dir(&dir);
    if let Err(e) = volumes::cleanup(&crate::paths::pod_dir(state_dir, uid)) {
        problems.push(format!("volumes: {e}"));
    }
    if let Some((ns, name)) = name {
        let _ = std::fs::remove_dir_all(crate::paths::pod_log_dir(state_dir, ns, name, uid));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn observed_state(info: &ContainerInfo) -> ContainerState {
    match (&info.state, &info.exit) {
        (_, Some(exit)) => ContainerState::Terminated {
            exit_code: exit.code,
            signal: exit.signal,
            reason: exit.reason().to_owned(),
            started_at: info.started_at.clone(),
            finished_at: exit.finished_at.clone(),
        },
        (State::Running, None) => ContainerState::Running {
            started_at: info.started_at.clone().unwrap_or_default(),
        },
        (State::Created | State::Exited, None) => ContainerState::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        },
    }
}

/// Keeps a condition's `lastTransitionTime` while its status is unchanged.
fn keep_transition_times(old: Option<&Value>, mut status: Value) -> Value {
    let Some(old_conditions) = old.and_then(|o| o["status"]["conditions"].as_array()) else {
        return status;
    };
    if let Some(conditions) = status["conditions"].as_array_mut() {
        for c in conditions {
            if let Some(prev) = old_conditions
                .iter()
                .find(|p| p["type"] == c["type"] && p["status"] == c["status"])
            {
                c["lastTransitionTime"] = prev["lastTransitionTime"].clone();
            }
        }
    }
    status
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    outpost_runtime::error::chain(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_round_trip() {
        let id = container_id("2b1f-aa", "web", 3);
        assert_eq!(id, "pod.2b1f-aa.web.3");
        assert_eq!(parse_container_id(&id), Some(("2b1f-aa", "web", 3)));
        assert_eq!(parse_container_id("ctr-1234"), None);
        assert_eq!(parse_container_id("pod.x.y.z"), None);
    }
}
