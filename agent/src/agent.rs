//! `outpost agent`: the long-running node agent.
//!
//! Start-up: validate flags, open the image store, import the air-gap dir,
//! attach to (or start) the supervisor, load the last-known-good desired state,
//! start pod workers (which re-adopt running containers), serve the local API,
//! clean what a crash left, tell systemd it is ready, then follow the sources.
//! On SIGTERM the agent exits and leaves every pod running for the next agent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{LimitRange, Pod, ResourceQuota, Service};
use outpost_runtime::container::Runtime;
use outpost_runtime::image::store::{GcPolicy, InUse, Store};
use outpost_systemd::{notify, Notify};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::cli::NodeDirs;
use crate::controllers::{self, NodeInfo, PodView, World};
use crate::desired::Desired;
use crate::events::{EventType, Involved, Recorder};
use crate::manifest::{apply_limit_ranges, check_quota, BundleFile, Object};
use crate::pods::{pod_uid, ExitEvent, Manager, Objects, Shared};
use crate::source::{SourceConfig, SourceUpdate};
use crate::state::{ClusterState, ObjectKey};

/// Container files younger than this may be a `ctr run` in progress elsewhere.
const ORPHAN_MIN_AGE: Duration = Duration::from_secs(30);
/// Pod status changes within this window make one controller run.
const CONTROLLER_DEBOUNCE: Duration = Duration::from_millis(20);
/// Exists when br_netfilter is loaded (bridged traffic meets netfilter).
const BRIDGE_NF_SYSCTL: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
/// How long the agent waits for its sources' first reads before it is ready.
const FIRST_READ_WAIT: Duration = Duration::from_secs(5);
/// How often image GC checks the disk.
const GC_INTERVAL: Duration = Duration::from_secs(300);
/// Kinds the agent publishes as they are declared (pods get a live status instead).
const PLAIN_KINDS: &[&str] = &[
    "Namespace",
    "ConfigMap",
    "Secret",
    "LimitRange",
    "ResourceQuota",
];
/// The annotation naming the source an object came from.
pub const SOURCE_ANNOTATION: &str = "outpost.io/source";

/// Namespaces every cluster has.
const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub dirs: NodeDirs,
    /// Where manifests come from: file:///dir (watched) or https://… (polled); repeatable.
    #[arg(long = "source", default_value = "file:///etc/outpost/manifests")]
    pub sources: Vec<String>,
    /// Bearer token file for https sources (read at every request).
    #[arg(long)]
    pub source_token_file: Option<PathBuf>,
    /// CA certificate (PEM) for https sources.
    #[arg(long)]
    pub source_ca: Option<PathBuf>,
    /// minisign public key: https bundles must come with a valid <url>.minisig.
    #[arg(long)]
    pub source_public_key: Option<String>,
    /// How often https sources are polled.
    #[arg(long, default_value = "30s", value_parser = crate::cli::parse_duration)]
    pub source_interval: Duration,
    /// Allow plain http:// sources (tests, trusted networks).
    #[arg(long)]
    pub allow_http_source: bool,
    /// This node's name (default: the host name).
    #[arg(long, env = "OUTPOST_NODE_NAME")]
    pub node_name: Option<String>,
    /// This node's IP, reported as hostIP (and podIP of hostNetwork pods) and
    /// as LoadBalancer ingress (default: the IPv4 default route's source).
    #[arg(long)]
    pub node_ip: Option<std::net::Ipv4Addr>,
    /// A label of this node, key=value, for nodeSelector and node affinity
    /// (k3s's flag); repeatable.
    #[arg(long = "node-label", value_parser = parse_node_label)]
    pub node_labels: Vec<(String, String)>,
    /// The cluster's pod network; this node takes one /24 of it (--node-pod-cidr).
    #[arg(long, default_value = "10.42.0.0/16", value_parser = parse_cidr)]
    pub pod_cidr: (std::net::Ipv4Addr, u8),
    /// This node's pod addresses [default: the first /24 of --pod-cidr].
    #[arg(long, value_parser = parse_cidr)]
    pub node_pod_cidr: Option<(std::net::Ipv4Addr, u8)>,
    /// The range ClusterIPs are allocated from; nothing in it ever leaves the node.
    #[arg(long, default_value = "10.43.0.0/16", value_parser = parse_cidr)]
    pub service_cidr: (std::net::Ipv4Addr, u8),
    /// The cluster DNS server pods' resolv.conf names (dnsPolicy ClusterFirst); "" for none.
    #[arg(long, default_value = "10.43.0.10")]
    pub cluster_dns: String,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The MTU of the pod bridge and of pods' eth0.
    #[arg(long, default_value_t = outpost_net::bridge::DEFAULT_MTU)]
    pub mtu: u32,
    /// Disk usage (percent) above which unused images are garbage-collected.
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub image_gc_high_threshold: u8,
    /// Disk usage (percent) image GC brings the store back under.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_low_threshold: u8,
    /// Image GC spares images pulled or imported less than this long ago.
    #[arg(long, default_value = "2m", value_parser = crate::cli::parse_duration)]
    pub minimum_image_ttl_duration: Duration,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if args.image_gc_low_threshold >= args.image_gc_high_threshold {
        anyhow::bail!(
            "--image-gc-low-threshold ({}) must be below --image-gc-high-threshold ({})",
            args.image_gc_low_threshold,
            args.image_gc_high_threshold
        );
    }
    let mut source_configs = Vec::new();
    for url in &args.sources {
        let mut config =
            SourceConfig::parse(url).map_err(|e| anyhow::anyhow!("--source {url}: {e}"))?;
        config.interval = args.source_interval;
        config.allow_http = args.allow_http_source;
        if !url.starts_with("file://") {
            config.bearer_token_file = args.source_token_file.clone();
            config.ca_file = args.source_ca.clone();
            config.public_key = args.source_public_key.clone();
        }
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("--source {url}: {e}"))?;
        source_configs.push(config);
    }
    let local_source = args
        .sources
        .iter()
        .find_map(|s| s.strip_prefix("file://"))
        .map(PathBuf::from);
    let node_name = match &args.node_name {
        Some(n) => n.clone(),
        None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
    };
    let dirs = args.dirs.clone();
    for dir in [&dirs.state_dir, &dirs.run_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let store = dirs.store()?;
    let runtime = dirs.runtime()?;
    let puller = dirs.puller()?;
    // Where `outpost apply/delete` edit (the first file source) and who else owns objects.
    let sources = json!({"local": local_source, "sources": args.sources});
    std::fs::write(
        crate::paths::sources_file(&dirs.run_dir),
        serde_json::to_vec_pretty(&sources)?,
    )
    .with_context(|| {
        format!(
            "write {}",
            crate::paths::sources_file(&dirs.run_dir).display()
        )
    })?;
    let policy = GcPolicy {
        high_percent: args.image_gc_high_threshold,
        low_percent: args.image_gc_low_threshold,
        min_age: args.minimum_image_ttl_duration,
    };

    import_airgap(&store, &dirs.state_dir.join("airgap")).await;
    let adopted = readopt(&runtime).await?;
    let network = pod_network(&args, &dirs.run_dir).await?;
    let node_ip = match args.node_ip {
        Some(ip) => Some(ip),
        None => match network.host().default_route_address().await {
            Ok(Some(ip)) => {
                tracing::info!("node IP {ip}: the default route's source (--node-ip to choose)");
                Some(ip)
            }
            Ok(None) => {
                tracing::info!("no default route: no node IP (--node-ip to give one)");
                None
            }
            Err(e) => {
                tracing::warn!("no node IP: {}", crate::pods::worker::chain(&e));
                None
            }
        },
    };

    let state = ClusterState::default();
    let events = Recorder::new(state.clone(), &node_name);
    for ns in BUILTIN_NAMESPACES {
        state.upsert(ObjectKey::cluster("Namespace", ns), namespace_json(ns));
    }
    let (exits, _) = broadcast::channel(1024);
    watch_exits(runtime.clone(), exits.clone());
    let (objects_tx, objects_rx) = watch::channel(Arc::new(Objects::default()));
    let shared = Arc::new(Shared {
        runtime: runtime.clone(),
        store: store.clone(),
        puller,
        state: state.clone(),
        events: events.clone(),
        state_dir: dirs.state_dir.clone(),
        run_dir: dirs.run_dir.clone(),
        node_name: node_name.clone(),
        host_ip: node_ip.map(|ip| ip.to_string()),
        node_capacity: node_capacity(),
        exits,
        objects: objects_rx,
        network,
        mtu: args.mtu,
        cluster_dns: (!args.cluster_dns.is_empty()).then(|| crate::pods::translate::ClusterDns {
            server: args.cluster_dns.clone(),
            domain: args.cluster_domain.clone(),
        }),
    });
    let mut manager = Manager::new(shared, adopted);
    let mut desired = Desired::load(&dirs.state_dir, &args.sources);
    let (records_store, records, lost_controllers) = crate::records::Store::load(
        dirs.state_dir.join("controllers.json"),
        "the controllers start afresh: their pods are created again",
    );
    let svc_config = crate::services::AllocConfig::new(
        args.service_cidr,
        args.cluster_dns.parse().ok(),
        crate::services::NODE_PORT_RANGE,
    )
    .map_err(|e| anyhow::anyhow!("--service-cidr: {e}"))?;
    let (svc_store, svc_allocations, lost_services) = crate::services::alloc::load(&dirs.state_dir);
    // Without br_netfilter the kernel bridges a Service pod's reply to a
    // client pod on this node straight past the proxy's NAT: it never
    // arrives. Loading modules is the host's business; say so loudly.
    let bridge_netfilter = (!std::path::Path::new(BRIDGE_NF_SYSCTL).exists()).then(|| {
        format!(
            "{BRIDGE_NF_SYSCTL} is missing: the br_netfilter module is not loaded, so pods \
             reaching a Service whose pod is on this node get no answer; load it \
             (modprobe br_netfilter) and restart the agent"
        )
    });
    for (reason, problem) in [
        ("ControllerStateLost", lost_controllers),
        ("ServiceStateLost", lost_services),
        ("BridgeNetfilterMissing", bridge_netfilter),
    ] {
        if let Some(problem) = problem {
            tracing::error!("{problem}");
            events.record(
                &Involved::node(&node_name),
                EventType::Warning,
                reason,
                &problem,
            );
        }
    }
    let proxy = outpost_net::proxy::Proxy::open(
        outpost_net::proxy::ProxyConfig {
            table: PROXY_TABLE.into(),
            service_cidr: svc_config.service_cidr(),
            pod_cidr: args.pod_cidr,
            bridge: outpost_net::bridge::DEFAULT_NAME.into(),
            node_ips: Vec::new(),
        },
        None,
    )
    .context("open the service proxy")?;
    let proxy = spawn_proxy(proxy, events.clone(), node_name.clone());
    let node_ips: Vec<std::net::Ipv4Addr> = node_ip.into_iter().collect();
    let mut pod_changes = state.subscribe();
    let mut sync = Sync {
        state: state.clone(),
        events: events.clone(),
        node: node_info(&node_name, &args.node_labels),
        objects: objects_tx,
        reported: HashSet::new(),
        unschedulable: HashMap::new(),
        store: records_store,
        records,
        published: HashSet::new(),
        controller_pods: Vec::new(),
        services: ServiceSync {
            config: svc_config,
            store: svc_store,
            allocations: svc_allocations,
            node_ips,
            published: HashSet::new(),
            proxy,
            sent: None,
        },
    };
    let mut wake = sync.apply(&desired, &mut manager);
    manager.clean_orphans().await;

    let shutdown = CancellationToken::new();
    let api = tokio::spawn(crate::api::serve(
        crate::api::ApiConfig {
            socket: crate::paths::api_socket(&dirs.run_dir),
            state_dir: dirs.state_dir.clone(),
            runtime: Some(runtime.clone()),
        },
        state.clone(),
        shutdown.clone(),
    ));
    let (tx, mut updates) = mpsc::channel(16);
    for config in source_configs {
        crate::source::spawn(config, tx.clone(), shutdown.clone());
    }
    drop(tx);

    // Ready once every source was read (or found unreachable), so what a
    // caller applied before starting the agent is there when it asks; an
    // upstream that is slow to answer delays it FIRST_READ_WAIT at most.
    let node = Involved::node(&node_name);
    let mut unread: HashSet<String> = args.sources.iter().cloned().collect();
    let deadline = tokio::time::Instant::now() + FIRST_READ_WAIT;
    while !unread.is_empty() {
        let Ok(Some(update)) = tokio::time::timeout_at(deadline, updates.recv()).await else {
            break;
        };
        unread.remove(update.source());
        if let Some(w) = on_update(
            update,
            &mut desired,
            &mut sync,
            &mut manager,
            &events,
            &node,
        ) {
            wake = w;
        }
    }
    let status = format!("{} pods", manager.uids().len());
    if let Err(e) = notify(&[Notify::Ready, Notify::Status(&status)]) {
        tracing::warn!("sd_notify: {e}");
    }
    let mut gc_tick = tokio::time::interval(GC_INTERVAL);
    // Controllers look again when a pod changes (debounced) or at their wake-up time.
    let mut pods_changed = false;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(update) => {
                    if let Some(w) = on_update(update, &mut desired, &mut sync, &mut manager, &events, &node) {
                        wake = w;
                    }
                }
                None => std::future::pending::<()>().await,
            },
            change = pod_changes.recv() => match change {
                Ok(change) if change.key.kind != "Pod" => {}
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => pods_changed = true,
                Err(broadcast::error::RecvError::Closed) => {}
            },
            _ = tokio::time::sleep(CONTROLLER_DEBOUNCE), if pods_changed => {
                pods_changed = false;
                wake = sync.apply(&desired, &mut manager);
            }
            _ = sleep_until(wake) => wake = sync.apply(&desired, &mut manager),
            _ = gc_tick.tick() => collect_garbage(&store, &runtime, policy, manager.images()).await,
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let _ = notify(&[Notify::Stopping]);
    shutdown.cancel();
    manager.detach().await;
    let _ = api.await;
    tracing::info!("agent stopping; pods keep running");
    Ok(ExitCode::SUCCESS)
}

/// Publishes the merged desired state and hands the pods to the manager.
struct Sync {
    state: ClusterState,
    events: Recorder,
    node: NodeInfo,
    objects: watch::Sender<Arc<Objects>>,
    /// Unsupported kinds and conflicts already reported.
    reported: HashSet<String>,
    /// The controllers' records, as last persisted.
    store: crate::records::Store<controllers::Records>,
    records: controllers::Records,
    /// Controller objects (Deployments, ReplicaSets, Jobs, DaemonSets) published.
    published: HashSet<ObjectKey>,
    /// The pods of the last records persisted.
    controller_pods: Vec<Pod>,
    /// Pods that fit no node, published Pending (key → uid).
    unschedulable: HashMap<ObjectKey, String>,
    services: ServiceSync,
}

/// Services: addresses allocated and persisted, EndpointSlices published,
/// the proxy fed.
struct ServiceSync {
    config: crate::services::AllocConfig,
    store: crate::services::Store,
    allocations: crate::services::Allocations,
    node_ips: Vec<std::net::Ipv4Addr>,
    /// Services and EndpointSlices published.
    published: HashSet<ObjectKey>,
    proxy: std::sync::mpsc::Sender<ProxyInput>,
    /// What the proxy was last given.
    sent: Option<ProxyInput>,
}

/// What the proxy serves: services with their ready endpoints, and hostPorts.
type ProxyInput = (
    Vec<outpost_net::proxy::Service>,
    Vec<outpost_net::proxy::HostPort>,
);

impl Sync {
    /// Publishes the desired state, runs the controllers and hands every pod
    /// to the manager. Returns when the controllers want to look again.
    fn apply(&mut self, desired: &Desired, manager: &mut Manager) -> Option<jiff::Timestamp> {
        let (merged, conflicts) = desired.merged();
        let node = Involved::node(&self.node.name);
        for c in conflicts {
            let message = format!(
                "{} from {} is ignored: {} already defines it",
                c.key, c.ignored, c.kept
            );
            if self.reported.insert(message.clone()) {
                self.events
                    .record(&node, EventType::Warning, "Conflict", &message);
            }
        }
        // Plain objects: published as declared; the ones no longer declared go.
        let mut declared = HashSet::new();
        let mut objects = Objects::default();
        let mut limit_ranges: BTreeMap<String, Vec<LimitRange>> = BTreeMap::new();
        let mut quotas: BTreeMap<String, Vec<ResourceQuota>> = BTreeMap::new();
        let mut pods: Vec<&Pod> = Vec::new();
        let mut owners: BTreeMap<ObjectKey, &str> = BTreeMap::new();
        let mut deployments: Vec<(&Deployment, &str)> = Vec::new();
        let mut jobs: Vec<(&Job, &str)> = Vec::new();
        let mut daemon_sets: Vec<(&DaemonSet, &str)> = Vec::new();
        let mut services: Vec<(&Service, &str)> = Vec::new();
        for (key, (source, object)) in &merged {
            owners.insert(key.clone(), source.as_str());
            match object {
                Object::Pod(p) => pods.push(p),
                Object::Deployment(d) => deployments.push((d, source)),
                Object::Job(j) => jobs.push((j, source)),
                Object::DaemonSet(d) => daemon_sets.push((d, source)),
                Object::Service(svc) => services.push((svc, source)),
                Object::Unsupported(u) => {
                    let message = format!(
                        "{key}: kind {} ({}) is not supported by outpost yet; kept, not run",
                        u.kind, u.api_version
                    );
                    if self.reported.insert(message.clone()) {
                        self.events
                            .record(&node, EventType::Warning, "UnsupportedKind", &message);
                    }
                }
                other => {
                    declared.insert(key.clone());
                    let ns = key.namespace.clone().unwrap_or_default();
                    match other {
                        Object::ConfigMap(cm) => {
                            objects
                                .config_maps
                                .insert((ns, key.name.clone()), (**cm).clone());
                        }
                        Object::Secret(s) => {
                            objects
                                .secrets
                                .insert((ns, key.name.clone()), (**s).clone());
                        }
                        Object::LimitRange(l) => {
                            limit_ranges.entry(ns).or_default().push((**l).clone())
                        }
                        Object::ResourceQuota(q) => {
                            quotas.entry(ns).or_default().push((**q).clone())
                        }
                        _ => {}
                    }
                    let mut json = other.to_json();
                    json["metadata"]["annotations"][SOURCE_ANNOTATION] = json!(source);
                    if key.kind == "Namespace" {
                        json["status"] = json!({"phase": "Active"});
                    }
                    self.state.upsert(key.clone(), json);
                }
            }
        }
        for kind in PLAIN_KINDS {
            for key in self.state.keys(kind) {
                let builtin =
                    key.kind == "Namespace" && BUILTIN_NAMESPACES.contains(&key.name.as_str());
                if !declared.contains(&key) && !builtin {
                    self.state.delete(&key);
                }
            }
        }
        let namespaces: HashSet<String> = self
            .state
            .keys("Namespace")
            .into_iter()
            .map(|k| k.name)
            .collect();
        let _ = self.objects.send(Arc::new(objects));

        // The pods as their workers last published them: what the controllers
        // and the endpoints follow.
        let (published, _) = self.state.list("Pod", None);
        let (controller_pods, wake) =
            self.run_controllers(&published, deployments, jobs, daemon_sets);
        let pods = pods.into_iter().chain(controller_pods.iter());

        // Pods: admission for new ones (existing ones were admitted already).
        let mut admitted: BTreeMap<String, Pod> = BTreeMap::new();
        let mut unschedulable = HashMap::new();
        for pod in pods {
            // Bound to this node, as the kubelet's static pods are; the uid
            // hashes the node name too, so two agents on one machine (tests)
            // never share container ids or cgroups.
            let mut pod = pod.clone();
            if let Some(spec) = pod.spec.as_mut() {
                spec.node_name.get_or_insert_with(|| self.node.name.clone());
            }
            let uid = pod_uid(&pod);
            let ns = pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = pod.metadata.name.clone().unwrap_or_default();
            let key = ObjectKey::namespaced("Pod", &ns, &name);
            if let Some(source) = owners.get(&key) {
                pod.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(SOURCE_ANNOTATION.into(), (*source).to_owned());
            }
            // No scheduler here: a pod this node does not fit stays Pending,
            // as with a single-node cluster's scheduler.
            let fits = pod
                .spec
                .as_ref()
                .is_some_and(|s| controllers::node_fit::fits(s, &self.node));
            // Pods re-adopted at start were admitted and placed by an earlier
            // run: a lowered quota or a changed --node-label never stops a
            // running pod, as in Kubernetes.
            let judged = !manager.has(&uid) && !manager.readopts(&uid);
            if judged && !fits {
                self.publish_unschedulable(&key, &uid, &pod);
                unschedulable.insert(key, uid);
                continue;
            }
            if judged {
                if let Err(message) = self.admit(
                    &mut pod,
                    &ns,
                    &namespaces,
                    &limit_ranges,
                    &quotas,
                    &admitted,
                ) {
                    let message =
                        format!("Error creating: pods \"{name}\" is forbidden: {message}");
                    self.events.record(
                        &Involved::object(&key),
                        EventType::Warning,
                        "FailedCreate",
                        &message,
                    );
                    continue;
                }
            }
            admitted.insert(uid, pod);
        }
        // Before the workers start: one may publish a pod of the same name.
        for (key, uid) in &self.unschedulable {
            let ours = self
                .state
                .get(key)
                .is_some_and(|p| p["metadata"]["uid"] == uid.as_str());
            if ours && unschedulable.get(key) != Some(uid) {
                self.state.delete(key);
            }
        }
        self.unschedulable = unschedulable;
        manager.sync(admitted);
        self.sync_services(&services, published);
        wake
    }

    /// Publishes a pod that fits no node as the API server shows one the
    /// scheduler cannot place: Pending, PodScheduled=False, with a
    /// FailedScheduling event the first time.
    fn publish_unschedulable(&self, key: &ObjectKey, uid: &str, pod: &Pod) {
        let current = self.state.get(key);
        if current
            .as_ref()
            .is_some_and(|p| p["metadata"]["uid"] == uid)
        {
            return;
        }
        if self.unschedulable.get(key).map(String::as_str) != Some(uid) {
            self.events.record(
                &Involved::object(key),
                EventType::Warning,
                "FailedScheduling",
                controllers::node_fit::UNSCHEDULABLE,
            );
        }
        let mut object = serde_json::to_value(pod).unwrap_or_else(|_| json!({}));
        object["apiVersion"] = json!("v1");
        object["kind"] = json!("Pod");
        object["metadata"]["uid"] = json!(uid);
        // Not placed on a node, so not bound to this one either.
        if let Some(spec) = object.get_mut("spec").and_then(|s| s.as_object_mut()) {
            spec.remove("nodeName");
        }
        object["status"] = json!({
            "phase": "Pending",
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": controllers::node_fit::UNSCHEDULABLE,
                "lastTransitionTime": crate::events::now(),
            }],
            "qosClass": crate::pods::lifecycle::qos_class(pod),
        });
        self.state.upsert(key.clone(), object);
    }

    /// Allocates addresses, publishes Services and their EndpointSlices from
    /// the pods as published, and hands the ready endpoints to the proxy.
    fn sync_services(
        &mut self,
        services: &[(&Service, &str)],
        pod_objects: Vec<serde_json::Value>,
    ) {
        use crate::services::{endpoint_slices, host_ports, proxy_service, published};
        let svc = &mut self.services;
        let declared: Vec<&Service> = services.iter().map(|(s, _)| *s).collect();
        let mut allocations = svc.allocations.clone();
        let (assigned, problems) = allocations.sync(&svc.config, &declared);
        if let Err(e) = svc.store.save(&allocations) {
            // Addresses handed out but not on disk could move after a crash.
            self.persist_failed("service allocations", "Services", &e);
            return;
        }
        svc.allocations = allocations;
        for p in &problems {
            let key = ObjectKey::namespaced("Service", &p.service.namespace, &p.service.name);
            let message = format!("{}: {}", p.field, p.message);
            self.events.record(
                &Involved::object(&key),
                EventType::Warning,
                "FailedAllocation",
                &message,
            );
        }
        let pods: Vec<Pod> = pod_objects
            .into_iter()
            .filter_map(|p| serde_json::from_value(p).ok())
            .collect();
        let live: Vec<_> = services
            .iter()
            .filter_map(|(service, source)| {
                let id = crate::services::ServiceKey::of(service);
                let a = assigned.get(&id)?;
                Some((*service, *source, id, a))
            })
            .collect();
        let proxied: Vec<_> = live
            .iter()
            .filter_map(|(service, _, _, a)| proxy_service(service, a, &pods))
            .collect();
        let host_ports = host_ports(&pods);
        // A LoadBalancer whose port another Service holds on the node gets no
        // ingress (k3s's ServiceLB leaves it pending): the claims the proxy
        // will make for the same input.
        let pending: HashSet<(String, String)> = if proxied
            .iter()
            .flat_map(|s| &s.ports)
            .any(|p| p.load_balancer)
        {
            outpost_net::proxy::conflicts(&proxied, &host_ports)
                .into_iter()
                .filter(|c| c.load_balancer)
                .filter_map(|c| c.dropped_service)
                .collect()
        } else {
            HashSet::new()
        };
        let mut keys = HashSet::new();
        for (service, source, id, a) in live {
            let pending = pending.contains(&(id.namespace.clone(), id.name.clone()));
            let node_ips = if pending { &[][..] } else { &svc.node_ips[..] };
            let mut object =
                serde_json::to_value(published(service, a, node_ips)).unwrap_or_else(|_| json!({}));
            object["metadata"]["annotations"][SOURCE_ANNOTATION] = json!(source);
            let key = ObjectKey::namespaced("Service", &id.namespace, &id.name);
            self.state.upsert(key.clone(), object);
            keys.insert(key);
            for slice in endpoint_slices(service, a, &pods) {
                let name = slice.metadata.name.clone().unwrap_or_default();
                let key = ObjectKey::namespaced("EndpointSlice", &id.namespace, &name);
                let mut object = serde_json::to_value(&slice).unwrap_or_else(|_| json!({}));
                object["apiVersion"] = json!("discovery.k8s.io/v1");
                object["kind"] = json!("EndpointSlice");
                self.state.upsert(key.clone(), object);
                keys.insert(key);
            }
        }
        for key in svc.published.difference(&keys) {
            self.state.delete(key);
        }
        svc.published = keys;
        let input = (proxied, host_ports);
        if svc.sent.as_ref() != Some(&input) {
            let _ = svc.proxy.send(input.clone());
            svc.sent = Some(input);
        }
    }

    /// Reports records that could not be written (disk full, read-only):
    /// what depends on them stays as it is.
    fn persist_failed(&self, what: &str, held: &str, e: &std::io::Error) {
        let message =
            format!("cannot save {what} ({e}); {held} stay as they are until it can be written");
        tracing::error!("{message}");
        self.events.record(
            &Involved::node(&self.node.name),
            EventType::Warning,
            "FailedPersist",
            &message,
        );
    }

    /// Runs the controllers on the pods as published; persists their records
    /// before their pods may start, and publishes their objects. Returns
    /// their pods and when to look again.
    fn run_controllers(
        &mut self,
        published: &[serde_json::Value],
        deployments: Vec<(&Deployment, &str)>,
        jobs: Vec<(&Job, &str)>,
        daemon_sets: Vec<(&DaemonSet, &str)>,
    ) -> (Vec<Pod>, Option<jiff::Timestamp>) {
        let views: BTreeMap<(String, String), PodView> = published
            .iter()
            .map(|p| {
                let ns = p["metadata"]["namespace"].as_str().unwrap_or("default");
                let name = p["metadata"]["name"].as_str().unwrap_or_default();
                ((ns.to_owned(), name.to_owned()), PodView::from_json(p))
            })
            .collect();
        let world = World {
            now: jiff::Timestamp::now(),
            node: &self.node,
            deployments,
            jobs,
            daemon_sets,
            pods: &views,
        };
        let plan = controllers::reconcile(&self.records, &world);
        if let Err(e) = self.store.save(&plan.records) {
            // Pods the records do not name could be duplicated after a crash:
            // nothing changes until the records can be written.
            self.persist_failed("the controllers' state", "workloads", &e);
            let retry = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(5);
            return (self.controller_pods.clone(), Some(retry));
        }
        self.records = plan.records;
        for event in &plan.events {
            self.events.record(
                &Involved::object(&event.object),
                event.event_type,
                event.reason,
                &event.message,
            );
        }
        let keys: HashSet<ObjectKey> = plan.objects.keys().cloned().collect();
        for key in self.published.difference(&keys) {
            self.state.delete(key);
        }
        for (key, object) in plan.objects {
            self.state.upsert(key, object);
        }
        self.published = keys;
        self.controller_pods = plan.pods.into_values().collect();
        (self.controller_pods.clone(), plan.wake)
    }

    fn admit(
        &self,
        pod: &mut Pod,
        ns: &str,
        namespaces: &HashSet<String>,
        limit_ranges: &BTreeMap<String, Vec<LimitRange>>,
        quotas: &BTreeMap<String, Vec<ResourceQuota>>,
        admitted: &BTreeMap<String, Pod>,
    ) -> Result<(), String> {
        if !namespaces.contains(ns) {
            return Err(format!("namespaces \"{ns}\" not found"));
        }
        if let Some(ranges) = limit_ranges.get(ns) {
            apply_limit_ranges(pod, ranges)?;
        }
        if let Some(quotas) = quotas.get(ns) {
            let existing: Vec<&Pod> = admitted
                .values()
                .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == ns)
                .collect();
            for quota in quotas {
                check_quota(pod, quota, &existing)?;
            }
        }
        Ok(())
    }
}

/// The nftables table (family ip) the service proxy owns.
pub const PROXY_TABLE: &str = "outpost";

/// Runs the proxy on its own thread (a sync blocks on netlink for about a
/// millisecond): the newest input wins; a refused sync is retried.
fn spawn_proxy(
    mut proxy: outpost_net::proxy::Proxy,
    events: Recorder,
    node: String,
) -> std::sync::mpsc::Sender<ProxyInput> {
    let (tx, rx) = std::sync::mpsc::channel::<ProxyInput>();
    std::thread::spawn(move || {
        let mut pending: Option<ProxyInput> = None;
        // Reported once each, while they last.
        let mut conflicts: Vec<outpost_net::proxy::Conflict> = Vec::new();
        loop {
            let next = match &pending {
                // Retry a refused sync in a second unless newer input comes.
                Some(_) => match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(input) => Some(input),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(input) => Some(input),
                    Err(_) => return,
                },
            };
            if let Some(input) = next {
                pending = Some(input);
            }
            while let Ok(newer) = rx.try_recv() {
                pending = Some(newer);
            }
            let Some((services, host_ports)) = &pending else {
                continue;
            };
            match proxy.sync(services, host_ports) {
                Ok(stats) => {
                    tracing::debug!(?stats, "service proxy synced");
                    for c in stats.conflicts.iter().filter(|c| !conflicts.contains(c)) {
                        tracing::warn!("service proxy: {c}");
                        let involved = match &c.dropped_service {
                            Some((ns, name)) => {
                                Involved::object(&ObjectKey::namespaced("Service", ns, name))
                            }
                            None => Involved::node(&node),
                        };
                        events.record(
                            &involved,
                            EventType::Warning,
                            "PortConflict",
                            &c.to_string(),
                        );
                    }
                    conflicts = stats.conflicts;
                    pending = None;
                }
                Err(e) => {
                    let message = format!(
                        "service proxy: {}; retrying",
                        crate::pods::worker::chain(&e)
                    );
                    tracing::error!("{message}");
                    events.record(
                        &Involved::node(&node),
                        EventType::Warning,
                        "FailedSync",
                        &message,
                    );
                }
            }
        }
    });
    tx
}

/// `key=value`, each valid as a Kubernetes label's.
fn parse_node_label(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not key=value"))?;
    let problems: Vec<String> = crate::manifest::qualified_name(key)
        .into_iter()
        .chain(crate::manifest::label_value(value))
        .collect();
    if !problems.is_empty() {
        return Err(format!("{s:?}: {}", problems.join("; ")));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// `10.42.0.0/16`.
fn parse_cidr(s: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let (ip, len) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a CIDR (e.g. 10.42.0.0/16)"))?;
    let ip: std::net::Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| format!("{len:?} is not a prefix length (0-32)"))?;
    let mask = prefix_mask(len);
    if u32::from(ip) & !mask != 0 {
        return Err(format!(
            "{s} has host bits set: use {}/{len}",
            std::net::Ipv4Addr::from(u32::from(ip) & mask)
        ));
    }
    Ok((ip, len))
}

/// The network mask of a prefix length (`/0` masks nothing).
fn prefix_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// The bridge and IPAM of this node's pod range, the bridge set up. IPAM
/// state lives in the run dir: addresses matter only while their pods'
/// namespaces exist, which a reboot ends anyway (and no SD-card writes).
async fn pod_network(
    args: &AgentArgs,
    run_dir: &Path,
) -> anyhow::Result<Arc<outpost_net::pod::PodNetwork>> {
    use outpost_net::ipam::{Ipam, PodRange, DEFAULT_QUARANTINE};
    let (cluster, cluster_len) = args.pod_cidr;
    let (net, len) = args.node_pod_cidr.unwrap_or((cluster, cluster_len.max(24)));
    let inside =
        len >= cluster_len && u32::from(net) & prefix_mask(cluster_len) == u32::from(cluster);
    anyhow::ensure!(
        inside,
        "--node-pod-cidr {net}/{len} is not inside --pod-cidr {cluster}/{cluster_len}"
    );
    let range =
        PodRange::new(net, len).map_err(|e| anyhow::anyhow!("pod range {net}/{len}: {e}"))?;
    let path = run_dir.join("ipam.json");
    let ipam = match Ipam::open(&path, range, DEFAULT_QUARANTINE) {
        Ok(ipam) => ipam,
        Err(e) => {
            // Running pods get addresses again when their workers attach them.
            tracing::error!("{}; starting it afresh", crate::pods::worker::chain(&e));
            Ipam::rebuild(&path, range, DEFAULT_QUARANTINE, &[])?
        }
    };
    let mut bridge = outpost_net::bridge::BridgeConfig::new(range.gateway(), len);
    bridge.mtu = args.mtu;
    let host = outpost_net::host::Host::open(None).context("open netlink")?;
    let network = outpost_net::pod::PodNetwork::new(host, bridge, ipam)?;
    let bridge = network
        .ensure_bridge()
        .await
        .context("set up the pod bridge")?;
    outpost_net::bridge::ensure_service_route(
        network.host(),
        &bridge,
        &network.bridge_config().name,
        args.service_cidr,
    )
    .await
    .context("route the service range")?;
    Ok(Arc::new(network))
}

/// Applies what a source sent; the controllers' next wake-up time when the
/// desired state changed.
fn on_update(
    update: SourceUpdate,
    desired: &mut Desired,
    sync: &mut Sync,
    manager: &mut Manager,
    events: &Recorder,
    node: &Involved,
) -> Option<Option<jiff::Timestamp>> {
    match update {
        SourceUpdate::Bundle(bundle) => {
            let files: Vec<BundleFile> = bundle
                .files
                .into_iter()
                .map(|f| BundleFile {
                    name: f.name,
                    content: f.content,
                })
                .collect();
            match desired.apply(&bundle.source, &bundle.version, files) {
                Ok(true) => {
                    events.record(
                        node,
                        EventType::Normal,
                        "BundleApplied",
                        &format!("applied {} (version {})", bundle.source, bundle.version),
                    );
                    return Some(sync.apply(desired, manager));
                }
                Ok(false) => {}
                Err(e) => {
                    for problem in &e.problems {
                        events.record(
                            node,
                            EventType::Warning,
                            "BundleRejected",
                            &format!(
                                "{}: {problem}; the last good state keeps running",
                                bundle.source
                            ),
                        );
                    }
                }
            }
        }
        SourceUpdate::Unreachable {
            source,
            error,
            retry_in,
        } => events.record(
            node,
            EventType::Warning,
            "SourceUnreachable",
            &format!("{source}: {error}; retrying in {}s", retry_in.as_secs()),
        ),
        SourceUpdate::Refused { source, error } => events.record(
            node,
            EventType::Warning,
            "BundleRefused",
            &format!("{source}: {error}; the last good state keeps running"),
        ),
    }
    None
}

/// Sleeps until `at`; forever when `None`.
async fn sleep_until(at: Option<jiff::Timestamp>) {
    match at {
        Some(at) => {
            let left = at.duration_since(jiff::Timestamp::now());
            let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}

/// This node's name and labels: the well-known ones, then `--node-label`s.
fn node_info(name: &str, extra: &[(String, String)]) -> NodeInfo {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    };
    let labels = [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch),
    ];
    NodeInfo {
        name: name.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain(extra.iter().cloned())
            .collect(),
    }
}

fn namespace_json(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}})
}

/// Attaches to the supervisor (starting it after a reboot) and reports what it
/// runs; the uids of the pods its containers belong to.
async fn readopt(runtime: &Runtime) -> anyhow::Result<HashSet<String>> {
    let rt = runtime.clone();
    let (containers, cleaned) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let (pid, version) = rt.ping()?;
        tracing::info!(pid, version, "supervisor up");
        Ok((rt.list()?, rt.clean_orphans(ORPHAN_MIN_AGE)?))
    })
    .await??;
    let running = containers
        .iter()
        .filter(|c| c.state == outpost_runtime::container::State::Running)
        .count();
    tracing::info!(total = containers.len(), running, "re-adopted containers");
    for c in &containers {
        match &c.exit {
            Some(exit) => {
                tracing::info!(id = %c.id, code = exit.code, reason = exit.reason(), "container has exited")
            }
            None => {
                tracing::info!(id = %c.id, pid = ?c.pid, state = ?c.state, "container is alive")
            }
        }
    }
    if !cleaned.is_empty() {
        tracing::info!(
            ?cleaned,
            "removed leftovers of containers that were never created"
        );
    }
    Ok(containers
        .iter()
        .filter_map(|c| crate::pods::worker::parse_container_id(&c.id))
        .map(|(uid, _, _)| uid.to_owned())
        .collect())
}

/// Forwards the supervisor's exit stream to the pod workers, re-opening it
/// (and telling workers to re-observe) when it breaks. A plain thread: the
/// stream is a blocking read.
fn watch_exits(runtime: Runtime, tx: broadcast::Sender<ExitEvent>) {
    std::thread::spawn(move || loop {
        match runtime.watch_exits() {
            Ok(mut stream) => {
                let _ = tx.send(ExitEvent::Resync);
                while let Ok((id, exit)) = stream.next_exit() {
                    let _ = tx.send(ExitEvent::Exited(id, exit));
                }
            }
            Err(e) => tracing::warn!("cannot watch container exits: {e}"),
        }
        std::thread::sleep(Duration::from_secs(1));
    });
}

/// (cpu millicores, memory bytes) of this node.
fn node_capacity() -> (u64, u64) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .map(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .flatten()
        .unwrap_or(0)
        * 1024;
    (cpus * 1000, memory)
}

/// Image GC: what containers use and what desired pods name stay (a pod
/// waiting for its volumes, or between restarts, must not lose its image when
/// the registry is out of reach).
async fn collect_garbage(
    store: &Store,
    runtime: &Runtime,
    policy: GcPolicy,
    desired_images: HashSet<String>,
) {
    let (store, runtime) = (store.clone(), runtime.clone());
    let result = tokio::task::spawn_blocking(move || {
        let mut in_use = InUse::from_records(runtime.records());
        in_use.images.extend(desired_images);
        store.gc(policy, &in_use)
    })
    .await;
    match result {
        Ok(Ok(removed)) if !removed.is_empty() => {
            tracing::info!(?removed, "image garbage collection")
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("image garbage collection: {e}"),
        Err(e) => tracing::warn!("image garbage collection task: {e}"),
    }
}

/// What the air-gap dir held at the last import, so unchanged tarballs are not
/// hashed again at every start.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AirgapSeen {
    files: Vec<(String, u64, i64)>,
}

/// Imports every tarball in the air-gap dir (pinned: never garbage-collected).
/// A bad tarball is reported and skipped; the others still load.
async fn import_airgap(store: &Store, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let seen_path = store.root().join("airgap-imported.json");
    let mut seen: AirgapSeen = std::fs::read(&seen_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    files.sort();
    let mut changed = false;
    for path in files {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let key = (
            path.to_string_lossy().into_owned(),
            meta.len(),
            std::os::unix::fs::MetadataExt::mtime(&meta),
        );
        if seen.files.contains(&key) {
            continue;
        }
        let (s, p) = (store.clone(), path.clone());
        match tokio::task::spawn_blocking(move || {
            outpost_runtime::image::import::import(&s, &p, true)
        })
        .await
        {
            Ok(Ok(records)) => {
                for r in records {
                    tracing::info!(image = %r.name, file = %path.display(), "imported air-gap image");
                }
                seen.files.push(key);
                changed = true;
            }
            Ok(Err(e)) => {
                tracing::error!(file = %path.display(), "air-gap import refused: {}", outpost_runtime::error::chain(&e))
            }
            Err(e) => tracing::error!(file = %path.display(), "air-gap import task: {e}"),
        }
    }
    if changed {
        if let Ok(data) = serde_json::to_vec(&seen) {
            let _ = std::fs::write(&seen_path, data);
        }
    }
}
