//! Unpacking one OCI image layer into its own directory, later used as an
//! overlayfs lowerdir.
//!
//! Threat model: layer tarballs come from registries and air-gap imports, so
//! they are untrusted, and we unpack them as root. A hostile layer must not
//! create, change or link anything outside its directory. Absolute paths, `..`,
//! paths through symlinks (created earlier in the same archive), hardlinks to
//! anything but a file of this layer, and device nodes are refused; the whole
//! unpack then fails and the caller deletes the partial directory.
//!
//! We use the `tar` crate only to parse entries and do the filesystem work
//! ourselves: `tar::Entry::unpack_in` works on path strings, follows symlinks
//! created earlier in the archive in some cases, and does not produce overlay
//! whiteouts. Here every call is relative to a directory fd: parents are
//! resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` and the last
//! component is created with `O_EXCL | O_NOFOLLOW`-style `*at` calls, so the
//! kernel, not string checks, keeps us inside the layer. OCI whiteouts
//! (`.wh.name`, `.wh..wh..opq`) become overlayfs whiteouts (0/0 character
//! devices) and the `trusted.overlay.opaque` xattr.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid,
    XattrFlags, CWD,
};
use rustix::io::Errno;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression a layer media type declares; `None` for media types that are not layers.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }

    /// Guesses the compression from the first bytes of a blob (docker-archive
    /// tarballs do not say how their layers are compressed).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// Wraps `r` in the matching decompressor.
    pub fn reader<'a>(self, r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            // Multi-member: pigz and some registries write concatenated gzip streams.
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
        })
    }
}

/// What one unpack wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Archive entries applied (files, directories, links, whiteouts, ...).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
}

/// Why a layer could not be unpacked. `entry` is the path as written in the tar.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The destination directory could not be opened.
    #[error("cannot open layer directory {}", path.display())]
    Dest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The entry is hostile or not allowed in an image layer.
    #[error("layer entry {entry:?}: {reason}")]
    Refused { entry: String, reason: String },
    /// Writing the entry into the layer directory failed.
    #[error("layer entry {entry:?}: cannot {action}")]
    Io {
        entry: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// The archive is truncated or malformed, or does not decompress.
    #[error("broken layer archive {position}")]
    Tar {
        position: String,
        #[source]
        source: io::Error,
    },
}

/// Unpacks the (already decompressed) layer `tar` into `dest`, an existing
/// empty directory, converting OCI whiteouts to overlayfs ones.
///
/// On error `dest` may hold part of the layer: the caller deletes it. Nothing
/// is ever written outside `dest`.
pub fn unpack_layer(tar: impl Read, dest: &Path) -> Result<UnpackStats, UnpackError> {
    let root = rfs::openat(CWD, dest, DIR_FLAGS, Mode::empty()).map_err(|e| UnpackError::Dest {
        path: dest.to_owned(),
        source: e.into(),
    })?;
    let mut unpacker = Unpacker {
        root,
        dir_times: HashMap::new(),
        buf: vec![0; 128 * 1024],
        stats: UnpackStats::default(),
    };

    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|source| UnpackError::Tar {
        position: "at its start".to_owned(),
        source,
    })?;
    let mut previous: Option<String> = None;
    for entry in entries {
        let mut entry = entry.map_err(|source| UnpackError::Tar {
            position: match &previous {
                Some(name) => format!("after entry {name:?}"),
                None => "at its start".to_owned(),
            },
            source,
        })?;
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        unpacker.entry(&mut entry, &raw, &name)?;
        unpacker.stats.entries += 1;
        previous = Some(name);
    }
    unpacker.finish()
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);
const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

struct Unpacker {
    root: OwnedFd,
    /// Directory mtimes, applied at the end since adding children changes them.
    /// Keyed by normalized path so a repeated directory entry wins.
    dir_times: HashMap<Vec<u8>, (String, Timestamps)>,
    buf: Vec<u8>,
    stats: UnpackStats,
}

/// Owner, mode, times and kept xattrs of one entry.
struct Meta {
    uid: Uid,
    gid: Gid,
    mode: Mode,
    times: Timestamps,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Unpacker {
    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        name: &str,
    ) -> Result<(), UnpackError> {
        let comps = components(raw).map_err(|reason| refused(name, reason))?;
        let kind = entry.header().entry_type();
        let Some((last, parents)) = comps.split_last() else {
            return self.root_dir(entry, name, kind);
        };
        if *last == b".wh..wh..opq" {
            // Hides everything lower layers have in this directory.
            let dir = self.parent(parents, name)?;
            return rfs::fsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(io_err(name, "mark the directory opaque"));
        }
        if comps.iter().any(|c| c.starts_with(b".wh..wh.")) {
            return Ok(()); // other aufs bookkeeping (.wh..wh.plnk/, ...): not content
        }
        if let Some(hidden) = last.strip_prefix(b".wh.") {
            return self.whiteout(parents, hidden, name);
        }
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => self.file(entry, parents, last, name),
            T::Directory => self.dir(entry, &comps, name),
            T::Symlink => self.symlink(entry, parents, last, name),
            T::Link => self.hardlink(entry, &comps, name),
            T::Fifo => self.fifo(entry, parents, last, name),
            T::Char | T::Block => Err(refused(
                name,
                "device nodes are not allowed in image layers",
            )),
            other => Err(refused(
                name,
                format!("unsupported entry type {:?}", char::from(other.as_byte())),
            )),
        }
    }

    /// `./` itself: only its metadata can change.
    fn root_dir<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        kind: tar::EntryType,
    ) -> Result<(), UnpackError> {
        if kind != tar::EntryType::Directory {
            return Err(refused(name, "the layer root can only be a directory"));
        }
        let mut meta = read_meta(entry, name)?;
        meta.xattrs.retain(|(key, _)| key.starts_with(b"user."));
        set_meta(self.root.as_fd(), &meta, name)?;
        self.dir_times
            .insert(b".".to_vec(), (name.to_owned(), meta.times));
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parents: &[&[u8]],
        last: &[u8],
        name: &str,
    ) -> Result<(), UnpackError> {
        let meta = read_meta(entry, name)?;
        let parent = self.parent(parents, name)?;
        make_room(parent.as_fd(), last, false)
            .map_err(io_err(name, "replace the earlier entry"))?;
        let fd = rfs::openat(
            &parent,
            last,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_err(name, "create the file"))?;
        let mut file = File::from(fd);
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(UnpackError::Tar {
                        position: format!("in entry {name:?}"),
                        source,
                    })
                }
            };
            file.write_all(&self.buf[..n])
                .map_err(io_err(name, "write the file"))?;
            written += n as u64;
        }
        if written != entry.size() {
            return Err(UnpackError::Tar {
                position: format!("in entry {name:?}"),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archive ends inside the file",
                ),
            });
        }
        self.stats.bytes += written;
        // Writes and chown drop security.capability: set_meta applies xattrs last.
        set_meta(file.as_fd(), &meta, name)?;
        rfs::futimens(&file, &meta.times).map_err(io_err(name, "set the modification time"))
    }

    fn dir<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        comps: &[&[u8]],
        name: &str,
    ) -> Result<(), UnpackError> {
        let mut meta = read_meta(entry, name)?;
        meta.xattrs.retain(|(key, _)| key.starts_with(b"user.")); // capabilities are for files
        let (last, parents) = comps
            .split_last()
            .ok_or_else(|| refused(name, "path is empty"))?;
        let parent = self.parent(parents, name)?;
        let kept = make_room(parent.as_fd(), last, true)
            .map_err(io_err(name, "replace the earlier entry"))?;
        if !kept {
            rfs::mkdirat(&parent, *last, Mode::from_raw_mode(0o700))
                .map_err(io_err(name, "create the directory"))?;
        }
        let fd = rfs::openat(&parent, *last, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())
            .map_err(io_err(name, "open the directory"))?;
        set_meta(fd.as_fd(), &meta, name)?;
        self.dir_times
            .insert(join(comps), (name.to_owned(), meta.times));
        Ok(())
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parents: &[&[u8]],
        last: &[u8],
        name: &str,
    ) -> Result<(), UnpackError> {
        // The target text is stored, never followed by us: it may point anywhere.
        let target = link_target(entry, name, "symlink")?;
        let meta = read_meta(entry, name)?;
        let parent = self.parent(parents, name)?;
        make_room(parent.as_fd(), last, false)
            .map_err(io_err(name, "replace the earlier entry"))?;
        rfs::symlinkat(target.as_slice(), &parent, last)
            .map_err(io_err(name, "create the symlink"))?;
        // Symlinks have no mode on Linux, and user.* xattrs are not allowed on them.
        rfs::chownat(
            &parent,
            last,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io_err(name, "set the owner"))?;
        rfs::utimensat(&parent, last, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err(name, "set the modification time"))
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        comps: &[&[u8]],
        name: &str,
    ) -> Result<(), UnpackError> {
        let target = link_target(entry, name, "hardlink")?;
        let shown = String::from_utf8_lossy(&target).into_owned();
        let what = || format!("hardlink target {shown:?}");
        let tcomps =
            components(&target).map_err(|reason| refused(name, format!("{}: {reason}", what())))?;
        let Some((tlast, tparents)) = tcomps.split_last() else {
            return Err(refused(name, format!("{} is the layer root", what())));
        };
        let missing = || refused(name, format!("{} does not exist in this layer", what()));
        let tparent = match open_dir(self.root.as_fd(), tparents, false) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Err(missing()),
            Err(e) => return Err(resolve_err(name, &what(), e)),
        };
        match rfs::statat(&tparent, *tlast, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(refused(name, format!("{} is a directory", what())));
            }
            Ok(_) => {}
            Err(Errno::NOENT) => return Err(missing()),
            Err(e) => return Err(io_err(name, "look up the hardlink target")(e)),
        }
        if tcomps == comps {
            return Ok(()); // a link to itself: already there
        }
        let (last, parents) = comps
            .split_last()
            .ok_or_else(|| refused(name, "path is empty"))?;
        let parent = self.parent(parents, name)?;
        make_room(parent.as_fd(), last, false)
            .map_err(io_err(name, "replace the earlier entry"))?;
        // No AT_SYMLINK_FOLLOW: a symlink target is linked itself, never followed.
        match rfs::linkat(&tparent, *tlast, &parent, *last, AtFlags::empty()) {
            Ok(()) => Ok(()),
            // Replacing this entry removed the target (it was inside a replaced directory).
            Err(Errno::NOENT) => Err(missing()),
            Err(e) => Err(io_err(name, "create the hardlink")(e)),
        }
    }

    fn fifo<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parents: &[&[u8]],
        last: &[u8],
        name: &str,
    ) -> Result<(), UnpackError> {
        let mut meta = read_meta(entry, name)?;
        meta.xattrs.clear(); // user.* xattrs are not allowed on FIFOs
        let parent = self.parent(parents, name)?;
        make_room(parent.as_fd(), last, false)
            .map_err(io_err(name, "replace the earlier entry"))?;
        rfs::mknodat(&parent, last, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
            .map_err(io_err(name, "create the fifo"))?;
        // Reading + non-blocking opens a FIFO without waiting for a writer.
        let fd = rfs::openat(
            &parent,
            last,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(name, "open the fifo"))?;
        set_meta(fd.as_fd(), &meta, name)?;
        rfs::futimens(&fd, &meta.times).map_err(io_err(name, "set the modification time"))
    }

    /// `dir/.wh.name` hides `dir/name` of lower layers: an overlayfs whiteout, a 0/0 char device.
    fn whiteout(
        &mut self,
        parents: &[&[u8]],
        hidden: &[u8],
        name: &str,
    ) -> Result<(), UnpackError> {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(refused(name, "whiteout names no file"));
        }
        let parent = self.parent(parents, name)?;
        make_room(parent.as_fd(), hidden, false)
            .map_err(io_err(name, "replace the earlier entry"))?;
        rfs::mknodat(
            &parent,
            hidden,
            FileType::CharacterDevice,
            Mode::empty(),
            rfs::makedev(0, 0),
        )
        .map_err(io_err(name, "create the overlay whiteout"))
    }

    /// Opens the directory holding an entry, creating missing directories.
    fn parent(&self, parents: &[&[u8]], name: &str) -> Result<OwnedFd, UnpackError> {
        open_dir(self.root.as_fd(), parents, true).map_err(|e| resolve_err(name, "path", e))
    }

    fn finish(self) -> Result<UnpackStats, UnpackError> {
        for (path, (name, times)) in &self.dir_times {
            let fd = match rfs::openat2(
                &self.root,
                path.as_slice(),
                DIR_FLAGS,
                Mode::empty(),
                BENEATH,
            ) {
                Ok(fd) => fd,
                // Replaced or whited out later in the layer: nothing to stamp.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(io_err(name, "open the directory")(e)),
            };
            rfs::futimens(&fd, times).map_err(io_err(name, "set the modification time"))?;
        }
        Ok(self.stats)
    }
}

/// Splits an entry path into its components, refusing anything that leaves the layer.
/// Leading `./`, repeated and trailing `/` are normal in layers.
fn components(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.is_empty() {
        return Err("path is empty");
    }
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    if raw.starts_with(b"/") {
        return Err("path leaves the layer (absolute path)");
    }
    let mut comps = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("path leaves the layer (\"..\")"),
            comp => comps.push(comp),
        }
    }
    Ok(comps)
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    if comps.is_empty() {
        b".".to_vec()
    } else {
        comps.join(&b'/')
    }
}

/// Opens the directory `comps` below `root` without following any symlink,
/// creating missing components (mode 0755) when `create` is set.
fn open_dir(root: BorrowedFd<'_>, comps: &[&[u8]], create: bool) -> Result<OwnedFd, Errno> {
    match rfs::openat2(root, join(comps), DIR_FLAGS, Mode::empty(), BENEATH) {
        Err(Errno::NOENT) if create => {}
        done => return done,
    }
    // Layers may omit directory entries: create what is missing one component at a time.
    let mut dir = rfs::openat(root, ".", DIR_FLAGS, Mode::empty())?;
    for comp in comps {
        dir = match rfs::openat2(&dir, *comp, DIR_FLAGS, Mode::empty(), BENEATH) {
            Err(Errno::NOENT) => {
                rfs::mkdirat(&dir, *comp, Mode::from_raw_mode(0o755))?;
                let fd = rfs::openat2(&dir, *comp, DIR_FLAGS, Mode::empty(), BENEATH)?;
                rfs::fchmod(&fd, Mode::from_raw_mode(0o755))?; // whatever the umask
                fd
            }
            opened => opened?,
        };
    }
    Ok(dir)
}

/// Makes room for a new entry `name` in `parent`: a later entry replaces an
/// earlier one. Returns whether an existing directory is kept (for a new directory).
fn make_room(parent: BorrowedFd<'_>, name: &[u8], new_is_dir: bool) -> Result<bool, Errno> {
    match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            if !new_is_dir {
                remove_tree(parent, name)?;
            }
            Ok(new_is_dir)
        }
        Ok(_) => rfs::unlinkat(parent, name, AtFlags::empty()).map(|()| false),
    }
}

/// Removes the directory `name` in `parent` and everything below it, following no symlink.
fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    let dir = rfs::openat(parent, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())?;
    let mut children = Vec::new();
    for child in rfs::Dir::read_from(&dir)? {
        let child = child?;
        let child_name = child.file_name().to_bytes();
        if child_name != b"." && child_name != b".." {
            children.push((child_name.to_vec(), child.file_type()));
        }
    }
    for (child, kind) in children {
        let kind = match kind {
            FileType::Unknown => FileType::from_raw_mode(
                rfs::statat(&dir, child.as_slice(), AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
            ),
            kind => kind,
        };
        if kind == FileType::Directory {
            remove_tree(dir.as_fd(), &child)?;
        } else {
            rfs::unlinkat(&dir, child.as_slice(), AtFlags::empty())?;
        }
    }
    rfs::unlinkat(parent, name, AtFlags::REMOVEDIR)
}

fn link_target<R: Read>(
    entry: &tar::Entry<'_, R>,
    name: &str,
    kind: &str,
) -> Result<Vec<u8>, UnpackError> {
    let target = entry
        .link_name_bytes()
        .map(|t| t.into_owned())
        .unwrap_or_default();
    if target.is_empty() {
        return Err(refused(name, format!("{kind} has no target")));
    }
    if target.contains(&0) {
        return Err(refused(name, format!("{kind} target contains a NUL byte")));
    }
    Ok(target)
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, UnpackError> {
    let broken = |source| UnpackError::Tar {
        position: format!("in entry {name:?}"),
        source,
    };
    let header = entry.header();
    // The tar crate already applies PAX uid/gid to the header.
    let uid = id(header.uid().map_err(broken)?, name, "uid")?;
    let gid = id(header.gid().map_err(broken)?, name, "gid")?;
    let mode = Mode::from_raw_mode(header.mode().map_err(broken)? & 0o7777);
    let mut mtime = Timespec {
        tv_sec: i64::try_from(header.mtime().map_err(broken)?).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions().map_err(broken)? {
        for ext in pax {
            let ext = ext.map_err(broken)?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                if let Some(precise) = pax_time(ext.value_bytes()) {
                    mtime = precise;
                }
            } else if let Some(xattr) = key.strip_prefix(b"SCHILY.xattr.") {
                // File capabilities and user xattrs only: trusted.* and security.* (SELinux
                // labels, ...) from a layer would let it steer the host.
                if (xattr == b"security.capability" || xattr.starts_with(b"user."))
                    && !xattr.contains(&0)
                {
                    xattrs.push((xattr.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(Meta {
        uid: Uid::from_raw_unchecked(uid),
        gid: Gid::from_raw_unchecked(gid),
        mode,
        times: Timestamps {
            last_access: mtime,
            last_modification: mtime,
        },
        xattrs,
    })
}

fn id(raw: u64, name: &str, what: &str) -> Result<u32, UnpackError> {
    // u32::MAX is -1, "don't change" to chown.
    match u32::try_from(raw) {
        Ok(id) if id != u32::MAX => Ok(id),
        _ => Err(refused(name, format!("{what} {raw} is out of range"))),
    }
}

/// Parses a PAX time, `seconds[.fraction]`; None when malformed (the header's time is used).
fn pax_time(value: &[u8]) -> Option<Timespec> {
    let value = std::str::from_utf8(value).ok()?;
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &frac[..frac.len().min(9)];
    let tv_nsec = if digits.is_empty() || tv_sec < 0 {
        0
    } else {
        digits.parse::<i64>().ok()? * 10_i64.pow(9 - digits.len() as u32)
    };
    Some(Timespec { tv_sec, tv_nsec })
}

/// Owner, then mode (chown clears setuid/setgid), then xattrs (chown and writes clear
/// security.capability).
fn set_meta(fd: BorrowedFd<'_>, meta: &Meta, name: &str) -> Result<(), UnpackError> {
    rfs::fchown(fd, Some(meta.uid), Some(meta.gid)).map_err(io_err(name, "set the owner"))?;
    rfs::fchmod(fd, meta.mode).map_err(io_err(name, "set the mode"))?;
    for (key, value) in &meta.xattrs {
        match rfs::fsetxattr(fd, key.as_slice(), value, XattrFlags::empty()) {
            // A filesystem without user xattrs loses only annotations; a lost capability
            // would break the binary, so that stays an error.
            Err(Errno::NOTSUP) if key.starts_with(b"user.") => {}
            done => done.map_err(io_err(name, "set an extended attribute"))?,
        }
    }
    Ok(())
}

fn refused(entry: &str, reason: impl Into<String>) -> UnpackError {
    UnpackError::Refused {
        entry: entry.to_owned(),
        reason: reason.into(),
    }
}

fn io_err<'a, E: Into<io::Error>>(
    entry: &'a str,
    action: &'static str,
) -> impl FnOnce(E) -> UnpackError + 'a {
    move |e| UnpackError::Io {
        entry: entry.to_owned(),
        action,
        source: e.into(),
    }
}

/// Maps a failed no-symlink resolution of `what` (the entry's path or its hardlink target).
fn resolve_err(entry: &str, what: &str, e: Errno) -> UnpackError {
    match e {
        Errno::LOOP => refused(entry, format!("{what} passes through a symlink")),
        Errno::NOTDIR => refused(entry, format!("{what} passes through a non-directory")),
        Errno::XDEV => refused(entry, format!("{what} leaves the layer")),
        e => io_err(entry, "open the parent directory")(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use tar::{EntryType, Header};

    const MTIME: u64 = 1_000_000_000;

    /// One tar entry. Names and link targets are written raw (hostile ones too);
    /// `$TMP` in them stands for the test's temporary directory.
    #[derive(Clone)]
    struct Ent {
        kind: EntryType,
        name: String,
        link: String,
        data: Vec<u8>,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        pax: Vec<(&'static str, Vec<u8>)>,
    }

    fn ent(kind: EntryType, name: &str, mode: u32) -> Ent {
        Ent {
            kind,
            name: name.to_owned(),
            link: String::new(),
            data: Vec::new(),
            mode,
            uid: 0,
            gid: 0,
            mtime: MTIME,
            pax: Vec::new(),
        }
    }
    fn file(name: &str, data: &str) -> Ent {
        Ent {
            data: data.as_bytes().to_vec(),
            ..ent(EntryType::Regular, name, 0o644)
        }
    }
    fn dir(name: &str) -> Ent {
        ent(EntryType::Directory, name, 0o755)
    }
    fn symlink(name: &str, target: &str) -> Ent {
        Ent {
            link: target.to_owned(),
            ..ent(EntryType::Symlink, name, 0o777)
        }
    }
    fn hardlink(name: &str, target: &str) -> Ent {
        Ent {
            link: target.to_owned(),
            ..ent(EntryType::Link, name, 0o644)
        }
    }
    fn fifo(name: &str) -> Ent {
        ent(EntryType::Fifo, name, 0o644)
    }

    impl Ent {
        fn mode(self, mode: u32) -> Ent {
            Ent { mode, ..self }
        }
        fn owner(self, uid: u64, gid: u64) -> Ent {
            Ent { uid, gid, ..self }
        }
        fn mtime(self, mtime: u64) -> Ent {
            Ent { mtime, ..self }
        }
        fn pax(mut self, key: &'static str, value: &[u8]) -> Ent {
            self.pax.push((key, value.to_vec()));
            self
        }
    }

    fn tar(ents: &[Ent], tmp: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in ents {
            let name = e.name.replace("$TMP", tmp);
            let link = e.link.replace("$TMP", tmp);
            let mut pax: Vec<(&str, &[u8])> =
                e.pax.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            let mut h = Header::new_gnu();
            let gnu = h.as_gnu_mut().expect("gnu header");
            // Written raw: Builder::append_data refuses ".." and absolute names.
            if name.len() <= gnu.name.len() {
                gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            } else {
                pax.push(("path", name.as_bytes()));
            }
            if link.len() <= gnu.linkname.len() {
                gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            } else {
                pax.push(("linkpath", link.as_bytes()));
            }
            b.append_pax_extensions(pax).expect("pax");
            h.set_entry_type(e.kind);
            h.set_mode(e.mode);
            h.set_uid(e.uid);
            h.set_gid(e.gid);
            h.set_mtime(e.mtime);
            h.set_size(e.data.len() as u64);
            h.set_cksum();
            b.append(&h, e.data.as_slice()).expect("append");
        }
        b.into_inner().expect("tar")
    }

    /// A temporary directory holding the layer directory `layer/` and, beside it,
    /// things a hostile layer would like to reach: `victim/` and `sentinel`.
    struct World {
        tmp: tempfile::TempDir,
        dest: PathBuf,
    }

    impl World {
        fn new() -> World {
            assert!(
                rustix::process::geteuid().is_root(),
                "the unpack tests must run as root: they chown, mknod and set trusted.* xattrs"
            );
            let tmp = tempfile::tempdir().expect("tempdir");
            let dest = tmp.path().join("layer");
            fs::create_dir(&dest).expect("layer dir");
            fs::create_dir(tmp.path().join("victim")).expect("victim dir");
            fs::write(tmp.path().join("sentinel"), "untouched").expect("sentinel");
            World { tmp, dest }
        }
        fn tmp(&self) -> &str {
            self.tmp.path().to_str().expect("utf-8 tempdir")
        }
        /// Everything in the tempdir but the layer, with mtimes.
        fn outside(&self) -> String {
            render(self.tmp.path(), Some("layer"), true)
        }
        fn unpack(&self, ents: &[Ent]) -> Result<UnpackStats, UnpackError> {
            unpack_layer(tar(ents, self.tmp()).as_slice(), &self.dest)
        }
    }

    /// One line per file: kind, mode, owner, path, then content / target / device,
    /// link count, xattrs and (if asked) the mtime.
    fn render(root: &Path, skip: Option<&str>, mtimes: bool) -> String {
        let mut out = String::new();
        walk(root, root, skip, mtimes, &mut out);
        out
    }

    fn walk(root: &Path, dir: &Path, skip: Option<&str>, mtimes: bool, out: &mut String) {
        let mut paths: Vec<PathBuf> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        paths.sort();
        for path in paths {
            let rel = path.strip_prefix(root).expect("below root");
            let rel = rel.to_str().expect("utf-8 name");
            if Some(rel) == skip {
                continue;
            }
            let md = fs::symlink_metadata(&path).expect("lstat");
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                'd'
            } else if ft.is_file() {
                'f'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_fifo() {
                'p'
            } else if ft.is_char_device() {
                'c'
            } else {
                '?'
            };
            let mode = md.mode() & 0o7777;
            let mut line = format!("{kind} {mode:04o} {}:{} {rel}", md.uid(), md.gid());
            if ft.is_file() {
                let data = fs::read(&path).expect("read");
                line += &format!(" {:?}", String::from_utf8_lossy(&data));
                if md.nlink() > 1 {
                    line += &format!(" nlink={}", md.nlink());
                }
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).expect("readlink");
                line += &format!(" -> {}", target.display());
            } else if ft.is_char_device() {
                let rdev = md.rdev();
                line += &format!(" {}/{}", rfs::major(rdev), rfs::minor(rdev));
            }
            for (key, value) in xattrs(&path) {
                line += &format!(" {key}={:?}", String::from_utf8_lossy(&value));
            }
            if mtimes {
                line += &format!(" @{}", md.mtime());
            }
            out.push_str(&line);
            out.push('\n');
            if ft.is_dir() {
                walk(root, &path, skip, mtimes, out);
            }
        }
    }

    fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
        let mut names = vec![0u8; 4096];
        let n = rfs::llistxattr(path, names.as_mut_slice()).expect("llistxattr");
        let mut out = Vec::new();
        for key in names[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
            let key = String::from_utf8_lossy(key).into_owned();
            if key == "security.selinux" {
                continue; // the host's label, not from the layer
            }
            let mut value = vec![0u8; 4096];
            let len = rfs::lgetxattr(path, key.as_str(), value.as_mut_slice()).expect("lgetxattr");
            value.truncate(len);
            out.push((key, value));
        }
        out.sort();
        out
    }

    fn trim_lines(s: &str) -> String {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// Unpacks `ents` and compares the layer (without mtimes) with `expect`;
    /// nothing outside the layer may change.
    fn check(ents: &[Ent], expect: &str) {
        let w = World::new();
        let before = w.outside();
        if let Err(e) = w.unpack(ents) {
            panic!("unpack failed: {e}: {:?}", std::error::Error::source(&e));
        }
        let got = render(&w.dest, None, false);
        let expect = trim_lines(&expect.replace("$TMP", w.tmp()));
        assert_eq!(got, expect, "layer:\n{got}");
        assert_eq!(w.outside(), before, "something changed outside the layer");
    }

    /// Unpacking `ents` fails with `expect`, and nothing outside the layer changed.
    fn check_refused(ents: &[Ent], expect: &str) {
        let w = World::new();
        let before = w.outside();
        let err = match w.unpack(ents) {
            Ok(stats) => panic!("unpack succeeded ({stats:?}), want {expect}"),
            Err(e) => e,
        };
        assert!(
            matches!(err, UnpackError::Refused { .. }),
            "want a refusal, got {err:?}"
        );
        assert_eq!(err.to_string(), expect.replace("$TMP", w.tmp()));
        assert_eq!(w.outside(), before, "something changed outside the layer");
        assert_eq!(
            fs::read_to_string(w.tmp.path().join("sentinel")).expect("sentinel"),
            "untouched"
        );
    }

    #[test]
    fn unpacks_files_dirs_links_and_fifos() {
        check(
            &[
                dir("./").mode(0o755),
                dir("./etc/").mode(0o755),
                file("./etc/hostname", "edge\n"),
                file("bin/sh", "shell").mode(0o755),
                file("usr/bin/sudo", "su").mode(0o4755),
                file("usr/bin/wall", "wall").mode(0o2755).owner(0, 5),
                dir("tmp/").mode(0o1777),
                dir("home/user/").mode(0o700).owner(1000, 1000),
                file("home/user/.profile", "p")
                    .mode(0o600)
                    .owner(1000, 1000),
                symlink("bin/ls", "/usr/bin/ls"),
                symlink("lib", "usr/lib"),
                symlink("up", "../../.."),
                hardlink("bin/dash", "bin/sh"),
                hardlink("./bin/ls2", "./bin/ls"),
                fifo("run/initctl").mode(0o600).owner(3, 4),
                file("big/uid", "x").owner(4_000_000_000, 70_000),
            ],
            r#"
            d 0755 0:0 big
            f 0644 4000000000:70000 big/uid "x"
            d 0755 0:0 bin
            f 0755 0:0 bin/dash "shell" nlink=2
            l 0777 0:0 bin/ls -> /usr/bin/ls
            l 0777 0:0 bin/ls2 -> /usr/bin/ls
            f 0755 0:0 bin/sh "shell" nlink=2
            d 0755 0:0 etc
            f 0644 0:0 etc/hostname "edge\n"
            d 0755 0:0 home
            d 0700 1000:1000 home/user
            f 0600 1000:1000 home/user/.profile "p"
            l 0777 0:0 lib -> usr/lib
            d 0755 0:0 run
            p 0600 3:4 run/initctl
            d 1777 0:0 tmp
            l 0777 0:0 up -> ../../..
            d 0755 0:0 usr
            d 0755 0:0 usr/bin
            f 4755 0:0 usr/bin/sudo "su"
            f 2755 0:5 usr/bin/wall "wall"
            "#,
        );
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        check(
            &[
                file("a", "one"),
                file("a", "two"),
                file("b", "file"),
                dir("b/").mode(0o750),
                dir("c/"),
                file("c/x", "1"),
                dir("c/d/"),
                file("c/d/y", "2"),
                symlink("c/l", "x"),
                fifo("c/p"),
                file("c", "now a file"),
                dir("e/").mode(0o700),
                file("e/keep", "k"),
                dir("e/").mode(0o750).owner(7, 7),
                file("f", "x"),
                symlink("f", "target"),
                // The final component is never followed: these replace the symlinks.
                symlink("s", "$TMP/sentinel"),
                file("s", "mine"),
                symlink("t", "$TMP/victim"),
                dir("t/").mode(0o700),
                symlink("u", "../sentinel"),
                hardlink("u", "a"),
                // A hardlink to a symlink links the symlink itself.
                symlink("v", "$TMP/sentinel"),
                hardlink("w", "v"),
                hardlink("w", "w"),
            ],
            r#"
            f 0644 0:0 a "two" nlink=2
            d 0750 0:0 b
            f 0644 0:0 c "now a file"
            d 0750 7:7 e
            f 0644 0:0 e/keep "k"
            l 0777 0:0 f -> target
            f 0644 0:0 s "mine"
            d 0700 0:0 t
            f 0644 0:0 u "two" nlink=2
            l 0777 0:0 v -> $TMP/sentinel
            l 0777 0:0 w -> $TMP/sentinel
            "#,
        );
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        check(
            &[
                dir("etc/"),
                file("etc/.wh.passwd", ""),
                file("var/.wh..wh..opq", ""),
                dir("opt/"),
                dir("opt/old/"),
                file("opt/old/x", "x"),
                file("opt/.wh.old", ""),
                dir("srv/"),
                file("srv/.wh..wh..opq", ""),
                file("srv/new", "n"),
                dir("srv/").mode(0o700),
                file(".wh.root-file", ""),
                // aufs bookkeeping is not content.
                dir(".wh..wh.plnk/"),
                file(".wh..wh.plnk/123.456", "x"),
                file(".wh..wh.aufs", ""),
            ],
            r#"
            d 0755 0:0 etc
            c 0000 0:0 etc/passwd 0/0
            d 0755 0:0 opt
            c 0000 0:0 opt/old 0/0
            c 0000 0:0 root-file 0/0
            d 0700 0:0 srv trusted.overlay.opaque="y"
            f 0644 0:0 srv/new "n"
            d 0755 0:0 var trusted.overlay.opaque="y"
            "#,
        );
    }

    /// A version 2 file capability: cap_net_bind_service (10) permitted, effective.
    const CAP_NET_BIND_SERVICE: [u8; 20] = [
        0x01, 0, 0, 0x02, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn keeps_capabilities_and_user_xattrs_only() {
        let cap = String::from_utf8_lossy(&CAP_NET_BIND_SERVICE).into_owned();
        check(
            &[
                file("ping", "p")
                    .mode(0o4755)
                    .owner(0, 9)
                    .pax("SCHILY.xattr.security.capability", &CAP_NET_BIND_SERVICE)
                    .pax("SCHILY.xattr.user.origin", b"layer")
                    .pax("SCHILY.xattr.trusted.overlay.opaque", b"y")
                    .pax(
                        "SCHILY.xattr.security.selinux",
                        b"system_u:object_r:bin_t:s0",
                    )
                    .pax("LIBARCHIVE.xattr.user.other", b"eA=="),
                dir("d/")
                    .pax("SCHILY.xattr.user.dir", b"1")
                    .pax("SCHILY.xattr.security.capability", &CAP_NET_BIND_SERVICE)
                    .pax("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
                symlink("l", "ping").pax("SCHILY.xattr.user.x", b"1"),
                fifo("p").pax("SCHILY.xattr.user.x", b"1"),
            ],
            &format!(
                r#"
                d 0755 0:0 d user.dir="1"
                l 0777 0:0 l -> ping
                p 0644 0:0 p
                f 4755 0:9 ping "p" security.capability={cap:?} user.origin="layer"
                "#
            ),
        );
    }

    #[test]
    fn keeps_mtimes() {
        let w = World::new();
        w.unpack(&[
            dir("d/").mtime(1_100_000_000),
            dir("d/sub/").mtime(1_200_000_000),
            file("d/f", "x").mtime(1_300_000_000),
            file("d/sub/g", "x").mtime(1_400_000_000),
            symlink("d/l", "f").mtime(1_500_000_000),
            fifo("d/p").mtime(1_600_000_000),
            file("d/gone", "x"),
            file("d/.wh.gone", ""),
            file("precise", "x").pax("mtime", b"1700000000.25"),
            dir("./").mtime(1_000_000_001),
        ])
        .expect("unpack");
        let mtime = |p: &str| {
            let md = fs::symlink_metadata(w.dest.join(p)).expect("lstat");
            (md.mtime(), md.mtime_nsec())
        };
        assert_eq!(mtime("."), (1_000_000_001, 0));
        assert_eq!(mtime("d"), (1_100_000_000, 0));
        assert_eq!(mtime("d/sub"), (1_200_000_000, 0));
        assert_eq!(mtime("d/f"), (1_300_000_000, 0));
        assert_eq!(mtime("d/sub/g"), (1_400_000_000, 0));
        assert_eq!(mtime("d/l"), (1_500_000_000, 0));
        assert_eq!(mtime("d/p"), (1_600_000_000, 0));
        assert_eq!(mtime("precise"), (1_700_000_000, 250_000_000));
    }

    #[test]
    fn counts_entries_and_bytes() {
        let w = World::new();
        let big = "0123456789abcdef".repeat(64 * 1024); // 1 MiB, several reads
        let stats = w
            .unpack(&[
                dir("a/"),
                file("a/big", &big),
                file("a/small", "abc"),
                symlink("s", "a"),
            ])
            .expect("unpack");
        assert_eq!(
            stats,
            UnpackStats {
                entries: 4,
                bytes: big.len() as u64 + 3
            }
        );
        assert_eq!(fs::read_to_string(w.dest.join("a/big")).expect("read"), big);
    }

    #[test]
    fn refuses_paths_that_leave_the_layer() {
        let long = format!("../{}", "x".repeat(150));
        let cases: &[(&[Ent], &str)] = &[
            (
                &[file("$TMP/sentinel", "pwned")],
                r#"layer entry "$TMP/sentinel": path leaves the layer (absolute path)"#,
            ),
            (
                &[file("/etc/passwd", "pwned")],
                r#"layer entry "/etc/passwd": path leaves the layer (absolute path)"#,
            ),
            (
                &[file("../sentinel", "pwned")],
                r#"layer entry "../sentinel": path leaves the layer ("..")"#,
            ),
            (
                &[file("./../sentinel", "pwned")],
                r#"layer entry "./../sentinel": path leaves the layer ("..")"#,
            ),
            (
                &[dir("a/"), file("a/../../sentinel", "pwned")],
                r#"layer entry "a/../../sentinel": path leaves the layer ("..")"#,
            ),
            (
                &[dir("../victim/").mode(0o777)],
                r#"layer entry "../victim/": path leaves the layer ("..")"#,
            ),
            (
                &[symlink("../victim/l", "/")],
                r#"layer entry "../victim/l": path leaves the layer ("..")"#,
            ),
            (
                &[file("victim/../../.wh.sentinel", "")],
                r#"layer entry "victim/../../.wh.sentinel": path leaves the layer ("..")"#,
            ),
            (
                &[file(&long, "pwned")],
                &format!(r#"layer entry {long:?}: path leaves the layer ("..")"#),
            ),
        ];
        for (ents, expect) in cases {
            check_refused(ents, expect);
        }
    }

    #[test]
    fn refuses_paths_through_symlinks() {
        let cases: &[(&[Ent], &str)] = &[
            (
                &[symlink("evil", "$TMP/victim"), file("evil/passwd", "pwned")],
                r#"layer entry "evil/passwd": path passes through a symlink"#,
            ),
            (
                &[symlink("evil", "../victim"), file("evil/passwd", "pwned")],
                r#"layer entry "evil/passwd": path passes through a symlink"#,
            ),
            (
                &[
                    symlink("evil", "../../../.."),
                    file("./evil/tmp/x", "pwned"),
                ],
                r#"layer entry "./evil/tmp/x": path passes through a symlink"#,
            ),
            (
                &[
                    dir("d/"),
                    symlink("d/up", ".."),
                    symlink("d/up2", "../.."),
                    file("d/up2/sentinel", "pwned"),
                ],
                r#"layer entry "d/up2/sentinel": path passes through a symlink"#,
            ),
            (
                &[symlink("evil", "$TMP/victim"), dir("evil/sub/").mode(0o777)],
                r#"layer entry "evil/sub/": path passes through a symlink"#,
            ),
            (
                &[symlink("evil", "$TMP/victim"), symlink("evil/l", "/")],
                r#"layer entry "evil/l": path passes through a symlink"#,
            ),
            (
                &[symlink("evil", "$TMP/victim"), fifo("evil/p")],
                r#"layer entry "evil/p": path passes through a symlink"#,
            ),
            (
                &[
                    file("f", "x"),
                    symlink("evil", "$TMP/victim"),
                    hardlink("evil/h", "f"),
                ],
                r#"layer entry "evil/h": path passes through a symlink"#,
            ),
            (
                &[symlink("evil", "$TMP/victim"), file("evil/.wh.x", "")],
                r#"layer entry "evil/.wh.x": path passes through a symlink"#,
            ),
            (
                &[
                    symlink("evil", "$TMP/victim"),
                    file("evil/.wh..wh..opq", ""),
                ],
                r#"layer entry "evil/.wh..wh..opq": path passes through a symlink"#,
            ),
            (
                &[symlink("evil", "$TMP"), file("evil/sentinel", "pwned")],
                r#"layer entry "evil/sentinel": path passes through a symlink"#,
            ),
            (
                &[file("f", "x"), file("f/g", "y")],
                r#"layer entry "f/g": path passes through a non-directory"#,
            ),
        ];
        for (ents, expect) in cases {
            check_refused(ents, expect);
        }
    }

    #[test]
    fn refuses_hardlinks_out_of_the_layer() {
        let cases: &[(&[Ent], &str)] = &[
            (
                &[hardlink("h", "$TMP/sentinel")],
                r#"layer entry "h": hardlink target "$TMP/sentinel": path leaves the layer (absolute path)"#,
            ),
            (
                &[hardlink("h", "../sentinel")],
                r#"layer entry "h": hardlink target "../sentinel": path leaves the layer ("..")"#,
            ),
            (
                &[symlink("s", "$TMP"), hardlink("h", "s/sentinel")],
                r#"layer entry "h": hardlink target "s/sentinel" passes through a symlink"#,
            ),
            (
                &[symlink("s", ".."), hardlink("h", "s/sentinel")],
                r#"layer entry "h": hardlink target "s/sentinel" passes through a symlink"#,
            ),
            (
                &[hardlink("h", "missing")],
                r#"layer entry "h": hardlink target "missing" does not exist in this layer"#,
            ),
            (
                &[hardlink("h", "victim/x")],
                r#"layer entry "h": hardlink target "victim/x" does not exist in this layer"#,
            ),
            (
                &[dir("d/"), hardlink("h", "d")],
                r#"layer entry "h": hardlink target "d" is a directory"#,
            ),
            (
                &[hardlink("h", "./")],
                r#"layer entry "h": hardlink target "./" is the layer root"#,
            ),
            (
                &[dir("d/"), file("d/f", "x"), hardlink("d", "d/f")],
                r#"layer entry "d": hardlink target "d/f" does not exist in this layer"#,
            ),
        ];
        for (ents, expect) in cases {
            check_refused(ents, expect);
        }
    }

    #[test]
    fn refuses_devices_and_odd_entries() {
        let cases: &[(&[Ent], &str)] = &[
            (
                &[ent(EntryType::Char, "dev/null", 0o666)],
                r#"layer entry "dev/null": device nodes are not allowed in image layers"#,
            ),
            (
                &[ent(EntryType::Block, "sda", 0o660)],
                r#"layer entry "sda": device nodes are not allowed in image layers"#,
            ),
            (
                &[file("./", "x")],
                r#"layer entry "./": the layer root can only be a directory"#,
            ),
            (&[file("", "x")], r#"layer entry "": path is empty"#),
            (
                &[symlink("s", "")],
                r#"layer entry "s": symlink has no target"#,
            ),
            (
                &[file("d/.wh...", "")],
                r#"layer entry "d/.wh...": whiteout names no file"#,
            ),
            (
                &[ent(EntryType::new(b'Z'), "z", 0o644)],
                r#"layer entry "z": unsupported entry type 'Z'"#,
            ),
        ];
        for (ents, expect) in cases {
            check_refused(ents, expect);
        }
    }

    #[test]
    fn reports_broken_archives() {
        let w = World::new();
        let mut data = tar(&[file("a", "x"), file("b", &"y".repeat(2000))], w.tmp());
        data.truncate(512 * 3 + 100); // inside b's content
        let err = unpack_layer(data.as_slice(), &w.dest).expect_err("truncated archive");
        assert!(matches!(err, UnpackError::Tar { .. }), "{err:?}");
        assert_eq!(err.to_string(), r#"broken layer archive in entry "b""#);

        let mut data = tar(&[file("a", "x"), file("b", "y")], w.tmp());
        data[1024 + 150] ^= 1; // b's header checksum
        let w = World::new();
        let err = unpack_layer(data.as_slice(), &w.dest).expect_err("bad checksum");
        assert_eq!(err.to_string(), r#"broken layer archive after entry "a""#);

        let err = unpack_layer(&b""[..], Path::new("/nonexistent/layer")).expect_err("no dest");
        assert_eq!(
            err.to_string(),
            "cannot open layer directory /nonexistent/layer"
        );
    }

    #[test]
    fn compression_from_media_type() {
        use Compression::*;
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar", Some(None)),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                Some(None),
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Some(Zstd),
            ),
            ("application/vnd.docker.image.rootfs.diff.tar", Some(None)),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(Gzip),
            ),
            ("application/vnd.oci.image.config.v1+json", Option::None),
            ("application/vnd.oci.image.layer.v1.tar+bzip2", Option::None),
            ("", Option::None),
        ];
        for (media_type, want) in cases {
            assert_eq!(
                Compression::from_media_type(media_type),
                want,
                "{media_type}"
            );
        }
    }

    #[test]
    fn compression_sniff_and_readers() {
        let plain = tar(&[file("hello", "world")], "/");
        let gzip = {
            // Two gzip members, as pigz writes: both must be read.
            let (a, b) = plain.split_at(700);
            let mut out = Vec::new();
            for part in [a, b] {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(part).expect("gzip");
                out.extend(enc.finish().expect("gzip"));
            }
            out
        };
        let zstd = zstd::stream::encode_all(plain.as_slice(), 3).expect("zstd");
        for (blob, want) in [
            (&plain, Compression::None),
            (&gzip, Compression::Gzip),
            (&zstd, Compression::Zstd),
        ] {
            assert_eq!(Compression::sniff(&blob[..8]), want);
            let mut out = Vec::new();
            want.reader(blob.as_slice())
                .expect("reader")
                .read_to_end(&mut out)
                .expect("decompress");
            assert_eq!(out, plain, "{want:?}");

            let w = World::new();
            let reader = want.reader(blob.as_slice()).expect("reader");
            unpack_layer(reader, &w.dest).expect("unpack");
            assert_eq!(
                fs::read_to_string(w.dest.join("hello")).expect("read"),
                "world"
            );
        }
        assert_eq!(Compression::sniff(b""), Compression::None);
        assert_eq!(Compression::sniff(&[0x1f]), Compression::None);

        let err = Compression::Gzip
            .reader(&b"\x1f\x8bnot really gzip"[..])
            .and_then(|mut r| r.read_to_end(&mut Vec::new()));
        assert!(err.is_err());
    }
}
