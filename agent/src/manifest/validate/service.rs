//! Service validation (`ValidateService` and what it calls), for what outpost
//! runs on one IPv4 node: ClusterIP, headless, NodePort, LoadBalancer (served
//! on the node's addresses, as k3s's ServiceLB does) and ExternalName.
//! Fields outpost cannot honour (SCTP, IPv6, externalIPs, source ranges) are
//! refused, so a Service never runs half-configured. The ClusterIP range and
//! taken addresses are checked when the agent allocates (`services::alloc`).

use std::collections::HashSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{meta, names, Errors, NameFormat, Path};
use crate::services::NODE_PORT_RANGE;

const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";

/// The most seconds a ClientIP affinity lasts (a day).
const AFFINITY_MAX_SECONDS: i32 = 86400;

pub(super) fn service(e: &mut Errors, svc: &Service) {
    service_meta(e, svc);
    let p = Path::new("spec");
    let Some(spec) = svc.spec.as_ref() else {
        return e.required(&p);
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
    let cluster_ips = spec.cluster_ips.as_deref().unwrap_or_default();
    let headless = cluster_ips.len() == 1 && cluster_ips[0] == "None";
    let ports = spec.ports.as_deref().unwrap_or_default();

    if ports.is_empty() && !headless && kind != "ExternalName" {
        e.required(&p.child("ports"));
    }
    match kind {
        "NodePort" | "LoadBalancer" if headless => e.invalid(
            &p.child("clusterIP"),
            cluster_ip,
            &format!("may not be set to 'None' for {kind} services"),
        ),
        "ExternalName" => external_name(e, spec, &p),
        _ => {}
    }

    let mut port_names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        service_port(
            e,
            port,
            ports.len() > 1,
            &mut port_names,
            &p.child("ports").index(i),
        );
    }

    let selector = p.child("selector");
    for (key, value) in spec.selector.iter().flatten() {
        e.invalid_all(&selector, key, names::qualified_name(key));
        e.invalid_all(&selector, value, names::label_value(value));
    }

    session_affinity(e, spec, &p);
    if kind != "ExternalName" {
        cluster_ips_and_families(e, spec, &p, headless);
    }
    if spec
        .external_ips
        .as_ref()
        .is_some_and(|ips| !ips.is_empty())
    {
        e.not_supported(
            &p.child("externalIPs"),
            "externalIPs are not supported by outpost: use a NodePort or LoadBalancer service, reachable on the node's addresses".to_owned(),
        );
    }

    if !["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"].contains(&kind) {
        e.unsupported(
            &p.child("type"),
            kind,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        );
    }
    node_ports(e, ports, kind, &p);
    let mut seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let key = format!(
            "{}/{}",
            port.port,
            port.protocol.as_deref().unwrap_or("TCP")
        );
        if !seen.insert(key.clone()) {
            e.duplicate(&p.child("ports").index(i), &key);
        }
    }

    load_balancer(e, spec, &p);
    traffic_policies(e, spec, kind, &p);
}

/// ObjectMeta, with the Service name a DNS-1035 label (it becomes a DNS name
/// and environment variable names in pods).
fn service_meta(e: &mut Errors, svc: &Service) {
    match svc.metadata.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => {
            e.invalid_all(&Path::new("metadata.name"), name, dns1035_label(name));
            // The rest of the metadata as any object's, the name checked above.
            let mut rest = svc.metadata.clone();
            rest.name = Some("a".to_owned());
            meta(e, &rest, NameFormat::Label, true);
        }
        None => meta(e, &svc.metadata, NameFormat::Label, true),
    }
}

/// IsDNS1035Label.
fn dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    let b = value.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let valid = b.first().is_some_and(u8::is_ascii_lowercase)
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter().all(inner);
    if !valid {
        // The API server's regex message (the double space is its own).
        errs.push(format!(
            "{DNS1035_LABEL_MSG} (e.g. 'my-name',  or 'abc-123', regex used for validation is '{DNS1035_LABEL_FMT}')"
        ));
    }
    errs
}

fn external_name(e: &mut Errors, spec: &ServiceSpec, p: &Path) {
    if spec.cluster_ips.as_ref().is_some_and(|ips| !ips.is_empty()) {
        e.forbidden(
            &p.child("clusterIPs"),
            "may not be set for ExternalName services",
        );
    }
    if spec.ip_families.as_ref().is_some_and(|f| !f.is_empty()) {
        e.forbidden(
            &p.child("ipFamilies"),
            "may not be set for ExternalName services",
        );
    }
    if spec.ip_family_policy.is_some() {
        e.forbidden(
            &p.child("ipFamilyPolicy"),
            "may not be set for ExternalName services",
        );
    }
    // A CNAME may end with a dot (fully qualified).
    let name = spec.external_name.as_deref().unwrap_or_default();
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        e.required(&p.child("externalName"));
    } else {
        e.invalid_all(
            &p.child("externalName"),
            name,
            names::dns1123_subdomain(name),
        );
    }
}

/// validateServicePort: a name (required when there are several), the port,
/// the protocol and the target port (a number or a container port's name).
fn service_port(
    e: &mut Errors,
    port: &ServicePort,
    require_name: bool,
    seen: &mut HashSet<String>,
    p: &Path,
) {
    match port.name.as_deref().unwrap_or_default() {
        "" if require_name => e.required(&p.child("name")),
        "" => {}
        name => {
            e.invalid_all(&p.child("name"), name, names::dns1123_label(name));
            if !seen.insert(name.to_owned()) {
                e.duplicate(&p.child("name"), name);
            }
        }
    }
    port_number(e, &p.child("port"), port.port);
    match port.protocol.as_deref().unwrap_or_default() {
        "" => e.required(&p.child("protocol")),
        "SCTP" => e.not_supported(
            &p.child("protocol"),
            "SCTP is not supported by outpost: use TCP or UDP".to_owned(),
        ),
        protocol => e.one_of(&p.child("protocol"), protocol, &["TCP", "UDP"]),
    }
    match port.target_port.as_ref() {
        Some(IntOrString::Int(n)) => port_number(e, &p.child("targetPort"), *n),
        Some(IntOrString::String(name)) => {
            e.invalid_all(&p.child("targetPort"), name, names::port_name(name))
        }
        None => {}
    }
    if let Some(app) = port.app_protocol.as_deref() {
        e.invalid_all(&p.child("appProtocol"), app, names::qualified_name(app));
    }
}

fn port_number(e: &mut Errors, p: &Path, port: i32) {
    if !(1..=65535).contains(&port) {
        e.invalid_number(p, port.into(), "must be between 1 and 65535, inclusive");
    }
}

fn session_affinity(e: &mut Errors, spec: &ServiceSpec, p: &Path) {
    let path = p.child("sessionAffinity");
    match spec.session_affinity.as_deref().unwrap_or_default() {
        "" => e.required(&path),
        "None" => {
            if spec.session_affinity_config.is_some() {
                e.forbidden(
                    &p.child("sessionAffinityConfig"),
                    "must not be set when session affinity is None",
                );
            }
        }
        "ClientIP" => {
            let cp = p.child("sessionAffinityConfig");
            let why = "when session affinity type is ClientIP";
            let Some(config) = spec.session_affinity_config.as_ref() else {
                return e.required_because(&cp, why);
            };
            let cp = cp.child("clientIP");
            let Some(client) = config.client_ip.as_ref() else {
                return e.required_because(&cp, why);
            };
            let tp = cp.child("timeoutSeconds");
            match client.timeout_seconds {
                None => e.required_because(&tp, why),
                Some(t) if t <= 0 || t > AFFINITY_MAX_SECONDS => e.invalid_number(
                    &tp,
                    t.into(),
                    &format!("must be greater than 0 and less than {AFFINITY_MAX_SECONDS}"),
                ),
                Some(_) => {}
            }
        }
        other => e.unsupported(&path, other, &["ClientIP", "None"]),
    }
}

/// ValidateServiceClusterIPsRelatedFields, for one IPv4 family: `clusterIP`
/// is empty (allocated), `None` (headless) or an IPv4 address, and the
/// plural fields agree with it.
fn cluster_ips_and_families(e: &mut Errors, spec: &ServiceSpec, p: &Path, headless: bool) {
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
    let cluster_ips = spec.cluster_ips.as_deref().unwrap_or_default();
    let ips_path = p.child("clusterIPs");
    if cluster_ip.is_empty() {
        if !cluster_ips.is_empty() {
            e.invalid(
                &ips_path,
                &cluster_ips.join(","),
                "must be empty when `clusterIP` is not specified",
            );
        }
    } else if cluster_ips.first().map(String::as_str) != Some(cluster_ip) {
        e.invalid(
            &ips_path,
            &cluster_ips.join(","),
            "first value must match `clusterIP`",
        );
    }
    if cluster_ips.len() > 1 {
        if cluster_ips[0] == "None" {
            e.invalid(
                &ips_path,
                &cluster_ips.join(","),
                "'None' must be the first and only value",
            );
        } else {
            e.not_supported(
                &ips_path,
                "dual-stack services are not supported by outpost: give one IPv4 address"
                    .to_owned(),
            );
        }
    }
    match cluster_ip {
        "" | "None" => {}
        ip => match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => {}
            Ok(IpAddr::V6(_)) => e.not_supported(
                &p.child("clusterIP"),
                format!("{ip:?}: IPv6 is not supported by outpost: give an IPv4 address, or leave clusterIP empty to have one allocated"),
            ),
            Err(_) => e.invalid(
                &p.child("clusterIP"),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ),
        },
    }

    let families = p.child("ipFamilies");
    let mut seen = HashSet::new();
    for (i, family) in spec.ip_families.iter().flatten().enumerate() {
        let fp = families.index(i);
        match family.as_str() {
            "IPv4" => {}
            "IPv6" => e.not_supported(
                &fp,
                "IPv6 is not supported by outpost: services are IPv4 only".to_owned(),
            ),
            other => e.unsupported(&fp, other, &["IPv4", "IPv6"]),
        }
        if !seen.insert(family.as_str()) {
            e.duplicate(&fp, family);
        }
    }
    if let Some(policy) = spec.ip_family_policy.as_deref() {
        let pp = p.child("ipFamilyPolicy");
        e.one_of(
            &pp,
            policy,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        );
        let selectorless = spec.selector.as_ref().is_none_or(|s| s.is_empty());
        // Only a headless service without a selector may ask for every
        // family on a single-stack cluster.
        if policy == "RequireDualStack" && !(headless && selectorless) {
            e.invalid(
                &pp,
                policy,
                "this cluster is not configured for dual-stack services",
            );
        }
    }
}

/// NodePorts: only for NodePort and LoadBalancer services, in the range,
/// each (protocol, nodePort) once.
fn node_ports(e: &mut Errors, ports: &[ServicePort], kind: &str, p: &Path) {
    let mut seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let Some(node_port) = port.node_port.filter(|n| *n != 0) else {
            continue;
        };
        let np = p.child("ports").index(i).child("nodePort");
        if matches!(kind, "ClusterIP" | "ExternalName") {
            e.forbidden(&np, &format!("may not be used when `type` is '{kind}'"));
            continue;
        }
        let in_range = u16::try_from(node_port).is_ok_and(|n| NODE_PORT_RANGE.contains(&n));
        if !in_range {
            e.invalid_number(
                &np,
                node_port.into(),
                &format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORT_RANGE.start(),
                    NODE_PORT_RANGE.end()
                ),
            );
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !seen.insert((protocol, node_port)) {
            e.push(&np, format!("duplicate value: {node_port}"));
        }
    }
}

/// What a cloud load balancer would do and the node's addresses cannot.
fn load_balancer(e: &mut Errors, spec: &ServiceSpec, p: &Path) {
    if spec
        .load_balancer_source_ranges
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        e.not_supported(
            &p.child("loadBalancerSourceRanges"),
            "loadBalancerSourceRanges is not supported by outpost: a LoadBalancer service is reachable from anywhere on the node's addresses".to_owned(),
        );
    }
    if spec
        .load_balancer_ip
        .as_deref()
        .is_some_and(|ip| !ip.is_empty())
    {
        e.not_supported(
            &p.child("loadBalancerIP"),
            "loadBalancerIP is not supported by outpost: a LoadBalancer service gets the node's addresses".to_owned(),
        );
    }
}

/// validateServiceExternalTrafficPolicy, validateServiceInternalTrafficFieldsValue
/// and validateServiceTrafficDistribution.
fn traffic_policies(e: &mut Errors, spec: &ServiceSpec, kind: &str, p: &Path) {
    let external_ips = spec
        .external_ips
        .as_ref()
        .is_some_and(|ips| !ips.is_empty());
    let externally_accessible =
        matches!(kind, "NodePort" | "LoadBalancer") || (kind == "ClusterIP" && external_ips);
    let etp = p.child("externalTrafficPolicy");
    match spec.external_traffic_policy.as_deref().unwrap_or_default() {
        "" if externally_accessible => e.required(&etp),
        "" => {}
        policy if !externally_accessible => e.invalid(
            &etp,
            policy,
            "may only be set for externally-accessible services",
        ),
        policy => e.one_of(&etp, policy, &["Cluster", "Local"]),
    }
    if let Some(port) = spec.health_check_node_port.filter(|p| *p != 0) {
        let hp = p.child("healthCheckNodePort");
        if kind == "LoadBalancer" && spec.external_traffic_policy.as_deref() == Some("Local") {
            e.not_supported(
                &hp,
                "healthCheckNodePort is not supported by outpost: every endpoint is on this node"
                    .to_owned(),
            );
        } else {
            e.invalid_number(
                &hp,
                port.into(),
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            );
        }
    }
    let itp = p.child("internalTrafficPolicy");
    match spec.internal_traffic_policy.as_deref() {
        None if matches!(kind, "ClusterIP" | "NodePort" | "LoadBalancer") => {
            e.required_because(&itp, "must specify internalTrafficPolicy")
        }
        None => {}
        Some(policy) => e.one_of(&itp, policy, &["Cluster", "Local"]),
    }
    if let Some(distribution) = spec.traffic_distribution.as_deref() {
        e.one_of(
            &p.child("trafficDistribution"),
            distribution,
            &["PreferClose", "PreferSameNode", "PreferSameZone"],
        );
    }
}
