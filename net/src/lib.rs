//! Pod networking for outpost, all through netlink: pinned network
//! namespaces, the pod bridge, IPAM, a veth per pod, and the service proxy
//! (with egress masquerade) in nftables. Knows nothing about Kubernetes.
#![forbid(unsafe_code)]

pub mod bridge;
pub mod host;
pub mod ipam;
pub mod netns;
pub mod pod;
pub mod proxy;
