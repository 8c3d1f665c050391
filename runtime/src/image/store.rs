//! The on-disk image store under `<state-dir>/images`:
//!
//! ```text
//! blobs/sha256/<hex>     manifests and image configs, verified on every write
//! ingest/<hex>.partial   layer downloads in progress (kept to resume)
//! layers/<diff-id hex>/  unpacked layers, shared by every image that has them
//! images.json            image name -> record (manifest, config, layers, pinned)
//! index.lock, gc.lock    flock(2) locks: index edits; GC vs. pulls/containers
//! ```
//!
//! Compressed layer blobs are deleted once unpacked: an edge node has little
//! disk, and the unpacked directory (keyed by the diff id the signed image
//! config names) is what a pull checks before fetching again.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::reference::ImageRef;
use super::unpack::{self, Compression};
use crate::container::spec::ImageConfig;
use crate::container::{ContainerRecord, ImageRootfs};
use crate::error::{Error, Result};

/// Largest manifest or config accepted (real ones are a few KiB).
pub const MAX_METADATA_BLOB: u64 = 4 << 20;

/// One layer of an image: the blob a registry serves and what it unpacks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the (possibly compressed) blob named by the manifest.
    pub digest: Digest,
    /// Digest of the uncompressed tar, from the image config's `rootfs.diff_ids`.
    pub diff_id: Digest,
    pub media_type: String,
    /// Size of the blob in bytes.
    pub size: u64,
}

/// An image the store holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: ImageRef,
    pub manifest: Digest,
    pub config: Digest,
    pub layers: Vec<LayerRecord>,
    /// Imported from the air-gap dir: never garbage-collected.
    #[serde(default)]
    pub pinned: bool,
    pub created_at: String,
}

impl ImageRecord {
    /// Bytes a registry would send for this image (what `images ls` shows).
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    images: BTreeMap<String, ImageRecord>,
}

/// What containers use. GC never deletes an image a container was made from,
/// and never deletes a layer a container has mounted (even if its image is gone).
#[derive(Debug, Default)]
pub struct InUse {
    pub images: HashSet<String>,
    pub layers: HashSet<PathBuf>,
}

impl InUse {
    /// From the runtime's container records.
    pub fn from_records(records: Vec<ContainerRecord>) -> InUse {
        let mut in_use = InUse::default();
        for r in records {
            in_use.images.insert(r.image);
            in_use.layers.extend(r.layers);
        }
        in_use
    }
}

/// Handle on the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// While held, garbage collection does not run: taken by pulls, imports and
/// container creation between choosing layers and recording that they use them.
#[derive(Debug)]
pub struct UseGuard {
    _lock: File,
}

impl Store {
    /// Opens (creating if needed) the store under `<state_dir>/images`.
    pub fn open(state_dir: &Path) -> Result<Store> {
        let root = state_dir.join("images");
        for dir in [
            root.join("blobs/sha256"),
            root.join("ingest"),
            root.join("layers"),
        ] {
            fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        }
        Ok(Store { root })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Where a download of `digest` in progress is kept.
    pub fn ingest_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("ingest")
            .join(format!("{}.partial", digest.hex()))
    }

    /// The unpacked directory of a layer.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    /// Whether the layer is already unpacked (then it is never fetched again).
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).is_dir()
    }

    fn lock(&self, name: &str, op: rustix::fs::FlockOperation) -> Result<Option<File>> {
        let path = self.root.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        match rustix::fs::flock(&file, op) {
            Ok(()) => Ok(Some(file)),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(Error::io("lock", &path)(e.into())),
        }
    }

    /// Holds off garbage collection until dropped.
    pub fn use_guard(&self) -> Result<UseGuard> {
        let lock = self.lock("gc.lock", rustix::fs::FlockOperation::LockShared)?;
        Ok(UseGuard {
            _lock: lock.ok_or_else(|| Error::Store {
                message: "gc.lock: not granted".into(),
            })?,
        })
    }

    /// Stores a small blob (manifest, config) after checking its digest.
    /// A mismatch is refused and leaves nothing behind.
    pub fn write_blob(&self, expected: &Digest, data: &[u8]) -> Result<()> {
        let actual = Digest::of(data);
        if &actual != expected {
            return Err(Error::DigestMismatch {
                what: "blob".into(),
                expected: expected.clone(),
                actual,
            });
        }
        let path = self.blob_path(expected);
        if path.exists() {
            return Ok(());
        }
        write_atomic(&path, data)
    }

    /// Reads a stored blob, checking it is still what its name says.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let data = fs::read(&path).map_err(Error::io("read", &path))?;
        let actual = Digest::of(&data);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("stored blob {}", path.display()),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(data)
    }

    /// Unpacks a downloaded layer blob (digest already verified) into its
    /// layer directory, checking the uncompressed stream against `layer.diff_id`.
    /// Blocking: call from `spawn_blocking`.
    pub fn unpack_blob(
        &self,
        blob: &Path,
        layer: &LayerRecord,
        compression: Option<Compression>,
    ) -> Result<u64> {
        if self.has_layer(&layer.diff_id) {
            return Ok(0);
        }
        let mut file = File::open(blob).map_err(Error::io("open", blob))?;
        let compression =
            match compression.or_else(|| Compression::from_media_type(&layer.media_type)) {
                Some(c) => c,
                None => {
                    let mut head = [0u8; 4];
                    let n = file.read(&mut head).map_err(Error::io("read", blob))?;
                    drop(file);
                    file = File::open(blob).map_err(Error::io("open", blob))?;
                    Compression::sniff(&head[..n])
                }
            };
        let tmp = self.root.join("layers").join(format!(
            ".tmp-{}-{}",
            layer.diff_id.hex(),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(Error::io("create", &tmp))?;
        let result = (|| {
            let decompressed = compression
                .reader(io::BufReader::new(file))
                .map_err(Error::io("decompress", blob))?;
            let mut hashing = HashingReader {
                inner: decompressed,
                hasher: Sha256::new(),
            };
            let stats = unpack::unpack_layer(&mut hashing, &tmp).map_err(|e| Error::Layer {
                digest: layer.digest.clone(),
                source: e,
            })?;
            // The tar reader stops at the end-of-archive marker: hash any padding after it too.
            io::copy(&mut hashing, &mut io::sink()).map_err(Error::io("decompress", blob))?;
            let actual = Digest::from_hasher(hashing.hasher);
            if actual != layer.diff_id {
                return Err(Error::DigestMismatch {
                    what: format!(
                        "uncompressed layer {} (diff_id in the image config)",
                        layer.digest
                    ),
                    expected: layer.diff_id.clone(),
                    actual,
                });
            }
            Ok(stats.bytes)
        })();
        match result {
            Ok(bytes) => {
                let dir = self.layer_dir(&layer.diff_id);
                match fs::rename(&tmp, &dir) {
                    Ok(()) => Ok(bytes),
                    // Another pull unpacked the same layer meanwhile: keep theirs.
                    Err(_) if dir.is_dir() => {
                        let _ = fs::remove_dir_all(&tmp);
                        Ok(bytes)
                    }
                    Err(e) => {
                        let _ = fs::remove_dir_all(&tmp);
                        Err(Error::io("rename", &tmp)(e))
                    }
                }
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    fn read_index(&self) -> Result<Index> {
        let path = self.root.join("images.json");
        match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| Error::Store {
                message: format!(
                    "{} is corrupt ({e}); move it away and pull or import the images again",
                    path.display()
                ),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(Error::io("read", &path)(e)),
        }
    }

    fn edit_index<T>(&self, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let _lock = self.lock("index.lock", rustix::fs::FlockOperation::LockExclusive)?;
        let mut index = self.read_index()?;
        let out = f(&mut index)?;
        let data = serde_json::to_vec_pretty(&index).map_err(|e| Error::Store {
            message: e.to_string(),
        })?;
        write_atomic(&self.root.join("images.json"), &data)?;
        Ok(out)
    }

    /// Records an image whose blobs and layers are all in place.
    pub fn commit(&self, record: ImageRecord) -> Result<()> {
        for layer in &record.layers {
            if !self.has_layer(&layer.diff_id) {
                return Err(Error::Store {
                    message: format!("layer {} of {} is not unpacked", layer.digest, record.name),
                });
            }
        }
        self.edit_index(|index| {
            let pinned = record.pinned
                || index
                    .images
                    .get(&record.name.to_string())
                    .is_some_and(|r| r.pinned && r.manifest == record.manifest);
            index
                .images
                .insert(record.name.to_string(), ImageRecord { pinned, ..record });
            Ok(())
        })
    }

    /// Every image, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        Ok(self.read_index()?.images.into_values().collect())
    }

    /// The record of one image, if present.
    pub fn get(&self, name: &ImageRef) -> Result<Option<ImageRecord>> {
        Ok(self.read_index()?.images.remove(&name.to_string()))
    }

    /// Finds an image by full or short name, or by (a prefix of) its manifest digest.
    pub fn find(&self, query: &str) -> Result<Option<ImageRecord>> {
        let images = self.list()?;
        if let Ok(name) = query.parse::<ImageRef>() {
            if let Some(r) = images.iter().find(|r| r.name == name) {
                return Ok(Some(r.clone()));
            }
        }
        let hex = query.trim_start_matches("sha256:");
        if hex.len() >= 6 {
            let mut hits = images.iter().filter(|r| r.manifest.hex().starts_with(hex));
            if let (Some(hit), None) = (hits.next(), hits.next()) {
                return Ok(Some(hit.clone()));
            }
        }
        Ok(None)
    }

    /// What a container of this image needs: its config and layer dirs.
    pub fn rootfs(&self, record: &ImageRecord) -> Result<ImageRootfs> {
        let config = self.image_config(record)?;
        let layers = record
            .layers
            .iter()
            .map(|l| self.layer_dir(&l.diff_id))
            .collect::<Vec<_>>();
        if let Some(missing) = layers.iter().find(|d| !d.is_dir()) {
            return Err(Error::Store {
                message: format!(
                    "{}: layer {} is missing; pull the image again",
                    record.name,
                    missing.display()
                ),
            });
        }
        Ok(ImageRootfs {
            image: record.name.to_string(),
            config: ImageConfig::from_oci(&config),
            layers,
        })
    }

    /// The image's OCI config.
    pub fn image_config(
        &self,
        record: &ImageRecord,
    ) -> Result<oci_spec::image::ImageConfiguration> {
        let data = self.read_blob(&record.config)?;
        serde_json::from_slice(&data).map_err(|e| Error::Store {
            message: format!("config {} of {}: {e}", record.config, record.name),
        })
    }

    /// Removes an image and every layer and blob no other image (and no
    /// container, `in_use`) needs. Returns the freed layer count.
    pub fn remove(&self, name: &ImageRef, in_use: &InUse) -> Result<usize> {
        let _gc = self.lock("gc.lock", rustix::fs::FlockOperation::LockExclusive)?;
        let removed = self.edit_index(|index| Ok(index.images.remove(&name.to_string())))?;
        if removed.is_none() {
            return Err(Error::Store {
                message: format!("no image {name}; `outpost images ls` lists them"),
            });
        }
        self.sweep(in_use)
    }

    /// Deletes layers, blobs and stale downloads no image or container references.
    fn sweep(&self, in_use: &InUse) -> Result<usize> {
        let index = self.read_index()?;
        let mut keep_layers: HashSet<String> = in_use
            .layers
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        let mut keep_blobs = HashSet::new();
        for r in index.images.values() {
            keep_blobs.insert(r.manifest.hex().to_owned());
            keep_blobs.insert(r.config.hex().to_owned());
            keep_layers.extend(r.layers.iter().map(|l| l.diff_id.hex().to_owned()));
        }
        let mut freed = 0;
        for entry in read_dir(&self.root.join("layers"))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `.tmp-*` dirs belong to unpacks in progress (they hold the shared gc lock, not us).
            if !name.starts_with('.') && !keep_layers.contains(&name) {
                fs::remove_dir_all(entry.path()).map_err(Error::io("remove", entry.path()))?;
                freed += 1;
            }
        }
        for entry in read_dir(&self.root.join("blobs/sha256"))? {
            if !keep_blobs.contains(&*entry.file_name().to_string_lossy()) {
                fs::remove_file(entry.path()).map_err(Error::io("remove", entry.path()))?;
            }
        }
        Ok(freed)
    }

    /// Garbage collection, the kubelet's way: when the store's file system is
    /// fuller than `policy.high_percent`, delete images no container uses, least
    /// recently created first, until below `policy.low_percent`. Pinned images
    /// are never deleted. Returns the images removed; skips (empty) while a pull
    /// or container creation holds the store.
    pub fn gc(&self, policy: GcPolicy, in_use: &InUse) -> Result<Vec<ImageRef>> {
        let Some(_gc) = self.lock(
            "gc.lock",
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )?
        else {
            return Ok(Vec::new());
        };
        let usage = disk_usage(&self.root)?;
        let images = self.list()?;
        let sizes: BTreeMap<String, u64> = images
            .iter()
            .map(|r| (r.name.to_string(), r.size()))
            .collect();
        let victims = plan_gc(
            &images,
            &sizes,
            &in_use.images,
            usage,
            policy,
            jiff::Timestamp::now(),
        );
        if victims.is_empty() {
            return Ok(victims);
        }
        self.edit_index(|index| {
            for v in &victims {
                index.images.remove(&v.to_string());
            }
            Ok(())
        })?;
        self.sweep(in_use)?;
        Ok(victims)
    }
}

/// When image GC runs, where it stops and what it spares (the kubelet's
/// defaults: 85 / 80 percent, images younger than 2 minutes).
#[derive(Debug, Clone, Copy)]
pub struct GcPolicy {
    pub high_percent: u8,
    pub low_percent: u8,
    /// An image pulled or imported less than this long ago is never collected:
    /// it is about to be used (the kubelet's `--minimum-image-ttl-duration`).
    pub min_age: std::time::Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            high_percent: 85,
            low_percent: 80,
            min_age: std::time::Duration::from_secs(120),
        }
    }
}

/// Size and use of a file system, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct DiskUsage {
    pub total: u64,
    pub used: u64,
}

/// Reads the usage of the file system holding `path`.
pub fn disk_usage(path: &Path) -> Result<DiskUsage> {
    let st = rustix::fs::statvfs(path).map_err(|e| Error::io("statvfs", path)(e.into()))?;
    let total = st.f_blocks * st.f_frsize;
    let avail = st.f_bavail * st.f_frsize;
    Ok(DiskUsage {
        total,
        used: total.saturating_sub(avail),
    })
}

/// Chooses images to delete; pure, so it is unit-tested.
fn plan_gc(
    images: &[ImageRecord],
    sizes: &BTreeMap<String, u64>,
    in_use: &HashSet<String>,
    usage: DiskUsage,
    policy: GcPolicy,
    now: jiff::Timestamp,
) -> Vec<ImageRef> {
    if usage.total == 0 || usage.used * 100 <= usage.total * u64::from(policy.high_percent) {
        return Vec::new();
    }
    let target = usage.total * u64::from(policy.low_percent) / 100;
    let mut to_free = usage.used.saturating_sub(target);
    let young = |r: &ImageRecord| {
        // An unreadable time counts as old: it cannot hold an image forever.
        r.created_at
            .parse::<jiff::Timestamp>()
            .ok()
            .and_then(|t| now.duration_since(t).try_into().ok())
            .is_some_and(|age: std::time::Duration| age < policy.min_age)
    };
    let mut candidates: Vec<&ImageRecord> = images
        .iter()
        .filter(|r| !r.pinned && !in_use.contains(&r.name.to_string()) && !young(r))
        .collect();
    candidates.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    let mut victims = Vec::new();
    for r in candidates {
        if to_free == 0 {
            break;
        }
        to_free =
            to_free.saturating_sub(sizes.get(&r.name.to_string()).copied().unwrap_or(0).max(1));
        victims.push(r.name.clone());
    }
    victims
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    Ok(fs::read_dir(dir)
        .map_err(Error::io("read", dir))?
        .flatten()
        .collect())
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    crate::fsutil::write_atomic(path, data).map_err(Error::io("write", path))
}

/// Hashes what passes through.
pub(crate) struct HashingReader<R> {
    pub inner: R,
    pub hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, created: &str, pinned: bool, layer: u8) -> ImageRecord {
        let d = Digest::of(&[layer]);
        ImageRecord {
            name: name.parse().expect("name"),
            manifest: Digest::of(name.as_bytes()),
            config: Digest::of(created.as_bytes()),
            layers: vec![LayerRecord {
                digest: d.clone(),
                diff_id: d,
                media_type: String::new(),
                size: 100,
            }],
            pinned,
            created_at: created.into(),
        }
    }

    #[test]
    fn gc_deletes_oldest_unused_unpinned_until_below_low() {
        let images = vec![
            image("a", "2026-01-01T00:00:00Z", false, 1),
            image("b", "2026-01-02T00:00:00Z", false, 2),
            image("c", "2026-01-03T00:00:00Z", false, 3),
            image("pinned", "2025-01-01T00:00:00Z", true, 4),
            // Shares its layer with "a": a layer in use does not make another image in use.
            image("used", "2025-01-02T00:00:00Z", false, 1),
        ];
        let sizes: BTreeMap<String, u64> =
            images.iter().map(|r| (r.name.to_string(), 100)).collect();
        let in_use: HashSet<String> = ["used".parse::<ImageRef>().expect("ref").to_string()].into();
        let policy = GcPolicy::default();
        let now: jiff::Timestamp = "2026-01-03T00:01:00Z".parse().expect("time");
        let check_with = |policy: GcPolicy, used: u64, want: &[&str]| {
            let got = plan_gc(
                &images,
                &sizes,
                &in_use,
                DiskUsage { total: 1000, used },
                policy,
                now,
            );
            let got: Vec<String> = got.iter().map(ToString::to_string).collect();
            let want: Vec<String> = want
                .iter()
                .map(|n| n.parse::<ImageRef>().expect("ref").to_string())
                .collect();
            assert_eq!(got, want, "used {used}");
        };
        let check = |used, want: &[&str]| check_with(policy, used, want);
        check(850, &[]);
        check(860, &["a"]);
        check(950, &["a", "b"]);
        check(1000, &["a", "b"]);
        // Even aiming at 0%, the pinned image, the one a container uses and
        // "c", stored a minute ago (younger than the minimum age), stay.
        let everything = GcPolicy {
            high_percent: 1,
            low_percent: 0,
            ..policy
        };
        check_with(everything, 1000, &["a", "b"]);
        let no_min_age = GcPolicy {
            min_age: std::time::Duration::ZERO,
            ..everything
        };
        check_with(no_min_age, 1000, &["a", "b", "c"]);
    }

    #[test]
    fn blobs_are_verified_on_write_and_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let good = Digest::of(b"manifest");
        store.write_blob(&good, b"manifest").expect("write");
        assert_eq!(store.read_blob(&good).expect("read"), b"manifest");
        let err = store
            .write_blob(&Digest::of(b"other"), b"manifest")
            .expect_err("mismatch");
        assert!(err.to_string().contains("digest"), "{err}");
        assert_eq!(
            fs::read_dir(store.root().join("blobs/sha256"))
                .expect("dir")
                .count(),
            1
        );
        // Corrupt on disk: refused on read.
        fs::write(store.blob_path(&good), b"tampered").expect("tamper");
        assert!(store.read_blob(&good).is_err());
    }
}
