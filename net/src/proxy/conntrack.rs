//! Stale UDP flows. UDP has no connection to end, so the kernel's conntrack
//! entry of a flow keeps sending it to the endpoint it was first translated
//! to, even after that endpoint left the service: a client that reuses its
//! source port (a resolver, a syslog sender) would talk to a dead pod until
//! the entry idles out. As kube-proxy does, every sync that changes the UDP
//! services deletes the entries whose translation no rule would make now.
//! TCP needs none of this: a connection to a gone endpoint is reset.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;

use super::model::Cidr;
use super::render::claim;
use super::{HostPort, Protocol, ProxyConfig, Service};

/// One UDP conntrack entry, as far as the cleanup needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    /// Where the first packet came from.
    pub orig_src: SocketAddrV4,
    /// Where the first packet was addressed (a ClusterIP:port, a NodePort).
    pub orig_dst: SocketAddrV4,
    /// Where replies come from: the endpoint it was translated to (the
    /// original destination when nothing translated it).
    pub reply_src: SocketAddrV4,
    /// Its destination was translated (conntrack's `IPS_DST_NAT`).
    pub dst_nat: bool,
}

/// The UDP frontends the rules serve, each with the endpoints it may lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFrontends {
    /// The service range: a flow to an address in it that is no frontend
    /// (a deleted Service, one from before a restart) is stale.
    pub service_cidr: Cidr,
    /// The pod range: a translated flow to a pod through a port that is no
    /// NodePort, LoadBalancer port or hostPort any more is stale.
    pub pod_cidr: Cidr,
    /// ClusterIP:port → its endpoints.
    pub addresses: BTreeMap<SocketAddrV4, BTreeSet<SocketAddrV4>>,
    /// NodePorts and hostPorts (on any node address) → their endpoints.
    pub ports: BTreeMap<u16, BTreeSet<SocketAddrV4>>,
}

impl UdpFrontends {
    /// What the rules for `services` and `host_ports` translate UDP to.
    pub fn of(config: &ProxyConfig, services: &[Service], host_ports: &[HostPort]) -> Self {
        let (addr, prefix) = config.service_cidr;
        let (pods, pods_prefix) = config.pod_cidr;
        let mut frontends = UdpFrontends {
            service_cidr: Cidr::clamped(addr, prefix),
            pod_cidr: Cidr::clamped(pods, pods_prefix),
            addresses: BTreeMap::new(),
            ports: BTreeMap::new(),
        };
        // Only what the rules serve: a port another service or hostPort
        // claimed first leads to that one's endpoints.
        let claimed = claim(services, host_ports);
        for kept in claimed
            .ports
            .iter()
            .filter(|k| k.port.protocol == Protocol::Udp)
        {
            let endpoints: BTreeSet<SocketAddrV4> = kept
                .port
                .endpoints
                .iter()
                .map(|&(ip, port)| SocketAddrV4::new(ip, port))
                .collect();
            for &np in &kept.node_ports {
                frontends.ports.insert(np, endpoints.clone());
            }
            frontends.addresses.insert(
                SocketAddrV4::new(kept.cluster_ip, kept.port.port),
                endpoints,
            );
        }
        for hp in claimed
            .host_ports
            .iter()
            .filter(|h| h.protocol == Protocol::Udp)
        {
            frontends
                .ports
                .entry(hp.host_port)
                .or_default()
                .insert(SocketAddrV4::new(hp.pod_ip, hp.container_port));
        }
        frontends
    }

    /// Whether there is nothing to clean after a sync from `old` to `self`.
    pub fn nothing_to_clean(&self, old: Option<&UdpFrontends>) -> bool {
        match old {
            // After a start, entries of an earlier run may point anywhere.
            None => false,
            Some(old) => old == self,
        }
    }

    /// `self`, plus the frontends of `old` that are gone, with no endpoints:
    /// their flows are stale too (a deleted NodePort, hostPort or Service).
    pub fn with_gone(mut self, old: Option<&UdpFrontends>) -> Self {
        if let Some(old) = old {
            for addr in old.addresses.keys() {
                self.addresses.entry(*addr).or_default();
            }
            for port in old.ports.keys() {
                self.ports.entry(*port).or_default();
            }
        }
        self
    }

    /// Whether no rule would translate `flow` as the kernel has it.
    pub fn is_stale(&self, flow: &Flow) -> bool {
        if let Some(endpoints) = self.addresses.get(&flow.orig_dst) {
            return !endpoints.contains(&flow.reply_src);
        }
        if self.service_cidr.contains(*flow.orig_dst.ip()) {
            return true;
        }
        // A port alone names a NodePort or hostPort only for a translated
        // flow: a plain one to that port elsewhere is none of the proxy's.
        if !flow.dst_nat {
            return false;
        }
        match self.ports.get(&flow.orig_dst.port()) {
            Some(endpoints) => !endpoints.contains(&flow.reply_src),
            // Translated to a pod by no port the proxy serves: one that went
            // while the agent was down.
            None => self.pod_cidr.contains(*flow.reply_src.ip()),
        }
    }
}
