//! What a Service and the pods it selects become: the EndpointSlices the
//! endpointslice controller would write, the proxy's view of the Service
//! (ready endpoints only), the pods' hostPorts, and the Service as
//! published with its addresses. Pure: pods come as the agent publishes
//! them (`status.podIP`, the `Ready` condition, `deletionTimestamp`).
//!
//! As in Kubernetes: only a Service with a selector gets EndpointSlices;
//! pods without an IP, and pods that finished, are left out; a terminating
//! pod stays listed, not ready. A named `targetPort` is looked up in each
//! pod, so pods may serve it on different numbers, and a pod without it is
//! left out of that port: each distinct set of ports gets its own slices.
//! Headless Services get slices (for DNS) but are not proxied;
//! ExternalName Services get neither.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, LoadBalancerIngress, LoadBalancerStatus, ObjectReference, Pod, Service, ServicePort,
    ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use outpost_net::proxy::{HostPort, Service as ProxyService, ServicePort as ProxyPort};
use sha2::{Digest, Sha256};

use super::{protocol, Assigned, PortKey, ServiceKey, ServiceType};

/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// outpost's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "outpost.io/endpointslice-controller";
/// Set (empty) on the slices of headless Services.
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The endpointslice controller's default `--max-endpoints-per-slice`.
const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// What the API server defaults `timeoutSeconds` of ClientIP affinity to.
const DEFAULT_AFFINITY_SECONDS: i32 = 10800;
/// The characters of generated name suffixes (apimachinery's, no vowels).
const SUFFIX_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Generated names keep their base to this many bytes, plus 5 for the suffix.
const GENERATED_BASE_MAX: usize = 58;

/// A selected pod as an endpoint.
struct PodEndpoint<'a> {
    pod: &'a Pod,
    ip: Ipv4Addr,
    /// Takes new connections: ready and not terminating (or the Service
    /// publishes not-ready addresses). What the proxy uses.
    ready: bool,
    /// The pod's Ready condition, terminating or not.
    serving: bool,
    terminating: bool,
    /// For each Service port the pod serves (index in `spec.ports`), its
    /// port number in the pod.
    ports: Vec<(usize, u16)>,
}

/// The pods `svc` selects, as endpoints, by pod name.
fn selected<'a>(svc: &Service, pods: &'a [Pod]) -> Vec<PodEndpoint<'a>> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let Some(selector) = selector(svc) else {
        return Vec::new();
    };
    let namespace = ServiceKey::of(svc).namespace;
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.as_deref().unwrap_or_default();
    let mut out: Vec<PodEndpoint<'a>> = pods
        .iter()
        .filter(|pod| pod.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .filter(|pod| {
            let labels = pod.metadata.labels.as_ref();
            selector
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .filter(|pod| !finished(pod))
        .filter_map(|pod| {
            let ip = pod_ip(pod)?;
            let serving = pod_ready(pod);
            let terminating = pod.metadata.deletion_timestamp.is_some();
            Some(PodEndpoint {
                pod,
                ip,
                ready: publish_not_ready || (serving && !terminating),
                serving,
                terminating,
                ports: ports
                    .iter()
                    .enumerate()
                    .filter_map(|(i, port)| Some((i, target_port(port, pod)?)))
                    .collect(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.pod.metadata.name.cmp(&b.pod.metadata.name));
    out
}

/// The selector of a Service that has endpoints: none for ExternalName, and
/// none when empty (the API server stores an empty map as no selector).
fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    if ServiceType::of(svc) == ServiceType::ExternalName {
        return None;
    }
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// `Succeeded` or `Failed`: its containers are gone for good.
fn finished(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// The pod's IPv4 address, if it has one yet.
fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    let status = pod.status.as_ref()?;
    let all = status.pod_ips.iter().flatten().map(|ip| ip.ip.as_str());
    status
        .pod_ip
        .as_deref()
        .into_iter()
        .chain(all)
        .find_map(|ip| ip.parse().ok())
}

fn pod_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Containers whose ports a pod serves: the regular ones and sidecars
/// (init containers that keep running).
fn serving_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    let sidecars = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.map(|s| s.containers.iter())
        .into_iter()
        .flatten()
        .chain(sidecars)
}

/// A Service port's number in `pod` (podutil.FindPort): the number itself,
/// or the container port of that name and protocol.
fn target_port(port: &ServicePort, pod: &Pod) -> Option<u16> {
    let number = match port.target_port.as_ref() {
        None => port.port,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(name)) => {
            let wanted = protocol(port.protocol.as_deref());
            serving_containers(pod)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && protocol(p.protocol.as_deref()) == wanted
                })?
                .container_port
        }
    };
    u16::try_from(number).ok().filter(|n| *n != 0)
}

/// The EndpointSlices of `svc` (`discovery.k8s.io/v1`): one per distinct
/// set of ports its pods serve (at most 100 endpoints each), or one empty
/// placeholder when no pod is selected. Names are stable for the Service
/// and port set: `<service>-<5 characters>`. None without a selector.
pub fn endpoint_slices(svc: &Service, assigned: &Assigned, pods: &[Pod]) -> Vec<EndpointSlice> {
    if selector(svc).is_none() {
        return Vec::new();
    }
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let service_ports = spec.ports.as_deref().unwrap_or_default();
    let mut groups: BTreeMap<Vec<(usize, u16)>, Vec<PodEndpoint<'_>>> = BTreeMap::new();
    for endpoint in selected(svc, pods) {
        groups
            .entry(endpoint.ports.clone())
            .or_default()
            .push(endpoint);
    }
    if groups.is_empty() {
        groups.insert(Vec::new(), Vec::new());
    }
    let mut slices = Vec::new();
    for (ports, endpoints) in &groups {
        let ports: Vec<EndpointPort> = ports
            .iter()
            .filter_map(|(i, number)| {
                let port = service_ports.get(*i)?;
                Some(EndpointPort {
                    name: Some(port.name.clone().unwrap_or_default()),
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".to_owned())),
                    port: Some(i32::from(*number)),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        let chunks: Vec<&[PodEndpoint<'_>]> = if endpoints.is_empty() {
            vec![&[]]
        } else {
            endpoints.chunks(MAX_ENDPOINTS_PER_SLICE).collect()
        };
        for (chunk, endpoints) in chunks.into_iter().enumerate() {
            slices.push(EndpointSlice {
                metadata: slice_meta(svc, assigned, &ports, chunk),
                address_type: "IPv4".to_owned(),
                endpoints: endpoints.iter().map(|e| endpoint(svc, e)).collect(),
                ports: Some(ports.clone()),
            });
        }
    }
    slices
}

fn slice_meta(
    svc: &Service,
    assigned: &Assigned,
    ports: &[EndpointPort],
    chunk: usize,
) -> ObjectMeta {
    let key = ServiceKey::of(svc);
    // The Service's labels are copied, as the endpointslice controller does.
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| {
            ![SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if ServiceType::of(svc) == ServiceType::Headless {
        labels.insert(HEADLESS_LABEL.to_owned(), String::new());
    }
    labels.insert(SERVICE_NAME_LABEL.to_owned(), key.name.clone());
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    let mut identity = String::new();
    for port in ports {
        identity.push_str(&format!(
            "{}/{}/{};",
            port.name.as_deref().unwrap_or_default(),
            port.protocol.as_deref().unwrap_or_default(),
            port.port.unwrap_or_default()
        ));
    }
    identity.push_str(&format!("#{chunk}"));
    ObjectMeta {
        name: Some(generated_name(&key.name, &identity)),
        namespace: Some(key.namespace),
        labels: Some(labels),
        owner_references: Some(vec![OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Service".to_owned(),
            name: key.name,
            uid: assigned.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..ObjectMeta::default()
    }
}

/// `<base>-<suffix>` as the API server generates names from
/// `generateName: <base>-`, the suffix a hash of `identity` rather than
/// random, so the same slice keeps its name.
fn generated_name(base: &str, identity: &str) -> String {
    let mut name = format!("{base}-");
    if name.len() > GENERATED_BASE_MAX {
        let mut cut = GENERATED_BASE_MAX;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    let digest = Sha256::digest(format!("{base}\n{identity}"));
    name.extend(
        digest
            .iter()
            .take(5)
            .map(|b| char::from(SUFFIX_CHARS[usize::from(*b) % SUFFIX_CHARS.len()])),
    );
    name
}

fn endpoint(svc: &Service, e: &PodEndpoint<'_>) -> Endpoint {
    let pod = e.pod;
    let spec = pod.spec.as_ref();
    // A pod's hostname is published when it names this Service as its
    // subdomain (endpointutil.ShouldSetHostname): DNS answers for it.
    let hostname = spec.and_then(|s| {
        let hostname = s.hostname.as_deref().filter(|h| !h.is_empty())?;
        (s.subdomain.as_deref() == svc.metadata.name.as_deref()).then(|| hostname.to_owned())
    });
    Endpoint {
        addresses: vec![e.ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(e.ready),
            serving: Some(e.serving),
            terminating: Some(e.terminating),
        }),
        hostname,
        node_name: spec.and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_owned()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

/// The proxy's view of `svc`: its ClusterIP, and per port the NodePort and
/// the ready endpoints. `None` for headless and ExternalName Services (DNS
/// alone answers for them), and when no ClusterIP was allocated. A Service
/// without a selector is proxied with no endpoints (connections refused).
pub fn proxy_service(svc: &Service, assigned: &Assigned, pods: &[Pod]) -> Option<ProxyService> {
    if !ServiceType::of(svc).has_cluster_ip() {
        return None;
    }
    let cluster_ip = assigned.cluster_ip?;
    let spec = svc.spec.as_ref()?;
    let endpoints = selected(svc, pods);
    let ports = spec
        .ports
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, port)| {
            let key = PortKey::of(port)?;
            let ready: BTreeSet<(Ipv4Addr, u16)> = endpoints
                .iter()
                .filter(|e| e.ready)
                .filter_map(|e| {
                    let (_, number) = e.ports.iter().find(|(index, _)| *index == i)?;
                    Some((e.ip, *number))
                })
                .collect();
            Some(ProxyPort {
                name: port.name.clone().unwrap_or_default(),
                protocol: key.protocol,
                port: key.port,
                node_port: assigned.node_ports.get(&key).copied(),
                load_balancer: ServiceType::of(svc) == ServiceType::LoadBalancer,
                endpoints: ready.into_iter().collect(),
            })
        })
        .collect();
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        let seconds = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(DEFAULT_AFFINITY_SECONDS);
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    });
    let key = ServiceKey::of(svc);
    Some(ProxyService {
        namespace: key.namespace,
        name: key.name,
        cluster_ip: Some(cluster_ip),
        ports,
        affinity,
        // Validation allows it only on externally reachable Services.
        external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
    })
}

/// The hostPorts of running pods (containers and sidecars), to their pod's
/// address, sorted. hostNetwork pods are left out (their ports are the
/// host's already), as are SCTP and IPv6 host addresses, which the proxy
/// does not serve.
pub fn host_ports(pods: &[Pod]) -> Vec<HostPort> {
    let mut out = Vec::new();
    for pod in pods {
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        if host_network || finished(pod) {
            continue;
        }
        let Some(pod_ip) = pod_ip(pod) else {
            continue;
        };
        for port in serving_containers(pod).flat_map(|c| c.ports.iter().flatten()) {
            let Some(host_port) = port
                .host_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
            else {
                continue;
            };
            let (Some(protocol), Ok(container_port)) = (
                protocol(port.protocol.as_deref()),
                u16::try_from(port.container_port),
            ) else {
                continue;
            };
            let host_ip = match port.host_ip.as_deref().unwrap_or_default() {
                "" | "0.0.0.0" => None,
                ip => match ip.parse::<Ipv4Addr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => continue,
                },
            };
            out.push(HostPort {
                protocol,
                host_ip,
                host_port,
                pod_ip,
                container_port,
            });
        }
    }
    out.sort_by_key(|h| {
        (
            h.protocol,
            h.host_port,
            h.host_ip,
            h.pod_ip,
            h.container_port,
        )
    });
    out.dedup();
    out
}

/// `svc` as the API server would show it: its uid, `clusterIP`/`clusterIPs`
/// and NodePorts from the allocation, and `status.loadBalancer` (for a
/// LoadBalancer Service, the node's addresses as ingress, as k3s's
/// ServiceLB reports them).
pub fn published(svc: &Service, assigned: &Assigned, node_ips: &[Ipv4Addr]) -> Service {
    let mut out = svc.clone();
    out.metadata.uid = Some(assigned.uid.clone());
    let kind = ServiceType::of(svc);
    if let Some(spec) = out.spec.as_mut() {
        if let Some(ip) = assigned.cluster_ip {
            spec.cluster_ip = Some(ip.to_string());
            spec.cluster_ips = Some(vec![ip.to_string()]);
        }
        for port in spec.ports.iter_mut().flatten() {
            if let Some(np) = PortKey::of(port).and_then(|k| assigned.node_ports.get(&k)) {
                port.node_port = Some(i32::from(*np));
            }
        }
    }
    let ingress = (kind == ServiceType::LoadBalancer && !node_ips.is_empty()).then(|| {
        node_ips
            .iter()
            .map(|ip| LoadBalancerIngress {
                ip: Some(ip.to_string()),
                ip_mode: Some("VIP".to_owned()),
                ..LoadBalancerIngress::default()
            })
            .collect()
    });
    out.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus { ingress }),
        conditions: None,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_net::proxy::Protocol;
    use serde_json::{json, Value};

    use crate::services::PortKey;

    fn service(value: Value) -> Service {
        serde_json::from_value(value).expect("a Service")
    }

    /// A Service `web` in `shop`: `spec` added to a selector of `app: web`.
    fn web(spec: Value) -> Service {
        let mut s = json!({"selector": {"app": "web"}, "sessionAffinity": "None"});
        if let (Some(s), Value::Object(extra)) = (s.as_object_mut(), spec) {
            s.extend(extra);
        }
        service(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"tier": "front"}},
            "spec": s,
        }))
    }

    fn assigned(ip: Option<[u8; 4]>, node_ports: &[(Protocol, u16, u16)]) -> Assigned {
        Assigned {
            uid: "svc-uid".to_owned(),
            cluster_ip: ip.map(Ipv4Addr::from),
            node_ports: node_ports
                .iter()
                .map(|(protocol, port, np)| {
                    (
                        PortKey {
                            protocol: *protocol,
                            port: *port,
                        },
                        *np,
                    )
                })
                .collect(),
        }
    }

    /// A pod `name` in `shop` labelled `app: <app>`, on node `edge-1`, with
    /// `ready`, its IP, and `fields` merged into the pod (JSON).
    fn pod(name: &str, app: &str, ip: Option<&str>, ready: bool, fields: Value) -> Pod {
        let mut pod = json!({
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "labels": {"app": app}},
            "spec": {
                "nodeName": "edge-1",
                "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}],
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            },
        });
        if let Some(ip) = ip {
            pod["status"]["podIP"] = json!(ip);
        }
        merge(&mut pod, fields);
        serde_json::from_value(pod).expect("a Pod")
    }

    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(into), Value::Object(from)) => {
                for (k, v) in from {
                    merge(into.entry(k).or_insert(Value::Null), v);
                }
            }
            (into, from) => *into = from,
        }
    }

    fn slices_json(svc: &Service, a: &Assigned, pods: &[Pod]) -> Value {
        serde_json::to_value(endpoint_slices(svc, a, pods)).expect("json")
    }

    fn pods() -> Vec<Pod> {
        vec![
            pod("web-1", "web", Some("10.42.0.5"), true, json!({})),
            pod(
                "web-2",
                "web",
                Some("10.42.0.6"),
                false,
                json!({"spec": {"containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8081}]}]}}),
            ),
            pod(
                "web-3",
                "web",
                Some("10.42.0.7"),
                true,
                json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}),
            ),
            pod("web-4", "web", None, false, json!({})),
            // No port named http: left out of that port.
            pod(
                "web-5",
                "web",
                Some("10.42.0.9"),
                true,
                json!({"spec": {"containers": [{"name": "app", "ports": [{"name": "metrics", "containerPort": 9090}]}]}}),
            ),
            pod(
                "web-6",
                "web",
                Some("10.42.0.10"),
                true,
                json!({"status": {"phase": "Succeeded"}}),
            ),
            pod("api-1", "api", Some("10.42.0.11"), true, json!({})),
            pod(
                "web-7",
                "web",
                Some("10.42.0.12"),
                true,
                json!({"metadata": {"namespace": "other"}}),
            ),
        ]
    }

    /// One line per slice: `name [port=number/protocol …] address pod
    /// conditions; …` (`(headless)` after the name when labelled so).
    fn render_slices(slices: &[EndpointSlice]) -> String {
        let lines: Vec<String> = slices
            .iter()
            .map(|slice| {
                let labels = slice.metadata.labels.as_ref();
                assert_eq!(
                    labels.and_then(|l| l.get(SERVICE_NAME_LABEL)),
                    slice.metadata.owner_references.as_ref().map(|o| &o[0].name)
                );
                assert_eq!(
                    labels
                        .and_then(|l| l.get(MANAGED_BY_LABEL))
                        .map(String::as_str),
                    Some(MANAGED_BY)
                );
                let headless = labels.is_some_and(|l| l.contains_key(HEADLESS_LABEL));
                let ports: Vec<String> = slice
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| {
                        format!(
                            "{}={}/{}",
                            p.name.as_deref().unwrap_or("?"),
                            p.port.unwrap_or_default(),
                            p.protocol.as_deref().unwrap_or("?")
                        )
                    })
                    .collect();
                let endpoints: Vec<String> = slice
                    .endpoints
                    .iter()
                    .map(|e| {
                        let c = e.conditions.clone().unwrap_or_default();
                        let conditions: Vec<&str> = [
                            (c.ready, "ready"),
                            (c.serving, "serving"),
                            (c.terminating, "terminating"),
                        ]
                        .into_iter()
                        .filter(|(set, _)| *set == Some(true))
                        .map(|(_, name)| name)
                        .collect();
                        let pod = e.target_ref.as_ref().and_then(|r| r.name.clone());
                        format!(
                            "{} {} {}",
                            e.addresses.join(","),
                            pod.unwrap_or_default(),
                            if conditions.is_empty() {
                                "-".to_owned()
                            } else {
                                conditions.join(",")
                            }
                        )
                    })
                    .collect();
                format!(
                    "{}{} [{}] {}",
                    slice.metadata.name.as_deref().unwrap_or_default(),
                    if headless { " (headless)" } else { "" },
                    ports.join(" "),
                    endpoints.join("; ")
                )
                .trim_end()
                .to_owned()
            })
            .collect();
        lines.join("\n")
    }

    /// `ns/name ip [affinity]`, then per port `name port/proto [np] -> endpoints`;
    /// `-` when not proxied.
    fn render_proxy(service: Option<ProxyService>) -> String {
        let Some(s) = service else {
            return "-".to_owned();
        };
        let mut out = format!(
            "{}/{} {}",
            s.namespace,
            s.name,
            s.cluster_ip.map_or("-".to_owned(), |ip| ip.to_string())
        );
        if let Some(a) = s.affinity {
            out.push_str(&format!(" affinity={}s", a.as_secs()));
        }
        for p in &s.ports {
            let endpoints: Vec<String> = p
                .endpoints
                .iter()
                .map(|(ip, port)| format!("{ip}:{port}"))
                .collect();
            out.push_str(&format!("\n{} {}/{}", p.name, p.port, p.protocol));
            if let Some(np) = p.node_port {
                out.push_str(&format!(" nodePort={np}"));
            }
            out.push_str(&format!(" -> {}", endpoints.join(" ")));
        }
        out
    }

    #[test]
    fn endpoints() {
        let ready_and_named = json!([
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
        ]);
        let ip = Some([10, 43, 1, 1]);
        // Service spec (added to `selector: {app: web}`), allocation, pods,
        // expected slices, expected proxy entry.
        let cases: Vec<(Value, Assigned, Vec<Pod>, &str, &str)> = vec![
            // Terminating pods are listed, not ready; pods without an IP, that
            // finished, or not selected are not. A pod without the named
            // port gets a slice of its own; one serving it on another number too.
            (
                json!({"ports": ready_and_named}),
                assigned(ip, &[]),
                pods(),
                "
web-7hjpq [http=8080/TCP metrics=9090/TCP] 10.42.0.5 web-1 ready,serving; 10.42.0.7 web-3 serving,terminating
web-zm6l6 [http=8081/TCP metrics=9090/TCP] 10.42.0.6 web-2 -
web-m7g6g [metrics=9090/TCP] 10.42.0.9 web-5 ready,serving",
                "
shop/web 10.43.1.1
http 80/tcp -> 10.42.0.5:8080
metrics 9090/tcp -> 10.42.0.5:9090 10.42.0.9:9090",
            ),
            // Not-ready addresses published: every listed pod takes traffic.
            (
                json!({"ports": ready_and_named, "publishNotReadyAddresses": true}),
                assigned(ip, &[]),
                pods(),
                "
web-7hjpq [http=8080/TCP metrics=9090/TCP] 10.42.0.5 web-1 ready,serving; 10.42.0.7 web-3 ready,serving,terminating
web-zm6l6 [http=8081/TCP metrics=9090/TCP] 10.42.0.6 web-2 ready
web-m7g6g [metrics=9090/TCP] 10.42.0.9 web-5 ready,serving",
                "
shop/web 10.43.1.1
http 80/tcp -> 10.42.0.5:8080 10.42.0.6:8081 10.42.0.7:8080
metrics 9090/tcp -> 10.42.0.5:9090 10.42.0.6:9090 10.42.0.7:9090 10.42.0.9:9090",
            ),
            // Headless: slices (for DNS), no proxying.
            (
                json!({"clusterIP": "None", "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}),
                assigned(None, &[]),
                pods()[..2].to_vec(),
                "web-tkrm2 (headless) [=8080/TCP] 10.42.0.5 web-1 ready,serving; 10.42.0.6 web-2 -",
                "-",
            ),
            // Headless without ports.
            (
                json!({"clusterIP": "None"}),
                assigned(None, &[]),
                pods()[..1].to_vec(),
                "web-dt4hq (headless) [] 10.42.0.5 web-1 ready,serving",
                "-",
            ),
            // Nothing selected: one empty slice, connections refused.
            (
                json!({"ports": [{"port": 53, "targetPort": 53, "protocol": "UDP"}]}),
                assigned(ip, &[]),
                Vec::new(),
                "web-dt4hq []",
                "
shop/web 10.43.1.1
 53/udp -> ",
            ),
            // No selector: no slices (endpoints are someone else's), proxied
            // without endpoints.
            (
                json!({"selector": null, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}),
                assigned(ip, &[]),
                pods(),
                "",
                "
shop/web 10.43.1.1
 80/tcp -> ",
            ),
            // ExternalName: neither.
            (
                json!({"type": "ExternalName", "externalName": "example.com", "ports": [{"port": 80, "targetPort": 80}]}),
                assigned(None, &[]),
                pods(),
                "",
                "-",
            ),
            // NodePorts and ClientIP affinity; a named port matches its
            // protocol too, and sidecars' ports count.
            (
                json!({
                    "type": "NodePort",
                    "sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
                    "ports": [
                        {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
                        {"name": "http", "port": 80, "targetPort": "http", "protocol": "UDP"},
                    ],
                }),
                assigned(ip, &[(Protocol::Udp, 53, 30053), (Protocol::Udp, 80, 30080)]),
                vec![pod("web-1", "web", Some("10.42.0.5"), true, json!({"spec": {"initContainers": [
                    {"name": "dns", "restartPolicy": "Always", "ports": [{"name": "dns", "containerPort": 5353, "protocol": "UDP"}]},
                ]}}))],
                "web-26sq4 [dns=5353/UDP] 10.42.0.5 web-1 ready,serving",
                "
shop/web 10.43.1.1 affinity=600s
dns 53/udp nodePort=30053 -> 10.42.0.5:5353
http 80/udp nodePort=30080 -> ",
            ),
            // Not proxied without a ClusterIP (its allocation failed).
            (
                json!({"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}),
                assigned(None, &[]),
                Vec::new(),
                "web-dt4hq []",
                "-",
            ),
        ];
        for (i, (spec, assigned, pods, slices, proxy)) in cases.into_iter().enumerate() {
            let svc = web(spec);
            let got = render_slices(&endpoint_slices(&svc, &assigned, &pods));
            assert_eq!(got, slices.trim(), "case {i} slices:\n{got}");
            let got = render_proxy(proxy_service(&svc, &assigned, &pods));
            assert_eq!(got, proxy.trim_start(), "case {i} proxy:\n{got}");
        }
    }

    #[test]
    fn slice_json() {
        // A pod naming the Service as its subdomain is published with its hostname.
        let svc = web(
            json!({"ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}]}),
        );
        let pods = [pod(
            "web-0",
            "web",
            Some("10.42.0.5"),
            true,
            json!({"spec": {"hostname": "web-0", "subdomain": "web"}}),
        )];
        assert_eq!(
            slices_json(&svc, &assigned(Some([10, 43, 1, 1]), &[]), &pods),
            json!([{
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "web-jl42g",
                    "namespace": "shop",
                    "labels": {
                        "endpointslice.kubernetes.io/managed-by": "outpost.io/endpointslice-controller",
                        "kubernetes.io/service-name": "web",
                        "tier": "front"
                    },
                    "ownerReferences": [{
                        "apiVersion": "v1",
                        "kind": "Service",
                        "name": "web",
                        "uid": "svc-uid",
                        "controller": true,
                        "blockOwnerDeletion": true
                    }]
                },
                "addressType": "IPv4",
                "endpoints": [{
                    "addresses": ["10.42.0.5"],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "hostname": "web-0",
                    "nodeName": "edge-1",
                    "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-0", "uid": "uid-web-0"}
                }],
                "ports": [{"name": "http", "protocol": "TCP", "port": 8080, "appProtocol": "http"}]
            }])
        );
    }

    #[test]
    fn slice_names() {
        // Stable for a Service and its ports; long names cut as generateName does.
        let long = "a".repeat(63);
        let svc = service(json!({
            "metadata": {"name": long, "namespace": "shop"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        }));
        let pods: Vec<Pod> = (0..250)
            .map(|i| {
                let ip = format!("10.42.{}.{}", i / 200, i % 200 + 2);
                pod(&format!("web-{i:03}"), "web", Some(&ip), true, json!({}))
            })
            .collect();
        let a = assigned(Some([10, 43, 1, 1]), &[]);
        let slices = endpoint_slices(&svc, &a, &pods);
        let names: Vec<&str> = slices
            .iter()
            .map(|s| s.metadata.name.as_deref().unwrap_or_default())
            .collect();
        let sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50], "at most 100 endpoints a slice");
        for name in &names {
            assert_eq!(name.len(), 63, "{name}");
            // generateName's base is cut to 58 bytes, its dash too.
            assert!(name.starts_with(&"a".repeat(58)), "{name}");
        }
        assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), 3, "{names:?}");
        let again = endpoint_slices(&svc, &a, &pods[..120]);
        let again: Vec<&str> = again
            .iter()
            .map(|s| s.metadata.name.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(again, names[..2], "the same names when pods come and go");
    }

    #[test]
    fn host_port_list() {
        let with_ports = |name: &str, ip: Option<&str>, fields: Value, ports: Value| {
            let mut extra = json!({"spec": {"containers": [{"name": "app", "ports": ports}]}});
            merge(&mut extra, fields);
            pod(name, "web", ip, true, extra)
        };
        let pods = vec![
            with_ports(
                "a",
                Some("10.42.0.5"),
                json!({}),
                json!([
                    {"containerPort": 8080, "hostPort": 80},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"},
                    {"containerPort": 9090},
                    {"containerPort": 7000, "hostPort": 7000, "protocol": "SCTP"},
                    {"containerPort": 443, "hostPort": 443, "hostIP": "::"},
                    {"containerPort": 8443, "hostPort": 8443, "hostIP": "0.0.0.0"},
                ]),
            ),
            with_ports(
                "host",
                Some("192.168.1.10"),
                json!({"spec": {"hostNetwork": true}}),
                json!([{"containerPort": 22, "hostPort": 22}]),
            ),
            with_ports(
                "pending",
                None,
                json!({}),
                json!([{"containerPort": 80, "hostPort": 81}]),
            ),
            with_ports(
                "done",
                Some("10.42.0.8"),
                json!({"status": {"phase": "Failed"}}),
                json!([{"containerPort": 80, "hostPort": 82}]),
            ),
            with_ports(
                "sidecar",
                Some("10.42.0.9"),
                json!({"spec": {"initContainers": [
                    {"name": "proxy", "restartPolicy": "Always", "ports": [{"containerPort": 15001, "hostPort": 15001}]},
                    {"name": "init", "ports": [{"containerPort": 1, "hostPort": 1}]},
                ]}}),
                json!([]),
            ),
        ];
        let got: Vec<String> = host_ports(&pods)
            .iter()
            .map(|h| {
                let host = h.host_ip.map_or("*".to_owned(), |ip| ip.to_string());
                format!(
                    "{} {host}:{} -> {}:{}",
                    h.protocol, h.host_port, h.pod_ip, h.container_port
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "tcp *:80 -> 10.42.0.5:8080",
                "tcp *:8443 -> 10.42.0.5:8443",
                "tcp *:15001 -> 10.42.0.9:15001",
                "udp 127.0.0.1:5353 -> 10.42.0.5:53",
            ]
        );
    }

    #[test]
    fn published_services() {
        let node_ips = [Ipv4Addr::new(192, 168, 1, 10)];
        let ports = json!([
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP", "nodePort": 30053},
        ]);
        let a = assigned(
            Some([10, 43, 1, 7]),
            &[(Protocol::Tcp, 80, 30086), (Protocol::Udp, 53, 30053)],
        );
        let check = |kind: &str, a: &Assigned, expect: Value| {
            let svc = web(json!({"type": kind, "ports": ports}));
            let got = serde_json::to_value(published(&svc, a, &node_ips)).expect("json");
            assert_eq!(got["metadata"]["uid"], "svc-uid");
            let got = json!({"spec": got["spec"], "status": got["status"]});
            assert_eq!(got, expect, "{kind}");
        };
        let spec = |kind: &str| {
            json!({
                "type": kind,
                "selector": {"app": "web"},
                "sessionAffinity": "None",
                "clusterIP": "10.43.1.7",
                "clusterIPs": ["10.43.1.7"],
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30086},
                    {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP", "nodePort": 30053},
                ],
            })
        };
        check(
            "NodePort",
            &a,
            json!({"spec": spec("NodePort"), "status": {"loadBalancer": {}}}),
        );
        check(
            "LoadBalancer",
            &a,
            json!({"spec": spec("LoadBalancer"), "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.10", "ipMode": "VIP"}]}}}),
        );
        let headless = web(json!({"clusterIP": "None", "clusterIPs": ["None"]}));
        let got = serde_json::to_value(published(&headless, &assigned(None, &[]), &node_ips))
            .expect("json");
        assert_eq!(got["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(got["status"], json!({"loadBalancer": {}}));
    }
}
