//! Pods on the bridge: a veth pair per pod, the host end a port of the bridge
//! (hairpin on), the other end `eth0` inside the pod's network namespace with
//! the pod's address and a default route via the bridge.
//!
//! Every verb is idempotent and repairs what a crash left half-made: the host
//! end's name comes from the owner (`veth` + 8 hex digits of a hash) and its
//! alias is the owner itself, so a later call finds the pieces again.

use std::collections::HashSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{LinkBridgePort, LinkUnspec, LinkVeth};

use crate::bridge::{self, BridgeConfig, BridgeError};
use crate::host::{Host, HostError, LinkView};
use crate::ipam::{Ipam, IpamError};

/// The pod's interface name.
pub const POD_IFNAME: &str = "eth0";

/// What a pod got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    /// The pod's IP.
    pub ip: Ipv4Addr,
    /// Prefix length of the pod subnet.
    pub prefix_len: u8,
    /// Its default gateway (the bridge).
    pub gateway: Ipv4Addr,
    /// The host end of its veth pair.
    pub host_veth: String,
}

/// What [`PodNetwork::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Host veths deleted.
    pub links: Vec<String>,
    /// Addresses released (owner, address).
    pub addresses: Vec<(String, Ipv4Addr)>,
}

/// What can go wrong attaching or detaching a pod.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error(
        "bridge {bridge} is {gateway}/{prefix_len} but the pod range is {range} (gateway {range_gateway}): configure them alike"
    )]
    Mismatch {
        bridge: String,
        gateway: Ipv4Addr,
        prefix_len: u8,
        range: String,
        range_gateway: Ipv4Addr,
    },
    #[error("open network namespace {path} of pod {owner}")]
    Netns {
        owner: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("host link {ifname} for pod {owner} belongs to pod {other} (name hash collision)")]
    NameTaken {
        ifname: String,
        owner: String,
        other: String,
    },
    #[error("{what} of pod {owner} vanished while being set up")]
    Vanished { owner: String, what: String },
    #[error("ipam task for pod {owner} panicked")]
    Task { owner: String },
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    #[error(transparent)]
    Host(#[from] HostError),
}

/// The name of a pod's host-side veth: `veth` + 8 hex digits of FNV-1a of
/// the owner (12 bytes, within the kernel's 15).
pub fn host_veth_name(owner: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for b in owner.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("veth{hash:08x}")
}

/// Whether `name` follows [`host_veth_name`]'s scheme.
fn is_host_veth_name(name: &str) -> bool {
    name.len() == 12
        && name.starts_with("veth")
        && name[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Deletes the host veths of pods (ours by name and by alias or bridge port)
/// whose owner is not in `live`; returns their names. With an empty `live`
/// it is how `outpost killall` clears the pod network at once: a veth would
/// otherwise linger until the kernel gets round to freeing its namespace.
pub async fn remove_host_veths(
    host: &Host,
    bridge: &str,
    live: &HashSet<String>,
) -> Result<Vec<String>, PodError> {
    let mut removed = Vec::new();
    let bridge = host.link(bridge).await?.map(|b| b.index);
    for link in host.links().await? {
        let ours = is_host_veth_name(&link.name)
            && link.kind == Some(InfoKind::Veth)
            && (link.alias.is_some() || (bridge.is_some() && link.master == bridge));
        if !ours {
            continue;
        }
        let keep = link
            .alias
            .as_deref()
            .is_some_and(|o| live.contains(o) && host_veth_name(o) == link.name);
        if !keep && host.del_link(&link).await? {
            removed.push(link.name.clone());
        }
    }
    Ok(removed)
}

/// The pod network of one node: the bridge, the address allocator and the
/// netlink handle of the namespace the bridge lives in.
#[derive(Debug)]
pub struct PodNetwork {
    host: Host,
    bridge: BridgeConfig,
    // Shared with blocking tasks: allocations fsync, which must not stall a
    // runtime thread.
    ipam: Arc<Mutex<Ipam>>,
}

impl PodNetwork {
    /// Checks that the bridge and the pod range agree; sets up nothing yet.
    pub fn new(host: Host, bridge: BridgeConfig, ipam: Ipam) -> Result<Self, PodError> {
        let range = *ipam.range();
        if range.gateway() != bridge.gateway || range.prefix_len() != bridge.prefix_len {
            return Err(PodError::Mismatch {
                bridge: bridge.name.clone(),
                gateway: bridge.gateway,
                prefix_len: bridge.prefix_len,
                range: range.to_string(),
                range_gateway: range.gateway(),
            });
        }
        Ok(PodNetwork {
            host,
            bridge,
            ipam: Arc::new(Mutex::new(ipam)),
        })
    }

    /// The netlink handle of the bridge's namespace.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The bridge's configuration.
    pub fn bridge_config(&self) -> &BridgeConfig {
        &self.bridge
    }

    /// Sets up (or repairs) the bridge; [`PodNetwork::attach`] does it too.
    pub async fn ensure_bridge(&self) -> Result<bridge::Bridge, PodError> {
        Ok(bridge::ensure(&self.host, &self.bridge).await?)
    }

    /// The address `owner` has, if any.
    pub fn address_of(&self, owner: &str) -> Option<Ipv4Addr> {
        lock(&self.ipam).get(owner)
    }

    /// Every (owner, address) allocated.
    pub fn addresses(&self) -> Vec<(String, Ipv4Addr)> {
        lock(&self.ipam)
            .allocations()
            .iter()
            .map(|(o, ip)| (o.to_string(), ip))
            .collect()
    }

    /// Connects the pod namespace pinned at `netns` to the bridge: an address
    /// for `owner`, a veth pair (`eth0` inside), address, routes, MTU. Calling
    /// it again returns the same address and repairs whatever is missing. On
    /// error, retry or [`PodNetwork::detach`].
    pub async fn attach(
        &self,
        owner: &str,
        netns: &Path,
        mtu: u32,
    ) -> Result<PodAddress, PodError> {
        let bridge = bridge::ensure(&self.host, &self.bridge).await?;
        let ip = self.with_ipam(owner, |ipam, o| ipam.allocate(o)).await?;
        let ifname = host_veth_name(owner);
        let pod = Host::open(Some(netns))?;

        let mut host_end = self.host.link(&ifname).await?;
        if let Some(link) = &host_end {
            if let Some(other) = link.alias.as_deref().filter(|a| *a != owner) {
                return Err(PodError::NameTaken {
                    ifname,
                    owner: owner.to_string(),
                    other: other.to_string(),
                });
            }
            // A pair is whole when each end names the other; otherwise it is
            // from an earlier namespace of this pod (or half-made): start over.
            let eth0 = pod.link(POD_IFNAME).await?;
            let paired = matches!(&eth0, Some(e)
                if e.kind == Some(InfoKind::Veth)
                    && e.peer == Some(link.index)
                    && link.peer == Some(e.index));
            if !paired {
                self.host.del_link(link).await?;
                host_end = None;
            }
        }
        let host_end = match host_end {
            Some(link) => link,
            None => {
                self.create_pair(owner, &ifname, netns, mtu, bridge.index)
                    .await?;
                self.host
                    .link(&ifname)
                    .await?
                    .ok_or_else(|| PodError::Vanished {
                        owner: owner.to_string(),
                        what: format!("host link {ifname}"),
                    })?
            }
        };
        self.ensure_host_end(owner, &host_end, mtu, bridge.index)
            .await?;

        let lo = pod.link("lo").await?;
        if let Some(lo) = lo.filter(|l| !l.up) {
            let up = LinkUnspec::new_with_index(lo.index).up().build();
            pod.change_link("lo", "up", up).await?;
        }
        let eth0 = pod
            .link(POD_IFNAME)
            .await?
            .ok_or_else(|| PodError::Vanished {
                owner: owner.to_string(),
                what: format!("{POD_IFNAME} in {}", netns.display()),
            })?;
        let mut fix = LinkUnspec::new_with_index(eth0.index);
        let mut what = Vec::new();
        if eth0.mtu != Some(mtu) {
            fix = fix.mtu(mtu);
            what.push("mtu");
        }
        if !eth0.up {
            fix = fix.up();
            what.push("up");
        }
        if !what.is_empty() {
            pod.change_link(POD_IFNAME, &what.join(", "), fix.build())
                .await?;
        }
        pod.ensure_only_address(&eth0, ip, self.bridge.prefix_len)
            .await?;
        pod.ensure_default_route(&eth0, self.bridge.gateway).await?;
        Ok(PodAddress {
            ip,
            prefix_len: self.bridge.prefix_len,
            gateway: self.bridge.gateway,
            host_veth: ifname,
        })
    }

    /// Creates the pair in one message: the host end on the bridge, the peer
    /// made directly inside the pod namespace as `eth0`.
    async fn create_pair(
        &self,
        owner: &str,
        ifname: &str,
        netns: &Path,
        mtu: u32,
        bridge: u32,
    ) -> Result<(), PodError> {
        let ns = File::open(netns).map_err(|source| PodError::Netns {
            owner: owner.to_string(),
            path: netns.to_path_buf(),
            source,
        })?;
        // No up flag on the peer: with it the kernel refused the whole
        // request here (ENOTCONN, Linux 6.18). It is set from inside below.
        let peer = LinkUnspec::new_with_name(POD_IFNAME)
            .mtu(mtu)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(ifname, POD_IFNAME)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .mtu(mtu)
            .controller(bridge)
            .up()
            .build();
        self.host.add_link(ifname, msg).await?;
        drop(ns); // The kernel has resolved the fd by now.
        Ok(())
    }

    /// Alias (the owner), bridge, MTU, up and hairpin on the host end.
    async fn ensure_host_end(
        &self,
        owner: &str,
        link: &LinkView,
        mtu: u32,
        bridge: u32,
    ) -> Result<(), PodError> {
        let mut fix = LinkUnspec::new_with_index(link.index);
        let mut what = Vec::new();
        if link.alias.as_deref() != Some(owner) {
            fix = fix.alias(owner);
            what.push("alias");
        }
        if link.master != Some(bridge) {
            fix = fix.controller(bridge);
            what.push("master");
        }
        if link.mtu != Some(mtu) {
            fix = fix.mtu(mtu);
            what.push("mtu");
        }
        if !link.up {
            fix = fix.up();
            what.push("up");
        }
        if !what.is_empty() {
            self.host
                .change_link(&link.name, &what.join(", "), fix.build())
                .await?;
        }
        // Hairpin lets a pod reach itself through a Service: the packet
        // leaves and re-enters the same bridge port. The port's state is only
        // known once it is a port, so read it again if the master changed.
        let hairpin = if what.contains(&"master") {
            self.host.link(&link.name).await?.and_then(|l| l.hairpin)
        } else {
            link.hairpin
        };
        if hairpin != Some(true) {
            let msg = LinkBridgePort::new(link.index).hairpin(true).build();
            self.host.change_link(&link.name, "hairpin", msg).await?;
        }
        Ok(())
    }

    /// Disconnects `owner`: deletes its veth pair and releases its address
    /// into quarantine. Whatever is already gone is fine.
    pub async fn detach(&self, owner: &str) -> Result<(), PodError> {
        let ifname = host_veth_name(owner);
        if let Some(link) = self.host.link(&ifname).await? {
            // An alias naming someone else: a hash collision, not ours to delete.
            if link.alias.as_deref().is_none_or(|a| a == owner) {
                self.host.del_link(&link).await?;
            }
        }
        self.with_ipam(owner, |ipam, o| ipam.release(o)).await?;
        Ok(())
    }

    /// Removes what pods no longer running left behind (the agent crashed
    /// between steps): our veths and addresses whose owner is not in `live`.
    /// `live` must include pods being attached right now.
    pub async fn gc(&self, live: &HashSet<String>) -> Result<GcReport, PodError> {
        let mut report = GcReport {
            links: remove_host_veths(&self.host, &self.bridge.name, live).await?,
            ..GcReport::default()
        };
        let stale: Vec<String> = self
            .addresses()
            .into_iter()
            .map(|(o, _)| o)
            .filter(|o| !live.contains(o))
            .collect();
        for owner in stale {
            let released = self.with_ipam(&owner, |ipam, o| ipam.release(o)).await?;
            if let Some(ip) = released {
                report.addresses.push((owner, ip));
            }
        }
        Ok(report)
    }

    /// Runs an allocator operation on a blocking thread (it may fsync).
    async fn with_ipam<T: Send + 'static>(
        &self,
        owner: &str,
        op: impl FnOnce(&mut Ipam, &str) -> Result<T, IpamError> + Send + 'static,
    ) -> Result<T, PodError> {
        let ipam = Arc::clone(&self.ipam);
        let who = owner.to_string();
        let done = tokio::task::spawn_blocking(move || op(&mut lock(&ipam), &who)).await;
        match done {
            Ok(r) => Ok(r?),
            Err(_) => Err(PodError::Task {
                owner: owner.to_string(),
            }),
        }
    }
}

/// The allocator only changes after a successful write, so its state is
/// consistent even if a holder panicked.
fn lock(ipam: &Mutex<Ipam>) -> std::sync::MutexGuard<'_, Ipam> {
    ipam.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names() {
        let check = |owner: &str, expect: &str| {
            let name = host_veth_name(owner);
            assert_eq!(name, expect, "{owner}");
            assert!(is_host_veth_name(&name) && crate::bridge::valid_ifname(&name));
        };
        // Pinned: a change would orphan every running pod's veth on upgrade.
        check("", "veth811c9dc5");
        check("a", "vethe40c292c");
        check(
            "0b6f4bd1-5b0c-4c2b-9d8e-2f1e6e0f4a11",
            &host_veth_name("0b6f4bd1-5b0c-4c2b-9d8e-2f1e6e0f4a11"),
        );
        assert_ne!(host_veth_name("pod-a"), host_veth_name("pod-b"));
        assert!(!is_host_veth_name("veth0"));
        assert!(!is_host_veth_name("vethABCDEF01"));
        assert!(!is_host_veth_name("eth0abcdef01"));
    }
}
