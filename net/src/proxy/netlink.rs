//! [`Tables`] over netlink, through the `nlink` crate: each [`Batch`] becomes
//! one nf_tables transaction (`NFNL_MSG_BATCH_BEGIN … END`), which the kernel
//! applies whole or refuses whole.
//!
//! nlink is async (tokio). The socket lives on a thread of its own with a
//! current-thread runtime, so [`Tables::commit`] can be called from any
//! thread, and no tokio worker of the caller's ever enters another network
//! namespace (nlink opens the socket from a throw-away thread that does).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use nlink::netlink::netfilter::{ConntrackEntry, ConntrackFilter, ConntrackStatus, IpProtocol};
use nlink::netlink::nftables::{
    BaseChain, Chain as NlChain, ChainName, CmpOp, CtState, DynsetExpr, DynsetOp, Expr, Family,
    FibFlags, FibResult, FilterHook, LookupExpr, MetaKey, NatHook, NumgenKind, PacketField,
    PayloadBase, Priority, RawMessage, Register, Rule as NlRule, Set as NlSet, SetElement,
    SetKeyType, Transaction, Verdict, NFTA_TABLE_NAME, NFT_MSG_NEWTABLE,
};
use nlink::netlink::{Connection, Netfilter, Nftables};

use super::conntrack::{Flow, UdpFrontends};
use super::model::{BaseHook, ChainKind, Hook, Key, KeyType, Rule, SetSpec, Stmt};
use super::plan::{Batch, Op};
use super::tables::Tables;
use super::ProxyError;

/// `NLM_F_CREATE`: create if missing. Without `NLM_F_EXCL`, an existing
/// table is fine (what `nft add table` sends).
const NLM_F_CREATE: u16 = 0x400;

/// The send buffer a whole-table batch needs: tens of thousands of rules go
/// in one message, far above the default `wmem_default` (`nft` raises it the
/// same way). It is a limit, not memory held.
const SEND_BUFFER: usize = 64 << 20;

/// `RTN_LOCAL`: what `fib daddr type` gives for a local address.
const RTN_LOCAL: u32 = 2;

/// What the socket's thread is asked to do, with where the answer goes.
enum Request {
    Commit(Batch, mpsc::Sender<Result<(), ProxyError>>),
    ClearFlows(UdpFrontends, mpsc::Sender<Result<usize, String>>),
}

/// nftables through netlink, in one network namespace.
#[derive(Debug)]
pub struct NetlinkTables {
    table: String,
    netns: Option<PathBuf>,
    requests: Option<mpsc::Sender<Request>>,
    worker: Option<JoinHandle<()>>,
}

impl NetlinkTables {
    /// Opens an nftables socket in the network namespace pinned at `netns`
    /// (the caller's own when `None`), on a thread of its own. `table` only
    /// names errors.
    pub fn open(table: &str, netns: Option<&Path>) -> Result<Self, ProxyError> {
        let netns = netns.map(Path::to_path_buf);
        let open_error = |netns: &Option<PathBuf>, source| ProxyError::Open {
            netns: netns.clone(),
            source,
        };
        let (requests, inbox) = mpsc::channel::<Request>();
        let (ready_tx, ready) = mpsc::channel::<Result<(), std::io::Error>>();
        let target = netns.clone();
        let worker = std::thread::Builder::new()
            .name("outpost-nft".to_string())
            .spawn(move || serve(target, ready_tx, inbox))
            .map_err(|e| open_error(&netns, e))?;
        match ready.recv() {
            Ok(Ok(())) => Ok(NetlinkTables {
                table: table.to_string(),
                netns,
                requests: Some(requests),
                worker: Some(worker),
            }),
            Ok(Err(e)) => {
                let _ = worker.join();
                Err(open_error(&netns, e))
            }
            Err(_) => {
                let _ = worker.join();
                Err(open_error(
                    &netns,
                    std::io::Error::other("the nftables thread ended while opening"),
                ))
            }
        }
    }
}

impl NetlinkTables {
    /// Sends a request to the socket's thread and waits for its answer.
    fn ask<T>(&self, request: impl FnOnce(mpsc::Sender<T>) -> Request) -> Result<T, ProxyError> {
        let gone = || ProxyError::Worker {
            table: self.table.clone(),
        };
        let requests = self.requests.as_ref().ok_or_else(gone)?;
        let (reply, answer) = mpsc::channel();
        requests.send(request(reply)).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())
    }
}

impl Tables for NetlinkTables {
    fn commit(&mut self, batch: &Batch) -> Result<(), ProxyError> {
        self.ask(|reply| Request::Commit(batch.clone(), reply))?
    }

    fn clear_stale_flows(&mut self, frontends: &UdpFrontends) -> Result<usize, ProxyError> {
        self.ask(|reply| Request::ClearFlows(frontends.clone(), reply))?
            .map_err(|detail| ProxyError::Conntrack {
                netns: self.netns.clone(),
                detail,
            })
    }
}

impl Drop for NetlinkTables {
    fn drop(&mut self) {
        // Closing the channel ends the thread, which closes the socket.
        self.requests.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The socket's thread: opens it, then commits batches until the channel closes.
fn serve(
    netns: Option<PathBuf>,
    ready: mpsc::Sender<Result<(), std::io::Error>>,
    inbox: mpsc::Receiver<Request>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let connections = {
        // nlink registers the sockets with the runtime they are created in.
        let _entered = runtime.enter();
        match &netns {
            Some(path) => Connection::<Nftables>::new_in(path.as_path())
                .and_then(|n| Ok((n, Connection::<Netfilter>::new_in(path.as_path())?))),
            None => {
                Connection::<Nftables>::new().and_then(|n| Ok((n, Connection::<Netfilter>::new()?)))
            }
        }
    };
    let (connection, conntrack) = match connections {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(std::io::Error::other(e.to_string())));
            return;
        }
    };
    if let Err(e) = nix::sys::socket::setsockopt(
        connection.socket(),
        nix::sys::socket::sockopt::SndBufForce,
        &SEND_BUFFER,
    ) {
        let _ = ready.send(Err(std::io::Error::other(format!(
            "raise the netlink send buffer: {e}"
        ))));
        return;
    }
    if ready.send(Ok(())).is_err() {
        return;
    }
    while let Ok(request) = inbox.recv() {
        match request {
            Request::Commit(batch, reply) => {
                let _ = reply.send(runtime.block_on(commit(&connection, &batch)));
            }
            Request::ClearFlows(frontends, reply) => {
                let result = runtime.block_on(clear_stale_flows(&conntrack, &frontends));
                let _ = reply.send(result.map_err(|e| e.to_string()));
            }
        }
    }
}

/// Dumps the UDP entries (the kernel filters by protocol) and deletes the
/// stale ones; one that went meanwhile is no error.
async fn clear_stale_flows(
    conntrack: &Connection<Netfilter>,
    frontends: &UdpFrontends,
) -> nlink::netlink::Result<usize> {
    let udp = ConntrackFilter::new()
        .family(nlink::netlink::types::AddressFamily::Inet)
        .proto(IpProtocol::Udp);
    let mut deleted = 0;
    for entry in conntrack.get_conntrack_matching(&udp).await? {
        if !flow(&entry).is_some_and(|f| frontends.is_stale(&f)) {
            continue;
        }
        match conntrack.del_conntrack_entry(&entry).await {
            Ok(()) => deleted += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// The parts of an IPv4 UDP entry the cleanup reads; `None` for any other.
fn flow(entry: &ConntrackEntry) -> Option<Flow> {
    let v4 = |ip: Option<std::net::IpAddr>, port: Option<u16>| match (ip?, port?) {
        (std::net::IpAddr::V4(ip), port) => Some(std::net::SocketAddrV4::new(ip, port)),
        _ => None,
    };
    Some(Flow {
        orig_src: v4(entry.orig.src_ip, entry.orig.src_port)?,
        orig_dst: v4(entry.orig.dst_ip, entry.orig.dst_port)?,
        reply_src: v4(entry.reply.src_ip, entry.reply.src_port)?,
        dst_nat: entry
            .status
            .is_some_and(|s| ConntrackStatus::from_bits(s).contains(ConntrackStatus::DST_NAT)),
    })
}

async fn commit(connection: &Connection<Nftables>, batch: &Batch) -> Result<(), ProxyError> {
    let refused = |errno: Option<i32>, detail: String| ProxyError::Commit {
        table: batch.table.clone(),
        operations: batch.ops.len(),
        full: batch.replaces_table(),
        errno,
        detail,
    };
    let tx = transaction(connection.transaction(), batch).map_err(|why| refused(None, why))?;
    tx.commit(connection)
        .await
        .map_err(|e| refused(e.errno(), e.to_string()))
}

/// The batch as nlink operations. Fails only on a name nlink refuses.
fn transaction(mut tx: Transaction, batch: &Batch) -> Result<Transaction, String> {
    let table = batch.table.as_str();
    let ip = Family::Ip;
    for op in &batch.ops {
        tx = match op {
            Op::EnsureTable => tx.raw(
                RawMessage::new(NFT_MSG_NEWTABLE, ip)
                    .flags(NLM_F_CREATE)
                    .attrs(string_attr(NFTA_TABLE_NAME, table)),
            ),
            Op::DeleteTable => tx.del_table(table, ip),
            Op::AddTable => tx.add_table(table, ip),
            Op::AddChain { name, base } => {
                let mut chain = NlChain::new(table, name.as_str())
                    .map_err(|e| format!("chain {name}: {e}"))?
                    .family(ip);
                if let Some(base) = base {
                    chain = chain.base(base_chain(base));
                }
                tx.add_chain(chain)
            }
            Op::FlushChain(name) => tx.flush_chain(table, name, ip),
            Op::DeleteChain(name) => tx.del_chain(table, name, ip),
            Op::AddRule { chain, rule } => tx.add_rule(nl_rule(table, chain, rule)?),
            Op::AddSet { name, spec } => tx.add_set(nl_set(table, name, spec)),
            Op::DeleteSet(name) => tx.del_set(table, name, ip),
            Op::AddElements {
                set,
                spec,
                elements,
            } => {
                let set = nl_set(table, set, spec);
                for chunk in chunks(elements) {
                    tx = tx.add_set_elements(&set, &nl_elements(chunk)?);
                }
                tx
            }
            Op::DeleteElements {
                set,
                spec,
                elements,
            } => {
                let set = nl_set(table, set, spec);
                for chunk in chunks(elements) {
                    tx = tx.del_set_elements(&set, &nl_elements(chunk)?);
                }
                tx
            }
        };
    }
    Ok(tx)
}

/// Elements split so that each message's element list stays under the
/// 64 KiB a netlink attribute can hold (a map of 1,000 services is more).
fn chunks(elements: &[(Key, Option<String>)]) -> impl Iterator<Item = &[(Key, Option<String>)]> {
    // Per element: the nests, a key of at most 12 bytes and a verdict
    // naming a chain; a generous bound.
    const BUDGET: usize = 48 * 1024;
    let mut rest = elements;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut size = 0;
        let mut n = 0;
        while n < rest.len() {
            let cost = 64 + rest[n].1.as_ref().map_or(0, String::len);
            if n > 0 && size + cost > BUDGET {
                break;
            }
            size += cost;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// A netlink attribute holding a NUL-terminated string, padded to 4 bytes.
fn string_attr(kind: u16, value: &str) -> Vec<u8> {
    let payload = value.len() + 1;
    let len = u16::try_from(4 + payload).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity((4 + payload).next_multiple_of(4));
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value.as_bytes());
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

fn base_chain(base: &BaseHook) -> BaseChain {
    let priority = Priority::Custom(base.priority);
    match base.kind {
        ChainKind::Filter => BaseChain::filter(
            match base.hook {
                Hook::Prerouting => FilterHook::Prerouting,
                Hook::Input => FilterHook::Input,
                Hook::Forward => FilterHook::Forward,
                Hook::Output => FilterHook::Output,
                Hook::Postrouting => FilterHook::Postrouting,
            },
            priority,
        ),
        ChainKind::Nat => BaseChain::nat(
            match base.hook {
                // NAT has no forward hook; the renderer never asks for one.
                Hook::Prerouting | Hook::Forward => NatHook::Prerouting,
                Hook::Input => NatHook::Input,
                Hook::Output => NatHook::Output,
                Hook::Postrouting => NatHook::Postrouting,
            },
            priority,
        ),
    }
}

fn key_type(key: KeyType) -> SetKeyType {
    match key {
        KeyType::Addr => SetKeyType::Ipv4Addr,
        KeyType::ProtoPort => {
            SetKeyType::Concat(vec![SetKeyType::InetProto, SetKeyType::InetService])
        }
        KeyType::AddrProtoPort => SetKeyType::Concat(vec![
            SetKeyType::Ipv4Addr,
            SetKeyType::InetProto,
            SetKeyType::InetService,
        ]),
    }
}

fn nl_set(table: &str, name: &str, spec: &SetSpec) -> NlSet {
    let mut set = NlSet::new(table, name)
        .family(Family::Ip)
        .key_type(key_type(spec.key));
    if spec.verdict_map {
        set = set.vmap();
    }
    if let Some(timeout) = spec.timeout {
        set = set.dynamic().timeout(timeout);
    }
    set
}

fn nl_elements(elements: &[(Key, Option<String>)]) -> Result<Vec<SetElement>, String> {
    elements
        .iter()
        .map(|(key, goto)| {
            let element = match key {
                Key::Addr(a) => SetElement::ipv4(*a),
                Key::ProtoPort(p, port) => SetElement::concat([
                    SetElement::inet_proto(p.number()),
                    SetElement::port(*port),
                ]),
                Key::AddrProtoPort(a, p, port) => SetElement::concat([
                    SetElement::ipv4(*a),
                    SetElement::inet_proto(p.number()),
                    SetElement::port(*port),
                ]),
            };
            Ok(match goto {
                Some(chain) => element.verdict(Verdict::GotoTo(chain_name(chain)?)),
                None => element,
            })
        })
        .collect()
}

fn chain_name(name: &str) -> Result<ChainName, String> {
    ChainName::new(name).map_err(|e| format!("chain name {name:?}: {e}"))
}

/// `ip daddr` / `meta l4proto` / `th dport` into consecutive 32-bit
/// registers from word 0: a concatenated key, each field padded to 4 bytes
/// (the kernel zeroes the rest of a partly written register).
fn load_daddr(dreg: Register) -> Expr {
    Expr::Payload {
        dreg,
        base: PayloadBase::Network,
        offset: 16,
        len: 4,
    }
}

fn load_l4proto(dreg: Register) -> Expr {
    Expr::Meta {
        dreg,
        key: MetaKey::L4Proto,
    }
}

fn load_dport(dreg: Register) -> Expr {
    Expr::Payload {
        dreg,
        base: PayloadBase::Transport,
        offset: 2,
        len: 2,
    }
}

fn vmap(map: &str) -> Expr {
    Expr::Lookup(LookupExpr::new(map, Register::R0).dreg(Register::Verdict))
}

fn nl_rule(table: &str, chain: &str, rule: &Rule) -> Result<NlRule, String> {
    let mut r = NlRule::new(table, chain).family(Family::Ip);
    for stmt in &rule.0 {
        r = match stmt {
            Stmt::CtStateNew => r.match_ct_state(CtState::NEW),
            Stmt::Saddr { net, negate: false } => r.match_saddr_v4(net.addr, net.prefix),
            Stmt::Saddr { net, negate: true } => r.match_saddr_v4_not(net.addr, net.prefix),
            Stmt::Daddr { net, negate: false } => r.match_daddr_v4(net.addr, net.prefix),
            Stmt::Daddr { net, negate: true } => r.match_daddr_v4_not(net.addr, net.prefix),
            Stmt::SaddrInSet(set) => r.match_saddr_in_set(set),
            Stmt::DaddrInSet(set) => r.match_daddr_in_set(set),
            Stmt::DaddrLocal => r
                .expr(Expr::Fib {
                    dreg: Register::R0,
                    result: FibResult::AddrType,
                    flags: FibFlags::DADDR,
                })
                .expr(Expr::Cmp {
                    sreg: Register::R0,
                    op: CmpOp::Eq,
                    data: RTN_LOCAL.to_ne_bytes().to_vec(),
                }),
            Stmt::L4Proto(p) => r.match_l4proto(p.number()),
            Stmt::Dport(port) => r.expr(load_dport(Register::R0)).expr(Expr::Cmp {
                sreg: Register::R0,
                op: CmpOp::Eq,
                data: port.to_be_bytes().to_vec(),
            }),
            Stmt::OifnameNot(name) => r.match_oif_not(name),
            Stmt::MarkHas(bits) => r.match_mark_masked(*bits, *bits),
            Stmt::MarkSet(bits) => r.set_mark_masked(*bits, *bits),
            Stmt::MarkClear(bits) => r.set_mark_masked(0, *bits),
            Stmt::VmapAddrProtoPort(map) => r
                .expr(load_daddr(Register::R0))
                .expr(load_l4proto(Register::Reg32_01))
                .expr(load_dport(Register::Reg32_02))
                .expr(vmap(map)),
            Stmt::VmapProtoPort(map) => r
                .expr(load_l4proto(Register::R0))
                .expr(load_dport(Register::Reg32_01))
                .expr(vmap(map)),
            Stmt::OneIn(modulus) => r
                .expr(Expr::Numgen {
                    dreg: Register::R0,
                    kind: NumgenKind::Random,
                    modulus: *modulus,
                    offset: 0,
                })
                .expr(Expr::Cmp {
                    sreg: Register::R0,
                    op: CmpOp::Eq,
                    // numgen writes a host-order u32.
                    data: 0u32.to_ne_bytes().to_vec(),
                }),
            Stmt::UpdateSaddr(set) => r.dynset(
                PacketField::Ip4Saddr,
                DynsetExpr::new(DynsetOp::Update, set.as_str(), Register::R0),
            ),
            Stmt::Dnat { addr, port } => r.dnat(*addr, Some(*port)),
            Stmt::Masquerade => r.masquerade(),
            Stmt::RejectTcpReset => r.reject_tcp_reset(),
            Stmt::RejectPortUnreachable => r.reject_icmp(3),
            Stmt::Jump(to) => r.jump(chain_name(to)?),
            Stmt::Goto(to) => r.goto(chain_name(to)?),
        };
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::proxy::model::Cidr;
    use crate::proxy::Protocol;

    #[test]
    fn a_string_attribute_is_terminated_and_padded() {
        assert_eq!(string_attr(1, "ab"), [7, 0, 1, 0, b'a', b'b', 0, 0]);
        assert_eq!(string_attr(1, "abcd").len(), 12);
    }

    #[test]
    fn large_element_lists_are_split_under_the_attribute_limit() {
        let chain = Some("x".repeat(200));
        let elements: Vec<(Key, Option<String>)> = (0..1000u16)
            .map(|p| (Key::ProtoPort(Protocol::Tcp, p), chain.clone()))
            .collect();
        let parts: Vec<_> = chunks(&elements).collect();
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.len() * (64 + 200) <= 48 * 1024));
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 1000);
        assert_eq!(chunks(&[]).count(), 0);
    }

    #[test]
    fn every_statement_translates() {
        let stmts = vec![
            Stmt::CtStateNew,
            Stmt::Saddr {
                net: Cidr::clamped(Ipv4Addr::new(10, 42, 0, 0), 16),
                negate: true,
            },
            Stmt::DaddrLocal,
            Stmt::L4Proto(Protocol::Udp),
            Stmt::Dport(53),
            Stmt::OifnameNot("outpost0".to_string()),
            Stmt::MarkHas(0x4000),
            Stmt::MarkClear(0x4000),
            Stmt::OneIn(3),
            Stmt::UpdateSaddr("a".to_string()),
            Stmt::Dnat {
                addr: Ipv4Addr::new(10, 42, 0, 1),
                port: 8080,
            },
            Stmt::Goto("chain".to_string()),
        ];
        assert!(nl_rule("t", "c", &Rule(stmts)).is_ok());
        let bad = Rule(vec![Stmt::Jump(String::new())]);
        assert!(nl_rule("t", "c", &bad).is_err(), "an empty chain name");
    }
}
