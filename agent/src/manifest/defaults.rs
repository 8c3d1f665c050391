//! The API server's defaults (`pkg/apis/core/v1/defaults.go`), applied before
//! validation so an object reads the same here as from `kubectl get -o yaml`.
//! Status written in a manifest is dropped, as the API server drops it on
//! create: status is observed, never desired.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy, RollingUpdateDaemonSet,
    RollingUpdateDeployment,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ClientIPConfig, Container, HTTPGetAction, LifecycleHandler, LimitRange, Pod, PodSpec,
    PodTemplateSpec, Probe, Secret, Service, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

use super::validate::valid_resource;
use super::{Object, DEFAULT_NAMESPACE};

/// Fills in what the API server would; idempotent.
pub(super) fn apply(object: &mut Object) {
    match object {
        Object::Namespace(ns) => {
            ns.metadata.namespace = None;
            ns.status = None;
        }
        Object::Pod(pod) => {
            namespace(&mut pod.metadata);
            self::pod(pod);
        }
        Object::ConfigMap(cm) => namespace(&mut cm.metadata),
        Object::Secret(secret) => {
            namespace(&mut secret.metadata);
            self::secret(secret);
        }
        Object::LimitRange(lr) => {
            namespace(&mut lr.metadata);
            limit_range(lr);
        }
        Object::ResourceQuota(quota) => {
            namespace(&mut quota.metadata);
            quota.status = None;
        }
        Object::Service(svc) => {
            namespace(&mut svc.metadata);
            service(svc);
        }
        Object::Deployment(d) => {
            namespace(&mut d.metadata);
            deployment(d);
        }
        Object::Job(job) => {
            namespace(&mut job.metadata);
            self::job(job);
        }
        Object::DaemonSet(ds) => {
            namespace(&mut ds.metadata);
            daemon_set(ds);
        }
        // Its namespace was defaulted when it was read.
        Object::Unsupported(_) => {}
    }
}

/// SetDefaults_Service, and what the service registry fills in on create
/// (`clusterIPs` from `clusterIP`, the IP families) on a single-stack IPv4
/// cluster. The ClusterIP and NodePorts themselves are allocated later, by
/// the agent (`services::alloc`).
fn service(svc: &mut Service) {
    svc.status = None;
    let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
    or_default(&mut spec.session_affinity, "None");
    match spec.session_affinity.as_deref() {
        Some("None") => spec.session_affinity_config = None,
        Some("ClientIP") => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            if timeout.is_none() {
                spec.session_affinity_config = Some(SessionAffinityConfig {
                    client_ip: Some(ClientIPConfig {
                        timeout_seconds: Some(10800),
                    }),
                });
            }
        }
        _ => {}
    }
    or_default(&mut spec.type_, "ClusterIP");
    for port in spec.ports.iter_mut().flatten() {
        or_default(&mut port.protocol, "TCP");
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(n)) => *n == 0,
            Some(IntOrString::String(s)) => s.is_empty(),
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    let kind = spec.type_.clone().unwrap_or_default();
    let external_ips = spec
        .external_ips
        .as_ref()
        .is_some_and(|ips| !ips.is_empty());
    let externally_accessible =
        kind == "NodePort" || kind == "LoadBalancer" || (kind == "ClusterIP" && external_ips);
    if externally_accessible {
        or_default(&mut spec.external_traffic_policy, "Cluster");
    }
    if matches!(kind.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        or_default(&mut spec.internal_traffic_policy, "Cluster");
    }
    if kind == "LoadBalancer" {
        spec.allocate_load_balancer_node_ports.get_or_insert(true);
    }
    let cluster_ip = spec.cluster_ip.clone().unwrap_or_default();
    if !cluster_ip.is_empty() && spec.cluster_ips.as_ref().is_none_or(|ips| ips.is_empty()) {
        spec.cluster_ips = Some(vec![cluster_ip.clone()]);
    }
    if kind != "ExternalName" {
        if spec.ip_families.as_ref().is_none_or(|f| f.is_empty()) {
            spec.ip_families = Some(vec!["IPv4".to_owned()]);
        }
        // Headless services without a selector take every family the
        // cluster has (their endpoints are written by hand).
        let selectorless = spec.selector.as_ref().is_none_or(|s| s.is_empty());
        let policy = if cluster_ip == "None" && selectorless {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        or_default(&mut spec.ip_family_policy, policy);
    }
}

/// SetDefaults_Deployment (apps/v1).
fn deployment(d: &mut Deployment) {
    d.status = None;
    let Some(spec) = d.spec.as_mut() else {
        return;
    };
    spec.replicas.get_or_insert(1);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    or_default(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        let quarter = || IntOrString::String("25%".into());
        rolling.max_unavailable.get_or_insert_with(quarter);
        rolling.max_surge.get_or_insert_with(quarter);
    }
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    template(&mut spec.template);
}

/// SetDefaults_Job: one pod at a time, one completion, six retries.
fn job(job: &mut Job) {
    job.status = None;
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    spec.backoff_limit.get_or_insert(6);
    or_default(&mut spec.completion_mode, "NonIndexed");
    spec.suspend.get_or_insert(false);
    template(&mut spec.template);
}

/// SetDefaults_DaemonSet (apps/v1).
fn daemon_set(ds: &mut DaemonSet) {
    ds.status = None;
    let Some(spec) = ds.spec.as_mut() else {
        return;
    };
    let strategy = spec
        .update_strategy
        .get_or_insert_with(DaemonSetUpdateStrategy::default);
    or_default(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        rolling.max_unavailable.get_or_insert(IntOrString::Int(1));
        rolling.max_surge.get_or_insert(IntOrString::Int(0));
    }
    spec.revision_history_limit.get_or_insert(10);
    template(&mut spec.template);
}

/// A pod template gets the pod defaults.
fn template(template: &mut PodTemplateSpec) {
    if let Some(spec) = template.spec.as_mut() {
        pod_spec(spec);
    }
}

/// Sets `field` to `value` when unset or empty (Go's zero value).
fn or_default(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_owned());
    }
}

/// Probe and LimitRange numbers: unset and 0 both mean "the default" in the
/// Go API types.
fn or_default_i32(field: &mut Option<i32>, value: i32) {
    if matches!(field, None | Some(0)) {
        *field = Some(value);
    }
}

fn namespace(meta: &mut ObjectMeta) {
    or_default(&mut meta.namespace, DEFAULT_NAMESPACE);
}

fn pod(pod: &mut Pod) {
    pod.status = None;
    if let Some(spec) = pod.spec.as_mut() {
        pod_spec(spec);
    }
}

fn pod_spec(spec: &mut PodSpec) {
    or_default(&mut spec.restart_policy, "Always");
    or_default(&mut spec.dns_policy, "ClusterFirst");
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.enable_service_links.get_or_insert(true);
    for c in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        container(c);
    }
    for volume in spec.volumes.iter_mut().flatten() {
        if let Some(cm) = volume.config_map.as_mut() {
            cm.default_mode.get_or_insert(0o644);
        }
        if let Some(secret) = volume.secret.as_mut() {
            secret.default_mode.get_or_insert(0o644);
        }
        if let Some(host) = volume.host_path.as_mut() {
            host.type_.get_or_insert_with(String::new);
        }
    }
}

fn container(c: &mut Container) {
    if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        let policy = pull_policy(c.image.as_deref().unwrap_or_default());
        c.image_pull_policy = Some(policy.to_owned());
    }
    or_default(&mut c.termination_message_path, "/dev/termination-log");
    or_default(&mut c.termination_message_policy, "File");
    for port in c.ports.iter_mut().flatten() {
        or_default(&mut port.protocol, "TCP");
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ] {
        if let Some(probe) = probe.as_mut() {
            self::probe(probe);
        }
    }
    if let Some(lifecycle) = c.lifecycle.as_mut() {
        for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
            .into_iter()
            .flatten()
        {
            lifecycle_handler(handler);
        }
    }
    for env in c.env.iter_mut().flatten() {
        if let Some(field) = env
            .value_from
            .as_mut()
            .and_then(|from| from.field_ref.as_mut())
        {
            or_default(&mut field.api_version, "v1");
        }
    }
    // A limit without a request is also the request (SetDefaults_Pod). An
    // invalid limit is not copied: it is reported once, where it was written.
    if let Some(resources) = c.resources.as_mut() {
        for (name, limit) in resources.limits.iter().flatten() {
            if valid_resource(name, limit) {
                let requests = resources.requests.get_or_insert_with(BTreeMap::new);
                requests
                    .entry(name.clone())
                    .or_insert_with(|| limit.clone());
            }
        }
    }
}

/// `Always` for `:latest` or no tag, else `IfNotPresent` (by digest too).
pub(super) fn pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
        None if digest => "IfNotPresent",
        None => "Always",
    }
}

fn probe(probe: &mut Probe) {
    or_default_i32(&mut probe.timeout_seconds, 1);
    or_default_i32(&mut probe.period_seconds, 10);
    or_default_i32(&mut probe.success_threshold, 1);
    or_default_i32(&mut probe.failure_threshold, 3);
    probe.initial_delay_seconds.get_or_insert(0);
    if let Some(http) = probe.http_get.as_mut() {
        http_get(http);
    }
}

fn lifecycle_handler(handler: &mut LifecycleHandler) {
    if let Some(http) = handler.http_get.as_mut() {
        http_get(http);
    }
}

fn http_get(http: &mut HTTPGetAction) {
    or_default(&mut http.path, "/");
    or_default(&mut http.scheme, "HTTP");
}

/// `stringData` is a write-only convenience: merged into `data` (winning over
/// it) and removed, as the API server does.
fn secret(secret: &mut Secret) {
    or_default(&mut secret.type_, "Opaque");
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (key, value) in strings {
            data.insert(key, ByteString(value.into_bytes()));
        }
    }
}

/// SetDefaults_LimitRangeItem, for `type: Container`: the default limit is
/// the max when unset; the default request is the default limit, else the min.
fn limit_range(lr: &mut LimitRange) {
    for item in lr.spec.iter_mut().flat_map(|s| s.limits.iter_mut()) {
        if item.type_ != "Container" {
            continue;
        }
        let fill = |into: &mut Option<BTreeMap<String, Quantity>>,
                    from: &Option<BTreeMap<String, Quantity>>| {
            for (name, q) in from.iter().flatten() {
                into.get_or_insert_with(BTreeMap::new)
                    .entry(name.clone())
                    .or_insert_with(|| q.clone());
            }
        };
        fill(&mut item.default, &item.max);
        fill(&mut item.default_request, &item.default);
        fill(&mut item.default_request, &item.min);
    }
}

#[cfg(test)]
mod tests {
    use super::pull_policy;

    #[test]
    fn pull_policies() {
        let check = |image: &str, expect: &str| assert_eq!(pull_policy(image), expect, "{image}");
        check("nginx", "Always");
        check("nginx:latest", "Always");
        check("nginx:1.27", "IfNotPresent");
        check("localhost:5000/app", "Always");
        check("localhost:5000/app:v2", "IfNotPresent");
        check("nginx@sha256:0123", "IfNotPresent");
        check("nginx:latest@sha256:0123", "Always");
    }
}
