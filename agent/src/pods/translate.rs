//! From a Kubernetes container to the runtime's [`ContainerSpec`], with the
//! kubelet's semantics: environment (`env`, `envFrom`, the downward API,
//! `$(VAR)` expansion), command and args, the merged security context,
//! resources, the sandbox's namespaces and the volume mounts.
//!
//! Pure: no I/O. What the container may refer to (config maps, secrets, the
//! node) comes in a [`Lookup`]; the volumes are already on disk
//! ([`PreparedVolumes`], from `volumes::prepare`). Problems are returned as a
//! [`ConfigError`] carrying the reason and message the kubelet would show.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ObjectFieldSelector, Pod, PodSpec, ResourceFieldSelector, Secret,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use outpost_runtime::container::spec::{
    ContainerSpec, Mount, MountKind, Namespace, NamespaceKind, Resources,
};

use crate::pods::volumes::PreparedVolumes;
use crate::quantity::{parse_bytes, parse_millicpu};

/// Waiting reason of a container whose configuration cannot be built (a
/// missing config map, secret or key, a bad field reference, …).
pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";

/// Event reason of a volume that cannot be set up; the pod's containers stay
/// Waiting with reason `ContainerCreating` meanwhile, as with the kubelet.
pub const FAILED_MOUNT: &str = "FailedMount";

/// The namespace of a pod without one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Namespace files of this (the supervisor's) process: joining them by path
/// is how a container shares the host's namespace, because the runtime
/// creates every default namespace that is not joined by path. `self` rather
/// than PID 1 so an agent running inside a test's network namespace treats
/// that namespace as the host.
const HOST_NET_NS: &str = "/proc/self/ns/net";
const HOST_UTS_NS: &str = "/proc/self/ns/uts";
const HOST_IPC_NS: &str = "/proc/self/ns/ipc";
const HOST_PID_NS: &str = "/proc/self/ns/pid";

/// Longest hostname (kubelet `truncatePodHostnameIfNeeded`).
const HOSTNAME_MAX_LEN: usize = 63;

/// What env and volume sources may refer to. Objects are looked up in the
/// pod's own namespace.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    /// Config maps by (namespace, name).
    pub config_maps: &'a BTreeMap<(String, String), ConfigMap>,
    /// Secrets by (namespace, name).
    pub secrets: &'a BTreeMap<(String, String), Secret>,
    /// This node's name (`spec.nodeName` when the pod does not say).
    pub node_name: &'a str,
    /// The node's allocatable CPU (millicores) and memory (bytes): what the
    /// downward API reports for limits a container does not set, and the
    /// default size of a memory-backed emptyDir.
    pub node_capacity: (u64, u64),
}

/// What the pod worker knows about the running pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRuntimeInfo {
    /// The pod's IP (`status.podIP`); the node's IP for hostNetwork pods.
    pub pod_ip: Option<String>,
    /// The node's IP (`status.hostIP`).
    pub host_ip: Option<String>,
    /// The cluster DNS server and domain (`ClusterFirst` pods resolve through it).
    pub dns: Option<ClusterDns>,
}

/// The cluster's DNS service, as the kubelet's `--cluster-dns` and `--cluster-domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    pub server: String,
    pub domain: String,
}

/// Why a container cannot be created yet, the way the kubelet says it: the
/// container stays Waiting with this reason and message (or, for
/// [`FAILED_MOUNT`], the pod's containers stay `ContainerCreating` and this is
/// the event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// [`CREATE_CONTAINER_CONFIG_ERROR`] or [`FAILED_MOUNT`].
    pub reason: &'static str,
    /// What is wrong, naming the object, key or field.
    pub message: String,
}

impl ConfigError {
    /// A [`CREATE_CONTAINER_CONFIG_ERROR`].
    pub fn config(message: impl Into<String>) -> Self {
        ConfigError {
            reason: CREATE_CONTAINER_CONFIG_ERROR,
            message: message.into(),
        }
    }

    /// A [`FAILED_MOUNT`] of `volume`, worded as the kubelet's event.
    pub fn mount(volume: &str, message: impl fmt::Display) -> Self {
        ConfigError {
            reason: FAILED_MOUNT,
            message: format!("MountVolume.SetUp failed for volume {volume:?} : {message}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Namespaces of the pod sandbox that the containers join, by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxNamespaces {
    /// The pod's network namespace; `None` for hostNetwork (the host's).
    pub network: Option<PathBuf>,
    /// The pod's IPC namespace (ignored for hostIPC pods: the host's).
    pub ipc: PathBuf,
    /// The pod's UTS namespace; `None` for hostNetwork (the host's).
    pub uts: Option<PathBuf>,
}

/// A container translated for the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// What to hand to the runtime.
    pub spec: ContainerSpec,
    /// Things the kubelet reports as Warning events (reason
    /// `InvalidEnvironmentVariableNames`) without failing the container.
    pub warnings: Vec<String>,
    /// `runAsNonRoot` without `runAsUser`: the image's user must be checked
    /// before the container is created.
    pub non_root: Option<NonRootCheck>,
}

/// The kubelet's `verifyRunAsNonRoot` against the image's user, for a
/// container with `runAsNonRoot: true` and no `runAsUser`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonRootCheck {
    pod: String,
    container: String,
}

impl NonRootCheck {
    /// Checks the image config's `User` (`1000`, `1000:1000`, `nobody`; none
    /// means root).
    pub fn verify(&self, image_user: Option<&str>) -> Result<(), ConfigError> {
        let user = image_user
            .unwrap_or("")
            .split(':')
            .next()
            .unwrap_or("")
            .trim();
        let (pod, container) = (&self.pod, &self.container);
        if user.is_empty() || user.parse::<u32>() == Ok(0) {
            return Err(ConfigError::config(format!(
                "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})"
            )));
        }
        if user.parse::<u32>().is_err() {
            return Err(ConfigError::config(format!(
                "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod:?}, container: {container})"
            )));
        }
        Ok(())
    }
}

/// Builds the runtime description of `container` (a regular or init container
/// of `pod`).
pub fn container_spec(
    pod: &Pod,
    container: &Container,
    lookup: &Lookup,
    info: &PodRuntimeInfo,
    sandbox: &SandboxNamespaces,
    volumes: &PreparedVolumes,
    cgroups_path: String,
) -> Result<Translated, ConfigError> {
    let spec = pod_spec(pod);
    let Env { vars, warnings } = environment(pod, container, lookup, info)?;

    let (command, args) = command_and_args(container, &vars);
    let security = security(pod, container)?;
    let mounts = mounts(
        container,
        volumes,
        security.privileged,
        security.readonly_rootfs,
    )?;

    let host_network = spec.is_some_and(|s| s.host_network == Some(true));
    let mut namespaces = vec![
        Namespace {
            kind: NamespaceKind::Network,
            path: Some(
                sandbox
                    .network
                    .clone()
                    .unwrap_or_else(|| HOST_NET_NS.into()),
            ),
        },
        Namespace {
            kind: NamespaceKind::Uts,
            path: Some(sandbox.uts.clone().unwrap_or_else(|| HOST_UTS_NS.into())),
        },
        Namespace {
            kind: NamespaceKind::Ipc,
            path: Some(if spec.is_some_and(|s| s.host_ipc == Some(true)) {
                HOST_IPC_NS.into()
            } else {
                sandbox.ipc.clone()
            }),
        },
    ];
    // Own pid and mount namespaces otherwise (the runtime's defaults).
    if spec.is_some_and(|s| s.host_pid == Some(true)) {
        namespaces.push(Namespace {
            kind: NamespaceKind::Pid,
            path: Some(HOST_PID_NS.into()),
        });
    }

    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod_namespace(pod);
    let mut annotations = BTreeMap::from([
        ("io.kubernetes.pod.name".to_owned(), pod_name.clone()),
        (
            "io.kubernetes.pod.namespace".to_owned(),
            namespace.to_owned(),
        ),
        (
            "io.kubernetes.container.name".to_owned(),
            container.name.clone(),
        ),
    ]);
    if let Some(uid) = &pod.metadata.uid {
        annotations.insert("io.kubernetes.pod.uid".to_owned(), uid.clone());
    }

    let non_root = security.needs_image_check.then(|| NonRootCheck {
        pod: format!("{pod_name}_{namespace}"),
        container: container.name.clone(),
    });

    Ok(Translated {
        spec: ContainerSpec {
            command,
            args,
            env: vars,
            working_dir: container.working_dir.clone().filter(|w| !w.is_empty()),
            user: security.user,
            group: security.group,
            supplemental_groups: security.supplemental_groups,
            privileged: security.privileged,
            capabilities_add: security.capabilities_add,
            capabilities_drop: security.capabilities_drop,
            allow_privilege_escalation: security.allow_privilege_escalation,
            readonly_rootfs: security.readonly_rootfs,
            resources: resources(container)?,
            mounts,
            namespaces,
            // A hostNetwork pod has the node's hostname (and a joined UTS
            // namespace never gets a hostname set anyway).
            hostname: (!host_network).then(|| pod_hostname(pod)),
            cgroups_path,
            terminal: container.tty == Some(true),
            annotations,
        },
        warnings,
        non_root,
    })
}

/// Kubernetes `$(VAR)` expansion (the kubelet's forked `expansion.Expand`):
/// `$(NAME)` is replaced by `vars(NAME)` when that is known and left as is
/// otherwise, `$$` is a literal `$`, and anything else is copied.
pub fn expand(input: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            // How many bytes after the `$` the expression used.
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match vars(name) {
                            Some(value) => out.push_str(&value),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    // Incomplete reference: copy "$(" and go on after it.
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                // A `$` that starts no expression is kept; the character after
                // it is copied from the checkpoint.
                _ => {
                    out.push('$');
                    0
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    out
}

/// The pod's namespace (`default` when unset).
pub fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
}

/// The hostname of a pod not on the host network: `spec.hostname` or the pod
/// name, cut to 63 characters without a trailing `-` or `.`.
pub fn pod_hostname(pod: &Pod) -> String {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let hostname = pod_spec(pod)
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
        .unwrap_or(name);
    if hostname.len() <= HOSTNAME_MAX_LEN {
        return hostname.to_owned();
    }
    let mut end = HOSTNAME_MAX_LEN;
    while !hostname.is_char_boundary(end) {
        end -= 1;
    }
    hostname[..end].trim_end_matches(['-', '.']).to_owned()
}

/// The pod's DNS domain when it sets `subdomain`:
/// `<subdomain>.<namespace>.svc.<cluster domain>`.
pub fn pod_host_domain(pod: &Pod, cluster_domain: &str) -> Option<String> {
    let subdomain = pod_spec(pod)?
        .subdomain
        .as_deref()
        .filter(|s| !s.is_empty())?;
    Some(format!(
        "{subdomain}.{}.svc.{cluster_domain}",
        pod_namespace(pod)
    ))
}

fn pod_spec(pod: &Pod) -> Option<&PodSpec> {
    pod.spec.as_ref()
}

/// Every container of the pod that runs through the runtime: init containers
/// first, then regular ones.
pub(crate) fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod_spec(pod);
    spec.and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.map(|s| s.containers.iter()).into_iter().flatten())
}

/// A container's environment, in order, and the warnings met building it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Env {
    pub vars: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

impl Env {
    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name`, in place when it is already there (so an `env` entry that
    /// overrides an `envFrom` one keeps its position).
    fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.vars.push((name.to_owned(), value)),
        }
    }
}

/// The kubelet's `makeEnvironmentVariables`: `envFrom` first, then `env`
/// entries in order (overriding), each `value` expanded against the
/// variables defined before it. Service variables are not added yet.
pub(crate) fn environment(
    pod: &Pod,
    container: &Container,
    lookup: &Lookup,
    info: &PodRuntimeInfo,
) -> Result<Env, ConfigError> {
    let namespace = pod_namespace(pod);
    let mut env = Env::default();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (kind, name, data) = if let Some(r) = &from.config_map_ref {
            match config_map(lookup, namespace, &r.name) {
                Some(cm) => ("configMap", &r.name, config_map_strings(cm)),
                None if r.optional == Some(true) => continue,
                None => {
                    return Err(ConfigError::config(format!(
                        "configmap {:?} not found",
                        r.name
                    )))
                }
            }
        } else if let Some(r) = &from.secret_ref {
            match secret(lookup, namespace, &r.name) {
                Some(s) => ("secret", &r.name, secret_strings(s)),
                None if r.optional == Some(true) => continue,
                None => {
                    return Err(ConfigError::config(format!(
                        "secret {:?} not found",
                        r.name
                    )))
                }
            }
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (key, value) in data {
            let key = format!("{prefix}{key}");
            if is_env_var_name(&key) {
                env.set(&key, value);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            env.warnings.push(format!(
                "Keys [{}] from the EnvFrom {kind} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }

    for var in container.env.iter().flatten() {
        let value = var.value.as_deref().unwrap_or("");
        let value = if !value.is_empty() {
            expand(value, &|name| env.get(name).map(str::to_owned))
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                field_value(pod, field, lookup, info)?
            } else if let Some(field) = &from.resource_field_ref {
                resource_value(pod, container, field, lookup)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                let Some(cm) = config_map(lookup, namespace, &r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(ConfigError::config(format!(
                        "configmap {:?} not found",
                        r.name
                    )));
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(ConfigError::config(format!(
                            "couldn't find key {} in ConfigMap {namespace}/{}",
                            r.key, r.name
                        )))
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                let Some(s) = secret(lookup, namespace, &r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(ConfigError::config(format!(
                        "secret {:?} not found",
                        r.name
                    )));
                };
                match secret_value(s, &r.key) {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(ConfigError::config(format!(
                            "couldn't find key {} in Secret {namespace}/{}",
                            r.key, r.name
                        )))
                    }
                }
            } else if from.file_key_ref.is_some() {
                return Err(ConfigError::config(format!(
                    "env var {:?}: fileKeyRef is not supported",
                    var.name
                )));
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(&var.name, value);
    }
    Ok(env)
}

/// An `envFrom` key the runtime can pass on: Kubernetes 1.34's relaxed rule
/// (RelaxedEnvironmentVariableValidation): printable ASCII except `=`.
fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

fn config_map<'a>(lookup: &'a Lookup, namespace: &str, name: &str) -> Option<&'a ConfigMap> {
    lookup
        .config_maps
        .get(&(namespace.to_owned(), name.to_owned()))
}

fn secret<'a>(lookup: &'a Lookup, namespace: &str, name: &str) -> Option<&'a Secret> {
    lookup.secrets.get(&(namespace.to_owned(), name.to_owned()))
}

/// A config map's `data` (what env sources see; `binaryData` is for volumes).
fn config_map_strings(cm: &ConfigMap) -> Vec<(String, String)> {
    cm.data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A secret's keys and values; `stringData` (merged into `data` by an API
/// server, which there is none of here) wins over `data`.
pub(crate) fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

fn secret_value(s: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = s.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone().into_bytes());
    }
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.clone())
}

fn secret_strings(s: &Secret) -> Vec<(String, String)> {
    secret_data(s)
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// The downward API's `fieldRef` (kubelet `podFieldSelectorRuntimeValue`).
fn field_value(
    pod: &Pod,
    field: &ObjectFieldSelector,
    lookup: &Lookup,
    info: &PodRuntimeInfo,
) -> Result<String, ConfigError> {
    let version = field.api_version.as_deref().unwrap_or("v1");
    if version != "v1" {
        return Err(ConfigError::config(format!(
            "unsupported pod version: {version}"
        )));
    }
    let path = field.field_path.as_str();
    let meta = &pod.metadata;
    if let Some((base, key)) = split_subscript(path) {
        let map = match base {
            "metadata.annotations" => &meta.annotations,
            "metadata.labels" => &meta.labels,
            _ => {
                return Err(ConfigError::config(format!(
                    "field label does not support subscript: {path}"
                )))
            }
        };
        return Ok(map
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let spec = pod_spec(pod);
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => pod_namespace(pod).to_owned(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" | "spec.host" => spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| lookup.node_name.to_owned()),
        // The ServiceAccount admission plugin sets "default" on an API server.
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_owned()),
        "status.podIP" | "status.podIPs" => info.pod_ip.clone().unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => info.host_ip.clone().unwrap_or_default(),
        // Valid field labels the kubelet cannot resolve for env vars either.
        "spec.restartPolicy" | "spec.schedulerName" | "status.phase" => {
            return Err(ConfigError::config(format!(
                "unsupported fieldPath: {path}"
            )))
        }
        _ => {
            return Err(ConfigError::config(format!(
                "field label not supported: {path}"
            )))
        }
    };
    Ok(value)
}

/// `metadata.labels['key']` → (`metadata.labels`, `key`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, key))
}

/// `key="value"` lines, sorted by key (the downward API's `FormatMap`).
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A double-quoted string with Go's `%q` escapes for the common cases.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The downward API's `resourceFieldRef` (kubelet
/// `containerResourceRuntimeValue`): limits a container does not set are the
/// node's allocatable, requests it does not set are its limits (the API
/// server's defaulting) or zero. The value is rounded up in `divisor` units.
fn resource_value(
    pod: &Pod,
    container: &Container,
    field: &ResourceFieldSelector,
    lookup: &Lookup,
) -> Result<String, ConfigError> {
    let target = match field.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => container,
        Some(name) => all_containers(pod)
            .find(|c| c.name == name)
            .ok_or_else(|| ConfigError::config(format!("container {name} not found")))?,
    };
    let resources = target.resources.as_ref();
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let divisor = field.divisor.as_ref().map(|q| q.0.as_str());
    let bad = |e: String| ConfigError::config(format!("resourceFieldRef {}: {e}", field.resource));
    // cpu in millicores (divisor default 1 core), memory in bytes (divisor default 1 byte).
    type Parse = fn(&str) -> Result<u64, String>;
    let (resource, parse, capacity, unit): (&str, Parse, u64, u64) = match field.resource.as_str() {
        "limits.cpu" | "requests.cpu" => ("cpu", parse_millicpu, lookup.node_capacity.0, 1000),
        "limits.memory" | "requests.memory" => ("memory", parse_bytes, lookup.node_capacity.1, 1),
        other => {
            return Err(ConfigError::config(format!(
                "unsupported container resource : {other}"
            )))
        }
    };
    let limit = quantity(limits, resource)
        .map(parse)
        .transpose()
        .map_err(bad)?;
    // Limits default to the node's capacity; requests to the limit.
    let value = if field.resource.starts_with("limits.") {
        limit.unwrap_or(capacity)
    } else {
        quantity(requests, resource)
            .map(parse)
            .transpose()
            .map_err(bad)?
            .or(limit)
            .unwrap_or(0)
    };
    let divisor = divisor
        .map(parse)
        .transpose()
        .map_err(bad)?
        .filter(|&d| d > 0)
        .unwrap_or(unit);
    Ok(value.div_ceil(divisor).to_string())
}

/// Command and args with `$(VAR)` expanded against the container's
/// environment; empty lists count as unset (the CRI cannot tell them apart).
fn command_and_args(
    container: &Container,
    env: &[(String, String)],
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let vars = |name: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let expand_all = |list: &Option<Vec<String>>| {
        list.as_ref()
            .filter(|l| !l.is_empty())
            .map(|l| l.iter().map(|s| expand(s, &vars)).collect())
    };
    (expand_all(&container.command), expand_all(&container.args))
}

/// `subPathExpr` expanded against the container's environment; every
/// variable must be defined and non-empty (kubelet
/// `ExpandContainerVolumeMounts`).
pub(crate) fn expand_sub_path_expr(expr: &str, env: &[(String, String)]) -> Result<String, String> {
    let missing = RefCell::new(BTreeSet::new());
    let expanded = expand(expr, &|name| {
        let value = env
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if value.is_empty() {
            missing.borrow_mut().insert(name.to_owned());
        }
        Some(value)
    });
    let missing = missing.into_inner();
    if missing.is_empty() {
        Ok(expanded)
    } else {
        Err(format!(
            "missing value for {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }
}

/// The sub path of a volume mount, checked as the kubelet does before it
/// touches the volume: relative, without `..`.
pub(crate) fn sub_path(
    mount: &VolumeMount,
    env: &[(String, String)],
) -> Option<Result<String, String>> {
    let expr = mount.sub_path_expr.as_deref().filter(|s| !s.is_empty());
    let path = match expr {
        Some(expr) => match expand_sub_path_expr(expr, env) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        },
        None => mount.sub_path.clone().filter(|s| !s.is_empty())?,
    };
    if path.is_empty() {
        return None;
    }
    if path.starts_with('/') {
        return Some(Err(format!(
            "error SubPath `{path}` must not be an absolute path"
        )));
    }
    if Path::new(&path)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Some(Err(format!(
            "unable to provision SubPath `{path}`: must not contain '..'"
        )));
    }
    Some(Ok(path))
}

/// The security context the container runs with, pod-level settings merged
/// under the container's (kubelet `DetermineEffectiveSecurityContext`).
#[derive(Debug, Default)]
struct Security {
    user: Option<u32>,
    group: Option<u32>,
    supplemental_groups: Vec<u32>,
    privileged: bool,
    capabilities_add: Vec<String>,
    capabilities_drop: Vec<String>,
    allow_privilege_escalation: bool,
    readonly_rootfs: bool,
    needs_image_check: bool,
}

fn security(pod: &Pod, container: &Container) -> Result<Security, ConfigError> {
    let pod_sc = pod_spec(pod).and_then(|s| s.security_context.as_ref());
    let sc = container.security_context.as_ref();
    let id = |what: &str, v: Option<i64>| -> Result<Option<u32>, ConfigError> {
        v.map(|v| {
            u32::try_from(v).map_err(|_| {
                ConfigError::config(format!(
                    "{what} {v} of container {:?} is out of range: use 0 to 4294967295",
                    container.name
                ))
            })
        })
        .transpose()
    };
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or(pod_sc.and_then(|s| s.run_as_group));
    let run_as_non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(pod_sc.and_then(|s| s.run_as_non_root))
        == Some(true);

    let mut supplemental_groups = Vec::new();
    if let Some(fs_group) = id("fsGroup", pod_sc.and_then(|s| s.fs_group))? {
        supplemental_groups.push(fs_group);
    }
    for &g in pod_sc
        .and_then(|s| s.supplemental_groups.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(g) = id("supplemental group", Some(g))? {
            supplemental_groups.push(g);
        }
    }

    let user = id("runAsUser", run_as_user)?;
    let name = &container.name;
    if run_as_non_root && user == Some(0) {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        let namespace = pod_namespace(pod);
        return Err(ConfigError::config(format!(
            "container's runAsUser breaks non-root policy (pod: \"{pod_name}_{namespace}\", container: {name})"
        )));
    }
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    Ok(Security {
        user,
        group: id("runAsGroup", run_as_group)?,
        supplemental_groups,
        privileged: sc.and_then(|s| s.privileged) == Some(true),
        capabilities_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        capabilities_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        // Unset means allowed (no `no_new_privs`), as `AddNoNewPrivileges`.
        allow_privilege_escalation: sc.and_then(|s| s.allow_privilege_escalation) != Some(false),
        readonly_rootfs: sc.and_then(|s| s.read_only_root_filesystem) == Some(true),
        needs_image_check: run_as_non_root && user.is_none(),
    })
}

fn quantity<'a>(map: Option<&'a BTreeMap<String, Quantity>>, key: &str) -> Option<&'a str> {
    map.and_then(|m| m.get(key)).map(|q| q.0.as_str())
}

/// Requests and limits as the kubelet converts them for the CRI.
fn resources(container: &Container) -> Result<Resources, ConfigError> {
    let r = container.resources.as_ref();
    let limits = r.and_then(|r| r.limits.as_ref());
    let requests = r.and_then(|r| r.requests.as_ref());
    let bad = |what: &str, e: String| {
        ConfigError::config(format!(
            "resources.{what} of container {:?}: {e}",
            container.name
        ))
    };
    let cpu_request = quantity(requests, "cpu")
        .map(parse_millicpu)
        .transpose()
        .map_err(|e| bad("requests.cpu", e))?;
    let cpu_limit = quantity(limits, "cpu")
        .map(parse_millicpu)
        .transpose()
        .map_err(|e| bad("limits.cpu", e))?;
    let memory_limit = quantity(limits, "memory")
        .map(parse_bytes)
        .transpose()
        .map_err(|e| bad("limits.memory", e))?
        .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
    Ok(Resources::from_kubernetes(
        cpu_request,
        cpu_limit,
        memory_limit,
    ))
}

const ETC_HOSTS: &str = "/etc/hosts";
const ETC_HOSTNAME: &str = "/etc/hostname";
const ETC_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The container's volume mounts (kubelet `makeMounts`) and the pod's
/// `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` (the first from the
/// kubelet, the other two from containerd's CRI plugin), parents before
/// children.
fn mounts(
    container: &Container,
    volumes: &PreparedVolumes,
    privileged: bool,
    readonly_rootfs: bool,
) -> Result<Vec<Mount>, ConfigError> {
    let mut out = Vec::new();
    for (index, m) in container.volume_mounts.iter().flatten().enumerate() {
        let volume = volumes.by_name.get(&m.name).ok_or_else(|| {
            ConfigError::config(format!(
                "cannot find volume {:?} to mount into container {:?}",
                m.name, container.name
            ))
        })?;
        let has_sub_path = m.sub_path.as_deref().is_some_and(|s| !s.is_empty())
            || m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty());
        let source = if has_sub_path {
            match volumes.sub_paths.get(&(container.name.clone(), index)) {
                Some(Ok(path)) => path.clone(),
                Some(Err(message)) => return Err(ConfigError::config(message.clone())),
                None => {
                    return Err(ConfigError::config(format!(
                        "failed to prepare subPath for volumeMount {:?} of container {:?}",
                        m.name, container.name
                    )))
                }
            }
        } else {
            volume.path.clone()
        };
        let options = match m.mount_propagation.as_deref() {
            None | Some("None") => vec![],
            Some("HostToContainer") => vec!["rslave".to_owned()],
            Some("Bidirectional") if privileged => vec!["rshared".to_owned()],
            Some("Bidirectional") => {
                return Err(ConfigError::config(format!(
                    "volume mount {:?} of container {:?}: Bidirectional mount propagation is available only to privileged containers",
                    m.name, container.name
                )))
            }
            Some(other) => {
                return Err(ConfigError::config(format!(
                    "invalid MountPropagation mode: {other:?}"
                )))
            }
        };
        // The kubelet makes a relative mount path absolute.
        let destination = if m.mount_path.starts_with('/') {
            m.mount_path.clone()
        } else {
            format!("/{}", m.mount_path)
        };
        out.push(Mount {
            destination,
            source: source.to_string_lossy().into_owned(),
            kind: MountKind::Bind,
            readonly: m.read_only == Some(true) || volume.read_only,
            options,
        });
    }

    let taken = |dest: &str| {
        out.iter()
            .any(|m| m.destination.trim_end_matches('/') == dest)
    };
    let files = &volumes.pod_files;
    // /etc/hosts is writable (the kubelet's mount); /etc/hostname and
    // /etc/resolv.conf follow the root filesystem (containerd's).
    let extra = [
        (ETC_HOSTS, &files.hosts, false),
        (ETC_HOSTNAME, &files.hostname, readonly_rootfs),
        (ETC_RESOLV_CONF, &files.resolv_conf, readonly_rootfs),
    ];
    let extra: Vec<Mount> = extra
        .into_iter()
        .filter(|(dest, _, _)| !taken(dest))
        .map(|(dest, source, readonly)| Mount {
            destination: dest.to_owned(),
            source: source.to_string_lossy().into_owned(),
            kind: MountKind::Bind,
            readonly,
            options: vec![],
        })
        .collect();
    out.extend(extra);
    // Stable: parents are mounted before what is mounted inside them
    // (containerd's `orderedMounts`).
    out.sort_by_key(|m| {
        Path::new(&m.destination)
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count()
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::volumes::{PodFiles, PreparedVolume};
    use std::fmt::Write as _;

    fn pod(yaml: &str) -> Pod {
        let value: serde_json::Value = serde_yaml_ng::from_str(yaml).expect("test YAML parses");
        serde_json::from_value(value).expect("test YAML is a Pod")
    }

    type Objects = (
        BTreeMap<(String, String), ConfigMap>,
        BTreeMap<(String, String), Secret>,
    );

    fn objects() -> Objects {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "app-config", "namespace": "default"},
            "data": {"LOG_LEVEL": "debug", "MODE": "fast", "1BAD": "x", "a=b": "y"},
            "binaryData": {"blob": "AAE="}
        }))
        .expect("config map");
        let other_ns: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "elsewhere", "namespace": "other"},
            "data": {"K": "v"}
        }))
        .expect("config map");
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "default"},
            "data": {"PASSWORD": "czNjcjN0", "USER": "YWRtaW4="},
            "stringData": {"USER": "root"}
        }))
        .expect("secret");
        let key = |o: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            (
                o.namespace.clone().expect("namespace"),
                o.name.clone().expect("name"),
            )
        };
        (
            BTreeMap::from([
                (key(&cm.metadata), cm.clone()),
                (key(&other_ns.metadata), other_ns.clone()),
            ]),
            BTreeMap::from([(key(&secret.metadata), secret.clone())]),
        )
    }

    fn volumes(pod: &Pod) -> PreparedVolumes {
        let mut by_name = BTreeMap::new();
        for v in pod_spec(pod)
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
        {
            let read_only = v.config_map.is_some() || v.secret.is_some();
            by_name.insert(
                v.name.clone(),
                PreparedVolume {
                    path: PathBuf::from(format!("/pods/p1/volumes/{}", v.name)),
                    read_only,
                },
            );
        }
        let mut sub_paths = BTreeMap::new();
        let (cms, secrets) = objects();
        let lookup = lookup(&cms, &secrets);
        for c in all_containers(pod) {
            let env = environment(pod, c, &lookup, &info())
                .map(|e| e.vars)
                .unwrap_or_default();
            for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
                if let Some(sub) = sub_path(m, &env) {
                    sub_paths.insert(
                        (c.name.clone(), i),
                        sub.map(|s| {
                            PathBuf::from(format!(
                                "/pods/p1/volume-subpaths/{}/{}/{i}<{s}>",
                                m.name, c.name
                            ))
                        }),
                    );
                }
            }
        }
        PreparedVolumes {
            by_name,
            sub_paths,
            pod_files: PodFiles {
                hosts: "/pods/p1/etc-hosts".into(),
                resolv_conf: "/pods/p1/resolv.conf".into(),
                hostname: "/pods/p1/hostname".into(),
            },
        }
    }

    fn lookup<'a>(
        cms: &'a BTreeMap<(String, String), ConfigMap>,
        secrets: &'a BTreeMap<(String, String), Secret>,
    ) -> Lookup<'a> {
        Lookup {
            config_maps: cms,
            secrets,
            node_name: "edge-1",
            node_capacity: (2000, 4 << 30),
        }
    }

    fn info() -> PodRuntimeInfo {
        PodRuntimeInfo {
            pod_ip: Some("10.42.0.7".into()),
            host_ip: Some("192.168.1.10".into()),
            dns: None,
        }
    }

    const DEFAULT_NET: &str = "/run/outpost/netns/p1";
    const DEFAULT_IPC: &str = "/proc/77/ns/ipc";
    const DEFAULT_UTS: &str = "/proc/77/ns/uts";

    /// Renders what differs from a plain container: one line per fact.
    fn render(pod: &Pod, t: &Translated) -> String {
        let s = &t.spec;
        let mut out = String::new();
        let mut line = |l: String| {
            out.push_str(&l);
            out.push('\n');
        };
        for (k, v) in &s.env {
            line(format!("env {k}={v}"));
        }
        if let Some(c) = &s.command {
            line(format!("command {c:?}"));
        }
        if let Some(a) = &s.args {
            line(format!("args {a:?}"));
        }
        if let Some(w) = &s.working_dir {
            line(format!("workdir {w}"));
        }
        if let Some(u) = s.user {
            line(format!("user {u}"));
        }
        if let Some(g) = s.group {
            line(format!("group {g}"));
        }
        if !s.supplemental_groups.is_empty() {
            line(format!("groups {:?}", s.supplemental_groups));
        }
        if s.privileged {
            line("privileged".into());
        }
        if !s.capabilities_add.is_empty() {
            line(format!("cap add {:?}", s.capabilities_add));
        }
        if !s.capabilities_drop.is_empty() {
            line(format!("cap drop {:?}", s.capabilities_drop));
        }
        if !s.allow_privilege_escalation {
            line("no privilege escalation".into());
        }
        if s.readonly_rootfs {
            line("readonly rootfs".into());
        }
        if s.terminal {
            line("terminal".into());
        }
        if s.resources != Resources::from_kubernetes(None, None, None) {
            let r = &s.resources;
            line(format!(
                "resources shares={:?} quota={:?} memory={:?}",
                r.cpu_shares, r.cpu_quota, r.memory_limit
            ));
        }
        let default_ns = s.namespaces.len() == 3
            && s.namespaces.iter().all(|n| {
                let want = match n.kind {
                    NamespaceKind::Network => DEFAULT_NET,
                    NamespaceKind::Ipc => DEFAULT_IPC,
                    NamespaceKind::Uts => DEFAULT_UTS,
                    _ => "",
                };
                n.path.as_deref() == Some(Path::new(want))
            });
        if !default_ns {
            for n in &s.namespaces {
                line(format!("ns {:?} {:?}", n.kind, n.path));
            }
        }
        if s.hostname.as_deref() != pod.metadata.name.as_deref() {
            line(format!("hostname {:?}", s.hostname));
        }
        let pod_files = [
            ("/etc/hosts", "/pods/p1/etc-hosts", false),
            ("/etc/hostname", "/pods/p1/hostname", false),
            ("/etc/resolv.conf", "/pods/p1/resolv.conf", false),
        ];
        for m in &s.mounts {
            let plain = pod_files
                .iter()
                .any(|&(d, src, ro)| m.destination == d && m.source == src && m.readonly == ro);
            if plain {
                continue;
            }
            let mut l = format!("mount {} <- {}", m.destination, m.source);
            if m.readonly {
                l.push_str(" ro");
            }
            for o in &m.options {
                let _ = write!(l, " {o}");
            }
            line(l);
        }
        for w in &t.warnings {
            line(format!("warning {w}"));
        }
        if t.non_root.is_some() {
            line("check image user".into());
        }
        out
    }

    /// Translates container `name` of the pod in `yaml` and compares the
    /// rendering (or the error) with `expect`.
    fn check(yaml: &str, name: &str, expect: &str) {
        let pod = pod(yaml);
        let (cms, secrets) = objects();
        let lookup = lookup(&cms, &secrets);
        let host_network = pod_spec(&pod).is_some_and(|s| s.host_network == Some(true));
        let sandbox = SandboxNamespaces {
            network: (!host_network).then(|| DEFAULT_NET.into()),
            ipc: DEFAULT_IPC.into(),
            uts: (!host_network).then(|| DEFAULT_UTS.into()),
        };
        let container = all_containers(&pod)
            .find(|c| c.name == name)
            .expect("container in test pod");
        let volumes = volumes(&pod);
        let got = match container_spec(
            &pod,
            container,
            &lookup,
            &info(),
            &sandbox,
            &volumes,
            "/outpost/p1/c".into(),
        ) {
            Ok(t) => {
                assert_eq!(t.spec.cgroups_path, "/outpost/p1/c");
                render(&pod, &t)
            }
            Err(e) => format!("error {}: {}\n", e.reason, e.message),
        };
        let expect = expect
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        assert_eq!(got, expect, "\n--- got:\n{got}--- want:\n{expect}");
    }

    const HEAD: &str = "
metadata: {name: web-0, namespace: default, uid: 1111-2222, labels: {app: web, tier: front}, annotations: {note: \"say \\\"hi\\\"\"}}
";

    #[test]
    fn plain_env_and_expansion() {
        check(
            &format!(
                "{HEAD}
spec:
  containers:
  - name: c
    command: [sh, -c, 'echo $(GREETING) $$(GREETING) $(UNKNOWN)']
    args: ['$(NAME)']
    env:
    - {{name: GREETING, value: hello}}
    - {{name: NAME, value: '$(GREETING)-world'}}
    - {{name: LATER, value: '$(AFTER)'}}
    - {{name: AFTER, value: x}}
    - {{name: EMPTY}}
"
            ),
            "c",
            "
            env GREETING=hello
            env NAME=hello-world
            env LATER=$(AFTER)
            env AFTER=x
            env EMPTY=
            command [\"sh\", \"-c\", \"echo hello $(GREETING) $(UNKNOWN)\"]
            args [\"hello-world\"]
            ",
        );
    }

    #[test]
    fn empty_command_and_args_are_unset() {
        check(
            &format!("{HEAD}\nspec:\n  containers:\n  - {{name: c, command: [], args: []}}\n"),
            "c",
            "",
        );
    }

    #[test]
    fn env_from_config_maps_and_secrets() {
        check(
            &format!(
                "{HEAD}
spec:
  containers:
  - name: c
    envFrom:
    - configMapRef: {{name: app-config}}
    - secretRef: {{name: db}}
      prefix: DB_
    - configMapRef: {{name: missing, optional: true}}
    env:
    - {{name: MODE, value: 'slow-$(LOG_LEVEL)'}}
"
            ),
            "c",
            "
            env 1BAD=x
            env LOG_LEVEL=debug
            env MODE=slow-debug
            env DB_PASSWORD=s3cr3t
            env DB_USER=root
            warning Keys [a=b] from the EnvFrom configMap default/app-config were skipped since they are considered invalid environment variable names.
            ",
        );
    }

    #[test]
    fn env_from_missing_objects() {
        for (source, want) in [
            ("configMapRef: {name: nope}", "configmap \"nope\" not found"),
            ("secretRef: {name: nope}", "secret \"nope\" not found"),
            // Only the pod's own namespace is visible.
            (
                "configMapRef: {name: elsewhere}",
                "configmap \"elsewhere\" not found",
            ),
        ] {
            check(
                &format!(
                    "{HEAD}\nspec:\n  containers:\n  - name: c\n    envFrom:\n    - {source}\n"
                ),
                "c",
                &format!("error CreateContainerConfigError: {want}"),
            );
        }
    }

    #[test]
    fn env_key_refs() {
        let case = |from: &str, expect: &str| {
            check(
                &format!(
                    "{HEAD}\nspec:\n  containers:\n  - name: c\n    env:\n    - name: V\n      valueFrom: {from}\n"
                ),
                "c",
                expect,
            )
        };
        case(
            "{configMapKeyRef: {name: app-config, key: LOG_LEVEL}}",
            "env V=debug",
        );
        case("{secretKeyRef: {name: db, key: PASSWORD}}", "env V=s3cr3t");
        case("{secretKeyRef: {name: db, key: USER}}", "env V=root");
        case(
            "{configMapKeyRef: {name: app-config, key: NOPE}}",
            "error CreateContainerConfigError: couldn't find key NOPE in ConfigMap default/app-config",
        );
        case(
            "{secretKeyRef: {name: db, key: NOPE}}",
            "error CreateContainerConfigError: couldn't find key NOPE in Secret default/db",
        );
        case(
            "{configMapKeyRef: {name: app-cfg, key: K}}",
            "error CreateContainerConfigError: configmap \"app-cfg\" not found",
        );
        case(
            "{secretKeyRef: {name: creds, key: K}}",
            "error CreateContainerConfigError: secret \"creds\" not found",
        );
        // binaryData is for volumes only.
        case(
            "{configMapKeyRef: {name: app-config, key: blob}}",
            "error CreateContainerConfigError: couldn't find key blob in ConfigMap default/app-config",
        );
        case(
            "{configMapKeyRef: {name: app-config, key: NOPE, optional: true}}",
            "",
        );
        case(
            "{configMapKeyRef: {name: app-cfg, key: K, optional: true}}",
            "",
        );
        case("{secretKeyRef: {name: db, key: NOPE, optional: true}}", "");
        case("{secretKeyRef: {name: creds, key: K, optional: true}}", "");
    }

    #[test]
    fn field_refs() {
        let case = |path: &str, expect: &str| {
            check(
                &format!(
                    "{HEAD}\nspec:\n  serviceAccountName: robot\n  containers:\n  - name: c\n    env:\n    - name: V\n      valueFrom: {{fieldRef: {{fieldPath: \"{path}\"}}}}\n"
                ),
                "c",
                expect,
            )
        };
        case("metadata.name", "env V=web-0");
        case("metadata.namespace", "env V=default");
        case("metadata.uid", "env V=1111-2222");
        case("metadata.labels['app']", "env V=web");
        case("metadata.labels['nope']", "env V=");
        case("metadata.annotations['note']", "env V=say \"hi\"");
        case("spec.nodeName", "env V=edge-1");
        case("spec.serviceAccountName", "env V=robot");
        case("status.podIP", "env V=10.42.0.7");
        case("status.podIPs", "env V=10.42.0.7");
        case("status.hostIP", "env V=192.168.1.10");
        case(
            "spec.restartPolicy",
            "error CreateContainerConfigError: unsupported fieldPath: spec.restartPolicy",
        );
        case(
            "spec.containers",
            "error CreateContainerConfigError: field label not supported: spec.containers",
        );
        case(
            "metadata.name['x']",
            "error CreateContainerConfigError: field label does not support subscript: metadata.name['x']",
        );
    }

    #[test]
    fn whole_label_map_is_formatted_like_the_kubelet() {
        check(
            &format!(
                "{HEAD}\nspec:\n  containers:\n  - name: c\n    env:\n    - name: V\n      valueFrom: {{fieldRef: {{fieldPath: metadata.labels}}}}\n    - name: A\n      valueFrom: {{fieldRef: {{fieldPath: metadata.annotations}}}}\n"
            ),
            "c",
            "env V=app=\"web\"\ntier=\"front\"\nenv A=note=\"say \\\"hi\\\"\"",
        );
    }

    #[test]
    fn resource_field_refs() {
        let case = |resources: &str, field: &str, expect: &str| {
            check(
                &format!(
                    "{HEAD}\nspec:\n  containers:\n  - name: c\n    resources: {resources}\n    env:\n    - name: V\n      valueFrom: {{resourceFieldRef: {field}}}\n  - name: other\n    resources: {{limits: {{memory: 1Gi}}}}\n"
                ),
                "c",
                expect,
            )
        };
        let limited = "{requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: 500m, memory: 128Mi}}";
        let shares = "resources shares=Some(256) quota=Some(50000) memory=Some(134217728)";
        case(
            limited,
            "{resource: limits.cpu}",
            &format!("env V=1\n{shares}"),
        );
        case(
            limited,
            "{resource: limits.cpu, divisor: 1m}",
            &format!("env V=500\n{shares}"),
        );
        case(
            limited,
            "{resource: requests.cpu, divisor: 1m}",
            &format!("env V=250\n{shares}"),
        );
        case(
            limited,
            "{resource: requests.cpu}",
            &format!("env V=1\n{shares}"),
        );
        case(
            limited,
            "{resource: limits.memory}",
            &format!("env V=134217728\n{shares}"),
        );
        case(
            limited,
            "{resource: limits.memory, divisor: 1Mi}",
            &format!("env V=128\n{shares}"),
        );
        case(
            limited,
            "{resource: requests.memory, divisor: 1M}",
            &format!("env V=68\n{shares}"),
        );
        // Unset limits are the node's allocatable; unset requests the limits.
        case("{}", "{resource: limits.cpu, divisor: 1m}", "env V=2000");
        case("{}", "{resource: limits.memory, divisor: 1Gi}", "env V=4");
        case("{}", "{resource: requests.memory}", "env V=0");
        case(
            "{limits: {cpu: '1'}}",
            "{resource: requests.cpu, divisor: 1m}",
            "env V=1000\nresources shares=Some(1024) quota=Some(100000) memory=None",
        );
        case(
            "{}",
            "{resource: limits.memory, containerName: other, divisor: 1Mi}",
            "env V=1024",
        );
        case(
            "{}",
            "{resource: limits.memory, containerName: ghost}",
            "error CreateContainerConfigError: container ghost not found",
        );
        case(
            "{}",
            "{resource: limits.ephemeral-storage}",
            "error CreateContainerConfigError: unsupported container resource : limits.ephemeral-storage",
        );
    }

    #[test]
    fn expansion_cases_from_kubernetes() {
        let vars = BTreeMap::from([
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ]);
        let lookup = |name: &str| vars.get(name).map(|v| (*v).to_owned());
        for (input, want) in [
            ("$(VAR_A)", "A"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_A)-1", "A-1"),
            ("___$(VAR_B)___", "___B___"),
            ("___$(VAR_C)", "___C"),
            ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
            ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
            ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
            ("f00__(VAR_A)__", "f00__(VAR_A)__"),
            ("$?_boo_$!", "$?_boo_$!"),
            ("$VAR_A", "$VAR_A"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
            ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
            ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
            ("$$$$$$$(VAR_A)", "$$$A"),
            ("$VAR_A)", "$VAR_A)"),
            ("${VAR_A}", "${VAR_A}"),
            ("$(VAR_B)_______$(A", "B_______$(A"),
            ("$(VAR_C)_______$(", "C_______$("),
            ("$(VAR_A)foobarzab$", "Afoobarzab$"),
            ("foo-\\$(VAR_A", "foo-\\$(VAR_A"),
            ("--$($($($($--", "--$($($($($--"),
            ("$($($($($--foo$(", "$($($($($--foo$("),
            ("foo0--$($($($(", "foo0--$($($($("),
            ("$(foo$$var)", "$(foo$$var)"),
            ("\n", "\n"),
            ("", ""),
            ("$", "$"),
            ("€$é$(VAR_A)ü", "€$éAü"),
        ] {
            assert_eq!(expand(input, &lookup), want, "input {input:?}");
        }
    }

    #[test]
    fn security_context_merging() {
        let case = |pod_sc: &str, sc: &str, expect: &str| {
            check(
                &format!(
                    "{HEAD}\nspec:\n  securityContext: {pod_sc}\n  containers:\n  - name: c\n    securityContext: {sc}\n"
                ),
                "c",
                expect,
            )
        };
        case(
            "{runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000, supplementalGroups: [4000, 5000]}",
            "{}",
            "user 1000\ngroup 3000\ngroups [2000, 4000, 5000]",
        );
        case(
            "{runAsUser: 1000, runAsGroup: 3000}",
            "{runAsUser: 1001}",
            "user 1001\ngroup 3000",
        );
        case(
            "{}",
            "{privileged: true, readOnlyRootFilesystem: true, capabilities: {add: [NET_ADMIN], drop: [ALL]}}",
            "
            privileged
            cap add [\"NET_ADMIN\"]
            cap drop [\"ALL\"]
            readonly rootfs
            mount /etc/hostname <- /pods/p1/hostname ro
            mount /etc/resolv.conf <- /pods/p1/resolv.conf ro
            ",
        );
        case(
            "{}",
            "{allowPrivilegeEscalation: false}",
            "no privilege escalation",
        );
        case("{}", "{allowPrivilegeEscalation: true}", "");
        case("{runAsNonRoot: true}", "{}", "check image user");
        case("{runAsNonRoot: true, runAsUser: 1000}", "{}", "user 1000");
        case("{runAsNonRoot: true}", "{runAsNonRoot: false}", "");
        case(
            "{runAsNonRoot: true}",
            "{runAsUser: 0}",
            "error CreateContainerConfigError: container's runAsUser breaks non-root policy (pod: \"web-0_default\", container: c)",
        );
        case(
            "{}",
            "{runAsUser: -1}",
            "error CreateContainerConfigError: runAsUser -1 of container \"c\" is out of range: use 0 to 4294967295",
        );
    }

    #[test]
    fn non_root_check_against_the_image() {
        let check = NonRootCheck {
            pod: "web-0_default".into(),
            container: "c".into(),
        };
        assert_eq!(check.verify(Some("1000")), Ok(()));
        assert_eq!(check.verify(Some("1000:0")), Ok(()));
        for user in [None, Some(""), Some("0"), Some("0:1000")] {
            let err = check.verify(user).expect_err("root");
            assert_eq!(err.reason, CREATE_CONTAINER_CONFIG_ERROR);
            assert!(err.message.contains("image will run as root"), "{err}");
        }
        let err = check.verify(Some("nginx")).expect_err("name");
        assert_eq!(
            err.message,
            "container has runAsNonRoot and image has non-numeric user (nginx), cannot verify user is non-root (pod: \"web-0_default\", container: c)"
        );
    }

    #[test]
    fn resources() {
        let case = |resources: &str, expect: &str| {
            check(
                &format!("{HEAD}\nspec:\n  containers:\n  - name: c\n    resources: {resources}\n"),
                "c",
                expect,
            )
        };
        case("{}", "");
        case(
            "{requests: {cpu: 100m}}",
            "resources shares=Some(102) quota=None memory=None",
        );
        case(
            "{limits: {cpu: '2', memory: 1Gi}}",
            "resources shares=Some(2048) quota=Some(200000) memory=Some(1073741824)",
        );
        case(
            "{limits: {memory: lots}}",
            "error CreateContainerConfigError: resources.limits.memory of container \"c\": invalid quantity \"lots\": expected a number with an optional suffix like 64Mi or 1G",
        );
    }

    #[test]
    fn namespaces_and_hostname() {
        check(
            &format!("{HEAD}\nspec:\n  containers:\n  - {{name: c, tty: true}}\n"),
            "c",
            "terminal",
        );
        check(
            &format!("{HEAD}\nspec:\n  hostname: db\n  containers:\n  - {{name: c}}\n"),
            "c",
            "hostname Some(\"db\")",
        );
        let long = "a".repeat(60) + "-.-bbbb";
        check(
            &format!("metadata: {{name: {long}}}\nspec:\n  containers:\n  - {{name: c}}\n"),
            "c",
            &format!("hostname Some(\"{}\")", "a".repeat(60)),
        );
        check(
            &format!("{HEAD}\nspec:\n  hostNetwork: true\n  containers:\n  - {{name: c}}\n"),
            "c",
            "
            ns Network Some(\"/proc/self/ns/net\")
            ns Uts Some(\"/proc/self/ns/uts\")
            ns Ipc Some(\"/proc/77/ns/ipc\")
            hostname None
            ",
        );
        check(
            &format!(
                "{HEAD}\nspec:\n  hostPID: true\n  hostIPC: true\n  containers:\n  - {{name: c}}\n"
            ),
            "c",
            "
            ns Network Some(\"/run/outpost/netns/p1\")
            ns Uts Some(\"/proc/77/ns/uts\")
            ns Ipc Some(\"/proc/self/ns/ipc\")
            ns Pid Some(\"/proc/self/ns/pid\")
            ",
        );
    }

    #[test]
    fn annotations_name_the_pod_and_container() {
        let pod = pod(&format!("{HEAD}\nspec:\n  containers:\n  - {{name: c}}\n"));
        let (cms, secrets) = objects();
        let sandbox = SandboxNamespaces {
            network: None,
            ipc: DEFAULT_IPC.into(),
            uts: None,
        };
        let t = container_spec(
            &pod,
            &pod_spec(&pod).expect("spec").containers[0],
            &lookup(&cms, &secrets),
            &info(),
            &sandbox,
            &volumes(&pod),
            "/x".into(),
        )
        .expect("translates");
        let a = &t.spec.annotations;
        assert_eq!(a["io.kubernetes.pod.name"], "web-0");
        assert_eq!(a["io.kubernetes.pod.namespace"], "default");
        assert_eq!(a["io.kubernetes.pod.uid"], "1111-2222");
        assert_eq!(a["io.kubernetes.container.name"], "c");
    }

    const VOLUMES: &str = "
  volumes:
  - {name: data, emptyDir: {}}
  - {name: cfg, configMap: {name: app-config}}
  - {name: host, hostPath: {path: /var/log}}
";

    #[test]
    fn volume_mounts() {
        check(
            &format!(
                "{HEAD}\nspec:{VOLUMES}  containers:\n  - name: c\n    volumeMounts:\n    - {{name: data, mountPath: /data/cache}}\n    - {{name: host, mountPath: /logs, readOnly: true, mountPropagation: HostToContainer}}\n    - {{name: cfg, mountPath: /etc/app}}\n    - {{name: data, mountPath: /data}}\n    - {{name: data, mountPath: rel}}\n"
            ),
            "c",
            "
            mount /logs <- /pods/p1/volumes/host ro rslave
            mount /data <- /pods/p1/volumes/data
            mount /rel <- /pods/p1/volumes/data
            mount /data/cache <- /pods/p1/volumes/data
            mount /etc/app <- /pods/p1/volumes/cfg ro
            ",
        );
    }

    #[test]
    fn sub_paths() {
        let case = |mount: &str, expect: &str| {
            check(
                &format!(
                    "{HEAD}\nspec:{VOLUMES}  containers:\n  - name: c\n    env:\n    - {{name: POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}\n    volumeMounts:\n    - {mount}\n"
                ),
                "c",
                &expect.replace("OK ", "env POD=web-0\n"),
            )
        };
        case(
            "{name: cfg, mountPath: /etc/app.conf, subPath: app.conf}",
            "OK mount /etc/app.conf <- /pods/p1/volume-subpaths/cfg/c/0<app.conf> ro",
        );
        case(
            "{name: data, mountPath: /out, subPathExpr: 'logs/$(POD)'}",
            "OK mount /out <- /pods/p1/volume-subpaths/data/c/0<logs/web-0>",
        );
        case(
            "{name: data, mountPath: /out, subPathExpr: 'logs/$(NOPE)'}",
            "error CreateContainerConfigError: missing value for NOPE",
        );
        case(
            "{name: data, mountPath: /out, subPath: ../../etc}",
            "error CreateContainerConfigError: unable to provision SubPath `../../etc`: must not contain '..'",
        );
        case(
            "{name: data, mountPath: /out, subPath: /etc}",
            "error CreateContainerConfigError: error SubPath `/etc` must not be an absolute path",
        );
        case(
            "{name: ghost, mountPath: /out}",
            "error CreateContainerConfigError: cannot find volume \"ghost\" to mount into container \"c\"",
        );
        case(
            "{name: data, mountPath: /out, mountPropagation: Bidirectional}",
            "error CreateContainerConfigError: volume mount \"data\" of container \"c\": Bidirectional mount propagation is available only to privileged containers",
        );
    }

    #[test]
    fn pod_files_follow_the_container() {
        // A container's own /etc/hosts wins; a read-only root makes
        // /etc/hostname and /etc/resolv.conf read-only.
        check(
            &format!(
                "{HEAD}\nspec:{VOLUMES}  containers:\n  - name: c\n    securityContext: {{readOnlyRootFilesystem: true}}\n    volumeMounts:\n    - {{name: cfg, mountPath: /etc/hosts, subPath: hosts}}\n"
            ),
            "c",
            "
            readonly rootfs
            mount /etc/hosts <- /pods/p1/volume-subpaths/cfg/c/0<hosts> ro
            mount /etc/hostname <- /pods/p1/hostname ro
            mount /etc/resolv.conf <- /pods/p1/resolv.conf ro
            ",
        );
    }

    #[test]
    fn init_containers_translate_too() {
        check(
            &format!(
                "{HEAD}\nspec:\n  initContainers:\n  - {{name: init, command: [\"true\"], workingDir: /w}}\n  containers:\n  - {{name: c}}\n"
            ),
            "init",
            "command [\"true\"]\nworkdir /w",
        );
    }

    #[test]
    fn host_domain() {
        let p =
            pod("metadata: {name: a, namespace: ns}\nspec:\n  subdomain: sub\n  containers: []\n");
        assert_eq!(
            pod_host_domain(&p, "cluster.local").as_deref(),
            Some("sub.ns.svc.cluster.local")
        );
        let p = pod("metadata: {name: a}\nspec: {containers: []}\n");
        assert_eq!(pod_host_domain(&p, "cluster.local"), None);
    }
}
