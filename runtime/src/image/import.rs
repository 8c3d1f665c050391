//! Air-gap import of image tarballs: OCI archives (an OCI image layout in a tar,
//! as `skopeo copy … oci-archive:` or `buildah push` write) and docker archives
//! (`docker save`, `skopeo copy … docker-archive:`, k3s air-gap tarballs).
//!
//! The archive's files are copied once into a scratch dir in the store, every
//! blob is verified against its digest, layers are unpacked like pulled ones,
//! and the images are recorded. A bad archive is refused whole.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{ImageIndex, ImageManifest};
use serde::Deserialize;

use super::digest::Digest;
use super::pull::hash_file;
use super::reference::ImageRef;
use super::store::{ImageRecord, LayerRecord, Store, MAX_METADATA_BLOB};
use crate::error::{Error, Result};

/// Annotations that carry an image's name in OCI archives.
const NAME_ANNOTATIONS: &[&str] = &[
    "io.containerd.image.name",
    "org.opencontainers.image.ref.name",
];

/// Imports every image in the archive at `path`; `pinned` images are never
/// garbage-collected (the air-gap dir's). Returns the records written.
/// Blocking: call from `spawn_blocking` in async code.
pub fn import(store: &Store, path: &Path, pinned: bool) -> Result<Vec<ImageRecord>> {
    let _guard = store.use_guard()?;
    let scratch =
        store
            .root()
            .join("ingest")
            .join(format!("import-{}-{}", std::process::id(), unique()));
    fs::create_dir_all(&scratch).map_err(Error::io("create", &scratch))?;
    let result = Archive::extract(path, &scratch).and_then(|archive| archive.import(store, pinned));
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The regular files of an archive, copied out, by their normalised path.
struct Archive {
    path: PathBuf,
    files: HashMap<String, PathBuf>,
}

impl Archive {
    fn extract(path: &Path, scratch: &Path) -> Result<Archive> {
        let bad = |message: String| Error::Import {
            path: path.to_path_buf(),
            message,
        };
        let file = File::open(path).map_err(Error::io("open", path))?;
        let mut tar = tar::Archive::new(io::BufReader::new(file));
        let mut files = HashMap::new();
        let mut links = Vec::new();
        for (n, entry) in tar
            .entries()
            .map_err(|e| bad(format!("not a tar archive: {e}")))?
            .enumerate()
        {
            let mut entry = entry.map_err(|e| bad(format!("broken tar: {e}")))?;
            let name = normalise(&entry.path_bytes()).ok_or_else(|| {
                bad(format!(
                    "entry {:?} leaves the archive",
                    String::from_utf8_lossy(&entry.path_bytes())
                ))
            })?;
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dest = scratch.join(n.to_string());
                    let mut out = File::create(&dest).map_err(Error::io("create", &dest))?;
                    io::copy(&mut entry, &mut out).map_err(|e| bad(format!("read {name}: {e}")))?;
                    files.insert(name, dest);
                }
                // `docker save` links repeated layers to their first copy.
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        Path::new(&name)
                            .parent()
                            .map(Path::to_path_buf)
                            .unwrap_or_default()
                    } else {
                        PathBuf::new()
                    };
                    let target = resolve_link(&base, &target)
                        .ok_or_else(|| bad(format!("link {name} points outside the archive")))?;
                    links.push((name, target));
                }
                _ => {}
            }
        }
        for (name, target) in links {
            let resolved = files
                .get(&target)
                .cloned()
                .ok_or_else(|| bad(format!("link {name} points to missing {target}")))?;
            files.insert(name, resolved);
        }
        Ok(Archive {
            path: path.to_path_buf(),
            files,
        })
    }

    fn bad(&self, message: impl Into<String>) -> Error {
        Error::Import {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let path = self
            .files
            .get(name)
            .ok_or_else(|| self.bad(format!("{name} is missing")))?;
        let len = fs::metadata(path).map_err(Error::io("stat", path))?.len();
        if len > MAX_METADATA_BLOB {
            return Err(self.bad(format!("{name} is too large ({len} bytes) for metadata")));
        }
        fs::read(path).map_err(Error::io("read", path))
    }

    /// A blob of an OCI layout, verified against its digest.
    fn blob(&self, digest: &Digest) -> Result<&Path> {
        let name = format!("blobs/sha256/{}", digest.hex());
        let path = self
            .files
            .get(&name)
            .ok_or_else(|| self.bad(format!("blob {digest} is missing")))?;
        let actual = hash_file(path).map_err(Error::io("read", path))?;
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("{} in {}", name, self.path.display()),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(path)
    }

    fn import(&self, store: &Store, pinned: bool) -> Result<Vec<ImageRecord>> {
        if self.files.contains_key("index.json") {
            self.import_oci(store, pinned)
        } else if self.files.contains_key("manifest.json") {
            self.import_docker(store, pinned)
        } else {
            Err(self
                .bad("neither an OCI archive (index.json) nor a docker archive (manifest.json)"))
        }
    }

    fn import_oci(&self, store: &Store, pinned: bool) -> Result<Vec<ImageRecord>> {
        let index: ImageIndex = serde_json::from_slice(&self.read_small("index.json")?)
            .map_err(|e| self.bad(format!("index.json: {e}")))?;
        let mut records = Vec::new();
        for desc in index.manifests() {
            let annotations = desc.annotations().clone().unwrap_or_default();
            let name = NAME_ANNOTATIONS
                .iter()
                .filter_map(|k| annotations.get(*k))
                .find(|n| n.contains(['/', ':']))
                .ok_or_else(|| {
                    self.bad(format!(
                        "manifest {} has no image name (annotation {})",
                        desc.digest(),
                        NAME_ANNOTATIONS.join(" or ")
                    ))
                })?;
            let name: ImageRef = name.parse().map_err(|e| self.bad(format!("{e}")))?;
            let mut digest: Digest = desc
                .digest()
                .to_string()
                .parse()
                .map_err(|e| self.bad(format!("{e}")))?;
            let mut raw = fs::read(self.blob(&digest)?).map_err(Error::io("read", &self.path))?;
            if let Ok(nested) = serde_json::from_slice::<ImageIndex>(&raw) {
                if !nested.manifests().is_empty()
                    && serde_json::from_slice::<ImageManifest>(&raw).is_err()
                {
                    digest = pick_platform(&nested).map_err(|m| self.bad(m))?;
                    raw = fs::read(self.blob(&digest)?).map_err(Error::io("read", &self.path))?;
                }
            }
            let manifest: ImageManifest = serde_json::from_slice(&raw)
                .map_err(|e| self.bad(format!("manifest {digest}: {e}")))?;
            let config_digest: Digest = manifest
                .config()
                .digest()
                .to_string()
                .parse()
                .map_err(|e| self.bad(format!("{e}")))?;
            let config =
                fs::read(self.blob(&config_digest)?).map_err(Error::io("read", &self.path))?;
            let diff_ids = diff_ids(&config).map_err(|m| self.bad(m))?;
            if diff_ids.len() != manifest.layers().len() {
                return Err(self.bad(format!(
                    "manifest {digest} has {} layers, its config {} diff ids",
                    manifest.layers().len(),
                    diff_ids.len()
                )));
            }
            let mut layers = Vec::new();
            for (l, diff_id) in manifest.layers().iter().zip(diff_ids) {
                let layer = LayerRecord {
                    digest: l
                        .digest()
                        .to_string()
                        .parse()
                        .map_err(|e| self.bad(format!("{e}")))?,
                    diff_id,
                    media_type: l.media_type().to_string(),
                    size: l.size(),
                };
                if !store.has_layer(&layer.diff_id) {
                    store.unpack_blob(self.blob(&layer.digest)?, &layer, None)?;
                }
                layers.push(layer);
            }
            store.write_blob(&config_digest, &config)?;
            store.write_blob(&digest, &raw)?;
            records.push(commit(store, name, digest, config_digest, layers, pinned)?);
        }
        Ok(records)
    }

    fn import_docker(&self, store: &Store, pinned: bool) -> Result<Vec<ImageRecord>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let entries: Vec<Entry> = serde_json::from_slice(&self.read_small("manifest.json")?)
            .map_err(|e| self.bad(format!("manifest.json: {e}")))?;
        let mut records = Vec::new();
        for entry in entries {
            let tags = entry.repo_tags.unwrap_or_default();
            if tags.is_empty() {
                return Err(self.bad(format!(
                    "image {} has no RepoTags: nothing to call it",
                    entry.config
                )));
            }
            let config = self.read_small(&entry.config)?;
            let config_digest = Digest::of(&config);
            let diff_ids = diff_ids(&config).map_err(|m| self.bad(m))?;
            if diff_ids.len() != entry.layers.len() {
                return Err(self.bad(format!(
                    "image {} lists {} layers, its config {} diff ids",
                    tags[0],
                    entry.layers.len(),
                    diff_ids.len()
                )));
            }
            let mut layers = Vec::new();
            for (file, diff_id) in entry.layers.iter().zip(diff_ids) {
                let path = self
                    .files
                    .get(file)
                    .ok_or_else(|| self.bad(format!("layer {file} is missing")))?;
                let layer = LayerRecord {
                    digest: hash_file(path).map_err(Error::io("read", path))?,
                    diff_id,
                    // Usually an uncompressed tar; the unpacker sniffs gzip or zstd.
                    media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
                    size: fs::metadata(path).map_err(Error::io("stat", path))?.len(),
                };
                if !store.has_layer(&layer.diff_id) {
                    store.unpack_blob(path, &layer, None)?;
                }
                layers.push(layer);
            }
            // Record an OCI manifest for it, so every image in the store has one.
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
                "layers": layers.iter().map(|l| serde_json::json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l.digest.to_string(), "size": l.size,
                })).collect::<Vec<_>>(),
            });
            let raw = serde_json::to_vec(&manifest).map_err(|e| self.bad(e.to_string()))?;
            let digest = Digest::of(&raw);
            store.write_blob(&config_digest, &config)?;
            store.write_blob(&digest, &raw)?;
            for tag in tags {
                let name: ImageRef = tag.parse().map_err(|e| self.bad(format!("{e}")))?;
                records.push(commit(
                    store,
                    name,
                    digest.clone(),
                    config_digest.clone(),
                    layers.clone(),
                    pinned,
                )?);
            }
        }
        Ok(records)
    }
}

fn commit(
    store: &Store,
    name: ImageRef,
    manifest: Digest,
    config: Digest,
    layers: Vec<LayerRecord>,
    pinned: bool,
) -> Result<ImageRecord> {
    let record = ImageRecord {
        name,
        manifest,
        config,
        layers,
        pinned,
        created_at: jiff::Timestamp::now().to_string(),
    };
    store.commit(record.clone())?;
    Ok(record)
}

fn diff_ids(config: &[u8]) -> Result<Vec<Digest>, String> {
    let config: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(config).map_err(|e| format!("image config: {e}"))?;
    config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| d.parse().map_err(|e| format!("diff id: {e}")))
        .collect()
}

fn pick_platform(index: &ImageIndex) -> Result<Digest, String> {
    let (arch, _) = super::pull::host_platform();
    index
        .manifests()
        .iter()
        .find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == arch
            })
        })
        .ok_or_else(|| format!("no linux/{arch} image in the archive's index"))
        .and_then(|m| m.digest().to_string().parse().map_err(|e| format!("{e}")))
}

/// Resolves a link target inside the archive: `..` may climb within it but
/// never above its root; absolute targets are refused.
fn resolve_link(base: &Path, target: &[u8]) -> Option<String> {
    let target = std::str::from_utf8(target).ok()?;
    let mut parts: Vec<&str> = Vec::new();
    for c in base.components().chain(Path::new(target).components()) {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// `./a/b/` → `a/b`; `None` for absolute paths or `..`.
fn normalise(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut parts = Vec::new();
    for c in Path::new(text).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_stay_inside() {
        let check = |raw: &str, want: Option<&str>| {
            assert_eq!(normalise(raw.as_bytes()).as_deref(), want, "{raw}")
        };
        check("./blobs/sha256/ab", Some("blobs/sha256/ab"));
        check("index.json", Some("index.json"));
        check("abc/layer.tar", Some("abc/layer.tar"));
        check("../x", None);
        check("/etc/passwd", None);
        check("a/../../x", None);
    }

    #[test]
    fn links_resolve_within_the_archive() {
        let check = |base: &str, target: &str, want: Option<&str>| {
            assert_eq!(
                resolve_link(Path::new(base), target.as_bytes()).as_deref(),
                want,
                "{base} -> {target}"
            )
        };
        check("abc", "../def.tar", Some("def.tar"));
        check("abc", "layer.tar", Some("abc/layer.tar"));
        check("", "blobs/sha256/x", Some("blobs/sha256/x"));
        check("abc", "../../etc/passwd", None);
        check("abc", "/etc/passwd", None);
    }

    #[test]
    fn reads_nothing_useful_from_a_non_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let junk = dir.path().join("junk.tar");
        fs::write(&junk, vec![7u8; 4096]).expect("write");
        let err = import(&store, &junk, false).expect_err("junk");
        assert!(err.to_string().contains("junk.tar"), "{err}");
        // The scratch dir is gone.
        assert_eq!(
            fs::read_dir(store.root().join("ingest"))
                .expect("ingest")
                .count(),
            0
        );
    }
}
