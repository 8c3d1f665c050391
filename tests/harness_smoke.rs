//! Tests of the harness itself: the parts other system tests stand on must work and must
//! clean up after themselves.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    http_get, http_request, require_root_and_tools, Compression, Entry, FaultProxy, ImageBuilder,
    Layer, Node, Registry, TestHost,
};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn netns_listed(name: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|line| line.split_whitespace().next() == Some(name))
}

/// Waits until `child` has exited (it was killed by someone else).
fn exited_within(child: &mut std::process::Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn test_host_is_isolated_and_leaves_no_netns() {
    let host = TestHost::new();
    let name = host.name().to_owned();
    assert!(netns_listed(&name), "{name} missing from `ip netns list`");

    // Only loopback inside, and it is up.
    let links = Command::new("ip")
        .args(["-n", &name, "-o", "link"])
        .output()
        .expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert_eq!(
        links.lines().count(),
        1,
        "links in a fresh test host: {links}"
    );
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");

    // A listener bound through run_in lives in the test host: reachable from inside,
    // not from the real host.
    let listener = host.run_in(|| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"));
    let addr = listener.local_addr().expect("listener address");
    assert!(
        host.run_in(|| TcpStream::connect(addr)).is_ok(),
        "cannot connect inside the host"
    );
    assert!(
        TcpStream::connect(addr).is_err(),
        "a listener inside the test host is reachable from the real host"
    );
    drop(listener);

    // Commands run in the namespace (and are killed when the host goes away).
    let mut sleeper = host
        .command("/bin/busybox")
        .args(["sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep in the test host");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !host.pids().contains(&(sleeper.id() as i32)) {
        assert!(
            Instant::now() < deadline,
            "sleep never showed in ip netns pids"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let clone = host.clone();
    drop(host);
    assert!(netns_listed(&name), "netns deleted while a clone is alive");
    drop(clone);
    assert!(!netns_listed(&name), "{name} survived its TestHost");
    assert!(!Path::new("/run/netns").join(&name).exists());
    assert!(
        exited_within(&mut sleeper, Duration::from_secs(5)),
        "process in the test host survived it"
    );
}

#[test]
fn push_and_fetch_through_the_fault_proxy() {
    require_root_and_tools(&["skopeo", "docker-registry"]);
    let host = TestHost::new();
    let registry = Registry::start(&host);
    let image = ImageBuilder::busybox()
        .layer(Layer::files(&[("etc/motd", "hello\n")]).compression(Compression::Zstd))
        .layer(Layer::files(&[("srv/plain.txt", "uncompressed\n")]).compression(Compression::None))
        .env("GREETING", "hi")
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["echo $GREETING"])
        .working_dir("/tmp")
        .user("65534")
        .multi_platform()
        .build();
    image.push(&host, &registry, "smoke/busybox:1");

    let proxy = FaultProxy::start(&host, &registry);
    let addr = proxy.addr();
    let catalog = http_get(&host, &addr, "/v2/_catalog");
    assert_eq!(catalog.status, 200, "{}", catalog.text());
    assert_eq!(
        catalog.json()["repositories"],
        serde_json::json!(["smoke/busybox"])
    );

    // Digests survived the push: skopeo recompressed nothing.
    let accept = format!("{OCI_INDEX}, {OCI_MANIFEST}");
    let index = http_request(
        &host,
        "GET",
        &addr,
        "/v2/smoke/busybox/manifests/1",
        &[("Accept", &accept)],
    );
    assert_eq!(index.status, 200, "{}", index.text());
    assert_eq!(index.header("Docker-Content-Digest"), Some(image.digest()));
    let index = index.json();
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(2));
    let platforms: Vec<&str> = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["platform"]["architecture"].as_str())
        .collect();
    assert!(
        platforms.contains(&"amd64") && platforms.contains(&"arm64"),
        "{platforms:?}"
    );

    let manifest_path = format!("/v2/smoke/busybox/manifests/{}", image.manifest_digest);
    let manifest = http_request(
        &host,
        "GET",
        &addr,
        &manifest_path,
        &[("Accept", OCI_MANIFEST)],
    );
    assert_eq!(manifest.status, 200, "{}", manifest.text());
    let manifest = manifest.json();
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["digest"].as_str())
        .collect();
    assert_eq!(layers, image.layer_digests);
    let media_types: Vec<&str> = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["mediaType"].as_str())
        .collect();
    assert_eq!(
        media_types,
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar",
        ]
    );
    assert_eq!(manifest["config"]["digest"], image.config_digest.as_str());

    let config_path = format!("/v2/smoke/busybox/blobs/{}", image.config_digest);
    let config = http_get(&host, &addr, &config_path).json();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    assert_eq!(config["config"]["User"], "65534");
    assert_eq!(config["config"]["WorkingDir"], "/tmp");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!(image.diff_ids)
    );

    // Range requests pass through.
    let blob_path = format!("/v2/smoke/busybox/blobs/{}", image.layer_digests[0]);
    let part = http_request(
        &host,
        "GET",
        &addr,
        &blob_path,
        &[("Range", "bytes=100-199")],
    );
    assert_eq!(part.status, 206, "{}", part.text());
    assert_eq!(part.body, image.blob(&image.layer_digests[0])[100..200]);

    let requests = proxy.requests();
    let seen: Vec<(&str, &str, u16)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.status))
        .collect();
    assert_eq!(
        seen,
        [
            ("GET", "/v2/_catalog", 200),
            ("GET", "/v2/smoke/busybox/manifests/1", 200),
            ("GET", manifest_path.as_str(), 200),
            ("GET", config_path.as_str(), 200),
            ("GET", blob_path.as_str(), 206),
        ]
    );
    assert_eq!(requests[4].range.as_deref(), Some("bytes=100-199"));
    assert!(requests.iter().all(|r| r.authorization.is_none()));
}

#[test]
fn fault_proxy_faults_and_auth() {
    require_root_and_tools(&["skopeo", "docker-registry"]);
    let host = TestHost::new();
    let registry = Registry::start(&host);
    let image = ImageBuilder::busybox().build();
    image.push(&host, &registry, "app:1");
    let proxy = FaultProxy::start(&host, &registry);
    let addr = proxy.addr();
    let manifest = "/v2/app/manifests/1";
    let get = |headers: &[(&str, &str)]| {
        http_request(
            &host,
            "GET",
            &addr,
            manifest,
            &[&[("Accept", OCI_MANIFEST)], headers].concat(),
        )
    };

    proxy.refuse_all();
    assert_eq!(get(&[]).status, 503);
    assert_eq!(proxy.requests().len(), 1, "refused requests are recorded");
    proxy.pass();
    proxy.clear_requests();
    assert!(proxy.requests().is_empty());

    proxy.require_basic("alice", "s3cret");
    let denied = get(&[]);
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.header("WWW-Authenticate"),
        Some(r#"Basic realm="test""#)
    );
    assert_eq!(
        get(&[("Authorization", "Basic YWxpY2U6d3Jvbmc=")]).status,
        401
    );
    let basic = "Basic YWxpY2U6czNjcmV0"; // alice:s3cret
    assert_eq!(get(&[("Authorization", basic)]).status, 200);

    proxy.require_bearer("alice", "s3cret");
    let challenged = get(&[]);
    assert_eq!(challenged.status, 401);
    assert_eq!(
        challenged.header("WWW-Authenticate"),
        Some(
            format!(
                r#"Bearer realm="http://{addr}/token",service="test-registry",scope="repository:app:pull""#
            )
            .as_str()
        )
    );
    let token_path = "/token?service=test-registry&scope=repository:app:pull";
    assert_eq!(http_get(&host, &addr, token_path).status, 401);
    let token = http_request(&host, "GET", &addr, token_path, &[("Authorization", basic)]);
    assert_eq!(token.status, 200, "{}", token.text());
    let token = token.json()["token"]
        .as_str()
        .expect("token field")
        .to_owned();
    assert_eq!(proxy.tokens(), [token.as_str()]);
    assert_eq!(
        get(&[("Authorization", basic)]).status,
        401,
        "basic is not a token"
    );
    let bearer = format!("Bearer {token}");
    let ok = get(&[("Authorization", &bearer)]);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        ok.header("Docker-Content-Digest"),
        Some(image.manifest_digest.as_str())
    );
    assert_eq!(
        proxy
            .requests()
            .last()
            .and_then(|r| r.authorization.clone()),
        Some(bearer)
    );

    proxy.require_bearer_anonymous();
    let token = http_get(&host, &addr, token_path).json()["token"]
        .as_str()
        .expect("anonymous token")
        .to_owned();
    assert_eq!(
        get(&[("Authorization", &format!("Bearer {token}"))]).status,
        200
    );
    proxy.pass();

    // A stalled blob: headers and the first bytes arrive, then nothing, connection open;
    // after resume the rest follows.
    let digest = &image.layer_digests[0];
    let blob = image.blob(digest);
    assert!(
        blob.len() > 100_000,
        "busybox layer is {} bytes",
        blob.len()
    );
    proxy.stall_blobs_after(1000);
    let port = proxy.port();
    host.run_in(|| {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to proxy");
        write!(
            stream,
            "GET /v2/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .expect("send");
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let body_start = loop {
            let n = stream.read(&mut buf).expect("read headers and first bytes");
            assert!(n > 0, "proxy closed a stalled connection");
            got.extend_from_slice(&buf[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                if got.len() >= end + 4 + 1000 {
                    break end + 4;
                }
            }
        };
        let head = String::from_utf8_lossy(&got[..body_start]).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", blob.len())),
            "{head}"
        );
        assert_eq!(
            got.len() - body_start,
            1000,
            "more than the allowed bytes arrived"
        );
        stream
            .set_read_timeout(Some(Duration::from_millis(700)))
            .expect("timeout");
        let err = stream
            .read(&mut buf)
            .expect_err("bytes arrived during a stall");
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{err}"
        );
        proxy.resume();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        while got.len() - body_start < blob.len() {
            let n = stream.read(&mut buf).expect("read after resume");
            assert!(n > 0, "proxy closed before the whole blob arrived");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got[body_start..] == blob[..],
            "blob corrupted through a stall"
        );
    });
}

#[test]
fn htpasswd_registry_requires_credentials() {
    require_root_and_tools(&["skopeo", "docker-registry"]);
    let host = TestHost::new();
    let registry = Registry::start_with_htpasswd(&host, "bob", "pw-bob");
    assert_eq!(http_get(&host, &registry.addr(), "/v2/").status, 401);
    let ok = http_request(
        &host,
        "GET",
        &registry.addr(),
        "/v2/",
        &[("Authorization", "Basic Ym9iOnB3LWJvYg==")], // bob:pw-bob
    );
    assert_eq!(ok.status, 200, "{}", registry.log());
    // push() passes the registry's credentials to skopeo.
    ImageBuilder::new()
        .layer(Layer::files(&[("a", "b")]))
        .build()
        .push(&host, &registry, "private:1");
}

#[test]
fn archives_hold_the_image() {
    require_root_and_tools(&["skopeo"]);
    let image = ImageBuilder::busybox().multi_platform().tag("v1").build();
    let dir = tempfile::tempdir().expect("temp dir");

    let oci = dir.path().join("oci.tar");
    image.oci_archive(&oci);
    let names = tar_names(&oci);
    assert!(names.iter().any(|n| n == "oci-layout"), "{names:?}");
    assert!(names.iter().any(|n| n == "index.json"), "{names:?}");
    let mut digests = vec![
        image.digest().to_owned(),
        image.manifest_digest.clone(),
        image.config_digest.clone(),
    ];
    digests.extend(image.platforms.iter().map(|(_, d)| d.clone()));
    digests.extend(image.layer_digests.iter().cloned());
    for digest in digests {
        let blob = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        assert!(names.contains(&blob), "{blob} missing from {names:?}");
    }

    let docker = dir.path().join("docker.tar");
    image.docker_archive(&docker, "example.com/smoke/busybox:v1");
    let manifest: serde_json::Value =
        serde_json::from_slice(&tar_file(&docker, "manifest.json")).expect("manifest.json");
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["example.com/smoke/busybox:v1"])
    );
    let names = tar_names(&docker);
    let config = manifest[0]["Config"].as_str().expect("Config");
    assert!(
        names.iter().any(|n| n == config),
        "{config} missing from {names:?}"
    );
    let layers = manifest[0]["Layers"].as_array().expect("Layers");
    assert_eq!(layers.len(), 1);
    let layer = tar_file(&docker, layers[0].as_str().expect("layer path"));
    let layer = if layer.starts_with(&[0x1f, 0x8b]) {
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&layer[..])
            .read_to_end(&mut tar)
            .expect("gunzip layer");
        tar
    } else {
        layer
    };
    let inside = tar_entries(&layer);
    assert!(inside.iter().any(|n| n == "bin/busybox"), "{inside:?}");
}

#[test]
fn hostile_layers_keep_raw_names() {
    let long = format!("{}/deep", "d".repeat(150));
    let layer = Layer::raw(vec![
        Entry::file("../../escape", "x"),
        Entry::file("/etc/abs", "y"),
        Entry::symlink("link", "/etc"),
        Entry::file("link/passwd", "through the link"),
        Entry::hardlink("hard", "../../../etc/shadow"),
        Entry::char_device("dev/evil", 1, 3).mode(0o666),
        Entry::fifo("fifo"),
        Entry::file(long.as_bytes(), "long"),
        Entry::symlink("longlink", long.as_bytes()),
        Entry::whiteout("/etc/gone"),
        Entry::opaque("/var/"),
        Entry::dir("tmp").mode(0o1777).owner(1, 2),
    ])
    .compression(Compression::None);
    let blob = layer.blob();
    assert_eq!(blob.digest, blob.diff_id, "uncompressed: blob is the tar");
    let mut archive = tar::Archive::new(&blob.bytes[..]);
    let got: Vec<(String, tar::EntryType, Option<String>)> = archive
        .entries()
        .expect("read back")
        .map(|e| {
            let e = e.expect("entry");
            let header = e.header();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                header.entry_type(),
                e.link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned()),
            )
        })
        .collect();
    use tar::EntryType::*;
    let want =
        |name: &str, kind, link: Option<&str>| (name.to_owned(), kind, link.map(String::from));
    assert_eq!(
        got,
        [
            want("../../escape", Regular, None),
            want("/etc/abs", Regular, None),
            want("link", Symlink, Some("/etc")),
            want("link/passwd", Regular, None),
            want("hard", Link, Some("../../../etc/shadow")),
            want("dev/evil", Char, None),
            want("fifo", Fifo, None),
            want(&long, Regular, None),
            want("longlink", Symlink, Some(&long)),
            want("etc/.wh.gone", Regular, None),
            want("var/.wh..wh..opq", Regular, None),
            want("tmp", Directory, None),
        ]
    );
    let mut archive = tar::Archive::new(&blob.bytes[..]);
    for entry in archive.entries().expect("read back") {
        let entry = entry.expect("entry");
        let header = entry.header();
        match &*entry.path_bytes() {
            b"dev/evil" => {
                assert_eq!(header.device_major().ok().flatten(), Some(1));
                assert_eq!(header.device_minor().ok().flatten(), Some(3));
            }
            b"tmp" => {
                assert_eq!(header.mode().ok(), Some(0o1777));
                assert_eq!((header.uid().ok(), header.gid().ok()), (Some(1), Some(2)));
            }
            _ => {}
        }
    }
    // Same layer, same digests: builds are reproducible.
    assert_eq!(
        Layer::busybox().blob().digest,
        Layer::busybox().blob().digest
    );
}

#[test]
fn node_waits_for_ready_and_kills_leftover_agents() {
    require_root_and_tools(&["python3"]);
    let node = Node::new();
    assert!(node.state_dir().is_dir() && node.run_dir().is_dir());
    assert!(node.name("web").starts_with(node.prefix()));

    let notify = "import os, socket, time\n\
                  s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
                  s.sendto(b'STATUS=starting\\nREADY=1', os.environ['NOTIFY_SOCKET'])\n\
                  print(os.environ['OUTPOST_STATE_DIR'], flush=True)\n\
                  time.sleep(600)\n";
    let mut fake = node.host.command("python3");
    fake.arg("-c")
        .arg(notify)
        .env("OUTPOST_STATE_DIR", node.state_dir());
    let agent = node.spawn_notifying(fake);
    assert_eq!(agent.notifications(), ["STATUS=starting", "READY=1"]);
    assert!(
        node.host.pids().contains(&agent.pid()),
        "agent not in the test host"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while agent.stdout().trim() != node.state_dir().to_string_lossy() {
        assert!(
            Instant::now() < deadline,
            "agent stdout: {:?}",
            agent.stdout()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = agent.stop();
    assert!(
        !status.success(),
        "SIGTERM should end the fake agent: {status}"
    );

    // An agent that dies before READY=1 fails the test with its stderr.
    let mut early = node.host.command("/bin/busybox");
    early.args(["sh", "-c", "echo boom >&2; exit 3"]);
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        node.spawn_notifying(early);
    }));
    let message = panic_text(failed.expect_err("spawn must fail"));
    assert!(
        message.contains("boom") && message.contains("exit status: 3"),
        "{message}"
    );
}

#[test]
fn node_drop_reports_and_removes_leaks() {
    let node = Node::new();
    let dir = node.dir().to_owned();
    // A leaked mount under the run dir, and a leaked cgroup holding a process.
    let mnt = node.run_dir().join("leaked-mount");
    std::fs::create_dir(&mnt).expect("mkdir");
    nix::mount::mount(
        Some("tmpfs"),
        &mnt,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("mount tmpfs");
    // The shared `outpost` parent stays: outpost itself may be using it concurrently.
    let parent = Path::new("/sys/fs/cgroup/pids/outpost");
    std::fs::create_dir_all(parent).expect("create pids/outpost");
    let cgroup = parent.join(node.name("leak"));
    std::fs::create_dir(&cgroup).expect("create leaked cgroup");
    let mut sleeper = Command::new("/bin/busybox")
        .args(["sleep", "600"])
        .spawn()
        .expect("spawn sleep");
    std::fs::write(cgroup.join("cgroup.procs"), sleeper.id().to_string())
        .expect("move sleep into the cgroup");

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(node)));
    let message = panic_text(result.expect_err("a leaky node must fail its test"));
    assert!(
        message.contains("mounts left") && message.contains("leaked-mount"),
        "{message}"
    );
    assert!(
        message.contains("cgroups left") && message.contains("-leak"),
        "{message}"
    );

    assert!(!cgroup.exists(), "leaked cgroup not removed");
    assert!(
        exited_within(&mut sleeper, Duration::from_secs(5)),
        "process in leaked cgroup survived"
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mountinfo.contains(dir.to_string_lossy().as_ref()),
        "mount survived"
    );
    assert!(!dir.exists(), "node dir not removed");
}

fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn tar_names(path: &Path) -> Vec<String> {
    tar_entries(&std::fs::read(path).expect("read archive"))
}

fn tar_entries(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .expect("tar entries")
        .map(|e| {
            let path = e.expect("tar entry").path_bytes().into_owned();
            String::from_utf8_lossy(&path)
                .trim_start_matches("./")
                .to_owned()
        })
        .collect()
}

fn tar_file(path: &Path, name: &str) -> Vec<u8> {
    let bytes = std::fs::read(path).expect("read archive");
    let mut archive = tar::Archive::new(&bytes[..]);
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        if String::from_utf8_lossy(&entry.path_bytes()).trim_start_matches("./") == name {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).expect("read tar entry");
            return content;
        }
    }
    panic!("{name} not in {}", path.display());
}
