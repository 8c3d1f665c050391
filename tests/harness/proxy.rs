//! [`FaultProxy`]: an in-process HTTP/1.1 reverse proxy in front of a [`Registry`] that
//! records every request and injects faults on demand.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot, watch};

use super::registry::random_hex;
use super::{Registry, TestHost};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// One request as the proxy saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// Path and query, e.g. `/v2/busybox/manifests/1`.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The status the proxy answered with (0 while the answer is pending).
    pub status: u16,
}

#[derive(Clone, Debug, Default)]
enum Auth {
    #[default]
    Open,
    Basic {
        expected: String,
    },
    Bearer {
        /// `Authorization` value `/token` wants; `None` gives tokens to anyone.
        expected: Option<String>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Fault {
    #[default]
    None,
    StallBlobs(u64),
    RefuseAll,
}

#[derive(Clone, Debug, Default)]
struct Mode {
    auth: Auth,
    fault: Fault,
}

struct Shared {
    port: u16,
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    requests: Mutex<Vec<RecordedRequest>>,
    tokens: Mutex<HashSet<String>>,
}

/// A reverse proxy on `127.0.0.1:<port>` inside a [`TestHost`], forwarding to a
/// [`Registry`] on the same host.
///
/// It runs on its own thread (which entered the host's netns) with a single-threaded
/// tokio runtime owned by that thread; `Drop` stops it and closes every connection.
/// Modes switch at runtime and apply to requests arriving afterwards (a stall also
/// ends for bodies already hanging when it is lifted).
pub struct FaultProxy {
    host: TestHost,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a transparent proxy in `host` in front of `upstream`.
    pub fn start(host: &TestHost, upstream: &Registry) -> FaultProxy {
        FaultProxy::start_to(host, upstream.port())
    }

    /// Starts a transparent proxy in `host` in front of `127.0.0.1:<upstream_port>`.
    pub fn start_to(host: &TestHost, upstream_port: u16) -> FaultProxy {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let thread_host = host.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", host.name()))
            .spawn(move || {
                thread_host.enter_current_thread();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the proxy runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind the proxy on 127.0.0.1");
                    let port = listener.local_addr().expect("proxy address").port();
                    let shared = Arc::new(Shared {
                        port,
                        upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
                        mode: watch::Sender::new(Mode::default()),
                        requests: Mutex::new(Vec::new()),
                        tokens: Mutex::new(HashSet::new()),
                    });
                    let _ = ready_tx.send(Arc::clone(&shared));
                    serve(listener, shared, shutdown_rx).await;
                });
                // Dropping the runtime cancels every connection task: sockets close here.
                drop(runtime);
            })
            .expect("spawn the proxy thread");
        let shared = match ready_rx.recv() {
            Ok(shared) => shared,
            Err(_) => match thread.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => panic!("fault proxy thread ended before listening"),
            },
        };
        FaultProxy {
            host: host.clone(),
            shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// The port it listens on (127.0.0.1 inside its host).
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.shared.port)
    }

    /// The test host it listens in.
    pub fn host(&self) -> &TestHost {
        &self.host
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Back to a transparent proxy: no auth, no fault; hanging blob bodies resume.
    pub fn pass(&self) {
        self.shared.mode.send_replace(Mode::default());
    }

    /// For `GET /v2/*/blobs/*`: send the headers and the first `n` body bytes, then hang
    /// without closing until [`FaultProxy::resume`] or [`FaultProxy::pass`] (then the rest
    /// follows). A blob of at most `n` bytes is sent whole.
    pub fn stall_blobs_after(&self, n: u64) {
        self.shared
            .mode
            .send_modify(|mode| mode.fault = Fault::StallBlobs(n));
    }

    /// Lifts a stall or refusal, keeping the auth mode.
    pub fn resume(&self) {
        self.shared
            .mode
            .send_modify(|mode| mode.fault = Fault::None);
    }

    /// Answers 503 to every request (they are still recorded).
    pub fn refuse_all(&self) {
        self.shared
            .mode
            .send_modify(|mode| mode.fault = Fault::RefuseAll);
    }

    /// Requires `Authorization: Basic` with these credentials; otherwise 401 with
    /// `WWW-Authenticate: Basic realm="test"`.
    pub fn require_basic(&self, user: &str, pass: &str) {
        let expected = basic_value(user, pass);
        self.shared
            .mode
            .send_modify(|mode| mode.auth = Auth::Basic { expected });
    }

    /// Requires the Docker token flow: 401 with a `Bearer realm="http://<proxy>/token",
    /// service="test-registry",scope="repository:<name>:pull"` challenge; `GET /token`
    /// with these basic credentials answers `{"token": "<random>"}`, and later requests
    /// must carry `Authorization: Bearer <token>`.
    pub fn require_bearer(&self, user: &str, pass: &str) {
        let expected = Some(basic_value(user, pass));
        self.shared
            .mode
            .send_modify(|mode| mode.auth = Auth::Bearer { expected });
    }

    /// Like [`FaultProxy::require_bearer`], but `/token` gives a token to anyone.
    pub fn require_bearer_anonymous(&self) {
        self.shared
            .mode
            .send_modify(|mode| mode.auth = Auth::Bearer { expected: None });
    }

    /// Tokens `/token` has handed out.
    pub fn tokens(&self) -> Vec<String> {
        let tokens = self.shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.iter().cloned().collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let result = thread.join();
            if let Err(panic) = result {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

/// Accepts connections until shutdown; each connection runs as a task.
async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(Arc::clone(&shared), request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let header = |name| {
        request
            .headers()
            .get(name)
            .map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let record = RecordedRequest {
        method: request.method().to_string(),
        path: request
            .uri()
            .path_and_query()
            .map_or_else(|| request.uri().path().to_owned(), |p| p.to_string()),
        range: header(RANGE),
        authorization: header(AUTHORIZATION),
        status: 0,
    };
    let index = {
        let mut requests = shared.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.push(record.clone());
        requests.len() - 1
    };
    let mode = shared.mode.borrow().clone();
    let response = respond(&shared, mode, record, request).await;
    if let Some(r) = shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(index)
    {
        r.status = response.status().as_u16();
    }
    Ok(response)
}

async fn respond(
    shared: &Arc<Shared>,
    mode: Mode,
    record: RecordedRequest,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    if mode.fault == Fault::RefuseAll {
        return simple(
            StatusCode::SERVICE_UNAVAILABLE,
            "refused by the fault proxy\n",
        );
    }
    let path = request.uri().path().to_owned();
    match &mode.auth {
        Auth::Open => {}
        Auth::Basic { expected } => {
            if record.authorization.as_deref() != Some(expected.as_str()) {
                return challenge(r#"Basic realm="test""#.to_owned());
            }
        }
        Auth::Bearer { expected } => {
            if path == "/token" {
                return issue_token(shared, expected.as_deref(), record.authorization.as_deref());
            }
            let token = record
                .authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "));
            let valid = token.is_some_and(|t| {
                let tokens = shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
                tokens.contains(t)
            });
            if !valid {
                let mut value = format!(
                    r#"Bearer realm="http://127.0.0.1:{}/token",service="test-registry""#,
                    shared.port
                );
                if let Some(name) = repository_name(&path) {
                    let actions = if matches!(record.method.as_str(), "GET" | "HEAD") {
                        "pull"
                    } else {
                        "pull,push"
                    };
                    value.push_str(&format!(r#",scope="repository:{name}:{actions}""#));
                }
                return challenge(value);
            }
        }
    }
    let stall = match mode.fault {
        Fault::StallBlobs(n) if record.method == "GET" && is_blob_path(&path) => Some(n),
        _ => None,
    };
    let strip_auth = !matches!(mode.auth, Auth::Open);
    match forward(shared, request, strip_auth, stall).await {
        Ok(response) => response,
        Err(e) => simple(
            StatusCode::BAD_GATEWAY,
            &format!("fault proxy cannot reach the registry: {e}\n"),
        ),
    }
}

/// Sends the request to the registry on a new connection and streams the answer back.
async fn forward(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    strip_auth: bool,
    stall: Option<u64>,
) -> Result<Response<ProxyBody>, BoxError> {
    let stream = tokio::net::TcpStream::connect(shared.upstream).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let (mut parts, body) = request.into_parts();
    if strip_auth {
        // The proxy's own credentials mean nothing to the registry behind it.
        parts.headers.remove(AUTHORIZATION);
    }
    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await?;
    let (parts, body) = response.into_parts();
    let body = match stall {
        Some(n) if parts.status.is_success() => stalling(body, n, shared.mode.subscribe()),
        _ => body.map_err(|e| Box::new(e) as BoxError).boxed(),
    };
    Ok(Response::from_parts(parts, body))
}

/// Passes `n` bytes of `body` on, then holds the rest until the stall is lifted.
fn stalling(mut body: Incoming, n: u64, mut mode: watch::Receiver<Mode>) -> ProxyBody {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    tokio::spawn(async move {
        let mut sent = 0u64;
        let mut stalled = false;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    let _ = tx.send(Err(Box::new(e))).await;
                    return;
                }
            };
            let mut data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if tx.send(Ok(frame)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            if !stalled && sent + data.len() as u64 >= n {
                let head = data.split_to((n - sent) as usize);
                if !head.is_empty() && tx.send(Ok(Frame::data(head))).await.is_err() {
                    return;
                }
                sent = n;
                stalled = true;
                // Hang, connection open, until the mode no longer stalls or the client leaves.
                tokio::select! {
                    lifted = mode.wait_for(|m| !matches!(m.fault, Fault::StallBlobs(_))) => {
                        if lifted.is_err() {
                            return;
                        }
                    }
                    _ = tx.closed() => return,
                }
            }
            sent += data.len() as u64;
            if !data.is_empty() && tx.send(Ok(Frame::data(data))).await.is_err() {
                return;
            }
        }
    });
    ChannelBody(rx).boxed()
}

/// A response body fed frame by frame from a task.
struct ChannelBody(mpsc::Receiver<Result<Frame<Bytes>, BoxError>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx)
    }
}

/// `GET /token`: a fresh token if the basic credentials match (or anyone may have one).
fn issue_token(
    shared: &Arc<Shared>,
    expected: Option<&str>,
    authorization: Option<&str>,
) -> Response<ProxyBody> {
    if expected.is_some_and(|e| authorization != Some(e)) {
        return simple(StatusCode::UNAUTHORIZED, "bad credentials for /token\n");
    }
    let token = random_hex(16);
    shared
        .tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token.clone());
    let mut response = simple(
        StatusCode::OK,
        &serde_json::json!({ "token": token }).to_string(),
    );
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn challenge(value: String) -> Response<ProxyBody> {
    let mut response = simple(StatusCode::UNAUTHORIZED, "authentication required\n");
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_str(&value).expect("valid challenge header"),
    );
    response
}

fn simple(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_owned()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

/// `/v2/<name>/blobs/<digest>` (not uploads).
fn is_blob_path(path: &str) -> bool {
    path.strip_prefix("/v2/")
        .and_then(|rest| rest.rsplit_once("/blobs/"))
        .is_some_and(|(name, digest)| !name.is_empty() && digest.starts_with("sha256:"))
}

/// The repository name in `/v2/<name>/(manifests|blobs|tags)/...`.
fn repository_name(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .filter_map(|kind| rest.rfind(kind).map(|i| &rest[..i]))
        .max_by_key(|name| name.len())
        .filter(|name| !name.is_empty())
}

/// `Basic base64(user:pass)`.
fn basic_value(user: &str, pass: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))
}

/// Standard base64 with padding (RFC 4648).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
