//! Pod networking for outpost: bridge, IPAM, pod veth/netns, egress NAT and the
//! service proxy, all through netlink. Built in the networking issue; the crate
//! exists now so the workspace has its final shape and dependencies point one way.
#![forbid(unsafe_code)]
