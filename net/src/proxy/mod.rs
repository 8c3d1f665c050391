//! The service proxy: Kubernetes-style Services (ClusterIP, NodePort,
//! session affinity) and hostPorts in one nftables table, programmed through
//! netlink. The layout follows kube-proxy's nftables mode; nothing here knows
//! Kubernetes types: the agent converts them to [`Service`] and [`HostPort`].
//!
//! The pieces, pure first:
//! - [`render`]: services → [`Ruleset`] (plain data; `Display` prints it the
//!   way `nft list table` does);
//! - [`plan`]: [`Ruleset`]s → [`Batch`]: the whole table (first sync), or only
//!   what changed since the last commit;
//! - [`Tables`]: where a batch goes: [`NetlinkTables`] (the kernel, one
//!   atomic transaction per batch) or [`RecordingTables`] (tests);
//! - [`Proxy`]: keeps the last committed ruleset and drives the above.
//!
//! Packet paths (table `ip <name>`):
//! - `nat-prerouting` / `nat-output` (dstnat) jump to `services`:
//!   `ip daddr . meta l4proto . th dport vmap @service-ips` → `service-…`
//!   chain → one `endpoint-…` chain, drawn with `numgen random` (endpoint i
//!   of n when `numgen random mod n-i == 0`) → `dnat`. NodePorts:
//!   `fib daddr type local` (or `ip daddr @nodeport-ips`) `meta l4proto .
//!   th dport vmap @service-nodeports` → `external-…` (masquerade unless from
//!   a pod) → the same service chain. Then `hostports`: DNAT on this host's
//!   addresses (or the given host IP).
//! - Session affinity: each endpoint chain remembers the client in a
//!   timeout set (`update @affinity-… { ip saddr }`); the service chain sends
//!   a remembered client straight back to its endpoint.
//! - `filter-input`/`-forward`/`-output` (just before DNAT) reject new
//!   connections to service ports that have no endpoints, at once (TCP
//!   reset, ICMP port unreachable); `filter-output-post-dnat` and
//!   `filter-forward` reject anything still addressed to the service range
//!   after DNAT, so no service address ever follows the default route.
//! - After each sync that changes UDP services, conntrack entries of UDP
//!   flows translated to endpoints that are gone are deleted ([`Flow`],
//!   [`UdpFrontends`]), as kube-proxy does.
//! - `nat-postrouting` masquerades what the mark bit asks for (hairpin: a pod
//!   reaching itself through a service; NodePort traffic from outside the pod
//!   network), and pod traffic leaving the pod network
//!   (`ip saddr <pods> ip daddr != <pods> oifname != <bridge>`); pod-to-pod
//!   traffic is never NATed.
//!
//! Why endpoints are drawn by rules and not by a `numgen … vmap` map as in
//! kube-proxy: an endpoint change then changes rules only, which the kernel
//! swaps atomically, whereas a set lookup reads the ruleset generation when
//! it runs, so a packet racing the commit can miss a map element the commit
//! deletes and leave un-NATed (measured: about 1 new connection in 1,000
//! refused while endpoints churned). It also keeps the table free of a set
//! per service: the kernel finds sets by name in a list, which made a
//! whole-table commit of 1,000 services 1.5× slower.
//!
//! Why `nlink`: it is the one permissively licensed pure-Rust crate that
//! speaks nf_tables with NAT, numgen, verdict maps, dynsets and batched
//! transactions (`rustables` is GPL, `nftnl` needs C libraries,
//! `netlink-packet-netfilter` has no typed NAT/numgen). It is young, so it is
//! pinned and only [`NetlinkTables`] touches it.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

mod conntrack;
mod driver;
pub mod model;
mod netlink;
pub mod plan;
mod render;
mod tables;
#[cfg(test)]
mod tests;

pub use conntrack::{Flow, UdpFrontends};
pub use driver::{Proxy, SyncStats};
pub use model::Ruleset;
pub use netlink::NetlinkTables;
pub use plan::{Batch, Op};
pub use render::{conflicts, render, Conflict, Rendered, MASQUERADE_MARK};
pub use tables::{RecordingTables, Tables};

/// How the proxy is set up on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The nftables table (family `ip`) the proxy owns, e.g. `outpost`.
    pub table: String,
    /// The service range: every address in it that is not a live
    /// ClusterIP:port is refused.
    pub service_cidr: (Ipv4Addr, u8),
    /// The pod range: its traffic leaving it is masqueraded.
    pub pod_cidr: (Ipv4Addr, u8),
    /// The pods' bridge (pod-to-pod traffic goes out on it).
    pub bridge: String,
    /// The addresses NodePorts answer on; empty: every local address but
    /// loopback.
    pub node_ips: Vec<Ipv4Addr>,
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A service as the proxy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its namespace (names its chains).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The ClusterIP; `None` for a headless service, which is not proxied.
    pub cluster_ip: Option<Ipv4Addr>,
    /// Its ports.
    pub ports: Vec<ServicePort>,
    /// Session affinity by client IP, with this timeout.
    pub affinity: Option<Duration>,
    /// `externalTrafficPolicy: Local`: NodePort traffic from outside keeps
    /// its client address (not masqueraded).
    pub external_local: bool,
}

/// One port of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name (may be empty for a service's only port).
    pub name: String,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port on the ClusterIP.
    pub port: u16,
    /// The NodePort, if any.
    pub node_port: Option<u16>,
    /// A LoadBalancer port: also served at `port` on the node's addresses,
    /// as k3s's ServiceLB does.
    pub load_balancer: bool,
    /// Ready endpoints: address and target port.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

/// A container's hostPort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Only this host address; `None`: every local address but loopback.
    pub host_ip: Option<Ipv4Addr>,
    /// The port on the host.
    pub host_port: u16,
    /// The pod's address.
    pub pod_ip: Ipv4Addr,
    /// The container's port.
    pub container_port: u16,
}

/// What can go wrong with the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration cannot work.
    #[error("invalid proxy config: {field}: {reason}")]
    Config {
        /// The field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The netlink socket could not be opened.
    #[error("open nftables netlink socket in {}", netns.as_ref().map_or("this network namespace".to_string(), |p| p.display().to_string()))]
    Open {
        /// The network namespace it was opened in, if not the caller's.
        netns: Option<PathBuf>,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a transaction: nothing of it was applied.
    #[error("nftables transaction on table ip {table} refused ({operations} operations, {}): {detail}", if *full { "whole table" } else { "changes only" })]
    Commit {
        /// The table.
        table: String,
        /// How many operations the transaction had.
        operations: usize,
        /// Whether it replaced the whole table.
        full: bool,
        /// The errno, when the kernel gave one.
        errno: Option<i32>,
        /// What the kernel refused, operation by operation.
        detail: String,
    },
    /// Conntrack could not be read or changed (stale UDP flows stay).
    #[error("conntrack in {}: {detail}", netns.as_ref().map_or("this network namespace".to_string(), |p| p.display().to_string()))]
    Conntrack {
        /// The network namespace, if not the caller's.
        netns: Option<PathBuf>,
        /// What failed.
        detail: String,
    },
    /// The thread that owns the netlink socket is gone.
    #[error("nftables worker thread for table ip {table} is gone")]
    Worker {
        /// The table.
        table: String,
    },
}
