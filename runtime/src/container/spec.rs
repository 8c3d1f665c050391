//! The OCI runtime spec (`config.json`) for one container, built from a plain
//! description of the container and the config of its image.
//!
//! [`build_spec`] is a pure function except for one read-only lookup: it
//! resolves user and group names through the image's `/etc/passwd` and
//! `/etc/group`, opened inside the rootfs with `RESOLVE_IN_ROOT` because the
//! rootfs is untrusted image content. Defaults follow what Kubernetes gets from
//! containerd's CRI plugin (its default Unix spec), so a container behaves here
//! as it does on a kubeadm node.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::runtime as oci;
use oci_spec::runtime::Capability;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};

/// The OCI runtime spec version written into `config.json`.
pub const OCI_VERSION: &str = "1.0.2";

/// `PATH` for images that set none (containerd's and Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Ceiling for `RLIMIT_NOFILE` (what containerd/Docker give containers), lowered
/// further to the host's hard limit.
pub const MAX_NOFILE: u64 = 1_048_576;

/// CFS period the kubelet uses (100 ms, in microseconds).
pub const CPU_PERIOD: u64 = 100_000;

const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
const SHARES_PER_CPU: u64 = 1024;
const MIN_QUOTA: i64 = 1000;

/// Largest `/etc/passwd` or `/etc/group` read from an image.
const MAX_USER_DB: u64 = 4 << 20;

/// A container to run, in the runtime's own words (no Kubernetes types).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerSpec {
    /// Overrides the image's entrypoint (Kubernetes `command`).
    pub command: Option<Vec<String>>,
    /// Overrides the image's cmd (Kubernetes `args`).
    pub args: Option<Vec<String>>,
    /// Set over the image's env; on the same name ours wins.
    pub env: Vec<(String, String)>,
    /// Overrides the image's working directory; must be absolute.
    pub working_dir: Option<String>,
    /// Overrides the image's user (Kubernetes `runAsUser`).
    pub user: Option<u32>,
    /// Overrides the primary group (Kubernetes `runAsGroup`).
    pub group: Option<u32>,
    /// Extra groups (Kubernetes `supplementalGroups`).
    pub supplemental_groups: Vec<u32>,
    /// All capabilities, all devices, no masked paths, writable `/sys`.
    pub privileged: bool,
    /// Capabilities to add: `NET_ADMIN`, `CAP_NET_ADMIN` or `ALL`.
    pub capabilities_add: Vec<String>,
    /// Capabilities to drop: `NET_ADMIN`, `CAP_NET_ADMIN` or `ALL`.
    pub capabilities_drop: Vec<String>,
    /// `false` sets `no_new_privs` (Kubernetes `allowPrivilegeEscalation`).
    pub allow_privilege_escalation: bool,
    /// Mounts the rootfs read-only (Kubernetes `readOnlyRootFilesystem`).
    pub readonly_rootfs: bool,
    /// Cgroup limits.
    pub resources: Resources,
    /// Volumes, applied after the default mounts; one with the destination of a
    /// default mount replaces it.
    pub mounts: Vec<Mount>,
    /// Namespaces to join (with a path) or to create besides the defaults.
    pub namespaces: Vec<Namespace>,
    /// Hostname, also exported as `HOSTNAME`.
    pub hostname: Option<String>,
    /// `linux.cgroupsPath`: required and unique per container.
    pub cgroups_path: String,
    /// Allocate a terminal for the process.
    pub terminal: bool,
    /// Copied into the spec's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Cgroup limits of one container; `None` leaves the kernel's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// `cpu.shares` (relative weight, 1024 = one CPU).
    pub cpu_shares: Option<u64>,
    /// `cpu.cfs_quota_us` per `cpu_period`.
    pub cpu_quota: Option<i64>,
    /// `cpu.cfs_period_us`.
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes (swap is limited to the same value: no swap use).
    pub memory_limit: Option<i64>,
    /// Maximum number of tasks.
    pub pids_limit: Option<i64>,
}

impl Resources {
    /// Converts Kubernetes requests/limits the way the kubelet does
    /// (`calculateLinuxResources`): shares from the request (or from the limit
    /// when only a limit is set), a CFS quota from the limit over a 100 ms period.
    pub fn from_kubernetes(
        cpu_request_millis: Option<u64>,
        cpu_limit_millis: Option<u64>,
        memory_limit_bytes: Option<i64>,
    ) -> Self {
        let shares = match (cpu_request_millis, cpu_limit_millis) {
            (None, Some(limit)) => milli_cpu_to_shares(limit),
            (request, _) => milli_cpu_to_shares(request.unwrap_or(0)),
        };
        Resources {
            cpu_shares: Some(shares),
            cpu_quota: cpu_limit_millis.and_then(|m| milli_cpu_to_quota(m, CPU_PERIOD)),
            // The kubelet always sends the period, limit or not.
            cpu_period: Some(CPU_PERIOD),
            // The kubelet sends 0 for "no limit".
            memory_limit: memory_limit_bytes.filter(|&m| m > 0),
            pids_limit: None,
        }
    }
}

/// `cpu.shares` for a CPU request in millicores (kubelet `MilliCPUToShares`).
fn milli_cpu_to_shares(millis: u64) -> u64 {
    let shares = u128::from(millis) * u128::from(SHARES_PER_CPU) / 1000;
    u64::try_from(shares)
        .unwrap_or(MAX_SHARES)
        .clamp(MIN_SHARES, MAX_SHARES)
}

/// CFS quota for a CPU limit in millicores, at least 1 ms (kubelet
/// `milliCPUToQuota`); `None` for no limit.
fn milli_cpu_to_quota(millis: u64, period: u64) -> Option<i64> {
    if millis == 0 {
        return None;
    }
    let quota = u128::from(millis) * u128::from(period) / 1000;
    Some(i64::try_from(quota).unwrap_or(i64::MAX).max(MIN_QUOTA))
}

/// A mount given by the caller (a volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the container.
    pub destination: String,
    /// Host path for `Bind`; ignored for `Tmpfs`.
    pub source: String,
    /// What to mount.
    pub kind: MountKind,
    /// Mount read-only.
    pub readonly: bool,
    /// Extra mount options (`size=64m`, `rslave`, …), appended to ours.
    pub options: Vec<String>,
}

/// The kind of a caller mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// Recursive bind mount of a host path (private propagation unless the
    /// options say otherwise).
    Bind,
    /// A fresh tmpfs.
    Tmpfs,
}

/// A namespace to create (no path) or join (path to a namespace file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Which namespace.
    pub kind: NamespaceKind,
    /// Join this namespace (e.g. the pod sandbox's `/proc/<pid>/ns/net` or a
    /// bind-mounted netns) instead of creating one.
    pub path: Option<PathBuf>,
}

/// Linux namespace kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceKind {
    /// Process IDs.
    Pid,
    /// Network stack.
    Network,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Hostname.
    Uts,
    /// Mounts.
    Mount,
    /// Cgroup root view.
    Cgroup,
    /// User and group IDs.
    User,
}

impl NamespaceKind {
    fn to_oci(self) -> oci::LinuxNamespaceType {
        match self {
            NamespaceKind::Pid => oci::LinuxNamespaceType::Pid,
            NamespaceKind::Network => oci::LinuxNamespaceType::Network,
            NamespaceKind::Ipc => oci::LinuxNamespaceType::Ipc,
            NamespaceKind::Uts => oci::LinuxNamespaceType::Uts,
            NamespaceKind::Mount => oci::LinuxNamespaceType::Mount,
            NamespaceKind::Cgroup => oci::LinuxNamespaceType::Cgroup,
            NamespaceKind::User => oci::LinuxNamespaceType::User,
        }
    }
}

/// The parts of an image config that shape the process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, as `K=V`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User`: `1000`, `1000:1000`, `nobody`, `nobody:nogroup`.
    pub user: Option<String>,
}

impl ImageConfig {
    /// Takes the process-related fields of an OCI image configuration.
    pub fn from_oci(cfg: &oci_spec::image::ImageConfiguration) -> Self {
        let Some(c) = cfg.config() else {
            return ImageConfig::default();
        };
        ImageConfig {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
            user: c.user().clone().filter(|u| !u.is_empty()),
        }
    }
}

/// Limits of the host that the spec must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLimits {
    /// Hard `RLIMIT_NOFILE` of the process that creates containers: without
    /// CAP_SYS_RESOURCE a container cannot get more.
    pub nofile_hard: u64,
}

impl HostLimits {
    /// Reads this process's limits.
    pub fn current() -> Self {
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        HostLimits {
            nofile_hard: nofile.maximum.unwrap_or(u64::MAX),
        }
    }
}

/// Why a spec could not be built; each names what the user should change.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither the container nor the image says what to run.
    #[error("no command: the image has no entrypoint or cmd and the container sets none")]
    NoCommand,
    /// `cgroups_path` was left empty.
    #[error("no cgroups path: every container needs its own linux.cgroupsPath")]
    NoCgroupsPath,
    /// An argument or environment entry contains a NUL byte.
    #[error("{what} contains a NUL byte: {value:?}")]
    NulByte { what: &'static str, value: String },
    /// An environment variable name is empty or contains `=`.
    #[error("invalid environment variable name {name:?}: it must be non-empty and contain no '='")]
    InvalidEnvName { name: String },
    /// The working directory is not absolute.
    #[error("working directory {dir:?} is not an absolute path")]
    RelativeWorkingDir { dir: String },
    /// A capability name `oci-spec` does not know.
    #[error("unknown capability {name:?}: use a name like NET_ADMIN or CAP_NET_ADMIN, or ALL")]
    UnknownCapability { name: String },
    /// A user name the image's `/etc/passwd` does not have.
    #[error("user {user:?} not found in the image's /etc/passwd: use a numeric user id or add the user to the image")]
    UserNotFound { user: String },
    /// A group name the image's `/etc/group` does not have.
    #[error("group {group:?} of user {user:?} not found in the image's /etc/group: use a numeric group id or add the group to the image")]
    GroupNotFound { user: String, group: String },
    /// A user or group name but no database to look it up in.
    #[error("cannot resolve user {user:?}: the image has no {file}; use numeric ids")]
    NoUserDb { user: String, file: &'static str },
    /// Reading the image's user database failed.
    #[error("reading the image's {file} to resolve user {user:?}: {source}")]
    ReadUserDb {
        user: String,
        file: &'static str,
        #[source]
        source: io::Error,
    },
    /// A caller mount has a relative destination.
    #[error("mount destination {destination:?} is not an absolute path")]
    RelativeMountDestination { destination: String },
    /// The same namespace kind was listed twice.
    #[error("namespace {kind:?} is listed more than once")]
    DuplicateNamespace { kind: NamespaceKind },
    /// `oci-spec` rejected a value (a builder failed).
    #[error("building the OCI spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

/// Builds the OCI runtime spec for `c` running from `rootfs` with `image`'s config.
///
/// Reads nothing but the image's `/etc/passwd` and `/etc/group` (inside
/// `rootfs`) to resolve users.
pub fn build_spec(
    c: &ContainerSpec,
    image: &ImageConfig,
    rootfs: &Path,
    limits: &HostLimits,
) -> Result<oci::Spec, SpecError> {
    if c.cgroups_path.is_empty() {
        return Err(SpecError::NoCgroupsPath);
    }
    let args = process_args(c, image)?;
    let env = process_env(c, image)?;
    let cwd = working_dir(c, image)?;
    let user = resolve_user(c, image, rootfs)?;
    let caps = capabilities(c)?;
    let nofile = MAX_NOFILE.min(limits.nofile_hard);

    let mut process = oci::ProcessBuilder::default()
        .terminal(c.terminal)
        .user(
            oci::UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.additional_gids)
                .build()?,
        )
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(
            oci::LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .inheritable(oci::Capabilities::new())
                .ambient(oci::Capabilities::new())
                .build()?,
        )
        .rlimits(vec![oci::PosixRlimitBuilder::default()
            .typ(oci::PosixRlimitType::RlimitNofile)
            .soft(nofile)
            .hard(nofile)
            .build()?])
        .build()?;
    // Only ever `Some(true)` or absent: libcontainer 0.7 tests `is_some()` to
    // decide whether seccomp may be loaded after capabilities are dropped, so
    // `Some(false)` would make a future seccomp profile fail to load.
    let no_new_privs = !(c.allow_privilege_escalation || c.privileged);
    process.set_no_new_privileges(no_new_privs.then_some(true));

    let mut linux = oci::LinuxBuilder::default()
        .cgroups_path(PathBuf::from(&c.cgroups_path))
        .namespaces(namespaces(&c.namespaces)?)
        .resources(resources(c)?)
        .build()?;
    // Builders fill unset fields from the types' `Default` impls (youki's
    // example spec, masked paths included): set everything we mean explicitly.
    let confined = !c.privileged;
    linux.set_masked_paths(confined.then(|| strings(&MASKED_PATHS)));
    linux.set_readonly_paths(confined.then(|| strings(&READONLY_PATHS)));
    // No seccomp profile yet: Kubernetes' default is `Unconfined` unless the pod
    // asks for `RuntimeDefault` or `Localhost`, and that choice arrives with the
    // pod's securityContext. (libcontainer needs its `libseccomp` feature to
    // honour a profile at all; without it a profile is silently ignored.)
    linux.set_seccomp(None);

    let mut spec = oci::SpecBuilder::default()
        .version(OCI_VERSION)
        .root(
            oci::RootBuilder::default()
                .path(rootfs)
                .readonly(c.readonly_rootfs)
                .build()?,
        )
        .mounts(mounts(c)?)
        .process(process)
        .linux(linux)
        .annotations(
            c.annotations
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()?;
    spec.set_hostname(c.hostname.clone());
    Ok(spec)
}

/// Kubernetes' rule: `command` replaces the entrypoint and drops the image cmd;
/// `args` alone replaces the cmd only.
fn process_args(c: &ContainerSpec, image: &ImageConfig) -> Result<Vec<String>, SpecError> {
    let args: Vec<String> = match (&c.command, &c.args) {
        (Some(command), args) => command
            .iter()
            .chain(args.iter().flatten())
            .cloned()
            .collect(),
        (None, Some(args)) => image.entrypoint.iter().chain(args).cloned().collect(),
        (None, None) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    };
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    if let Some(arg) = args.iter().find(|a| a.contains('\0')) {
        return Err(SpecError::NulByte {
            what: "argument",
            value: arg.clone(),
        });
    }
    Ok(args)
}

/// Default `PATH`, then `HOSTNAME`, then the image's env, then ours; a later
/// entry replaces an earlier one of the same name in place (containerd's
/// `replaceOrAppendEnvValues`).
fn process_env(c: &ContainerSpec, image: &ImageConfig) -> Result<Vec<String>, SpecError> {
    let mut env: Vec<(String, String)> = vec![("PATH".into(), DEFAULT_PATH.into())];
    let mut set = |name: &str, value: &str| match env.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value.to_owned(),
        None => env.push((name.to_owned(), value.to_owned())),
    };
    if let Some(hostname) = &c.hostname {
        set("HOSTNAME", hostname);
    }
    for entry in &image.env {
        // An entry without `=` (Docker's "unset" form) has no value to pass on.
        if let Some((name, value)) = entry.split_once('=') {
            if !name.is_empty() {
                set(name, value);
            }
        }
    }
    for (name, value) in &c.env {
        if name.is_empty() || name.contains('=') {
            return Err(SpecError::InvalidEnvName { name: name.clone() });
        }
        set(name, value);
    }
    let env: Vec<String> = env.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    if let Some(entry) = env.iter().find(|e| e.contains('\0')) {
        return Err(SpecError::NulByte {
            what: "environment variable",
            value: entry.clone(),
        });
    }
    Ok(env)
}

fn working_dir(c: &ContainerSpec, image: &ImageConfig) -> Result<PathBuf, SpecError> {
    let dir = c
        .working_dir
        .as_deref()
        .filter(|d| !d.is_empty())
        .or(image.working_dir.as_deref())
        .unwrap_or("/");
    if !dir.starts_with('/') {
        return Err(SpecError::RelativeWorkingDir {
            dir: dir.to_owned(),
        });
    }
    Ok(PathBuf::from(dir))
}

/// The capabilities containerd gives a Kubernetes container by default.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability `oci_spec::runtime::Capability` knows (what `ALL` and
/// privileged mean). The kernel here (6.x) knows all of them.
pub const ALL_CAPABILITIES: [Capability; 41] = [
    Capability::AuditControl,
    Capability::AuditRead,
    Capability::AuditWrite,
    Capability::BlockSuspend,
    Capability::Bpf,
    Capability::CheckpointRestore,
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::Kill,
    Capability::Lease,
    Capability::LinuxImmutable,
    Capability::MacAdmin,
    Capability::MacOverride,
    Capability::Mknod,
    Capability::NetAdmin,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetRaw,
    Capability::Perfmon,
    Capability::Setgid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysChroot,
    Capability::SysModule,
    Capability::SysNice,
    Capability::SysPacct,
    Capability::SysPtrace,
    Capability::SysRawio,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Syslog,
    Capability::WakeAlarm,
];

/// One of the caller's capability names: `None` for `ALL`.
fn parse_capability(name: &str) -> Result<Option<Capability>, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if bare == "ALL" {
        return Ok(None);
    }
    bare.parse::<Capability>()
        .map(Some)
        .map_err(|_| SpecError::UnknownCapability {
            name: name.to_owned(),
        })
}

/// The bounding/effective/permitted set, in containerd's CRI order: add `ALL`,
/// drop `ALL`, add each named one, drop each named one. So `drop: [ALL],
/// add: [NET_ADMIN]` keeps only NET_ADMIN, `add: [ALL], drop: [SYS_ADMIN]` is
/// everything but SYS_ADMIN, and a capability both added and dropped is dropped.
fn capabilities(c: &ContainerSpec) -> Result<oci::Capabilities, SpecError> {
    let parse = |names: &[String]| -> Result<(bool, Vec<Capability>), SpecError> {
        let mut all = false;
        let mut caps = Vec::new();
        for name in names {
            match parse_capability(name)? {
                None => all = true,
                Some(cap) => caps.push(cap),
            }
        }
        Ok((all, caps))
    };
    // Validate names even for privileged containers, so a typo is never silent.
    let (add_all, add) = parse(&c.capabilities_add)?;
    let (drop_all, drop) = parse(&c.capabilities_drop)?;
    if c.privileged {
        return Ok(ALL_CAPABILITIES.into_iter().collect());
    }
    let mut set: oci::Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    if add_all {
        set.extend(ALL_CAPABILITIES);
    }
    if drop_all {
        set.clear();
    }
    set.extend(add);
    for cap in drop {
        set.remove(&cap);
    }
    Ok(set)
}

/// containerd's default namespaces (pid, ipc, uts, mount, network), each
/// created unless the caller joins it by path, then any extra kinds the caller
/// lists. No cgroup namespace by default: containerd creates one only on
/// cgroup v2; on this v1 hybrid host libcontainer then bind-mounts the
/// container's own cgroup directories ("emulated"), which is what runc does.
fn namespaces(requested: &[Namespace]) -> Result<Vec<oci::LinuxNamespace>, SpecError> {
    for (i, ns) in requested.iter().enumerate() {
        if requested[..i].iter().any(|earlier| earlier.kind == ns.kind) {
            return Err(SpecError::DuplicateNamespace { kind: ns.kind });
        }
    }
    const DEFAULTS: [NamespaceKind; 5] = [
        NamespaceKind::Pid,
        NamespaceKind::Ipc,
        NamespaceKind::Uts,
        NamespaceKind::Mount,
        NamespaceKind::Network,
    ];
    let path_of = |kind| {
        requested
            .iter()
            .find(|ns| ns.kind == kind)
            .and_then(|ns| ns.path.clone())
    };
    let extra = requested.iter().filter(|ns| !DEFAULTS.contains(&ns.kind));
    DEFAULTS
        .iter()
        .map(|&kind| (kind, path_of(kind)))
        .chain(extra.map(|ns| (ns.kind, ns.path.clone())))
        .map(|(kind, path)| {
            let mut ns = oci::LinuxNamespaceBuilder::default().typ(kind.to_oci());
            if let Some(path) = path {
                ns = ns.path(path);
            }
            Ok(ns.build()?)
        })
        .collect()
}

/// Paths hidden from a non-privileged container (containerd's default spec).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// Paths read-only in a non-privileged container (containerd's default spec).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// containerd's default mounts as its CRI plugin uses them (no `/run` tmpfs,
/// plus a read-only `/sys/fs/cgroup`), then the caller's. A caller mount
/// replaces a default one with the same destination, and a caller `/dev`
/// replaces every default mount under `/dev` (containerd's `WithMounts`).
fn mounts(c: &ContainerSpec) -> Result<Vec<oci::Mount>, SpecError> {
    // Privileged containers get a writable /sys and cgroupfs, as with containerd.
    let sys = if c.privileged { "rw" } else { "ro" };
    let defaults: [(&str, &str, &str, &[&str]); 7] = [
        ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        (
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        (
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys],
        ),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys],
        ),
    ];
    for m in &c.mounts {
        if !m.destination.starts_with('/') {
            return Err(SpecError::RelativeMountDestination {
                destination: m.destination.clone(),
            });
        }
    }
    let clean = |d: &str| d.trim_end_matches('/').to_owned();
    let caller: Vec<String> = c.mounts.iter().map(|m| clean(&m.destination)).collect();
    let dev_replaced = caller.iter().any(|d| d == "/dev");
    let mut out = Vec::with_capacity(defaults.len() + c.mounts.len());
    for (destination, typ, source, options) in defaults {
        if caller.iter().any(|d| d == destination)
            || (dev_replaced && destination.starts_with("/dev/"))
        {
            continue;
        }
        out.push(
            oci::MountBuilder::default()
                .destination(destination)
                .typ(typ)
                .source(source)
                .options(strings(options))
                .build()?,
        );
    }
    for m in &c.mounts {
        out.push(caller_mount(m)?);
    }
    Ok(out)
}

const PROPAGATIONS: [&str; 8] = [
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "unbindable",
    "runbindable",
];

fn caller_mount(m: &Mount) -> Result<oci::Mount, SpecError> {
    let access = if m.readonly { "ro" } else { "rw" };
    let mut options: Vec<String> = match m.kind {
        MountKind::Bind => {
            let mut options = vec!["rbind".to_owned()];
            if !m.options.iter().any(|o| PROPAGATIONS.contains(&o.as_str())) {
                options.push("rprivate".to_owned());
            }
            options
        }
        MountKind::Tmpfs => vec!["nosuid".to_owned(), "nodev".to_owned()],
    };
    options.push(access.to_owned());
    options.extend(m.options.iter().cloned());
    let (typ, source) = match m.kind {
        MountKind::Bind => ("bind", m.source.as_str()),
        MountKind::Tmpfs => ("tmpfs", "tmpfs"),
    };
    Ok(oci::MountBuilder::default()
        .destination(&m.destination)
        .typ(typ)
        .source(source)
        .options(options)
        .build()?)
}

/// Character devices every container may use (major, minor; `None` = any):
/// null, zero, full, random, urandom, tty, ptmx and the pts.
const ALLOWED_CHAR_DEVICES: [(i64, Option<i64>); 8] = [
    (1, Some(3)),
    (1, Some(5)),
    (1, Some(7)),
    (1, Some(8)),
    (1, Some(9)),
    (5, Some(0)),
    (5, Some(2)),
    (136, None),
];

fn resources(c: &ContainerSpec) -> Result<oci::LinuxResources, SpecError> {
    let r = &c.resources;
    let mut devices = vec![oci::LinuxDeviceCgroupBuilder::default()
        .allow(c.privileged)
        .access("rwm")
        .build()?];
    if !c.privileged {
        for (major, minor) in ALLOWED_CHAR_DEVICES {
            let mut device = oci::LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(oci::LinuxDeviceType::C)
                .major(major)
                .access("rwm");
            if let Some(minor) = minor {
                device = device.minor(minor);
            }
            devices.push(device.build()?);
        }
    }
    let mut out = oci::LinuxResourcesBuilder::default()
        .devices(devices)
        .build()?;
    if r.cpu_shares.is_some() || r.cpu_quota.is_some() || r.cpu_period.is_some() {
        let mut cpu = oci::LinuxCpu::default();
        cpu.set_shares(r.cpu_shares);
        cpu.set_quota(r.cpu_quota);
        cpu.set_period(r.cpu_period);
        out.set_cpu(Some(cpu));
    }
    if let Some(limit) = r.memory_limit {
        // Swap limit = memory limit: the container cannot use swap (containerd
        // does this for every Kubernetes container with a memory limit).
        out.set_memory(Some(
            oci::LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(limit)
                .build()?,
        ));
    }
    if let Some(limit) = r.pids_limit {
        out.set_pids(Some(oci::LinuxPidsBuilder::default().limit(limit).build()?));
    }
    Ok(out)
}

/// The process's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credentials {
    uid: u32,
    gid: u32,
    /// Always starts with `gid`: libcontainer skips `setgroups` on an empty
    /// list, which would leak the supervisor's own groups into the container.
    additional_gids: Vec<u32>,
}

/// Resolves the user like containerd's CRI plugin: our uid/gid win over the
/// image's `User`; names resolve through the image's files; the gid defaults to
/// the passwd entry's, else 0; the user's memberships in `/etc/group` and the
/// supplemental groups are added.
fn resolve_user(
    c: &ContainerSpec,
    image: &ImageConfig,
    rootfs: &Path,
) -> Result<Credentials, SpecError> {
    let described = match (c.user, c.group) {
        (Some(uid), Some(gid)) => format!("{uid}:{gid}"),
        (Some(uid), None) => uid.to_string(),
        (None, _) => image.user.clone().unwrap_or_default(),
    };
    let read = |file: &'static str| {
        read_image_file(rootfs, file).map_err(|source| SpecError::ReadUserDb {
            user: described.clone(),
            file,
            source,
        })
    };
    let passwd = read("/etc/passwd")?;
    let group = read("/etc/group")?;
    let passwd = passwd.as_deref().map(parse_passwd);
    let groups = group.as_deref().map(parse_group);

    let (user_part, group_part) = match c.user {
        Some(uid) => (uid.to_string(), None),
        None => {
            let spec = image.user.as_deref().unwrap_or("").trim();
            match spec.split_once(':') {
                Some((u, g)) => (u.to_owned(), Some(g.to_owned())),
                None => (spec.to_owned(), None),
            }
        }
    };
    let user_part = if user_part.is_empty() {
        "0".to_owned()
    } else {
        user_part
    };

    let (uid, entry) = match user_part.parse::<u32>() {
        // A numeric user needs no passwd entry; one only supplies gid and name.
        Ok(uid) => (uid, passwd.iter().flatten().find(|e| e.uid == uid).cloned()),
        Err(_) => {
            let entries = passwd.as_ref().ok_or_else(|| SpecError::NoUserDb {
                user: described.clone(),
                file: "/etc/passwd",
            })?;
            let entry = entries
                .iter()
                .find(|e| e.name == user_part)
                .cloned()
                .ok_or_else(|| SpecError::UserNotFound {
                    user: described.clone(),
                })?;
            (entry.uid, Some(entry))
        }
    };

    let mut gid = entry.as_ref().map_or(0, |e| e.gid);
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match &groups {
                None => {
                    return Err(SpecError::NoUserDb {
                        user: described,
                        file: "/etc/group",
                    })
                }
                Some(groups) => groups
                    .iter()
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| SpecError::GroupNotFound {
                        user: described.clone(),
                        group: g.clone(),
                    })?,
            },
        };
    }
    if let Some(g) = c.group {
        gid = g;
    }

    let mut additional_gids = vec![gid];
    let memberships = entry.as_ref().into_iter().flat_map(|e| {
        groups
            .iter()
            .flatten()
            .filter(|g| g.members.contains(&e.name))
            .map(|g| g.gid)
    });
    for g in memberships.chain(c.supplemental_groups.iter().copied()) {
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    Ok(Credentials {
        uid,
        gid,
        additional_gids,
    })
}

#[derive(Debug, Clone)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Debug, Clone)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// `name:password:uid:gid:gecos:home:shell` lines; malformed ones are skipped.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    db_lines(text)
        .filter_map(|fields| {
            Some(PasswdEntry {
                name: fields.first()?.to_string(),
                uid: fields.get(2)?.parse().ok()?,
                gid: fields.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// `name:password:gid:member,member` lines; malformed ones are skipped.
fn parse_group(text: &str) -> Vec<GroupEntry> {
    db_lines(text)
        .filter_map(|fields| {
            Some(GroupEntry {
                name: fields.first()?.to_string(),
                gid: fields.get(2)?.parse().ok()?,
                members: fields
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn db_lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        // Skip comments and NIS compat entries (`+name`, `-name`).
        .filter(|l| !l.is_empty() && !l.starts_with(['#', '+', '-']))
        .map(|l| l.split(':').collect())
}

/// Reads `file` (absolute inside the image) without ever leaving `rootfs`:
/// symlinks and `..` resolve as if `rootfs` were `/`. `None` when the rootfs or
/// the file does not exist.
fn read_image_file(rootfs: &Path, file: &str) -> io::Result<Option<String>> {
    use rustix::io::Errno;
    let root = match rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let relative = file.trim_start_matches('/');
    let mut attempts = 0;
    let fd = loop {
        // NONBLOCK: a FIFO planted by the image must not hang us.
        match rustix::fs::openat2(
            &root,
            relative,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => break fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
            // The kernel asks to retry when a rename raced the lookup.
            Err(Errno::AGAIN) if attempts < 16 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    };
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_USER_DB + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_USER_DB {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_USER_DB} bytes"),
        ));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn s(items: &[&str]) -> Vec<String> {
        items.iter().map(|i| (*i).to_owned()).collect()
    }

    fn container() -> ContainerSpec {
        ContainerSpec {
            command: Some(s(&["/bin/true"])),
            cgroups_path: "/outpost/test".into(),
            ..ContainerSpec::default()
        }
    }

    const LIMITS: HostLimits = HostLimits {
        nofile_hard: 20_000,
    };

    fn build(c: &ContainerSpec) -> oci::Spec {
        build_spec(
            c,
            &ImageConfig::default(),
            Path::new("/nonexistent/outpost/rootfs"),
            &LIMITS,
        )
        .expect("spec builds")
    }

    fn process(spec: &oci::Spec) -> &oci::Process {
        spec.process().as_ref().expect("process is set")
    }

    fn linux(spec: &oci::Spec) -> &oci::Linux {
        spec.linux().as_ref().expect("linux is set")
    }

    #[test]
    fn args_follow_kubernetes_command_and_args() {
        fn check(
            command: Option<&[&str]>,
            args: Option<&[&str]>,
            image: (&[&str], &[&str]),
            expect: Result<&[&str], &str>,
        ) {
            let c = ContainerSpec {
                command: command.map(s),
                args: args.map(s),
                ..ContainerSpec::default()
            };
            let image = ImageConfig {
                entrypoint: s(image.0),
                cmd: s(image.1),
                ..ImageConfig::default()
            };
            let got = process_args(&c, &image).map_err(|e| e.to_string());
            let expect = expect.map(s).map_err(str::to_owned);
            assert_eq!(
                got, expect,
                "command {command:?} args {args:?} image {image:?}"
            );
        }
        let image: (&[&str], &[&str]) = (&["/entry", "-x"], &["serve", "--port=80"]);
        check(
            None,
            None,
            image,
            Ok(&["/entry", "-x", "serve", "--port=80"]),
        );
        check(Some(&["/bin/sh"]), None, image, Ok(&["/bin/sh"]));
        check(
            Some(&["/bin/sh"]),
            Some(&["-c", "true"]),
            image,
            Ok(&["/bin/sh", "-c", "true"]),
        );
        check(
            None,
            Some(&["debug"]),
            image,
            Ok(&["/entry", "-x", "debug"]),
        );
        check(
            None,
            Some(&["/bin/ls"]),
            (&[], &["/bin/sh"]),
            Ok(&["/bin/ls"]),
        );
        check(None, None, (&[], &["/bin/sh"]), Ok(&["/bin/sh"]));
        // An explicitly empty command still replaces the entrypoint.
        check(Some(&[]), Some(&["/bin/ls"]), image, Ok(&["/bin/ls"]));
        let none = "no command: the image has no entrypoint or cmd and the container sets none";
        check(None, None, (&[], &[]), Err(none));
        check(Some(&[]), None, image, Err(none));
        check(None, Some(&[]), (&[], &["/bin/sh"]), Err(none));
        check(
            Some(&["a\0b"]),
            None,
            image,
            Err("argument contains a NUL byte: \"a\\0b\""),
        );
    }

    #[test]
    fn env_merges_defaults_image_and_container() {
        fn check(
            image: &[&str],
            ours: &[(&str, &str)],
            hostname: Option<&str>,
            expect: Result<&[&str], &str>,
        ) {
            let c = ContainerSpec {
                env: ours
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                hostname: hostname.map(str::to_owned),
                ..ContainerSpec::default()
            };
            let image = ImageConfig {
                env: s(image),
                ..ImageConfig::default()
            };
            let got = process_env(&c, &image).map_err(|e| e.to_string());
            assert_eq!(
                got,
                expect.map(s).map_err(str::to_owned),
                "image {image:?} ours {ours:?}"
            );
        }
        let path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        check(&[], &[], None, Ok(&[path]));
        check(
            &["PATH=/bin", "LANG=C"],
            &[],
            None,
            Ok(&["PATH=/bin", "LANG=C"]),
        );
        check(&[], &[("PATH", "/opt/bin")], None, Ok(&["PATH=/opt/bin"]));
        check(
            &["LANG=C", "A=1"],
            &[("A", "2"), ("B", "x=y")],
            Some("web-0"),
            Ok(&[path, "HOSTNAME=web-0", "LANG=C", "A=2", "B=x=y"]),
        );
        // The image cannot override HOSTNAME's place but may its value; ours wins last.
        check(
            &["HOSTNAME=img"],
            &[],
            Some("pod"),
            Ok(&[path, "HOSTNAME=img"]),
        );
        check(
            &["HOSTNAME=img"],
            &[("HOSTNAME", "mine")],
            Some("pod"),
            Ok(&[path, "HOSTNAME=mine"]),
        );
        check(
            &["NOVALUE", "=x", "EMPTY="],
            &[],
            None,
            Ok(&[path, "EMPTY="]),
        );
        let bad = |n: &str| {
            format!(
                "invalid environment variable name {n:?}: it must be non-empty and contain no '='"
            )
        };
        check(&[], &[("", "x")], None, Err(&bad("")));
        check(&[], &[("A=B", "x")], None, Err(&bad("A=B")));
    }

    #[test]
    fn working_dir_prefers_container_then_image_then_root() {
        fn check(ours: Option<&str>, image: Option<&str>, expect: Result<&str, &str>) {
            let c = ContainerSpec {
                working_dir: ours.map(str::to_owned),
                ..ContainerSpec::default()
            };
            let image = ImageConfig {
                working_dir: image.map(str::to_owned),
                ..ImageConfig::default()
            };
            let got = working_dir(&c, &image).map_err(|e| e.to_string());
            assert_eq!(got, expect.map(PathBuf::from).map_err(str::to_owned));
        }
        check(None, None, Ok("/"));
        check(None, Some("/app"), Ok("/app"));
        check(Some("/work"), Some("/app"), Ok("/work"));
        check(Some(""), Some("/app"), Ok("/app"));
        check(
            Some("rel"),
            None,
            Err("working directory \"rel\" is not an absolute path"),
        );
    }

    /// A rootfs with a small user database.
    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let etc = dir.path().join("etc");
        fs_write(&etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n# comment\n+nis\nbad line\nwww-data:x:33:33::/var/www:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
        fs_write(&etc.join("group"), "root:x:0:\nwww-data:x:33:\napp:x:1001:\nvideo:x:44:app,www-data\naudio:x:29: app \nnogroup:x:65534:\n");
        dir
    }

    fn fs_write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn user_resolution() {
        let dir = rootfs();
        fn check(
            rootfs: &Path,
            image_user: Option<&str>,
            ours: (Option<u32>, Option<u32>, &[u32]),
            expect: Result<(u32, u32, &[u32]), &str>,
        ) {
            let c = ContainerSpec {
                user: ours.0,
                group: ours.1,
                supplemental_groups: ours.2.to_vec(),
                ..ContainerSpec::default()
            };
            let image = ImageConfig {
                user: image_user.map(str::to_owned),
                ..ImageConfig::default()
            };
            let got = resolve_user(&c, &image, rootfs)
                .map(|u| (u.uid, u.gid, u.additional_gids))
                .map_err(|e| e.to_string());
            let expect = expect
                .map(|(u, g, a)| (u, g, a.to_vec()))
                .map_err(str::to_owned);
            assert_eq!(got, expect, "image user {image_user:?}, ours {ours:?}");
        }
        let root = dir.path();
        let none: (Option<u32>, Option<u32>, &[u32]) = (None, None, &[]);
        check(root, None, none, Ok((0, 0, &[0])));
        check(root, Some(""), none, Ok((0, 0, &[0])));
        check(root, Some("1000"), none, Ok((1000, 1001, &[1001, 44, 29])));
        check(root, Some("4242"), none, Ok((4242, 0, &[0])));
        check(root, Some("4242:77"), none, Ok((4242, 77, &[77])));
        check(root, Some("app"), none, Ok((1000, 1001, &[1001, 44, 29])));
        check(
            root,
            Some("www-data:nogroup"),
            none,
            Ok((33, 65534, &[65534, 44])),
        );
        check(
            root,
            Some("nobody:nogroup"),
            none,
            Ok((65534, 65534, &[65534])),
        );
        check(root, Some("nobody:5"), none, Ok((65534, 5, &[5])));
        check(
            root,
            Some("app"),
            (None, None, &[44, 3000]),
            Ok((1000, 1001, &[1001, 44, 29, 3000])),
        );
        // Our uid wins over the image's user, group included.
        check(
            root,
            Some("app:video"),
            (Some(33), None, &[]),
            Ok((33, 33, &[33, 44])),
        );
        check(
            root,
            Some("app"),
            (Some(5000), Some(6000), &[]),
            Ok((5000, 6000, &[6000])),
        );
        // runAsGroup alone keeps the image's user.
        check(
            root,
            Some("app"),
            (None, Some(7), &[]),
            Ok((1000, 7, &[7, 44, 29])),
        );
        check(
            root,
            Some("ghost"),
            none,
            Err("user \"ghost\" not found in the image's /etc/passwd: use a numeric user id or add the user to the image"),
        );
        check(
            root,
            Some("app:ghosts"),
            none,
            Err("group \"ghosts\" of user \"app:ghosts\" not found in the image's /etc/group: use a numeric group id or add the group to the image"),
        );

        // No user database at all: numbers work, names cannot.
        let empty = tempfile::tempdir().expect("tempdir");
        check(
            empty.path(),
            Some("1000:1000"),
            (None, None, &[5]),
            Ok((1000, 1000, &[1000, 5])),
        );
        check(
            empty.path(),
            Some("nobody"),
            none,
            Err("cannot resolve user \"nobody\": the image has no /etc/passwd; use numeric ids"),
        );
        check(
            empty.path(),
            Some("0:wheel"),
            none,
            Err("cannot resolve user \"0:wheel\": the image has no /etc/group; use numeric ids"),
        );
    }

    #[test]
    fn user_database_lookups_stay_inside_the_rootfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs_write(
            &dir.path().join("outside/passwd"),
            "escaped:x:4000:4000::/:/bin/sh\n",
        );
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        // Both an absolute and a climbing link resolve inside the rootfs, where
        // nothing is: the host file must not be read.
        for target in [
            dir.path().join("outside/passwd"),
            PathBuf::from("../../../outside/passwd"),
        ] {
            let link = root.join("etc/passwd");
            let _ = std::fs::remove_file(&link);
            symlink(&target, &link).expect("symlink");
            let c = ContainerSpec::default();
            let image = ImageConfig {
                user: Some("escaped".into()),
                ..ImageConfig::default()
            };
            let err = resolve_user(&c, &image, &root).expect_err("must not resolve");
            assert!(
                matches!(err, SpecError::NoUserDb { .. }),
                "{target:?}: {err}"
            );
        }
        // A link that stays inside is followed.
        fs_write(&root.join("real/passwd"), "inside:x:4001:4002::/:/bin/sh\n");
        let link = root.join("etc/passwd");
        std::fs::remove_file(&link).expect("rm");
        symlink("/real/passwd", &link).expect("symlink");
        let image = ImageConfig {
            user: Some("inside".into()),
            ..ImageConfig::default()
        };
        let user = resolve_user(&ContainerSpec::default(), &image, &root).expect("resolves");
        assert_eq!((user.uid, user.gid), (4001, 4002));
        // Not a regular file: refused rather than read (a FIFO would block).
        std::fs::remove_file(&link).expect("rm");
        std::fs::create_dir(&link).expect("mkdir");
        let err = resolve_user(&ContainerSpec::default(), &image, &root).expect_err("a directory");
        assert!(
            err.to_string()
                .starts_with("reading the image's /etc/passwd to resolve user \"inside\""),
            "{err}"
        );
    }

    fn sorted(caps: &oci::Capabilities) -> Vec<String> {
        let mut names: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn capabilities_add_drop_all_and_privileged() {
        fn check(add: &[&str], drop: &[&str], privileged: bool, expect: Result<&[&str], &str>) {
            let c = ContainerSpec {
                capabilities_add: s(add),
                capabilities_drop: s(drop),
                privileged,
                ..ContainerSpec::default()
            };
            let got = capabilities(&c)
                .map(|caps| sorted(&caps))
                .map_err(|e| e.to_string());
            let mut expect = expect.map(s).map_err(str::to_owned);
            if let Ok(names) = &mut expect {
                names.sort();
            }
            assert_eq!(
                got, expect,
                "add {add:?} drop {drop:?} privileged {privileged}"
            );
        }
        let default = [
            "CHOWN",
            "DAC_OVERRIDE",
            "FSETID",
            "FOWNER",
            "MKNOD",
            "NET_RAW",
            "SETGID",
            "SETUID",
            "SETFCAP",
            "SETPCAP",
            "NET_BIND_SERVICE",
            "SYS_CHROOT",
            "KILL",
            "AUDIT_WRITE",
        ];
        let all: Vec<String> = ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut default_plus = default.to_vec();
        default_plus.extend(["NET_ADMIN", "SYS_TIME"]);
        let all_but_admin: Vec<&str> = all.iter().copied().filter(|c| *c != "SYS_ADMIN").collect();

        check(&[], &[], false, Ok(&default));
        check(
            &["NET_ADMIN", "cap_sys_time"],
            &[],
            false,
            Ok(&default_plus),
        );
        check(
            &["CAP_NET_BIND_SERVICE"],
            &["ALL"],
            false,
            Ok(&["NET_BIND_SERVICE"]),
        );
        check(&[], &["all"], false, Ok(&[]));
        check(
            &[],
            &["MKNOD", "CAP_NET_RAW", "NET_ADMIN"],
            false,
            Ok(&default[..4]
                .iter()
                .chain(&default[6..])
                .copied()
                .collect::<Vec<_>>()),
        );
        check(&["ALL"], &[], false, Ok(&all));
        check(&["ALL"], &["SYS_ADMIN"], false, Ok(&all_but_admin));
        // Added and dropped: dropped (containerd applies drops last).
        check(&["NET_ADMIN"], &["NET_ADMIN"], false, Ok(&default));
        check(&[], &[], true, Ok(&all));
        check(&[], &["ALL"], true, Ok(&all));
        let unknown =
            "unknown capability \"NET_FLY\": use a name like NET_ADMIN or CAP_NET_ADMIN, or ALL";
        check(&["NET_FLY"], &[], false, Err(unknown));
        check(&[], &["NET_FLY"], true, Err(unknown));
    }

    #[test]
    fn all_capabilities_lists_every_variant_once() {
        // Fails to compile when oci-spec grows a capability: add it to the list.
        fn listed(cap: Capability) -> bool {
            match cap {
                Capability::AuditControl
                | Capability::AuditRead
                | Capability::AuditWrite
                | Capability::BlockSuspend
                | Capability::Bpf
                | Capability::CheckpointRestore
                | Capability::Chown
                | Capability::DacOverride
                | Capability::DacReadSearch
                | Capability::Fowner
                | Capability::Fsetid
                | Capability::IpcLock
                | Capability::IpcOwner
                | Capability::Kill
                | Capability::Lease
                | Capability::LinuxImmutable
                | Capability::MacAdmin
                | Capability::MacOverride
                | Capability::Mknod
                | Capability::NetAdmin
                | Capability::NetBindService
                | Capability::NetBroadcast
                | Capability::NetRaw
                | Capability::Perfmon
                | Capability::Setgid
                | Capability::Setfcap
                | Capability::Setpcap
                | Capability::Setuid
                | Capability::SysAdmin
                | Capability::SysBoot
                | Capability::SysChroot
                | Capability::SysModule
                | Capability::SysNice
                | Capability::SysPacct
                | Capability::SysPtrace
                | Capability::SysRawio
                | Capability::SysResource
                | Capability::SysTime
                | Capability::SysTtyConfig
                | Capability::Syslog
                | Capability::WakeAlarm => ALL_CAPABILITIES.contains(&cap),
            }
        }
        let unique: oci::Capabilities = ALL_CAPABILITIES.into_iter().collect();
        assert_eq!(unique.len(), ALL_CAPABILITIES.len());
        for cap in ALL_CAPABILITIES {
            assert!(listed(cap));
            // Our parser accepts every name the enum prints.
            assert_eq!(
                parse_capability(&cap.to_string()).expect("parses"),
                Some(cap)
            );
            assert_eq!(
                parse_capability(&format!("CAP_{cap}")).expect("parses"),
                Some(cap)
            );
        }
    }

    #[test]
    fn no_new_privs_unless_escalation_allowed_or_privileged() {
        fn check(allow: bool, privileged: bool, expect: Option<bool>) {
            let c = ContainerSpec {
                allow_privilege_escalation: allow,
                privileged,
                ..container()
            };
            assert_eq!(
                process(&build(&c)).no_new_privileges(),
                expect,
                "allow {allow} privileged {privileged}"
            );
        }
        check(false, false, Some(true));
        check(true, false, None);
        check(false, true, None);
    }

    #[test]
    fn nofile_never_exceeds_the_host_hard_limit() {
        fn check(hard: u64, expect: u64) {
            let spec = build_spec(
                &container(),
                &ImageConfig::default(),
                Path::new("/nonexistent"),
                &HostLimits { nofile_hard: hard },
            )
            .expect("builds");
            let rlimits = process(&spec).rlimits().clone().expect("rlimits");
            assert_eq!(rlimits.len(), 1);
            assert_eq!(rlimits[0].typ(), oci::PosixRlimitType::RlimitNofile);
            assert_eq!(
                (rlimits[0].soft(), rlimits[0].hard()),
                (expect, expect),
                "hard {hard}"
            );
        }
        check(20_000, 20_000);
        check(1_048_576, 1_048_576);
        check(4_000_000, 1_048_576);
        check(u64::MAX, 1_048_576);
        check(1024, 1024);
        let current = HostLimits::current();
        assert!(current.nofile_hard > 0);
    }

    #[test]
    fn kubernetes_resources_convert_like_the_kubelet() {
        // Cases from the kubelet's TestCalculateLinuxResources.
        fn check(
            request: Option<u64>,
            limit: Option<u64>,
            memory: Option<i64>,
            expect: (u64, Option<i64>, Option<i64>),
        ) {
            let r = Resources::from_kubernetes(request, limit, memory);
            let expect = Resources {
                cpu_shares: Some(expect.0),
                cpu_quota: expect.1,
                cpu_period: Some(100_000),
                memory_limit: expect.2,
                pids_limit: None,
            };
            assert_eq!(
                r, expect,
                "request {request:?} limit {limit:?} memory {memory:?}"
            );
        }
        check(
            Some(1000),
            Some(2000),
            Some(134_217_728),
            (1024, Some(200_000), Some(134_217_728)),
        );
        check(Some(2000), Some(8000), Some(0), (2048, Some(800_000), None));
        check(None, Some(2000), None, (2048, Some(200_000), None));
        check(Some(0), Some(2000), None, (2, Some(200_000), None));
        check(None, None, None, (2, None, None));
        check(Some(250), None, Some(-1), (256, None, None));

        // The kubelet's TestMilliCPUToQuota table.
        for (millis, quota) in [
            (0, None),
            (5, Some(1000)),
            (9, Some(1000)),
            (10, Some(1000)),
            (200, Some(20_000)),
            (500, Some(50_000)),
            (1000, Some(100_000)),
            (1500, Some(150_000)),
        ] {
            assert_eq!(milli_cpu_to_quota(millis, CPU_PERIOD), quota, "{millis}m");
        }
        for (millis, shares) in [
            (0, 2),
            (1, 2),
            (2, 2),
            (100, 102),
            (500, 512),
            (1000, 1024),
            (256_000, 262_144),
            (u64::MAX, 262_144),
        ] {
            assert_eq!(milli_cpu_to_shares(millis), shares, "{millis}m");
        }
        assert_eq!(milli_cpu_to_quota(u64::MAX, CPU_PERIOD), Some(i64::MAX));
    }

    #[test]
    fn resources_devices_and_cgroups_path_in_the_spec() {
        let c = ContainerSpec {
            resources: Resources {
                memory_limit: Some(64 << 20),
                pids_limit: Some(100),
                ..Resources::from_kubernetes(Some(100), Some(500), None)
            },
            ..container()
        };
        let spec = build(&c);
        let l = linux(&spec);
        assert_eq!(
            l.cgroups_path().as_deref(),
            Some(Path::new("/outpost/test"))
        );
        let r = l.resources().as_ref().expect("resources");
        let cpu = r.cpu().as_ref().expect("cpu");
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (Some(102), Some(50_000), Some(100_000))
        );
        let memory = r.memory().as_ref().expect("memory");
        assert_eq!(
            (memory.limit(), memory.swap()),
            (Some(64 << 20), Some(64 << 20))
        );
        assert_eq!(r.pids().as_ref().map(|p| p.limit()), Some(100));
        let rules: Vec<String> = r
            .devices()
            .iter()
            .flatten()
            .map(|d| format!("{} {}", d.allow(), d))
            .collect();
        assert_eq!(
            rules,
            [
                "false a *:* rwm",
                "true c 1:3 rwm",
                "true c 1:5 rwm",
                "true c 1:7 rwm",
                "true c 1:8 rwm",
                "true c 1:9 rwm",
                "true c 5:0 rwm",
                "true c 5:2 rwm",
                "true c 136:* rwm",
            ]
        );

        let privileged = build(&ContainerSpec {
            privileged: true,
            ..container()
        });
        let r = linux(&privileged).resources().as_ref().expect("resources");
        let rules: Vec<String> = r
            .devices()
            .iter()
            .flatten()
            .map(|d| format!("{} {}", d.allow(), d))
            .collect();
        assert_eq!(rules, ["true a *:* rwm"]);
        assert!(r.cpu().is_none() && r.memory().is_none() && r.pids().is_none());

        let err = build_spec(
            &ContainerSpec {
                cgroups_path: String::new(),
                ..container()
            },
            &ImageConfig::default(),
            Path::new("/nonexistent"),
            &LIMITS,
        )
        .expect_err("no cgroups path");
        assert_eq!(
            err.to_string(),
            "no cgroups path: every container needs its own linux.cgroupsPath"
        );
    }

    #[test]
    fn masked_and_readonly_paths_unless_privileged() {
        let spec = build(&container());
        assert_eq!(
            linux(&spec).masked_paths().as_deref(),
            Some(&strings(&MASKED_PATHS)[..])
        );
        assert_eq!(
            linux(&spec).readonly_paths().as_deref(),
            Some(&strings(&READONLY_PATHS)[..])
        );
        assert!(MASKED_PATHS.contains(&"/proc/kcore") && MASKED_PATHS.contains(&"/sys/firmware"));
        let privileged = build(&ContainerSpec {
            privileged: true,
            ..container()
        });
        assert_eq!(linux(&privileged).masked_paths(), &None);
        assert_eq!(linux(&privileged).readonly_paths(), &None);
        let sys: Vec<_> = privileged
            .mounts()
            .iter()
            .flatten()
            .filter(|m| m.destination().starts_with("/sys"))
            .map(|m| {
                m.options()
                    .clone()
                    .unwrap_or_default()
                    .contains(&"rw".to_owned())
            })
            .collect();
        assert_eq!(sys, [true, true]);
    }

    fn mount_table(spec: &oci::Spec) -> Vec<String> {
        spec.mounts()
            .iter()
            .flatten()
            .map(|m| {
                format!(
                    "{} {} {} {}",
                    m.destination().display(),
                    m.typ().as_deref().unwrap_or("-"),
                    m.source()
                        .as_ref()
                        .map_or("-".into(), |s| s.display().to_string()),
                    m.options().clone().unwrap_or_default().join(",")
                )
            })
            .collect()
    }

    #[test]
    fn caller_mounts_follow_and_replace_defaults() {
        fn check(mounts: Vec<Mount>, expect: Result<&[&str], &str>) {
            let c = ContainerSpec {
                mounts: mounts.clone(),
                ..container()
            };
            let got = build_spec(
                &c,
                &ImageConfig::default(),
                Path::new("/nonexistent"),
                &LIMITS,
            )
            .map(|spec| mount_table(&spec))
            .map_err(|e| e.to_string());
            assert_eq!(got, expect.map(s).map_err(str::to_owned), "{mounts:?}");
        }
        let bind = |destination: &str, source: &str, readonly: bool, options: &[&str]| Mount {
            destination: destination.into(),
            source: source.into(),
            kind: MountKind::Bind,
            readonly,
            options: s(options),
        };
        let proc = "/proc proc proc nosuid,noexec,nodev";
        let dev = "/dev tmpfs tmpfs nosuid,strictatime,mode=755,size=65536k";
        let pts = "/dev/pts devpts devpts nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5";
        let shm = "/dev/shm tmpfs shm nosuid,noexec,nodev,mode=1777,size=65536k";
        let mqueue = "/dev/mqueue mqueue mqueue nosuid,noexec,nodev";
        let sys = "/sys sysfs sysfs nosuid,noexec,nodev,ro";
        let cgroup = "/sys/fs/cgroup cgroup cgroup nosuid,noexec,nodev,relatime,ro";
        check(vec![], Ok(&[proc, dev, pts, shm, mqueue, sys, cgroup]));
        check(
            vec![
                bind("/etc/hosts", "/run/outpost/pod/hosts", true, &[]),
                bind("/data", "/srv/data", false, &["rslave"]),
                Mount {
                    destination: "/cache".into(),
                    source: String::new(),
                    kind: MountKind::Tmpfs,
                    readonly: false,
                    options: s(&["size=64m"]),
                },
            ],
            Ok(&[
                proc,
                dev,
                pts,
                shm,
                mqueue,
                sys,
                cgroup,
                "/etc/hosts bind /run/outpost/pod/hosts rbind,rprivate,ro",
                "/data bind /srv/data rbind,rw,rslave",
                "/cache tmpfs tmpfs nosuid,nodev,rw,size=64m",
            ]),
        );
        // The sandbox's /dev/shm replaces the default one.
        check(
            vec![bind("/dev/shm/", "/run/outpost/pod/shm", false, &[])],
            Ok(&[
                proc,
                dev,
                pts,
                mqueue,
                sys,
                cgroup,
                "/dev/shm/ bind /run/outpost/pod/shm rbind,rprivate,rw",
            ]),
        );
        // A caller /dev replaces everything under /dev.
        check(
            vec![bind("/dev", "/dev", false, &[])],
            Ok(&[proc, sys, cgroup, "/dev bind /dev rbind,rprivate,rw"]),
        );
        check(
            vec![bind("data", "/srv", false, &[])],
            Err("mount destination \"data\" is not an absolute path"),
        );
    }

    #[test]
    fn namespaces_created_joined_and_added() {
        fn check(requested: &[(NamespaceKind, Option<&str>)], expect: Result<&[&str], &str>) {
            let c = ContainerSpec {
                namespaces: requested
                    .iter()
                    .map(|(kind, path)| Namespace {
                        kind: *kind,
                        path: path.map(PathBuf::from),
                    })
                    .collect(),
                ..container()
            };
            let got = build_spec(
                &c,
                &ImageConfig::default(),
                Path::new("/nonexistent"),
                &LIMITS,
            )
            .map(|spec| {
                linux(&spec)
                    .namespaces()
                    .iter()
                    .flatten()
                    .map(|ns| match ns.path() {
                        Some(path) => format!("{} {}", ns.typ(), path.display()),
                        None => ns.typ().to_string(),
                    })
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.to_string());
            assert_eq!(got, expect.map(s).map_err(str::to_owned), "{requested:?}");
        }
        use NamespaceKind::*;
        check(&[], Ok(&["pid", "ipc", "uts", "mnt", "net"]));
        check(
            &[
                (Network, Some("/run/outpost/netns/pod")),
                (Ipc, Some("/proc/42/ns/ipc")),
                (Uts, Some("/proc/42/ns/uts")),
            ],
            Ok(&[
                "pid",
                "ipc /proc/42/ns/ipc",
                "uts /proc/42/ns/uts",
                "mnt",
                "net /run/outpost/netns/pod",
            ]),
        );
        check(
            &[(Cgroup, None), (Pid, None)],
            Ok(&["pid", "ipc", "uts", "mnt", "net", "cgroup"]),
        );
        check(
            &[(Network, None), (Network, Some("/x"))],
            Err("namespace Network is listed more than once"),
        );
    }

    #[test]
    fn image_config_from_oci() {
        let cfg: oci_spec::image::ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
                "config":{"User":"nobody:nogroup","Env":["PATH=/bin","A=1"],"Entrypoint":["/init"],
                          "Cmd":["serve"],"WorkingDir":"/srv"}}"#,
        )
        .expect("image config parses");
        assert_eq!(
            ImageConfig::from_oci(&cfg),
            ImageConfig {
                entrypoint: s(&["/init"]),
                cmd: s(&["serve"]),
                env: s(&["PATH=/bin", "A=1"]),
                working_dir: Some("/srv".into()),
                user: Some("nobody:nogroup".into()),
            }
        );
        let bare: oci_spec::image::ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"User":"","WorkingDir":""}}"#,
        )
        .expect("image config parses");
        assert_eq!(ImageConfig::from_oci(&bare), ImageConfig::default());
    }

    #[test]
    fn container_spec_round_trips_through_json() {
        let c = ContainerSpec {
            mounts: vec![Mount {
                destination: "/data".into(),
                source: "/srv".into(),
                kind: MountKind::Bind,
                readonly: true,
                options: vec![],
            }],
            namespaces: vec![Namespace {
                kind: NamespaceKind::Network,
                path: Some("/run/netns/x".into()),
            }],
            ..container()
        };
        let json = serde_json::to_string(&c).expect("serializes");
        assert!(
            json.contains(r#""kind":"bind""#) && json.contains(r#""kind":"network""#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<ContainerSpec>(&json).expect("parses"),
            c
        );
        // Fields added later default when reading older state.
        let old: ContainerSpec = serde_json::from_str(r#"{"cgroups_path":"/a"}"#).expect("parses");
        assert_eq!(old.cgroups_path, "/a");
    }

    /// Serializes with object keys and capability sets sorted: `HashSet`s and
    /// `HashMap`s have no stable order.
    fn canonical_json(spec: &oci::Spec) -> String {
        fn walk(value: &mut serde_json::Value, key: &str) {
            match value {
                serde_json::Value::Object(map) => {
                    map.sort_keys();
                    for (k, v) in map.iter_mut() {
                        walk(v, k);
                    }
                }
                serde_json::Value::Array(items) => {
                    if [
                        "bounding",
                        "effective",
                        "permitted",
                        "inheritable",
                        "ambient",
                    ]
                    .contains(&key)
                    {
                        items.sort_by_key(|v| v.to_string());
                    }
                    for v in items {
                        walk(v, "");
                    }
                }
                _ => {}
            }
        }
        let mut value = serde_json::to_value(spec).expect("spec serializes");
        walk(&mut value, "");
        serde_json::to_string_pretty(&value).expect("value serializes")
    }

    #[test]
    fn snapshot_of_a_simple_container() {
        let c = ContainerSpec {
            command: Some(s(&["/bin/sh", "-c"])),
            args: Some(s(&["echo hello"])),
            env: vec![("GREETING".into(), "hello".into())],
            hostname: Some("web-0".into()),
            cgroups_path: "/outpost/pod-1234/web".into(),
            resources: Resources::from_kubernetes(Some(250), Some(500), Some(64 << 20)),
            namespaces: vec![Namespace {
                kind: NamespaceKind::Network,
                path: Some("/run/outpost/netns/pod-1234".into()),
            }],
            annotations: BTreeMap::from([("io.kubernetes.pod.name".into(), "web-0".into())]),
            ..ContainerSpec::default()
        };
        let image = ImageConfig {
            entrypoint: s(&["/docker-entrypoint.sh"]),
            cmd: s(&["nginx"]),
            env: s(&["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.25"]),
            working_dir: None,
            user: Some("101:101".into()),
        };
        let spec = build_spec(
            &c,
            &image,
            Path::new("/var/lib/outpost/rootfs/web"),
            &LIMITS,
        )
        .expect("builds");
        let expect = r#"{
  "annotations": {
    "io.kubernetes.pod.name": "web-0"
  },
  "hostname": "web-0",
  "linux": {
    "cgroupsPath": "/outpost/pod-1234/web",
    "maskedPaths": [
      "/proc/acpi",
      "/proc/asound",
      "/proc/kcore",
      "/proc/keys",
      "/proc/latency_stats",
      "/proc/timer_list",
      "/proc/timer_stats",
      "/proc/sched_debug",
      "/sys/firmware",
      "/sys/devices/virtual/powercap",
      "/proc/scsi"
    ],
    "namespaces": [
      {
        "type": "pid"
      },
      {
        "type": "ipc"
      },
      {
        "type": "uts"
      },
      {
        "type": "mount"
      },
      {
        "path": "/run/outpost/netns/pod-1234",
        "type": "network"
      }
    ],
    "readonlyPaths": [
      "/proc/bus",
      "/proc/fs",
      "/proc/irq",
      "/proc/sys",
      "/proc/sysrq-trigger"
    ],
    "resources": {
      "cpu": {
        "period": 100000,
        "quota": 50000,
        "shares": 256
      },
      "devices": [
        {
          "access": "rwm",
          "allow": false
        },
        {
          "access": "rwm",
          "allow": true,
          "major": 1,
          "minor": 3,
          "type": "c"
        },
        {
          "access": "rwm",
          "allow": true,
          "major": 1,
          "minor": 5,
          "type": "c"
        },
        {
          "access": "rwm",
          "allow": true,
          "major": 1,
          "minor": 7,
          "type": "c"
        },
        {
          "access": "rwm",
          "allow": true,
          "major": 1,
          "minor": 8,
          "type": "c"
        },
        {
          "access": "rwm",
          "allow": true,
          "major": 1,
          "minor": 9,
          "type": "c"
        },
        {
          "access": "rwm",
          "allow": true,
          "major": 5,
          "minor": 0,
          "type": "c"
        },
        {
          "access": "rwm",
          "allow": true,
          "major": 5,
          "minor": 2,
          "type": "c"
        },
        {
          "access": "rwm",
          "allow": true,
          "major": 136,
          "type": "c"
        }
      ],
      "memory": {
        "limit": 67108864,
        "swap": 67108864
      }
    }
  },
  "mounts": [
    {
      "destination": "/proc",
      "options": [
        "nosuid",
        "noexec",
        "nodev"
      ],
      "source": "proc",
      "type": "proc"
    },
    {
      "destination": "/dev",
      "options": [
        "nosuid",
        "strictatime",
        "mode=755",
        "size=65536k"
      ],
      "source": "tmpfs",
      "type": "tmpfs"
    },
    {
      "destination": "/dev/pts",
      "options": [
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
        "gid=5"
      ],
      "source": "devpts",
      "type": "devpts"
    },
    {
      "destination": "/dev/shm",
      "options": [
        "nosuid",
        "noexec",
        "nodev",
        "mode=1777",
        "size=65536k"
      ],
      "source": "shm",
      "type": "tmpfs"
    },
    {
      "destination": "/dev/mqueue",
      "options": [
        "nosuid",
        "noexec",
        "nodev"
      ],
      "source": "mqueue",
      "type": "mqueue"
    },
    {
      "destination": "/sys",
      "options": [
        "nosuid",
        "noexec",
        "nodev",
        "ro"
      ],
      "source": "sysfs",
      "type": "sysfs"
    },
    {
      "destination": "/sys/fs/cgroup",
      "options": [
        "nosuid",
        "noexec",
        "nodev",
        "relatime",
        "ro"
      ],
      "source": "cgroup",
      "type": "cgroup"
    }
  ],
  "ociVersion": "1.0.2",
  "process": {
    "args": [
      "/bin/sh",
      "-c",
      "echo hello"
    ],
    "capabilities": {
      "ambient": [],
      "bounding": [
        "CAP_AUDIT_WRITE",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_MKNOD",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT"
      ],
      "effective": [
        "CAP_AUDIT_WRITE",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_MKNOD",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT"
      ],
      "inheritable": [],
      "permitted": [
        "CAP_AUDIT_WRITE",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_MKNOD",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT"
      ]
    },
    "cwd": "/",
    "env": [
      "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
      "HOSTNAME=web-0",
      "NGINX_VERSION=1.25",
      "GREETING=hello"
    ],
    "noNewPrivileges": true,
    "rlimits": [
      {
        "hard": 20000,
        "soft": 20000,
        "type": "RLIMIT_NOFILE"
      }
    ],
    "terminal": false,
    "user": {
      "additionalGids": [
        101
      ],
      "gid": 101,
      "uid": 101
    }
  },
  "root": {
    "path": "/var/lib/outpost/rootfs/web",
    "readonly": false
  }
}"#;
        let got = canonical_json(&spec);
        if got != expect {
            panic!("spec changed; if intended, update the snapshot to:\n{got}");
        }
        // What libcontainer reads back is what we built.
        let reparsed: oci::Spec = serde_json::from_str(&got).expect("reparses");
        assert_eq!(reparsed, spec);
    }
}
