//! `GET|POST /api/v1/namespaces/{ns}/pods/{name}/exec`: a command in a running
//! pod container, streamed over a WebSocket with the Kubernetes channel
//! protocols (KEP-4006), so `outpost exec` and `kubectl exec` work against the
//! socket.
//!
//! Every binary message starts with a stream id: 0 stdin, 1 stdout, 2 stderr,
//! 3 error (how the command ended), 4 resize (`{"Width":80,"Height":24}`);
//! `v5.channel.k8s.io` adds 255, "close stream" (`[255, 0]`: stdin is at its
//! end). `v4.channel.k8s.io` reports the end as a JSON `Status`, the old
//! `channel.k8s.io` as plain text (and loses the exit code, as it always did).
//!
//! The process gets pipes or, with `tty=true`, the slave of a pty the agent
//! allocates. That pty is not the process's controlling terminal (it is not a
//! session leader): `isatty`, line editing and window sizes work, job control
//! and SIGWINCH do not. The agent's ends are nonblocking and driven by tokio;
//! only the supervisor round trip (`Runtime::exec`, then the wait for the
//! exit) runs on a blocking thread.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use outpost_runtime::container::{ExecRequest, Runtime};
use serde_json::{json, Value};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::printers::text;
use super::route::{decode, flag};
use super::{ApiError, Body, Ctx};
use crate::state::ObjectKey;

/// Stream ids: the first byte of every binary message.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// How the command ended (the server's last message).
pub const ERROR: u8 = 3;
/// A terminal size from the client: `{"Width":80,"Height":24}`.
pub const RESIZE: u8 = 4;
/// v5: `[255, id]` closes stream `id` (the client's stdin EOF).
pub const CLOSE: u8 = 255;

/// Bytes read from the process's output per message.
const CHUNK: usize = 32 * 1024;
/// Messages queued for the client before the pumps wait for it.
const OUT_BUFFER: usize = 16;
/// Stdin chunks queued for the process before the client is read no further.
const STDIN_BUFFER: usize = 16;
/// How long a terminal session waits for the client's first resize, so the
/// process starts with the right size (kubectl sends it at once).
const FIRST_RESIZE_WAIT: Duration = Duration::from_millis(200);
/// After the exit, output still open but quiet this long is abandoned: a
/// background child may hold it forever.
const DRAIN_IDLE: Duration = Duration::from_secs(1);
/// How long the last messages and the close frame get to reach the client.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel protocols served, most preferred first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `v5.channel.k8s.io`: v4 and the close signal (255).
    V5,
    /// `v4.channel.k8s.io`: a JSON `Status` on the error stream, resizes.
    V4,
    /// `channel.k8s.io`: a plain-text error, no resizes.
    V1,
}

impl Protocol {
    /// Every served protocol, most preferred first.
    pub const SERVED: [Protocol; 3] = [Protocol::V5, Protocol::V4, Protocol::V1];

    /// The `Sec-WebSocket-Protocol` name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V5 => "v5.channel.k8s.io",
            Protocol::V4 => "v4.channel.k8s.io",
            Protocol::V1 => "channel.k8s.io",
        }
    }

    /// The protocol a `Sec-WebSocket-Protocol` name stands for.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::SERVED.into_iter().find(|p| p.name() == name)
    }

    /// The server's choice among the protocols a client offers: the most
    /// preferred one it serves. `Ok(None)`: the client offered none, and gets
    /// `channel.k8s.io` without the header, as the API server does.
    pub fn negotiate(offered: &[&str]) -> Result<Option<Protocol>, ApiError> {
        if offered.is_empty() {
            return Ok(None);
        }
        Protocol::SERVED
            .into_iter()
            .find(|p| offered.contains(&p.name()))
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "requested protocol(s) are not supported: [{}]; supports [{}]",
                    offered.join(" "),
                    Protocol::SERVED.map(Protocol::name).join(" ")
                ))
            })
    }

    /// Whether the error stream carries a JSON `Status` (with the exit code).
    fn status_json(self) -> bool {
        matches!(self, Protocol::V5 | Protocol::V4)
    }

    /// Whether the client sends terminal sizes.
    fn resizes(self) -> bool {
        matches!(self, Protocol::V5 | Protocol::V4)
    }
}

/// What a client asks for in the query (`PodExecOptions`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOptions {
    /// `command=…`, repeated: the argv.
    pub command: Vec<String>,
    pub container: Option<String>,
    pub stdin: bool,
    pub stdout: bool,
    /// Always false with a tty: the terminal carries both outputs.
    pub stderr: bool,
    pub tty: bool,
}

impl ExecOptions {
    /// Reads and validates the query, as the API server does.
    pub fn parse(query: Option<&str>) -> Result<ExecOptions, ApiError> {
        let mut command = Vec::new();
        let mut params = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match decode(k) {
                k if k == "command" => command.push(decode(v)),
                k => {
                    params.entry(k).or_insert_with(|| decode(v));
                }
            }
        }
        let flag = |key: &str| flag(&params, key).map_err(ApiError::bad_request);
        let options = ExecOptions {
            command,
            container: params.get("container").filter(|c| !c.is_empty()).cloned(),
            stdin: flag("stdin")?,
            stdout: flag("stdout")?,
            stderr: flag("stderr")? && !flag("tty")?,
            tty: flag("tty")?,
        };
        if options.command.is_empty() {
            return Err(ApiError::bad_request(
                "you must specify at least one command for the container",
            ));
        }
        if !(options.stdin || options.stdout || options.stderr) {
            return Err(ApiError::bad_request(
                "you must specify at least 1 of stdin, stdout, stderr",
            ));
        }
        Ok(options)
    }

    /// The query string for these options (what a client sends).
    pub fn query(&self) -> String {
        use super::route::encode;
        let mut query: Vec<String> = self
            .command
            .iter()
            .map(|c| format!("command={}", encode(c)))
            .collect();
        if let Some(c) = &self.container {
            query.push(format!("container={}", encode(c)));
        }
        for (key, on) in [
            ("stdin", self.stdin),
            ("stdout", self.stdout),
            ("stderr", self.stderr),
            ("tty", self.tty),
        ] {
            if on {
                query.push(format!("{key}=true"));
            }
        }
        query.join("&")
    }
}

/// The container to run in and its supervisor id, from the pod's status.
pub fn target(pod: &Value, requested: Option<&str>) -> Result<(String, String), ApiError> {
    let phase = text(pod, "/status/phase");
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(ApiError::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    let container = super::logs::choose_container(pod, requested)?;
    let not_running = || ApiError::bad_request(format!("container {container} is not running"));
    let status = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|field| pod.pointer(&format!("/status/{field}"))?.as_array())
    .flatten()
    .find(|s| text(s, "/name") == container)
    .ok_or_else(not_running)?;
    if status.pointer("/state/running").is_none() {
        return Err(not_running());
    }
    let id = text(status, "/containerID")
        .strip_prefix("outpost://")
        .filter(|id| !id.is_empty())
        .ok_or_else(not_running)?
        .to_owned();
    Ok((container, id))
}

/// A message on stream `id`.
pub fn frame(id: u8, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(id);
    message.extend_from_slice(data);
    message
}

/// The resize message for a terminal of `width` columns and `height` rows.
pub fn resize_message(width: u16, height: u16) -> Vec<u8> {
    frame(
        RESIZE,
        json!({"Width": width, "Height": height})
            .to_string()
            .as_bytes(),
    )
}

/// A terminal size from a resize message: (columns, rows).
pub fn parse_resize(data: &[u8]) -> Option<(u16, u16)> {
    let size: Value = serde_json::from_slice(data).ok()?;
    let dimension = |key: &str| u16::try_from(size.get(key)?.as_u64()?).ok();
    Some((dimension("Width")?, dimension("Height")?))
}

/// How an exec ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The process exited with this code (128 + signal when killed).
    Exited(i32),
    /// It could not run, or the session broke: a message for the user.
    Failed(String),
}

/// The error stream's last message for `outcome`; `None`: nothing to send
/// (success on `channel.k8s.io`).
pub fn status_message(
    protocol: Protocol,
    outcome: &Outcome,
    command: &[String],
) -> Option<Vec<u8>> {
    let exited_message = |code: i32| {
        format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        )
    };
    if !protocol.status_json() {
        return match outcome {
            Outcome::Exited(0) => None,
            Outcome::Exited(code) => Some(exited_message(*code).into_bytes()),
            Outcome::Failed(message) => Some(message.clone().into_bytes()),
        };
    }
    let status = match outcome {
        Outcome::Exited(0) => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": exited_message(*code),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "details": {"causes": [{"message": message}]},
            "code": 500,
        }),
    };
    Some(status.to_string().into_bytes())
}

/// Reads the error stream as a client: what the server said about the end.
pub fn decode_status(protocol: Protocol, message: &[u8]) -> Outcome {
    if !protocol.status_json() {
        let text = String::from_utf8_lossy(message).trim().to_owned();
        return if text.is_empty() {
            Outcome::Exited(0)
        } else {
            Outcome::Failed(format!("error executing remote command: {text}"))
        };
    }
    let Ok(status) = serde_json::from_slice::<Value>(message) else {
        return Outcome::Failed(format!(
            "error stream protocol error: {:?} is not a Status",
            String::from_utf8_lossy(message)
        ));
    };
    match text(&status, "/status") {
        "Success" => Outcome::Exited(0),
        "Failure" if text(&status, "/reason") == "NonZeroExitCode" => status
            .pointer("/details/causes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| text(c, "/reason") == "ExitCode")
            .find_map(|c| text(c, "/message").parse::<u8>().ok())
            .map_or_else(
                || Outcome::Failed("error stream protocol error: no ExitCode cause given".into()),
                |code| Outcome::Exited(code.into()),
            ),
        "Failure" => Outcome::Failed(text(&status, "/message").to_owned()),
        _ => Outcome::Failed("error stream protocol error: unknown error".into()),
    }
}

/// Validates an exec request and answers `101 Switching Protocols`; the
/// session runs on its own task once hyper hands over the connection.
pub(super) fn upgrade(
    ctx: &Ctx,
    namespace: &str,
    name: &str,
    mut req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET && req.method() != Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    let options = ExecOptions::parse(req.uri().query())?;
    let pod = ctx
        .state
        .get(&ObjectKey::namespaced("Pod", namespace, name))
        .ok_or_else(|| ApiError::not_found("pods", name))?;
    let (container, id) = target(&pod, options.container.as_deref())?;
    let (key, protocol) = handshake(req.headers())?;
    let runtime = ctx.runtime.clone().ok_or_else(|| ApiError {
        code: 503,
        reason: "ServiceUnavailable",
        message: "exec is not available: this API server has no container runtime".into(),
        details: None,
    })?;
    tracing::info!(pod = %format!("{namespace}/{name}"), container, command = ?options.command, tty = options.tty, "exec");
    let session = Session {
        protocol: protocol.unwrap_or(Protocol::V1),
        runtime,
        id,
        options,
        shutdown: ctx.shutdown.clone(),
    };
    tokio::spawn(session.run(hyper::upgrade::on(&mut req)));

    let mut response = Response::new(Body::Full(None));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::UPGRADE,
        HeaderValue::from_static("websocket"),
    );
    headers.insert(
        hyper::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(hyper::header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = protocol {
        headers.insert(
            hyper::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol.name()),
        );
    }
    Ok(response)
}

/// Checks the WebSocket upgrade headers: the client's key and the protocol.
fn handshake(headers: &HeaderMap) -> Result<(String, Option<Protocol>), ApiError> {
    let value = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
    };
    let upgrade = value(hyper::header::UPGRADE);
    if upgrade.to_ascii_lowercase().contains("spdy") {
        return Err(ApiError::bad_request(
            "outpost serves exec over WebSocket only (v5.channel.k8s.io, v4.channel.k8s.io), not SPDY; \
             use `outpost exec` or kubectl 1.30 or newer",
        ));
    }
    if !upgrade
        .split(',')
        .any(|u| u.trim().eq_ignore_ascii_case("websocket"))
    {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    if value(hyper::header::SEC_WEBSOCKET_VERSION) != "13" {
        return Err(ApiError::bad_request(
            "unsupported WebSocket version: Sec-WebSocket-Version must be 13",
        ));
    }
    let key = value(hyper::header::SEC_WEBSOCKET_KEY);
    if key.is_empty() {
        return Err(ApiError::bad_request(
            "missing Sec-WebSocket-Key in the WebSocket upgrade",
        ));
    }
    let offered: Vec<&str> = headers
        .get_all(hyper::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    Ok((key.to_owned(), Protocol::negotiate(&offered)?))
}

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// One exec, from the upgraded connection to the final status.
struct Session {
    protocol: Protocol,
    runtime: Runtime,
    /// The container's supervisor id.
    id: String,
    options: ExecOptions,
    shutdown: CancellationToken,
}

impl Session {
    async fn run(self, upgrade: OnUpgrade) {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!("exec: the connection was not upgraded: {e}");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let (sink, incoming) = ws.split();
        let (out, out_rx) = mpsc::channel(OUT_BUFFER);
        let writer = tokio::spawn(send_all(sink, out_rx));
        let outcome = tokio::select! {
            outcome = self.exec(incoming, out.clone()) => outcome,
            () = self.shutdown.cancelled() => Outcome::Failed("the outpost agent is shutting down".into()),
        };
        if let Outcome::Failed(message) = &outcome {
            tracing::info!(container = %self.id, "exec {:?}: {message}", self.options.command);
        }
        if let Some(status) = status_message(self.protocol, &outcome, &self.options.command) {
            let _ = out
                .send(Message::Binary(frame(ERROR, &status).into()))
                .await;
        }
        let _ = out
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        drop(out);
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, writer).await;
    }

    /// Runs the process with the client attached; returns how it ended once
    /// its output is drained.
    async fn exec(&self, mut incoming: SplitStream<Ws>, out: mpsc::Sender<Message>) -> Outcome {
        let stdio = match Stdio::open(&self.options) {
            Ok(stdio) => stdio,
            Err(e) => return Outcome::Failed(internal(format!("cannot set up stdio: {e}"))),
        };
        let exited = CancellationToken::new();
        let gone = CancellationToken::new();
        let mut pumps = JoinSet::new();
        for (stream, id) in [(stdio.stdout, STDOUT), (stdio.stderr, STDERR)] {
            if let Some(stream) = stream {
                let ends = Ends {
                    exited: exited.clone(),
                    gone: gone.clone(),
                };
                pumps.spawn(pump(stream, id, out.clone(), ends));
            }
        }
        let mut inbox = Inbox {
            protocol: self.protocol,
            stdin: None,
            pty: stdio.pty,
            open: true,
            gone,
        };
        if let Some(stream) = stdio.stdin {
            let (tx, rx) = mpsc::channel(STDIN_BUFFER);
            tokio::spawn(feed(stream, rx));
            inbox.stdin = Some(tx);
        }

        if self.options.tty && self.protocol.resizes() {
            let first_resize = tokio::time::sleep(FIRST_RESIZE_WAIT);
            tokio::pin!(first_resize);
            while inbox.open {
                tokio::select! {
                    () = &mut first_resize => break,
                    (permit, message) = next_message(&mut incoming, inbox.stdin.clone()) => {
                        if inbox.handle(message, permit) {
                            break;
                        }
                    }
                }
            }
            if !inbox.open {
                return Outcome::Failed("the client went away before the command started".into());
            }
        }

        let (runtime, id) = (self.runtime.clone(), self.id.clone());
        let mut env = Vec::new();
        if self.options.tty {
            // As containerd does for a terminal exec.
            env.push(("TERM".to_owned(), "xterm".to_owned()));
        }
        let request = ExecRequest {
            id: id.clone(),
            args: self.options.command.clone(),
            env,
            cwd: None,
        };
        let child = stdio.child;
        let process =
            tokio::task::spawn_blocking(move || runtime.exec(&id, request, child)?.wait());
        tokio::pin!(process);
        let ended = loop {
            tokio::select! {
                ended = &mut process => break ended,
                (permit, message) = next_message(&mut incoming, inbox.stdin.clone()), if inbox.open => {
                    inbox.handle(message, permit);
                }
            }
        };
        // The process is gone: stdin ends, the outputs are drained.
        drop(inbox);
        exited.cancel();
        while pumps.join_next().await.is_some() {}
        match ended {
            Ok(Ok(exit)) => Outcome::Exited(exit.code),
            Ok(Err(e)) => Outcome::Failed(internal(outpost_runtime::error::chain(&e))),
            Err(e) => Outcome::Failed(internal(format!("the exec task failed: {e}"))),
        }
    }
}

/// The API server's wording for a command that could not run.
fn internal(message: impl std::fmt::Display) -> String {
    format!("Internal error occurred: error executing command in container: {message}")
}

/// The next client message, once stdin has room for it (so a process that
/// does not read its stdin slows the client down instead of filling memory).
async fn next_message(
    incoming: &mut SplitStream<Ws>,
    stdin: Option<mpsc::Sender<Bytes>>,
) -> (
    Option<mpsc::OwnedPermit<Bytes>>,
    Option<Result<Message, tungstenite::Error>>,
) {
    let permit = match stdin {
        Some(tx) => tx.reserve_owned().await.ok(),
        None => None,
    };
    (permit, incoming.next().await)
}

/// What the client sends: stdin data and its end, terminal sizes.
struct Inbox {
    protocol: Protocol,
    /// To the task that writes the process's stdin; dropped at the client's EOF.
    stdin: Option<mpsc::Sender<Bytes>>,
    /// The pty master, for resizes.
    pty: Option<FdStream>,
    /// False once the client closed or the connection broke.
    open: bool,
    /// Cancelled with `open`: the pumps let go of the process's outputs.
    gone: CancellationToken,
}

impl Inbox {
    /// The client is gone: the process sees its stdin end and, on a
    /// terminal, a hangup (no holder of the master is left), as after an ssh
    /// disconnect; on pipes, its next write fails.
    fn hang_up(&mut self) {
        self.open = false;
        self.stdin = None;
        self.pty = None;
        self.gone.cancel();
    }

    /// Acts on one client message; true when it was a resize.
    fn handle(
        &mut self,
        message: Option<Result<Message, tungstenite::Error>>,
        permit: Option<mpsc::OwnedPermit<Bytes>>,
    ) -> bool {
        let data = match message {
            Some(Ok(Message::Binary(data))) => data,
            // Pings are answered by tungstenite; text frames belong to the
            // base64 protocols, which are not served.
            Some(Ok(
                Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_),
            )) => return false,
            Some(Ok(Message::Close(_))) | None => {
                self.hang_up();
                return false;
            }
            Some(Err(e)) => {
                tracing::debug!("exec: reading from the client: {e}");
                self.hang_up();
                return false;
            }
        };
        match data.first() {
            Some(&STDIN) => match permit {
                Some(permit) => {
                    permit.send(data.slice(1..));
                }
                // The process closed its stdin: what the client sends is lost, as with a pipe.
                None => self.stdin = None,
            },
            Some(&RESIZE) => {
                if let (Some(pty), Some((width, height))) = (&self.pty, parse_resize(&data[1..])) {
                    let size = rustix::termios::Winsize {
                        ws_row: height,
                        ws_col: width,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    if let Err(e) = rustix::termios::tcsetwinsize(pty.fd(), size) {
                        tracing::debug!("exec: resizing the terminal: {e}");
                    }
                    return true;
                }
            }
            Some(&CLOSE) if self.protocol == Protocol::V5 && data.get(1) == Some(&STDIN) => {
                self.stdin = None;
            }
            _ => {}
        }
        false
    }
}

/// The process's three descriptors and the agent's ends of them.
struct Stdio {
    child: [OwnedFd; 3],
    stdin: Option<FdStream>,
    stdout: Option<FdStream>,
    stderr: Option<FdStream>,
    /// The pty master (also `stdin`/`stdout`), for resizes.
    pty: Option<FdStream>,
}

impl Stdio {
    fn open(options: &ExecOptions) -> io::Result<Stdio> {
        use rustix::fs::{Mode, OFlags};
        use rustix::pty::OpenptFlags;
        if options.tty {
            let master = rustix::pty::openpt(
                OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
            )?;
            rustix::pty::grantpt(&master)?;
            rustix::pty::unlockpt(&master)?;
            let path = rustix::pty::ptsname(&master, Vec::new())?;
            let slave = rustix::fs::open(
                path.as_c_str(),
                OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let master = FdStream::new(master)?;
            // The terminal is always read, or a process writing to it would block.
            return Ok(Stdio {
                child: [slave.try_clone()?, slave.try_clone()?, slave],
                stdin: options.stdin.then(|| master.clone()),
                stdout: Some(master.clone()),
                stderr: None,
                pty: Some(master),
            });
        }
        let null = || -> io::Result<OwnedFd> {
            Ok(std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?
                .into())
        };
        let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC);
        let (stdin_child, stdin) = if options.stdin {
            let (read, write) = pipe()?;
            (read, Some(FdStream::new(write)?))
        } else {
            (null()?, None)
        };
        let output = |wanted: bool| -> io::Result<(OwnedFd, Option<FdStream>)> {
            if wanted {
                let (read, write) = pipe()?;
                Ok((write, Some(FdStream::new(read)?)))
            } else {
                Ok((null()?, None))
            }
        };
        let (stdout_child, stdout) = output(options.stdout)?;
        let (stderr_child, stderr) = output(options.stderr)?;
        Ok(Stdio {
            child: [stdin_child, stdout_child, stderr_child],
            stdin,
            stdout,
            stderr,
            pty: None,
        })
    }
}

/// The agent's end of a pipe, or the pty master: nonblocking, driven by tokio.
/// Clones share one registration (a pty master is read and written at once).
#[derive(Clone)]
struct FdStream(Arc<AsyncFd<OwnedFd>>);

impl FdStream {
    fn new(fd: OwnedFd) -> io::Result<FdStream> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        // SAFETY: the `OwnedFd` is open and owned by the `AsyncFd` until it is
        // dropped; its `as_raw_fd` always returns that same descriptor.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(FdStream(Arc::new(fd)))
    }

    fn fd(&self) -> &OwnedFd {
        self.0.get_ref()
    }

    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.0.readable().await?;
            match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut *buf)?)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut ready = self.0.writable().await?;
            match ready.try_io(|fd| Ok(rustix::io::write(fd.get_ref(), data)?)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

/// When a pump stops early.
struct Ends {
    /// The process exited: drain what is left, then stop.
    exited: CancellationToken,
    /// The client is gone: stop at once.
    gone: CancellationToken,
}

/// Copies one of the process's outputs to stream `id` until its end, the
/// client's, or, once the process has exited, until it stays quiet for
/// [`DRAIN_IDLE`].
async fn pump(stream: FdStream, id: u8, out: mpsc::Sender<Message>, ends: Ends) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let read = if ends.exited.is_cancelled() {
            tokio::select! {
                read = tokio::time::timeout(DRAIN_IDLE, stream.read(&mut buf)) => match read {
                    Ok(read) => read,
                    Err(_quiet) => return,
                },
                () = ends.gone.cancelled() => return,
            }
        } else {
            tokio::select! {
                read = stream.read(&mut buf) => read,
                () = ends.exited.cancelled() => continue,
                () = ends.gone.cancelled() => return,
            }
        };
        match read {
            Ok(0) => return,
            Ok(n) => {
                if out
                    .send(Message::Binary(frame(id, &buf[..n]).into()))
                    .await
                    .is_err()
                {
                    // The client is gone: closing our end stops the writer (EPIPE).
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A pty master reads EIO once no process holds the slave.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => return,
            Err(e) => {
                tracing::debug!("exec: reading stream {id}: {e}");
                return;
            }
        }
    }
}

/// Writes what the client sends to the process's stdin; our end closes (the
/// process's EOF) when the client's stdin ends.
async fn feed(stream: FdStream, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(data) = rx.recv().await {
        if let Err(e) = stream.write_all(&data).await {
            tracing::debug!("exec: writing stdin: {e}");
            return;
        }
    }
}

/// Sends every queued message to the client, in order.
async fn send_all(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::Receiver<Message>) {
    while let Some(message) = rx.recv().await {
        let close = matches!(message, Message::Close(_));
        if let Err(e) = sink.send(message).await {
            tracing::debug!("exec: writing to the client: {e}");
            return;
        }
        if close {
            return;
        }
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_parse_like_the_api_server() {
        fn check(query: &str, expect: Result<ExecOptions, &str>) {
            let got = ExecOptions::parse(Some(query)).map_err(|e| e.message);
            assert_eq!(got, expect.map_err(str::to_owned), "{query}");
        }
        check(
            "command=sh&command=-c&command=echo%20a%3Bexit+3&container=web&stdout=true&stderr=true",
            Ok(ExecOptions {
                command: strings(&["sh", "-c", "echo a;exit 3"]),
                container: Some("web".into()),
                stdout: true,
                stderr: true,
                ..ExecOptions::default()
            }),
        );
        // A terminal carries both outputs: stderr is dropped, as the kubelet does.
        check(
            "command=sh&stdin=true&stdout=true&stderr=true&tty=true",
            Ok(ExecOptions {
                command: strings(&["sh"]),
                stdin: true,
                stdout: true,
                tty: true,
                ..ExecOptions::default()
            }),
        );
        check(
            "stdout=true",
            Err("you must specify at least one command for the container"),
        );
        check(
            "command=ls",
            Err("you must specify at least 1 of stdin, stdout, stderr"),
        );
        check(
            "command=ls&stdout=yes",
            Err("invalid value \"yes\" for stdout: expected true or false"),
        );
        let options = ExecOptions {
            command: strings(&["sh", "-c", "echo a b; exit 3"]),
            container: Some("c 1".into()),
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        assert_eq!(
            options.query(),
            "command=sh&command=-c&command=echo%20a%20b%3B%20exit%203&container=c%201&stdin=true&stdout=true&stderr=true"
        );
        assert_eq!(ExecOptions::parse(Some(&options.query())), Ok(options));
    }

    #[test]
    fn protocols_negotiate_with_v5_preferred() {
        fn check(offered: &[&str], expect: Result<Option<&str>, &str>) {
            let got = Protocol::negotiate(offered)
                .map(|p| p.map(Protocol::name))
                .map_err(|e| e.message);
            assert_eq!(got, expect.map_err(str::to_owned), "{offered:?}");
        }
        check(
            &["v4.channel.k8s.io", "v5.channel.k8s.io"],
            Ok(Some("v5.channel.k8s.io")),
        );
        check(
            &["v4.channel.k8s.io", "base64.channel.k8s.io"],
            Ok(Some("v4.channel.k8s.io")),
        );
        check(&["channel.k8s.io"], Ok(Some("channel.k8s.io")));
        check(&[], Ok(None));
        check(
            &["base64.channel.k8s.io"],
            Err(
                "requested protocol(s) are not supported: [base64.channel.k8s.io]; \
                 supports [v5.channel.k8s.io v4.channel.k8s.io channel.k8s.io]",
            ),
        );
        assert_eq!(Protocol::from_name("v4.channel.k8s.io"), Some(Protocol::V4));
    }

    #[test]
    fn frames_carry_the_stream_id_first() {
        assert_eq!(frame(STDOUT, b"hi\n"), b"\x01hi\n");
        assert_eq!(frame(STDIN, b""), [0]);
        let resize = resize_message(120, 40);
        assert_eq!(resize[0], RESIZE);
        assert_eq!(&resize[1..], br#"{"Height":40,"Width":120}"#);
        assert_eq!(parse_resize(&resize[1..]), Some((120, 40)));
        assert_eq!(parse_resize(br#"{"Width":80,"Height":24}"#), Some((80, 24)));
        assert_eq!(parse_resize(br#"{"Width":80}"#), None);
        assert_eq!(parse_resize(br#"{"Width":-1,"Height":24}"#), None);
        assert_eq!(parse_resize(b"junk"), None);
    }

    #[test]
    fn statuses_render_and_decode() {
        let command = strings(&["sh", "-c", "exit 3"]);
        fn check(protocol: Protocol, outcome: Outcome, command: &[String], expect: Option<&str>) {
            let message = status_message(protocol, &outcome, command);
            let text = message.as_deref().map(String::from_utf8_lossy);
            assert_eq!(text.as_deref(), expect, "{protocol:?} {outcome:?}");
            // What a client reads back.
            let decoded = decode_status(protocol, message.as_deref().unwrap_or_default());
            match (&outcome, decoded) {
                (Outcome::Exited(code), Outcome::Exited(got)) => assert_eq!(*code, got),
                (Outcome::Exited(_), Outcome::Failed(m)) => {
                    assert_eq!(protocol, Protocol::V1);
                    assert!(m.contains("exit code"), "{m}");
                }
                (Outcome::Failed(want), Outcome::Failed(got)) => {
                    assert!(got.ends_with(want.as_str()))
                }
                (want, got) => panic!("{want:?} read back as {got:?}"),
            }
        }
        check(
            Protocol::V5,
            Outcome::Exited(0),
            &command,
            Some(r#"{"metadata":{},"status":"Success"}"#),
        );
        check(
            Protocol::V4,
            Outcome::Exited(3),
            &command,
            Some(
                r#"{"details":{"causes":[{"message":"3","reason":"ExitCode"}]},"message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","metadata":{},"reason":"NonZeroExitCode","status":"Failure"}"#,
            ),
        );
        // Killed by SIGKILL: 128 + 9.
        check(
            Protocol::V5,
            Outcome::Exited(137),
            &command,
            Some(
                r#"{"details":{"causes":[{"message":"137","reason":"ExitCode"}]},"message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 137","metadata":{},"reason":"NonZeroExitCode","status":"Failure"}"#,
            ),
        );
        check(
            Protocol::V5,
            Outcome::Failed("Internal error occurred: nope".into()),
            &command,
            Some(
                r#"{"code":500,"details":{"causes":[{"message":"Internal error occurred: nope"}]},"message":"Internal error occurred: nope","metadata":{},"reason":"InternalError","status":"Failure"}"#,
            ),
        );
        check(Protocol::V1, Outcome::Exited(0), &command, None);
        check(
            Protocol::V1,
            Outcome::Exited(2),
            &command,
            Some("command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 2"),
        );
        assert_eq!(
            decode_status(
                Protocol::V5,
                b"{\"status\":\"Failure\",\"reason\":\"NonZeroExitCode\"}"
            ),
            Outcome::Failed("error stream protocol error: no ExitCode cause given".into())
        );
        assert_eq!(
            decode_status(Protocol::V4, b"{\"status\":\"Weird\"}"),
            Outcome::Failed("error stream protocol error: unknown error".into())
        );
        assert!(
            matches!(decode_status(Protocol::V5, b"not json"), Outcome::Failed(m) if m.contains("not a Status"))
        );
    }

    #[test]
    fn targets_are_running_containers() {
        fn pod(phase: &str, statuses: Value) -> Value {
            json!({
                "metadata": {"name": "web"},
                "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                "status": {"phase": phase, "containerStatuses": statuses},
            })
        }
        fn check(pod: &Value, requested: Option<&str>, expect: Result<(&str, &str), &str>) {
            let got = target(pod, requested).map_err(|e| (e.code, e.message));
            let expect = expect
                .map(|(c, id)| (c.to_owned(), id.to_owned()))
                .map_err(|m| (400, m.to_owned()));
            assert_eq!(got, expect, "{requested:?}");
        }
        let statuses = json!([
            {"name": "a", "containerID": "outpost://pod.u.a.0", "state": {"running": {}}},
            {"name": "b", "containerID": "outpost://pod.u.b.1", "state": {"terminated": {"exitCode": 1}}},
        ]);
        let web = pod("Running", statuses.clone());
        check(&web, Some("a"), Ok(("a", "pod.u.a.0")));
        check(&web, Some("b"), Err("container b is not running"));
        check(
            &web,
            None,
            Err("a container name must be specified for pod web, choose one of: [a b]"),
        );
        check(&web, Some("c"), Err("container c is not valid for pod web"));
        let waiting = pod(
            "Pending",
            json!([{"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}}]),
        );
        check(&waiting, Some("a"), Err("container a is not running"));
        check(
            &pod("Pending", Value::Null),
            Some("a"),
            Err("container a is not running"),
        );
        check(
            &pod("Succeeded", statuses),
            Some("a"),
            Err("cannot exec into a container in a completed pod; current phase is Succeeded"),
        );
    }
}
