//! The node's pod bridge (`outpost0`): level-triggered, [`ensure`] reads what
//! is there and fixes only what differs, so running it again changes nothing.

use std::net::Ipv4Addr;

use rtnetlink::packet_route::link::InfoKind;
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec};

use crate::host::{Host, HostError};

/// The bridge's default name.
pub const DEFAULT_NAME: &str = "outpost0";

/// The default MTU of the bridge and pod interfaces.
pub const DEFAULT_MTU: u32 = 1500;

/// What the bridge should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// The bridge's address: the pods' default gateway.
    pub gateway: Ipv4Addr,
    /// Prefix length of the pod subnet.
    pub prefix_len: u8,
    /// The bridge's MTU.
    pub mtu: u32,
}

impl BridgeConfig {
    /// `outpost0` with the given gateway and the default MTU.
    pub fn new(gateway: Ipv4Addr, prefix_len: u8) -> Self {
        BridgeConfig {
            name: DEFAULT_NAME.to_string(),
            gateway,
            prefix_len,
            mtu: DEFAULT_MTU,
        }
    }
}

/// What can go wrong setting up the bridge.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("invalid bridge name {name:?}: use 1 to 15 bytes without '/', ':' or whitespace")]
    InvalidName { name: String },
    #[error("link {name} exists and is not a bridge: remove it or configure another bridge name")]
    NotABridge { name: String },
    #[error(transparent)]
    Host(#[from] HostError),
}

/// The bridge as [`ensure`] left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// Interface index (in the host namespace).
    pub index: u32,
    /// What had to be fixed, for the log; empty when all was in place.
    pub fixed: Vec<String>,
}

/// Deletes the bridge `name` (uninstall, `outpost killall`): its routes go
/// with it. A bridge already gone is fine; returns whether one was removed.
pub async fn remove(host: &Host, name: &str) -> Result<bool, BridgeError> {
    match host.link(name).await? {
        Some(link) if link.kind == Some(InfoKind::Bridge) => Ok(host.del_link(&link).await?),
        Some(_) => Err(BridgeError::NotABridge {
            name: name.to_string(),
        }),
        None => Ok(false),
    }
}

/// Routes the service range onto the bridge (`<cidr> dev <bridge>`), so the
/// node reaches ClusterIPs with no default route at all (an offline site):
/// the packet needs a route to leave, and the proxy's DNAT rewrites it on the
/// way. Idempotent (the route is replaced in place).
pub async fn ensure_service_route(
    host: &Host,
    bridge: &Bridge,
    bridge_name: &str,
    cidr: (Ipv4Addr, u8),
) -> Result<(), BridgeError> {
    let route = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(cidr.0, cidr.1)
        .output_interface(bridge.index)
        .scope(rtnetlink::packet_route::route::RouteScope::Link)
        .build();
    host.handle()
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(|source| {
            BridgeError::Host(HostError::RouteAdd {
                route: format!("{}/{} dev {bridge_name}", cidr.0, cidr.1),
                netns: host.label(),
                source: Box::new(source),
            })
        })
}

/// Makes the bridge exist, up, with `config`'s MTU, its gateway address as
/// its only IPv4 address and `nf_call_iptables` on (so the service proxy's
/// rules see pod-to-pod traffic, hairpin included), and turns IPv4
/// forwarding on in the namespace.
pub async fn ensure(host: &Host, config: &BridgeConfig) -> Result<Bridge, BridgeError> {
    let name = config.name.as_str();
    if !valid_ifname(name) {
        return Err(BridgeError::InvalidName {
            name: name.to_string(),
        });
    }
    let mut fixed = Vec::new();
    let link = match host.link(name).await? {
        Some(link) => link,
        None => {
            let msg = LinkBridge::new(name)
                .mtu(config.mtu)
                .nf_call_iptables(true)
                .build();
            match host.add_link(name, msg).await {
                Ok(()) => fixed.push("created".to_string()),
                // Someone else made it meanwhile: fix it below like any other.
                Err(HostError::LinkAdd { source, .. })
                    if crate::host::errno(&source) == Some(nix::libc::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
            host.link(name).await?.ok_or_else(|| HostError::LinkGet {
                ifname: name.to_string(),
                netns: host.label(),
                source: Box::new(rtnetlink::Error::RequestFailed),
            })?
        }
    };
    if link.kind != Some(InfoKind::Bridge) {
        return Err(BridgeError::NotABridge {
            name: name.to_string(),
        });
    }
    let mut change = LinkMessageBuilder::<LinkBridge>::new(name).index(link.index);
    let mut what = Vec::new();
    if link.mtu != Some(config.mtu) {
        change = change.mtu(config.mtu);
        what.push(format!("mtu {}", config.mtu));
    }
    if link.nf_call_iptables != Some(true) {
        change = change.nf_call_iptables(true);
        what.push("nf_call_iptables".to_string());
    }
    if !what.is_empty() {
        host.change_link(name, &what.join(", "), change.build())
            .await?;
        fixed.extend(what);
    }
    fixed.extend(
        host.ensure_only_address(&link, config.gateway, config.prefix_len)
            .await?,
    );
    if !link.up {
        let up = LinkUnspec::new_with_index(link.index).up().build();
        host.change_link(name, "up", up).await?;
        fixed.push("up".to_string());
    }
    if host.set_sysctl("net.ipv4.ip_forward", "1")? {
        fixed.push("net.ipv4.ip_forward=1".to_string());
    }
    Ok(Bridge {
        index: link.index,
        fixed,
    })
}

/// Linux interface names: 1 to 15 bytes, no '/', ':' or whitespace, not `.`/`..`.
pub(crate) fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        let check = |name: &str, expect: bool| assert_eq!(valid_ifname(name), expect, "{name:?}");
        check("outpost0", true);
        check("veth0123abcd", true);
        check("abcdefghijklmno", true);
        check("abcdefghijklmnop", false);
        check("", false);
        check("a/b", false);
        check("a b", false);
        check("..", false);
    }
}
