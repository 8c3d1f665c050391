//! The API served in-process on a socket in a tempdir, driven by the CLI's client.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::cli::client::{Client, ResponseStream, StatusError};

fn pod(name: &str, app: &str, containers: &[&str], statuses: Value) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox"}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": app},
            "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"containers": containers},
        "status": {"phase": "Running", "containerStatuses": statuses},
    })
}

fn running(container: &str, restarts: u32) -> Value {
    json!([{"name": container, "ready": true, "restartCount": restarts, "state": {"running": {"startedAt": "2024-05-01T11:00:00Z"}}}])
}

struct Server {
    dir: tempfile::TempDir,
    state: ClusterState,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<io::Result<()>>,
    client: Client,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("run/outpost.sock");
        // A stale socket from a crashed agent is replaced.
        std::fs::create_dir_all(dir.path().join("run")).expect("run dir");
        drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
        let state = ClusterState::default();
        let shutdown = CancellationToken::new();
        let config = ApiConfig {
            socket: socket.clone(),
            state_dir: dir.path().join("state"),
            runtime: None,
        };
        let task = tokio::spawn(serve(config, state.clone(), shutdown.clone()));
        let client = Client::new(&socket);
        for _ in 0..200 {
            if client.get_bytes("/healthz").await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Server {
            dir,
            state,
            shutdown,
            task,
            client,
        }
    }

    fn log_file(
        &self,
        pod: &str,
        container: &str,
        restart: u32,
        lines: &[(&str, &str, &str)],
    ) -> std::path::PathBuf {
        let path = crate::paths::container_log(
            &self.dir.path().join("state"),
            "default",
            pod,
            &format!("uid-{pod}"),
            container,
            restart,
        );
        std::fs::create_dir_all(path.parent().expect("parent")).expect("log dir");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("log file");
        for (time, tag, content) in lines {
            writeln!(file, "{time} stdout {tag} {content}").expect("write");
        }
        path
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returns at shutdown")
            .expect("joins")
            .expect("serve succeeds");
    }
}

/// The next watch event as `TYPE name`.
async fn next(stream: &mut ResponseStream) -> String {
    let (kind, object) = tokio::time::timeout(Duration::from_secs(5), stream.event())
        .await
        .expect("in time")
        .expect("event")
        .expect("open");
    format!(
        "{kind} {}",
        object["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// Reads a followed log until it ends with `want`.
async fn read_until(stream: &mut ResponseStream, want: &str) -> String {
    let read = async {
        let mut got = String::new();
        while !got.ends_with(want) {
            let chunk = stream.chunk().await.expect("chunk").expect("still open");
            got.push_str(&String::from_utf8_lossy(&chunk));
        }
        got
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("in time")
}

fn status_of(e: &anyhow::Error) -> StatusError {
    e.downcast_ref::<StatusError>()
        .unwrap_or_else(|| panic!("not a Status: {e:#}"))
        .clone()
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn api_lists_gets_and_reports_status() {
    let server = Server::start().await;
    let socket = server.client.socket().to_owned();
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let state = &server.state;
    state.upsert(
        ObjectKey::cluster("Namespace", "default"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
    );
    state.upsert(
        ObjectKey::namespaced("Pod", "default", "web"),
        pod("web", "web", &["c"], running("c", 0)),
    );
    state.upsert(
        ObjectKey::namespaced("Pod", "default", "db"),
        pod("db", "db", &["c"], running("c", 0)),
    );
    let mut api = pod("api", "web", &["c"], running("c", 0));
    api["metadata"]["namespace"] = json!("prod");
    state.upsert(ObjectKey::namespaced("Pod", "prod", "api"), api);
    state.upsert(
        ObjectKey::namespaced("Event", "default", "web.1"),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "Started", "type": "Normal"}),
    );
    let c = &server.client;

    let list = c
        .get("/api/v1/namespaces/default/pods")
        .await
        .expect("list");
    assert_eq!(
        (list["kind"].as_str(), list["apiVersion"].as_str()),
        (Some("PodList"), Some("v1"))
    );
    assert_eq!(
        list["metadata"]["resourceVersion"].as_str(),
        Some(state.resource_version().to_string().as_str())
    );
    assert_eq!(names(&list), ["db", "web"]);
    assert_eq!(
        names(&c.get("/api/v1/pods").await.expect("all")),
        ["db", "web", "api"]
    );
    assert_eq!(
        names(
            &c.get("/api/v1/pods?labelSelector=app%3Dweb")
                .await
                .expect("selected")
        ),
        ["web", "api"]
    );
    assert_eq!(
        names(&c.get("/api/v1/pods?labelSelector=app+in+(web,db),app!=db&fieldSelector=metadata.namespace%3Dprod").await.expect("selected")),
        ["api"]
    );
    let events = c
        .get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dweb")
        .await
        .expect("events");
    assert_eq!(names(&events), ["web.1"]);
    assert_eq!(
        names(&c.get("/api/v1/namespaces").await.expect("namespaces")),
        ["default"]
    );

    let web = c
        .get("/api/v1/namespaces/default/pods/web")
        .await
        .expect("get");
    assert_eq!(web["metadata"]["name"], "web");
    assert_eq!(
        c.get("/api/v1/namespaces/default")
            .await
            .expect("namespace")["kind"],
        "Namespace"
    );

    let missing = status_of(
        &c.get("/api/v1/namespaces/default/pods/nope")
            .await
            .expect_err("404"),
    );
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        missing.to_string(),
        "Error from server (NotFound): pods \"nope\" not found"
    );
    let bad = status_of(
        &c.get("/api/v1/pods?labelSelector=a%3D%3D%3Db")
            .await
            .expect_err("400"),
    );
    assert_eq!((bad.code, bad.reason.as_str()), (400, "BadRequest"));
    let bad = status_of(
        &c.get("/api/v1/pods?fieldSelector=spec.foo%3Dx")
            .await
            .expect_err("400"),
    );
    assert_eq!(bad.message, "field label not supported: spec.foo");
    assert_eq!(
        status_of(&c.get("/api/v1/widgets").await.expect_err("no route")).code,
        404
    );

    // Discovery.
    let version = c.get("/version").await.expect("version");
    assert!(
        version["gitVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.34.0-outpost.")),
        "{version}"
    );
    assert_eq!(c.get("/api").await.expect("api")["versions"], json!(["v1"]));
    let v1 = c.get("/api/v1").await.expect("v1");
    let pods = v1["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "pods")
        .expect("pods")
        .clone();
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["namespaced"], json!(true));
    assert_eq!(c.get("/apis").await.expect("apis")["kind"], "APIGroupList");

    server.stop().await;
    assert!(!socket.exists(), "the socket is removed at shutdown");
    let err = Client::new(&socket)
        .get("/version")
        .await
        .expect_err("agent gone")
        .to_string();
    assert!(
        err.starts_with(&format!(
            "cannot reach the outpost agent at {}: ",
            socket.display()
        )) && err.ends_with(
            "is it running? start it with `outpost agent` (or `systemctl start outpost`)"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn api_watch_streams_changes() {
    let server = Server::start().await;
    let state = &server.state;
    state.upsert(
        ObjectKey::namespaced("Pod", "default", "web"),
        pod("web", "web", &["c"], running("c", 0)),
    );
    let c = &server.client;

    let mut stream = c
        .stream("/api/v1/namespaces/default/pods?watch=1&labelSelector=app%3Dweb")
        .await
        .expect("watch");
    assert_eq!(next(&mut stream).await, "ADDED web");
    let mut changed = pod("web", "web", &["c"], running("c", 0));
    changed["status"]["phase"] = json!("Succeeded");
    state.upsert(ObjectKey::namespaced("Pod", "default", "web"), changed);
    state.upsert(
        ObjectKey::namespaced("Pod", "default", "other"),
        pod("other", "db", &["c"], json!([])),
    );
    state.upsert(
        ObjectKey::namespaced("Pod", "default", "web2"),
        pod("web2", "web", &["c"], json!([])),
    );
    assert_eq!(next(&mut stream).await, "MODIFIED web");
    assert_eq!(next(&mut stream).await, "ADDED web2");

    // List, then watch from the list's version: only what came after.
    let list = c
        .get("/api/v1/namespaces/default/pods")
        .await
        .expect("list");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    state.delete(&ObjectKey::namespaced("Pod", "default", "web2"));
    let mut from = c
        .stream(&format!(
            "/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}"
        ))
        .await
        .expect("watch");
    assert_eq!(next(&mut from).await, "DELETED web2");
    assert_eq!(next(&mut stream).await, "DELETED web2");

    // One object by name.
    let mut one = c
        .stream("/api/v1/namespaces/default/pods/web?watch=1")
        .await
        .expect("watch one");
    assert_eq!(next(&mut one).await, "ADDED web");

    // Watches end at shutdown.
    server.shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.event())
        .await
        .expect("ends in time");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("serve returns")
        .expect("joins")
        .expect("ok");
}

#[tokio::test]
async fn api_serves_logs() {
    let server = Server::start().await;
    let state = &server.state;
    state.upsert(
        ObjectKey::namespaced("Pod", "default", "web"),
        pod("web", "web", &["c"], running("c", 1)),
    );
    state.upsert(
        ObjectKey::namespaced("Pod", "default", "two"),
        pod("two", "x", &["a", "b"], running("a", 0)),
    );
    state.upsert(
        ObjectKey::namespaced("Pod", "default", "new"),
        pod("new", "x", &["c"], json!([{"name": "c", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}])),
    );
    server.log_file("web", "c", 0, &[("2024-05-01T10:00:00Z", "F", "first run")]);
    let live = server.log_file(
        "web",
        "c",
        1,
        &[
            ("2024-05-01T11:00:00.123456789Z", "F", "one"),
            ("2024-05-01T11:00:01Z", "P", "tw"),
            ("2024-05-01T11:00:01Z", "F", "o"),
            ("2024-05-01T11:00:02Z", "F", "three"),
        ],
    );
    let c = &server.client;
    let text = |b: bytes::Bytes| String::from_utf8(b.to_vec()).expect("utf-8");
    let base = "/api/v1/namespaces/default/pods/web/log";
    assert_eq!(
        text(c.get_bytes(base).await.expect("log")),
        "one\ntwo\nthree\n"
    );
    assert_eq!(
        text(
            c.get_bytes(&format!("{base}?tailLines=1"))
                .await
                .expect("tail")
        ),
        "three\n"
    );
    assert_eq!(
        text(
            c.get_bytes(&format!("{base}?previous=true"))
                .await
                .expect("previous")
        ),
        "first run\n"
    );
    assert_eq!(
        text(
            c.get_bytes(&format!("{base}?timestamps=true&tailLines=2"))
                .await
                .expect("timestamps")
        ),
        "2024-05-01T11:00:01Z two\n2024-05-01T11:00:02Z three\n"
    );
    assert_eq!(
        text(
            c.get_bytes(&format!("{base}?limitBytes=6&container=c"))
                .await
                .expect("limit")
        ),
        "one\ntw"
    );

    let err = status_of(
        &c.get_bytes("/api/v1/namespaces/default/pods/two/log")
            .await
            .expect_err("ambiguous"),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            400,
            "a container name must be specified for pod two, choose one of: [a b]"
        )
    );
    let err = status_of(
        &c.get_bytes("/api/v1/namespaces/default/pods/new/log")
            .await
            .expect_err("waiting"),
    );
    assert_eq!(
        err.message,
        "container \"c\" in pod \"new\" is waiting to start: ContainerCreating"
    );
    let err = status_of(
        &c.get_bytes("/api/v1/namespaces/default/pods/nope/log")
            .await
            .expect_err("404"),
    );
    assert_eq!(err.message, "pods \"nope\" not found");

    // Follow: the tail, then new lines, until the container stops.
    let mut follow = c
        .stream(&format!("{base}?follow=true&tailLines=1"))
        .await
        .expect("follow");
    let mut got = String::new();
    got.push_str(&read_until(&mut follow, "three\n").await);
    assert_eq!(got, "three\n");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&live)
        .expect("append");
    writeln!(file, "2024-05-01T11:00:03Z stdout F four").expect("write");
    write!(file, "2024-05-01T11:00:04Z stdout F fi").expect("write");
    file.flush().expect("flush");
    got = read_until(&mut follow, "four\n").await;
    assert_eq!(got, "four\n");
    writeln!(file, "ve").expect("write");
    // Rotation: the live file moves to .1 and a new one starts.
    let mut rotated = live.clone().into_os_string();
    rotated.push(".1");
    std::fs::rename(&live, &rotated).expect("rotate");
    server.log_file("web", "c", 1, &[("2024-05-01T11:00:05Z", "F", "six")]);
    got = read_until(&mut follow, "six\n").await;
    assert_eq!(got, "five\nsix\n");
    // The container stops: the follow ends.
    let mut stopped = pod(
        "web",
        "web",
        &["c"],
        json!([{"name": "c", "restartCount": 1, "state": {"terminated": {"exitCode": 0}}}]),
    );
    stopped["status"]["phase"] = json!("Succeeded");
    state.upsert(ObjectKey::namespaced("Pod", "default", "web"), stopped);
    let end = tokio::time::timeout(Duration::from_secs(10), follow.chunk())
        .await
        .expect("ends in time")
        .expect("clean end");
    assert_eq!(end, None);

    server.stop().await;
}
