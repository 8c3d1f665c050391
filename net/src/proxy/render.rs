//! Services and host ports to the nftables table that serves them: a pure
//! function, no I/O. The layout follows kube-proxy's nftables mode (see the
//! module docs of [`proxy`](super) for the packet paths).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use super::model::{
    BaseHook, Chain, ChainKind, Cidr, Hook, Key, KeyType, Rule, Ruleset, Set, SetSpec, Stmt,
};
use super::{HostPort, Protocol, ProxyConfig, Service, ServicePort};

/// The packet-mark bit that asks for masquerade in postrouting (kube-proxy's).
pub const MASQUERADE_MARK: u32 = 0x4000;

/// Base chains, named `<type>-<hook>` as kube-proxy does.
pub const FILTER_INPUT: &str = "filter-input";
/// Filter on forward, before DNAT'd traffic is checked.
pub const FILTER_FORWARD: &str = "filter-forward";
/// Filter on output, before DNAT (sees the service address).
pub const FILTER_OUTPUT: &str = "filter-output";
/// Filter on output, after DNAT: whatever still goes to the service range is refused.
pub const FILTER_OUTPUT_POST_DNAT: &str = "filter-output-post-dnat";
/// DNAT for traffic arriving from outside or from pods.
pub const NAT_PREROUTING: &str = "nat-prerouting";
/// DNAT for traffic from this host's own processes.
pub const NAT_OUTPUT: &str = "nat-output";
/// Masquerade.
pub const NAT_POSTROUTING: &str = "nat-postrouting";

/// Dispatch to service chains by ClusterIP:port and NodePort.
pub const SERVICES: &str = "services";
/// hostPort DNAT.
pub const HOSTPORTS: &str = "hostports";
/// Rejects new connections to service ports that have no endpoints.
pub const ENDPOINTS_CHECK: &str = "endpoints-check";
/// Rejects new connections to anything left in the service range after DNAT.
pub const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
/// `reject` with a TCP reset or ICMP port unreachable.
pub const REJECT: &str = "reject-chain";
/// Sets the masquerade mark.
pub const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
/// Masquerades marked traffic and pod egress.
pub const MASQUERADING: &str = "masquerading";

/// ClusterIP . proto . port → `goto service-…`.
pub const SERVICE_IPS: &str = "service-ips";
/// proto . NodePort → `goto external-…`.
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
/// ClusterIP . proto . port of service ports without endpoints → `goto reject-chain`.
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
/// proto . NodePort of service ports without endpoints → `goto reject-chain`.
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
/// The node addresses NodePorts answer on, when limited.
pub const NODEPORT_IPS: &str = "nodeport-ips";

// filter chains run just before DNAT (dstnat = -100) so they see the service
// address; the post-DNAT check just after it.
const PRIO_FILTER: i32 = -110;
const PRIO_FILTER_POST_DNAT: i32 = -90;
const PRIO_DSTNAT: i32 = -100;
const PRIO_SRCNAT: i32 = 100;

// nftables names are at most 255 bytes; keep a margin like kube-proxy.
const NAME_MAX: usize = 240;

/// The table for `services` and `host_ports`, and what had to be left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The table to commit.
    pub ruleset: Ruleset,
    /// Service ports or host ports left out because another already had
    /// their address and port.
    pub conflicts: Vec<Conflict>,
}

/// A port that another service or host port already claimed: the first one
/// (services sorted by namespace and name) is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// What was claimed twice: `10.43.0.5:80/tcp`, `nodePort 30080/tcp`.
    pub what: String,
    /// Who keeps it: `ns/name:port-name`, `hostPort of 10.42.0.7`.
    pub kept: String,
    /// Who was left out.
    pub dropped: String,
    /// The Service left out (namespace, name), when it was one.
    pub dropped_service: Option<(String, String)>,
    /// What was left out is a LoadBalancer's port on the node's addresses.
    pub load_balancer: bool,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} is already used by {}, left out",
            self.dropped, self.what, self.kept
        )
    }
}

/// Renders the whole table. Deterministic: the same input in any order gives
/// the same table (services are taken sorted by namespace and name,
/// endpoints sorted and deduplicated).
pub fn render<'a>(
    config: &'a ProxyConfig,
    services: &'a [Service],
    host_ports: &[HostPort],
) -> Rendered {
    let claimed = claim(services, host_ports);
    let mut r = Renderer::new(config);
    r.fixed();
    for kept in &claimed.ports {
        r.service_port(kept);
    }
    r.host_ports(&claimed.host_ports);
    Rendered {
        ruleset: r.ruleset,
        conflicts: claimed.conflicts,
    }
}

/// The conflicts [`render`] reports for the same input, without building the
/// rules: which ports are left out (a LoadBalancer that gets no ingress).
pub fn conflicts(services: &[Service], host_ports: &[HostPort]) -> Vec<Conflict> {
    claim(services, host_ports).conflicts
}

/// What the rules serve, in the order it was claimed: the service ports and
/// hostPorts that kept their ports, and the conflicts of those left out.
pub(super) struct Claimed<'a> {
    pub ports: Vec<KeptPort<'a>>,
    pub host_ports: Vec<&'a HostPort>,
    pub conflicts: Vec<Conflict>,
}

/// A service port that kept its ClusterIP:port.
pub(super) struct KeptPort<'a> {
    pub service: &'a Service,
    pub cluster_ip: Ipv4Addr,
    pub port: &'a ServicePort,
    /// The ports it answers on at the node's addresses (its NodePort, a
    /// LoadBalancer's port) that no one claimed before it.
    pub node_ports: Vec<u16>,
}

/// Every port claim in one order, the one place that decides who serves a
/// port: services by namespace and name (headless ones claim nothing; DNS
/// answers them), then hostPorts. The first to claim a port keeps it.
pub(super) fn claim<'a>(services: &'a [Service], host_ports: &'a [HostPort]) -> Claimed<'a> {
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut claims = Claims::default();
    let mut ports = Vec::new();
    for service in sorted {
        let Some(cluster_ip) = service.cluster_ip else {
            continue;
        };
        for port in &service.ports {
            if let Some(node_ports) = claims.service_port(service, cluster_ip, port) {
                ports.push(KeptPort {
                    service,
                    cluster_ip,
                    port,
                    node_ports,
                });
            }
        }
    }
    let mut sorted: Vec<&HostPort> = host_ports.iter().collect();
    sorted.sort_by_key(|h| {
        (
            h.protocol,
            h.host_port,
            h.host_ip,
            h.pod_ip,
            h.container_port,
        )
    });
    sorted.retain(|hp| claims.host_port(hp));
    Claimed {
        ports,
        host_ports: sorted,
        conflicts: claims.conflicts,
    }
}

struct Renderer<'a> {
    config: &'a ProxyConfig,
    pod_cidr: Cidr,
    ruleset: Ruleset,
}

/// Who holds each ClusterIP:port, node port (NodePort or LoadBalancer port)
/// and hostPort, while [`claim`] runs.
#[derive(Default)]
struct Claims<'a> {
    cluster: BTreeMap<(Ipv4Addr, Protocol, u16), Owner<'a>>,
    node_ports: BTreeMap<(Protocol, u16), Owner<'a>>,
    host_ports: BTreeMap<(Protocol, u16, Option<Ipv4Addr>), Ipv4Addr>,
    conflicts: Vec<Conflict>,
}

/// A service port, as conflicts name it: `ns/name:port`.
#[derive(Clone, Copy)]
struct Owner<'a> {
    namespace: &'a str,
    name: &'a str,
    port: &'a str,
}

impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        // A Service's only port may have no name.
        if !self.port.is_empty() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl<'a> Claims<'a> {
    /// Claims a service port's ClusterIP:port, then its node ports; `None`
    /// when the ClusterIP:port is taken (the port is left out whole), else
    /// the node ports it keeps.
    fn service_port(
        &mut self,
        service: &'a Service,
        cluster_ip: Ipv4Addr,
        port: &'a ServicePort,
    ) -> Option<Vec<u16>> {
        let who = || Owner {
            namespace: &service.namespace,
            name: &service.name,
            port: &port.name,
        };
        let proto = port.protocol;
        let key = (cluster_ip, proto, port.port);
        let dropped_service = Some((service.namespace.clone(), service.name.clone()));
        if let Some(kept) = self.cluster.get(&key) {
            self.conflicts.push(Conflict {
                what: format!("{cluster_ip}:{}/{proto}", port.port),
                kept: kept.to_string(),
                dropped: who().to_string(),
                dropped_service,
                load_balancer: false,
            });
            return None;
        }
        self.cluster.insert(key, who());
        // The ports this service port answers on at the node's addresses:
        // its NodePort, and for a LoadBalancer its own port (k3s's
        // ServiceLB). The first service to claim one keeps it.
        let claims = port
            .node_port
            .map(|np| (np, false))
            .into_iter()
            .chain(port.load_balancer.then_some((port.port, true)));
        let mut node_ports = Vec::new();
        for (np, load_balancer) in claims {
            match self.node_ports.get(&(proto, np)) {
                Some(kept) => self.conflicts.push(Conflict {
                    what: if load_balancer {
                        format!("load balancer port {np}/{proto}")
                    } else {
                        format!("nodePort {np}/{proto}")
                    },
                    kept: kept.to_string(),
                    dropped: who().to_string(),
                    dropped_service: dropped_service.clone(),
                    load_balancer,
                }),
                None => {
                    self.node_ports.insert((proto, np), who());
                    node_ports.push(np);
                }
            }
        }
        Some(node_ports)
    }

    /// Claims a hostPort (after every service); whether it is kept.
    fn host_port(&mut self, hp: &HostPort) -> bool {
        let key = (hp.protocol, hp.host_port, hp.host_ip);
        // A wildcard host port collides with every address-bound one too.
        let clash = self.host_ports.get(&key).copied().or_else(|| {
            self.host_ports
                .iter()
                .find(|((p, port, ip), _)| {
                    *p == hp.protocol
                        && *port == hp.host_port
                        && (ip.is_none() || hp.host_ip.is_none())
                })
                .map(|(_, pod)| *pod)
        });
        // A NodePort or load balancer port is matched first, on every node
        // address: the hostPort would never see a packet.
        let kept = match clash {
            Some(pod) => format!("hostPort of {pod}"),
            None => match self.node_ports.get(&(hp.protocol, hp.host_port)) {
                Some(owner) => owner.to_string(),
                None => {
                    self.host_ports.insert(key, hp.pod_ip);
                    return true;
                }
            },
        };
        self.conflicts.push(Conflict {
            what: format!("hostPort {}/{}", hp.host_port, hp.protocol),
            kept,
            dropped: format!("hostPort of {}", hp.pod_ip),
            dropped_service: None,
            load_balancer: false,
        });
        false
    }
}

impl<'a> Renderer<'a> {
    fn new(config: &'a ProxyConfig) -> Self {
        Renderer {
            config,
            pod_cidr: Cidr::clamped(config.pod_cidr.0, config.pod_cidr.1),
            ruleset: Ruleset {
                table: config.table.clone(),
                chains: BTreeMap::new(),
                sets: BTreeMap::new(),
            },
        }
    }

    fn chain(&mut self, name: impl Into<String>, base: Option<BaseHook>, rules: Vec<Rule>) {
        self.ruleset
            .chains
            .insert(name.into(), Chain { base, rules });
    }

    fn set(&mut self, name: &str, key: KeyType, verdict_map: bool) {
        self.ruleset.sets.insert(
            name.to_string(),
            Set {
                spec: SetSpec {
                    key,
                    verdict_map,
                    timeout: None,
                },
                elements: BTreeMap::new(),
            },
        );
    }

    fn element(&mut self, set: &str, key: Key, goto: Option<String>) {
        if let Some(s) = self.ruleset.sets.get_mut(set) {
            s.elements.insert(key, goto);
        }
    }

    /// The node addresses NodePorts are limited to; loopback never (a DNAT'd
    /// packet from 127.0.0.1 could not leave the host).
    fn node_ips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.config
            .node_ips
            .iter()
            .copied()
            .filter(|ip| !ip.is_loopback())
    }

    /// The destination matches of a NodePort: a listed node address, or any
    /// local address but loopback (a DNAT'd packet from 127.0.0.1 could not
    /// leave the host, as with kube-proxy).
    fn node_address(&self) -> Vec<Stmt> {
        if self.node_ips().next().is_none() {
            vec![Stmt::DaddrLocal, not_loopback()]
        } else {
            vec![Stmt::DaddrInSet(NODEPORT_IPS.to_string())]
        }
    }

    /// Chains, maps and rules that do not depend on the services.
    fn fixed(&mut self) {
        let filter = |hook, priority| {
            Some(BaseHook {
                kind: ChainKind::Filter,
                hook,
                priority,
            })
        };
        let nat = |hook, priority| {
            Some(BaseHook {
                kind: ChainKind::Nat,
                hook,
                priority,
            })
        };
        let new_jump = |chain: &str| rule([Stmt::CtStateNew, Stmt::Jump(chain.to_string())]);
        let jump = |chain: &str| rule([Stmt::Jump(chain.to_string())]);

        self.chain(
            FILTER_INPUT,
            filter(Hook::Input, PRIO_FILTER),
            vec![new_jump(ENDPOINTS_CHECK)],
        );
        self.chain(
            FILTER_FORWARD,
            filter(Hook::Forward, PRIO_FILTER),
            vec![new_jump(ENDPOINTS_CHECK), new_jump(CLUSTER_IPS_CHECK)],
        );
        self.chain(
            FILTER_OUTPUT,
            filter(Hook::Output, PRIO_FILTER),
            vec![new_jump(ENDPOINTS_CHECK)],
        );
        self.chain(
            FILTER_OUTPUT_POST_DNAT,
            filter(Hook::Output, PRIO_FILTER_POST_DNAT),
            vec![new_jump(CLUSTER_IPS_CHECK)],
        );
        self.chain(
            NAT_PREROUTING,
            nat(Hook::Prerouting, PRIO_DSTNAT),
            vec![jump(SERVICES), jump(HOSTPORTS)],
        );
        self.chain(
            NAT_OUTPUT,
            nat(Hook::Output, PRIO_DSTNAT),
            vec![jump(SERVICES), jump(HOSTPORTS)],
        );
        self.chain(
            NAT_POSTROUTING,
            nat(Hook::Postrouting, PRIO_SRCNAT),
            vec![jump(MASQUERADING)],
        );

        let node = self.node_address();
        let mut nodeport_check = node.clone();
        nodeport_check.push(Stmt::VmapProtoPort(NO_ENDPOINT_NODEPORTS.to_string()));
        self.chain(
            ENDPOINTS_CHECK,
            None,
            vec![
                rule([Stmt::VmapAddrProtoPort(NO_ENDPOINT_SERVICES.to_string())]),
                Rule(nodeport_check),
            ],
        );
        let service_cidr = Cidr::clamped(self.config.service_cidr.0, self.config.service_cidr.1);
        self.chain(
            CLUSTER_IPS_CHECK,
            None,
            vec![rule([
                Stmt::Daddr {
                    net: service_cidr,
                    negate: false,
                },
                Stmt::Goto(REJECT.to_string()),
            ])],
        );
        self.chain(
            REJECT,
            None,
            vec![
                rule([Stmt::L4Proto(Protocol::Tcp), Stmt::RejectTcpReset]),
                rule([Stmt::RejectPortUnreachable]),
            ],
        );
        let mut nodeports = node;
        nodeports.push(Stmt::VmapProtoPort(SERVICE_NODEPORTS.to_string()));
        self.chain(
            SERVICES,
            None,
            vec![
                rule([Stmt::VmapAddrProtoPort(SERVICE_IPS.to_string())]),
                Rule(nodeports),
            ],
        );
        self.chain(HOSTPORTS, None, Vec::new());
        self.chain(
            MARK_FOR_MASQUERADE,
            None,
            vec![rule([Stmt::MarkSet(MASQUERADE_MARK)])],
        );
        let pod = self.pod_cidr;
        self.chain(
            MASQUERADING,
            None,
            vec![
                rule([
                    Stmt::MarkHas(MASQUERADE_MARK),
                    Stmt::MarkClear(MASQUERADE_MARK),
                    Stmt::Masquerade,
                ]),
                // Pods reaching beyond the pod network leave with the node's
                // address; pod-to-pod traffic keeps its source.
                rule([
                    Stmt::Saddr {
                        net: pod,
                        negate: false,
                    },
                    Stmt::Daddr {
                        net: pod,
                        negate: true,
                    },
                    Stmt::OifnameNot(self.config.bridge.clone()),
                    Stmt::Masquerade,
                ]),
            ],
        );

        self.set(SERVICE_IPS, KeyType::AddrProtoPort, true);
        self.set(SERVICE_NODEPORTS, KeyType::ProtoPort, true);
        self.set(NO_ENDPOINT_SERVICES, KeyType::AddrProtoPort, true);
        self.set(NO_ENDPOINT_NODEPORTS, KeyType::ProtoPort, true);
        let node_ips: Vec<Ipv4Addr> = self.node_ips().collect();
        if !node_ips.is_empty() {
            self.set(NODEPORT_IPS, KeyType::Addr, false);
            for ip in node_ips {
                self.element(NODEPORT_IPS, Key::Addr(ip), None);
            }
        }
    }

    fn service_port(&mut self, kept: &KeptPort<'_>) {
        let KeptPort {
            service,
            cluster_ip,
            port,
            ref node_ports,
        } = *kept;
        let proto = port.protocol;

        let endpoints: BTreeSet<(Ipv4Addr, u16)> = port.endpoints.iter().copied().collect();
        let reject = Some(REJECT.to_string());
        if endpoints.is_empty() {
            self.element(
                NO_ENDPOINT_SERVICES,
                Key::AddrProtoPort(cluster_ip, proto, port.port),
                reject.clone(),
            );
            for &np in node_ports {
                self.element(
                    NO_ENDPOINT_NODEPORTS,
                    Key::ProtoPort(proto, np),
                    reject.clone(),
                );
            }
            return;
        }

        let base = format!(
            "{}/{}/{proto}/{}",
            service.namespace, service.name, port.name
        );
        let service_chain = name("service-", &base);
        let affinity = service.affinity.filter(|t| !t.is_zero());
        let mut service_rules = Vec::new();
        let mut targets = Vec::new();
        for (ip, target_port) in &endpoints {
            let ep_base = format!("{base}__{ip}/{target_port}");
            let ep_chain = name("endpoint-", &ep_base);
            // Hairpin: a pod reaching itself through its service must see the
            // reply come from the service, so its source is rewritten too.
            let mut rules = vec![rule([
                Stmt::Saddr {
                    net: Cidr::host(*ip),
                    negate: false,
                },
                Stmt::Jump(MARK_FOR_MASQUERADE.to_string()),
            ])];
            if let Some(timeout) = affinity {
                let set = name("affinity-", &ep_base);
                self.ruleset.sets.insert(
                    set.clone(),
                    Set {
                        spec: SetSpec {
                            key: KeyType::Addr,
                            verdict_map: false,
                            timeout: Some(timeout),
                        },
                        elements: BTreeMap::new(),
                    },
                );
                // A client seen recently goes back to the endpoint it had.
                service_rules.push(rule([
                    Stmt::SaddrInSet(set.clone()),
                    Stmt::Goto(ep_chain.clone()),
                ]));
                rules.push(rule([Stmt::UpdateSaddr(set)]));
            }
            rules.push(rule([
                Stmt::L4Proto(proto),
                Stmt::Dnat {
                    addr: *ip,
                    port: *target_port,
                },
            ]));
            targets.push(ep_chain.clone());
            self.chain(ep_chain, None, rules);
        }
        // Endpoint i of n is taken one time in n - i of the packets that get
        // that far: each endpoint one time in n. Rules, not a map: see the
        // module docs.
        let n = targets.len();
        for (i, target) in targets.into_iter().enumerate() {
            let rest = u32::try_from(n - i).unwrap_or(u32::MAX);
            let mut stmts = Vec::with_capacity(2);
            if rest > 1 {
                stmts.push(Stmt::OneIn(rest));
            }
            stmts.push(Stmt::Goto(target));
            service_rules.push(Rule(stmts));
        }
        self.chain(service_chain.clone(), None, service_rules);
        self.element(
            SERVICE_IPS,
            Key::AddrProtoPort(cluster_ip, proto, port.port),
            Some(service_chain.clone()),
        );

        if !node_ports.is_empty() {
            let external = name("external-", &base);
            // From outside the pod network (externalTrafficPolicy Cluster):
            // the source becomes the node's, as kube-proxy does, so replies
            // come back through whichever node translated. With Local the
            // client's address stays: every endpoint is on this node, whose
            // bridge is the pods' default route, so replies pass here anyway.
            let mut rules = Vec::new();
            if !service.external_local {
                rules.push(rule([
                    Stmt::Saddr {
                        net: self.pod_cidr,
                        negate: true,
                    },
                    Stmt::Jump(MARK_FOR_MASQUERADE.to_string()),
                ]));
            }
            rules.push(rule([Stmt::Goto(service_chain)]));
            self.chain(&external, None, rules);
            for &np in node_ports {
                self.element(
                    SERVICE_NODEPORTS,
                    Key::ProtoPort(proto, np),
                    Some(external.clone()),
                );
            }
        }
    }

    fn host_ports(&mut self, host_ports: &[&HostPort]) {
        let mut rules = Vec::new();
        for hp in host_ports {
            let mut matches = match hp.host_ip {
                Some(ip) => vec![Stmt::Daddr {
                    net: Cidr::host(ip),
                    negate: false,
                }],
                None => vec![Stmt::DaddrLocal, not_loopback()],
            };
            matches.push(Stmt::L4Proto(hp.protocol));
            matches.push(Stmt::Dport(hp.host_port));
            let mut hairpin = matches.clone();
            hairpin.push(Stmt::Saddr {
                net: Cidr::host(hp.pod_ip),
                negate: false,
            });
            hairpin.push(Stmt::Jump(MARK_FOR_MASQUERADE.to_string()));
            rules.push(Rule(hairpin));
            matches.push(Stmt::Dnat {
                addr: hp.pod_ip,
                port: hp.container_port,
            });
            rules.push(Rule(matches));
        }
        self.chain(HOSTPORTS, None, rules);
    }
}

fn rule<const N: usize>(stmts: [Stmt; N]) -> Rule {
    Rule(stmts.into())
}

fn not_loopback() -> Stmt {
    Stmt::Daddr {
        net: Cidr::clamped(Ipv4Addr::new(127, 0, 0, 0), 8),
        negate: true,
    }
}

/// `<prefix><HASH>-<base>`: the hash keeps names unique when they are cut to
/// fit, and makes look-alike names (endpoints differing in one digit) easy to
/// tell apart, as kube-proxy's do.
fn name(prefix: &str, base: &str) -> String {
    let mut name = format!("{prefix}{}-{base}", short_hash(base));
    if name.len() > NAME_MAX {
        let mut cut = NAME_MAX - 3;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name.push_str("...");
    }
    name
}

/// Eight base32 characters of a 64-bit FNV-1a hash: stable across runs and
/// releases (the names are found again after a restart), no dependency.
fn short_hash(s: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..8)
        .map(|i| char::from(ALPHABET[((h >> (59 - 5 * i)) & 31) as usize]))
        .collect()
}
