//! Pod networking for outpost, all through netlink. Today: network namespaces
//! pinned by a bind mount, with loopback up (a pod's sandbox network). The
//! bridge, IPAM, veths, NAT and the service proxy come with the networking issue.
#![forbid(unsafe_code)]

pub mod bridge;
pub mod host;
pub mod ipam;
pub mod netns;
pub mod pod;
pub mod proxy;
