//! The local API: the cluster state as the Kubernetes API server shows it,
//! read-only, HTTP/1.1 over a Unix socket (0600). `outpost get|describe|logs`
//! read through it; Kubernetes clients find their way with discovery.
//!
//! Paths follow Kubernetes: `/api/v1/namespaces/{ns}/pods[/{name}]`,
//! `/api/v1/pods`, `/apis/{group}/{version}/…` for the kinds in
//! [`resources::RESOURCES`], with `labelSelector`, `fieldSelector` and `watch`;
//! `/api/v1/namespaces/{ns}/pods/{name}/log` for container logs; `/version`,
//! `/api`, `/api/v1`, `/apis` for discovery. Failures are `Status` objects.

pub mod exec;
mod logs;
pub mod printers;
pub mod resources;
pub mod route;
pub mod selector;
mod status;
mod watch;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::resources::Resource;
use self::route::{flag, number, Route};
use self::selector::{FieldSelector, LabelSelector};
pub use self::status::ApiError;
use self::watch::{Filter, History, WatchRequest};
use crate::state::{ClusterState, ObjectKey};

/// Where the API listens and where it finds pod logs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The Unix socket (`<run-dir>/outpost.sock`).
    pub socket: PathBuf,
    /// The agent's state dir, where pod logs live (`crate::paths::container_log`).
    pub state_dir: PathBuf,
    /// The node's containers, for `pods/{name}/exec`; `None`: exec is unavailable.
    pub runtime: Option<outpost_runtime::container::Runtime>,
}

/// How long connections get to finish at shutdown before they are cut.
const DRAIN: Duration = Duration::from_secs(5);

/// Buffered chunks of a streamed response (watch events, log lines).
const STREAM_BUFFER: usize = 64;

/// What every request handler shares.
#[derive(Debug)]
struct Ctx {
    state: ClusterState,
    state_dir: PathBuf,
    runtime: Option<outpost_runtime::container::Runtime>,
    history: Arc<History>,
    shutdown: CancellationToken,
}

/// Serves the API on `config.socket` until `shutdown`; then removes the socket.
/// A stale socket from an earlier run is replaced; one that another process
/// still answers on is an error.
pub async fn serve(
    config: ApiConfig,
    state: ClusterState,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let listener = bind(&config.socket)?;
    let inode = std::fs::metadata(&config.socket)?.ino();
    let ctx = Arc::new(Ctx {
        history: History::start(&state, shutdown.clone()),
        state,
        state_dir: config.state_dir,
        runtime: config.runtime,
        shutdown: shutdown.clone(),
    });
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(ctx.clone(), stream));
                }
                Err(e) => {
                    // Out of descriptors, most likely: let connections finish.
                    tracing::warn!("api: accepting on {}: {e}", config.socket.display());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Only our own socket: a newer agent may already have replaced it.
    if std::fs::metadata(&config.socket).is_ok_and(|m| m.ino() == inode) {
        let _ = std::fs::remove_file(&config.socket);
    }
    // Streams end on the token; responses in flight get a moment to finish.
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    Ok(())
}

/// Binds the socket, replacing a stale one, and makes it 0600 before any
/// connection is accepted.
fn bind(path: &Path) -> io::Result<UnixListener> {
    let context = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| context("cannot create the directory of the API socket", e))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another process is serving the API at {}; is an agent already running?",
                path.display()
            ),
        ));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(context("cannot remove the stale API socket", e))
        }
        _ => {}
    }
    let listener =
        UnixListener::bind(path).map_err(|e| context("cannot listen on the API socket", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| context("cannot make the API socket private", e))?;
    Ok(listener)
}

async fn connection(ctx: Arc<Ctx>, stream: UnixStream) {
    let shutdown = ctx.shutdown.clone();
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut conn = pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("api connection: {e}");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A response body: whole, or streamed from a task (watch, log follow).
/// When the client goes, hyper drops the body and the task sees its channel close.
#[derive(Debug)]
pub enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

fn respond(code: StatusCode, content_type: &str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = code;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    respond(
        code,
        "application/json",
        Body::Full(Some(Bytes::from(bytes))),
    )
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status(),
    )
}

/// Starts `task` writing into a channel and answers with what it writes.
fn stream_response<F, Fut>(content_type: &str, task: F) -> Response<Body>
where
    F: FnOnce(mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(task(tx));
    respond(StatusCode::OK, content_type, Body::Stream(rx))
}

async fn handle(ctx: &Ctx, req: Request<hyper::body::Incoming>) -> Response<Body> {
    if let Route::PodExec { namespace, name } = route::route(req.uri().path()) {
        return exec::upgrade(ctx, &namespace, &name, req).unwrap_or_else(|e| error_response(&e));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error_response(&ApiError::method_not_allowed());
    }
    let params = route::query(req.uri().query());
    match dispatch(ctx, route::route(req.uri().path()), &params).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

async fn dispatch(
    ctx: &Ctx,
    route: Route,
    params: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    Ok(match route {
        Route::Version => json_response(StatusCode::OK, &version()),
        Route::Health => respond(
            StatusCode::OK,
            "text/plain",
            Body::Full(Some(Bytes::from_static(b"ok"))),
        ),
        Route::CoreVersions => json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        Route::Groups => json_response(StatusCode::OK, &groups()),
        Route::Group(name) => {
            let group = groups()["groups"]
                .as_array()
                .and_then(|g| g.iter().find(|g| g["name"] == name.as_str()).cloned())
                .ok_or_else(ApiError::no_route)?;
            let mut group = group;
            group["kind"] = json!("APIGroup");
            group["apiVersion"] = json!("v1");
            json_response(StatusCode::OK, &group)
        }
        Route::Resources { group, version } => {
            json_response(StatusCode::OK, &resource_list(&group, &version))
        }
        Route::Collection {
            resource,
            namespace,
        } => {
            let filter = filter(resource, namespace, params)?;
            if flag(params, "watch").map_err(ApiError::bad_request)? {
                watch_response(ctx, filter, params)?
            } else {
                let (items, rv) = filter.list(&ctx.state);
                json_response(
                    StatusCode::OK,
                    &json!({
                        "kind": resource.list_kind(),
                        "apiVersion": resource.api_version(),
                        "metadata": {"resourceVersion": rv.to_string()},
                        "items": items,
                    }),
                )
            }
        }
        Route::Object {
            resource,
            namespace,
            name,
        } => {
            if flag(params, "watch").map_err(ApiError::bad_request)? {
                // The old watch-one-object path: a watch with a name selector.
                let mut filter = filter(resource, namespace, params)?;
                filter.fields = FieldSelector::parse(&format!("metadata.name={name}"), resource)
                    .map_err(ApiError::bad_request)?;
                watch_response(ctx, filter, params)?
            } else {
                let key = match &namespace {
                    Some(ns) if resource.namespaced => {
                        ObjectKey::namespaced(resource.kind, ns, &name)
                    }
                    _ => ObjectKey::cluster(resource.kind, &name),
                };
                let object = ctx
                    .state
                    .get(&key)
                    .ok_or_else(|| ApiError::not_found(resource.plural, &name))?;
                json_response(StatusCode::OK, &object)
            }
        }
        Route::PodLog { namespace, name } => pod_log(ctx, &namespace, &name, params).await?,
        Route::NotFound | Route::PodExec { .. } => return Err(ApiError::no_route()),
    })
}

/// The filter of a list or watch from its path and selectors.
fn filter(
    resource: &'static Resource,
    namespace: Option<String>,
    params: &HashMap<String, String>,
) -> Result<Filter, ApiError> {
    let labels = LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(
        params.get("fieldSelector").map_or("", String::as_str),
        resource,
    )
    .map_err(ApiError::bad_request)?;
    Ok(Filter {
        resource,
        namespace: namespace.filter(|_| resource.namespaced),
        labels,
        fields,
    })
}

fn watch_response(
    ctx: &Ctx,
    filter: Filter,
    params: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let resource_version = match params.get("resourceVersion").map(String::as_str) {
        None | Some("") => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid resourceVersion {v:?}: expected a number"))
        })?),
    };
    let timeout = number(params, "timeoutSeconds")
        .map_err(ApiError::bad_request)?
        .filter(|&s| s > 0)
        .map(|s| Duration::from_secs(s as u64));
    let request = WatchRequest {
        filter,
        resource_version,
        timeout,
    };
    let (state, history, shutdown) = (ctx.state.clone(), ctx.history.clone(), ctx.shutdown.clone());
    Ok(stream_response("application/json", move |tx| {
        watch::run(request, state, history, tx, shutdown)
    }))
}

async fn pod_log(
    ctx: &Ctx,
    namespace: &str,
    name: &str,
    params: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let options = logs::LogOptions::parse(params, jiff::Timestamp::now())?;
    let key = ObjectKey::namespaced("Pod", namespace, name);
    let pod = ctx
        .state
        .get(&key)
        .ok_or_else(|| ApiError::not_found("pods", name))?;
    let uid = printers::text(&pod, "/metadata/uid").to_owned();
    let log_path = |container: &str, restart: u32| {
        crate::paths::container_log(&ctx.state_dir, namespace, name, &uid, container, restart)
    };
    let requested = logs::choose_container(&pod, options.container.as_deref())?;
    let target = logs::target(&pod, &options, |restart| {
        log_path(&requested, restart).exists()
    })?;
    let path = log_path(&target.container, target.restart);
    // A running container whose log file is not there yet has nothing to follow.
    if options.follow && target.running && path.exists() {
        let follow = logs::Follow {
            path,
            options,
            pod: key,
            target,
            state: ctx.state.clone(),
            shutdown: ctx.shutdown.clone(),
        };
        return Ok(stream_response("text/plain", move |tx| {
            logs::follow(follow, tx)
        }));
    }
    let body = logs::read(path, &options).await?;
    Ok(respond(
        StatusCode::OK,
        "text/plain",
        Body::Full(Some(Bytes::from(body))),
    ))
}

/// `/version`: Kubernetes 1.34 as outpost serves it.
fn version() -> Value {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    };
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": format!("v1.34.0-outpost.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{arch}", std::env::consts::OS),
    })
}

/// `/apis`: the groups other than core.
fn groups() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                .collect();
            json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/api/v1`, `/apis/{group}/{version}`: the resources of a group version.
fn resource_list(group: &str, version: &str) -> Value {
    let mut list = Vec::new();
    for r in resources::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": ["get", "list", "watch"],
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        list.push(entry);
        if r.kind == "Pod" {
            list.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list})
}
