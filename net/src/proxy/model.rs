//! The nftables table as plain data: what [`render`](super::render) produces,
//! what [`plan`](super::plan) diffs, and what a [`Tables`](super::Tables)
//! driver turns into netlink messages. No I/O here.
//!
//! `Display` prints it in `nft list table` syntax, close to what the `nft`
//! CLI shows for the table once committed, so snapshot tests read like the
//! kernel's view.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::Protocol;

/// One table: its chains and its sets/maps, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The table's name (family `ip`).
    pub table: String,
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, Set>,
}

/// A chain: a base chain hooked into netfilter, or a regular one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Where a base chain hooks in; `None` for a regular chain.
    pub base: Option<BaseHook>,
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

/// A base chain's type, hook and priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseHook {
    /// `filter` or `nat`.
    pub kind: ChainKind,
    /// The netfilter hook.
    pub hook: Hook,
    /// Lower runs first; `dstnat` is -100, `srcnat` 100.
    pub priority: i32,
}

/// A base chain's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    /// `type filter`.
    Filter,
    /// `type nat`.
    Nat,
}

/// A netfilter hook of the `ip` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `prerouting`.
    Prerouting,
    /// `input`.
    Input,
    /// `forward`.
    Forward,
    /// `output`.
    Output,
    /// `postrouting`.
    Postrouting,
}

/// One rule: statements evaluated left to right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule(pub Vec<Stmt>);

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    /// The prefix length, 0..=32.
    pub prefix: u8,
}

impl Cidr {
    /// The prefix with its host bits cleared; `None` if `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Cidr> {
        (prefix <= 32).then(|| Cidr::clamped(addr, prefix))
    }

    /// The prefix, with a length above 32 taken as 32.
    pub fn clamped(addr: Ipv4Addr, prefix: u8) -> Cidr {
        let prefix = prefix.min(32);
        Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & netmask(prefix)),
            prefix,
        }
    }

    /// A single address (`/32`).
    pub fn host(addr: Ipv4Addr) -> Cidr {
        Cidr { addr, prefix: 32 }
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & netmask(self.prefix) == u32::from(self.addr)
    }

    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        netmask(self.prefix)
    }
}

fn netmask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A rule statement: the matches and actions the proxy uses, nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    /// `ct state new`.
    CtStateNew,
    /// `ip saddr [!=] <cidr>`.
    Saddr {
        /// The prefix.
        net: Cidr,
        /// `!=` instead of `==`.
        negate: bool,
    },
    /// `ip daddr [!=] <cidr>`.
    Daddr {
        /// The prefix.
        net: Cidr,
        /// `!=` instead of `==`.
        negate: bool,
    },
    /// `ip saddr @<set>`.
    SaddrInSet(String),
    /// `ip daddr @<set>`.
    DaddrInSet(String),
    /// `fib daddr type local`: the destination is one of this host's addresses.
    DaddrLocal,
    /// `meta l4proto <proto>`.
    L4Proto(Protocol),
    /// `th dport <port>` (after an `L4Proto`).
    Dport(u16),
    /// `oifname != <name>`.
    OifnameNot(String),
    /// `meta mark & <bits> == <bits>`.
    MarkHas(u32),
    /// `meta mark set meta mark | <bits>`.
    MarkSet(u32),
    /// `meta mark set meta mark & ~<bits>`.
    MarkClear(u32),
    /// `ip daddr . meta l4proto . th dport vmap @<map>`.
    VmapAddrProtoPort(String),
    /// `meta l4proto . th dport vmap @<map>`.
    VmapProtoPort(String),
    /// `numgen random mod <modulus> == 0`: true one time in `modulus`.
    OneIn(u32),
    /// `update @<set> { ip saddr }`: remember the client (session affinity).
    UpdateSaddr(String),
    /// `dnat to <addr>:<port>`.
    Dnat {
        /// The new destination address.
        addr: Ipv4Addr,
        /// The new destination port.
        port: u16,
    },
    /// `masquerade`.
    Masquerade,
    /// `reject with tcp reset` (TCP only).
    RejectTcpReset,
    /// `reject with icmp port-unreachable`.
    RejectPortUnreachable,
    /// `jump <chain>`.
    Jump(String),
    /// `goto <chain>`.
    Goto(String),
}

impl Stmt {
    /// The chain this statement sends packets to, if any.
    pub fn chain_ref(&self) -> Option<&str> {
        match self {
            Stmt::Jump(c) | Stmt::Goto(c) => Some(c),
            _ => None,
        }
    }

    /// The set or map this statement reads or writes, if any.
    pub fn set_ref(&self) -> Option<&str> {
        match self {
            Stmt::SaddrInSet(s)
            | Stmt::DaddrInSet(s)
            | Stmt::VmapAddrProtoPort(s)
            | Stmt::VmapProtoPort(s)
            | Stmt::UpdateSaddr(s) => Some(s),
            _ => None,
        }
    }
}

/// A named set, or a map to verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// Its type and flags.
    pub spec: SetSpec,
    /// Elements; for a verdict map, each with the chain it goes to.
    pub elements: BTreeMap<Key, Option<String>>,
}

/// What a set is, elements aside: a set whose spec changes is made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetSpec {
    /// What its keys are.
    pub key: KeyType,
    /// A verdict map (`: verdict`), each element a `goto`.
    pub verdict_map: bool,
    /// Filled from the packet path with this element timeout
    /// (`flags dynamic,timeout; timeout <t>`): session affinity.
    pub timeout: Option<Duration>,
}

/// The key type of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `ipv4_addr`.
    Addr,
    /// `inet_proto . inet_service`.
    ProtoPort,
    /// `ipv4_addr . inet_proto . inet_service`.
    AddrProtoPort,
}

/// One set key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// An address.
    Addr(Ipv4Addr),
    /// Protocol and port.
    ProtoPort(Protocol, u16),
    /// Address, protocol and port.
    AddrProtoPort(Ipv4Addr, Protocol, u16),
}

impl Key {
    /// The key type this key belongs to.
    pub fn key_type(&self) -> KeyType {
        match self {
            Key::Addr(_) => KeyType::Addr,
            Key::ProtoPort(..) => KeyType::ProtoPort,
            Key::AddrProtoPort(..) => KeyType::AddrProtoPort,
        }
    }
}

impl fmt::Display for Ruleset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table ip {} {{", self.table)?;
        for (name, chain) in &self.chains {
            writeln!(f, "\tchain {name} {{")?;
            if let Some(base) = &chain.base {
                writeln!(f, "\t\t{base}")?;
            }
            for rule in &chain.rules {
                writeln!(f, "\t\t{rule}")?;
            }
            writeln!(f, "\t}}")?;
        }
        for (name, set) in &self.sets {
            let spec = &set.spec;
            writeln!(
                f,
                "\t{} {name} {{",
                if spec.verdict_map { "map" } else { "set" }
            )?;
            write!(f, "\t\ttype {}", spec.key)?;
            if spec.verdict_map {
                write!(f, " : verdict")?;
            }
            writeln!(f)?;
            if let Some(t) = spec.timeout {
                writeln!(f, "\t\tflags dynamic,timeout")?;
                writeln!(f, "\t\ttimeout {}s", t.as_secs())?;
            }
            if !set.elements.is_empty() {
                let elems: Vec<String> = set
                    .elements
                    .iter()
                    .map(|(k, v)| match v {
                        Some(chain) => format!("{k} : goto {chain}"),
                        None => k.to_string(),
                    })
                    .collect();
                writeln!(f, "\t\telements = {{ {} }}", elems.join(",\n\t\t\t     "))?;
            }
            writeln!(f, "\t}}")?;
        }
        writeln!(f, "}}")
    }
}

impl fmt::Display for BaseHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ChainKind::Filter => "filter",
            ChainKind::Nat => "nat",
        };
        write!(
            f,
            "type {kind} hook {} priority {}; policy accept;",
            self.hook, self.priority
        )
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Stmt::to_string).collect();
        f.write_str(&parts.join(" "))
    }
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neq = |negate: &bool| if *negate { "!= " } else { "" };
        match self {
            Stmt::CtStateNew => write!(f, "ct state new"),
            Stmt::Saddr { net, negate } => write!(f, "ip saddr {}{}", neq(negate), Net(net)),
            Stmt::Daddr { net, negate } => write!(f, "ip daddr {}{}", neq(negate), Net(net)),
            Stmt::SaddrInSet(s) => write!(f, "ip saddr @{s}"),
            Stmt::DaddrInSet(s) => write!(f, "ip daddr @{s}"),
            Stmt::DaddrLocal => write!(f, "fib daddr type local"),
            Stmt::L4Proto(p) => write!(f, "meta l4proto {p}"),
            Stmt::Dport(p) => write!(f, "th dport {p}"),
            Stmt::OifnameNot(n) => write!(f, "oifname != \"{n}\""),
            Stmt::MarkHas(m) => write!(f, "meta mark & {m:#010x} == {m:#010x}"),
            Stmt::MarkSet(m) => write!(f, "meta mark set meta mark | {m:#010x}"),
            Stmt::MarkClear(m) => write!(f, "meta mark set meta mark & {:#010x}", !m),
            Stmt::VmapAddrProtoPort(m) => {
                write!(f, "ip daddr . meta l4proto . th dport vmap @{m}")
            }
            Stmt::VmapProtoPort(m) => write!(f, "meta l4proto . th dport vmap @{m}"),
            Stmt::OneIn(modulus) => write!(f, "numgen random mod {modulus} == 0"),
            Stmt::UpdateSaddr(s) => write!(f, "update @{s} {{ ip saddr }}"),
            Stmt::Dnat { addr, port } => write!(f, "dnat to {addr}:{port}"),
            Stmt::Masquerade => write!(f, "masquerade"),
            Stmt::RejectTcpReset => write!(f, "reject with tcp reset"),
            Stmt::RejectPortUnreachable => write!(f, "reject with icmp port-unreachable"),
            Stmt::Jump(c) => write!(f, "jump {c}"),
            Stmt::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

/// A prefix as nft prints it: a single address without `/32`.
struct Net<'a>(&'a Cidr);

impl fmt::Display for Net<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix == 32 {
            write!(f, "{}", self.0.addr)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Addr => "ipv4_addr",
            KeyType::ProtoPort => "inet_proto . inet_service",
            KeyType::AddrProtoPort => "ipv4_addr . inet_proto . inet_service",
        })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Addr(a) => write!(f, "{a}"),
            Key::ProtoPort(p, port) => write!(f, "{p} . {port}"),
            Key::AddrProtoPort(a, p, port) => write!(f, "{a} . {p} . {port}"),
        }
    }
}
