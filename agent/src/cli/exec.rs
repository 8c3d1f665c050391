//! `outpost exec POD [-c CONTAINER] [-i] [-t] -- CMD [ARGS]...`: a command in a
//! pod container through the agent's API, as `kubectl exec`: a WebSocket on
//! the API socket speaking `v5.channel.k8s.io` (or `v4.channel.k8s.io`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Empty;
use hyper::header::{self, HeaderValue};
use hyper::upgrade::Upgraded;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustix::termios::{OptionalActions, Termios};
use tokio::net::UnixStream;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::client::{report, ApiArgs, StatusError};
use super::logs::default_container;
use crate::api::exec::{
    decode_status, frame, resize_message, ExecOptions, Outcome, Protocol, CLOSE, ERROR, STDERR,
    STDIN, STDOUT,
};

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The pod (NAME or pod/NAME).
    pub pod: String,
    /// The container; by default the pod's default container.
    #[arg(short, long)]
    pub container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give the command a terminal (with -i, when stdin is a terminal).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Only print what the command prints.
    #[arg(short, long)]
    pub quiet: bool,
    /// The namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub async fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    report(exec(args).await)
}

async fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let pod = match args.pod.split_once('/') {
        Some(("pod" | "pods" | "po", name)) => name.to_owned(),
        Some((kind, _)) => {
            anyhow::bail!("cannot exec into a {kind}: name a pod (NAME or pod/NAME)")
        }
        None => args.pod.clone(),
    };
    let client = args.api.client();
    let container = match &args.container {
        Some(c) => c.clone(),
        None => {
            let object = client
                .get(&format!("/api/v1/namespaces/{}/pods/{pod}", args.namespace))
                .await?;
            let (chosen, note) = default_container(&object)
                .with_context(|| format!("pod {pod} has no containers"))?;
            if let (Some(note), false) = (note, args.quiet) {
                eprintln!("{note}");
            }
            chosen
        }
    };
    // kubectl's rules: a terminal only for -i -t with a terminal on stdin.
    let tty = args.tty && args.stdin && rustix::termios::isatty(std::io::stdin());
    if args.tty && args.stdin && !tty && !args.quiet {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    let options = ExecOptions {
        command: args.command.clone(),
        container: Some(container),
        stdin: args.stdin,
        stdout: true,
        stderr: !tty,
        tty,
    };
    let path = format!(
        "/api/v1/namespaces/{}/pods/{pod}/exec?{}",
        args.namespace,
        options.query()
    );
    let (ws, protocol) = connect(client.socket(), &path).await?;
    let raw = tty.then(RawMode::enter).transpose()?;
    let outcome = attach(ws, protocol, args.stdin, tty).await;
    drop(raw);
    match outcome? {
        Outcome::Exited(0) => Ok(ExitCode::SUCCESS),
        Outcome::Exited(code) => {
            // kubectl's words; the code is the command's.
            eprintln!("command terminated with exit code {code}");
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Outcome::Failed(message) => Err(anyhow::anyhow!(message)),
    }
}

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Opens the exec WebSocket: an HTTP/1.1 upgrade on the API socket. A refusal
/// (no such pod, container not running) is the API's `Status`.
async fn connect(socket: &Path, path: &str) -> anyhow::Result<(Ws, Protocol)> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the outpost agent at {}: {e}; is it running? start it with `outpost agent` \
             (or `systemctl start outpost`)",
            socket.display()
        )
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("talking to the outpost agent at {}", socket.display()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("exec connection: {e}");
        }
    });
    let key = tungstenite::handshake::client::generate_key();
    let offered = [Protocol::V5, Protocol::V4].map(Protocol::name).join(", ");
    let request = Request::get(path)
        .header(header::HOST, "localhost")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, &key)
        .header(header::SEC_WEBSOCKET_PROTOCOL, offered)
        .body(Empty::<Bytes>::new())
        .with_context(|| format!("invalid request path {path:?}"))?;
    let mut response = sender.send_request(request).await.with_context(|| {
        format!(
            "the outpost agent at {} did not answer the exec request",
            socket.display()
        )
    })?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(StatusError::from_response(response).await.into());
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let headers = response.headers();
    if headers.get(header::SEC_WEBSOCKET_ACCEPT) != HeaderValue::from_str(&accept).ok().as_ref() {
        anyhow::bail!(
            "the outpost agent answered the exec upgrade with a wrong Sec-WebSocket-Accept"
        );
    }
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(Protocol::from_name)
        .filter(|p| matches!(p, Protocol::V5 | Protocol::V4))
        .context("the outpost agent speaks neither v5.channel.k8s.io nor v4.channel.k8s.io")?;
    let upgraded = hyper::upgrade::on(&mut response)
        .await
        .context("upgrading the exec connection")?;
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    Ok((ws, protocol))
}

/// Streams stdin, stdout, stderr and terminal sizes until the agent sends how
/// the command ended and closes.
async fn attach(ws: Ws, protocol: Protocol, stdin: bool, tty: bool) -> anyhow::Result<Outcome> {
    let (mut sink, mut incoming) = ws.split();
    let mut input = stdin.then(read_stdin);
    let mut winch = tty
        .then(|| signal(SignalKind::window_change()))
        .transpose()?;
    // In raw mode ^C is a byte for the remote side; these still end us, and
    // must leave the terminal as it was.
    let mut ends = if tty {
        vec![
            (signal(SignalKind::terminate())?, "SIGTERM"),
            (signal(SignalKind::hangup())?, "SIGHUP"),
        ]
    } else {
        Vec::new()
    };
    if tty {
        send(&mut sink, resize()).await;
    }
    let mut error = Vec::new();
    let mut stdout_open = true;
    loop {
        tokio::select! {
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(data))) => match data.first() {
                    Some(&STDOUT) if stdout_open => {
                        stdout_open = write_out(std::io::stdout().lock(), &data[1..])?;
                    }
                    Some(&STDERR) => {
                        write_out(std::io::stderr().lock(), &data[1..])?;
                    }
                    Some(&ERROR) => error.extend_from_slice(&data[1..]),
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) if error.is_empty() => {
                    return Err(anyhow::Error::new(e).context("the exec stream broke off"));
                }
                Some(Err(_)) => break,
            },
            chunk = recv(&mut input) => match chunk {
                Some(data) => {
                    if !send(&mut sink, frame(STDIN, &data)).await {
                        input = None;
                    }
                }
                None => {
                    // End of stdin: v5 can say so; v4 cannot (the command keeps waiting).
                    input = None;
                    if protocol == Protocol::V5 {
                        send(&mut sink, vec![CLOSE, STDIN]).await;
                    }
                }
            },
            Some(()) = next_signal(&mut winch) => {
                send(&mut sink, resize()).await;
            },
            name = ended(&mut ends) => anyhow::bail!("exec interrupted by {name}"),
        }
    }
    if error.is_empty() {
        anyhow::bail!(
            "the outpost agent closed the exec stream without saying how the command ended"
        );
    }
    Ok(decode_status(protocol, &error))
}

/// Sends a binary message; false when the agent is no longer listening (it
/// still gets to say how the command ended).
async fn send(sink: &mut futures_util::stream::SplitSink<Ws, Message>, data: Vec<u8>) -> bool {
    match sink.send(Message::Binary(data.into())).await {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!("exec: sending: {e}");
            false
        }
    }
}

/// Writes output; `Ok(false)` once the reader is gone (`| head`), as kubectl
/// carries on quietly.
fn write_out(mut out: impl Write, data: &[u8]) -> anyhow::Result<bool> {
    match out.write_all(data).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("writing the command's output")),
    }
}

/// The local terminal's size as a resize message (80x24 when unknown).
fn resize() -> Vec<u8> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout())
        .or_else(|_| rustix::termios::tcgetwinsize(std::io::stdin()))
        .ok()
        .filter(|s| s.ws_col > 0 && s.ws_row > 0);
    match size {
        Some(s) => resize_message(s.ws_col, s.ws_row),
        None => resize_message(80, 24),
    }
}

/// Stdin in chunks, read on a thread of its own (a terminal or a file cannot
/// be polled; the thread is simply left behind at exit). The channel closes
/// at EOF.
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("exec: reading stdin: {e}");
                    return;
                }
            }
        }
    });
    rx
}

/// The next stdin chunk; pending forever without stdin.
async fn recv(input: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_signal(signal: &mut Option<Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The name of the first of `signals` to arrive; pending forever without any.
async fn ended(signals: &mut [(Signal, &'static str)]) -> &'static str {
    if signals.is_empty() {
        return std::future::pending().await;
    }
    let waits = signals.iter_mut().map(|(s, n)| {
        let n = *n;
        Box::pin(async move {
            s.recv().await;
            n
        })
    });
    futures_util::future::select_all(waits).await.0
}

/// The local terminal in raw mode (keys go to the remote side as typed);
/// restored on drop, and by a panic hook should anything panic meanwhile.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).context("reading the terminal's mode")?;
        let mut raw = saved.clone();
        raw.make_raw();
        let restore = saved.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = rustix::termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &restore);
            previous(info);
        }));
        rustix::termios::tcsetattr(&stdin, OptionalActions::Now, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_like_kubectl() {
        let body = br#"{"kind":"Status","status":"Failure","reason":"NotFound","message":"pods \"nope\" not found","code":404}"#;
        assert_eq!(
            StatusError::from_status(404, body).to_string(),
            "Error from server (NotFound): pods \"nope\" not found"
        );
        assert_eq!(
            StatusError::from_status(503, b"busy\n").to_string(),
            "Error from server (ServiceUnavailable): busy"
        );
    }

    /// The refusals before any upgrade, from an in-process API without a runtime.
    #[tokio::test]
    async fn refusals_come_before_the_upgrade() {
        use crate::state::{ClusterState, ObjectKey};
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("outpost.sock");
        let state = ClusterState::default();
        state.upsert(
            ObjectKey::namespaced("Pod", "default", "web"),
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "default", "uid": "u"},
                "spec": {"containers": [{"name": "web"}]},
                "status": {"phase": "Running", "containerStatuses": [
                    {"name": "web", "containerID": "outpost://pod.u.web.0", "state": {"running": {}}},
                ]},
            }),
        );
        let shutdown = tokio_util::sync::CancellationToken::new();
        let config = crate::api::ApiConfig {
            socket: socket.clone(),
            state_dir: dir.path().join("state"),
            runtime: None,
        };
        let server = tokio::spawn(crate::api::serve(config, state, shutdown.clone()));
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let refusal = |result: anyhow::Result<(Ws, Protocol)>| match result {
            Ok(_) => panic!("the exec was accepted"),
            Err(e) => e.to_string(),
        };
        let path =
            |pod: &str, query: &str| format!("/api/v1/namespaces/default/pods/{pod}/exec?{query}");
        assert_eq!(
            refusal(connect(&socket, &path("nope", "command=true&stdout=true")).await),
            "Error from server (NotFound): pods \"nope\" not found"
        );
        assert_eq!(
            refusal(
                connect(
                    &socket,
                    &path("web", "command=true&stdout=true&container=x")
                )
                .await
            ),
            "Error from server (BadRequest): container x is not valid for pod web"
        );
        assert_eq!(
            refusal(connect(&socket, &path("web", "stdout=true")).await),
            "Error from server (BadRequest): you must specify at least one command for the container"
        );
        assert_eq!(
            refusal(connect(&socket, &path("web", "command=true&stdout=true")).await),
            "Error from server (ServiceUnavailable): exec is not available: this API server has no container runtime"
        );
        // A plain request is no upgrade.
        let plain = crate::cli::client::Client::new(&socket)
            .get(&path("web", "command=true&stdout=true"))
            .await;
        assert_eq!(
            plain.map_err(|e| e.to_string()).err().as_deref(),
            Some("Error from server (BadRequest): Upgrade request required")
        );
        let missing = connect(&dir.path().join("none.sock"), &path("web", "")).await;
        assert!(refusal(missing).contains("is it running?"));
        shutdown.cancel();
        let _ = server.await;
    }

    #[test]
    fn args_parse_like_kubectl() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "outpost", "exec", "-it", "web", "-c", "a", "-n", "prod", "--", "sh", "-c", "echo hi",
        ])
        .expect("parse");
        let crate::cli::Command::Exec(args) = cli.command else {
            panic!("not exec: {:?}", cli.command);
        };
        assert!(args.stdin && args.tty && !args.quiet);
        assert_eq!(args.pod, "web");
        assert_eq!(args.container.as_deref(), Some("a"));
        assert_eq!(args.namespace, "prod");
        assert_eq!(args.command, ["sh", "-c", "echo hi"]);
        assert!(crate::cli::Cli::try_parse_from(["outpost", "exec", "web"]).is_err());
    }
}
