//! Pod validation (ValidatePodCreate and what it calls), for what outpost
//! runs: containers, env, ports, probes, resources, volumes, security context.
//! Features outpost cannot honour are refused here, so a pod never starts
//! half-configured: volume types other than emptyDir/configMap/secret/hostPath,
//! gRPC probes, volume devices, resource claims.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvFromSource, EnvVar, HTTPGetAction, KeyToPath, LifecycleHandler,
    Pod, PodSecurityContext, PodSpec, Probe, ResourceRequirements, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{meta, names, quantity, Errors, NameFormat, Path};

/// Whether a container is a regular one, an init container, or a sidecar
/// (an init container with `restartPolicy: Always`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Regular,
    Init,
    Sidecar,
}

pub(super) fn pod(e: &mut Errors, pod: &Pod) {
    meta(e, &pod.metadata, NameFormat::Subdomain, true);
    match pod.spec.as_ref() {
        Some(spec) => self::spec(e, spec, &Path::new("spec")),
        None => e.required(&Path::new("spec")),
    }
}

/// A pod's spec, or a template's at `p` (`spec.template.spec`).
pub(super) fn spec(e: &mut Errors, spec: &PodSpec, p: &Path) {
    let volumes = volumes(
        e,
        spec.volumes.as_deref().unwrap_or_default(),
        &p.child("volumes"),
    );

    let mut names = HashSet::new();
    let mut host_ports = HashSet::new();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let role = if c.restart_policy.as_deref() == Some("Always") {
            Role::Sidecar
        } else {
            Role::Init
        };
        let path = p.child("initContainers").index(i);
        container(e, c, &path, role, &volumes, &mut names, &mut host_ports);
    }
    if spec.containers.is_empty() {
        e.required(&p.child("containers"));
    }
    for (i, c) in spec.containers.iter().enumerate() {
        let path = p.child("containers").index(i);
        container(
            e,
            c,
            &path,
            Role::Regular,
            &volumes,
            &mut names,
            &mut host_ports,
        );
    }
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        e.forbidden(&p.child("ephemeralContainers"), "cannot be set on create");
    }

    if let Some(policy) = spec.restart_policy.as_deref() {
        e.one_of(
            &p.child("restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        );
    }
    if let Some(policy) = spec.dns_policy.as_deref() {
        e.one_of(
            &p.child("dnsPolicy"),
            policy,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        );
        if policy == "None" && spec.dns_config.is_none() {
            e.required_because(
                &p.child("dnsConfig"),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            );
        }
    }
    if let Some(seconds) = spec.termination_grace_period_seconds.filter(|s| *s < 0) {
        e.invalid_number(
            &p.child("terminationGracePeriodSeconds"),
            seconds,
            "must be greater than or equal to 0",
        );
    }
    if let Some(seconds) = spec
        .active_deadline_seconds
        .filter(|s| !(1..=i64::from(i32::MAX)).contains(s))
    {
        e.invalid_number(
            &p.child("activeDeadlineSeconds"),
            seconds,
            "must be between 1 and 2147483647, inclusive",
        );
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            e.invalid_all(&p.child(field), value, names::dns1123_label(value));
        }
    }
    if let Some(account) = spec
        .service_account_name
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        e.invalid_all(
            &p.child("serviceAccountName"),
            account,
            names::dns1123_subdomain(account),
        );
    }
    if let Some(sc) = spec.security_context.as_ref() {
        pod_security_context(e, sc, &p.child("securityContext"));
    }
    if spec.resource_claims.as_ref().is_some_and(|c| !c.is_empty()) {
        e.not_supported(
            &p.child("resourceClaims"),
            "dynamic resource allocation is not supported by outpost".into(),
        );
    }
}

/// Checks the volumes, returning the names containers may mount.
fn volumes<'a>(e: &mut Errors, volumes: &'a [Volume], p: &Path) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = p.index(i);
        if v.name.is_empty() {
            e.required(&p.child("name"));
        } else if !names::dns1123_label(&v.name).is_empty() {
            e.invalid_all(&p.child("name"), &v.name, names::dns1123_label(&v.name));
        } else if !names.insert(v.name.as_str()) {
            e.duplicate(&p.child("name"), &v.name);
        }
        volume_source(e, v, &p);
    }
    names
}

/// The source types a volume names: every field but `name` is one.
fn source_types(v: &Volume) -> Vec<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(fields)) => fields
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k != "name")
            .collect(),
        _ => Vec::new(),
    }
}

fn volume_source(e: &mut Errors, v: &Volume, p: &Path) {
    let types = source_types(v);
    match types.as_slice() {
        [] => return e.required_because(p, "must specify a volume type"),
        [_] => {}
        [_, second, ..] => {
            return e.forbidden(&p.child(second), "may not specify more than 1 volume type")
        }
    }
    if let Some(dir) = v.empty_dir.as_ref() {
        let p = p.child("emptyDir");
        if let Some(medium) = dir.medium.as_deref() {
            e.one_of(&p.child("medium"), medium, &["", "Memory"]);
        }
        if let Some(size) = dir.size_limit.as_ref() {
            quantity(e, &p.child("sizeLimit"), "memory", size);
        }
    } else if let Some(cm) = v.config_map.as_ref() {
        let p = p.child("configMap");
        if cm.name.is_empty() {
            e.required(&p.child("name"));
        } else {
            e.invalid_all(
                &p.child("name"),
                &cm.name,
                names::dns1123_subdomain(&cm.name),
            );
        }
        file_mode(e, &p.child("defaultMode"), cm.default_mode);
        key_to_paths(
            e,
            cm.items.as_deref().unwrap_or_default(),
            &p.child("items"),
        );
    } else if let Some(secret) = v.secret.as_ref() {
        let p = p.child("secret");
        match secret.secret_name.as_deref() {
            None | Some("") => e.required(&p.child("secretName")),
            Some(name) => {
                e.invalid_all(&p.child("secretName"), name, names::dns1123_subdomain(name))
            }
        }
        file_mode(e, &p.child("defaultMode"), secret.default_mode);
        key_to_paths(
            e,
            secret.items.as_deref().unwrap_or_default(),
            &p.child("items"),
        );
    } else if let Some(host) = v.host_path.as_ref() {
        let p = p.child("hostPath");
        if host.path.is_empty() {
            e.required(&p.child("path"));
        } else if !host.path.starts_with('/') {
            e.invalid(&p.child("path"), &host.path, "must be an absolute path");
        } else if has_backsteps(&host.path) {
            e.invalid(&p.child("path"), &host.path, "must not contain '..'");
        }
        if let Some(t) = host.type_.as_deref() {
            let types = [
                "",
                "DirectoryOrCreate",
                "Directory",
                "FileOrCreate",
                "File",
                "Socket",
                "CharDevice",
                "BlockDevice",
            ];
            e.one_of(&p.child("type"), t, &types);
        }
    } else if let Some(kind) = types.first() {
        e.not_supported(
            &p.child(kind),
            format!("volume type {kind} is not supported by outpost: use emptyDir, configMap, secret or hostPath"),
        );
    }
}

fn has_backsteps(path: &str) -> bool {
    path.split('/').any(|part| part == "..")
}

/// A path inside a volume or container: relative, without `..`.
fn relative_path(e: &mut Errors, p: &Path, path: &str) {
    if path.starts_with('/') {
        e.invalid(p, path, "must be a relative path");
    }
    if has_backsteps(path) {
        e.invalid(p, path, "must not contain '..'");
    }
}

fn file_mode(e: &mut Errors, p: &Path, mode: Option<i32>) {
    if let Some(mode) = mode.filter(|m| !(0..=0o777).contains(m)) {
        e.invalid_number(
            p,
            mode.into(),
            "must be a number between 0 and 0777 (octal), both inclusive",
        );
    }
}

fn key_to_paths(e: &mut Errors, items: &[KeyToPath], p: &Path) {
    for (i, item) in items.iter().enumerate() {
        let p = p.index(i);
        if item.key.is_empty() {
            e.required(&p.child("key"));
        } else {
            e.invalid_all(&p.child("key"), &item.key, names::config_map_key(&item.key));
        }
        if item.path.is_empty() {
            e.required(&p.child("path"));
        } else {
            relative_path(e, &p.child("path"), &item.path);
        }
        file_mode(e, &p.child("mode"), item.mode);
    }
}

fn container(
    e: &mut Errors,
    c: &Container,
    p: &Path,
    role: Role,
    volumes: &HashSet<&str>,
    names: &mut HashSet<String>,
    host_ports: &mut HashSet<String>,
) {
    if c.name.is_empty() {
        e.required(&p.child("name"));
    } else if !names::dns1123_label(&c.name).is_empty() {
        e.invalid_all(&p.child("name"), &c.name, names::dns1123_label(&c.name));
    } else if !names.insert(c.name.clone()) {
        e.duplicate(&p.child("name"), &c.name);
    }
    match c.image.as_deref() {
        None | Some("") => e.required(&p.child("image")),
        Some(image) if image.trim() != image => {
            e.invalid(
                &p.child("image"),
                image,
                "must not have leading or trailing whitespace",
            );
        }
        Some(_) => {}
    }
    if let Some(policy) = c.image_pull_policy.as_deref() {
        e.one_of(
            &p.child("imagePullPolicy"),
            policy,
            &["Always", "IfNotPresent", "Never"],
        );
    }
    if let Some(policy) = c.termination_message_policy.as_deref() {
        e.one_of(
            &p.child("terminationMessagePolicy"),
            policy,
            &["File", "FallbackToLogsOnError"],
        );
    }
    match (role, c.restart_policy.as_deref()) {
        (_, None) => {}
        (Role::Regular, Some(_)) => e.forbidden(
            &p.child("restartPolicy"),
            "may not be set for non-init containers",
        ),
        (_, Some(policy)) => e.one_of(&p.child("restartPolicy"), policy, &["Always"]),
    }

    ports(e, c, p, host_ports);
    for (i, env) in c.env.iter().flatten().enumerate() {
        env_var(e, env, &p.child("env").index(i));
    }
    for (i, from) in c.env_from.iter().flatten().enumerate() {
        env_from(e, from, &p.child("envFrom").index(i));
    }
    volume_mounts(
        e,
        c.volume_mounts.as_deref().unwrap_or_default(),
        &p.child("volumeMounts"),
        volumes,
    );
    if c.volume_devices.as_ref().is_some_and(|d| !d.is_empty()) {
        e.not_supported(
            &p.child("volumeDevices"),
            "raw block volumes are not supported by outpost".into(),
        );
    }
    if let Some(resources) = c.resources.as_ref() {
        self::resources(e, resources, &p.child("resources"));
    }
    let probes = [
        ("livenessProbe", &c.liveness_probe, true),
        ("readinessProbe", &c.readiness_probe, false),
        ("startupProbe", &c.startup_probe, true),
    ];
    for (field, probe, success_is_one) in probes {
        let Some(probe) = probe else { continue };
        let p = p.child(field);
        match role {
            Role::Init => e.forbidden(
                &p,
                "may not be set for init containers without restartPolicy=Always",
            ),
            _ => self::probe(e, probe, &p, success_is_one),
        }
    }
    if let Some(lifecycle) = c.lifecycle.as_ref() {
        let p = p.child("lifecycle");
        if role == Role::Init && (lifecycle.post_start.is_some() || lifecycle.pre_stop.is_some()) {
            e.forbidden(
                &p,
                "may not be set for init containers without restartPolicy=Always",
            );
        }
        for (field, handler) in [
            ("postStart", &lifecycle.post_start),
            ("preStop", &lifecycle.pre_stop),
        ] {
            if let Some(handler) = handler {
                lifecycle_handler(e, handler, &p.child(field));
            }
        }
    }
    if let Some(sc) = c.security_context.as_ref() {
        security_context(e, sc, &p.child("securityContext"));
    }
}

fn ports(e: &mut Errors, c: &Container, p: &Path, host_ports: &mut HashSet<String>) {
    let mut names = HashSet::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let p = p.child("ports").index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let whys = names::port_name(name);
            if !whys.is_empty() {
                e.invalid_all(&p.child("name"), name, whys);
            } else if !names.insert(name) {
                e.duplicate(&p.child("name"), name);
            }
        }
        port_number(e, &p.child("containerPort"), port.container_port);
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        e.one_of(&p.child("protocol"), protocol, &["TCP", "UDP", "SCTP"]);
        if let Some(host) = port.host_port.filter(|h| *h != 0) {
            port_number(e, &p.child("hostPort"), host);
            let key = format!("{host}/{protocol}");
            if !host_ports.insert(key.clone()) {
                e.duplicate(&p.child("hostPort"), &key);
            }
        }
    }
}

fn port_number(e: &mut Errors, p: &Path, port: i32) {
    if !(1..=65535).contains(&port) {
        e.invalid_number(p, port.into(), "must be between 1 and 65535, inclusive");
    }
}

/// A probe or hook port: a number, or the name of a container port.
fn port_ref(e: &mut Errors, p: &Path, port: &IntOrString) {
    match port {
        IntOrString::Int(n) => port_number(e, p, *n),
        IntOrString::String(name) => e.invalid_all(p, name, names::port_name(name)),
    }
}

const FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const RESOURCE_FIELDS: &[&str] = &[
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
];

fn env_var(e: &mut Errors, env: &EnvVar, p: &Path) {
    if env.name.is_empty() {
        e.required(&p.child("name"));
    } else {
        e.invalid_all(&p.child("name"), &env.name, names::env_var_name(&env.name));
    }
    let Some(from) = env.value_from.as_ref() else {
        return;
    };
    let p = p.child("valueFrom");
    let sources = [
        from.field_ref.is_some(),
        from.resource_field_ref.is_some(),
        from.config_map_key_ref.is_some(),
        from.secret_key_ref.is_some(),
        from.file_key_ref.is_some(),
    ];
    match sources.iter().filter(|s| **s).count() {
        0 => e.required_because(&p, "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"),
        1 => {}
        _ => e.forbidden(&p, "may not have more than one field specified at a time"),
    }
    if env.value.as_deref().is_some_and(|v| !v.is_empty()) {
        e.forbidden(&p, "may not be specified when `value` is not empty");
    }
    if let Some(field) = from.field_ref.as_ref() {
        let p = p.child("fieldRef");
        let api_version = field.api_version.as_deref().unwrap_or("v1");
        e.one_of(&p.child("apiVersion"), api_version, &["v1"]);
        let path = field.field_path.as_str();
        if path.is_empty() {
            e.required(&p.child("fieldPath"));
        } else if let Some(key) =
            subscript(path, "metadata.labels").or_else(|| subscript(path, "metadata.annotations"))
        {
            e.invalid_all(
                &p.child("fieldPath"),
                key,
                names::qualified_name(&key.to_lowercase()),
            );
        } else {
            let mut supported = FIELD_PATHS.to_vec();
            supported.extend(["metadata.labels['<KEY>']", "metadata.annotations['<KEY>']"]);
            e.one_of(&p.child("fieldPath"), path, &supported);
        }
    }
    if let Some(field) = from.resource_field_ref.as_ref() {
        let p = p.child("resourceFieldRef");
        if field.resource.is_empty() {
            e.required(&p.child("resource"));
        } else {
            e.one_of(&p.child("resource"), &field.resource, RESOURCE_FIELDS);
        }
        if let Some(divisor) = field.divisor.as_ref() {
            let resource = if field.resource.ends_with(".cpu") {
                "cpu"
            } else {
                "memory"
            };
            quantity(e, &p.child("divisor"), resource, divisor);
        }
    }
    if let Some(key) = from.config_map_key_ref.as_ref() {
        key_selector(e, &p.child("configMapKeyRef"), &key.name, &key.key);
    }
    if let Some(key) = from.secret_key_ref.as_ref() {
        key_selector(e, &p.child("secretKeyRef"), &key.name, &key.key);
    }
    if from.file_key_ref.is_some() {
        e.not_supported(
            &p.child("fileKeyRef"),
            "fileKeyRef is not supported by outpost".into(),
        );
    }
}

/// `metadata.labels['app']` → `app`.
fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)?
        .strip_prefix("['")?
        .strip_suffix("']")
}

fn key_selector(e: &mut Errors, p: &Path, name: &str, key: &str) {
    if name.is_empty() {
        e.required(&p.child("name"));
    } else {
        e.invalid_all(&p.child("name"), name, names::dns1123_subdomain(name));
    }
    if key.is_empty() {
        e.required(&p.child("key"));
    } else {
        e.invalid_all(&p.child("key"), key, names::config_map_key(key));
    }
}

fn env_from(e: &mut Errors, from: &EnvFromSource, p: &Path) {
    match (from.config_map_ref.as_ref(), from.secret_ref.as_ref()) {
        (None, None) => e.required_because(p, "must specify one of: `configMapRef` or `secretRef`"),
        (Some(_), Some(_)) => {
            e.forbidden(p, "may not have more than one field specified at a time")
        }
        (Some(cm), None) => source_name(e, &p.child("configMapRef").child("name"), &cm.name),
        (None, Some(secret)) => source_name(e, &p.child("secretRef").child("name"), &secret.name),
    }
    if let Some(prefix) = from.prefix.as_deref().filter(|s| !s.is_empty()) {
        e.invalid_all(&p.child("prefix"), prefix, names::env_var_name(prefix));
    }
}

fn source_name(e: &mut Errors, p: &Path, name: &str) {
    if name.is_empty() {
        e.required(p);
    } else {
        e.invalid_all(p, name, names::dns1123_subdomain(name));
    }
}

fn volume_mounts(e: &mut Errors, mounts: &[VolumeMount], p: &Path, volumes: &HashSet<&str>) {
    let mut paths = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let p = p.index(i);
        if m.name.is_empty() {
            e.required(&p.child("name"));
        } else if !volumes.contains(m.name.as_str()) {
            e.not_found(&p.child("name"), &m.name);
        }
        if m.mount_path.is_empty() {
            e.required(&p.child("mountPath"));
        } else if !m.mount_path.starts_with('/') {
            e.invalid(
                &p.child("mountPath"),
                &m.mount_path,
                "must be an absolute path",
            );
        } else if !paths.insert(m.mount_path.as_str()) {
            e.invalid(&p.child("mountPath"), &m.mount_path, "must be unique");
        }
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            relative_path(e, &p.child("subPath"), sub);
        }
        if m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty()) {
            e.not_supported(
                &p.child("subPathExpr"),
                "subPathExpr is not supported by outpost: use subPath".into(),
            );
        }
        if let Some(propagation) = m.mount_propagation.as_deref() {
            e.one_of(
                &p.child("mountPropagation"),
                propagation,
                &["None", "HostToContainer", "Bidirectional"],
            );
        }
    }
}

/// Resource names a container may request without a domain prefix.
pub(super) fn standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

fn resources(e: &mut Errors, r: &ResourceRequirements, p: &Path) {
    let mut parsed = |field: &str,
                      list: &Option<
        BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| {
        let mut out = BTreeMap::new();
        for (name, q) in list.iter().flatten() {
            let at = p.child(field).key(name);
            if name.contains('/') {
                e.invalid_all(&at, name, names::qualified_name(name));
            } else if !standard_container_resource(name) {
                e.invalid(&at, name, "must be a standard resource for containers");
            }
            if let Some(v) = quantity(e, &at, name, q) {
                out.insert(name.clone(), (v, q.0.clone()));
            }
        }
        out
    };
    let limits = parsed("limits", &r.limits);
    let requests = parsed("requests", &r.requests);
    for (name, (request, request_text)) in &requests {
        if let Some((limit, limit_text)) = limits.get(name) {
            if request > limit {
                let why = format!("must be less than or equal to {name} limit of {limit_text}");
                e.invalid(&p.child("requests"), request_text, &why);
            }
        }
    }
    if r.claims.as_ref().is_some_and(|c| !c.is_empty()) {
        e.not_supported(
            &p.child("claims"),
            "dynamic resource allocation is not supported by outpost".into(),
        );
    }
}

fn probe(e: &mut Errors, probe: &Probe, p: &Path, success_is_one: bool) {
    let handlers = [
        probe.exec.is_some(),
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.grpc.is_some(),
    ];
    match handlers.iter().filter(|h| **h).count() {
        0 => e.required_because(p, "must specify a handler type"),
        1 => {}
        _ => e.forbidden(p, "may not specify more than 1 handler type"),
    }
    if let Some(exec) = probe.exec.as_ref() {
        if exec.command.as_ref().is_none_or(|c| c.is_empty()) {
            e.required(&p.child("exec").child("command"));
        }
    }
    if let Some(http) = probe.http_get.as_ref() {
        http_get(e, http, &p.child("httpGet"));
    }
    if let Some(tcp) = probe.tcp_socket.as_ref() {
        port_ref(e, &p.child("tcpSocket").child("port"), &tcp.port);
    }
    if probe.grpc.is_some() {
        e.not_supported(
            &p.child("grpc"),
            "grpc probes are not supported by outpost: use exec, httpGet or tcpSocket".into(),
        );
    }
    if let Some(delay) = probe.initial_delay_seconds.filter(|d| *d < 0) {
        e.invalid_number(
            &p.child("initialDelaySeconds"),
            delay.into(),
            "must be greater than or equal to 0",
        );
    }
    let positive = [
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ];
    for (field, value) in positive {
        if let Some(v) = value.filter(|v| *v < 1) {
            e.invalid_number(&p.child(field), v.into(), "must be greater than zero");
        }
    }
    if let Some(v) = probe.success_threshold.filter(|v| success_is_one && *v > 1) {
        e.invalid_number(&p.child("successThreshold"), v.into(), "must be 1");
    }
    if let Some(v) = probe.termination_grace_period_seconds.filter(|v| *v < 1) {
        e.invalid_number(
            &p.child("terminationGracePeriodSeconds"),
            v,
            "must be greater than zero",
        );
    }
}

fn http_get(e: &mut Errors, http: &HTTPGetAction, p: &Path) {
    port_ref(e, &p.child("port"), &http.port);
    if let Some(scheme) = http.scheme.as_deref() {
        e.one_of(&p.child("scheme"), scheme, &["HTTP", "HTTPS"]);
    }
    for (i, header) in http.http_headers.iter().flatten().enumerate() {
        let at = p.child("httpHeaders").index(i).child("name");
        e.invalid_all(&at, &header.name, names::http_header_name(&header.name));
    }
}

fn lifecycle_handler(e: &mut Errors, handler: &LifecycleHandler, p: &Path) {
    let handlers = [
        handler.exec.is_some(),
        handler.http_get.is_some(),
        handler.tcp_socket.is_some(),
        handler.sleep.is_some(),
    ];
    match handlers.iter().filter(|h| **h).count() {
        0 => e.required_because(p, "must specify a handler type"),
        1 => {}
        _ => e.forbidden(p, "may not specify more than 1 handler type"),
    }
    if let Some(exec) = handler.exec.as_ref() {
        if exec.command.as_ref().is_none_or(|c| c.is_empty()) {
            e.required(&p.child("exec").child("command"));
        }
    }
    if let Some(http) = handler.http_get.as_ref() {
        http_get(e, http, &p.child("httpGet"));
    }
    if let Some(tcp) = handler.tcp_socket.as_ref() {
        port_ref(e, &p.child("tcpSocket").child("port"), &tcp.port);
    }
    if let Some(sleep) = handler.sleep.as_ref().filter(|s| s.seconds < 0) {
        e.invalid_number(
            &p.child("sleep").child("seconds"),
            sleep.seconds,
            "must be greater than or equal to 0",
        );
    }
}

/// IsValidUserID / IsValidGroupID.
fn id(e: &mut Errors, p: &Path, value: Option<i64>) {
    if let Some(v) = value.filter(|v| !(0..=i64::from(u32::MAX)).contains(v)) {
        e.invalid_number(p, v, "must be between 0 and 4294967295, inclusive");
    }
}

fn pod_security_context(e: &mut Errors, sc: &PodSecurityContext, p: &Path) {
    id(e, &p.child("runAsUser"), sc.run_as_user);
    id(e, &p.child("runAsGroup"), sc.run_as_group);
    id(e, &p.child("fsGroup"), sc.fs_group);
    for (i, group) in sc.supplemental_groups.iter().flatten().enumerate() {
        id(e, &p.child("supplementalGroups").index(i), Some(*group));
    }
    if let Some(profile) = sc.seccomp_profile.as_ref() {
        seccomp(
            e,
            &p.child("seccompProfile"),
            &profile.type_,
            profile.localhost_profile.as_deref(),
        );
    }
}

fn security_context(e: &mut Errors, sc: &SecurityContext, p: &Path) {
    id(e, &p.child("runAsUser"), sc.run_as_user);
    id(e, &p.child("runAsGroup"), sc.run_as_group);
    if let Some(caps) = sc.capabilities.as_ref() {
        capabilities(e, caps, &p.child("capabilities"));
    }
    if sc.privileged == Some(true) && sc.allow_privilege_escalation == Some(false) {
        e.invalid(
            &p.child("allowPrivilegeEscalation"),
            "false",
            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        );
    }
    if let Some(mount) = sc.proc_mount.as_deref() {
        e.one_of(&p.child("procMount"), mount, &["Default", "Unmasked"]);
    }
    if let Some(profile) = sc.seccomp_profile.as_ref() {
        seccomp(
            e,
            &p.child("seccompProfile"),
            &profile.type_,
            profile.localhost_profile.as_deref(),
        );
    }
}

fn seccomp(e: &mut Errors, p: &Path, kind: &str, localhost: Option<&str>) {
    e.one_of(
        &p.child("type"),
        kind,
        &["RuntimeDefault", "Unconfined", "Localhost"],
    );
    match (kind, localhost.filter(|l| !l.is_empty())) {
        ("Localhost", None) => e.required(&p.child("localhostProfile")),
        ("Localhost", Some(_)) | (_, None) => {}
        (_, Some(_)) => e.forbidden(
            &p.child("localhostProfile"),
            "can only be set if type is \"Localhost\"",
        ),
    }
}

/// Linux capabilities, without their `CAP_` prefix.
const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Names runtimes accept: `NET_ADMIN`, `CAP_NET_ADMIN` (any case), or `ALL`.
fn capabilities(e: &mut Errors, caps: &Capabilities, p: &Path) {
    for (field, list) in [("add", &caps.add), ("drop", &caps.drop)] {
        for (i, name) in list.iter().flatten().enumerate() {
            let upper = name.to_ascii_uppercase();
            let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
            if bare != "ALL" && !CAPABILITIES.contains(&bare) {
                e.invalid(
                    &p.child(field).index(i),
                    name,
                    "unknown capability (e.g. 'NET_ADMIN', 'SYS_TIME' or 'ALL')",
                );
            }
        }
    }
}
