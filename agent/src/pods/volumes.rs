//! A pod's volumes on disk, under its pod directory, as the kubelet lays them
//! out: emptyDir directories (a tmpfs for `medium: Memory`), configMap and
//! secret files projected with the kubelet's atomic writer (secrets on a
//! tmpfs, so they never touch the disk), hostPath checks, subPath bind mounts
//! that cannot escape their volume, and the pod's `/etc/hosts`,
//! `/etc/hostname` and `/etc/resolv.conf`.
//!
//! ```text
//! <pod dir>/
//!   volumes/empty-dir/<volume>/        directory, or a tmpfs mount
//!   volumes/configmap/<volume>/        ..data -> ..2024_01_02_15_04_05.123456789/
//!   volumes/secret/<volume>/           same, on a tmpfs mount
//!   volume-subpaths/<volume>/<container>/<mount index>   bind mounts
//!   etc-hosts  hostname  resolv.conf   (and .<name>.generated: what we wrote)
//! ```
//!
//! [`prepare`] is idempotent and cheap when nothing changed (reads, no
//! writes): the pod worker calls it on every pass, which is also how config
//! map and secret updates reach running containers.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{
    symlink, DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource, KeyToPath, Pod,
    SecretVolumeSource, Volume,
};
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use crate::pods::translate::{self, ClusterDns, ConfigError, Lookup, PodRuntimeInfo, FAILED_MOUNT};
use crate::quantity::parse_bytes;

/// A volume ready to be bind-mounted into containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    /// The host path to bind.
    pub path: PathBuf,
    /// Always mounted read-only (configMap and secret volumes, as the kubelet).
    pub read_only: bool,
}

/// The pod's own files, bind-mounted over the image's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    /// `/etc/hosts`.
    pub hosts: PathBuf,
    /// `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// `/etc/hostname`.
    pub hostname: PathBuf,
}

/// Everything [`prepare`] made for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolumes {
    /// The pod's volumes by name.
    pub by_name: BTreeMap<String, PreparedVolume>,
    /// Bind mounts of the volume mounts with a `subPath`/`subPathExpr`, by
    /// (container name, index in its `volumeMounts`); the error is the
    /// container's `CreateContainerConfigError` message.
    pub sub_paths: BTreeMap<(String, usize), Result<PathBuf, String>>,
    /// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.
    pub pod_files: PodFiles,
}

/// File mode of projected keys without `defaultMode` or `mode`.
const DEFAULT_MODE: u32 = 0o644;
/// The symlink the atomic writer swaps.
const DATA_LINK: &str = "..data";
const DATA_TMP: &str = "..data_tmp";
/// The node's files that pods on the host network (and for now every pod's
/// resolver) start from.
const HOST_HOSTS: &str = "/etc/hosts";
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of real upstream servers: `/etc/resolv.conf` then
/// names 127.0.0.53, which is unreachable from a pod's network namespace.
const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
/// The kubelet's limits on what it passes to the resolver.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// Sets up every volume of `pod` and its pod files under `pod_dir`.
///
/// `info` gives the pod IP for `/etc/hosts` and for `subPathExpr`s that use
/// `status.podIP`. A volume that cannot be set up fails the whole pod with a
/// [`FAILED_MOUNT`] error (the kubelet keeps such a pod `ContainerCreating`);
/// a bad subPath fails only its container (see
/// [`PreparedVolumes::sub_paths`]).
pub fn prepare(
    pod: &Pod,
    lookup: &Lookup,
    info: &PodRuntimeInfo,
    pod_dir: &Path,
) -> Result<PreparedVolumes, ConfigError> {
    let failed = |what: &str, e: io::Error| ConfigError {
        reason: FAILED_MOUNT,
        message: format!("{what} {}: {e}", pod_dir.display()),
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(pod_dir)
        .map_err(|e| failed("creating pod directory", e))?;
    let pod_dir = fs::canonicalize(pod_dir).map_err(|e| failed("resolving pod directory", e))?;
    let mut mounts: BTreeSet<PathBuf> = mount_points()
        .map_err(|e| failed("reading /proc/self/mountinfo for", e))?
        .into_iter()
        .collect();
    let spec = pod.spec.as_ref();
    let fs_group = spec
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group)
        .map(|g| {
            u32::try_from(g).map_err(|_| ConfigError {
                reason: FAILED_MOUNT,
                message: format!("fsGroup {g} is out of range: use 0 to 4294967295"),
            })
        })
        .transpose()?;

    let ctx = Ctx {
        pod,
        lookup,
        pod_dir: &pod_dir,
        fs_group,
    };
    let mut by_name = BTreeMap::new();
    for volume in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let prepared = prepare_volume(&ctx, volume, &mut mounts)
            .map_err(|e| ConfigError::mount(&volume.name, e))?;
        by_name.insert(volume.name.clone(), prepared);
    }

    let pod_files = write_pod_files(pod, info, &pod_dir).map_err(|e| ConfigError {
        reason: FAILED_MOUNT,
        message: format!("writing the pod's /etc/hosts, /etc/hostname and /etc/resolv.conf: {e}"),
    })?;
    let sub_paths = prepare_sub_paths(pod, lookup, info, &pod_dir, &by_name, &mut mounts);
    Ok(PreparedVolumes {
        by_name,
        sub_paths,
        pod_files,
    })
}

/// Unmounts everything mounted under `pod_dir` (tmpfs volumes, subPath
/// binds) and removes it. Refuses to remove anything while a mount is left,
/// so a hostPath bound under it is never deleted through the mount.
pub fn cleanup(pod_dir: &Path) -> io::Result<()> {
    let pod_dir = match fs::canonicalize(pod_dir) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // Later mounts may sit on earlier ones (a subPath of a tmpfs volume):
    // unmount in reverse order of mounting.
    for m in mount_points()?.into_iter().rev() {
        if !m.starts_with(&pod_dir) {
            continue;
        }
        match nix::mount::umount2(&m, MntFlags::MNT_DETACH) {
            // Gone already (a parent's detach took it along).
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("unmounting {}: {e}", m.display()),
                ))
            }
        }
    }
    let left: Vec<String> = mount_points()?
        .into_iter()
        .filter(|m| m.starts_with(&pod_dir))
        .map(|m| m.display().to_string())
        .collect();
    if !left.is_empty() {
        return Err(io::Error::other(format!(
            "not removing {}: still mounted there: {}",
            pod_dir.display(),
            left.join(", ")
        )));
    }
    fs::remove_dir_all(&pod_dir)
}

/// What setting up one volume needs.
struct Ctx<'a> {
    pod: &'a Pod,
    lookup: &'a Lookup<'a>,
    pod_dir: &'a Path,
    fs_group: Option<u32>,
}

fn prepare_volume(
    ctx: &Ctx,
    volume: &Volume,
    mounts: &mut BTreeSet<PathBuf>,
) -> Result<PreparedVolume, String> {
    check_component("volume name", &volume.name)?;
    let under = |kind: &str| ctx.pod_dir.join("volumes").join(kind).join(&volume.name);
    if let Some(src) = &volume.empty_dir {
        let path = empty_dir(ctx, src, &under("empty-dir"), mounts)?;
        return Ok(PreparedVolume {
            path,
            read_only: false,
        });
    }
    if let Some(src) = &volume.config_map {
        let path = config_map_volume(ctx, src, &under("configmap"))?;
        return Ok(PreparedVolume {
            path,
            read_only: true,
        });
    }
    if let Some(src) = &volume.secret {
        let path = secret_volume(ctx, src, &under("secret"), mounts)?;
        return Ok(PreparedVolume {
            path,
            read_only: true,
        });
    }
    if let Some(src) = &volume.host_path {
        return Ok(PreparedVolume {
            path: host_path(src)?,
            read_only: false,
        });
    }
    Err("unsupported volume type: outpost supports emptyDir, configMap, secret and hostPath".into())
}

/// A name used as one path component.
fn check_component(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(format!("invalid {what} {name:?}: it must be a DNS label"));
    }
    Ok(())
}

fn io_err<'a>(what: &str, path: &'a Path) -> impl FnOnce(io::Error) -> String + 'a {
    let what = what.to_owned();
    move |e| format!("{what} {}: {e}", path.display())
}

/// Creates `dir` (and missing parents) with exactly `mode`; `true` when it
/// was created now.
fn ensure_dir(dir: &Path, mode: u32) -> Result<bool, String> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(false),
        Ok(_) => return Err(format!("{} exists and is not a directory", dir.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("checking", dir)(e)),
    }
    if let Some(parent) = dir.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(parent)
            .map_err(io_err("creating", parent))?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io_err("creating", dir)(e)),
    }
    // Not left to the umask.
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", dir))?;
    Ok(true)
}

/// The kubelet's `SetVolumeOwnership` for one entry: group `fs_group`, group
/// read (and write unless `read_only`), setgid on directories.
fn apply_fs_group(path: &Path, fs_group: Option<u32>, read_only: bool) -> io::Result<()> {
    let Some(gid) = fs_group else { return Ok(()) };
    std::os::unix::fs::lchown(path, None, Some(gid))?;
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mut mask = if read_only { 0o440 } else { 0o660 };
    if meta.is_dir() {
        mask |= 0o2000 | 0o110;
    }
    fs::set_permissions(
        path,
        fs::Permissions::from_mode((meta.mode() & 0o7777) | mask),
    )
}

fn empty_dir(
    ctx: &Ctx,
    src: &EmptyDirVolumeSource,
    dir: &Path,
    mounts: &mut BTreeSet<PathBuf>,
) -> Result<PathBuf, String> {
    let created = ensure_dir(dir, 0o777)?;
    match src.medium.as_deref().unwrap_or("") {
        "" => {
            if created {
                apply_fs_group(dir, ctx.fs_group, false)
                    .map_err(io_err("setting fsGroup on", dir))?;
            }
        }
        "Memory" => {
            if !mounts.contains(dir) {
                let size = memory_volume_size(ctx, src)?;
                let options = size.map(|s| format!("size={s}")).unwrap_or_default();
                mount_tmpfs(dir, &options, MsFlags::empty())?;
                mounts.insert(dir.to_owned());
                apply_fs_group(dir, ctx.fs_group, false)
                    .map_err(io_err("setting fsGroup on", dir))?;
            }
        }
        other => {
            return Err(format!(
                "emptyDir medium {other:?} is not supported: use Memory or leave it unset"
            ))
        }
    }
    Ok(dir.to_owned())
}

/// The kubelet's size of a memory-backed emptyDir: the smallest of the node's
/// allocatable memory, the pod's memory limit and the volume's `sizeLimit`
/// (`None`: the kernel's default, half of RAM).
fn memory_volume_size(ctx: &Ctx, src: &EmptyDirVolumeSource) -> Result<Option<u64>, String> {
    let size_limit = src
        .size_limit
        .as_ref()
        .map(|q| parse_bytes(&q.0))
        .transpose()
        .map_err(|e| format!("emptyDir sizeLimit: {e}"))?;
    Ok([
        Some(ctx.lookup.node_capacity.1),
        pod_memory_limit(ctx.pod),
        size_limit,
    ]
    .into_iter()
    .flatten()
    .filter(|&b| b > 0)
    .min())
}

/// The pod's memory limit when every container has one: the sum over regular
/// containers, or the largest init container's if that is more.
fn pod_memory_limit(pod: &Pod) -> Option<u64> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &k8s_openapi::api::core::v1::Container| {
        c.resources
            .as_ref()?
            .limits
            .as_ref()?
            .get("memory")
            .and_then(|q| parse_bytes(&q.0).ok())
    };
    let mut total: u64 = 0;
    for c in &spec.containers {
        total = total.saturating_add(limit(c)?);
    }
    for c in spec.init_containers.iter().flatten() {
        total = total.max(limit(c)?);
    }
    Some(total)
}

fn mount_tmpfs(dir: &Path, options: &str, flags: MsFlags) -> Result<(), String> {
    let data = (!options.is_empty()).then_some(options);
    nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), flags, data)
        .map_err(|e| format!("mounting a tmpfs on {}: {e}", dir.display()))
}

/// One projected file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Projection {
    data: Vec<u8>,
    mode: u32,
}

/// The kubelet's `MakePayload`: every key when `items` is empty, else the
/// listed ones (a missing key fails unless the volume is optional).
fn make_payload(
    items: Option<&Vec<KeyToPath>>,
    data: &BTreeMap<String, Vec<u8>>,
    default_mode: Option<i32>,
    optional: bool,
    what: &str,
    fs_group: Option<u32>,
) -> Result<BTreeMap<String, Projection>, String> {
    let mode = |m: Option<i32>| -> Result<u32, String> {
        let m = m.or(default_mode).map_or(Ok(DEFAULT_MODE), |m| {
            u32::try_from(m).map_err(|_| format!("invalid file mode {m}: use 0 to 0777"))
        })? & 0o777;
        // fsGroup makes the files group-readable, as SetVolumeOwnership does.
        Ok(if fs_group.is_some() { m | 0o440 } else { m })
    };
    let mut payload = BTreeMap::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in data {
                payload.insert(
                    key.clone(),
                    Projection {
                        data: value.clone(),
                        mode: mode(None)?,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(value) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!(
                        "{what} references non-existent {}: {}",
                        key_word(what),
                        item.key
                    ));
                };
                payload.insert(
                    item.path.clone(),
                    Projection {
                        data: value.clone(),
                        mode: mode(item.mode)?,
                    },
                );
            }
        }
    }
    Ok(payload)
}

fn key_word(what: &str) -> &'static str {
    if what == "secret" {
        "secret key"
    } else {
        "config key"
    }
}

fn config_map_volume(
    ctx: &Ctx,
    src: &ConfigMapVolumeSource,
    dir: &Path,
) -> Result<PathBuf, String> {
    if ensure_dir(dir, 0o755)? {
        apply_fs_group(dir, ctx.fs_group, true).map_err(io_err("setting fsGroup on", dir))?;
    }
    let optional = src.optional == Some(true);
    let key = (
        translate::pod_namespace(ctx.pod).to_owned(),
        src.name.clone(),
    );
    let payload = match ctx.lookup.config_maps.get(&key) {
        Some(cm) => {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.iter().flatten() {
                data.insert(k.clone(), v.0.clone());
            }
            make_payload(
                src.items.as_ref(),
                &data,
                src.default_mode,
                optional,
                "configmap",
                ctx.fs_group,
            )?
        }
        None if optional => BTreeMap::new(),
        None => return Err(format!("configmap {:?} not found", src.name)),
    };
    write_atomic(dir, &payload, ctx.fs_group)?;
    Ok(dir.to_owned())
}

fn secret_volume(
    ctx: &Ctx,
    src: &SecretVolumeSource,
    dir: &Path,
    mounts: &mut BTreeSet<PathBuf>,
) -> Result<PathBuf, String> {
    let name = src.secret_name.as_deref().unwrap_or_default();
    if name.is_empty() {
        return Err("secret volume without secretName".into());
    }
    ensure_dir(dir, 0o755)?;
    // The tmpfs comes first: nothing of a secret is ever written to disk.
    if !mounts.contains(dir) {
        mount_tmpfs(dir, "mode=0755", MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
        mounts.insert(dir.to_owned());
        apply_fs_group(dir, ctx.fs_group, true).map_err(io_err("setting fsGroup on", dir))?;
    }
    let optional = src.optional == Some(true);
    let key = (
        translate::pod_namespace(ctx.pod).to_owned(),
        name.to_owned(),
    );
    let payload = match ctx.lookup.secrets.get(&key) {
        Some(s) => make_payload(
            src.items.as_ref(),
            &translate::secret_data(s),
            src.default_mode,
            optional,
            "secret",
            ctx.fs_group,
        )?,
        None if optional => BTreeMap::new(),
        None => return Err(format!("secret {name:?} not found")),
    };
    write_atomic(dir, &payload, ctx.fs_group)?;
    Ok(dir.to_owned())
}

/// The kubelet's AtomicWriter: the files live in a timestamped directory,
/// `..data` points at it and the visible names are symlinks through `..data`.
/// An update writes a new directory and swaps `..data` with one rename, so a
/// reader sees either all old or all new files. Nothing is written when the
/// content is already there.
fn write_atomic(
    dir: &Path,
    payload: &BTreeMap<String, Projection>,
    fs_group: Option<u32>,
) -> Result<(), String> {
    let payload = clean_payload(payload)?;
    if let Some(ts) = stage(dir, &payload, fs_group).map_err(io_err("writing files in", dir))? {
        commit(dir, &ts).map_err(io_err("switching ..data in", dir))?;
    }
    publish(dir, &payload).map_err(io_err("updating the files of", dir))
}

/// Checks payload paths as the kubelet's `validatePath` and normalises them.
fn clean_payload(
    payload: &BTreeMap<String, Projection>,
) -> Result<BTreeMap<String, Projection>, String> {
    let mut out = BTreeMap::new();
    for (path, p) in payload {
        let bad = |why: &str| Err(format!("invalid path {path:?}: {why}"));
        if path.len() > 4096 {
            return bad("longer than 4096 characters");
        }
        if path.starts_with('/') {
            return bad("must be relative");
        }
        let parts: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if parts.is_empty() {
            return bad("must not be empty");
        }
        if parts.contains(&"..") {
            return bad("must not contain '..'");
        }
        if parts[0].starts_with("..") {
            return bad("must not start with '..'");
        }
        if parts.iter().any(|c| c.len() > 255) {
            return bad("has a component longer than 255 characters");
        }
        out.insert(parts.join("/"), p.clone());
    }
    Ok(out)
}

/// A directory the atomic writer made: `..` and a timestamp.
fn is_ts_name(name: &str) -> bool {
    name.strip_prefix("..")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// The timestamped directory `..data` points at, if any.
fn current_ts(dir: &Path) -> Option<String> {
    let target = fs::read_link(dir.join(DATA_LINK)).ok()?;
    let name = target.to_str()?.to_owned();
    is_ts_name(&name).then_some(name)
}

/// Writes the payload into a new timestamped directory unless the current
/// one holds exactly it; returns the new directory's name.
fn stage(
    dir: &Path,
    payload: &BTreeMap<String, Projection>,
    fs_group: Option<u32>,
) -> io::Result<Option<String>> {
    if let Some(ts) = current_ts(dir) {
        if read_tree(&dir.join(&ts), fs_group).ok().as_ref()
            == Some(&expected_tree(payload, fs_group))
        {
            return Ok(None);
        }
    }
    let now = jiff::Timestamp::now();
    let base = format!(
        "..{}.{:09}",
        now.strftime("%Y_%m_%d_%H_%M_%S"),
        now.subsec_nanosecond()
    );
    let mut name = base.clone();
    for n in 1.. {
        match DirBuilder::new().mode(0o755).create(dir.join(&name)) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => {
                name = format!("{base}{n}");
            }
            Err(e) => return Err(e),
        }
    }
    let ts = dir.join(&name);
    fs::set_permissions(&ts, fs::Permissions::from_mode(0o755))?;
    apply_fs_group(&ts, fs_group, true)?;
    for (path, p) in payload {
        let file = ts.join(path);
        let mut parent = ts.clone();
        for part in Path::new(path)
            .parent()
            .into_iter()
            .flat_map(Path::components)
        {
            parent.push(part);
            if !parent.is_dir() {
                DirBuilder::new().mode(0o755).create(&parent)?;
                fs::set_permissions(&parent, fs::Permissions::from_mode(0o755))?;
                apply_fs_group(&parent, fs_group, true)?;
            }
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(p.mode)
            .open(&file)?;
        f.write_all(&p.data)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(p.mode))?;
        if let Some(gid) = fs_group {
            std::os::unix::fs::lchown(&file, None, Some(gid))?;
        }
    }
    Ok(Some(name))
}

/// Points `..data` at `ts` atomically and removes the directory it pointed
/// at before (and any left by an interrupted update).
fn commit(dir: &Path, ts: &str) -> io::Result<()> {
    let tmp = dir.join(DATA_TMP);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    symlink(ts, &tmp)?;
    fs::rename(&tmp, dir.join(DATA_LINK))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_ts_name(name) && name != ts && entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// Makes the volume root show exactly the payload's top-level names, as
/// symlinks into `..data`.
fn publish(dir: &Path, payload: &BTreeMap<String, Projection>) -> io::Result<()> {
    let top: BTreeSet<&str> = payload.keys().filter_map(|p| p.split('/').next()).collect();
    for name in &top {
        let link = dir.join(name);
        match fs::symlink_metadata(&link) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                symlink(format!("{DATA_LINK}/{name}"), &link)?;
            }
            Err(e) => return Err(e),
            // A symlink already, or something a subPath created (kept, as
            // the kubelet does).
            Ok(_) => {}
        }
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("..") || top.contains(name) || !entry.file_type()?.is_symlink() {
            continue;
        }
        let ours = fs::read_link(entry.path())?.starts_with(DATA_LINK);
        if ours {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// A projected file as found on disk, for comparison.
#[derive(Debug, PartialEq, Eq)]
struct FileState {
    data: Vec<u8>,
    mode: u32,
    gid: Option<u32>,
}

fn expected_tree(
    payload: &BTreeMap<String, Projection>,
    fs_group: Option<u32>,
) -> BTreeMap<String, FileState> {
    payload
        .iter()
        .map(|(path, p)| {
            (
                path.clone(),
                FileState {
                    data: p.data.clone(),
                    mode: p.mode,
                    gid: fs_group,
                },
            )
        })
        .collect()
}

/// The regular files under `root` by relative path; anything else (a
/// symlink, a device) makes it unusable.
fn read_tree(root: &Path, fs_group: Option<u32>) -> io::Result<BTreeMap<String, FileState>> {
    fn walk(
        root: &Path,
        rel: &str,
        fs_group: Option<u32>,
        out: &mut BTreeMap<String, FileState>,
    ) -> io::Result<()> {
        for entry in fs::read_dir(root.join(rel))? {
            let entry = entry?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "non-UTF-8 name"))?;
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(root, &path, fs_group, out)?;
            } else if meta.is_file() {
                out.insert(
                    path,
                    FileState {
                        data: fs::read(entry.path())?,
                        mode: meta.mode() & 0o7777,
                        gid: fs_group.map(|_| meta.gid()),
                    },
                );
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a regular file",
                ));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, "", fs_group, &mut out)?;
    Ok(out)
}

/// The kubelet's hostPath type checks (`checkType`); a path with no type that
/// does not exist is created as a directory, as containerd does for a bind
/// mount source.
fn host_path(src: &HostPathVolumeSource) -> Result<PathBuf, String> {
    let path = PathBuf::from(&src.path);
    if !path.is_absolute() {
        return Err(format!("hostPath {:?} is not an absolute path", src.path));
    }
    let shown = path.display();
    let failed = |what: &str| format!("hostPath type check failed: {shown} is not {what}");
    let meta = || fs::metadata(&path).ok();
    let exists = || fs::symlink_metadata(&path).is_ok();
    let make_dir = || {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&path)
            .map_err(io_err("creating", &path))
    };
    match src.type_.as_deref().unwrap_or("") {
        "" => {
            if !exists() {
                make_dir()?;
            }
        }
        t @ ("DirectoryOrCreate" | "Directory") => {
            if t == "DirectoryOrCreate" && !exists() {
                make_dir()?;
            }
            if !meta().is_some_and(|m| m.is_dir()) {
                return Err(failed("a directory"));
            }
        }
        t @ ("FileOrCreate" | "File") => {
            if t == "FileOrCreate" && !exists() {
                // Like the kubelet, not its parent directories.
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o644)
                    .open(&path)
                    .map_err(io_err("creating", &path))?;
            }
            if !meta().is_some_and(|m| m.is_file()) {
                return Err(failed("a file"));
            }
        }
        "Socket" => {
            if !meta().is_some_and(|m| m.file_type().is_socket()) {
                return Err(failed("a socket file"));
            }
        }
        "CharDevice" => {
            if !meta().is_some_and(|m| m.file_type().is_char_device()) {
                return Err(failed("a character device"));
            }
        }
        "BlockDevice" => {
            if !meta().is_some_and(|m| m.file_type().is_block_device()) {
                return Err(failed("a block device"));
            }
        }
        other => return Err(format!("{other} is an invalid volume type")),
    }
    Ok(path)
}

/// Writes `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` for the pod.
fn write_pod_files(pod: &Pod, info: &PodRuntimeInfo, pod_dir: &Path) -> io::Result<PodFiles> {
    let spec = pod.spec.as_ref();
    let host_network = spec.is_some_and(|s| s.host_network == Some(true));
    let hostname = if host_network {
        nix::unistd::gethostname()?.to_string_lossy().into_owned()
    } else {
        translate::pod_hostname(pod)
    };
    let aliases = host_aliases(pod);
    let hosts = if host_network {
        let mut content = b"# Kubernetes-managed hosts file (host network).\n".to_vec();
        content.extend(fs::read(HOST_HOSTS)?);
        content.extend(aliases.into_bytes());
        content
    } else {
        // Until the pod network gives the pod an IP, its name resolves to a
        // loopback address (as Debian does for the host's own name).
        let ip = info
            .pod_ip
            .as_deref()
            .filter(|ip| !ip.is_empty())
            .unwrap_or("127.0.1.1");
        format!(
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             {ip}\t{hostname}\n{aliases}"
        )
        .into_bytes()
    };
    let files = PodFiles {
        hosts: pod_dir.join("etc-hosts"),
        resolv_conf: pod_dir.join("resolv.conf"),
        hostname: pod_dir.join("hostname"),
    };
    write_generated(&files.hosts, &hosts)?;
    write_generated(&files.hostname, format!("{hostname}\n").as_bytes())?;
    write_generated(
        &files.resolv_conf,
        &resolv_conf(pod, host_network, info.dns.as_ref())?,
    )?;
    Ok(files)
}

/// The `hostAliases` block of a managed hosts file.
fn host_aliases(pod: &Pod) -> String {
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.as_ref())
        .filter(|a| !a.is_empty());
    let Some(aliases) = aliases else {
        return String::new();
    };
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        out.push_str(&format!(
            "{}\t{}\n",
            a.ip,
            a.hostnames.as_deref().unwrap_or_default().join("\t")
        ));
    }
    out
}

/// Writes a pod file when what we generate for it changed since we last
/// wrote it, in place (containers bind-mount the inode), and leaves it alone
/// otherwise, so a container's own edits (to `/etc/hosts`, say) survive the
/// worker's passes.
fn write_generated(path: &Path, content: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let record = path.with_file_name(format!(".{name}.generated"));
    let unchanged = fs::read(&record).is_ok_and(|r| r == content);
    if unchanged && path.exists() {
        return Ok(());
    }
    for target in [path, record.as_path()] {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(target)?;
        f.write_all(content)?;
    }
    Ok(())
}

/// The pod's resolver configuration (kubelet `GetPodDNS`, partly).
fn resolv_conf(pod: &Pod, host_network: bool, dns: Option<&ClusterDns>) -> io::Result<Vec<u8>> {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    // `ClusterFirst` on the host network resolves like the node, as the
    // kubelet does; `ClusterFirstWithHostNet` is for exactly that case.
    let cluster = match policy {
        "ClusterFirst" if !host_network => dns,
        "ClusterFirstWithHostNet" => dns,
        _ => None,
    };
    let mut conf = if policy == "None" {
        Resolv::default()
    } else if let Some(dns) = cluster {
        let host = Resolv::parse(&fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default());
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let domain = &dns.domain;
        let mut searches = vec![
            format!("{ns}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.clone(),
        ];
        searches.extend(host.searches.into_iter().filter(|s| !s.is_empty()));
        searches.dedup();
        Resolv {
            servers: vec![dns.server.clone()],
            searches,
            options: vec!["ndots:5".into()],
        }
    } else {
        // `Default` is the node's resolver (and `ClusterFirst` without a
        // cluster DNS server configured, as the kubelet falls back).
        let host = Resolv::parse(&fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default());
        let only_loopback = !host.servers.is_empty()
            && host
                .servers
                .iter()
                .all(|s| s.starts_with("127.") || s == "::1");
        if only_loopback && !host_network {
            match fs::read_to_string(SYSTEMD_RESOLV_CONF) {
                Ok(text) => Resolv::parse(&text),
                Err(_) => host,
            }
        } else {
            host
        }
    };
    if let Some(dns) = spec.and_then(|s| s.dns_config.as_ref()) {
        for s in dns.nameservers.iter().flatten() {
            if !conf.servers.contains(s) {
                conf.servers.push(s.clone());
            }
        }
        for s in dns.searches.iter().flatten() {
            if !conf.searches.contains(s) {
                conf.searches.push(s.clone());
            }
        }
        for o in dns.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else {
                continue;
            };
            let option = match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_owned(),
            };
            conf.options
                .retain(|existing| existing.split(':').next() != Some(name));
            conf.options.push(option);
        }
    }
    conf.servers.truncate(MAX_NAMESERVERS);
    conf.searches.truncate(MAX_SEARCHES);
    Ok(conf.render().into_bytes())
}

/// The parts of a `resolv.conf` the kubelet passes on.
#[derive(Debug, Default, PartialEq, Eq)]
struct Resolv {
    servers: Vec<String>,
    searches: Vec<String>,
    options: Vec<String>,
}

impl Resolv {
    fn parse(text: &str) -> Resolv {
        let mut r = Resolv::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => r.servers.extend(words.next().map(str::to_owned)),
                // The last search line wins, as in the resolver.
                Some("search") => r.searches = words.map(str::to_owned).collect(),
                Some("options") => r.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        r
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for s in &self.servers {
            out.push_str(&format!("nameserver {s}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// Binds every subPath of every container to
/// `volume-subpaths/<volume>/<container>/<index>` (the kubelet's layout).
fn prepare_sub_paths(
    pod: &Pod,
    lookup: &Lookup,
    info: &PodRuntimeInfo,
    pod_dir: &Path,
    volumes: &BTreeMap<String, PreparedVolume>,
    mounts: &mut BTreeSet<PathBuf>,
) -> BTreeMap<(String, usize), Result<PathBuf, String>> {
    let mut out = BTreeMap::new();
    for c in translate::all_containers(pod) {
        let has_sub_path = c.volume_mounts.iter().flatten().any(|m| {
            m.sub_path.as_deref().is_some_and(|s| !s.is_empty())
                || m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty())
        });
        if !has_sub_path {
            continue;
        }
        // An environment that cannot be built fails the container anyway,
        // with that error, before its mounts are looked at.
        let Ok(env) = translate::environment(pod, c, lookup, info) else {
            continue;
        };
        for (index, m) in c.volume_mounts.iter().flatten().enumerate() {
            let Some(volume) = volumes.get(&m.name) else {
                continue;
            };
            let Some(sub) = translate::sub_path(m, &env.vars) else {
                continue;
            };
            let result = sub.and_then(|sub| {
                check_component("container name", &c.name)?;
                let target = pod_dir
                    .join("volume-subpaths")
                    .join(&m.name)
                    .join(&c.name)
                    .join(index.to_string());
                bind_sub_path(&volume.path, &sub, &target, mounts).map_err(|e| {
                    // Details stay in the node's log: they describe the host.
                    tracing::warn!(
                        volume = %m.name, container = %c.name, sub_path = %sub,
                        "preparing subPath: {e}"
                    );
                    format!(
                        "failed to prepare subPath for volumeMount {:?} of container {:?}",
                        m.name, c.name
                    )
                })?;
                Ok(target)
            });
            out.insert((c.name.clone(), index), result);
        }
    }
    out
}

/// A file descriptor closed on drop.
struct Fd(RawFd);

impl Drop for Fd {
    fn drop(&mut self) {
        let _ = nix::unistd::close(self.0);
    }
}

/// Opens `path` under `root`, following symlinks only while they stay inside
/// `root` (`RESOLVE_BENEATH`: no `..` or absolute link out, no magic links).
fn open_beneath(root: RawFd, path: &str, flags: OFlag) -> nix::Result<Fd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    nix::fcntl::openat2(root, path, how).map(Fd)
}

/// Bind-mounts `sub` of the volume at `volume` onto `target`. The path is
/// resolved with `openat2(RESOLVE_BENEATH)` and the mount made from the
/// resulting descriptor (`/proc/self/fd/N`), so neither a symlink nor a
/// concurrent rename by a container can point it outside the volume.
/// Missing directories are created inside the volume with the volume's mode
/// (kubelet `SafeMakeDir`).
fn bind_sub_path(
    volume: &Path,
    sub: &str,
    target: &Path,
    mounts: &mut BTreeSet<PathBuf>,
) -> io::Result<()> {
    if mounts.contains(target) {
        return Ok(());
    }
    let root = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_PATH | OFlag::O_DIRECTORY).bits())
        .open(volume)?;
    let root_fd = root.as_raw_fd();
    let source = match open_beneath(root_fd, sub, OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            let perm = root.metadata()?.mode() & 0o7777;
            make_dirs_beneath(root_fd, sub, perm)?;
            open_beneath(root_fd, sub, OFlag::O_PATH)?
        }
        Err(e) => return Err(e.into()),
    };
    let kind = nix::sys::stat::fstat(source.0)?.st_mode & SFlag::S_IFMT.bits();
    let is_dir = kind == SFlag::S_IFDIR.bits();
    if let Some(parent) = target.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(parent)?;
    }
    match fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() == is_dir => {}
        Ok(m) => {
            if m.is_dir() {
                fs::remove_dir(target)?;
            } else {
                fs::remove_file(target)?;
            }
            make_mount_point(target, is_dir)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => make_mount_point(target, is_dir)?,
        Err(e) => return Err(e),
    }
    let proc_path = format!("/proc/self/fd/{}", source.0);
    nix::mount::mount(
        Some(proc_path.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?;
    mounts.insert(target.to_owned());
    Ok(())
}

fn make_mount_point(target: &Path, is_dir: bool) -> io::Result<()> {
    if is_dir {
        DirBuilder::new().mode(0o750).create(target)
    } else {
        File::create(target).map(drop)
    }
}

/// Creates the missing directories of `sub` under `root`, each resolved
/// beneath `root` before the next is made in it.
fn make_dirs_beneath(root: RawFd, sub: &str, perm: u32) -> io::Result<()> {
    let parts: Vec<&str> = sub
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    for i in 0..parts.len() {
        match open_beneath(
            root,
            &parts[..=i].join("/"),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        ) {
            Ok(_) => continue,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let parent = if i == 0 {
            None
        } else {
            Some(open_beneath(
                root,
                &parts[..i].join("/"),
                OFlag::O_PATH | OFlag::O_DIRECTORY,
            )?)
        };
        let parent_fd = parent.as_ref().map_or(root, |p| p.0);
        match nix::sys::stat::mkdirat(Some(parent_fd), parts[i], Mode::from_bits_truncate(perm)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        // The mode exactly, not as cut by the umask.
        let dir = open_beneath(
            parent_fd,
            parts[i],
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        )?;
        nix::sys::stat::fchmod(dir.0, Mode::from_bits_truncate(perm))?;
    }
    Ok(())
}

/// Mount points of this process's mount namespace, in mount order.
fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .collect())
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use std::os::unix::net::UnixListener;

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "volume tests mount tmpfs and bind mounts: run them as root"
        );
    }

    fn pod(yaml: &str) -> Pod {
        let value: serde_json::Value = serde_yaml_ng::from_str(yaml).expect("test YAML parses");
        serde_json::from_value(value).expect("test YAML is a Pod")
    }

    /// A temporary pod directory, cleaned up (mounts included) on drop.
    struct PodDir {
        tmp: Option<tempfile::TempDir>,
        dir: PathBuf,
    }

    impl PodDir {
        fn new() -> PodDir {
            require_root();
            let tmp = tempfile::tempdir().expect("tempdir");
            let dir = tmp.path().join("pod");
            PodDir {
                tmp: Some(tmp),
                dir,
            }
        }

        fn root(&self) -> &Path {
            self.dir.parent().expect("pod dir has a parent")
        }
    }

    impl Drop for PodDir {
        fn drop(&mut self) {
            if let Err(e) = cleanup(&self.dir) {
                eprintln!("cleaning up {}: {e}", self.dir.display());
                // Never let TempDir's recursive delete run through a mount.
                std::mem::forget(self.tmp.take());
            }
        }
    }

    /// (fstype, options) of what is mounted at `path`, top-most first.
    fn mounted_at(path: &Path) -> Vec<(String, String)> {
        let path = fs::canonicalize(path).expect("canonical path");
        let text = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let mut found: Vec<(String, String)> = text
            .lines()
            .filter(|l| {
                l.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(path.as_path())
            })
            .map(|l| {
                let (_, after) = l.split_once(" - ").expect("separator");
                let mut f = after.split(' ');
                let fstype = f.next().unwrap_or("").to_owned();
                let _source = f.next();
                (fstype, f.next().unwrap_or("").to_owned())
            })
            .collect();
        found.reverse();
        found
    }

    fn mounts_under(dir: &Path) -> Vec<PathBuf> {
        mount_points()
            .expect("mountinfo")
            .into_iter()
            .filter(|m| m.starts_with(dir))
            .collect()
    }

    struct World {
        config_maps: BTreeMap<(String, String), ConfigMap>,
        secrets: BTreeMap<(String, String), Secret>,
    }

    impl World {
        fn new() -> World {
            World {
                config_maps: BTreeMap::new(),
                secrets: BTreeMap::new(),
            }
        }

        fn config_map(&mut self, name: &str, data: serde_json::Value) {
            let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default"},
                "data": data,
                "binaryData": {"bin": "AAEC"}
            }))
            .expect("config map");
            self.config_maps.insert(("default".into(), name.into()), cm);
        }

        fn secret(&mut self, name: &str, data: serde_json::Value) {
            let s: Secret = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default"},
                "data": data
            }))
            .expect("secret");
            self.secrets.insert(("default".into(), name.into()), s);
        }

        fn prepare(&self, pod: &Pod, dir: &Path) -> Result<PreparedVolumes, ConfigError> {
            let lookup = Lookup {
                config_maps: &self.config_maps,
                secrets: &self.secrets,
                node_name: "edge-1",
                node_capacity: (2000, 1 << 30),
            };
            let info = PodRuntimeInfo {
                pod_ip: Some("10.42.0.7".into()),
                host_ip: None,
                dns: None,
            };
            prepare(pod, &lookup, &info, dir)
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").mode() & 0o7777
    }

    #[test]
    fn empty_dirs_on_disk_and_in_memory() {
        let d = PodDir::new();
        let p = pod("
metadata: {name: web-0}
spec:
  containers: [{name: c, resources: {limits: {memory: 64Mi}}}]
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: fast, emptyDir: {medium: Memory, sizeLimit: 8Mi}}
  - {name: pod-sized, emptyDir: {medium: Memory}}
");
        let w = World::new();
        let v = w.prepare(&p, &d.dir).expect("prepares");
        let scratch = &v.by_name["scratch"];
        assert!(scratch.path.ends_with("volumes/empty-dir/scratch"));
        assert!(!scratch.read_only);
        assert_eq!(mode(&scratch.path), 0o777);
        assert!(mounted_at(&scratch.path).is_empty());

        let fast = &v.by_name["fast"].path;
        assert_eq!(mounted_at(fast).len(), 1);
        let (fstype, options) = &mounted_at(fast)[0];
        assert_eq!(fstype, "tmpfs");
        assert!(options.contains("size=8192k"), "{options}");
        // No sizeLimit: the pod's memory limit.
        let (_, options) = &mounted_at(&v.by_name["pod-sized"].path)[0];
        assert!(options.contains("size=65536k"), "{options}");

        // Idempotent: a second pass mounts nothing more and keeps data.
        fs::write(fast.join("x"), "kept").expect("write");
        let again = w.prepare(&p, &d.dir).expect("prepares again");
        assert_eq!(again, v);
        assert_eq!(mounted_at(fast).len(), 1);
        assert_eq!(fs::read_to_string(fast.join("x")).expect("read"), "kept");

        cleanup(&d.dir).expect("cleanup");
        assert!(mounts_under(d.root()).is_empty());
        assert!(!d.dir.exists());
        // Cleaning what is gone is fine.
        cleanup(&d.dir).expect("cleanup again");
    }

    #[test]
    fn config_map_with_items_and_modes() {
        let d = PodDir::new();
        let mut w = World::new();
        w.config_map("app", serde_json::json!({"a.conf": "A", "b.conf": "B"}));
        let p = pod("
metadata: {name: web-0}
spec:
  containers: [{name: c}]
  volumes:
  - {name: all, configMap: {name: app}}
  - name: some
    configMap:
      name: app
      defaultMode: 0o640
      items:
      - {key: a.conf, path: conf/a.conf, mode: 0o600}
      - {key: bin, path: data.bin}
");
        let v = w.prepare(&p, &d.dir).expect("prepares");
        let all = &v.by_name["all"];
        assert!(all.read_only);
        assert!(all.path.ends_with("volumes/configmap/all"));
        assert_eq!(fs::read_to_string(all.path.join("a.conf")).expect("a"), "A");
        assert_eq!(fs::read(all.path.join("bin")).expect("bin"), [0, 1, 2]);
        assert_eq!(mode(&all.path.join("b.conf")), 0o644);
        assert_eq!(
            fs::read_link(all.path.join("a.conf")).expect("link"),
            Path::new("..data/a.conf")
        );
        let ts = current_ts(&all.path).expect("..data");
        assert!(all.path.join(&ts).join("a.conf").is_file());

        let some = &v.by_name["some"].path;
        assert_eq!(
            fs::read_to_string(some.join("conf/a.conf")).expect("a"),
            "A"
        );
        assert_eq!(mode(&some.join("conf/a.conf")), 0o600);
        assert_eq!(mode(&some.join("data.bin")), 0o640);
        assert!(!some.join("b.conf").exists());
        let mut names: Vec<String> = fs::read_dir(some)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .collect();
        names.sort();
        assert_eq!(names, ["conf", "data.bin"]);

        // A missing key fails the volume unless it is optional.
        let bad = pod("
metadata: {name: web-0}
spec:
  containers: [{name: c}]
  volumes:
  - {name: cfg, configMap: {name: app, items: [{key: nope, path: x}]}}
");
        let err = w.prepare(&bad, &d.dir).expect_err("missing key");
        assert_eq!(err.reason, FAILED_MOUNT);
        assert_eq!(
            err.message,
            "MountVolume.SetUp failed for volume \"cfg\" : configmap references non-existent config key: nope"
        );
    }

    #[test]
    fn fs_group_owns_projected_files() {
        let d = PodDir::new();
        let mut w = World::new();
        w.config_map("app", serde_json::json!({"k": "v"}));
        let p = pod("
metadata: {name: web-0}
spec:
  securityContext: {fsGroup: 2345}
  containers: [{name: c}]
  volumes:
  - {name: cfg, configMap: {name: app, defaultMode: 0o600}}
  - {name: scratch, emptyDir: {}}
");
        let v = w.prepare(&p, &d.dir).expect("prepares");
        let file = v.by_name["cfg"].path.join("k");
        assert_eq!(fs::metadata(&file).expect("stat").gid(), 2345);
        assert_eq!(mode(&file), 0o640);
        let scratch = &v.by_name["scratch"].path;
        assert_eq!(fs::metadata(scratch).expect("stat").gid(), 2345);
        assert_eq!(mode(scratch), 0o2777);
        // Unchanged on the next pass: nothing rewritten.
        let ts = current_ts(&v.by_name["cfg"].path);
        w.prepare(&p, &d.dir).expect("prepares again");
        assert_eq!(current_ts(&v.by_name["cfg"].path), ts);
    }

    #[test]
    fn secrets_live_on_tmpfs() {
        let d = PodDir::new();
        let mut w = World::new();
        w.secret("db", serde_json::json!({"password": "czNjcjN0"}));
        let p = pod("
metadata: {name: web-0}
spec:
  containers: [{name: c}]
  volumes:
  - {name: creds, secret: {secretName: db, defaultMode: 0o400}}
");
        let v = w.prepare(&p, &d.dir).expect("prepares");
        let creds = &v.by_name["creds"];
        assert!(creds.read_only);
        let m = mounted_at(&creds.path);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].0, "tmpfs");
        assert_eq!(
            fs::read_to_string(creds.path.join("password")).expect("read"),
            "s3cr3t"
        );
        assert_eq!(mode(&creds.path.join("password")), 0o400);
        w.prepare(&p, &d.dir).expect("prepares again");
        assert_eq!(mounted_at(&creds.path).len(), 1);
        cleanup(&d.dir).expect("cleanup");
        assert!(mounts_under(d.root()).is_empty());
    }

    #[test]
    fn updates_swap_atomically() {
        let d = PodDir::new();
        let mut w = World::new();
        w.config_map("app", serde_json::json!({"a": "1", "old": "x"}));
        let p = pod("
metadata: {name: web-0}
spec:
  containers: [{name: c}]
  volumes:
  - {name: cfg, configMap: {name: app}}
");
        let v = w.prepare(&p, &d.dir).expect("prepares");
        let dir = v.by_name["cfg"].path.clone();
        let first = current_ts(&dir).expect("ts");
        // Same content: nothing is rewritten.
        w.prepare(&p, &d.dir).expect("same");
        assert_eq!(current_ts(&dir).as_deref(), Some(first.as_str()));

        // Stage the update: readers still see the old files.
        let new = BTreeMap::from([(
            "a".to_owned(),
            Projection {
                data: b"2".to_vec(),
                mode: 0o644,
            },
        )]);
        let staged = stage(&dir, &new, None).expect("stage").expect("changed");
        assert_ne!(staged, first);
        assert_eq!(fs::read_to_string(dir.join("a")).expect("old a"), "1");
        assert_eq!(fs::read_to_string(dir.join("old")).expect("old"), "x");
        commit(&dir, &staged).expect("commit");
        assert_eq!(fs::read_to_string(dir.join("a")).expect("new a"), "2");
        assert!(!dir.join(&first).exists(), "old data removed");

        // Through prepare: the config map changes, a key goes away.
        w.config_map("app", serde_json::json!({"a": "3", "new": "y"}));
        w.prepare(&p, &d.dir).expect("update");
        assert_eq!(fs::read_to_string(dir.join("a")).expect("a"), "3");
        assert_eq!(fs::read_to_string(dir.join("new")).expect("new"), "y");
        assert!(
            fs::symlink_metadata(dir.join("old")).is_err(),
            "removed key unlinked"
        );
        let dirs: Vec<String> = fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| is_ts_name(n))
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
    }

    #[test]
    fn optional_and_missing_sources() {
        let d = PodDir::new();
        let w = World::new();
        let p = pod("
metadata: {name: web-0}
spec:
  containers: [{name: c}]
  volumes:
  - {name: cfg, configMap: {name: nope, optional: true}}
  - {name: creds, secret: {secretName: nope, optional: true}}
");
        let v = w.prepare(&p, &d.dir).expect("optional");
        let visible = |dir: &Path| {
            fs::read_dir(dir)
                .expect("list")
                .filter(|e| {
                    !e.as_ref()
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .starts_with("..")
                })
                .count()
        };
        assert_eq!(visible(&v.by_name["cfg"].path), 0);
        assert_eq!(visible(&v.by_name["creds"].path), 0);

        for (volume, want) in [
            ("{name: v, configMap: {name: app-config}}", "configmap \"app-config\" not found"),
            ("{name: v, secret: {secretName: db}}", "secret \"db\" not found"),
            ("{name: v, nfs: {server: x, path: /}}", "unsupported volume type: outpost supports emptyDir, configMap, secret and hostPath"),
            ("{name: v, emptyDir: {medium: HugePages}}", "emptyDir medium \"HugePages\" is not supported: use Memory or leave it unset"),
        ] {
            let p = pod(&format!("metadata: {{name: web-0}}\nspec:\n  containers: [{{name: c}}]\n  volumes:\n  - {volume}\n"));
            let err = w.prepare(&p, &d.dir).expect_err(volume);
            assert_eq!(err.reason, FAILED_MOUNT);
            assert_eq!(err.message, format!("MountVolume.SetUp failed for volume \"v\" : {want}"));
        }
    }

    #[test]
    fn host_path_types() {
        require_root();
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = tmp.path();
        fs::write(t.join("file"), "f").expect("file");
        fs::create_dir(t.join("dir")).expect("dir");
        let _listener = UnixListener::bind(t.join("sock")).expect("socket");
        let check = |path: &str, type_: Option<&str>| {
            host_path(&HostPathVolumeSource {
                path: t.join(path).to_string_lossy().into_owned(),
                type_: type_.map(str::to_owned),
            })
            .map(|_| ())
            .map_err(|e| e.replace(&t.display().to_string(), "T"))
        };
        assert_eq!(check("dir", Some("Directory")), Ok(()));
        assert_eq!(
            check("file", Some("Directory")),
            Err("hostPath type check failed: T/file is not a directory".into())
        );
        assert_eq!(
            check("missing", Some("Directory")),
            Err("hostPath type check failed: T/missing is not a directory".into())
        );
        assert_eq!(check("new/dir", Some("DirectoryOrCreate")), Ok(()));
        assert_eq!(mode(&t.join("new/dir")), 0o755);
        assert_eq!(check("file", Some("File")), Ok(()));
        assert_eq!(
            check("dir", Some("File")),
            Err("hostPath type check failed: T/dir is not a file".into())
        );
        assert_eq!(check("made", Some("FileOrCreate")), Ok(()));
        assert!(t.join("made").is_file());
        assert_eq!(fs::read(t.join("file")).expect("kept"), b"f");
        assert_eq!(check("file", Some("FileOrCreate")), Ok(()));
        assert_eq!(fs::read(t.join("file")).expect("not truncated"), b"f");
        assert!(check("no/parent", Some("FileOrCreate")).is_err());
        assert_eq!(check("sock", Some("Socket")), Ok(()));
        assert_eq!(
            check("file", Some("Socket")),
            Err("hostPath type check failed: T/file is not a socket file".into())
        );
        assert_eq!(
            check("file", Some("CharDevice")),
            Err("hostPath type check failed: T/file is not a character device".into())
        );
        assert_eq!(
            check("file", Some("BlockDevice")),
            Err("hostPath type check failed: T/file is not a block device".into())
        );
        assert_eq!(
            check("file", Some("Weird")),
            Err("Weird is an invalid volume type".into())
        );
        assert_eq!(check("untyped", None), Ok(()));
        assert!(t.join("untyped").is_dir());
        assert_eq!(
            host_path(&HostPathVolumeSource {
                path: "relative".into(),
                type_: None
            }),
            Err("hostPath \"relative\" is not an absolute path".into())
        );
    }

    #[test]
    fn sub_paths_stay_inside_their_volume() {
        let d = PodDir::new();
        let mut w = World::new();
        w.config_map("app", serde_json::json!({"app.conf": "conf"}));
        let p = pod("
metadata: {name: web-0}
spec:
  containers:
  - name: c
    env: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
    volumeMounts:
    - {name: data, mountPath: /a, subPath: made/deep}
    - {name: cfg, mountPath: /etc/app.conf, subPath: app.conf}
    - {name: data, mountPath: /b, subPathExpr: 'logs/$(POD)'}
    - {name: data, mountPath: /c, subPath: evil-abs}
    - {name: data, mountPath: /d, subPath: evil-rel/x}
    - {name: data, mountPath: /e, subPath: inside}
    - {name: data, mountPath: /f, subPath: ../up}
    - {name: data, mountPath: /g}
  - name: broken
    env: [{name: X, valueFrom: {configMapKeyRef: {name: nope, key: k}}}]
    volumeMounts:
    - {name: data, mountPath: /a, subPathExpr: '$(X)'}
  volumes:
  - {name: data, emptyDir: {}}
  - {name: cfg, configMap: {name: app}}
");
        // The volume exists first (a pass without the mounts); then a
        // container plants symlinks in it.
        let bare = pod("
metadata: {name: web-0}
spec:
  containers: [{name: c}]
  volumes:
  - {name: data, emptyDir: {}}
");
        let data = w.prepare(&bare, &d.dir).expect("volume").by_name["data"]
            .path
            .clone();
        symlink("/etc", data.join("evil-abs")).expect("symlink");
        symlink("../../../../..", data.join("evil-rel")).expect("symlink");
        fs::create_dir(data.join("real")).expect("dir");
        symlink("real", data.join("inside")).expect("symlink");
        let v = w.prepare(&p, &d.dir).expect("prepares");
        let get = |i: usize| v.sub_paths.get(&("c".to_owned(), i)).cloned();

        let made = get(0).expect("entry").expect("made");
        assert!(made.ends_with("volume-subpaths/data/c/0"));
        assert_eq!(mounted_at(&made).len(), 1);
        assert!(data.join("made/deep").is_dir());
        assert_eq!(mode(&data.join("made")), 0o777);
        fs::write(made.join("through"), "t").expect("write through the bind");
        assert_eq!(
            fs::read_to_string(data.join("made/deep/through")).expect("read"),
            "t"
        );

        let conf = get(1).expect("entry").expect("config file");
        assert!(conf.is_file());
        assert_eq!(fs::read_to_string(&conf).expect("read"), "conf");

        let logs = get(2).expect("entry").expect("expr");
        assert!(logs.ends_with("volume-subpaths/data/c/2"));
        assert!(data.join("logs/web-0").is_dir());

        for i in [3, 4] {
            assert_eq!(
                get(i).expect("entry"),
                Err(
                    "failed to prepare subPath for volumeMount \"data\" of container \"c\""
                        .to_owned()
                ),
                "mount {i}"
            );
        }
        let inside = get(5).expect("entry").expect("symlink inside the volume");
        fs::write(inside.join("f"), "in").expect("write");
        assert!(data.join("real/f").is_file());
        assert_eq!(
            get(6).expect("entry"),
            Err("unable to provision SubPath `../up`: must not contain '..'".into())
        );
        assert_eq!(get(7), None);
        // The container's env error is reported by translate, not here.
        assert_eq!(v.sub_paths.get(&("broken".to_owned(), 0)), None);

        // Idempotent: no second mount on the same target.
        let again = w.prepare(&p, &d.dir).expect("third pass");
        assert_eq!(again.sub_paths, v.sub_paths);
        assert_eq!(mounted_at(&made).len(), 1);

        cleanup(&d.dir).expect("cleanup");
        assert!(mounts_under(d.root()).is_empty());
        assert!(!d.dir.exists());
    }

    #[test]
    fn cleanup_keeps_host_data_behind_a_bind() {
        let d = PodDir::new();
        let host = tempfile::tempdir().expect("host dir");
        fs::write(host.path().join("precious"), "p").expect("write");
        let p = pod(&format!(
            "
metadata: {{name: web-0}}
spec:
  containers:
  - name: c
    volumeMounts: [{{name: h, mountPath: /h, subPath: .}}]
  volumes:
  - {{name: h, hostPath: {{path: {}}}}}
  - {{name: s, secret: {{secretName: db}}}}
",
            host.path().display()
        ));
        let mut w = World::new();
        w.secret("db", serde_json::json!({"k": "dg=="}));
        let v = w.prepare(&p, &d.dir).expect("prepares");
        let bound = v.sub_paths[&("c".to_owned(), 0)].clone().expect("bound");
        assert!(bound.join("precious").is_file());
        cleanup(&d.dir).expect("cleanup");
        assert!(mounts_under(d.root()).is_empty());
        assert_eq!(
            fs::read_to_string(host.path().join("precious")).expect("kept"),
            "p"
        );
    }

    #[test]
    fn pod_files() {
        let d = PodDir::new();
        let w = World::new();
        let p = pod("
metadata: {name: web-0}
spec:
  hostAliases: [{ip: 10.1.2.3, hostnames: [foo.local, bar.local]}]
  dnsPolicy: None
  dnsConfig:
    nameservers: [1.1.1.1]
    searches: [svc.example]
    options: [{name: ndots, value: '2'}, {name: edns0}]
  containers: [{name: c}]
");
        let v = w.prepare(&p, &d.dir).expect("prepares");
        let f = &v.pod_files;
        assert_eq!(
            fs::read_to_string(&f.hosts).expect("hosts"),
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n10.42.0.7\tweb-0\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"
        );
        assert_eq!(
            fs::read_to_string(&f.hostname).expect("hostname"),
            "web-0\n"
        );
        assert_eq!(
            fs::read_to_string(&f.resolv_conf).expect("resolv.conf"),
            "search svc.example\nnameserver 1.1.1.1\noptions ndots:2 edns0\n"
        );
        // A container's edit survives the next pass; new inputs replace it.
        fs::write(&f.hosts, "edited").expect("edit");
        w.prepare(&p, &d.dir).expect("again");
        assert_eq!(fs::read_to_string(&f.hosts).expect("hosts"), "edited");
        let lookup = Lookup {
            config_maps: &w.config_maps,
            secrets: &w.secrets,
            node_name: "edge-1",
            node_capacity: (2000, 1 << 30),
        };
        let info = PodRuntimeInfo {
            pod_ip: Some("10.42.0.8".into()),
            host_ip: None,
            dns: None,
        };
        prepare(&p, &lookup, &info, &d.dir).expect("new ip");
        assert!(fs::read_to_string(&f.hosts)
            .expect("hosts")
            .contains("10.42.0.8\tweb-0\n"));

        // The host's resolver for Default.
        let p = pod(
            "metadata: {name: web-1}\nspec:\n  dnsPolicy: Default\n  containers: [{name: c}]\n",
        );
        let v = w.prepare(&p, &d.dir).expect("prepares");
        let host = Resolv::parse(&fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default());
        let got =
            Resolv::parse(&fs::read_to_string(&v.pod_files.resolv_conf).expect("resolv.conf"));
        assert_eq!(got.searches, host.searches);
        assert_eq!(
            fs::read_to_string(&v.pod_files.hostname).expect("hostname"),
            "web-1\n"
        );

        // ClusterFirst: the cluster DNS server and the kubelet's search path.
        let p = pod("metadata: {name: web-2, namespace: shop}\nspec:\n  dnsConfig: {options: [{name: ndots, value: '2'}]}\n  containers: [{name: c}]\n");
        let info = PodRuntimeInfo {
            pod_ip: Some("10.42.0.9".into()),
            host_ip: None,
            dns: Some(ClusterDns {
                server: "10.43.0.10".into(),
                domain: "cluster.local".into(),
            }),
        };
        let v = prepare(&p, &lookup, &info, &d.dir).expect("cluster first");
        let got =
            Resolv::parse(&fs::read_to_string(&v.pod_files.resolv_conf).expect("resolv.conf"));
        assert_eq!(got.servers, ["10.43.0.10"]);
        assert_eq!(
            got.searches[..3],
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(got.options, ["ndots:2"], "dnsConfig options win");
    }

    #[test]
    fn host_network_pods_get_the_nodes_files() {
        let d = PodDir::new();
        let w = World::new();
        let p =
            pod("metadata: {name: agent}\nspec:\n  hostNetwork: true\n  containers: [{name: c}]\n");
        let v = w.prepare(&p, &d.dir).expect("prepares");
        let hosts = fs::read_to_string(&v.pod_files.hosts).expect("hosts");
        let node = fs::read_to_string(HOST_HOSTS).expect("node hosts");
        assert_eq!(
            hosts,
            format!("# Kubernetes-managed hosts file (host network).\n{node}")
        );
        let hostname = nix::unistd::gethostname().expect("hostname");
        assert_eq!(
            fs::read_to_string(&v.pod_files.hostname).expect("hostname"),
            format!("{}\n", hostname.to_string_lossy())
        );
    }

    #[test]
    fn payload_paths_are_checked() {
        let p = |path: &str| {
            clean_payload(&BTreeMap::from([(
                path.to_owned(),
                Projection {
                    data: vec![],
                    mode: 0o644,
                },
            )]))
            .map(|m| m.into_keys().collect::<Vec<_>>())
        };
        assert_eq!(p("a/./b//c"), Ok(vec!["a/b/c".to_owned()]));
        assert_eq!(
            p("/abs"),
            Err("invalid path \"/abs\": must be relative".into())
        );
        assert_eq!(
            p("a/../b"),
            Err("invalid path \"a/../b\": must not contain '..'".into())
        );
        assert_eq!(
            p("..data"),
            Err("invalid path \"..data\": must not start with '..'".into())
        );
        assert_eq!(p(""), Err("invalid path \"\": must not be empty".into()));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(
            unescape_mountinfo("/a\\040b\\011c"),
            PathBuf::from("/a b\tc")
        );
        assert_eq!(unescape_mountinfo("/plain\\"), PathBuf::from("/plain\\"));
    }

    #[test]
    fn resolv_conf_parsing() {
        let r = Resolv::parse("# comment\nnameserver 10.0.0.1\nsearch a b\nsearch c\noptions ndots:1 rotate\nnameserver 10.0.0.2 ; x\ndomain d\n");
        assert_eq!(r.servers, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(r.searches, ["c"]);
        assert_eq!(r.options, ["ndots:1", "rotate"]);
        assert_eq!(
            r.render(),
            "search c\nnameserver 10.0.0.1\nnameserver 10.0.0.2\noptions ndots:1 rotate\n"
        );
    }
}
