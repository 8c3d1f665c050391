//! System-test harness: isolated test hosts, outpost nodes, registries, images and a
//! fault-injecting proxy.
//!
//! Every test builds its own world from these parts:
//! - [`TestHost`]: a fresh network namespace; everything a test runs lives in one, so
//!   nothing can leave through the real host network (only 127.0.0.0/8 inside it).
//! - [`Node`]: one outpost installation (state and run dirs) driven through the CLI,
//!   verified clean in `Drop` (no mount, no cgroup left behind).
//! - [`Registry`]: a real `docker-registry` on `127.0.0.1:<port>` inside a test host.
//! - [`ImageBuilder`] / [`Layer`]: OCI images built in Rust from the host's static busybox
//!   (or hostile hand-made tar entries), pushed with skopeo or written as archives.
//! - [`FaultProxy`]: an in-process reverse proxy in front of a registry that records
//!   requests and injects faults (stalls, auth challenges, refusals).
//!
//! Name containers with [`Node::name`] (the node's unique prefix): `Drop` finds leaked
//! cgroups by it. Registries and proxies hold a clone of their [`TestHost`], so drop order
//! does not matter; the namespace goes when the last holder does.
//!
//! A test that cannot run (not root, a tool missing) panics with the reason: it never
//! passes silently.
//!
//! ```ignore
//! let node = Node::new();
//! let registry = Registry::start(&node.host);
//! let image = ImageBuilder::busybox().build();
//! image.push(&node.host, &registry, "busybox:1");
//! node.ok(&["images", "pull", &format!("{}/busybox:1", registry.addr())]);
//! ```

// The harness is a library for many test modules; not every module uses every helper.
#![allow(dead_code)]

mod host;
mod http;
mod image;
mod node;
mod proxy;
mod registry;
mod upstream;

// Re-exported for test modules; not every one is used yet.
#[allow(unused_imports)]
pub use {
    host::TestHost,
    http::{http_get, http_request, try_http_request, HttpResponse},
    image::{sha256_digest, Compression, Entry, EntryKind, Image, ImageBuilder, Layer, LayerBlob},
    node::{Agent, Node},
    proxy::{FaultProxy, RecordedRequest},
    registry::Registry,
    upstream::Upstream,
};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The `--source` URL of a manifests directory.
pub fn file_source(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// Path of the `outpost` binary under test.
pub const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

/// The Debian package that provides each tool the harness knows about, for error messages.
const TOOL_PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("nft", "nftables"),
    ("runc", "runc"),
    ("crun", "crun"),
    ("kdig", "knot-dnsutils"),
    ("dnsperf", "dnsperf"),
    ("/bin/busybox", "busybox-static"),
];

/// Panics with a clear message unless the test runs as root and every tool is present.
///
/// A tool is a program name looked up on `PATH` or an absolute path.
pub fn require_root_and_tools(tools: &[&str]) {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "system tests need root (running as uid {euid}): run them with sudo or as root"
    );
    let missing: Vec<String> = tools
        .iter()
        .filter(|tool| find_tool(tool).is_none())
        .map(|tool| {
            let package = TOOL_PACKAGES
                .iter()
                .find(|(name, _)| name == tool)
                .map_or("?", |(_, package)| package);
            format!("{tool} (Debian package {package})")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "system test cannot run: missing tools: {}; install them with apt-get",
        missing.join(", ")
    );
}

/// Finds an executable by absolute path or on `PATH`.
fn find_tool(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if tool.contains('/') {
        let path = PathBuf::from(tool);
        return is_exec(&path).then_some(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| is_exec(p))
}

/// A name unique in this test process and across concurrent test processes:
/// `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Reads a file that a test's child wrote, lossily, for failure messages.
fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}
