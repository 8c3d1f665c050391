//! The pull-based upstream: one task per configured source watches or polls it
//! and sends what it finds over a channel. Sources never parse manifests; they
//! hand over bytes with a version, and say when they cannot (unreachable,
//! refused). The agent keeps running its last-known-good state meanwhile.
//!
//! - `file:///dir` ([`file`]): a directory watched with inotify, no polling.
//! - `https://…` ([`http`]): polled with ETag/If-None-Match, backoff with jitter
//!   while unreachable, optional bearer token, CA and minisign signature.

pub(crate) mod file;
mod http;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often an https source is polled unless configured otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// A file of a source: its name (the full path, or the URL) and raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub content: Vec<u8>,
}

/// Everything a source holds at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The source URL as configured.
    pub source: String,
    /// For a directory, its manifests sorted by name; for a URL, one file named by it.
    pub files: Vec<SourceFile>,
    /// The ETag the server sent, else `sha256:<hex>` of the names and contents.
    pub version: String,
}

/// What a source task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceUpdate {
    /// New content; only sent when it differs from the last bundle sent.
    Bundle(Bundle),
    /// The source cannot be read; the task tries again after `retry_in`.
    Unreachable {
        source: String,
        error: String,
        retry_in: Duration,
    },
    /// The content was read but refused as a whole (bad or missing signature,
    /// oversized or unreadable file); nothing of it is sent.
    Refused { source: String, error: String },
}

impl SourceUpdate {
    /// The source it comes from, as the user wrote it.
    pub fn source(&self) -> &str {
        match self {
            SourceUpdate::Bundle(b) => &b.source,
            SourceUpdate::Unreachable { source, .. } | SourceUpdate::Refused { source, .. } => {
                source
            }
        }
    }
}

/// One configured source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// As the user wrote it: messages and [`Bundle::source`] show it.
    pub url: String,
    /// Read at each request, so tokens can rotate (https only).
    pub bearer_token_file: Option<PathBuf>,
    /// PEM file of the only CAs trusted for this source (https only).
    pub ca_file: Option<PathBuf>,
    /// Minisign public key: the base64 line of a `minisign.pub`, or the whole file.
    pub public_key: Option<String>,
    /// Poll interval (https only; a directory is watched).
    pub interval: Duration,
    /// Allow plain `http://` (tests, trusted networks).
    pub allow_http: bool,
}

/// Where a validated source reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Dir(PathBuf),
    Http(Url),
}

impl SourceConfig {
    /// Parses a source URL: `file:///abs/dir`, `https://…`, or `http://…` (which
    /// [`SourceConfig::validate`] accepts only once `allow_http` is set).
    pub fn parse(url: &str) -> Result<SourceConfig, String> {
        let config = SourceConfig {
            url: url.to_owned(),
            bearer_token_file: None,
            ca_file: None,
            public_key: None,
            interval: DEFAULT_INTERVAL,
            allow_http: true,
        };
        config.location()?;
        Ok(SourceConfig {
            allow_http: false,
            ..config
        })
    }

    /// Checks the whole configuration once its fields are set: scheme against
    /// `allow_http`, options against the scheme, the public key's encoding.
    pub fn validate(&self) -> Result<(), String> {
        let url = &self.url;
        match self.location()? {
            Location::Dir(_) => {
                let https_only = [
                    ("bearer_token_file", self.bearer_token_file.is_some()),
                    ("ca_file", self.ca_file.is_some()),
                    ("public_key", self.public_key.is_some()),
                ];
                if let Some((field, _)) = https_only.iter().find(|(_, set)| *set) {
                    return Err(format!(
                        "source {url}: {field} only applies to https sources; remove it"
                    ));
                }
            }
            Location::Http(_) => {
                if let Some(key) = &self.public_key {
                    decode_public_key(key).map_err(|e| format!("source {url}: {e}"))?;
                }
                if self.interval.is_zero() {
                    return Err(format!(
                        "source {url}: the poll interval must be more than zero"
                    ));
                }
            }
        }
        Ok(())
    }

    fn location(&self) -> Result<Location, String> {
        let raw = &self.url;
        let url = Url::parse(raw).map_err(|e| {
            format!("source {raw}: not a URL ({e}); use file:///abs/dir or https://host/path")
        })?;
        match url.scheme() {
            "file" => {
                if url
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(format!(
                        "source {raw}: file URLs name a local directory: use file:///abs/dir"
                    ));
                }
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(format!(
                        "source {raw}: a file source takes no query or fragment"
                    ));
                }
                let dir = url.to_file_path().map_err(|()| {
                    format!("source {raw}: not a local directory path; use file:///abs/dir")
                })?;
                Ok(Location::Dir(dir))
            }
            "https" | "http" => {
                if url.scheme() == "http" && !self.allow_http {
                    return Err(format!(
                        "source {raw}: plain http is refused (content and tokens travel in clear); use https, \
                         or allow http explicitly for a trusted network"
                    ));
                }
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(format!("source {raw}: the URL has no host"));
                }
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(format!(
                        "source {raw}: credentials in the URL would show in logs and events; \
                         put a bearer token in bearer_token_file instead"
                    ));
                }
                Ok(Location::Http(url))
            }
            other => Err(format!(
                "source {raw}: unsupported scheme {other}:, use file:///abs/dir or https://…"
            )),
        }
    }
}

/// Starts the task that watches or polls `config`'s source and sends its updates
/// on `tx` until `shutdown` is cancelled or the receiver is dropped. A config
/// that fails [`SourceConfig::validate`] is reported once as `Refused` and the
/// task ends: validate first.
pub fn spawn(
    config: SourceConfig,
    tx: mpsc::Sender<SourceUpdate>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    spawn_tuned(config, Tuning::default(), tx, shutdown)
}

fn spawn_tuned(
    config: SourceConfig,
    tuning: Tuning,
    tx: mpsc::Sender<SourceUpdate>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let location = config.validate().and_then(|()| config.location());
        let out = Outbox {
            source: config.url.clone(),
            tx,
            shutdown,
        };
        match location {
            Ok(Location::Dir(dir)) => file::run(dir, tuning, out).await,
            Ok(Location::Http(url)) => http::run(config, url, tuning, out).await,
            Err(error) => {
                out.refused(error).await;
            }
        }
    })
}

/// Timings and limits, shortened by tests.
#[derive(Debug, Clone)]
struct Tuning {
    /// Quiet time after the last inotify event before the directory is read again.
    debounce: Duration,
    /// The same after an event that completes a file (close after write,
    /// rename into place, removal): `apply`'s atomic renames are read at once.
    settle: Duration,
    /// Longest a stream of events can delay a read.
    debounce_max: Duration,
    /// First retry delay while unreachable; doubles each time.
    backoff_base: Duration,
    /// Longest retry delay (an https source uses at least its interval).
    backoff_max: Duration,
    connect_timeout: Duration,
    /// Longest wait for any bytes of an answer.
    read_timeout: Duration,
    /// Longest a whole request may take, body included.
    request_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            debounce: Duration::from_millis(100),
            settle: Duration::from_millis(10),
            debounce_max: Duration::from_millis(500),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
        }
    }
}

/// The sending side of a source task: stamps updates with the source and stops
/// sending when the agent shuts down or stops listening.
struct Outbox {
    source: String,
    tx: mpsc::Sender<SourceUpdate>,
    shutdown: CancellationToken,
}

impl Outbox {
    /// Sends `update`; false when the task should end.
    async fn send(&self, update: SourceUpdate) -> bool {
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => false,
            sent = self.tx.send(update) => sent.is_ok(),
        }
    }

    async fn bundle(&self, files: Vec<SourceFile>, version: String) -> bool {
        self.send(SourceUpdate::Bundle(Bundle {
            source: self.source.clone(),
            files,
            version,
        }))
        .await
    }

    async fn unreachable(&self, error: String, retry_in: Duration) -> bool {
        self.send(SourceUpdate::Unreachable {
            source: self.source.clone(),
            error,
            retry_in,
        })
        .await
    }

    async fn refused(&self, error: String) -> bool {
        self.send(SourceUpdate::Refused {
            source: self.source.clone(),
            error,
        })
        .await
    }

    /// Sleeps for `delay`; false if shutdown came first.
    async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

/// Retry delays while a source is unreachable: `base` doubling up to `max`,
/// each with ±20% jitter so a fleet of nodes does not come back in step.
#[derive(Debug, Clone)]
struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            attempt: 0,
        }
    }

    /// The delay before retry number `attempt` (from 0), before jitter.
    fn nominal(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max)
    }

    /// The next delay, jittered, never over `max`.
    fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        jitter(nominal, 0.2, random_unit()).min(self.max)
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// `d` scaled by a factor in `[1 - fraction, 1 + fraction]`, picked by `unit` in `[0, 1)`.
fn jitter(d: Duration, fraction: f64, unit: f64) -> Duration {
    d.mul_f64(1.0 + fraction * (2.0 * unit - 1.0))
}

/// A number in `[0, 1)`, random enough for jitter: std's `RandomState` is
/// seeded from the OS and rekeyed at each call, which spares a dependency.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher as _, Hasher as _, RandomState};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u8(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// `sha256:<hex>` over the files' names and contents, for change detection and
/// as the version of content without an ETag.
fn content_version(files: &[SourceFile]) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update((file.name.len() as u64).to_le_bytes());
        hasher.update(file.name.as_bytes());
        hasher.update((file.content.len() as u64).to_le_bytes());
        hasher.update(&file.content);
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// A minisign public key from its base64 line or a whole `minisign.pub` file.
fn decode_public_key(key: &str) -> Result<minisign_verify::PublicKey, String> {
    let key = key.trim();
    let decoded = if key.contains('\n') {
        minisign_verify::PublicKey::decode(key)
    } else {
        minisign_verify::PublicKey::from_base64(key)
    };
    decoded.map_err(|e| {
        format!("public_key is not a minisign public key ({e}); use the base64 line of the minisign.pub file")
    })
}

/// An error with its causes, `outer: inner: innermost`, as messages show them.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_parse(url: &str, expect: Result<Location, &str>) {
        let got = SourceConfig::parse(url).and_then(|c| {
            SourceConfig {
                allow_http: true,
                ..c
            }
            .location()
        });
        match (got, expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{url}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{url}: {got:?} lacks {want:?}"),
            (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parse() {
        let http = |u: &str| Location::Http(Url::parse(u).expect("test URL"));
        check_parse(
            "file:///etc/outpost/manifests",
            Ok(Location::Dir("/etc/outpost/manifests".into())),
        );
        check_parse("file://localhost/srv/m", Ok(Location::Dir("/srv/m".into())));
        check_parse(
            "file:///srv/my%20dir",
            Ok(Location::Dir("/srv/my dir".into())),
        );
        check_parse(
            "https://example.org/b.yaml",
            Ok(http("https://example.org/b.yaml")),
        );
        check_parse(
            "http://127.0.0.1:8080/b.yaml",
            Ok(http("http://127.0.0.1:8080/b.yaml")),
        );
        check_parse("file://host/srv/m", Err("local directory"));
        check_parse("file:///srv/m?x=1", Err("no query"));
        check_parse("/etc/outpost/manifests", Err("not a URL"));
        check_parse("ftp://example.org/b", Err("unsupported scheme ftp"));
        check_parse("https://user:pw@example.org/b", Err("bearer_token_file"));
    }

    #[test]
    fn validate() {
        let config = |url: &str| SourceConfig::parse(url).expect("test URL");
        let http = config("http://127.0.0.1/b");
        assert!(http
            .validate()
            .is_err_and(|e| e.contains("plain http is refused")));
        assert_eq!(
            SourceConfig {
                allow_http: true,
                ..http
            }
            .validate(),
            Ok(())
        );
        let dir = SourceConfig {
            ca_file: Some("/ca.pem".into()),
            ..config("file:///m")
        };
        assert!(dir
            .validate()
            .is_err_and(|e| e.contains("ca_file only applies to https")));
        let key = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
        let signed = SourceConfig {
            public_key: Some(key.into()),
            ..config("https://h/b")
        };
        assert_eq!(signed.validate(), Ok(()));
        let whole = format!("untrusted comment: minisign public key\n{key}\n");
        assert_eq!(
            SourceConfig {
                public_key: Some(whole),
                ..signed.clone()
            }
            .validate(),
            Ok(())
        );
        let bad = SourceConfig {
            public_key: Some("not-a-key".into()),
            ..signed
        };
        assert!(bad
            .validate()
            .is_err_and(|e| e.contains("not a minisign public key")));
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let nominal: Vec<u64> = (0..12).map(|a| b.nominal(a).as_secs()).collect();
        assert_eq!(nominal, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(b.nominal(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn jittered_delays_stay_in_bounds() {
        let d = Duration::from_secs(10);
        assert_eq!(jitter(d, 0.1, 0.0), Duration::from_secs(9));
        assert_eq!(jitter(d, 0.1, 0.5), d);
        assert!(jitter(d, 0.1, 0.999_999) <= Duration::from_secs(11));
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let nominal = b.nominal(i as u32);
            assert!(
                *d >= nominal.mul_f64(0.8) && *d <= nominal.mul_f64(1.2).min(b.max),
                "{i}: {d:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1200));
        let units: Vec<f64> = (0..100).map(|_| random_unit()).collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(
            units.iter().any(|u| *u != units[0]),
            "random_unit repeats itself"
        );
    }

    #[test]
    fn content_version_covers_names_and_contents() {
        let file = |name: &str, content: &str| SourceFile {
            name: name.into(),
            content: content.into(),
        };
        let a = content_version(&[file("a.yaml", "x")]);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
        assert_eq!(a, content_version(&[file("a.yaml", "x")]));
        assert_ne!(a, content_version(&[file("b.yaml", "x")]));
        assert_ne!(a, content_version(&[file("a.yaml", "y")]));
        assert_ne!(
            content_version(&[file("a", "bc")]),
            content_version(&[file("ab", "c")])
        );
    }
}
