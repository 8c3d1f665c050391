//! Netlink and sysctls inside a chosen network namespace.
//!
//! A netlink socket acts on the namespace it was opened in, and
//! `/proc/sys/net` shows the namespace of the thread that opens the file. So
//! both are done by a throw-away thread that `setns`es into the namespace;
//! the socket is then driven from the tokio runtime. A tokio thread never
//! changes namespace: every later task on it would run in the wrong one.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::address::{AddressAttribute, AddressScope};
use rtnetlink::packet_route::link::{
    InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoPortData, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;

/// What can go wrong opening or driving netlink, or writing sysctls, in a namespace.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("no tokio runtime: open netlink from within one")]
    NoRuntime,
    #[error("enter network namespace {path}")]
    Enter {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("network namespace thread for {netns} panicked")]
    Thread { netns: String },
    #[error("open a netlink socket in {netns}")]
    Open {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid sysctl name {key:?}")]
    SysctlName { key: String },
    #[error("read sysctl {key} in {netns}")]
    SysctlRead {
        key: String,
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("set sysctl {key}={value} in {netns}")]
    SysctlWrite {
        key: String,
        value: String,
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("look up link {ifname} in {netns}")]
    LinkGet {
        ifname: String,
        netns: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("create link {ifname} in {netns}")]
    LinkAdd {
        ifname: String,
        netns: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("set {what} on link {ifname} in {netns}")]
    LinkSet {
        ifname: String,
        what: String,
        netns: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("delete link {ifname} in {netns}")]
    LinkDel {
        ifname: String,
        netns: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("list addresses of {ifname} in {netns}")]
    AddrGet {
        ifname: String,
        netns: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("add address {addr} to {ifname} in {netns}")]
    AddrAdd {
        ifname: String,
        addr: String,
        netns: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("remove address {addr} from {ifname} in {netns}")]
    AddrDel {
        ifname: String,
        addr: String,
        netns: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("list routes in {netns}")]
    RouteGet {
        netns: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("add route {route} in {netns}")]
    RouteAdd {
        route: String,
        netns: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("remove route {route} in {netns}")]
    RouteDel {
        route: String,
        netns: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
}

/// Runs `f` on a throw-away thread inside the network namespace pinned at
/// `netns`; `None` runs it on the calling thread (the caller's namespace).
pub fn run_in<T: Send>(netns: Option<&Path>, f: impl FnOnce() -> T + Send) -> Result<T, HostError> {
    let Some(path) = netns else {
        return Ok(f());
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let enter = |source| HostError::Enter {
                    path: path.to_path_buf(),
                    source,
                };
                let file = File::open(path).map_err(enter)?;
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| enter(e.into()))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| {
                Err(HostError::Thread {
                    netns: label(Some(path)),
                })
            })
    })
}

fn label(netns: Option<&Path>) -> String {
    match netns {
        Some(p) => format!("netns {}", p.display()),
        None => "the agent's netns".to_string(),
    }
}

/// A netlink handle bound to one network namespace (and that namespace's path,
/// for sysctls and messages).
#[derive(Debug, Clone)]
pub struct Host {
    handle: rtnetlink::Handle,
    netns: Option<PathBuf>,
}

impl Host {
    /// Opens netlink in the namespace pinned at `netns` (`None`: the caller's).
    /// Call from within a tokio runtime, which drives the socket; the socket
    /// closes when the last clone of the returned `Host` is dropped.
    pub fn open(netns: Option<&Path>) -> Result<Self, HostError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| HostError::NoRuntime)?;
        let opened = run_in(netns, || {
            let _entered = runtime.enter();
            let (connection, handle, _) = rtnetlink::new_connection()?;
            tokio::spawn(connection);
            Ok::<_, std::io::Error>(handle)
        })?;
        let handle = opened.map_err(|source| HostError::Open {
            netns: label(netns),
            source,
        })?;
        Ok(Host {
            handle,
            netns: netns.map(Path::to_path_buf),
        })
    }

    /// The rtnetlink handle (requests act on this namespace).
    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    /// The namespace's pinned path; `None` for the agent's own namespace.
    pub fn netns(&self) -> Option<&Path> {
        self.netns.as_deref()
    }

    /// How errors name this namespace.
    pub(crate) fn label(&self) -> String {
        label(self.netns())
    }

    /// Reads a sysctl of this namespace (`net.ipv4.ip_forward`), trimmed.
    pub fn sysctl(&self, key: &str) -> Result<String, HostError> {
        let path = sysctl_path(key)?;
        let read = run_in(self.netns(), || std::fs::read_to_string(&path))?;
        read.map(|s| s.trim().to_string())
            .map_err(|source| HostError::SysctlRead {
                key: key.to_string(),
                netns: self.label(),
                source,
            })
    }

    /// Sets a sysctl of this namespace if it differs; returns whether it wrote.
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<bool, HostError> {
        let path = sysctl_path(key)?;
        let done = run_in(self.netns(), || -> std::io::Result<bool> {
            if std::fs::read_to_string(&path)?.trim() == value {
                return Ok(false);
            }
            std::fs::write(&path, value)?;
            Ok(true)
        })?;
        done.map_err(|source| HostError::SysctlWrite {
            key: key.to_string(),
            value: value.to_string(),
            netns: self.label(),
            source,
        })
    }

    /// The link named `name`, if there is one.
    pub(crate) async fn link(&self, name: &str) -> Result<Option<LinkView>, HostError> {
        let got = self
            .handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_next()
            .await;
        match got {
            Ok(msg) => Ok(msg.as_ref().map(LinkView::from)),
            Err(e) if errno(&e) == Some(nix::libc::ENODEV) => Ok(None),
            Err(source) => Err(HostError::LinkGet {
                ifname: name.to_string(),
                netns: self.label(),
                source: Box::new(source),
            }),
        }
    }

    /// Every link.
    pub(crate) async fn links(&self) -> Result<Vec<LinkView>, HostError> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| HostError::LinkGet {
                ifname: "*".to_string(),
                netns: self.label(),
                source: Box::new(source),
            })?;
        Ok(msgs.iter().map(LinkView::from).collect())
    }

    /// Creates a link (`ip link add`).
    pub(crate) async fn add_link(&self, ifname: &str, msg: LinkMessage) -> Result<(), HostError> {
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|source| HostError::LinkAdd {
                ifname: ifname.to_string(),
                netns: self.label(),
                source: Box::new(source),
            })
    }

    /// Changes an existing link (`ip link set`), including bridge-port settings.
    pub(crate) async fn change_link(
        &self,
        ifname: &str,
        what: &str,
        msg: LinkMessage,
    ) -> Result<(), HostError> {
        self.handle
            .link()
            .set_port(msg)
            .execute()
            .await
            .map_err(|source| HostError::LinkSet {
                ifname: ifname.to_string(),
                what: what.to_string(),
                netns: self.label(),
                source: Box::new(source),
            })
    }

    /// Deletes a link; returns false if it was already gone.
    pub(crate) async fn del_link(&self, link: &LinkView) -> Result<bool, HostError> {
        match self.handle.link().del(link.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(nix::libc::ENODEV) => Ok(false),
            Err(source) => Err(HostError::LinkDel {
                ifname: link.name.clone(),
                netns: self.label(),
                source: Box::new(source),
            }),
        }
    }

    /// Makes `ip/prefix_len` the only IPv4 address of `link`; returns what it changed.
    pub(crate) async fn ensure_only_address(
        &self,
        link: &LinkView,
        ip: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<Vec<String>, HostError> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(link.index)
            .execute()
            .try_collect()
            .await
            .map_err(|source| HostError::AddrGet {
                ifname: link.name.clone(),
                netns: self.label(),
                source: Box::new(source),
            })?;
        let mut fixed = Vec::new();
        let mut present = false;
        for msg in msgs {
            if msg.header.family != AddressFamily::Inet || msg.header.index != link.index {
                continue;
            }
            let addr = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(v)) => Some(*v),
                _ => None,
            });
            if addr == Some(ip) && msg.header.prefix_len == prefix_len {
                present = true;
                continue;
            }
            let shown = match addr {
                Some(a) => format!("{a}/{}", msg.header.prefix_len),
                None => "(no address)".to_string(),
            };
            match self.handle.address().del(msg).execute().await {
                Ok(()) => fixed.push(format!("removed address {shown}")),
                Err(e) if errno(&e) == Some(nix::libc::EADDRNOTAVAIL) => {}
                Err(source) => {
                    return Err(HostError::AddrDel {
                        ifname: link.name.clone(),
                        addr: shown,
                        netns: self.label(),
                        source: Box::new(source),
                    })
                }
            }
        }
        if !present {
            let added = self
                .handle
                .address()
                .add(link.index, IpAddr::V4(ip), prefix_len)
                .execute()
                .await;
            match added {
                Ok(()) => fixed.push(format!("address {ip}/{prefix_len}")),
                Err(e) if errno(&e) == Some(nix::libc::EEXIST) => {}
                Err(source) => {
                    return Err(HostError::AddrAdd {
                        ifname: link.name.clone(),
                        addr: format!("{ip}/{prefix_len}"),
                        netns: self.label(),
                        source: Box::new(source),
                    })
                }
            }
        }
        Ok(fixed)
    }

    /// Makes `default via gateway dev link` the only IPv4 default route of the
    /// main table; returns whether it changed anything.
    pub(crate) async fn ensure_default_route(
        &self,
        link: &LinkView,
        gateway: Ipv4Addr,
    ) -> Result<bool, HostError> {
        let mut present = false;
        let mut changed = false;
        for route in self.default_routes().await? {
            let via = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(v)) => Some(*v),
                _ => None,
            });
            let dev = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            if via == Some(gateway) && dev == Some(link.index) && !present {
                present = true;
                continue;
            }
            let shown = format!("default via {via:?} dev index {dev:?}");
            match self.handle.route().del(route).execute().await {
                Ok(()) => changed = true,
                Err(e) if errno(&e) == Some(nix::libc::ESRCH) => {}
                Err(source) => {
                    return Err(HostError::RouteDel {
                        route: shown,
                        netns: self.label(),
                        source: Box::new(source),
                    })
                }
            }
        }
        if !present {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gateway)
                .output_interface(link.index)
                .build();
            self.handle
                .route()
                .add(route)
                .execute()
                .await
                .map_err(|source| HostError::RouteAdd {
                    route: format!("default via {gateway} dev {}", link.name),
                    netns: self.label(),
                    source: Box::new(source),
                })?;
            changed = true;
        }
        Ok(changed)
    }

    /// The IPv4 unicast default routes of the main table.
    async fn default_routes(&self) -> Result<Vec<RouteMessage>, HostError> {
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(|source| HostError::RouteGet {
                netns: self.label(),
                source: Box::new(source),
            })?;
        Ok(routes
            .into_iter()
            .filter(|r| {
                let h = &r.header;
                h.address_family == AddressFamily::Inet
                    && h.table == RouteHeader::RT_TABLE_MAIN
                    && h.destination_prefix_length == 0
                    && h.kind == RouteType::Unicast
            })
            .collect())
    }

    /// The node's address as the kubelet and k3s pick it when none is
    /// given: the source of the IPv4 default route (the lowest metric), or
    /// else the first global address of the link it leaves by. `None` with
    /// no default route (an offline node with only local links).
    pub async fn default_route_address(&self) -> Result<Option<Ipv4Addr>, HostError> {
        let metric = |r: &RouteMessage| {
            r.attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Priority(p) => Some(*p),
                    _ => None,
                })
                .unwrap_or(0)
        };
        let Some(route) = self.default_routes().await?.into_iter().min_by_key(metric) else {
            return Ok(None);
        };
        let mut oif = None;
        for a in &route.attributes {
            match a {
                RouteAttribute::PrefSource(RouteAddress::Inet(v)) => return Ok(Some(*v)),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        let Some(index) = oif else {
            return Ok(None);
        };
        let addresses: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|source| HostError::AddrGet {
                ifname: format!("index {index}"),
                netns: self.label(),
                source: Box::new(source),
            })?;
        Ok(addresses
            .iter()
            .filter(|m| {
                m.header.family == AddressFamily::Inet
                    && m.header.index == index
                    && m.header.scope == AddressScope::Universe
            })
            .find_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(IpAddr::V4(v)) => Some(*v),
                    _ => None,
                })
            }))
    }
}

fn sysctl_path(key: &str) -> Result<PathBuf, HostError> {
    let ok = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if !ok {
        return Err(HostError::SysctlName {
            key: key.to_string(),
        });
    }
    Ok(Path::new("/proc/sys").join(key.replace('.', "/")))
}

/// The kernel's errno of a netlink error (positive), if it is one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// What we read from a link message.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkView {
    pub index: u32,
    pub name: String,
    pub kind: Option<InfoKind>,
    /// The bridge it is a port of.
    pub master: Option<u32>,
    pub mtu: Option<u32>,
    pub up: bool,
    pub alias: Option<String>,
    /// For a veth: the peer's index (in the peer's namespace).
    pub peer: Option<u32>,
    /// For a bridge port.
    pub hairpin: Option<bool>,
    /// For a bridge.
    pub nf_call_iptables: Option<bool>,
}

impl From<&LinkMessage> for LinkView {
    fn from(msg: &LinkMessage) -> Self {
        let mut v = LinkView {
            index: msg.header.index,
            up: msg.header.flags.contains(LinkFlags::Up),
            ..LinkView::default()
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => v.name = n.clone(),
                LinkAttribute::Mtu(m) => v.mtu = Some(*m),
                LinkAttribute::Controller(c) if *c != 0 => v.master = Some(*c),
                LinkAttribute::IfAlias(a) if !a.is_empty() => v.alias = Some(a.clone()),
                LinkAttribute::Link(l) if *l != 0 => v.peer = Some(*l),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => v.kind = Some(k.clone()),
                            LinkInfo::Data(InfoData::Bridge(opts)) => {
                                for o in opts {
                                    if let InfoBridge::NfCallIpTables(on) = o {
                                        v.nf_call_iptables = Some(*on);
                                    }
                                }
                            }
                            LinkInfo::PortData(InfoPortData::BridgePort(opts)) => {
                                for o in opts {
                                    if let InfoBridgePort::HairpinMode(on) = o {
                                        v.hairpin = Some(*on);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names() {
        let check = |key: &str, expect: &str| {
            let got = match sysctl_path(key) {
                Ok(p) => p.display().to_string(),
                Err(e) => e.to_string(),
            };
            assert_eq!(got, expect, "{key}");
        };
        check("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward");
        check(
            "net.ipv4.conf.outpost0.forwarding",
            "/proc/sys/net/ipv4/conf/outpost0/forwarding",
        );
        check("net..x", "invalid sysctl name \"net..x\"");
        check("net/ipv4", "invalid sysctl name \"net/ipv4\"");
        check("", "invalid sysctl name \"\"");
    }
}
