//! `https://…` (and `http://` when allowed): one bundle polled with
//! ETag/If-None-Match every interval (±10% jitter). While the server cannot be
//! reached or answers an error, retries back off from `backoff_base` doubling to
//! the larger of `backoff_max` and the interval, each retry announced as
//! `Unreachable`. With a public key, `<url>.minisig` is fetched and checked
//! before anything is sent; a missing or bad signature refuses the content.
//!
//! The ETag is kept only for accepted content, so refused content is fetched
//! again at the next poll (a signature published later is then picked up);
//! the same refusal is reported once, not at every poll.

use minisign_verify::{PublicKey, Signature};
use reqwest::header::{HeaderValue, AUTHORIZATION, ETAG, IF_NONE_MATCH};
use reqwest::{Certificate, Client, Response, StatusCode, Url};

use super::{
    content_version, decode_public_key, error_chain, jitter, random_unit, Backoff, Outbox,
};
use super::{SourceConfig, SourceFile, Tuning};

/// Largest bundle accepted.
const MAX_BODY: usize = 16 << 20;
/// Largest signature file read (a minisign signature is a few hundred bytes).
const MAX_SIGNATURE: usize = 64 << 10;

/// What one poll found.
#[derive(Debug)]
enum Outcome {
    /// Not modified, or the same content under another ETag.
    Unchanged,
    Changed {
        files: Vec<SourceFile>,
        version: String,
    },
    Refused(String),
    Unreachable(String),
}

pub(super) async fn run(config: SourceConfig, url: Url, tuning: Tuning, out: Outbox) {
    let key = match config
        .public_key
        .as_deref()
        .map(decode_public_key)
        .transpose()
    {
        Ok(key) => key,
        Err(error) => {
            out.refused(error).await;
            return;
        }
    };
    let mut backoff = Backoff::new(tuning.backoff_base, tuning.backoff_max.max(config.interval));
    let interval = config.interval;
    let mut poller = Poller {
        signature_url: signature_url(&url),
        url,
        config,
        key,
        tuning,
        client: None,
        etag: None,
        last_version: None,
    };
    let mut last_refusal: Option<String> = None;
    loop {
        let outcome = tokio::select! {
            biased;
            () = out.shutdown.cancelled() => return,
            outcome = poller.poll() => outcome,
        };
        let mut delay = jitter(interval, 0.1, random_unit());
        let sent = match outcome {
            Outcome::Unchanged => {
                backoff.reset();
                last_refusal = None;
                true
            }
            Outcome::Changed { files, version } => {
                backoff.reset();
                last_refusal = None;
                out.bundle(files, version).await
            }
            Outcome::Refused(error) => {
                backoff.reset();
                if last_refusal.as_deref() == Some(&error) {
                    true
                } else {
                    last_refusal = Some(error.clone());
                    out.refused(error).await
                }
            }
            Outcome::Unreachable(error) => {
                last_refusal = None;
                // A new client at the next try: a fresh connection pool, and
                // the CA file read again in case it was fixed or rotated.
                poller.client = None;
                delay = backoff.next_delay();
                out.unreachable(error, delay).await
            }
        };
        if !sent || !out.sleep(delay).await {
            return;
        }
    }
}

struct Poller {
    config: SourceConfig,
    url: Url,
    signature_url: Url,
    key: Option<PublicKey>,
    tuning: Tuning,
    client: Option<Client>,
    /// The ETag of the last accepted content.
    etag: Option<String>,
    /// [`content_version`] of the last content sent.
    last_version: Option<String>,
}

impl Poller {
    async fn poll(&mut self) -> Outcome {
        let (content, etag) = match self.fetch().await {
            Ok(Some(fetched)) => fetched,
            Ok(None) => return Outcome::Unchanged,
            Err(outcome) => return outcome,
        };
        let files = vec![SourceFile {
            name: self.config.url.clone(),
            content,
        }];
        let hash = content_version(&files);
        self.etag.clone_from(&etag);
        if self.last_version.as_deref() == Some(&hash) {
            return Outcome::Unchanged;
        }
        self.last_version = Some(hash.clone());
        Outcome::Changed {
            files,
            version: etag.unwrap_or(hash),
        }
    }

    /// The bundle and its ETag, `None` when not modified, or why not.
    async fn fetch(&mut self) -> Result<Option<(Vec<u8>, Option<String>)>, Outcome> {
        let client = self.client()?;
        let auth = self.authorization().await?;
        let source = &self.config.url;
        let mut request = client.get(self.url.clone());
        if let Some(etag) = &self.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(auth) = &auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let response = request.send().await.map_err(|e| unreachable(source, &e))?;
        match response.status() {
            StatusCode::NOT_MODIFIED => return Ok(None),
            StatusCode::OK => {}
            status => return Err(Outcome::Unreachable(self.status_error(source, status))),
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match read_capped(response, MAX_BODY).await {
            Ok(body) => body,
            Err(ReadError::TooBig) => {
                return Err(Outcome::Refused(format!(
                    "bundle {source} is larger than the {} MiB limit: split it across sources",
                    MAX_BODY >> 20
                )))
            }
            Err(ReadError::Failed(e)) => return Err(unreachable(source, &e)),
        };
        if let Some(key) = &self.key {
            self.verify(&client, auth, key, &body).await?;
        }
        Ok(Some((body, etag)))
    }

    /// Checks `body` against `<url>.minisig`.
    async fn verify(
        &self,
        client: &Client,
        auth: Option<HeaderValue>,
        key: &PublicKey,
        body: &[u8],
    ) -> Result<(), Outcome> {
        let source = &self.config.url;
        let sig_url = self.signature_url.as_str();
        let mut request = client.get(self.signature_url.clone());
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth);
        }
        let response = request.send().await.map_err(|e| unreachable(sig_url, &e))?;
        match response.status() {
            StatusCode::OK => {}
            status @ (StatusCode::NOT_FOUND | StatusCode::GONE) => {
                return Err(Outcome::Refused(format!(
                    "{source} is not signed: {sig_url} answered {status}; publish its minisign \
                     signature there (minisign -S -m FILE makes FILE.minisig)"
                )))
            }
            status => return Err(Outcome::Unreachable(self.status_error(sig_url, status))),
        }
        let not_a_signature = |why: &str| {
            Outcome::Refused(format!(
                "signature {sig_url} for {source} is not a minisign signature ({why})"
            ))
        };
        let raw = match read_capped(response, MAX_SIGNATURE).await {
            Ok(raw) => raw,
            Err(ReadError::TooBig) => return Err(not_a_signature("too large")),
            Err(ReadError::Failed(e)) => return Err(unreachable(sig_url, &e)),
        };
        let text = String::from_utf8(raw).map_err(|_| not_a_signature("not text"))?;
        let signature = Signature::decode(&text).map_err(|e| not_a_signature(&e.to_string()))?;
        key.verify(body, &signature, false).map_err(|e| {
            Outcome::Refused(match e {
                minisign_verify::Error::UnexpectedKeyId => format!(
                    "{source} is signed ({sig_url}) with another key than the configured public_key"
                ),
                minisign_verify::Error::UnexpectedAlgorithm => format!(
                    "signature {sig_url} for {source} is a legacy (not pre-hashed) minisign signature: \
                     sign again with a current minisign"
                ),
                minisign_verify::Error::InvalidSignature => format!(
                    "signature {sig_url} does not match {source}: the bundle or its signature was altered, \
                     or only one of them was published"
                ),
                other => format!("signature {sig_url} for {source} cannot be checked: {other}"),
            })
        })
    }

    fn client(&mut self) -> Result<Client, Outcome> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = build_client(&self.config, &self.tuning).map_err(Outcome::Unreachable)?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// `Bearer <token>`, read from the token file at each request: tokens rotate.
    async fn authorization(&self) -> Result<Option<HeaderValue>, Outcome> {
        let Some(path) = &self.config.bearer_token_file else {
            return Ok(None);
        };
        let shown = path.display();
        let source = &self.config.url;
        let token = tokio::fs::read_to_string(path).await.map_err(|e| {
            Outcome::Unreachable(format!(
                "source {source}: cannot read bearer_token_file {shown}: {e}"
            ))
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(Outcome::Unreachable(format!(
                "source {source}: bearer_token_file {shown} is empty"
            )));
        }
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            Outcome::Unreachable(format!(
                "source {source}: bearer_token_file {shown} holds characters a token cannot have"
            ))
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    fn status_error(&self, url: &str, status: StatusCode) -> String {
        let hint = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                match &self.config.bearer_token_file {
                    Some(path) => {
                        format!(": check the token in bearer_token_file {}", path.display())
                    }
                    None => ": the server wants a token, set bearer_token_file".to_owned(),
                }
            }
            StatusCode::NOT_FOUND => ": check the URL".to_owned(),
            _ => String::new(),
        };
        format!("{url} answered {status}{hint}")
    }
}

/// A client for `config`: only the CAs of `ca_file` when given (as kubeconfig's
/// certificate-authority, they replace the system's), never a downgrade to
/// http unless allowed, bounded waits.
fn build_client(config: &SourceConfig, tuning: &Tuning) -> Result<Client, String> {
    // Another part of the agent may have installed it already: either is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let source = &config.url;
    let mut builder = Client::builder()
        .user_agent(concat!("outpost/", env!("CARGO_PKG_VERSION")))
        .https_only(!config.allow_http)
        .connect_timeout(tuning.connect_timeout)
        .read_timeout(tuning.read_timeout)
        .timeout(tuning.request_timeout);
    if let Some(path) = &config.ca_file {
        let shown = path.display();
        let pem = std::fs::read(path)
            .map_err(|e| format!("source {source}: cannot read ca_file {shown}: {e}"))?;
        let certs = Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "source {source}: ca_file {shown} is not PEM: {}",
                error_chain(&e)
            )
        })?;
        if certs.is_empty() {
            return Err(format!(
                "source {source}: ca_file {shown} holds no PEM certificate"
            ));
        }
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| {
        format!(
            "source {source}: cannot set up an HTTP client: {}",
            error_chain(&e)
        )
    })
}

/// `https://h/b.yaml?q` → `https://h/b.yaml.minisig?q`.
fn signature_url(url: &Url) -> Url {
    let mut sig = url.clone();
    sig.set_path(&format!("{}.minisig", url.path()));
    sig
}

fn unreachable(url: &str, e: &reqwest::Error) -> Outcome {
    // reqwest's own message repeats the URL: keep its causes only.
    let causes = match std::error::Error::source(e) {
        Some(cause) => error_chain(cause),
        None => e.to_string(),
    };
    let timed_out = if e.is_timeout() { "timed out: " } else { "" };
    Outcome::Unreachable(format!("cannot reach {url}: {timed_out}{causes}"))
}

enum ReadError {
    TooBig,
    Failed(reqwest::Error),
}

/// The body, refused beyond `cap` bytes without reading further.
async fn read_capped(mut response: Response, cap: usize) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(ReadError::TooBig);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Failed)? {
        if body.len() + chunk.len() > cap {
            return Err(ReadError::TooBig);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads an HTTP/1.1 request head by hand for the test servers.
#[cfg(test)]
fn parse_head(head: &str) -> (String, std::collections::HashMap<String, String>) {
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default()
        .to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (path, headers)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpSocket, TcpStream};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::super::{spawn_tuned, SourceUpdate};
    use super::*;

    const PATIENCE: Duration = Duration::from_secs(10);
    /// How long "nothing is sent" is watched for: several poll intervals.
    const QUIET: Duration = Duration::from_millis(700);

    /// What the test server serves at `/bundle.yaml` and `/bundle.yaml.minisig`.
    #[derive(Default)]
    struct Site {
        body: Vec<u8>,
        etag: Option<String>,
        signature: Option<Vec<u8>>,
        /// The bearer token required, if any.
        token: Option<String>,
        /// Answer every request with this status.
        status: Option<u16>,
        log: Vec<Logged>,
    }

    #[derive(Debug, Clone)]
    struct Logged {
        path: String,
        if_none_match: Option<String>,
        authorization: Option<String>,
        status: u16,
    }

    /// A one-request-per-connection HTTP/1.1 server on loopback.
    struct Server {
        addr: SocketAddr,
        site: Arc<Mutex<Site>>,
        task: Option<tokio::task::JoinHandle<()>>,
    }

    impl Server {
        async fn start(site: Site) -> Server {
            let mut server = Server {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                site: Arc::new(Mutex::new(site)),
                task: None,
            };
            server.restart().await;
            server
        }

        /// Listens again on the same port (a new one at first start).
        async fn restart(&mut self) {
            let socket = TcpSocket::new_v4().expect("socket");
            socket.set_reuseaddr(true).expect("SO_REUSEADDR");
            socket.bind(self.addr).expect("bind the test server");
            let listener = socket.listen(16).expect("listen");
            self.addr = listener.local_addr().expect("local addr");
            let site = self.site.clone();
            self.task = Some(tokio::spawn(serve(listener, site)));
        }

        /// Closes the port: clients then get connection refused.
        async fn stop(&mut self) {
            if let Some(task) = self.task.take() {
                task.abort();
                let _ = task.await;
            }
        }

        fn url(&self) -> String {
            format!("http://{}/bundle.yaml", self.addr)
        }

        fn site(&self) -> std::sync::MutexGuard<'_, Site> {
            self.site.lock().expect("site lock")
        }
    }

    async fn serve(listener: TcpListener, site: Arc<Mutex<Site>>) {
        // One connection at a time: the source makes one request at a time.
        while let Ok((stream, _)) = listener.accept().await {
            let _ = answer(stream, &site).await;
        }
    }

    async fn answer(mut stream: TcpStream, site: &Mutex<Site>) -> std::io::Result<()> {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let (path, headers) = parse_head(&String::from_utf8_lossy(&head));
        let (status, etag, body) = {
            let mut site = site.lock().expect("site lock");
            let authorized = match &site.token {
                Some(token) => headers.get("authorization") == Some(&format!("Bearer {token}")),
                None => true,
            };
            let (status, etag, body) = if let Some(status) = site.status {
                (status, None, Vec::new())
            } else if !authorized {
                (401, None, Vec::new())
            } else if path == "/bundle.yaml" {
                if site.etag.is_some() && headers.get("if-none-match") == site.etag.as_ref() {
                    (304, site.etag.clone(), Vec::new())
                } else {
                    (200, site.etag.clone(), site.body.clone())
                }
            } else if path == "/bundle.yaml.minisig" {
                match &site.signature {
                    Some(sig) => (200, None, sig.clone()),
                    None => (404, None, Vec::new()),
                }
            } else {
                (404, None, Vec::new())
            };
            site.log.push(Logged {
                path,
                if_none_match: headers.get("if-none-match").cloned(),
                authorization: headers.get("authorization").cloned(),
                status,
            });
            (status, etag, body)
        };
        let mut response = format!(
            "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        if let Some(etag) = etag {
            response.push_str(&format!("etag: {etag}\r\n"));
        }
        response.push_str("\r\n");
        stream.write_all(response.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await
    }

    fn tuning() -> Tuning {
        Tuning {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(800),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            ..Tuning::default()
        }
    }

    struct Source {
        rx: mpsc::Receiver<SourceUpdate>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    impl Source {
        fn start(config: SourceConfig) -> Source {
            let (tx, rx) = mpsc::channel(16);
            let shutdown = CancellationToken::new();
            let task = spawn_tuned(config, tuning(), tx, shutdown.clone());
            Source { rx, shutdown, task }
        }

        async fn next(&mut self) -> SourceUpdate {
            match tokio::time::timeout(PATIENCE, self.rx.recv()).await {
                Ok(Some(update)) => update,
                Ok(None) => panic!("the source task ended"),
                Err(_) => panic!("no update within {PATIENCE:?}"),
            }
        }

        /// The next bundle, skipping `Unreachable` updates: (content, version).
        async fn bundle(&mut self) -> (String, String) {
            loop {
                match self.next().await {
                    SourceUpdate::Bundle(b) => {
                        assert_eq!(b.files.len(), 1);
                        assert_eq!(b.files[0].name, b.source, "the file is named by the URL");
                        let content = String::from_utf8(b.files[0].content.clone()).expect("utf-8");
                        return (content, b.version);
                    }
                    SourceUpdate::Unreachable { .. } => continue,
                    other => panic!("expected a bundle, got {other:?}"),
                }
            }
        }

        async fn unreachable(&mut self) -> (String, Duration) {
            match self.next().await {
                SourceUpdate::Unreachable {
                    error, retry_in, ..
                } => (error, retry_in),
                other => panic!("expected unreachable, got {other:?}"),
            }
        }

        async fn refused(&mut self) -> String {
            match self.next().await {
                SourceUpdate::Refused { error, .. } => error,
                other => panic!("expected a refusal, got {other:?}"),
            }
        }

        async fn quiet(&mut self) {
            if let Ok(update) = tokio::time::timeout(QUIET, self.rx.recv()).await {
                panic!("expected no update, got {update:?}");
            }
        }

        async fn stop(self) {
            self.shutdown.cancel();
            tokio::time::timeout(PATIENCE, self.task)
                .await
                .expect("the task ends on shutdown")
                .expect("the task does not panic");
        }
    }

    fn config(url: &str) -> SourceConfig {
        SourceConfig {
            interval: Duration::from_millis(100),
            allow_http: true,
            ..SourceConfig::parse(url).expect("test URL")
        }
    }

    #[tokio::test]
    async fn polls_with_etag_and_a_rotating_token() {
        let dir = tempfile::tempdir().expect("temp dir");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "tok1\n").expect("write token");
        let server = Server::start(Site {
            body: b"a: 1\n".to_vec(),
            etag: Some("\"v1\"".into()),
            token: Some("tok1".into()),
            ..Site::default()
        })
        .await;
        let url = server.url();
        let mut source = Source::start(SourceConfig {
            bearer_token_file: Some(token_file.clone()),
            ..config(&url)
        });
        assert_eq!(source.bundle().await, ("a: 1\n".into(), "\"v1\"".into()));

        // Not modified: polled, nothing sent.
        source.quiet().await;
        {
            let site = server.site();
            assert!(
                site.log
                    .iter()
                    .all(|r| r.authorization.as_deref() == Some("Bearer tok1")),
                "{:?}",
                site.log
            );
            let not_modified = site.log.iter().filter(|r| r.status == 304).count();
            assert!(not_modified >= 2, "{:?}", site.log);
            assert!(site
                .log
                .iter()
                .skip(1)
                .all(|r| r.if_none_match.as_deref() == Some("\"v1\"")));
        }

        // The token rotates, then the content changes.
        std::fs::write(&token_file, "tok2").expect("write token");
        server.site().token = Some("tok2".into());
        {
            let mut site = server.site();
            site.body = b"a: 2\n".to_vec();
            site.etag = Some("\"v2\"".into());
        }
        assert_eq!(source.bundle().await, ("a: 2\n".into(), "\"v2\"".into()));

        // A new ETag on the same content: nothing sent, the new ETag is used.
        server.site().etag = Some("\"v3\"".into());
        source.quiet().await;
        assert_eq!(
            server
                .site()
                .log
                .last()
                .and_then(|r| r.if_none_match.clone())
                .as_deref(),
            Some("\"v3\"")
        );

        // No ETag at all: the version is the content's hash.
        {
            let mut site = server.site();
            site.body = b"a: 3\n".to_vec();
            site.etag = None;
        }
        let (content, version) = source.bundle().await;
        assert_eq!(content, "a: 3\n");
        assert!(version.starts_with("sha256:"), "{version}");
        source.quiet().await;

        // A token the server does not take: unreachable, naming the token file.
        server.site().token = Some("tok3".into());
        let (error, _) = source.unreachable().await;
        assert!(
            error.contains("401") && error.contains(&token_file.display().to_string()),
            "{error}"
        );
        source.stop().await;
    }

    #[tokio::test]
    async fn backs_off_while_unreachable_then_recovers() {
        let mut server = Server::start(Site {
            body: b"a: 1\n".to_vec(),
            etag: Some("\"v1\"".into()),
            ..Site::default()
        })
        .await;
        let url = server.url();
        let mut source = Source::start(config(&url));
        assert_eq!(source.bundle().await.0, "a: 1\n");

        server.stop().await;
        let mut delays = Vec::new();
        for _ in 0..3 {
            let (error, retry_in) = source.unreachable().await;
            assert!(error.contains(&url), "{error}");
            delays.push(retry_in);
        }
        assert!(
            delays.windows(2).all(|w| w[0] < w[1]),
            "retry_in grows: {delays:?}"
        );

        {
            let mut site = server.site();
            site.body = b"a: 2\n".to_vec();
            site.etag = Some("\"v2\"".into());
        }
        server.restart().await;
        assert_eq!(source.bundle().await.0, "a: 2\n");

        // Server errors are unreachable too, with the status; backoff starts over.
        server.site().status = Some(503);
        let (error, retry_in) = source.unreachable().await;
        assert!(error.contains("503"), "{error}");
        assert!(retry_in <= Duration::from_millis(120), "{retry_in:?}");
        server.site().status = None;
        source.quiet().await;
        source.stop().await;
        server.stop().await;
    }

    #[tokio::test]
    async fn refuses_an_oversized_bundle() {
        let server = Server::start(Site {
            body: vec![b'#'; MAX_BODY + 1],
            ..Site::default()
        })
        .await;
        let mut source = Source::start(config(&server.url()));
        let error = source.refused().await;
        assert!(error.contains("16 MiB"), "{error}");
        source.quiet().await;
        source.stop().await;
    }

    /// Runs Debian's `minisign`; fails loudly when it is missing.
    fn minisign(dir: &Path, args: &[&str]) {
        let out = Command::new("minisign")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run minisign ({e}): these tests need it (apt-get install minisign)")
            });
        assert!(
            out.status.success(),
            "minisign {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A key pair `<name>.pub`/`<name>.key` in `dir`; returns the public key's base64 line.
    fn key_pair(dir: &Path, name: &str) -> String {
        let (public, secret) = (format!("{name}.pub"), format!("{name}.key"));
        minisign(dir, &["-G", "-W", "-p", &public, "-s", &secret]);
        let text = std::fs::read_to_string(dir.join(&public)).expect("read public key");
        text.lines().nth(1).expect("public key line").to_owned()
    }

    /// Signs `content` with key pair `name`; returns the `.minisig` bytes.
    fn sign(dir: &Path, name: &str, content: &[u8]) -> Vec<u8> {
        let file: PathBuf = dir.join("to-sign.yaml");
        std::fs::write(&file, content).expect("write");
        minisign(
            dir,
            &["-S", "-s", &format!("{name}.key"), "-m", "to-sign.yaml"],
        );
        std::fs::read(dir.join("to-sign.yaml.minisig")).expect("read signature")
    }

    #[tokio::test]
    async fn checks_minisign_signatures() {
        let keys = tempfile::tempdir().expect("temp dir");
        let public = key_pair(keys.path(), "good");
        key_pair(keys.path(), "other");
        let body = b"kind: Namespace\n".to_vec();
        let server = Server::start(Site {
            body: body.clone(),
            etag: Some("\"s1\"".into()),
            signature: Some(sign(keys.path(), "good", &body)),
            ..Site::default()
        })
        .await;
        let signed = || SourceConfig {
            public_key: Some(public.clone()),
            ..config(&server.url())
        };

        // Good signature.
        let mut source = Source::start(signed());
        assert_eq!(source.bundle().await.0, "kind: Namespace\n");
        assert!(server
            .site()
            .log
            .iter()
            .any(|r| r.path == "/bundle.yaml.minisig"));
        source.stop().await;

        // Missing signature.
        server.site().signature = None;
        let mut source = Source::start(signed());
        let error = source.refused().await;
        assert!(
            error.contains("not signed") && error.contains(".minisig") && error.contains("404"),
            "{error}"
        );
        source.quiet().await;
        source.stop().await;

        // Signature of other content.
        server.site().signature = Some(sign(keys.path(), "good", b"kind: Pod\n"));
        let mut source = Source::start(signed());
        let error = source.refused().await;
        assert!(error.contains("does not match"), "{error}");
        source.quiet().await;

        // Fixed upstream with the body unchanged: accepted at the next poll.
        server.site().signature = Some(sign(keys.path(), "good", &body));
        assert_eq!(source.bundle().await.0, "kind: Namespace\n");
        source.stop().await;

        // Signed with another key.
        server.site().signature = Some(sign(keys.path(), "other", &body));
        let mut source = Source::start(signed());
        let error = source.refused().await;
        assert!(error.contains("another key"), "{error}");
        source.quiet().await;
        source.stop().await;

        // Not a signature at all.
        server.site().signature = Some(b"<html>not found</html>".to_vec());
        let mut source = Source::start(signed());
        let error = source.refused().await;
        assert!(error.contains("not a minisign signature"), "{error}");
        source.stop().await;
    }

    #[test]
    fn signature_urls() {
        for (url, want) in [
            ("https://h/b.yaml", "https://h/b.yaml.minisig"),
            ("https://h/b.yaml?rev=3", "https://h/b.yaml.minisig?rev=3"),
            ("https://h", "https://h/.minisig"),
        ] {
            assert_eq!(
                signature_url(&Url::parse(url).expect("test URL")).as_str(),
                want
            );
        }
    }

    /// A CA and a server certificate for 127.0.0.1, made with `openssl`.
    fn certificates(dir: &Path) {
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run openssl ({e}): this test needs it (apt-get install openssl)")
                });
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca = [
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=outpost test CA",
        ];
        run(&[&["req", "-x509"], &ec[..], &ca[..]].concat());
        run(&[
            &["req"],
            &ec[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat());
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
    }

    /// A TLS server on loopback answering every request with `body`, in a thread.
    fn tls_server(dir: &Path, body: &'static [u8]) -> SocketAddr {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use std::io::{Read as _, Write as _};

        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
            .expect("server.pem")
            .collect::<Result<Vec<_>, _>>()
            .expect("server certificate");
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("server key");
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server TLS config");
        let tls = Arc::new(tls);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Runs until the test process ends.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Ok(conn) = rustls::ServerConnection::new(tls.clone()) else {
                    continue;
                };
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                let _ = parse_head(&String::from_utf8_lossy(&head));
                let head = format!(
                    "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = tls
                    .write_all(head.as_bytes())
                    .and_then(|()| tls.write_all(body));
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        addr
    }

    #[tokio::test]
    async fn trusts_the_configured_ca_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        certificates(dir.path());
        let addr = tls_server(dir.path(), b"over: tls\n");
        let url = format!("https://{addr}/bundle.yaml");
        let https = |ca_file: Option<PathBuf>| SourceConfig {
            ca_file,
            interval: Duration::from_millis(100),
            ..SourceConfig::parse(&url).expect("test URL")
        };

        let mut source = Source::start(https(Some(dir.path().join("ca.pem"))));
        assert_eq!(source.bundle().await.0, "over: tls\n");
        source.stop().await;

        // Without the CA: the system's roots do not know it.
        let mut source = Source::start(https(None));
        let (error, _) = source.unreachable().await;
        assert!(
            error.contains(&url) && error.to_lowercase().contains("certificate"),
            "{error}"
        );
        source.stop().await;

        // A CA file that holds no certificate.
        std::fs::write(dir.path().join("empty.pem"), "nothing here\n").expect("write");
        let mut source = Source::start(https(Some(dir.path().join("empty.pem"))));
        let (error, _) = source.unreachable().await;
        assert!(
            error.contains("empty.pem") && error.contains("no PEM certificate"),
            "{error}"
        );
        source.stop().await;
    }

    #[tokio::test]
    async fn http_is_refused_unless_allowed() {
        let server = Server::start(Site {
            body: b"a: 1\n".to_vec(),
            ..Site::default()
        })
        .await;
        let config = SourceConfig {
            allow_http: false,
            ..config(&server.url())
        };
        let mut source = Source::start(config);
        let error = source.refused().await;
        assert!(error.contains("plain http is refused"), "{error}");
        source.stop().await;
        assert!(server.site().log.is_empty(), "no request was made");
    }
}
