//! A small HTTP/1.1 client for the agent's local API over its Unix socket,
//! for the kubectl-shaped verbs (`get`, `describe`, `logs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use super::NodeDirs;

/// Where the CLI finds the agent.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    #[command(flatten)]
    pub dirs: NodeDirs,
    /// The agent's API socket [default: <run-dir>/outpost.sock].
    #[arg(long, env = "OUTPOST_SOCKET", global = true)]
    pub socket: Option<PathBuf>,
}

impl ApiArgs {
    /// The socket to use: `--socket`, `$OUTPOST_SOCKET`, else the run dir's.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| crate::paths::api_socket(&self.dirs.run_dir))
    }

    /// A client for that socket.
    pub fn client(&self) -> Client {
        Client::new(self.socket_path())
    }
}

/// A failure the API reported with a `Status` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusError {
    pub code: u16,
    /// `NotFound`, `BadRequest`, ….
    pub reason: String,
    pub message: String,
}

impl StatusError {
    /// The `Status` a refused request came back with.
    pub(crate) async fn from_response(response: Response<Incoming>) -> StatusError {
        let code = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        StatusError::from_status(code, &body)
    }

    pub(crate) fn from_status(code: u16, body: &[u8]) -> StatusError {
        let status: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| {
            status
                .as_ref()
                .and_then(|s| s.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let fallback = || String::from_utf8_lossy(body).trim().to_owned();
        StatusError {
            code,
            reason: field("reason").unwrap_or_else(|| {
                hyper::StatusCode::from_u16(code)
                    .ok()
                    .and_then(|c| c.canonical_reason())
                    .unwrap_or("Unknown")
                    .replace(' ', "")
            }),
            message: field("message").unwrap_or_else(fallback),
        }
    }

    /// Whether the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }
}

impl std::fmt::Display for StatusError {
    /// kubectl's form: `Error from server (NotFound): pods "web" not found`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error from server ({}): {}", self.reason, self.message)
    }
}

impl std::error::Error for StatusError {}

/// Prints an API failure as kubectl does (no `error:` prefix) and exits 1;
/// other errors go on to `main`.
pub fn report(result: anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    match result {
        Err(e) => match e.downcast_ref::<StatusError>() {
            Some(status) => {
                eprintln!("{status}");
                Ok(ExitCode::FAILURE)
            }
            None => Err(e),
        },
        ok => ok,
    }
}

/// Writes to stdout; a closed pipe (`| head`) is no error but `Ok(false)`,
/// so the command ends quietly as kubectl does.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<bool> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// Talks to the agent's API.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
        }
    }

    /// The socket this client uses.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn send(&self, path: &str) -> anyhow::Result<Response<Incoming>> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the outpost agent at {}: {e}; is it running? start it with `outpost agent` \
                 (or `systemctl start outpost`)",
                self.socket.display()
            )
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| {
                format!("talking to the outpost agent at {}", self.socket.display())
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("api client connection: {e}");
            }
        });
        let request = Request::get(path)
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .with_context(|| format!("invalid request path {path:?}"))?;
        sender.send_request(request).await.with_context(|| {
            format!(
                "the outpost agent at {} did not answer GET {path}",
                self.socket.display()
            )
        })
    }

    /// A successful response, or its `Status` as a [`StatusError`].
    async fn ok(&self, path: &str) -> anyhow::Result<Response<Incoming>> {
        let response = self.send(path).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(StatusError::from_response(response).await.into())
    }

    /// GETs a whole body.
    pub async fn get_bytes(&self, path: &str) -> anyhow::Result<Bytes> {
        let response = self.ok(path).await?;
        Ok(response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer to GET {path}"))?
            .to_bytes())
    }

    /// GETs a JSON object.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let bytes = self.get_bytes(path).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the answer to GET {path} is not JSON"))
    }

    /// GETs a streamed body (a watch, a followed log).
    pub async fn stream(&self, path: &str) -> anyhow::Result<ResponseStream> {
        let response = self.ok(path).await?;
        Ok(ResponseStream {
            body: response.into_body(),
            buffer: Vec::new(),
        })
    }
}

/// A response read as it arrives.
#[derive(Debug)]
pub struct ResponseStream {
    body: Incoming,
    buffer: Vec<u8>,
}

impl ResponseStream {
    /// The next chunk of data, `None` at the end.
    pub async fn chunk(&mut self) -> anyhow::Result<Option<Bytes>> {
        if !self.buffer.is_empty() {
            return Ok(Some(Bytes::from(std::mem::take(&mut self.buffer))));
        }
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame.context("the agent broke off the stream")?.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The next line (without its `\n`); a last line without one is returned too.
    pub async fn line(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let rest = self.buffer.split_off(end + 1);
                let mut line = std::mem::replace(&mut self.buffer, rest);
                line.pop();
                return Ok(Some(line));
            }
            match self.body.frame().await {
                None if self.buffer.is_empty() => return Ok(None),
                None => return Ok(Some(std::mem::take(&mut self.buffer))),
                Some(frame) => {
                    if let Ok(data) = frame.context("the agent broke off the stream")?.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next watch event: (`ADDED`|`MODIFIED`|`DELETED`, object). An
    /// `ERROR` event becomes a [`StatusError`].
    pub async fn event(&mut self) -> anyhow::Result<Option<(String, Value)>> {
        loop {
            let Some(line) = self.line().await? else {
                return Ok(None);
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let mut event: Value =
                serde_json::from_slice(&line).context("a watch event is not JSON")?;
            let kind = event
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let object = event
                .get_mut("object")
                .map(Value::take)
                .unwrap_or(Value::Null);
            if kind == "ERROR" {
                let code = object.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
                let body = serde_json::to_vec(&object).unwrap_or_default();
                return Err(StatusError::from_status(code, &body).into());
            }
            return Ok(Some((kind, object)));
        }
    }
}
