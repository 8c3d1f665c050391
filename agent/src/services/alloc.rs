//! ClusterIPs and NodePorts: which Service holds which, kept across agent
//! restarts in `<state>/services.json`.
//!
//! [`Allocations::sync`] is level-triggered: given every declared Service it
//! keeps what each still holds and still wants, honours requested addresses
//! and ports, allocates the rest, and releases what Services that are gone
//! held. Running it again on the same Services changes nothing.
//!
//! As the API server does, each range has a small static band at its start
//! (for addresses users ask for) and a dynamic band after it; dynamic
//! allocation is next-fit from where the last one ended, so an address just
//! released is reused only once the rest of the band has been handed out
//! (clients and DNS caches may still hold it). The range's first address is
//! the `kubernetes` Service's and the cluster DNS address `kube-dns`'s: never
//! handed out unasked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::path::Path;

use k8s_openapi::api::core::v1::Service;
use serde::{Deserialize, Serialize};

use outpost_net::proxy::Protocol;

use super::{
    protocol_name, PortKey, ServiceKey, ServiceType, DEFAULT_DNS_IP, DEFAULT_SERVICE_CIDR,
    NODE_PORT_RANGE,
};

/// Who the range's first address is for.
const KUBERNETES_SERVICE: (&str, &str) = ("default", "kubernetes");
/// Who the cluster DNS address is for.
const CLUSTER_DNS_SERVICE: (&str, &str) = ("kube-system", "kube-dns");

/// The ranges Services get their addresses and ports from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocConfig {
    network: u32,
    prefix: u8,
    dns_ip: Option<Ipv4Addr>,
    node_ports: RangeInclusive<u16>,
}

impl Default for AllocConfig {
    /// 10.43.0.0/16, DNS at 10.43.0.10, NodePorts 30000-32767.
    fn default() -> Self {
        AllocConfig {
            network: u32::from(DEFAULT_SERVICE_CIDR.0),
            prefix: DEFAULT_SERVICE_CIDR.1,
            dns_ip: Some(DEFAULT_DNS_IP),
            node_ports: NODE_PORT_RANGE,
        }
    }
}

impl AllocConfig {
    /// Checks the ranges: a service CIDR from /12 (a million addresses, the
    /// API server's limit) to /29, the DNS address inside it.
    pub fn new(
        service_cidr: (Ipv4Addr, u8),
        dns_ip: Option<Ipv4Addr>,
        node_ports: RangeInclusive<u16>,
    ) -> Result<AllocConfig, String> {
        let (addr, prefix) = service_cidr;
        if !(12..=29).contains(&prefix) {
            return Err(format!(
                "service CIDR {addr}/{prefix}: the prefix length must be between 12 and 29"
            ));
        }
        let config = AllocConfig {
            network: u32::from(addr) & mask(prefix),
            prefix,
            dns_ip,
            node_ports,
        };
        if let Some(dns) = dns_ip {
            if !config.usable(dns) || config.offset(dns) == Some(1) {
                return Err(format!(
                    "cluster DNS address {dns} is not a usable address of the service CIDR {} (the first address is the kubernetes service's)",
                    config.cidr()
                ));
            }
        }
        let ports = &config.node_ports;
        if ports.is_empty() || *ports.start() == 0 {
            return Err(format!(
                "NodePort range {}-{} is empty",
                ports.start(),
                ports.end()
            ));
        }
        Ok(config)
    }

    /// The service CIDR, `10.43.0.0/16`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }

    /// The service CIDR as the proxy takes it.
    pub fn service_cidr(&self) -> (Ipv4Addr, u8) {
        (Ipv4Addr::from(self.network), self.prefix)
    }

    /// The cluster DNS address, if one is reserved.
    pub fn dns_ip(&self) -> Option<Ipv4Addr> {
        self.dns_ip
    }

    fn size(&self) -> u32 {
        // prefix >= 12: at most 2^20.
        1u32 << (32 - u32::from(self.prefix))
    }

    /// The address's offset in the range, if it is in it.
    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        let ip = u32::from(ip);
        (ip & mask(self.prefix) == self.network).then(|| ip - self.network)
    }

    fn at(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.network + offset)
    }

    /// In the range, and neither its network nor its broadcast address.
    fn usable(&self, ip: Ipv4Addr) -> bool {
        self.offset(ip)
            .is_some_and(|o| o != 0 && o != self.size() - 1)
    }

    /// The Service an address is kept for, if any.
    fn reserved_for(&self, ip: Ipv4Addr) -> Option<(&'static str, &'static str)> {
        if self.offset(ip) == Some(1) {
            Some(KUBERNETES_SERVICE)
        } else if Some(ip) == self.dns_ip {
            Some(CLUSTER_DNS_SERVICE)
        } else {
            None
        }
    }
}

/// The cluster DNS address Kubernetes distributions pick for a service CIDR:
/// its tenth address (10.43.0.10 for 10.43.0.0/16).
pub fn default_dns_ip(service_cidr: (Ipv4Addr, u8)) -> Ipv4Addr {
    let (addr, prefix) = service_cidr;
    Ipv4Addr::from((u32::from(addr) & mask(prefix.min(32))) + 10)
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// What a Service holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The Service's `metadata.uid`: new when a record is first made, then
    /// kept (EndpointSlices name it as their owner).
    pub uid: String,
    /// `None` for headless and ExternalName Services.
    pub cluster_ip: Option<Ipv4Addr>,
    /// The NodePort of each port that has one.
    pub node_ports: BTreeMap<PortKey, u16>,
}

/// Why a Service got no (complete) allocation: it is left out of what
/// [`Allocations::sync`] returns until this is fixed, and keeps what it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub service: ServiceKey,
    /// `spec.clusterIP`, `spec.ports[0].nodePort`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    /// `Service default/web: spec.clusterIP: invalid value: "10.50.0.1": provided IP is …`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Service {}: {}: {}",
            self.service, self.field, self.message
        )
    }
}

impl std::error::Error for Problem {}

/// Every Service's addresses, as persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocations {
    /// Counts records ever made: makes every uid new.
    #[serde(default)]
    serial: u64,
    /// Where the last dynamic allocations ended (next-fit).
    #[serde(
        default,
        rename = "lastClusterIP",
        skip_serializing_if = "Option::is_none"
    )]
    last_cluster_ip: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_node_port: Option<u16>,
    /// By `namespace/name`.
    #[serde(default)]
    services: BTreeMap<String, Record>,
}

/// What one Service holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    uid: String,
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    cluster_ip: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    node_ports: Vec<NodePortRecord>,
}

/// A NodePort and the Service port it is for (matched again by name, else
/// by number, so renaming or renumbering a port keeps its NodePort).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodePortRecord {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    port: u16,
    protocol: String,
    node_port: u16,
}

/// What a Service asks for.
struct Want {
    ip: IpWant,
    ports: Vec<PortWant>,
}

enum IpWant {
    None,
    Any,
    Exact(Ipv4Addr),
    /// Not an IPv4 address (validation refuses it; reported all the same).
    Invalid(String),
}

/// A port that gets a NodePort.
struct PortWant {
    /// Its index in `spec.ports`, for messages.
    index: usize,
    name: String,
    key: PortKey,
    /// `spec.ports[].nodePort`, when given.
    request: Option<i32>,
}

impl PortWant {
    fn field(&self) -> String {
        format!("spec.ports[{}].nodePort", self.index)
    }
}

fn want(svc: &Service) -> Want {
    let kind = ServiceType::of(svc);
    let spec = svc.spec.as_ref();
    let ip = if !kind.has_cluster_ip() {
        IpWant::None
    } else {
        match spec.and_then(|s| s.cluster_ip.as_deref()).unwrap_or("") {
            "" => IpWant::Any,
            ip => match ip.parse() {
                Ok(ip) => IpWant::Exact(ip),
                Err(_) => IpWant::Invalid(ip.to_owned()),
            },
        }
    };
    let allocate = match kind {
        ServiceType::NodePort => true,
        ServiceType::LoadBalancer => {
            spec.and_then(|s| s.allocate_load_balancer_node_ports) != Some(false)
        }
        _ => false,
    };
    let mut ports = Vec::new();
    if matches!(kind, ServiceType::NodePort | ServiceType::LoadBalancer) {
        for (index, port) in spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(key) = PortKey::of(port) else {
                continue;
            };
            let request = port.node_port.filter(|n| *n != 0);
            if allocate || request.is_some() {
                ports.push(PortWant {
                    index,
                    name: port.name.clone().unwrap_or_default(),
                    key,
                    request,
                });
            }
        }
    }
    Want { ip, ports }
}

/// One Service's allocation while a sync runs.
struct Work {
    ip: Option<Ipv4Addr>,
    /// Aligned with `Want::ports`.
    ports: Vec<Option<u16>>,
    problems: Vec<Problem>,
}

impl Work {
    /// Whether another port of the Service has `node_port` for `protocol`
    /// (ports of different protocols may share one).
    fn has(&self, want: &Want, protocol: Protocol, node_port: u16) -> bool {
        want.ports
            .iter()
            .zip(&self.ports)
            .any(|(w, got)| w.key.protocol == protocol && *got == Some(node_port))
    }
}

impl Allocations {
    /// Brings the allocations in line with `services` (every declared
    /// Service, validated): what each holds, or why it could not get it.
    pub fn sync(
        &mut self,
        config: &AllocConfig,
        services: &[&Service],
    ) -> (BTreeMap<ServiceKey, Assigned>, Vec<Problem>) {
        let mut wants: BTreeMap<ServiceKey, Want> = BTreeMap::new();
        for svc in services {
            wants
                .entry(ServiceKey::of(svc))
                .or_insert_with(|| want(svc));
        }
        let ids: BTreeSet<String> = wants.keys().map(ToString::to_string).collect();
        // Services that are gone release everything.
        self.services.retain(|id, _| ids.contains(id));

        let mut ip_owner: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        let mut port_owner: BTreeMap<u16, String> = BTreeMap::new();
        let mut work: BTreeMap<&ServiceKey, Work> = BTreeMap::new();

        // What each Service holds and still wants stays first, so requests
        // and new allocations work around it.
        for (key, want) in &wants {
            let id = key.to_string();
            if !self.services.contains_key(&id) {
                self.serial += 1;
                let record = Record {
                    uid: uid(key, self.serial),
                    cluster_ip: None,
                    node_ports: Vec::new(),
                };
                self.services.insert(id.clone(), record);
            }
            let Some(record) = self.services.get(&id) else {
                continue;
            };
            let ip = record
                .cluster_ip
                .filter(|ip| match want.ip {
                    IpWant::Any => true,
                    IpWant::Exact(wanted) => wanted == *ip,
                    IpWant::None | IpWant::Invalid(_) => false,
                })
                .filter(|ip| config.usable(*ip) && !reserved_for_other(config, *ip, key))
                .filter(|ip| !ip_owner.contains_key(ip));
            if let Some(ip) = ip {
                ip_owner.insert(ip, id.clone());
            }
            let mut w = Work {
                ip,
                ports: vec![None; want.ports.len()],
                problems: Vec::new(),
            };
            let mut old: Vec<Option<&NodePortRecord>> =
                record.node_ports.iter().map(Some).collect();
            let mut matched = vec![false; want.ports.len()];
            for by_name in [true, false] {
                for (i, pw) in want.ports.iter().enumerate() {
                    if matched[i] {
                        continue;
                    }
                    let found = old.iter_mut().find(|o| {
                        o.is_some_and(|o| {
                            o.protocol == protocol_name(pw.key.protocol)
                                && if by_name {
                                    !pw.name.is_empty() && o.name == pw.name
                                } else {
                                    o.port == pw.key.port
                                }
                        })
                    });
                    let Some(o) = found.and_then(Option::take) else {
                        continue;
                    };
                    matched[i] = true;
                    let np = o.node_port;
                    let keep = pw.request.is_none_or(|r| r == i32::from(np))
                        && config.node_ports.contains(&np)
                        && port_owner.get(&np).is_none_or(|owner| *owner == id)
                        && !w.has(want, pw.key.protocol, np);
                    if keep {
                        w.ports[i] = Some(np);
                        port_owner.insert(np, id.clone());
                    }
                }
            }
            work.insert(key, w);
        }

        // Requested addresses and ports, Services in name order.
        for (key, want) in &wants {
            let id = key.to_string();
            let Some(w) = work.get_mut(key) else { continue };
            let problem = |field: String, message: String| Problem {
                service: key.clone(),
                field,
                message,
            };
            match &want.ip {
                IpWant::Exact(ip) if w.ip.is_none() => {
                    let field = "spec.clusterIP".to_owned();
                    let invalid = |why: &str| format!("invalid value: \"{ip}\": {why}");
                    if !config.usable(*ip) {
                        let why = format!(
                            "provided IP is not in the valid range. The range of valid IPs is {}",
                            config.cidr()
                        );
                        w.problems.push(problem(field, invalid(&why)));
                    } else if let Some((ns, name)) = config
                        .reserved_for(*ip)
                        .filter(|_| reserved_for_other(config, *ip, key))
                    {
                        let why = format!(
                            "provided IP is already allocated: it is reserved for the Service {ns}/{name}"
                        );
                        w.problems.push(problem(field, invalid(&why)));
                    } else if ip_owner.contains_key(ip) {
                        w.problems
                            .push(problem(field, invalid("provided IP is already allocated")));
                    } else {
                        ip_owner.insert(*ip, id.clone());
                        w.ip = Some(*ip);
                    }
                }
                IpWant::Invalid(ip) => w.problems.push(problem(
                    "spec.clusterIP".to_owned(),
                    format!("invalid value: {ip:?}: must be a valid IPv4 address"),
                )),
                _ => {}
            }
            for (i, pw) in want.ports.iter().enumerate() {
                let Some(request) = pw.request.filter(|_| w.ports[i].is_none()) else {
                    continue;
                };
                let in_range = u16::try_from(request)
                    .ok()
                    .filter(|n| config.node_ports.contains(n));
                let why = match in_range {
                    None => Some(format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        config.node_ports.start(),
                        config.node_ports.end()
                    )),
                    Some(np)
                        if port_owner.get(&np).is_some_and(|owner| *owner != id)
                            || w.has(want, pw.key.protocol, np) =>
                    {
                        Some("provided port is already allocated".to_owned())
                    }
                    Some(np) => {
                        port_owner.insert(np, id.clone());
                        w.ports[i] = Some(np);
                        None
                    }
                };
                if let Some(why) = why {
                    let message = format!("invalid value: {request}: {why}");
                    w.problems.push(problem(pw.field(), message));
                }
            }
        }

        // Everything else, from the dynamic bands.
        let ip_band = static_band(config.size(), 16, 256);
        let (ip_lo, ip_hi) = (1, config.size() - 2);
        let port_lo = u32::from(*config.node_ports.start());
        let port_hi = u32::from(*config.node_ports.end());
        let port_band = static_band(port_hi - port_lo + 1, 32, 128);
        for (key, want) in &wants {
            let id = key.to_string();
            let Some(w) = work.get_mut(key) else { continue };
            if matches!(want.ip, IpWant::Any) && w.ip.is_none() {
                let last = self.last_cluster_ip.and_then(|ip| config.offset(ip));
                let free = |o: u32| {
                    let ip = config.at(o);
                    config.reserved_for(ip).is_none() && !ip_owner.contains_key(&ip)
                };
                match next_free(ip_lo, ip_lo + ip_band, ip_hi, last, free) {
                    Some(o) => {
                        let ip = config.at(o);
                        ip_owner.insert(ip, id.clone());
                        w.ip = Some(ip);
                        self.last_cluster_ip = Some(ip);
                    }
                    None => w.problems.push(Problem {
                        service: key.clone(),
                        field: "spec.clusterIP".to_owned(),
                        message: format!(
                            "failed to allocate a service IP: range {} is full",
                            config.cidr()
                        ),
                    }),
                }
            }
            for (i, pw) in want.ports.iter().enumerate() {
                if pw.request.is_some() || w.ports[i].is_some() {
                    continue;
                }
                // A port number served over TCP and UDP (DNS) gets one
                // NodePort for both, as the API server does.
                let shared = want
                    .ports
                    .iter()
                    .zip(&w.ports)
                    .find(|(other, got)| {
                        other.key.port == pw.key.port
                            && other.key.protocol != pw.key.protocol
                            && got.is_some()
                    })
                    .and_then(|(_, got)| *got)
                    .filter(|np| !w.has(want, pw.key.protocol, *np));
                if let Some(np) = shared {
                    w.ports[i] = Some(np);
                    continue;
                }
                let last = self.last_node_port.map(u32::from);
                let free = |p: u32| u16::try_from(p).is_ok_and(|p| !port_owner.contains_key(&p));
                match next_free(port_lo, port_lo + port_band, port_hi, last, free)
                    .and_then(|p| u16::try_from(p).ok())
                {
                    Some(np) => {
                        port_owner.insert(np, id.clone());
                        w.ports[i] = Some(np);
                        self.last_node_port = Some(np);
                    }
                    None => w.problems.push(Problem {
                        service: key.clone(),
                        field: pw.field(),
                        message: format!(
                            "failed to allocate a nodePort: range {}-{} is full",
                            config.node_ports.start(),
                            config.node_ports.end()
                        ),
                    }),
                }
            }
        }

        let mut assigned = BTreeMap::new();
        let mut problems = Vec::new();
        for (key, want) in &wants {
            let (Some(w), Some(record)) =
                (work.remove(key), self.services.get_mut(&key.to_string()))
            else {
                continue;
            };
            record.cluster_ip = w.ip;
            record.node_ports = want
                .ports
                .iter()
                .zip(&w.ports)
                .filter_map(|(pw, got)| {
                    got.map(|np| NodePortRecord {
                        name: pw.name.clone(),
                        port: pw.key.port,
                        protocol: protocol_name(pw.key.protocol).to_owned(),
                        node_port: np,
                    })
                })
                .collect();
            if w.problems.is_empty() {
                let node_ports = want
                    .ports
                    .iter()
                    .zip(&w.ports)
                    .filter_map(|(pw, got)| got.map(|np| (pw.key, np)))
                    .collect();
                assigned.insert(
                    key.clone(),
                    Assigned {
                        uid: record.uid.clone(),
                        cluster_ip: w.ip,
                        node_ports,
                    },
                );
            } else {
                problems.extend(w.problems);
            }
        }
        (assigned, problems)
    }
}

/// Whether `ip` is kept for a Service other than `key`.
fn reserved_for_other(config: &AllocConfig, ip: Ipv4Addr, key: &ServiceKey) -> bool {
    config
        .reserved_for(ip)
        .is_some_and(|(ns, name)| key.namespace != ns || key.name != name)
}

/// The size of a range's static band (the API server's
/// `calculateRangeOffset`): `size / step`, between 16 and `max`; none for
/// ranges of 16 or less.
fn static_band(size: u32, step: u32, max: u32) -> u32 {
    const MIN: u32 = 16;
    if size <= MIN {
        0
    } else {
        (size / step).clamp(MIN, max)
    }
}

/// Next-fit in `[lo, hi]`: the first `free` slot after `last` in the dynamic
/// band `[dynamic, hi]` (wrapping within it), then in the static band
/// `[lo, dynamic)`.
fn next_free(
    lo: u32,
    dynamic: u32,
    hi: u32,
    last: Option<u32>,
    free: impl Fn(u32) -> bool,
) -> Option<u32> {
    let dynamic = dynamic.min(hi.saturating_add(1)).max(lo);
    let start = match last {
        Some(l) if l >= dynamic && l < hi => l + 1,
        _ => dynamic,
    };
    (start..=hi)
        .chain(dynamic..start)
        .chain(lo..dynamic)
        .find(|s| free(*s))
}

/// A uid for a Service's record: stable while the record lives, new for a
/// Service declared again after it was gone.
fn uid(key: &ServiceKey, serial: u64) -> String {
    crate::records::uid(format!("Service/{key}#{serial}").as_bytes())
}

/// The allocations on disk: `<state>/services.json`.
pub type Store = crate::records::Store<Allocations>;

/// Loads the allocations; an unreadable file is set aside and allocation
/// starts afresh (Services may get new addresses).
pub fn load(state_dir: &Path) -> (Store, Allocations, Option<String>) {
    Store::load(
        state_dir.join("services.json"),
        "Services get their addresses afresh",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A Service `namespace/name` with `spec` (defaults as the manifest
    /// layer sets them do not matter here: a missing type is ClusterIP).
    fn svc(key: &str, spec: Value) -> Service {
        let (namespace, name) = key.split_once('/').expect("namespace/name");
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": name},
            "spec": spec,
        }))
        .expect("a Service")
    }

    fn node_port(key: &str, ports: Value) -> Service {
        svc(key, json!({"type": "NodePort", "ports": ports}))
    }

    fn cluster_ip(key: &str) -> Service {
        svc(key, json!({"ports": [{"port": 80}]}))
    }

    /// One line per allocated Service (`ns/name ip 80/tcp=30086`), then the
    /// problems.
    fn render(result: &(BTreeMap<ServiceKey, Assigned>, Vec<Problem>)) -> String {
        let (assigned, problems) = result;
        let mut lines: Vec<String> = assigned
            .iter()
            .map(|(key, a)| {
                let mut line = format!(
                    "{key} {}",
                    a.cluster_ip.map_or("-".to_owned(), |ip| ip.to_string())
                );
                for (port, np) in &a.node_ports {
                    line.push_str(&format!(" {}/{}={np}", port.port, port.protocol));
                }
                line
            })
            .collect();
        lines.extend(problems.iter().map(|p| format!("! {p}")));
        lines.join("\n")
    }

    /// Syncs `steps` in turn on the same allocations, each with its
    /// expected result; returns the allocations.
    fn check(config: &AllocConfig, steps: &[(Vec<Service>, &str)]) -> Allocations {
        let mut allocations = Allocations::default();
        for (i, (services, expect)) in steps.iter().enumerate() {
            let refs: Vec<&Service> = services.iter().collect();
            let got = render(&allocations.sync(config, &refs));
            assert_eq!(got, expect.trim(), "step {i}:\n{got}");
            // Level-triggered: the same Services again change nothing.
            let before = allocations.clone();
            let again = render(&allocations.sync(config, &refs));
            assert_eq!(again, got, "step {i} again");
            assert_eq!(allocations, before, "step {i} again");
        }
        allocations
    }

    #[test]
    fn cluster_ips() {
        let config = AllocConfig::default();
        check(
            &config,
            &[
                // The dynamic band starts after the static one (256 addresses).
                (
                    vec![
                        cluster_ip("default/web"),
                        svc("default/db", json!({"clusterIP": "None"})),
                        svc(
                            "default/ext",
                            json!({"type": "ExternalName", "externalName": "example.com"}),
                        ),
                        svc(
                            "kube-system/kube-dns",
                            json!({"clusterIP": "10.43.0.10", "ports": [{"port": 53, "protocol": "UDP"}]}),
                        ),
                        svc(
                            "default/kubernetes",
                            json!({"clusterIP": "10.43.0.1", "ports": [{"port": 443}]}),
                        ),
                        svc(
                            "default/fixed",
                            json!({"clusterIP": "10.43.0.50", "ports": [{"port": 80}]}),
                        ),
                        cluster_ip("default/api"),
                    ],
                    "
default/api 10.43.1.1
default/db -
default/ext -
default/fixed 10.43.0.50
default/kubernetes 10.43.0.1
default/web 10.43.1.2
kube-system/kube-dns 10.43.0.10",
                ),
                // Kept across edits; a new one continues after the last.
                (
                    vec![
                        svc(
                            "default/web",
                            json!({"ports": [{"port": 8080, "name": "http"}], "selector": {"app": "web"}}),
                        ),
                        cluster_ip("default/api"),
                        cluster_ip("default/new"),
                    ],
                    "
default/api 10.43.1.1
default/new 10.43.1.3
default/web 10.43.1.2",
                ),
                // Released addresses are not reused while others are free.
                (
                    vec![cluster_ip("default/web"), cluster_ip("default/other")],
                    "
default/other 10.43.1.4
default/web 10.43.1.2",
                ),
                // Requests: out of the range, reserved, taken.
                (
                    vec![
                        cluster_ip("default/web"),
                        svc(
                            "default/a",
                            json!({"clusterIP": "10.50.0.1", "ports": [{"port": 80}]}),
                        ),
                        svc(
                            "default/b",
                            json!({"clusterIP": "10.43.0.10", "ports": [{"port": 80}]}),
                        ),
                        svc(
                            "default/c",
                            json!({"clusterIP": "10.43.1.2", "ports": [{"port": 80}]}),
                        ),
                        svc(
                            "default/d",
                            json!({"clusterIP": "10.43.255.255", "ports": [{"port": 80}]}),
                        ),
                        svc(
                            "default/e",
                            json!({"clusterIP": "10.43.0.1", "ports": [{"port": 80}]}),
                        ),
                    ],
                    r#"
default/web 10.43.1.2
! Service default/a: spec.clusterIP: invalid value: "10.50.0.1": provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16
! Service default/b: spec.clusterIP: invalid value: "10.43.0.10": provided IP is already allocated: it is reserved for the Service kube-system/kube-dns
! Service default/c: spec.clusterIP: invalid value: "10.43.1.2": provided IP is already allocated
! Service default/d: spec.clusterIP: invalid value: "10.43.255.255": provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16
! Service default/e: spec.clusterIP: invalid value: "10.43.0.1": provided IP is already allocated: it is reserved for the Service default/kubernetes"#,
                ),
                // A Service turned headless releases its address; one that
                // asks for another address gets it.
                (
                    vec![
                        svc("default/web", json!({"clusterIP": "None"})),
                        svc(
                            "default/c",
                            json!({"clusterIP": "10.43.1.2", "ports": [{"port": 80}]}),
                        ),
                    ],
                    "
default/c 10.43.1.2
default/web -",
                ),
            ],
        );
    }

    #[test]
    fn requested_addresses_win_over_new_ones() {
        // `a` sorts first and wants any address; `b` asks for the one next-fit
        // would give `a`, in the same sync.
        check(
            &AllocConfig::default(),
            &[(
                vec![
                    cluster_ip("default/a"),
                    svc(
                        "default/b",
                        json!({"clusterIP": "10.43.1.1", "ports": [{"port": 80}]}),
                    ),
                ],
                "
default/a 10.43.1.2
default/b 10.43.1.1",
            )],
        );
    }

    #[test]
    fn swapped_requests() {
        let a = |ip: &str| {
            svc(
                "default/a",
                json!({"clusterIP": ip, "ports": [{"port": 80}]}),
            )
        };
        let b = |ip: &str| {
            svc(
                "default/b",
                json!({"clusterIP": ip, "ports": [{"port": 80}]}),
            )
        };
        check(
            &AllocConfig::default(),
            &[
                (
                    vec![a("10.43.0.20"), b("10.43.0.21")],
                    "default/a 10.43.0.20\ndefault/b 10.43.0.21",
                ),
                (
                    vec![a("10.43.0.21"), b("10.43.0.20")],
                    "default/a 10.43.0.21\ndefault/b 10.43.0.20",
                ),
            ],
        );
    }

    #[test]
    fn a_service_with_a_problem_keeps_what_it_held() {
        check(
            &AllocConfig::default(),
            &[
                (
                    vec![
                        node_port("default/a", json!([{"port": 80}])),
                        node_port("default/b", json!([{"port": 80, "nodePort": 30080}])),
                    ],
                    "
default/a 10.43.1.1 80/tcp=30086
default/b 10.43.1.2 80/tcp=30080",
                ),
                (
                    vec![
                        node_port("default/a", json!([{"port": 80, "name": "http"}, {"port": 81, "name": "x", "nodePort": 30080}])),
                        node_port("default/b", json!([{"port": 80, "nodePort": 30080}])),
                    ],
                    "
default/b 10.43.1.2 80/tcp=30080
! Service default/a: spec.ports[1].nodePort: invalid value: 30080: provided port is already allocated",
                ),
                (
                    vec![
                        node_port("default/a", json!([{"port": 80, "name": "http"}, {"port": 81, "name": "x", "nodePort": 30081}])),
                        node_port("default/b", json!([{"port": 80, "nodePort": 30080}])),
                    ],
                    "
default/a 10.43.1.1 80/tcp=30086 81/tcp=30081
default/b 10.43.1.2 80/tcp=30080",
                ),
            ],
        );
    }

    #[test]
    fn node_ports() {
        check(
            &AllocConfig::default(),
            &[
                // The dynamic band starts after the static one (86 ports);
                // TCP and UDP of one port number share a NodePort.
                (
                    vec![
                        node_port("default/web", json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}])),
                        node_port("default/dns", json!([{"name": "tcp", "port": 53}, {"name": "udp", "port": 53, "protocol": "UDP"}])),
                        node_port("default/fixed", json!([{"port": 80, "nodePort": 30080}])),
                        svc("default/lb", json!({"type": "LoadBalancer", "ports": [{"port": 80}]})),
                        svc("default/lb-no-ports", json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30081}]})),
                    ],
                    "
default/dns 10.43.1.1 53/tcp=30086 53/udp=30086
default/fixed 10.43.1.2 80/tcp=30080
default/lb 10.43.1.3 80/tcp=30087
default/lb-no-ports 10.43.1.4 81/tcp=30081
default/web 10.43.1.5 80/tcp=30088 443/tcp=30089",
                ),
                // Renamed or renumbered ports keep their NodePort; a
                // NodePort Service turned ClusterIP releases its ports.
                (
                    vec![
                        node_port("default/web", json!([{"name": "web", "port": 80}, {"name": "https", "port": 8443}])),
                        svc("default/dns", json!({"ports": [{"name": "tcp", "port": 53}, {"name": "udp", "port": 53, "protocol": "UDP"}]})),
                        node_port("default/fixed", json!([{"port": 80, "nodePort": 30080}])),
                        node_port("default/late", json!([{"port": 80}])),
                        node_port("default/reuse", json!([{"port": 80, "nodePort": 30086}])),
                    ],
                    "
default/dns 10.43.1.1
default/fixed 10.43.1.2 80/tcp=30080
default/late 10.43.1.6 80/tcp=30090
default/reuse 10.43.1.7 80/tcp=30086
default/web 10.43.1.5 80/tcp=30088 8443/tcp=30089",
                ),
                // A changed request moves the port; bad requests are named.
                (
                    vec![
                        node_port("default/fixed", json!([{"port": 80, "nodePort": 30099}])),
                        node_port("default/low", json!([{"port": 80, "nodePort": 80}])),
                        node_port("default/taken", json!([{"port": 80, "nodePort": 30099}])),
                    ],
                    "
default/fixed 10.43.1.2 80/tcp=30099
! Service default/low: spec.ports[0].nodePort: invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767
! Service default/taken: spec.ports[0].nodePort: invalid value: 30099: provided port is already allocated",
                ),
            ],
        );
    }

    #[test]
    fn full_ranges() {
        // A /28: 14 usable addresses, less the kubernetes and DNS ones.
        let config = AllocConfig::new(
            (Ipv4Addr::new(10, 43, 0, 0), 28),
            Some(Ipv4Addr::new(10, 43, 0, 10)),
            30000..=30001,
        )
        .expect("valid config");
        let services: Vec<Service> = (0..13)
            .map(|i| cluster_ip(&format!("default/s{i:02}")))
            .collect();
        let allocations = check(
            &config,
            &[(
                services,
                "
default/s00 10.43.0.2
default/s01 10.43.0.3
default/s02 10.43.0.4
default/s03 10.43.0.5
default/s04 10.43.0.6
default/s05 10.43.0.7
default/s06 10.43.0.8
default/s07 10.43.0.9
default/s08 10.43.0.11
default/s09 10.43.0.12
default/s10 10.43.0.13
default/s11 10.43.0.14
! Service default/s12: spec.clusterIP: failed to allocate a service IP: range 10.43.0.0/28 is full",
            )],
        );
        assert_eq!(allocations.services.len(), 13);
        check(
            &config,
            &[(
                vec![node_port("default/np", json!([{"name": "a", "port": 1}, {"name": "b", "port": 2}, {"name": "c", "port": 3}]))],
                "! Service default/np: spec.ports[2].nodePort: failed to allocate a nodePort: range 30000-30001 is full",
            )],
        );
    }

    #[test]
    fn config() {
        let cidr = (Ipv4Addr::new(10, 96, 3, 4), 12);
        let config = AllocConfig::new(cidr, Some(default_dns_ip(cidr)), NODE_PORT_RANGE)
            .expect("valid config");
        assert_eq!(config.cidr(), "10.96.0.0/12");
        assert_eq!(config.dns_ip(), Some(Ipv4Addr::new(10, 96, 0, 10)));
        let err = |cidr: (Ipv4Addr, u8), dns: Option<Ipv4Addr>, ports: RangeInclusive<u16>| {
            AllocConfig::new(cidr, dns, ports).expect_err("invalid config")
        };
        let net = Ipv4Addr::new(10, 43, 0, 0);
        assert_eq!(
            err((net, 8), None, NODE_PORT_RANGE),
            "service CIDR 10.43.0.0/8: the prefix length must be between 12 and 29"
        );
        assert_eq!(
            err((net, 16), Some(Ipv4Addr::new(10, 44, 0, 10)), NODE_PORT_RANGE),
            "cluster DNS address 10.44.0.10 is not a usable address of the service CIDR 10.43.0.0/16 (the first address is the kubernetes service's)"
        );
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 32000..=31000;
        assert_eq!(
            err((net, 16), None, empty),
            "NodePort range 32000-31000 is empty"
        );
    }

    #[test]
    fn changed_range_moves_addresses() {
        let mut allocations = Allocations::default();
        let services = [cluster_ip("default/web")];
        let refs: Vec<&Service> = services.iter().collect();
        let (a, _) = allocations.sync(&AllocConfig::default(), &refs);
        let uid = a[&ServiceKey::of(&services[0])].uid.clone();
        let other = AllocConfig::new((Ipv4Addr::new(10, 96, 0, 0), 16), None, NODE_PORT_RANGE)
            .expect("valid config");
        let (b, problems) = allocations.sync(&other, &refs);
        assert!(problems.is_empty());
        let b = &b[&ServiceKey::of(&services[0])];
        assert_eq!(b.cluster_ip, Some(Ipv4Addr::new(10, 96, 1, 1)));
        assert_eq!(b.uid, uid, "the same Service keeps its uid");
    }

    #[test]
    fn uids() {
        let mut allocations = Allocations::default();
        let config = AllocConfig::default();
        let web = [cluster_ip("default/web")];
        let key = ServiceKey::of(&web[0]);
        let refs: Vec<&Service> = web.iter().collect();
        let first = allocations.sync(&config, &refs).0[&key].uid.clone();
        assert_eq!(first.len(), 36);
        assert_eq!(allocations.sync(&config, &refs).0[&key].uid, first);
        allocations.sync(&config, &[]);
        let again = allocations.sync(&config, &refs).0[&key].clone();
        assert_ne!(again.uid, first, "declared again: a new object");
        assert_eq!(again.cluster_ip, Some(Ipv4Addr::new(10, 43, 1, 2)));
    }

    #[test]
    fn store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut store, mut allocations, problem) = load(dir.path());
        assert_eq!(
            (allocations.clone(), problem),
            (Allocations::default(), None)
        );
        assert!(!store.save(&allocations).expect("save"), "nothing changed");
        let services = [
            node_port("default/web", json!([{"name": "http", "port": 80}])),
            svc(
                "kube-system/kube-dns",
                json!({"clusterIP": "10.43.0.10", "ports": [{"port": 53, "protocol": "UDP"}]}),
            ),
        ];
        let refs: Vec<&Service> = services.iter().collect();
        let config = AllocConfig::default();
        let before = allocations.sync(&config, &refs);
        assert!(store.save(&allocations).expect("save"));
        assert!(!store.save(&allocations).expect("save"), "written once");
        let text = std::fs::read_to_string(dir.path().join("services.json")).expect("read");
        let json: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            json["services"]["default/web"]["nodePorts"],
            json!([{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30086}])
        );
        assert_eq!(json["services"]["default/web"]["clusterIP"], "10.43.1.1");
        assert_eq!(json["lastClusterIP"], "10.43.1.1");
        // After a restart: the same addresses, nothing to write.
        let (mut store, mut loaded, problem) = load(dir.path());
        assert_eq!(problem, None);
        assert_eq!(loaded, allocations);
        assert_eq!(loaded.sync(&config, &refs), before);
        assert!(!store.save(&loaded).expect("save"));
        // A corrupt file is set aside.
        std::fs::write(dir.path().join("services.json"), "{not json").expect("write");
        let (_, loaded, problem) = load(dir.path());
        assert_eq!(loaded, Allocations::default());
        let problem = problem.expect("a problem");
        assert!(problem.contains("services.json is unreadable"), "{problem}");
        assert!(dir.path().join("services.json.corrupt").exists());
    }
}
