//! The image store through the real binary, against a real docker-registry:
//! pulls (compressions, indexes, mirrors, auth, stalls), hostile and corrupt
//! content, air-gap import and GC.

use std::path::Path;
use std::time::Duration;

use crate::harness::{
    file_source, Compression, Entry, FaultProxy, ImageBuilder, Layer, Node, Registry,
};

/// A node and a registry inside its test host.
fn node_and_registry() -> (Node, Registry) {
    let node = Node::new();
    let registry = Registry::start(&node.host);
    (node, registry)
}

fn run_output(node: &Node, image: &str, command: &[&str]) -> String {
    let name = node.name("run");
    let mut args = vec![
        "ctr", "run", "--rm", "--pull", "never", "--name", &name, image, "--",
    ];
    args.extend_from_slice(command);
    node.ok(&args)
}

fn blob_gets(proxy: &FaultProxy) -> Vec<String> {
    proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/"))
        .map(|r| r.path)
        .collect()
}

#[test]
fn pull_from_a_loopback_registry_and_run() {
    let (node, registry) = node_and_registry();
    ImageBuilder::busybox()
        .build()
        .push(&node.host, &registry, "busybox:1");
    let image = format!("{}/busybox:1", registry.addr());
    let pull = node.outpost(&["images", "pull", &image]);
    assert!(pull.status.success());
    let out = String::from_utf8_lossy(&pull.stdout);
    assert!(out.starts_with(&format!("{image} sha256:")), "{out}");
    // Not a terminal: progress comes as plain lines, not a bar.
    let progress = String::from_utf8_lossy(&pull.stderr);
    assert!(
        progress
            .lines()
            .any(|l| l.starts_with(&format!("pulling {image}: "))
                && l.contains("0 of 1 layers cached")),
        "{progress}"
    );
    let ls = node.ok(&["images", "ls"]);
    assert!(
        ls.contains(&format!("{}/busybox", registry.addr())) && ls.contains(" 1 "),
        "{ls}"
    );

    let name = node.name("hi");
    let out = node.outpost(&[
        "ctr",
        "run",
        "--name",
        &name,
        &image,
        "--",
        "sh",
        "-c",
        "echo hi; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(node.ok(&["ctr", "logs", &name]), "hi\n");
}

#[test]
fn every_layer_compression_and_a_platform_index() {
    let (node, registry) = node_and_registry();
    ImageBuilder::busybox()
        .layer(Layer::files(&[("a", "plain\n")]).compression(Compression::None))
        .layer(Layer::files(&[("b", "gzip\n")]).compression(Compression::Gzip))
        .layer(Layer::files(&[("c", "zstd\n")]).compression(Compression::Zstd))
        .multi_platform()
        .build()
        .push(&node.host, &registry, "mixed:1");
    let image = format!("{}/mixed:1", registry.addr());
    node.ok(&["images", "pull", &image]);
    assert_eq!(
        run_output(&node, &image, &["cat", "/a", "/b", "/c"]),
        "plain\ngzip\nzstd\n"
    );
}

#[test]
fn present_layers_are_never_fetched_again() {
    let (node, registry) = node_and_registry();
    let proxy = FaultProxy::start(&node.host, &registry);
    let base = ImageBuilder::busybox().build();
    base.push(&node.host, &registry, "base:1");
    let derived = ImageBuilder::busybox()
        .layer(Layer::files(&[("extra", "x")]))
        .build();
    derived.push(&node.host, &registry, "derived:1");

    node.ok(&["images", "pull", &format!("{}/base:1", proxy.addr())]);
    proxy.clear_requests();
    node.ok(&["images", "pull", &format!("{}/derived:1", proxy.addr())]);
    let gets = blob_gets(&proxy);
    let busybox_layer = base.layer_digests[0].clone();
    assert!(
        !gets.iter().any(|p| p.ends_with(&busybox_layer)),
        "shared layer fetched again: {gets:?}"
    );
    assert!(
        gets.iter().any(|p| p.ends_with(&derived.layer_digests[1])),
        "{gets:?}"
    );

    // Pulling the same image again fetches no blob at all.
    proxy.clear_requests();
    node.ok(&["images", "pull", &format!("{}/derived:1", proxy.addr())]);
    assert_eq!(blob_gets(&proxy), Vec::<String>::new());
}

#[test]
fn mirror_only_never_touches_the_upstream() {
    let node = Node::new();
    let upstream_registry = Registry::start(&node.host);
    let upstream = FaultProxy::start(&node.host, &upstream_registry);
    upstream.refuse_all();
    let mirror_registry = Registry::start(&node.host);
    let mirror = FaultProxy::start(&node.host, &mirror_registry);
    ImageBuilder::busybox()
        .build()
        .push(&node.host, &mirror_registry, "app:1");

    node.registries_yaml(&format!(
        "mirrors:\n  \"{up}\":\n    endpoint: [\"http://{mirror}\"]\n    mirrorOnly: true\n",
        up = upstream.addr(),
        mirror = mirror.addr()
    ));
    let image = format!("{}/app:1", upstream.addr());
    node.ok(&["images", "pull", &image]);
    assert!(
        !mirror.requests().is_empty(),
        "the pull went through the mirror"
    );
    assert_eq!(
        upstream.requests(),
        vec![],
        "mirror-only touched the upstream"
    );

    // The mirror failing does not make it fall back either.
    mirror.refuse_all();
    let err = node.fails(&[
        "images",
        "pull",
        "--timeout",
        "20s",
        &format!("{}/app:2", upstream.addr()),
    ]);
    assert!(err.contains(&mirror.addr()), "{err}");
    assert_eq!(upstream.requests(), vec![]);

    // Without mirrorOnly the upstream is the fallback (positive control).
    upstream.pass();
    ImageBuilder::busybox()
        .build()
        .push(&node.host, &upstream_registry, "app:3");
    node.registries_yaml(&format!(
        "mirrors:\n  \"{up}\":\n    endpoint: [\"http://{mirror}\"]\n",
        up = upstream.addr(),
        mirror = mirror.addr()
    ));
    node.ok(&[
        "images",
        "pull",
        "--timeout",
        "20s",
        &format!("{}/app:3", upstream.addr()),
    ]);
    assert!(!upstream.requests().is_empty());
}

#[test]
fn a_stalled_blob_fails_by_the_deadline_and_the_retry_resumes() {
    let (node, registry) = node_and_registry();
    let proxy = FaultProxy::start(&node.host, &registry);
    // 4 MiB of incompressible bytes in an uncompressed layer.
    let mut noise = vec![0u8; 4 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let image = ImageBuilder::busybox()
        .layer(Layer::files(&[("noise", noise.as_slice())]).compression(Compression::None))
        .build();
    image.push(&node.host, &registry, "big:1");
    let big_layer = image.layer_digests[1].clone();
    let image_name = format!("{}/big:1", proxy.addr());
    proxy.stall_blobs_after(1 << 20);
    let err = node.fails(&["images", "pull", "--timeout", "3s", &image_name]);
    assert!(err.contains("deadline"), "{err}");
    let partial = node.state_dir().join("images/ingest").join(format!(
        "{}.partial",
        big_layer.trim_start_matches("sha256:")
    ));
    let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    assert!(
        kept >= 1 << 20,
        "the first MiB was kept to resume ({kept} bytes)"
    );
    assert!(
        node.ok(&["images", "ls", "-q"]).is_empty(),
        "a failed pull records no image"
    );

    proxy.resume();
    proxy.clear_requests();
    node.ok(&["images", "pull", "--timeout", "60s", &image_name]);
    let ranges: Vec<Option<String>> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&big_layer))
        .map(|r| r.range)
        .collect();
    assert_eq!(
        ranges,
        vec![Some(format!("bytes={kept}-"))],
        "the retry resumed where the stall cut it"
    );
    assert!(!partial.exists());
    assert_eq!(
        run_output(&node, &image_name, &["sh", "-c", "wc -c < /noise"]).trim(),
        (4 << 20).to_string()
    );
}

#[test]
fn basic_and_bearer_auth() {
    let (node, registry) = node_and_registry();
    let proxy = FaultProxy::start(&node.host, &registry);
    ImageBuilder::busybox()
        .build()
        .push(&node.host, &registry, "private:1");
    let image = format!("{}/private:1", proxy.addr());
    let creds = format!(
        "configs:\n  \"{}\":\n    auth:\n      username: edge\n      password: s3cret\n",
        proxy.addr()
    );

    proxy.require_basic("edge", "s3cret");
    let err = node.fails(&["images", "pull", "--timeout", "20s", &image]);
    assert!(
        err.contains("Not authorized") && err.contains("registries.yaml"),
        "{err}"
    );
    node.registries_yaml(&creds);
    node.ok(&["images", "pull", &image]);
    assert!(proxy.requests().iter().any(|r| r
        .authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Basic "))));

    node.ok(&["images", "rm", &image]);
    proxy.require_bearer("edge", "s3cret");
    proxy.clear_requests();
    node.ok(&["images", "pull", &image]);
    let tokens = proxy.tokens();
    assert!(!tokens.is_empty(), "a token was issued");
    let bearer = proxy
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/blobs/"))
        .all(|r| {
            r.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Bearer "))
        });
    assert!(
        bearer,
        "blob requests carried the bearer token: {:?}",
        proxy.requests()
    );

    // The credentials in the base64 `auth` form work the same.
    node.ok(&["images", "rm", &image]);
    node.registries_yaml(&format!(
        "configs:\n  \"{}\":\n    auth:\n      auth: ZWRnZTpzM2NyZXQ=\n",
        proxy.addr()
    ));
    node.ok(&["images", "pull", &image]);
}

#[test]
fn https_registry_with_a_custom_ca() {
    let node = Node::new();
    let registry = Registry::start_tls(&node.host);
    ImageBuilder::busybox()
        .build()
        .push(&node.host, &registry, "app:1");
    let cert = registry
        .tls_cert()
        .expect("tls registry")
        .to_str()
        .expect("utf-8")
        .to_owned();
    // Loopback registries default to plain HTTP: reach this one as an https mirror.
    let mirror = format!(
        "mirrors:\n  \"tls.example\":\n    endpoint: [\"https://{}\"]\n    mirrorOnly: true\n",
        registry.addr()
    );
    node.registries_yaml(&mirror);
    let err = node.fails(&["images", "pull", "--timeout", "20s", "tls.example/app:1"]);
    assert!(
        err.to_lowercase().contains("certificate"),
        "an unknown CA is refused: {err}"
    );

    node.registries_yaml(&format!(
        "{mirror}configs:\n  \"{}\":\n    tls:\n      ca_file: {cert}\n",
        registry.addr()
    ));
    node.ok(&["images", "pull", "--timeout", "20s", "tls.example/app:1"]);
    assert_eq!(
        run_output(&node, "tls.example/app:1", &["echo", "over tls"]),
        "over tls\n"
    );

    node.ok(&["images", "rm", "tls.example/app:1"]);
    node.registries_yaml(&format!(
        "{mirror}configs:\n  \"{}\":\n    tls:\n      insecure_skip_verify: true\n",
        registry.addr()
    ));
    node.ok(&["images", "pull", "--timeout", "20s", "tls.example/app:1"]);
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_layers() {
    let (node, registry) = node_and_registry();
    ImageBuilder::busybox()
        .layer(Layer::files(&[
            ("keep", "1"),
            ("gone", "2"),
            ("dir/old", "3"),
        ]))
        .layer(Layer::raw(vec![
            Entry::whiteout("gone"),
            Entry::opaque("dir"),
            Entry::file("dir/new", "4"),
        ]))
        .build()
        .push(&node.host, &registry, "wh:1");
    let image = format!("{}/wh:1", registry.addr());
    node.ok(&["images", "pull", &image]);
    let out = run_output(&node, &image, &["sh", "-c", "ls /keep /gone 2>&1; ls /dir"]);
    assert!(
        out.contains("/keep") && out.contains("/gone: No such file"),
        "{out}"
    );
    assert!(
        out.trim_end().ends_with("new"),
        "the opaque dir shows only the upper layer: {out}"
    );
    // A container's writes and deletions stay its own.
    let first = node.name("writer");
    node.ok(&[
        "ctr",
        "run",
        "--pull",
        "never",
        "--name",
        &first,
        &image,
        "--",
        "sh",
        "-c",
        "rm /keep; echo x > /mine",
    ]);
    assert_eq!(
        run_output(
            &node,
            &image,
            &["sh", "-c", "cat /keep; ls /mine 2>&1; true"]
        ),
        "1ls: /mine: No such file or directory\n"
    );
}

/// Builds, pushes and pulls an image whose top layer is `hostile`; the pull must fail
/// naming `expect`, and nothing may appear at `outside`.
fn refused(
    node: &Node,
    registry: &Registry,
    name: &str,
    hostile: Vec<Entry>,
    expect: &str,
    outside: &Path,
) {
    ImageBuilder::busybox()
        .layer(Layer::raw(hostile))
        .build()
        .push(&node.host, registry, name);
    let err = node.fails(&[
        "images",
        "pull",
        "--timeout",
        "30s",
        &format!("{}/{name}", registry.addr()),
    ]);
    assert!(
        err.contains(expect),
        "pull of {name} should fail with {expect:?}: {err}"
    );
    assert!(!outside.exists(), "{name} wrote {}", outside.display());
    let layers = std::fs::read_dir(node.state_dir().join("images/layers"))
        .expect("layers")
        .count();
    assert_eq!(layers, 1, "only busybox's layer is unpacked after {name}");
    assert!(!node
        .ok(&["images", "ls", "-q"])
        .contains(name.split(':').next().expect("name")));
}

#[test]
fn hostile_layers_are_refused_and_write_nothing_outside() {
    let (node, registry) = node_and_registry();
    let target = node.dir().join("outside");
    std::fs::create_dir(&target).expect("mkdir");
    let t = target
        .to_str()
        .expect("utf-8")
        .trim_start_matches('/')
        .to_owned();
    let up = "../".repeat(40);
    refused(
        &node,
        &registry,
        "dotdot:1",
        vec![Entry::file(format!("{up}{t}/dotdot"), "x")],
        "..",
        &target.join("dotdot"),
    );
    refused(
        &node,
        &registry,
        "absolute:1",
        vec![Entry::file(format!("/{t}/absolute"), "x")],
        "absolute",
        &target.join("absolute"),
    );
    refused(
        &node,
        &registry,
        "symlink:1",
        vec![
            Entry::symlink("escape", format!("/{t}")),
            Entry::file("escape/through-symlink", "x"),
        ],
        "symlink",
        &target.join("through-symlink"),
    );
    refused(
        &node,
        &registry,
        "relsymlink:1",
        vec![
            Entry::symlink("up", up.trim_end_matches('/')),
            Entry::file(format!("up/{t}/through-relative"), "x"),
        ],
        "symlink",
        &target.join("through-relative"),
    );
    let secret = target.join("secret");
    std::fs::write(&secret, "do not link me").expect("write");
    refused(
        &node,
        &registry,
        "hardlink:1",
        vec![Entry::hardlink("stolen", format!("/{t}/secret"))],
        "stolen",
        &target.join("never"),
    );
    refused(
        &node,
        &registry,
        "hardlink2:1",
        vec![Entry::hardlink("stolen", format!("{up}{t}/secret"))],
        "stolen",
        &target.join("never"),
    );
    refused(
        &node,
        &registry,
        "device:1",
        vec![Entry::char_device("dev/kmem", 1, 2)],
        "device",
        &target.join("never"),
    );
    assert_eq!(
        std::fs::read_to_string(&secret).expect("read"),
        "do not link me"
    );
    assert_eq!(
        std::fs::metadata(&secret)
            .map(|m| std::os::unix::fs::MetadataExt::nlink(&m))
            .expect("stat"),
        1
    );
    assert_eq!(
        std::fs::read_dir(&target).expect("dir").count(),
        1,
        "only our own file is in the target dir"
    );
}

#[test]
fn a_corrupt_blob_is_refused_and_nothing_is_kept() {
    let (node, registry) = node_and_registry();
    let image = ImageBuilder::busybox()
        .layer(Layer::files(&[("data", "good content\n")]).compression(Compression::Gzip))
        .build();
    image.push(&node.host, &registry, "corrupt:1");
    let layer = image.layer_digests[1].clone();
    let blob = registry.blob_path(&layer);
    let mut bytes = std::fs::read(&blob).expect("read blob");
    let last = bytes.len() - 1;
    bytes[last / 2] ^= 0xff;
    std::fs::write(&blob, bytes).expect("corrupt blob");
    let err = node.fails(&[
        "images",
        "pull",
        "--timeout",
        "30s",
        &format!("{}/corrupt:1", registry.addr()),
    ]);
    assert!(
        err.contains("digest mismatch") && err.contains(&layer),
        "{err}"
    );
    assert!(node.ok(&["images", "ls", "-q"]).is_empty());
    let ingest = std::fs::read_dir(node.state_dir().join("images/ingest"))
        .expect("ingest")
        .count();
    assert_eq!(ingest, 0, "the corrupt download is not kept");
    let layers: Vec<_> = std::fs::read_dir(node.state_dir().join("images/layers"))
        .expect("layers")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !layers.iter().any(|n| n.to_string_lossy().starts_with('.')),
        "no half-unpacked layer: {layers:?}"
    );
}

#[test]
fn import_archives_and_airgap_dir_pinned_then_gc() {
    let (node, registry) = node_and_registry();
    // docker-archive by CLI, OCI archive through the agent's air-gap dir.
    let docker = node.dir().join("docker.tar");
    ImageBuilder::busybox()
        .build()
        .docker_archive(&docker, "example.com/tools/busybox:docker");
    node.ok(&["images", "import", docker.to_str().expect("utf-8")]);
    assert_eq!(
        run_output(
            &node,
            "example.com/tools/busybox:docker",
            &["echo", "from docker archive"]
        ),
        "from docker archive\n"
    );

    std::fs::create_dir_all(node.airgap_dir()).expect("airgap dir");
    ImageBuilder::busybox()
        .layer(Layer::files(&[("airgap", "yes\n")]))
        .tag("example.com/tools/airgap:1")
        .build()
        .oci_archive(&node.airgap_dir().join("airgap.tar"));
    // A pulled image in use and one not in use, for GC.
    ImageBuilder::busybox()
        .layer(Layer::files(&[("used", "1")]))
        .build()
        .push(&node.host, &registry, "used:1");
    ImageBuilder::busybox()
        .layer(Layer::files(&[("unused", "1")]))
        .build()
        .push(&node.host, &registry, "unused:1");
    let used = format!("{}/used:1", registry.addr());
    let unused = format!("{}/unused:1", registry.addr());
    node.ok(&["images", "pull", &used]);
    node.ok(&["images", "pull", &unused]);
    let keeper = node.name("keeper");
    node.ok(&[
        "ctr", "run", "-d", "--pull", "never", "--name", &keeper, &used, "--", "sleep", "1000",
    ]);

    // Thresholds this disk is surely above: GC runs at agent start, and
    // takes even what was pulled a moment ago.
    let agent = node.spawn_agent(&[
        "--image-gc-high-threshold",
        "1",
        "--image-gc-low-threshold",
        "0",
        "--minimum-image-ttl-duration",
        "0s",
    ]);
    let ls = node.ok(&["images", "ls"]);
    let row = ls
        .lines()
        .find(|l| l.contains("example.com/tools/airgap"))
        .unwrap_or_else(|| panic!("air-gap image imported: {ls}"));
    assert!(
        row.trim_end().ends_with("yes"),
        "air-gap images are pinned: {row}"
    );
    let names = node.ok(&["images", "ls", "-q"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut names_now = names;
    while names_now.contains(&unused) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        names_now = node.ok(&["images", "ls", "-q"]);
    }
    assert!(
        !names_now.contains(&unused),
        "GC removed the unused image: {names_now}"
    );
    assert!(
        names_now.contains(&used),
        "GC kept the image a container uses: {names_now}"
    );
    assert!(
        names_now.contains("example.com/tools/airgap:1"),
        "GC kept the pinned image: {names_now}"
    );
    assert_eq!(
        run_output(&node, "example.com/tools/airgap:1", &["cat", "/airgap"]),
        "yes\n"
    );
    let err = node.fails(&["images", "rm", &used]);
    assert!(err.contains("used by a container"), "{err}");
    assert!(
        agent.stderr().contains("image garbage collection"),
        "{}",
        agent.stderr()
    );
    agent.stop();

    // A broken archive is refused with its name, and changes nothing.
    let junk = node.dir().join("junk.tar");
    std::fs::write(&junk, b"not a tarball at all").expect("write");
    let err = node.fails(&["images", "import", junk.to_str().expect("utf-8")]);
    assert!(err.contains("junk.tar"), "{err}");
}

/// On a disk above the GC threshold (as a CI machine once was), the agent
/// deleted at its start an image imported a moment before, and the image of
/// a pod still waiting for its volumes. Both stay now; what is old and unused
/// goes.
#[test]
fn gc_spares_fresh_images_and_those_desired_pods_name() {
    const MIN_AGE: Duration = Duration::from_secs(6);
    let node = Node::new();
    let manifests = node.manifests_dir();
    let import = |name: &str| {
        let marker = name.replace([':', '/', '.'], "-");
        let archive = node.dir().join(format!("{marker}.tar"));
        ImageBuilder::busybox()
            .layer(Layer::files(&[(marker, "1")]))
            .build()
            .docker_archive(&archive, name);
        node.ok(&["images", "import", archive.to_str().expect("utf-8")]);
    };
    let images = || node.ok(&["images", "ls", "-q"]);
    let gone = |name: &str| {
        node.wait_for(
            &format!("GC removes {name}"),
            Duration::from_secs(30),
            || (!images().contains(name)).then_some(()),
        )
    };
    let source = file_source(&manifests);
    let min_age = format!("{}s", MIN_AGE.as_secs());
    let args = [
        "--source",
        &source,
        "--image-gc-high-threshold",
        "1",
        "--image-gc-low-threshold",
        "0",
        "--minimum-image-ttl-duration",
        &min_age,
    ];

    // An old unused image goes at start; one imported just now stays.
    import("example.com/test/stale:1");
    std::thread::sleep(MIN_AGE + Duration::from_secs(1));
    import("example.com/test/app:1");
    let agent = node.spawn_agent(&args);
    let app_stays = |why: &str| {
        let now = images();
        assert!(now.contains("example.com/test/app:1"), "{why}: {now}");
    };
    gone("example.com/test/stale:1");
    app_stays("an image younger than the minimum age stays");

    // A pod waiting for a ConfigMap has no container yet; its image is old
    // by the next start, and stays all the same.
    std::fs::write(
        manifests.join("app.yaml"),
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: app
spec:
  containers:
  - name: app
    image: example.com/test/app:1
    command: ["sleep", "1000"]
    volumeMounts:
    - {name: config, mountPath: /config}
  volumes:
  - {name: config, configMap: {name: later}}
"#,
    )
    .expect("write pod");
    node.wait_for(
        "pod app waiting for its volume",
        Duration::from_secs(30),
        || {
            node.ok(&["get", "events", "-A"])
                .contains("FailedMount")
                .then_some(())
        },
    );
    import("example.com/test/stale:2");
    std::thread::sleep(MIN_AGE + Duration::from_secs(1));
    agent.sigkill();
    let _agent = node.spawn_agent(&args);
    gone("example.com/test/stale:2");
    app_stays("the image of a desired pod stays");
    std::fs::write(
        manifests.join("later.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: later\ndata:\n  a: b\n",
    )
    .expect("write configmap");
    node.wait_for(
        "pod app Running from its kept image",
        Duration::from_secs(60),
        || {
            let pod: serde_json::Value =
                serde_json::from_str(&node.ok(&["get", "pod", "app", "-o", "json"])).expect("json");
            (pod["status"]["phase"] == "Running").then_some(())
        },
    );
}
