//! Kubernetes Services on this node, the pure part: ClusterIPs and NodePorts
//! allocated and kept across restarts (`alloc`), and what a Service and the
//! pods it selects become (`endpoints`): EndpointSlices to publish, the
//! proxy's view (`outpost_net::proxy::Service`, ready endpoints only),
//! hostPorts, and the Service as published (its addresses filled in).
//!
//! Nothing here does I/O but [`alloc::Store`]'s load and save. The agent's
//! sync calls, in order: [`Allocations::sync`] with every declared Service,
//! [`Store::save`], then per allocated Service [`published`],
//! [`endpoint_slices`] and [`proxy_service`], and [`host_ports`] for the pods.

pub mod alloc;
pub mod endpoints;

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use outpost_net::proxy::Protocol;

pub use alloc::{AllocConfig, Allocations, Assigned, Problem, Store};
pub use endpoints::{endpoint_slices, host_ports, proxy_service, published};

/// The NodePort range (the API server's default `--service-node-port-range`).
pub const NODE_PORT_RANGE: RangeInclusive<u16> = 30000..=32767;
/// The default service range.
pub const DEFAULT_SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 43, 0, 0), 16);
/// The default cluster DNS address, reserved for `kube-system/kube-dns`.
pub const DEFAULT_DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);

/// A Service's identity: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    /// The key of `svc` (namespace `default` when unset).
    pub fn of(svc: &Service) -> ServiceKey {
        ServiceKey {
            namespace: svc
                .metadata
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".to_owned()),
            name: svc.metadata.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ServiceKey {
    /// `namespace/name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A port of a Service by what is unique in it: its protocol and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    pub protocol: Protocol,
    pub port: u16,
}

impl PortKey {
    /// The key of a Service port; `None` for SCTP or an invalid number
    /// (refused by validation).
    pub fn of(port: &ServicePort) -> Option<PortKey> {
        Some(PortKey {
            protocol: protocol(port.protocol.as_deref())?,
            port: u16::try_from(port.port).ok().filter(|p| *p != 0)?,
        })
    }
}

/// How a Service is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    /// A virtual address, proxied to ready endpoints.
    ClusterIp,
    /// `clusterIP: None`: endpoints for DNS, no proxying.
    Headless,
    /// A ClusterIP, and a port on the node's addresses for each port.
    NodePort,
    /// Served as a NodePort, its ingress the node's addresses (k3s ServiceLB).
    LoadBalancer,
    /// A DNS alias: no address, no endpoints.
    ExternalName,
}

impl ServiceType {
    /// What `svc`'s spec asks for (a missing type is ClusterIP).
    pub fn of(svc: &Service) -> ServiceType {
        let spec = svc.spec.as_ref();
        let headless = spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None");
        match spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP") {
            "ExternalName" => ServiceType::ExternalName,
            "NodePort" => ServiceType::NodePort,
            "LoadBalancer" => ServiceType::LoadBalancer,
            _ if headless => ServiceType::Headless,
            _ => ServiceType::ClusterIp,
        }
    }

    /// Whether it gets a ClusterIP.
    pub fn has_cluster_ip(self) -> bool {
        matches!(
            self,
            ServiceType::ClusterIp | ServiceType::NodePort | ServiceType::LoadBalancer
        )
    }
}

/// `TCP`/`UDP` (unset is TCP); `None` for anything else.
pub fn protocol(name: Option<&str>) -> Option<Protocol> {
    match name.unwrap_or("TCP") {
        "TCP" | "" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        _ => None,
    }
}

/// The Kubernetes spelling of a protocol.
pub fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}
