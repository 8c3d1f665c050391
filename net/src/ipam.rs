//! Pod IP addresses: a pure allocator ([`Allocations`]) and its crash-safe
//! store on disk ([`Ipam`]).
//!
//! Allocation is round-robin from the last address handed out (as CNI
//! `host-local` does), so a released address comes back last; on top of that a
//! released address sits in quarantine for a while (60 s by default) and is
//! only handed out again from there when nothing else is free. Both keep a
//! stale peer (a Service endpoint, a conntrack entry, a DNS cache) from
//! reaching a new pod that got a dead pod's address.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// How long a released address is kept back by default.
pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(60);

/// What can go wrong with pod addresses.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("invalid pod range {range}: {reason}")]
    InvalidRange { range: String, reason: &'static str },
    #[error("pod range {range} is exhausted: all {size} addresses are in use")]
    Exhausted { range: String, size: u32 },
    #[error("live pod {owner} has address {ip}, which another live pod ({other}) has too")]
    Duplicate {
        owner: String,
        other: String,
        ip: Ipv4Addr,
    },
    #[error("read ipam state {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "ipam state {path} is corrupt ({reason}): rebuild it from the running pods (Ipam::rebuild)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("write ipam state {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A pod range: an IPv4 subnet whose first address is normally the gateway
/// (the bridge); the network and broadcast addresses are never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodRange {
    network: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
}

impl PodRange {
    /// A range whose gateway is its first address (`10.42.0.0/24` → `10.42.0.1`).
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Result<Self, IpamError> {
        let first = Ipv4Addr::from(u32::from(network).wrapping_add(1));
        Self::with_gateway(network, prefix_len, first)
    }

    /// A range with an explicit gateway, which must be one of its host addresses.
    pub fn with_gateway(
        network: Ipv4Addr,
        prefix_len: u8,
        gateway: Ipv4Addr,
    ) -> Result<Self, IpamError> {
        let fail = |reason| IpamError::InvalidRange {
            range: format!("{network}/{prefix_len}"),
            reason,
        };
        // /31 and /32 leave no room for a gateway and a pod.
        if !(1..=30).contains(&prefix_len) {
            return Err(fail("the prefix length must be between 1 and 30"));
        }
        let range = PodRange {
            network,
            prefix_len,
            gateway,
        };
        if u32::from(network) & !range.mask() != 0 {
            return Err(fail("host bits are set: give the network address"));
        }
        if !range.is_host(gateway) {
            return Err(fail("the gateway is not a host address of the range"));
        }
        Ok(range)
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The gateway (the bridge's address).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// How many addresses pods can get (hosts minus the gateway).
    pub fn size(&self) -> u32 {
        self.last() - self.first() // + 1 host - 1 gateway
    }

    /// Whether `ip` is an address a pod may have in this range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.is_host(ip) && ip != self.gateway
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix_len))
    }

    fn first(&self) -> u32 {
        u32::from(self.network) + 1
    }

    fn last(&self) -> u32 {
        (u32::from(self.network) | !self.mask()) - 1
    }

    fn is_host(&self, ip: Ipv4Addr) -> bool {
        (self.first()..=self.last()).contains(&u32::from(ip))
    }
}

impl fmt::Display for PodRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for PodRange {
    type Err = IpamError;

    /// Parses `10.42.0.0/24`; the gateway is the first address.
    fn from_str(s: &str) -> Result<Self, IpamError> {
        let fail = || IpamError::InvalidRange {
            range: s.to_string(),
            reason: "expected an IPv4 CIDR such as 10.42.0.0/24",
        };
        let (ip, len) = s.split_once('/').ok_or_else(fail)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| fail())?;
        let len: u8 = len.parse().map_err(|_| fail())?;
        PodRange::new(ip, len)
    }
}

/// Who has which address, what was handed out last and what was released
/// when: the pure allocator. Time is passed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocations {
    pods: BTreeMap<String, Ipv4Addr>,
    last: Option<Ipv4Addr>,
    /// Released address → when (seconds since the Unix epoch).
    released: BTreeMap<Ipv4Addr, u64>,
}

impl Allocations {
    /// Allocations for pods that are known to be running (after a lost or
    /// corrupt state file). Addresses outside `range` are kept for their pods.
    pub fn from_live(range: &PodRange, live: &[(String, Ipv4Addr)]) -> Result<Self, IpamError> {
        let mut pods = BTreeMap::new();
        let mut by_ip: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
        for (owner, ip) in live {
            if let Some(other) = by_ip.insert(*ip, owner) {
                if other != owner {
                    return Err(IpamError::Duplicate {
                        owner: owner.clone(),
                        other: other.to_string(),
                        ip: *ip,
                    });
                }
            }
            pods.insert(owner.clone(), *ip);
        }
        // The released addresses are unknown: continue after the highest one in
        // use, which is where round-robin most likely was.
        let last = pods
            .values()
            .copied()
            .filter(|ip| range.contains(*ip))
            .max();
        Ok(Allocations {
            pods,
            last,
            released: BTreeMap::new(),
        })
    }

    /// The address of `owner`, if it has one.
    pub fn get(&self, owner: &str) -> Option<Ipv4Addr> {
        self.pods.get(owner).copied()
    }

    /// Every owner and its address, ordered by owner.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Ipv4Addr)> {
        self.pods.iter().map(|(o, ip)| (o.as_str(), *ip))
    }

    /// The address for `owner`: its current one, else the next free one after
    /// the last handed out, else the one released longest ago. An address
    /// outside `range` (the range changed) is replaced.
    pub fn allocate(
        &mut self,
        range: &PodRange,
        owner: &str,
        now: SystemTime,
        quarantine: Duration,
    ) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = self.get(owner) {
            if range.contains(ip) {
                return Ok(ip);
            }
            self.pods.remove(owner);
        }
        let now = unix_secs(now);
        // Quarantine is over for addresses released long enough ago. One
        // released "in the future" (the clock was stepped back) stays.
        self.released
            .retain(|_, at| at.saturating_add(quarantine.as_secs()) > now);
        let used: HashSet<Ipv4Addr> = self.pods.values().copied().collect();
        let (first, last) = (range.first(), range.last());
        let start = match self.last {
            Some(ip) if range.is_host(ip) && u32::from(ip) < last => u32::from(ip) + 1,
            _ => first,
        };
        let span = last - first + 1;
        let mut fallback: Option<(u64, Ipv4Addr)> = None;
        let mut picked = None;
        for step in 0..span {
            let ip = Ipv4Addr::from(first + (start - first + step) % span);
            if ip == range.gateway || used.contains(&ip) {
                continue;
            }
            match self.released.get(&ip) {
                None => {
                    picked = Some(ip);
                    break;
                }
                Some(&at) => {
                    if fallback.is_none_or(|(best, _)| at < best) {
                        fallback = Some((at, ip));
                    }
                }
            }
        }
        let ip = match (picked, fallback) {
            (Some(ip), _) | (None, Some((_, ip))) => ip,
            (None, None) => {
                return Err(IpamError::Exhausted {
                    range: range.to_string(),
                    size: range.size(),
                })
            }
        };
        self.released.remove(&ip);
        self.pods.insert(owner.to_string(), ip);
        self.last = Some(ip);
        Ok(ip)
    }

    /// Releases `owner`'s address into quarantine; `None` if it had none.
    pub fn release(&mut self, owner: &str, now: SystemTime) -> Option<Ipv4Addr> {
        let ip = self.pods.remove(owner)?;
        self.released.insert(ip, unix_secs(now));
        Some(ip)
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The state file, version 1.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    /// For a human reading the file; the configured range wins.
    range: String,
    last: Option<Ipv4Addr>,
    pods: BTreeMap<String, Ipv4Addr>,
    released: BTreeMap<Ipv4Addr, u64>,
}

const STATE_VERSION: u32 = 1;

/// The allocator persisted to a JSON file, written (atomically, fsync'd) only
/// when something changed.
#[derive(Debug)]
pub struct Ipam {
    path: PathBuf,
    range: PodRange,
    quarantine: Duration,
    state: Allocations,
}

impl Ipam {
    /// Loads the state at `path` (none yet is an empty state). A file that
    /// cannot be parsed is an error naming it: see [`Ipam::rebuild`].
    pub fn open(path: &Path, range: PodRange, quarantine: Duration) -> Result<Self, IpamError> {
        let state = match std::fs::read(path) {
            Ok(bytes) => parse(path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Allocations::default(),
            Err(source) => {
                return Err(IpamError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Ok(Ipam {
            path: path.to_path_buf(),
            range,
            quarantine,
            state,
        })
    }

    /// Replaces the state at `path` with the addresses of the pods known to be
    /// running (owner, address), and writes it.
    pub fn rebuild(
        path: &Path,
        range: PodRange,
        quarantine: Duration,
        live: &[(String, Ipv4Addr)],
    ) -> Result<Self, IpamError> {
        let state = Allocations::from_live(&range, live)?;
        persist(path, &range, &state)?;
        Ok(Ipam {
            path: path.to_path_buf(),
            range,
            quarantine,
            state,
        })
    }

    /// The pod range.
    pub fn range(&self) -> &PodRange {
        &self.range
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The address of `owner`, if it has one.
    pub fn get(&self, owner: &str) -> Option<Ipv4Addr> {
        self.state.get(owner)
    }

    /// The allocations in memory (the same as on disk).
    pub fn allocations(&self) -> &Allocations {
        &self.state
    }

    /// The address for `owner` (its existing one if it has one), persisted.
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        self.allocate_at(owner, SystemTime::now())
    }

    /// [`Ipam::allocate`] at a given time.
    pub fn allocate_at(&mut self, owner: &str, now: SystemTime) -> Result<Ipv4Addr, IpamError> {
        let mut next = self.state.clone();
        let ip = next.allocate(&self.range, owner, now, self.quarantine)?;
        self.commit(next)?;
        Ok(ip)
    }

    /// Releases `owner`'s address into quarantine, persisted; `None` if it had none.
    pub fn release(&mut self, owner: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        self.release_at(owner, SystemTime::now())
    }

    /// [`Ipam::release`] at a given time.
    pub fn release_at(
        &mut self,
        owner: &str,
        now: SystemTime,
    ) -> Result<Option<Ipv4Addr>, IpamError> {
        let mut next = self.state.clone();
        let ip = next.release(owner, now);
        self.commit(next)?;
        Ok(ip)
    }

    /// Writes `next` if it differs, then adopts it: memory never runs ahead of
    /// the disk, so a failed write changes nothing.
    fn commit(&mut self, next: Allocations) -> Result<(), IpamError> {
        if next != self.state {
            persist(&self.path, &self.range, &next)?;
            self.state = next;
        }
        Ok(())
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Allocations, IpamError> {
    let corrupt = |reason: String| IpamError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let file: StateFile = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if file.version != STATE_VERSION {
        return Err(corrupt(format!("unknown version {}", file.version)));
    }
    let mut seen: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    for (owner, ip) in &file.pods {
        if let Some(other) = seen.insert(*ip, owner) {
            return Err(corrupt(format!(
                "{ip} is given to both {other} and {owner}"
            )));
        }
    }
    Ok(Allocations {
        pods: file.pods,
        last: file.last,
        released: file.released,
    })
}

/// Temp file in the same directory, fsync, rename, fsync the directory: after
/// a power cut the file is either the old or the new state, never a mix.
fn persist(path: &Path, range: &PodRange, state: &Allocations) -> Result<(), IpamError> {
    let fail = |source: std::io::Error| IpamError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = StateFile {
        version: STATE_VERSION,
        range: range.to_string(),
        last: state.last,
        pods: state.pods.clone(),
        released: state.released.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| fail(e.into()))?;
    bytes.push(b'\n');
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| fail(std::io::Error::other("the state path has no file name")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut out = File::create(&tmp).map_err(fail)?;
    out.write_all(&bytes).map_err(fail)?;
    out.sync_all().map_err(fail)?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(fail)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a script against a fresh allocator and compares the trace.
    /// Script lines: `T alloc OWNER` or `T release OWNER` (T in seconds);
    /// quarantine is 60 s. Trace lines: `OWNER IP`, `release OWNER IP|-`,
    /// `error MESSAGE`.
    fn check(range: &str, script: &str, expect: &str) {
        let range: PodRange = range.parse().expect("range");
        let mut a = Allocations::default();
        let mut trace = Vec::new();
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [t, op, owner] = words[..] else {
                panic!("bad script line {line:?}")
            };
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(t.parse().expect("time"));
            match op {
                "alloc" => match a.allocate(&range, owner, now, DEFAULT_QUARANTINE) {
                    Ok(ip) => trace.push(format!("{owner} {ip}")),
                    Err(e) => trace.push(format!("error {e}")),
                },
                "release" => match a.release(owner, now) {
                    Some(ip) => trace.push(format!("release {owner} {ip}")),
                    None => trace.push(format!("release {owner} -")),
                },
                _ => panic!("bad op {op:?}"),
            }
        }
        let expect: Vec<String> = expect
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        assert_eq!(trace, expect, "script:\n{script}");
    }

    #[test]
    fn same_owner_same_address() {
        check(
            "10.42.0.0/24",
            "0 alloc a
             0 alloc b
             5 alloc a",
            "a 10.42.0.2
             b 10.42.0.3
             a 10.42.0.2",
        );
    }

    #[test]
    fn released_address_is_not_reused_next() {
        check(
            "10.42.0.0/24",
            "0 alloc a
             1 release a
             2 alloc b
             3 alloc a",
            "a 10.42.0.2
             release a 10.42.0.2
             b 10.42.0.3
             a 10.42.0.4",
        );
    }

    #[test]
    fn round_robin_wraps_to_expired_releases() {
        // /29: hosts .1-.6, gateway .1, so pods get .2-.6 (5 addresses).
        check(
            "10.0.0.0/29",
            "0 alloc a
             0 alloc b
             0 alloc c
             0 alloc d
             1 release a
             1 release b
             100 release d
             101 alloc e
             101 alloc f
             102 alloc g",
            "a 10.0.0.2
             b 10.0.0.3
             c 10.0.0.4
             d 10.0.0.5
             release a 10.0.0.2
             release b 10.0.0.3
             release d 10.0.0.5
             e 10.0.0.6
             f 10.0.0.2
             g 10.0.0.3",
        );
    }

    #[test]
    fn quarantined_addresses_only_when_exhausted_oldest_first() {
        check(
            "10.0.0.0/29",
            "0 alloc a
             0 alloc b
             0 alloc c
             0 alloc d
             0 alloc e
             10 release c
             5 release a
             20 alloc f
             20 alloc g
             20 alloc h",
            "a 10.0.0.2
             b 10.0.0.3
             c 10.0.0.4
             d 10.0.0.5
             e 10.0.0.6
             release c 10.0.0.4
             release a 10.0.0.2
             f 10.0.0.2
             g 10.0.0.4
             error pod range 10.0.0.0/29 is exhausted: all 5 addresses are in use",
        );
    }

    #[test]
    fn quarantine_ends() {
        // b's .3 was released first, then a's .2. Within the quarantine the
        // range is full and the oldest release (.3) is reused; once both are
        // over, .2 is simply the next free address in round-robin order.
        let setup = "0 alloc a
                     0 alloc b
                     0 alloc c
                     0 alloc d
                     0 alloc e
                     0 release b
                     5 release a";
        let trace = "a 10.0.0.2
                     b 10.0.0.3
                     c 10.0.0.4
                     d 10.0.0.5
                     e 10.0.0.6
                     release b 10.0.0.3
                     release a 10.0.0.2";
        check(
            "10.0.0.0/29",
            &format!("{setup}\n 30 alloc f"),
            &format!("{trace}\n f 10.0.0.3"),
        );
        check(
            "10.0.0.0/29",
            &format!("{setup}\n 70 alloc f"),
            &format!("{trace}\n f 10.0.0.2"),
        );
    }

    #[test]
    fn quarantined_reuse_when_range_is_full() {
        // A /30 has a single pod address: it comes back at once rather than fail.
        check(
            "10.0.0.0/30",
            "0 alloc a
             1 release a
             2 alloc b
             3 alloc c",
            "a 10.0.0.2
             release a 10.0.0.2
             b 10.0.0.2
             error pod range 10.0.0.0/30 is exhausted: all 1 addresses are in use",
        );
        check(
            "10.0.0.0/29",
            "0 alloc a
             0 alloc b
             0 alloc c
             0 alloc d
             0 alloc e
             1 release c
             2 alloc f",
            "a 10.0.0.2
             b 10.0.0.3
             c 10.0.0.4
             d 10.0.0.5
             e 10.0.0.6
             release c 10.0.0.4
             f 10.0.0.4",
        );
    }

    #[test]
    fn release_unknown_owner_is_a_no_op() {
        check("10.42.0.0/24", "0 release x", "release x -");
    }

    #[test]
    fn gateway_is_skipped() {
        let range = PodRange::with_gateway(
            "10.0.0.0".parse().expect("ip"),
            29,
            "10.0.0.3".parse().expect("ip"),
        )
        .expect("range");
        let mut a = Allocations::default();
        let t = SystemTime::UNIX_EPOCH;
        let got: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|o| {
                a.allocate(&range, o, t, DEFAULT_QUARANTINE)
                    .expect("ip")
                    .to_string()
            })
            .collect();
        assert_eq!(got, ["10.0.0.1", "10.0.0.2", "10.0.0.4"]);
    }

    #[test]
    fn ranges() {
        let check = |s: &str, expect: &str| {
            let got = match s.parse::<PodRange>() {
                Ok(r) => format!("{r} gw {} size {}", r.gateway(), r.size()),
                Err(e) => e.to_string(),
            };
            assert_eq!(got, expect, "{s}");
        };
        check("10.42.0.0/24", "10.42.0.0/24 gw 10.42.0.1 size 253");
        check("10.0.0.0/30", "10.0.0.0/30 gw 10.0.0.1 size 1");
        check(
            "10.42.0.1/24",
            "invalid pod range 10.42.0.1/24: host bits are set: give the network address",
        );
        check(
            "10.42.0.0/31",
            "invalid pod range 10.42.0.0/31: the prefix length must be between 1 and 30",
        );
        check(
            "10.42.0.0",
            "invalid pod range 10.42.0.0: expected an IPv4 CIDR such as 10.42.0.0/24",
        );
    }

    #[test]
    fn out_of_range_address_is_replaced() {
        let range: PodRange = "10.42.0.0/24".parse().expect("range");
        let live = vec![("a".to_string(), "10.99.0.7".parse().expect("ip"))];
        let mut a = Allocations::from_live(&range, &live).expect("live");
        let ip = a
            .allocate(&range, "a", SystemTime::UNIX_EPOCH, DEFAULT_QUARANTINE)
            .expect("ip");
        assert_eq!(ip.to_string(), "10.42.0.2");
    }

    #[test]
    fn rebuild_continues_after_the_highest_live_address() {
        let range: PodRange = "10.42.0.0/24".parse().expect("range");
        let ip = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
        let live = vec![
            ("a".to_string(), ip("10.42.0.9")),
            ("b".to_string(), ip("10.42.0.4")),
        ];
        let mut a = Allocations::from_live(&range, &live).expect("live");
        let got = a
            .allocate(&range, "c", SystemTime::UNIX_EPOCH, DEFAULT_QUARANTINE)
            .expect("ip");
        assert_eq!(got, ip("10.42.0.10"));
        let dup = vec![
            ("a".to_string(), ip("10.42.0.9")),
            ("b".to_string(), ip("10.42.0.9")),
        ];
        let err = Allocations::from_live(&range, &dup).expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "live pod b has address 10.42.0.9, which another live pod (a) has too"
        );
    }

    #[test]
    fn store_persists_only_changes_and_survives_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipam.json");
        let range: PodRange = "10.42.0.0/24".parse().expect("range");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut ipam = Ipam::open(&path, range, DEFAULT_QUARANTINE).expect("open");
        assert!(!path.exists(), "nothing written before a change");
        let a = ipam.allocate_at("a", t0).expect("a");
        let b = ipam.allocate_at("b", t0).expect("b");
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).expect("stat"));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(ipam.allocate_at("a", t0).expect("again"), a);
        assert_eq!(ipam.release_at("nobody", t0).expect("release"), None);
        let meta = std::fs::metadata(&path).expect("stat");
        assert_eq!(
            meta.modified().expect("mtime"),
            modified,
            "no change, no write"
        );
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&meta),
            inode,
            "no rename either"
        );
        assert_eq!(ipam.release_at("a", t0).expect("release"), Some(a));

        let mut again = Ipam::open(&path, range, DEFAULT_QUARANTINE).expect("reload");
        assert_eq!(again.get("b"), Some(b));
        assert_eq!(again.get("a"), None);
        // The quarantine and the round-robin position came back too.
        let c = again.allocate_at("c", t0).expect("c");
        assert_eq!(c.to_string(), "10.42.0.4");
        assert!(
            !dir.path().join(".ipam.json.tmp").exists(),
            "temp file renamed away"
        );
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it_and_rebuild_recovers() {
        const CORRUPT: &[u8] = b"{\"version\": 1, \"pods\": {\"a\": \"10.42";
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipam.json");
        let range: PodRange = "10.42.0.0/24".parse().expect("range");
        std::fs::write(&path, CORRUPT).expect("write");
        let err = Ipam::open(&path, range, DEFAULT_QUARANTINE).expect_err("corrupt");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("rebuild"), "{msg}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            CORRUPT,
            "left as it was"
        );

        let ip = "10.42.0.7".parse().expect("ip");
        let live = vec![("a".to_string(), ip)];
        let mut ipam = Ipam::rebuild(&path, range, DEFAULT_QUARANTINE, &live).expect("rebuild");
        assert_eq!(ipam.allocate("a").expect("a"), ip);
        let reloaded = Ipam::open(&path, range, DEFAULT_QUARANTINE).expect("reload");
        assert_eq!(reloaded.get("a"), Some(ip));

        std::fs::write(&path, br#"{"version":1,"range":"x","last":null,"pods":{"a":"10.42.0.2","b":"10.42.0.2"},"released":{}}"#)
            .expect("write");
        let err = Ipam::open(&path, range, DEFAULT_QUARANTINE).expect_err("duplicate");
        assert!(
            err.to_string()
                .contains("10.42.0.2 is given to both a and b"),
            "{err}"
        );
    }
}
