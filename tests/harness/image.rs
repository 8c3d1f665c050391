//! OCI images built in Rust, without internet: [`Layer`]s of [`Entry`]s, an
//! [`ImageBuilder`] writing an OCI image layout, and [`Image`] to push or archive it.
//!
//! Tar headers are written byte by byte, so a layer can hold what a hostile image would
//! (`..` and absolute names, links out of the rootfs, device nodes): the `tar` crate's
//! path setters refuse those.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};
use sha2::{Digest as _, Sha256};

use super::host::run_ok;
use super::{require_root_and_tools, Registry, TestHost};

/// Applets linked to `/bin/busybox` in [`Layer::busybox`].
const BUSYBOX_APPLETS: &[&str] = &[
    "sh",
    "echo",
    "sleep",
    "true",
    "false",
    "cat",
    "dd",
    "head",
    "tail",
    "tr",
    "ls",
    "mkdir",
    "httpd",
    "wget",
    "nc",
    "env",
    "id",
    "hostname",
    "ps",
    "kill",
    "seq",
    "yes",
    "grep",
    "wc",
    "date",
    "touch",
    "rm",
    "test",
    "[",
    "printf",
    "uname",
    "sed",
    "awk",
    "stat",
    "cp",
    "mv",
    "ln",
    "chmod",
    "readlink",
    "pwd",
    "whoami",
    "sha256sum",
    "timeout",
    "nslookup",
    "ip",
    "mount",
    "umount",
    "xargs",
    "sort",
    "cut",
    "tee",
    "find",
    "nproc",
    "free",
];

/// Fixed timestamp for every entry and config, so the same layers give the same digests.
const EPOCH: u64 = 1_700_000_000;
const CREATED: &str = "2023-11-14T22:13:20Z";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// How a layer blob is compressed (and so its media type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `application/vnd.oci.image.layer.v1.tar`
    None,
    /// `application/vnd.oci.image.layer.v1.tar+gzip`
    Gzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd`
    Zstd,
}

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn media_type(self) -> MediaType {
        match self {
            Compression::None => MediaType::ImageLayer,
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
        }
    }

    fn compress(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => tar.to_vec(),
            Compression::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(tar).expect("gzip in memory");
                enc.finish().expect("gzip in memory")
            }
            Compression::Zstd => zstd::encode_all(tar, 3).expect("zstd in memory"),
        }
    }
}

/// What a tar entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file with this content.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symlink to this target (raw bytes).
    Symlink(Vec<u8>),
    /// A hard link to this earlier entry name (raw bytes).
    Hardlink(Vec<u8>),
    /// A character device (major, minor).
    CharDevice(u32, u32),
    /// A block device (major, minor).
    BlockDevice(u32, u32),
    /// A named pipe.
    Fifo,
}

/// One tar entry; the name and link target are raw bytes, written as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Name in the tar, e.g. `bin/sh`, `../escape` or `/etc/x`.
    pub name: Vec<u8>,
    /// Type and payload.
    pub kind: EntryKind,
    /// Permission bits (with setuid/setgid/sticky).
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
}

impl Entry {
    fn new(name: impl AsRef<[u8]>, kind: EntryKind, mode: u32) -> Entry {
        Entry {
            name: name.as_ref().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
        }
    }

    /// A regular file, mode 0644.
    pub fn file(name: impl AsRef<[u8]>, content: impl AsRef<[u8]>) -> Entry {
        Entry::new(name, EntryKind::File(content.as_ref().to_vec()), 0o644)
    }

    /// A directory, mode 0755.
    pub fn dir(name: impl AsRef<[u8]>) -> Entry {
        Entry::new(name, EntryKind::Dir, 0o755)
    }

    /// A symlink `name -> target`.
    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
        Entry::new(name, EntryKind::Symlink(target.as_ref().to_vec()), 0o777)
    }

    /// A hard link `name` to `target` (an entry name, or any hostile path).
    pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
        Entry::new(name, EntryKind::Hardlink(target.as_ref().to_vec()), 0o644)
    }

    /// A character device node, mode 0666.
    pub fn char_device(name: impl AsRef<[u8]>, major: u32, minor: u32) -> Entry {
        Entry::new(name, EntryKind::CharDevice(major, minor), 0o666)
    }

    /// A block device node, mode 0660.
    pub fn block_device(name: impl AsRef<[u8]>, major: u32, minor: u32) -> Entry {
        Entry::new(name, EntryKind::BlockDevice(major, minor), 0o660)
    }

    /// A named pipe, mode 0644.
    pub fn fifo(name: impl AsRef<[u8]>) -> Entry {
        Entry::new(name, EntryKind::Fifo, 0o644)
    }

    /// An OCI whiteout deleting `path` from lower layers (`dir/.wh.name`).
    pub fn whiteout(path: &str) -> Entry {
        let path = path.trim_start_matches('/');
        let (dir, base) = path.rsplit_once('/').map_or(("", path), |(d, b)| (d, b));
        let name = if dir.is_empty() {
            format!(".wh.{base}")
        } else {
            format!("{dir}/.wh.{base}")
        };
        Entry::file(name, "")
    }

    /// An OCI opaque-directory marker hiding everything lower layers put in `dir`.
    pub fn opaque(dir: &str) -> Entry {
        let dir = dir.trim_matches('/');
        Entry::file(format!("{dir}/.wh..wh..opq"), "")
    }

    /// The same entry with other permission bits.
    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }

    /// The same entry with another owner.
    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

/// A layer: tar entries in order, and how the blob is compressed (gzip by default).
#[derive(Clone, Debug)]
pub struct Layer {
    /// The entries, written in this order.
    pub entries: Vec<Entry>,
    /// Blob compression.
    pub compression: Compression,
}

/// A layer as stored: the (compressed) blob and its two digests.
#[derive(Clone, Debug)]
pub struct LayerBlob {
    /// The blob bytes.
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of the blob (the manifest's layer digest).
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
    /// The layer media type.
    pub media_type: MediaType,
}

impl Layer {
    /// A layer of exactly these entries (hostile names allowed), gzip.
    pub fn raw(entries: Vec<Entry>) -> Layer {
        Layer {
            entries,
            compression: Compression::Gzip,
        }
    }

    /// The host's static `/bin/busybox` with applet symlinks in `/bin`, `/etc/passwd`
    /// (root, nobody 65534), `/etc/group`, `/tmp` (1777) and empty mount points.
    pub fn busybox() -> Layer {
        require_root_and_tools(&["/bin/busybox"]);
        let busybox = std::fs::read("/bin/busybox").expect("read /bin/busybox");
        let mut entries = vec![
            Entry::dir("bin"),
            Entry::dir("dev"),
            Entry::dir("etc"),
            Entry::dir("proc"),
            Entry::dir("root").mode(0o700),
            Entry::dir("sys"),
            Entry::dir("tmp").mode(0o1777),
            Entry::dir("var"),
            Entry::file("bin/busybox", busybox).mode(0o755),
        ];
        entries.extend(
            BUSYBOX_APPLETS
                .iter()
                .map(|applet| Entry::symlink(format!("bin/{applet}"), "busybox")),
        );
        entries.push(Entry::file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ));
        entries.push(Entry::file("etc/group", "root:x:0:\nnobody:x:65534:\n"));
        Layer::raw(entries)
    }

    /// Regular files (mode 0644) at these paths (leading `/` dropped), gzip.
    pub fn files<P: AsRef<str>, C: AsRef<[u8]>>(files: &[(P, C)]) -> Layer {
        Layer::raw(
            files
                .iter()
                .map(|(path, content)| Entry::file(path.as_ref().trim_start_matches('/'), content))
                .collect(),
        )
    }

    /// The same layer with one more entry at the end.
    pub fn with(mut self, entry: Entry) -> Layer {
        self.entries.push(entry);
        self
    }

    /// The same layer with another blob compression.
    pub fn compression(mut self, compression: Compression) -> Layer {
        self.compression = compression;
        self
    }

    /// The uncompressed tar stream.
    pub fn tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            append_entry(&mut builder, entry).expect("write tar entry in memory");
        }
        builder.into_inner().expect("finish tar in memory")
    }

    /// The blob as it goes into a registry.
    pub fn blob(&self) -> LayerBlob {
        let tar = self.tar();
        let bytes = self.compression.compress(&tar);
        LayerBlob {
            digest: sha256_digest(&bytes),
            diff_id: sha256_digest(&tar),
            bytes,
            media_type: self.compression.media_type(),
        }
    }
}

/// Writes one entry with raw header bytes (GNU long-name records for names over 100 bytes).
fn append_entry(builder: &mut tar::Builder<Vec<u8>>, entry: &Entry) -> std::io::Result<()> {
    let (entry_type, data, link): (tar::EntryType, &[u8], Option<&[u8]>) = match &entry.kind {
        EntryKind::File(content) => (tar::EntryType::Regular, content, None),
        EntryKind::Dir => (tar::EntryType::Directory, &[], None),
        EntryKind::Symlink(target) => (tar::EntryType::Symlink, &[], Some(target)),
        EntryKind::Hardlink(target) => (tar::EntryType::Link, &[], Some(target)),
        EntryKind::CharDevice(..) => (tar::EntryType::Char, &[], None),
        EntryKind::BlockDevice(..) => (tar::EntryType::Block, &[], None),
        EntryKind::Fifo => (tar::EntryType::Fifo, &[], None),
    };
    if entry.name.len() > 100 {
        append_long(builder, tar::EntryType::GNULongName, &entry.name)?;
    }
    if let Some(link) = link.filter(|l| l.len() > 100) {
        append_long(builder, tar::EntryType::GNULongLink, link)?;
    }
    let mut header = tar::Header::new_gnu();
    let n = entry.name.len().min(100);
    header.as_old_mut().name[..n].copy_from_slice(&entry.name[..n]);
    if let Some(link) = link {
        let n = link.len().min(100);
        header.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
    }
    header.set_entry_type(entry_type);
    header.set_mode(entry.mode);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(EPOCH);
    header.set_size(data.len() as u64);
    if let EntryKind::CharDevice(major, minor) | EntryKind::BlockDevice(major, minor) = entry.kind {
        header.set_device_major(major)?;
        header.set_device_minor(minor)?;
    }
    header.set_cksum();
    builder.append(&header, data)
}

/// A GNU `././@LongLink` record carrying a long name (`L`) or link target (`K`).
fn append_long(
    builder: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    value: &[u8],
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    let name = b"././@LongLink";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_mtime(0);
    let mut data = value.to_vec();
    data.push(0);
    header.set_size(data.len() as u64);
    header.set_cksum();
    builder.append(&header, &data[..])
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Describes an image: layers and config; [`ImageBuilder::build`] writes the OCI layout.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    layers: Vec<Layer>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Vec<String>,
    user: Option<String>,
    working_dir: Option<String>,
    multi_platform: bool,
    tag: String,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder::new()
    }
}

impl ImageBuilder {
    /// An image with no layers and an empty config, tagged `latest` in its layout.
    pub fn new() -> ImageBuilder {
        ImageBuilder {
            layers: Vec::new(),
            entrypoint: None,
            cmd: None,
            env: Vec::new(),
            user: None,
            working_dir: None,
            multi_platform: false,
            tag: "latest".to_owned(),
        }
    }

    /// [`Layer::busybox`] with `PATH` set and `Cmd ["sh"]`.
    pub fn busybox() -> ImageBuilder {
        ImageBuilder::new()
            .layer(Layer::busybox())
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .cmd(&["sh"])
    }

    /// Adds a layer on top.
    pub fn layer(mut self, layer: Layer) -> ImageBuilder {
        self.layers.push(layer);
        self
    }

    /// Sets `Entrypoint`.
    pub fn entrypoint(mut self, args: &[&str]) -> ImageBuilder {
        self.entrypoint = Some(args.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Sets `Cmd`.
    pub fn cmd(mut self, args: &[&str]) -> ImageBuilder {
        self.cmd = Some(args.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Adds (or replaces) `KEY=VALUE` in `Env`.
    pub fn env(mut self, key: &str, value: &str) -> ImageBuilder {
        let prefix = format!("{key}=");
        self.env.retain(|e| !e.starts_with(&prefix));
        self.env.push(format!("{key}={value}"));
        self
    }

    /// Sets `User` (`name`, `uid`, or `uid:gid`).
    pub fn user(mut self, user: &str) -> ImageBuilder {
        self.user = Some(user.to_owned());
        self
    }

    /// Sets `WorkingDir`.
    pub fn working_dir(mut self, dir: &str) -> ImageBuilder {
        self.working_dir = Some(dir.to_owned());
        self
    }

    /// Makes the image an index of two: this image for the host's architecture plus a
    /// dummy one (one text file) for the other of linux/amd64 and linux/arm64.
    pub fn multi_platform(mut self) -> ImageBuilder {
        self.multi_platform = true;
        self
    }

    /// The tag (`org.opencontainers.image.ref.name`) inside the layout; default `latest`.
    pub fn tag(mut self, tag: &str) -> ImageBuilder {
        self.tag = tag.to_owned();
        self
    }

    /// Writes the OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) into a
    /// fresh temp dir.
    pub fn build(&self) -> Image {
        let dir = tempfile::Builder::new()
            .prefix("outpost-image-")
            .tempdir()
            .expect("create image temp dir");
        let layout = dir.path().join("layout");
        std::fs::create_dir_all(layout.join("blobs/sha256")).expect("create layout dirs");
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("write oci-layout");

        let (host_arch, other_arch) = match std::env::consts::ARCH {
            "aarch64" => (Arch::ARM64, Arch::Amd64),
            _ => (Arch::Amd64, Arch::ARM64),
        };
        let main = write_image(&layout, self, host_arch.clone());
        let (top, index_digest, platforms) = if self.multi_platform {
            let dummy = ImageBuilder::new()
                .layer(Layer::files(&[(
                    "hello.txt",
                    format!("dummy {other_arch} image\n"),
                )]))
                .cmd(&["/hello.txt"]);
            let other = write_image(&layout, &dummy, other_arch.clone());
            let with_platform = |mut desc: Descriptor, arch: Arch| {
                let platform = PlatformBuilder::default()
                    .architecture(arch)
                    .os(Os::Linux)
                    .build()
                    .expect("valid platform");
                desc.set_platform(Some(platform));
                desc
            };
            let index = ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(vec![
                    with_platform(main.manifest.clone(), host_arch.clone()),
                    with_platform(other.manifest.clone(), other_arch.clone()),
                ])
                .build()
                .expect("valid image index");
            let bytes = serde_json::to_vec(&index).expect("serialize index");
            let desc = write_blob(&layout, MediaType::ImageIndex, &bytes);
            let digest = desc.digest().to_string();
            (
                desc,
                Some(digest),
                vec![
                    (host_arch.to_string(), main.manifest.digest().to_string()),
                    (other_arch.to_string(), other.manifest.digest().to_string()),
                ],
            )
        } else {
            (
                main.manifest.clone(),
                None,
                vec![(host_arch.to_string(), main.manifest.digest().to_string())],
            )
        };
        let mut top = top;
        top.set_annotations(Some(HashMap::from([(
            REF_NAME.to_owned(),
            self.tag.clone(),
        )])));
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![top])
            .build()
            .expect("valid index.json");
        std::fs::write(
            layout.join("index.json"),
            serde_json::to_vec(&index).expect("serialize index.json"),
        )
        .expect("write index.json");

        Image {
            _dir: dir,
            layout,
            tag: self.tag.clone(),
            manifest_digest: main.manifest.digest().to_string(),
            config_digest: main.config_digest,
            layer_digests: main.layers.iter().map(|l| l.digest.clone()).collect(),
            diff_ids: main.layers.iter().map(|l| l.diff_id.clone()).collect(),
            index_digest,
            platforms,
        }
    }
}

struct Written {
    manifest: Descriptor,
    config_digest: String,
    layers: Vec<LayerBlob>,
}

/// Writes one image's layers, config and manifest as blobs.
fn write_image(layout: &Path, spec: &ImageBuilder, arch: Arch) -> Written {
    let layers: Vec<LayerBlob> = spec.layers.iter().map(Layer::blob).collect();
    let layer_descs: Vec<Descriptor> = layers
        .iter()
        .map(|l| write_blob(layout, l.media_type.clone(), &l.bytes))
        .collect();

    let mut config = ConfigBuilder::default();
    if !spec.env.is_empty() {
        config = config.env(spec.env.clone());
    }
    if let Some(entrypoint) = &spec.entrypoint {
        config = config.entrypoint(entrypoint.clone());
    }
    if let Some(cmd) = &spec.cmd {
        config = config.cmd(cmd.clone());
    }
    if let Some(user) = &spec.user {
        config = config.user(user.clone());
    }
    if let Some(dir) = &spec.working_dir {
        config = config.working_dir(dir.clone());
    }
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>())
        .build()
        .expect("valid rootfs");
    let image_config = ImageConfigurationBuilder::default()
        .created(CREATED)
        .architecture(arch)
        .os(Os::Linux)
        .config(config.build().expect("valid image config"))
        .rootfs(rootfs)
        .build()
        .expect("valid image configuration");
    let config_bytes = serde_json::to_vec(&image_config).expect("serialize config");
    let config_desc = write_blob(layout, MediaType::ImageConfig, &config_bytes);

    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc.clone())
        .layers(layer_descs)
        .build()
        .expect("valid manifest");
    let manifest_bytes = serde_json::to_vec(&manifest).expect("serialize manifest");
    Written {
        manifest: write_blob(layout, MediaType::ImageManifest, &manifest_bytes),
        config_digest: config_desc.digest().to_string(),
        layers,
    }
}

/// Stores a blob under `blobs/sha256/` and returns its descriptor.
fn write_blob(layout: &Path, media_type: MediaType, bytes: &[u8]) -> Descriptor {
    let digest = sha256_digest(bytes);
    let hex = digest.trim_start_matches("sha256:");
    std::fs::write(layout.join("blobs/sha256").join(hex), bytes).expect("write blob");
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(
            digest
                .parse::<oci_spec::image::Digest>()
                .expect("valid digest"),
        )
        .size(bytes.len() as u64)
        .build()
        .expect("valid descriptor")
}

/// A built image: an OCI layout on disk (removed on drop) and its digests.
#[derive(Debug)]
pub struct Image {
    _dir: tempfile::TempDir,
    layout: PathBuf,
    tag: String,
    /// Manifest digest of the host-architecture image.
    pub manifest_digest: String,
    /// Config digest (the image ID) of the host-architecture image.
    pub config_digest: String,
    /// Layer blob digests of the host-architecture image, bottom first.
    pub layer_digests: Vec<String>,
    /// Uncompressed layer digests (diff_ids), bottom first.
    pub diff_ids: Vec<String>,
    /// Digest of the image index, for a multi-platform image.
    pub index_digest: Option<String>,
    /// `(architecture, manifest digest)` for each platform, host first.
    pub platforms: Vec<(String, String)>,
}

impl Image {
    /// The OCI layout directory.
    pub fn layout(&self) -> &Path {
        &self.layout
    }

    /// The tag inside the layout.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The digest a pull by tag resolves to: the index for multi-platform images, else
    /// the manifest.
    pub fn digest(&self) -> &str {
        self.index_digest
            .as_deref()
            .unwrap_or(&self.manifest_digest)
    }

    /// A blob of the layout by digest.
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.trim_start_matches("sha256:");
        std::fs::read(self.layout.join("blobs/sha256").join(hex)).expect("read blob")
    }

    /// `oci:<layout>:<tag>`, skopeo's name for the layout.
    fn skopeo_source(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.tag)
    }

    /// Pushes every platform to `registry` as `name_tag` (e.g. `busybox:1`) with skopeo,
    /// from inside `host`, keeping digests (`--preserve-digests`: skopeo fails rather
    /// than recompress a layer).
    pub fn push(&self, host: &TestHost, registry: &Registry, name_tag: &str) {
        require_root_and_tools(&["skopeo", "nsenter"]);
        let mut cmd = host.command("skopeo");
        cmd.args([
            "copy",
            "--insecure-policy",
            "--all",
            "--preserve-digests",
            "--retry-times",
            "0",
            "--dest-tls-verify=false",
        ]);
        match registry.credentials() {
            Some((user, pass)) => cmd.arg(format!("--dest-creds={user}:{pass}")),
            None => cmd.arg("--dest-no-creds"),
        };
        cmd.arg(self.skopeo_source())
            .arg(format!("docker://{}/{name_tag}", registry.addr()))
            .env("HOME", self._dir.path());
        run_ok(&mut cmd);
    }

    /// Writes an `oci-archive` tarball (every platform, digests kept) tagged `tag`.
    pub fn oci_archive(&self, path: &Path) {
        require_root_and_tools(&["skopeo"]);
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--insecure-policy", "--all", "--preserve-digests"])
                .arg(self.skopeo_source())
                .arg(format!("oci-archive:{}:{}", path.display(), self.tag))
                .env("HOME", self._dir.path()),
        );
    }

    /// Writes a `docker save`-style `docker-archive` tarball of the host-platform image,
    /// tagged `name_tag` (e.g. `example.com/app:1`; skopeo normalizes a name without a
    /// registry host to `docker.io/...` in `RepoTags`). Layers are stored uncompressed
    /// (`<diff_id hex>.tar`), the config blob keeps its digest; an image with a zstd
    /// layer cannot be written (skopeo refuses).
    pub fn docker_archive(&self, path: &Path, name_tag: &str) {
        require_root_and_tools(&["skopeo"]);
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--insecure-policy"])
                .arg(self.skopeo_source())
                .arg(format!("docker-archive:{}:{name_tag}", path.display()))
                .env("HOME", self._dir.path()),
        );
    }
}
