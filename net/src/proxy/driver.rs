//! The proxy driver: render, diff against what was last committed, commit.

use std::path::Path;
use std::time::{Duration, Instant};

use super::conntrack::UdpFrontends;
use super::model::{Cidr, Ruleset};
use super::netlink::NetlinkTables;
use super::plan::{self, Batch};
use super::render::{render, Conflict, Rendered};
use super::tables::Tables;
use super::{HostPort, ProxyConfig, ProxyError, Service};

/// The service proxy of one network namespace: owns one nftables table.
#[derive(Debug)]
pub struct Proxy<T: Tables = NetlinkTables> {
    config: ProxyConfig,
    tables: T,
    /// What the kernel has, as last committed; `None` when unknown (before
    /// the first sync, after a refused one): the next sync replaces the
    /// whole table.
    kernel: Option<Ruleset>,
    /// The UDP frontends as of the last conntrack cleanup; `None` before the
    /// first one and after a failed one (the next sync cleans again).
    udp: Option<UdpFrontends>,
}

/// What one [`Proxy::sync`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStats {
    /// The whole table was replaced (first sync, or recovery).
    pub full: bool,
    /// A changes-only transaction was refused (the kernel's table was not
    /// what the proxy last committed) and the whole table was replaced.
    pub recovered: bool,
    /// Netlink operations in the transaction; 0 when nothing changed.
    pub operations: usize,
    /// Chains in the table.
    pub chains: usize,
    /// Sets and maps in the table.
    pub sets: usize,
    /// Ports left out because another service or host port had them.
    pub conflicts: Vec<Conflict>,
    /// Time to render and diff.
    pub plan_time: Duration,
    /// Time the kernel took to apply the transaction.
    pub commit_time: Duration,
    /// UDP conntrack entries deleted because no rule leads there any more.
    pub stale_flows: usize,
}

impl ProxyConfig {
    /// Checks the fields the kernel and the rules depend on.
    pub fn validate(&self) -> Result<(), ProxyError> {
        let bad = |field: &'static str, reason: String| Err(ProxyError::Config { field, reason });
        let t = &self.table;
        let name_ok = t.len() <= 64
            && t.starts_with(|c: char| c.is_ascii_alphabetic())
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            return bad(
                "table",
                format!("{t:?} must start with a letter and hold at most 64 letters, digits, '_', '-' or '.'"),
            );
        }
        let b = &self.bridge;
        if b.is_empty()
            || b.len() > 15
            || b.contains(['/', '\0'])
            || b.contains(char::is_whitespace)
        {
            return bad(
                "bridge",
                format!("{b:?} is not an interface name (1 to 15 bytes, no '/' or spaces)"),
            );
        }
        let cidr = |field: &'static str, (addr, prefix): (std::net::Ipv4Addr, u8)| {
            Cidr::new(addr, prefix).ok_or_else(|| ProxyError::Config {
                field,
                reason: format!("{addr}/{prefix}: the prefix length is at most 32"),
            })
        };
        let services = cidr("service_cidr", self.service_cidr)?;
        let pods = cidr("pod_cidr", self.pod_cidr)?;
        if services.contains(pods.addr) || pods.contains(services.addr) {
            return bad(
                "service_cidr",
                format!("{services} overlaps the pod range {pods}: pick ranges apart"),
            );
        }
        Ok(())
    }
}

impl Proxy<NetlinkTables> {
    /// A proxy for the network namespace pinned at `netns` (the caller's own
    /// when `None`). Changes nothing until the first [`sync`](Self::sync).
    pub fn open(config: ProxyConfig, netns: Option<&Path>) -> Result<Self, ProxyError> {
        config.validate()?;
        let tables = NetlinkTables::open(&config.table, netns)?;
        Proxy::with_tables(config, tables)
    }
}

impl<T: Tables> Proxy<T> {
    /// A proxy committing through `tables` (a fake in tests).
    pub fn with_tables(config: ProxyConfig, tables: T) -> Result<Self, ProxyError> {
        config.validate()?;
        Ok(Proxy {
            config,
            tables,
            kernel: None,
            udp: None,
        })
    }

    /// Makes the table serve `services` and `host_ports`, in one atomic
    /// transaction: the first sync replaces the whole table (nothing stale
    /// from an earlier run survives), later ones send only what changed.
    /// Blocking (about a millisecond); call it from a plain thread or
    /// `spawn_blocking`.
    pub fn sync(
        &mut self,
        services: &[Service],
        host_ports: &[HostPort],
    ) -> Result<SyncStats, ProxyError> {
        let started = Instant::now();
        let Rendered { ruleset, conflicts } = render(&self.config, services, host_ports);
        let batch = match &self.kernel {
            Some(old) => plan::update(old, &ruleset),
            None => plan::full(&ruleset),
        };
        let plan_time = started.elapsed();
        let mut stats = SyncStats {
            full: batch.replaces_table(),
            recovered: false,
            operations: batch.ops.len(),
            chains: ruleset.chains.len(),
            sets: ruleset.sets.len(),
            conflicts,
            plan_time,
            commit_time: Duration::ZERO,
            stale_flows: 0,
        };
        if !batch.is_empty() {
            self.apply(&batch, ruleset, &mut stats)?;
        }
        // After the commit, so that the flows' next packets meet the new rules.
        let frontends = UdpFrontends::of(&self.config, services, host_ports);
        if !frontends.nothing_to_clean(self.udp.as_ref()) {
            let all = frontends.clone().with_gone(self.udp.as_ref());
            match self.tables.clear_stale_flows(&all) {
                Ok(n) => {
                    stats.stale_flows = n;
                    self.udp = Some(frontends);
                }
                Err(e) => {
                    // The rules are right; the flows idle out on their own.
                    tracing::warn!(table = %self.config.table, error = %e, "stale UDP flows stay until the next sync");
                    self.udp = None;
                }
            }
        }
        Ok(stats)
    }

    /// Commits `batch`; when the kernel refuses the changes, the whole table.
    fn apply(
        &mut self,
        batch: &Batch,
        ruleset: Ruleset,
        stats: &mut SyncStats,
    ) -> Result<(), ProxyError> {
        let started = Instant::now();
        if let Err(e) = self.commit(batch) {
            if batch.replaces_table() {
                return Err(e);
            }
            // The kernel's table is not what was last committed (someone
            // changed or deleted it): nothing was applied, so replace it whole.
            tracing::warn!(table = %self.config.table, error = %e, "changes refused; replacing the whole nftables table");
            let whole = plan::full(&ruleset);
            self.commit(&whole)?;
            stats.full = true;
            stats.recovered = true;
            stats.operations = whole.ops.len();
        }
        stats.commit_time = started.elapsed();
        self.kernel = Some(ruleset);
        Ok(())
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), ProxyError> {
        let result = self.tables.commit(batch);
        if result.is_err() {
            self.kernel = None;
        }
        result
    }

    /// Deletes the proxy's table (uninstall, `outpost killall`); a table
    /// already gone is fine. A later sync creates it again.
    pub fn remove(&mut self) -> Result<(), ProxyError> {
        self.kernel = None;
        self.udp = None;
        self.tables.commit(&plan::remove(&self.config.table))
    }

    /// Makes the next sync replace the whole table (a periodic safety net
    /// against changes made behind the proxy's back).
    pub fn force_full_sync(&mut self) {
        self.kernel = None;
    }

    /// The table as last committed, if known.
    pub fn ruleset(&self) -> Option<&Ruleset> {
        self.kernel.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// The batch sink (the recording fake, in tests).
    pub fn tables(&self) -> &T {
        &self.tables
    }

    /// The batch sink, mutably.
    pub fn tables_mut(&mut self) -> &mut T {
        &mut self.tables
    }
}
