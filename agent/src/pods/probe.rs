//! Container probes: one attempt of a liveness, readiness or startup probe
//! ([`run`]), and the kubelet's per-probe bookkeeping ([`ProbeState`],
//! [`ContainerProbes`]), which is pure: fed outcomes and times, it says when to
//! probe next and what the container's status is (the kubelet's
//! `pkg/kubelet/prober` and `pkg/probe/{http,tcp,exec}`).
//!
//! A pod has its own network namespace, so httpGet and tcpSocket probes
//! connect from inside it: a throw-away thread `setns`es into the pinned
//! namespace, connects, and hands the socket to tokio (a socket stays in the
//! namespace it was made in; a tokio thread never changes namespace). Exec
//! probes run in the container through the node's supervisor. The
//! connection, HTTP and exec helpers here are shared with [`super::hooks`].

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, HOST, LOCATION};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nix::sched::{setns, CloneFlags};
use outpost_runtime::container::{ExecRequest, ExitInfo, Runtime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::translate;

/// The Kubernetes version the `User-Agent` names (`kube-probe/1.34`).
const KUBE_VERSION: &str = "1.34";
/// How much of a command's stdout and of its stderr is kept (the kubelet keeps 10 KiB).
const MAX_OUTPUT: usize = 10 << 10;
/// How long output is still read after a command exited: a child it left
/// behind may hold the pipes open forever.
const OUTPUT_GRACE: Duration = Duration::from_millis(200);
/// At most this many requests follow each other through redirects (Go's default).
const MAX_REQUESTS: usize = 10;

/// The three kinds of probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// As the kubelet names it in events: `Liveness`, `Readiness`, `Startup`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    /// The container's probe of this kind, if it has one.
    pub fn of(self, container: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => container.liveness_probe.as_ref(),
            ProbeKind::Readiness => container.readiness_probe.as_ref(),
            ProbeKind::Startup => container.startup_probe.as_ref(),
        }
    }

    /// The kubelet's `Killing` event message when this probe fails the
    /// container (liveness and startup).
    pub fn kill_message(self, container: &str) -> String {
        format!(
            "Container {container} failed {} probe, will be restarted",
            self.as_str().to_ascii_lowercase()
        )
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a probe or hook acts on.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub runtime: &'a Runtime,
    /// The supervisor id of the running container (exec).
    pub container_id: &'a str,
    /// The pod's network namespace; `None` for hostNetwork pods (the agent's own).
    pub netns: Option<&'a Path>,
    /// The pod's IP: the default host of httpGet and tcpSocket (else 127.0.0.1).
    pub pod_ip: Option<&'a str>,
    pub container: &'a Container,
}

impl Target<'_> {
    fn host(&self, given: Option<&str>) -> String {
        given
            .filter(|h| !h.is_empty())
            .or(self.pod_ip)
            .unwrap_or("127.0.0.1")
            .to_owned()
    }
}

/// The result of one probe attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The container answered wrong or not in time (the kubelet's message,
    /// e.g. `HTTP probe failed with statuscode: 500`): counts toward failureThreshold.
    Failure(String),
    /// The probe could not be run (a named port the container does not have,
    /// the runtime unreachable): thrown away without counting, as the kubelet does.
    Error(String),
}

impl Outcome {
    /// The message of the `Unhealthy` warning event the kubelet records for
    /// this outcome; `None` for a success.
    pub fn event_message(&self, kind: ProbeKind) -> Option<String> {
        match self {
            Outcome::Success => None,
            Outcome::Failure(m) => Some(format!("{kind} probe failed: {m}")),
            Outcome::Error(m) => Some(format!("{kind} probe errored: {m}")),
        }
    }
}

/// One attempt of `probe` against `target`, bounded by its `timeoutSeconds`.
pub async fn run(probe: &Probe, target: &Target<'_>) -> Outcome {
    let timeout = timeout(probe);
    if let Some(exec) = &probe.exec {
        let command = expand_command(
            exec.command.as_deref().unwrap_or_default(),
            target.container,
        );
        if command.is_empty() {
            return Outcome::Error("the exec probe has no command".into());
        }
        let end = exec_in(
            target.runtime,
            target.container_id,
            command.clone(),
            timeout,
        )
        .await;
        return exec_outcome(&command, end);
    }
    let deadline = Instant::now() + timeout;
    if let Some(action) = &probe.http_get {
        let request = match HttpGet::new(action, target, "probe") {
            Ok(r) => r,
            Err(e) => return Outcome::Error(e),
        };
        return match request.send(target.netns, deadline).await {
            // 3xx: a redirect not followed (to another host) is the kubelet's warning, a success.
            Ok(status) if (200..400).contains(&status) => Outcome::Success,
            Ok(status) => Outcome::Failure(format!("HTTP probe failed with statuscode: {status}")),
            Err(HttpError::Local(e)) => Outcome::Error(e),
            Err(HttpError::Request { message, .. }) => Outcome::Failure(message),
        };
    }
    if let Some(action) = &probe.tcp_socket {
        let port = match resolve_port(&action.port, target.container) {
            Ok(p) => p,
            Err(e) => return Outcome::Error(e),
        };
        let host = target.host(action.host.as_deref());
        return match connect(target.netns, &host, port, deadline).await {
            // Dropping the stream closes the connection.
            Ok(_) => Outcome::Success,
            Err(ConnectError::Dial(m)) => Outcome::Failure(m),
            Err(ConnectError::Local(m)) => Outcome::Error(m),
        };
    }
    if probe.grpc.is_some() {
        return Outcome::Failure("grpc probes are not supported".into());
    }
    Outcome::Error("the probe has no handler: set exec, httpGet, tcpSocket or grpc".into())
}

/// `timeoutSeconds`: what one attempt may take (default 1 s).
pub fn timeout(probe: &Probe) -> Duration {
    Duration::from_secs(count(probe.timeout_seconds, 1).into())
}

/// What a probe says about its container once a threshold is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// With the last failure's message. Liveness/startup: kill and restart
    /// the container; readiness: not ready.
    Unhealthy(String),
}

/// The kubelet's per-probe worker state, pure: fed outcomes and times, it
/// says when to probe next and what the probe reports. One per container
/// attempt: a restarted container gets a fresh one.
#[derive(Debug, Clone)]
pub struct ProbeState {
    kind: ProbeKind,
    period: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    grace: Option<i64>,
    /// The first attempt: container start + initialDelaySeconds. Later ones
    /// fall on `first + k * period`.
    first: Instant,
    next: Instant,
    /// The last counted result and how many times in a row it came.
    last: Option<bool>,
    run: u32,
    /// What the probe reports: readiness starts failed, liveness succeeded,
    /// startup unknown (`None`).
    result: Option<bool>,
    /// A liveness or startup probe that failed the container: nothing more
    /// until the next container.
    on_hold: bool,
}

impl ProbeState {
    /// The state of a fresh container's `kind` probe: nothing counted yet.
    pub fn new(kind: ProbeKind, probe: &Probe, container_started: Instant) -> Self {
        let initial_delay = probe
            .initial_delay_seconds
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0);
        let first = container_started + Duration::from_secs(initial_delay);
        ProbeState {
            kind,
            period: Duration::from_secs(count(probe.period_seconds, 10).into()),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
            grace: probe.termination_grace_period_seconds,
            first,
            next: first,
            last: None,
            run: 0,
            result: match kind {
                ProbeKind::Readiness => Some(false),
                ProbeKind::Liveness => Some(true),
                ProbeKind::Startup => None,
            },
            on_hold: false,
        }
    }

    /// Which probe this is.
    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    /// When the next attempt is due: initialDelaySeconds after the container
    /// started, then every periodSeconds (an attempt that overran skips ticks).
    pub fn next_due(&self) -> Instant {
        self.next
    }

    /// What the probe reports now: `Some(true)` healthy/ready/started,
    /// `Some(false)` not, `None` unknown (a startup probe not yet decided).
    pub fn result(&self) -> Option<bool> {
        self.result
    }

    /// A liveness/startup probe that failed its container stops probing.
    pub fn on_hold(&self) -> bool {
        self.on_hold
    }

    /// The probe-level `terminationGracePeriodSeconds` for a kill this probe
    /// causes (liveness and startup only); `None`: use the pod's.
    pub fn termination_grace_period(&self) -> Option<i64> {
        match self.kind {
            ProbeKind::Readiness => None,
            ProbeKind::Liveness | ProbeKind::Startup => self.grace,
        }
    }

    /// Counts the outcome of the attempt that ended at `now`. Returns a
    /// verdict when a threshold changes what the probe reports, and always
    /// for a liveness/startup failure (which puts the probe on hold).
    pub fn record(&mut self, outcome: &Outcome, now: Instant) -> Option<Verdict> {
        if self.on_hold {
            return None;
        }
        self.next = self.tick_after(now);
        let (ok, message) = match outcome {
            Outcome::Success => (true, None),
            Outcome::Failure(m) => (false, Some(m)),
            Outcome::Error(_) => return None,
        };
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < threshold {
            return None;
        }
        let changed = self.result != Some(ok);
        self.result = Some(ok);
        let verdict = match message {
            None => Verdict::Healthy,
            Some(m) => Verdict::Unhealthy(m.clone()),
        };
        if !ok && self.kind != ProbeKind::Readiness {
            // The container will be restarted: stop probing it.
            self.on_hold = true;
            self.run = 0;
            return Some(verdict);
        }
        changed.then_some(verdict)
    }

    /// The first tick strictly after `now`.
    fn tick_after(&self, now: Instant) -> Instant {
        if now < self.first {
            return self.first;
        }
        let ticks = (now - self.first).as_secs_f64() / self.period.as_secs_f64();
        let offset = self.period.mul_f64(ticks.floor() + 1.0);
        self.first.checked_add(offset).unwrap_or(now + self.period)
    }
}

/// The probes of one container attempt, with the kubelet's gating: liveness
/// and readiness wait until the startup probe (if any) has succeeded; the
/// startup probe stops then.
#[derive(Debug, Clone)]
pub struct ContainerProbes {
    startup: Option<ProbeState>,
    liveness: Option<ProbeState>,
    readiness: Option<ProbeState>,
}

impl ContainerProbes {
    /// The probes `container` declares, for an attempt that started at `started`.
    pub fn new(container: &Container, started: Instant) -> Self {
        let state = |kind: ProbeKind| {
            kind.of(container)
                .map(|p| ProbeState::new(kind, p, started))
        };
        ContainerProbes {
            startup: state(ProbeKind::Startup),
            liveness: state(ProbeKind::Liveness),
            readiness: state(ProbeKind::Readiness),
        }
    }

    /// The state of the `kind` probe, if the container has one.
    pub fn get(&self, kind: ProbeKind) -> Option<&ProbeState> {
        match kind {
            ProbeKind::Startup => self.startup.as_ref(),
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
        }
    }

    fn get_mut(&mut self, kind: ProbeKind) -> Option<&mut ProbeState> {
        match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
        }
    }

    /// The container status' `started`: no startup probe, or it succeeded.
    pub fn started(&self) -> bool {
        self.startup.as_ref().is_none_or(|s| s.result == Some(true))
    }

    /// The container status' `ready`: started, and no readiness probe or it
    /// succeeded (a readiness probe starts failed).
    pub fn ready(&self) -> bool {
        self.started()
            && self
                .readiness
                .as_ref()
                .is_none_or(|r| r.result == Some(true))
    }

    /// Whether this kind of probe runs now (exists, not on hold, not gated).
    fn active(&self, kind: ProbeKind) -> bool {
        let Some(state) = self.get(kind) else {
            return false;
        };
        let gate = match kind {
            ProbeKind::Startup => !self.started(),
            ProbeKind::Liveness | ProbeKind::Readiness => self.started(),
        };
        gate && !state.on_hold
    }

    /// The probes to run at `now`.
    pub fn due(&self, now: Instant) -> Vec<ProbeKind> {
        [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness,
        ]
        .into_iter()
        .filter(|k| self.active(*k) && self.get(*k).is_some_and(|s| s.next <= now))
        .collect()
    }

    /// When the next probe is due; `None` when none will run.
    pub fn next_due(&self) -> Option<Instant> {
        [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness,
        ]
        .into_iter()
        .filter(|k| self.active(*k))
        .filter_map(|k| self.get(k).map(|s| s.next))
        .min()
    }

    /// Records an attempt's outcome (see [`ProbeState::record`]); outcomes of
    /// a probe that is no longer active are ignored.
    pub fn record(&mut self, kind: ProbeKind, outcome: &Outcome, now: Instant) -> Option<Verdict> {
        if !self.active(kind) {
            return None;
        }
        self.get_mut(kind)?.record(outcome, now)
    }

    /// The probe-level grace period for a kill `kind` caused.
    pub fn termination_grace_period(&self, kind: ProbeKind) -> Option<i64> {
        self.get(kind)
            .and_then(ProbeState::termination_grace_period)
    }
}

/// A probe count or period: positive, else the default.
fn count(value: Option<i32>, default: u32) -> u32 {
    value
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// The kubelet's `ResolveContainerPort`: a number, or the name of one of the
/// container's ports (or a number written as a string).
pub(super) fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            let named = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()));
            match (named, name.parse::<i64>()) {
                (Some(p), _) => i64::from(p.container_port),
                (None, Ok(n)) => n,
                (None, Err(_)) => {
                    return Err(format!(
                        "port {name:?} not found in the ports of container {:?}",
                        container.name
                    ))
                }
            }
        }
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

/// The kubelet's `ExpandContainerCommandOnlyStatic`: `$(VAR)` from the
/// container's `env` values (not `valueFrom`, which expand to "").
fn expand_command(command: &[String], container: &Container) -> Vec<String> {
    let env: HashMap<&str, &str> = container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
        .collect();
    command
        .iter()
        .map(|arg| translate::expand(arg, &|name| env.get(name).map(|v| (*v).to_owned())))
        .collect()
}

// ---------------------------------------------------------------------------
// Connecting from inside a network namespace.

/// Why a connection was not made.
#[derive(Debug)]
pub(super) enum ConnectError {
    /// The target refused, was unreachable or too slow: Go's `dial tcp ...` message.
    Dial(String),
    /// A problem on our side (the namespace is gone, no thread).
    Local(String),
}

/// Opens a TCP connection to `host:port` from inside `netns` (the agent's
/// own namespace when `None`), giving up at `deadline`. Names are resolved in
/// the agent's namespace (the pod's has no route to a DNS server).
pub(super) async fn connect(
    netns: Option<&Path>,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<tokio::net::TcpStream, ConnectError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (netns, owned_host) = (netns.map(Path::to_path_buf), host.to_owned());
    // A fresh thread (never a tokio one) may enter the pod's namespace; it
    // ends right after, and the socket stays in the namespace.
    std::thread::Builder::new()
        .name("probe-connect".into())
        .spawn(move || {
            let _ = tx.send(connect_blocking(
                netns.as_deref(),
                &owned_host,
                port,
                deadline,
            ));
        })
        .map_err(|e| ConnectError::Local(format!("start a thread to connect from: {e}")))?;
    let timed_out = || {
        ConnectError::Dial(format!(
            "dial tcp {}: i/o timeout",
            join_host_port(host, port)
        ))
    };
    let stream = match tokio::time::timeout_at(deadline.into(), rx).await {
        Ok(Ok(result)) => result?,
        Ok(Err(_)) => {
            return Err(ConnectError::Local(
                "the connecting thread ended without an answer".into(),
            ))
        }
        Err(_) => return Err(timed_out()),
    };
    tokio::net::TcpStream::from_std(stream)
        .map_err(|e| ConnectError::Local(format!("register the connection with tokio: {e}")))
}

fn connect_blocking(
    netns: Option<&Path>,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<std::net::TcpStream, ConnectError> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| ConnectError::Dial(format!("dial tcp: lookup {host}: {}", go_error(&e))))?
            .collect(),
    };
    if let Some(path) = netns {
        let file = File::open(path).map_err(|e| {
            ConnectError::Local(format!(
                "open the pod's network namespace {}: {e}",
                path.display()
            ))
        })?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
            ConnectError::Local(format!(
                "enter the pod's network namespace {}: {e}",
                path.display()
            ))
        })?;
    }
    let mut last = format!("dial tcp: lookup {host}: no such host");
    for addr in addrs {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            last = format!("dial tcp {addr}: i/o timeout");
            break;
        }
        match std::net::TcpStream::connect_timeout(&addr, remaining) {
            Ok(stream) => {
                stream.set_nonblocking(true).map_err(|e| {
                    ConnectError::Local(format!("make the connection to {addr} non-blocking: {e}"))
                })?;
                return Ok(stream);
            }
            Err(e) if e.raw_os_error().is_some() => {
                last = format!("dial tcp {addr}: connect: {}", go_error(&e));
            }
            Err(_) => last = format!("dial tcp {addr}: i/o timeout"),
        }
    }
    Err(ConnectError::Dial(last))
}

/// An OS error as Go words it ("connection refused"); timeouts are "i/o timeout".
fn go_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let desc = nix::errno::Errno::from_raw(code).desc();
            let mut chars = desc.chars();
            chars
                .next()
                .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
                .unwrap_or_default()
        }
        None if e.kind() == std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        None => e.to_string(),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

// ---------------------------------------------------------------------------
// HTTP GET, as the kubelet's prober and lifecycle hooks do it.

/// An httpGet action made concrete: where to connect and what to send.
#[derive(Debug, Clone)]
pub(super) struct HttpGet {
    url: Url,
    /// A `Host` header given in httpHeaders (else the URL's host and port).
    host_header: Option<String>,
    headers: Vec<(String, String)>,
}

/// Why an HTTP request got no response.
#[derive(Debug)]
pub(super) enum HttpError {
    /// A problem on our side (the namespace is gone, no thread).
    Local(String),
    /// The request failed: Go's `Get "<url>": <reason>`.
    Request {
        message: String,
        /// An HTTPS request answered in plain HTTP.
        plain_http_answer: bool,
    },
}

impl HttpError {
    fn request(url: &Url, reason: &str) -> HttpError {
        HttpError::Request {
            message: format!("Get \"{url}\": {reason}"),
            plain_http_answer: false,
        }
    }

    pub(super) fn message(&self) -> &str {
        match self {
            HttpError::Local(m) | HttpError::Request { message: m, .. } => m,
        }
    }
}

impl HttpGet {
    /// The kubelet's `NewRequestForHTTPGetAction`; `purpose` makes the
    /// User-Agent (`kube-probe/1.34`, `kube-lifecycle/1.34`).
    pub(super) fn new(
        action: &HTTPGetAction,
        target: &Target<'_>,
        purpose: &str,
    ) -> Result<HttpGet, String> {
        let scheme = action
            .scheme
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("http")
            .to_ascii_lowercase();
        let port = resolve_port(&action.port, target.container)?;
        let url = Url {
            scheme,
            host: target.host(action.host.as_deref()),
            port,
            path: request_target(action.path.as_deref().unwrap_or("")),
        };
        let given = action.http_headers.as_deref().unwrap_or_default();
        let named = |name: &str| given.iter().find(|h| h.name.eq_ignore_ascii_case(name));
        let host_header = named("host").map(|h| h.value.clone());
        let mut headers: Vec<(String, String)> = given
            .iter()
            .filter(|h| !h.name.eq_ignore_ascii_case("host"))
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        if named("user-agent").is_none() {
            headers.push((
                "User-Agent".into(),
                format!("kube-{purpose}/{KUBE_VERSION}"),
            ));
        }
        match named("accept") {
            None => headers.push(("Accept".into(), "*/*".into())),
            // An Accept set to "" removes it.
            Some(h) if h.value.is_empty() => {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case("accept"))
            }
            Some(_) => {}
        }
        Ok(HttpGet {
            url,
            host_header,
            headers,
        })
    }

    /// The same request in plain HTTP without credentials (the kubelet's
    /// fallback for hooks whose HTTPS request got an HTTP answer).
    pub(super) fn without_tls(&self) -> HttpGet {
        let mut plain = self.clone();
        plain.url.scheme = "http".into();
        plain
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
        plain
    }

    /// Sends the request from inside `netns`, following redirects to the same
    /// host, and returns the final status. A redirect to another host is not
    /// followed: its 3xx status is returned.
    pub(super) async fn send(
        &self,
        netns: Option<&Path>,
        deadline: Instant,
    ) -> Result<u16, HttpError> {
        let mut url = self.url.clone();
        let mut host_header = self.host_header.clone();
        let mut requests = 0;
        loop {
            requests += 1;
            let attempt = self.once(&url, host_header.as_deref(), netns, deadline);
            let (status, location) = match tokio::time::timeout_at(deadline.into(), attempt).await {
                Ok(answer) => answer?,
                Err(_) => return Err(HttpError::request(
                    &url,
                    "context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                )),
            };
            let Some(location) = location.filter(|_| matches!(status, 301 | 302 | 303 | 307 | 308))
            else {
                return Ok(status);
            };
            let next = url.join(&location).map_err(|e| {
                HttpError::request(
                    &url,
                    &format!("failed to parse Location header {location:?}: {e}"),
                )
            })?;
            if next.host != self.url.host {
                return Ok(status);
            }
            if requests >= MAX_REQUESTS {
                return Err(HttpError::request(&next, "stopped after 10 redirects"));
            }
            if is_absolute(&location) {
                host_header = None;
            }
            url = next;
        }
    }

    async fn once(
        &self,
        url: &Url,
        host_header: Option<&str>,
        netns: Option<&Path>,
        deadline: Instant,
    ) -> Result<(u16, Option<String>), HttpError> {
        let tls = match url.scheme.as_str() {
            "http" => false,
            "https" => true,
            other => {
                return Err(HttpError::request(
                    url,
                    &format!("unsupported protocol scheme {other:?}"),
                ))
            }
        };
        let request = self
            .request(url, host_header)
            .map_err(|e| HttpError::request(url, &e))?;
        let stream = connect(netns, &url.host, url.port, deadline)
            .await
            .map_err(|e| match e {
                ConnectError::Dial(m) => HttpError::request(url, &m),
                ConnectError::Local(m) => HttpError::Local(m),
            })?;
        let answer = if tls {
            let stream =
                tls::handshake(stream, &url.host)
                    .await
                    .map_err(|e| HttpError::Request {
                        message: format!("Get \"{url}\": {}", e.message),
                        plain_http_answer: e.plain_http,
                    })?;
            exchange(stream, request).await
        } else {
            exchange(stream, request).await
        };
        answer.map_err(|e| HttpError::request(url, &e))
    }

    fn request(
        &self,
        url: &Url,
        host_header: Option<&str>,
    ) -> Result<hyper::Request<Empty<Bytes>>, String> {
        let host = host_header.map_or_else(|| url.authority(), str::to_owned);
        let mut builder = hyper::Request::get(url.path.as_str()).header(HOST, host);
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("net/http: invalid header field name {name:?}"))?;
            let value = HeaderValue::from_bytes(value.as_bytes())
                .map_err(|_| format!("net/http: invalid header field value for {name:?}"))?;
            builder = builder.header(name, value);
        }
        builder
            .header(CONNECTION, "close")
            .body(Empty::new())
            .map_err(|e| e.to_string())
    }
}

/// One HTTP/1.1 request on `io`: the status and `Location` of the answer.
/// The body is not read.
async fn exchange<T>(
    io: T,
    request: hyper::Request<Empty<Bytes>>,
) -> Result<(u16, Option<String>), String>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| translate_hyper(&e))?;
    let mut response = std::pin::pin!(sender.send_request(request));
    let mut conn = std::pin::pin!(conn);
    // The connection is driven here, not spawned: dropping it closes the socket.
    let response = tokio::select! {
        biased;
        r = &mut response => r,
        done = &mut conn => {
            done.map_err(|e| translate_hyper(&e))?;
            response.await
        }
    }
    .map_err(|e| translate_hyper(&e))?;
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((response.status().as_u16(), location))
}

fn translate_hyper(e: &hyper::Error) -> String {
    outpost_runtime::error::chain(e)
}

/// A URL as the prober needs it: scheme, host (no brackets), port and the
/// request target (path and query, escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

impl Url {
    fn authority(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    /// Resolves a `Location` header against this URL.
    fn join(&self, location: &str) -> Result<Url, String> {
        let location = location.split('#').next().unwrap_or("").trim();
        if let Some((scheme, rest)) = split_scheme(location) {
            let rest = rest
                .strip_prefix("//")
                .ok_or_else(|| format!("{location:?} has no host"))?;
            return Url::parse_authority(scheme.to_ascii_lowercase(), rest);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Url::parse_authority(self.scheme.clone(), rest);
        }
        let base = self.path.split('?').next().unwrap_or("/");
        let path = if location.is_empty() {
            return Ok(self.clone());
        } else if location.starts_with('/') {
            location.to_owned()
        } else if location.starts_with('?') {
            format!("{base}{location}")
        } else {
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Ok(Url {
            path: request_target(&path),
            ..self.clone()
        })
    }

    /// `host[:port][/path]` (after `scheme://`).
    fn parse_authority(scheme: String, rest: &str) -> Result<Url, String> {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| format!("missing ']' in host {authority:?}"))?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        let port = match port.filter(|p| !p.is_empty()) {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("invalid port {p:?}"))?,
            None if scheme == "https" => 443,
            None => 80,
        };
        Ok(Url {
            scheme,
            host: host.to_owned(),
            port,
            path: request_target(path),
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority(), self.path)
    }
}

fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some((scheme, rest))
}

fn is_absolute(location: &str) -> bool {
    split_scheme(location).is_some() || location.starts_with("//")
}

/// A path (with an optional query) as a request target: a leading `/`, no
/// fragment, and bytes not allowed in a URL percent-encoded.
fn request_target(raw: &str) -> String {
    let raw = raw.split('#').next().unwrap_or("");
    let mut out = String::with_capacity(raw.len() + 1);
    if !raw.starts_with('/') {
        out.push('/');
    }
    for b in raw.bytes() {
        if b <= b' ' || b >= 0x7f || b"\"<>\\^`{|}".contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// TLS for HTTPS probes and hooks: rustls over the tokio stream, without
/// certificate verification (the kubelet's `InsecureSkipVerify`; the
/// handshake signature is still checked against the certificate's key).
mod tls {
    use std::io::{self, Read, Write};
    use std::net::IpAddr;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{ready, Context, Poll};

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::TcpStream;

    /// A failed handshake.
    pub(crate) struct HandshakeError {
        pub message: String,
        /// The server answered in plain HTTP.
        pub plain_http: bool,
    }

    /// A client TLS connection over a TCP stream.
    pub(crate) struct TlsStream {
        io: TcpStream,
        conn: ClientConnection,
        eof: bool,
    }

    /// Runs the TLS handshake on `io` for `host`.
    pub(crate) async fn handshake(io: TcpStream, host: &str) -> Result<TlsStream, HandshakeError> {
        let fail = |message: String| HandshakeError {
            message,
            plain_http: false,
        };
        let config = client_config().map_err(|e| fail(format!("tls: {e}")))?;
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.to_owned())
                .map_err(|e| fail(format!("tls: server name {host:?}: {e}")))?,
        };
        let conn = ClientConnection::new(config, name).map_err(|e| fail(format!("tls: {e}")))?;
        let mut stream = TlsStream {
            io,
            conn,
            eof: false,
        };
        let mut first = Vec::new();
        match std::future::poll_fn(|cx| stream.poll_handshake(cx, &mut first)).await {
            Ok(()) => Ok(stream),
            // Go's wording, which the kubelet's hook fallback looks for.
            Err(_) if first.starts_with(b"HTTP/") => Err(HandshakeError {
                message: "http: server gave HTTP response to HTTPS client".into(),
                plain_http: true,
            }),
            Err(e) => Err(fail(format!("tls: {e}"))),
        }
    }

    fn client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    impl TlsStream {
        fn poll_handshake(
            &mut self,
            cx: &mut Context<'_>,
            first: &mut Vec<u8>,
        ) -> Poll<io::Result<()>> {
            loop {
                while self.conn.wants_write() {
                    ready!(self.poll_write_tls(cx))?;
                }
                if !self.conn.is_handshaking() {
                    return Poll::Ready(Ok(()));
                }
                if ready!(self.poll_read_tls(cx, Some(&mut *first)))? == 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection during the handshake",
                    )));
                }
            }
        }

        /// Reads TLS records from the socket and processes them; 0 at the end.
        fn poll_read_tls(
            &mut self,
            cx: &mut Context<'_>,
            first: Option<&mut Vec<u8>>,
        ) -> Poll<io::Result<usize>> {
            let mut sync = SyncIo {
                io: &mut self.io,
                cx,
                first,
            };
            let n = match self.conn.read_tls(&mut sync) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            };
            if let Err(e) = self.conn.process_new_packets() {
                // Best effort: let the alert reach the server.
                let _ = self.conn.write_tls(&mut sync);
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
            Poll::Ready(Ok(n))
        }

        fn poll_write_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
            let mut sync = SyncIo {
                io: &mut self.io,
                cx,
                first: None,
            };
            match self.conn.write_tls(&mut sync) {
                Ok(n) => Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            }
        }
    }

    impl AsyncRead for TlsStream {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            loop {
                match this.conn.reader().read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // Closed without close_notify: HTTP/1.1 frames its own end.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Poll::Ready(Ok(()))
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
                if this.eof {
                    return Poll::Ready(Ok(()));
                }
                while this.conn.wants_write() {
                    ready!(this.poll_write_tls(cx))?;
                }
                if ready!(this.poll_read_tls(cx, None))? == 0 {
                    this.eof = true;
                }
            }
        }
    }

    impl AsyncWrite for TlsStream {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let n = this.conn.writer().write(buf)?;
            while this.conn.wants_write() {
                match this.poll_write_tls(cx) {
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    // Buffered in rustls: the next write or flush sends it.
                    Poll::Pending if n > 0 => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            while this.conn.wants_write() {
                ready!(this.poll_write_tls(cx))?;
            }
            Pin::new(&mut this.io).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.conn.send_close_notify();
            while this.conn.wants_write() {
                ready!(this.poll_write_tls(cx))?;
            }
            Pin::new(&mut this.io).poll_shutdown(cx)
        }
    }

    /// The tokio stream as the blocking `Read`/`Write` rustls wants:
    /// `WouldBlock` when not ready (the waker is registered).
    struct SyncIo<'a, 'b> {
        io: &'a mut TcpStream,
        cx: &'a mut Context<'b>,
        /// Keeps the first bytes the server sent (to recognise a plain HTTP answer).
        first: Option<&'a mut Vec<u8>>,
    }

    impl Read for SyncIo<'_, '_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = {
                let mut read = ReadBuf::new(buf);
                match Pin::new(&mut *self.io).poll_read(self.cx, &mut read) {
                    Poll::Ready(Ok(())) => read.filled().len(),
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
                }
            };
            if let Some(first) = self.first.as_deref_mut() {
                let keep = 5usize.saturating_sub(first.len()).min(n);
                first.extend_from_slice(&buf[..keep]);
            }
            Ok(n)
        }
    }

    impl Write for SyncIo<'_, '_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
                Poll::Ready(r) => r,
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            }
        }

        fn flush(&mut self) -> io::Result<()> {
            match Pin::new(&mut *self.io).poll_flush(self.cx) {
                Poll::Ready(r) => r,
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    /// Accepts any certificate, checks handshake signatures.
    #[derive(Debug)]
    struct AcceptAnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

// ---------------------------------------------------------------------------
// Commands in the container.

/// How a command run in a container ended.
#[derive(Debug)]
pub(super) enum ExecEnd {
    /// It exited (code 128+n when killed by signal n), with its output (each stream capped).
    Exited {
        code: i32,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// It outlived the timeout and was killed.
    TimedOut,
    /// It could not be run (the supervisor unreachable, the container gone).
    Failed(String),
}

impl ExecEnd {
    /// stdout then stderr, as one text (the kubelet's combined output).
    pub(super) fn combined(stdout: &[u8], stderr: &[u8]) -> String {
        let mut all = String::from_utf8_lossy(stdout).into_owned();
        all.push_str(&String::from_utf8_lossy(stderr));
        all
    }
}

/// Runs `command` in the container through the supervisor, for at most
/// `timeout` (then the process is killed, as containerd does for a timed-out
/// exec: nothing is left hanging on a blocking thread).
pub(super) async fn exec_in(
    runtime: &Runtime,
    container_id: &str,
    command: Vec<String>,
    timeout: Duration,
) -> ExecEnd {
    let deadline = Instant::now() + timeout;
    let (runtime, id) = (runtime.clone(), container_id.to_owned());
    let start = tokio::task::spawn_blocking(move || start_exec(&runtime, &id, command));
    let started = match tokio::time::timeout_at(deadline.into(), start).await {
        Ok(Ok(Ok(started))) => started,
        Ok(Ok(Err(e))) => return ExecEnd::Failed(e),
        Ok(Err(e)) => return ExecEnd::Failed(format!("exec task: {e}")),
        Err(_) => return ExecEnd::TimedOut,
    };
    let Started {
        exec,
        stdout,
        stderr,
        process,
    } = started;
    let wait = async move {
        match tokio::task::spawn_blocking(move || exec.wait()).await {
            Ok(Ok(exit)) => Ok(exit),
            Ok(Err(e)) => Err(outpost_runtime::error::chain(&e)),
            Err(e) => Err(format!("exec wait task: {e}")),
        }
    };
    let kill = move || {
        // Only the process we started: not one that reused its pid since.
        if let Some((pid, started)) = process {
            if process_start_time(pid) == Some(started) {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    };
    collect(stdout, stderr, wait, deadline, kill).await
}

struct Started {
    exec: outpost_runtime::container::Exec,
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// The process and its start time, read right after the start (the
    /// supervisor reaps it only after it ends, so the pid is still its own).
    process: Option<(nix::unistd::Pid, u64)>,
}

fn start_exec(runtime: &Runtime, id: &str, args: Vec<String>) -> Result<Started, String> {
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("create a pipe: {e}"))
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let stdin: OwnedFd = File::open("/dev/null")
        .map_err(|e| format!("open /dev/null: {e}"))?
        .into();
    let request = ExecRequest {
        id: id.to_owned(),
        args,
        env: Vec::new(),
        cwd: None,
    };
    let exec = runtime
        .exec(id, request, [stdin, out_w, err_w])
        .map_err(|e| outpost_runtime::error::chain(&e))?;
    let pid = nix::unistd::Pid::from_raw(exec.pid);
    let process = process_start_time(pid).map(|started| (pid, started));
    Ok(Started {
        exec,
        stdout: out_r,
        stderr: err_r,
        process,
    })
}

/// A process' start time (`/proc/<pid>/stat` field 22, in clock ticks since boot).
fn process_start_time(pid: nix::unistd::Pid) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Reads a command's output while waiting for its exit, until `deadline`
/// (then calls `kill`). After the exit, output is read for [`OUTPUT_GRACE`] more.
async fn collect<W>(
    stdout: OwnedFd,
    stderr: OwnedFd,
    wait: W,
    deadline: Instant,
    kill: impl FnOnce(),
) -> ExecEnd
where
    W: Future<Output = Result<ExitInfo, String>>,
{
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let run = async {
        let reading =
            async { tokio::join!(read_capped(stdout, &mut out), read_capped(stderr, &mut err)) };
        let mut reading = std::pin::pin!(reading);
        let mut wait = std::pin::pin!(wait);
        tokio::select! {
            _ = &mut reading => wait.await,
            exit = &mut wait => {
                let _ = tokio::time::timeout(OUTPUT_GRACE, reading).await;
                exit
            }
        }
    };
    let exit = match tokio::time::timeout_at(deadline.into(), run).await {
        Ok(exit) => exit,
        Err(_) => {
            kill();
            return ExecEnd::TimedOut;
        }
    };
    match exit {
        Ok(exit) if exit.unknown => ExecEnd::Failed("the command's exit code was lost".into()),
        Ok(exit) => ExecEnd::Exited {
            code: exit.code,
            stdout: out,
            stderr: err,
        },
        Err(e) => ExecEnd::Failed(e),
    }
}

/// Reads a pipe to its end, keeping the first [`MAX_OUTPUT`] bytes.
async fn read_capped(fd: OwnedFd, into: &mut Vec<u8>) {
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut chunk = [0u8; 4096];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let keep = MAX_OUTPUT.saturating_sub(into.len()).min(n);
                into.extend_from_slice(&chunk[..keep]);
            }
        }
    }
}

/// An exec probe's outcome: exit 0 is a success; otherwise the output (or
/// the exit code when there is none) is the failure message.
fn exec_outcome(command: &[String], end: ExecEnd) -> Outcome {
    match end {
        ExecEnd::Exited { code: 0, .. } => Outcome::Success,
        ExecEnd::Exited {
            code,
            stdout,
            stderr,
        } => {
            let output = ExecEnd::combined(&stdout, &stderr);
            let output = output.trim_end();
            Outcome::Failure(if output.is_empty() {
                format!("command {:?} exited with {code}", command.join(" "))
            } else {
                output.to_owned()
            })
        }
        ExecEnd::TimedOut => Outcome::Failure(format!("command {:?} timed out", command.join(" "))),
        ExecEnd::Failed(e) => Outcome::Error(e),
    }
}

#[cfg(test)]
pub(super) mod testing {
    //! Real things to probe: network namespaces with HTTP(S) servers and TCP
    //! listeners inside (shared with the hooks' tests).

    use std::fs::File;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use nix::sched::{setns, CloneFlags};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    /// A self-signed test certificate (probes do not verify certificates).
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBkTCCATegAwIBAgIUQ0Q2xU9PFs4ZY1YrHeVyp/sm1zwwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSb3V0cG9zdC1wcm9iZS10ZXN0MCAXDTI2MTEyMTExMjMwNVoY
DzIxMjYxMDI4MTEyMzA1WjAdMRswGQYDVQQDDBJvdXRwb3N0LXByb2JlLXRlc3Qw
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASYEp9iMjDBChAxGP5YlJ6Y7JF5rXVk
5Tx/fwf0UhFk+nPRZoO2pBwiR019rdm5MYLe5OoV89ky5aOSGPUsd4Nho1MwUTAd
BgNVHQ4EFgQUi2AIQfnV4885/eN6XH6XGMyWwgcwHwYDVR0jBBgwFoAUi2AIQfnV
4885/eN6XH6XGMyWwgcwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBF
AiBEH3pentjbQFpXKPuKbxFDVXfmL+Xu1ORPunHEJScYOQIhAPxwP2617HmIOzYT
/EvR+jP/QF8tRxIZlUrMklFysQJJ
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgLWR0Q0iRReE8+j7S
gnXrW0mJiSaqCIKgs48+7rE4ygmhRANCAASYEp9iMjDBChAxGP5YlJ6Y7JF5rXVk
5Tx/fwf0UhFk+nPRZoO2pBwiR019rdm5MYLe5OoV89ky5aOSGPUsd4Nh
-----END PRIVATE KEY-----
";

    /// A network namespace with loopback up, removed on drop.
    pub struct TestNetns {
        pub path: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl TestNetns {
        pub async fn new() -> TestNetns {
            assert!(
                nix::unistd::geteuid().is_root(),
                "probe tests create network namespaces and enter them: run them as root"
            );
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("net");
            outpost_net::netns::create(&path)
                .await
                .expect("create a network namespace");
            TestNetns { path, _dir: dir }
        }

        /// Runs `f` on a thread inside the namespace (sockets it makes stay there).
        pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let ns = File::open(&self.path).expect("open the namespace");
                    setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns");
                    f()
                })
                .join()
                .expect("namespace thread")
            })
        }

        /// A port nothing listens on inside the namespace.
        pub fn closed_port(&self) -> u16 {
            self.run(|| {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind");
                l.local_addr().expect("addr").port()
            })
        }

        /// A TCP listener inside the namespace (connections complete in its backlog).
        pub fn listen(&self) -> TcpListener {
            self.run(|| TcpListener::bind("127.0.0.1:0").expect("bind"))
        }
    }

    impl Drop for TestNetns {
        fn drop(&mut self) {
            if let Err(e) = outpost_net::netns::remove(&self.path) {
                eprintln!("removing test namespace {}: {e}", self.path.display());
            }
        }
    }

    /// A small HTTP(S)/1.1 server on 127.0.0.1 inside a namespace. Routes:
    /// `/ok` `/headers` 200, `/fail` 500, `/redirect-here` → `/ok`,
    /// `/redirect-fail` → `/fail`, `/redirect-away` → another host, `/loop`
    /// → itself, `/slow` answers after 3 s; anything else 404.
    pub struct Server {
        pub port: u16,
        stop: Arc<AtomicBool>,
        seen: Arc<Mutex<Vec<String>>>,
        accept: Option<JoinHandle<()>>,
    }

    impl Server {
        pub fn http(netns: &TestNetns) -> Server {
            Server::start(netns.listen(), None)
        }

        pub fn https(netns: &TestNetns) -> Server {
            let cert = CertificateDer::from_pem_slice(CERT.as_bytes()).expect("test certificate");
            let key = PrivateKeyDer::from_pem_slice(KEY.as_bytes()).expect("test key");
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
            Server::start(netns.listen(), Some(Arc::new(config)))
        }

        fn start(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
            let port = listener.local_addr().expect("addr").port();
            listener.set_nonblocking(true).expect("nonblocking");
            let stop = Arc::new(AtomicBool::new(false));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (stop2, seen2) = (stop.clone(), seen.clone());
            let accept = std::thread::spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    let stream = match listener.accept() {
                        Ok((s, _)) => s,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                    };
                    stream.set_nonblocking(false).expect("blocking");
                    let (stop, seen, tls) = (stop2.clone(), seen2.clone(), tls.clone());
                    std::thread::spawn(move || match tls {
                        None => {
                            let mut s = stream;
                            serve(&mut s, &seen, &stop);
                        }
                        Some(config) => {
                            let conn = rustls::ServerConnection::new(config).expect("tls");
                            let mut s = rustls::StreamOwned::new(conn, stream);
                            serve(&mut s, &seen, &stop);
                            s.conn.send_close_notify();
                            let _ = s.flush();
                        }
                    });
                }
            });
            Server {
                port,
                stop,
                seen,
                accept: Some(accept),
            }
        }

        /// The request heads received so far.
        pub fn requests(&self) -> Vec<String> {
            self.seen.lock().expect("lock").clone()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.accept.take() {
                let _ = t.join();
            }
        }
    }

    fn serve<S: Read + Write>(s: &mut S, seen: &Mutex<Vec<String>>, stop: &AtomicBool) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            // Not a request line (a TLS ClientHello): answer 400, as web servers do.
            if !head[0].is_ascii_uppercase() {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
                return;
            }
            if head.len() > 16 << 10 {
                return;
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        seen.lock().expect("lock").push(head);
        let (status, extra) = match path.split('?').next().unwrap_or("/") {
            "/ok" | "/headers" => (200, ""),
            "/fail" => (500, ""),
            "/redirect-here" => (302, "Location: /ok\r\n"),
            "/redirect-fail" => (302, "Location: /fail\r\n"),
            "/redirect-away" => (302, "Location: http://elsewhere.invalid/ok\r\n"),
            "/loop" => (302, "Location: /loop\r\n"),
            "/slow" => {
                for _ in 0..30 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                (200, "")
            }
            _ => (404, ""),
        };
        let body = "probe test\n";
        let _ = write!(
            s,
            "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        );
        let _ = s.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Server, TestNetns};
    use super::*;
    use serde_json::json;

    fn probe(value: serde_json::Value) -> Probe {
        serde_json::from_value(value).expect("probe")
    }

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).expect("container")
    }

    fn outcome(step: char) -> Outcome {
        match step {
            '+' => Outcome::Success,
            '-' => Outcome::Failure("boom".into()),
            '?' => Outcome::Error("cannot".into()),
            other => panic!("unknown step {other:?}"),
        }
    }

    /// Feeds one attempt per period (`+` success, `-` failure, `?` error) and
    /// checks what each `record` said (`.` nothing, `H` healthy, `U` unhealthy)
    /// and what the probe reports at the end.
    fn check(
        kind: ProbeKind,
        spec: serde_json::Value,
        steps: &str,
        expect: &str,
        result: Option<bool>,
    ) {
        let t0 = Instant::now();
        let mut state = ProbeState::new(kind, &probe(spec.clone()), t0);
        let said: String = steps
            .chars()
            .enumerate()
            .map(|(i, step)| {
                let at = state.next_due() + Duration::from_millis(10 * i as u64);
                match state.record(&outcome(step), at) {
                    None => '.',
                    Some(Verdict::Healthy) => 'H',
                    Some(Verdict::Unhealthy(m)) => {
                        assert_eq!(m, "boom");
                        'U'
                    }
                }
            })
            .collect();
        assert_eq!(said, expect, "{kind} {spec} fed {steps}");
        assert_eq!(state.result(), result, "{kind} {spec} fed {steps}: result");
    }

    #[test]
    fn readiness_thresholds() {
        use ProbeKind::Readiness as R;
        // Not ready until the first success.
        check(R, json!({}), "", "", Some(false));
        check(R, json!({}), "+", "H", Some(true));
        check(R, json!({}), "-", ".", Some(false));
        // failureThreshold 3 (default): three failures in a row.
        check(R, json!({}), "+---", "H..U", Some(false));
        check(R, json!({}), "+--+--", "H.....", Some(true));
        // Errors are thrown away: they neither count nor break a run.
        check(R, json!({}), "+-?-?-", "H....U", Some(false));
        check(R, json!({}), "???", "...", Some(false));
        // successThreshold 2.
        check(R, json!({"successThreshold": 2}), "+", ".", Some(false));
        check(R, json!({"successThreshold": 2}), "++", ".H", Some(true));
        check(
            R,
            json!({"successThreshold": 2, "failureThreshold": 1}),
            "++-+",
            ".HU.",
            Some(false),
        );
        check(
            R,
            json!({"successThreshold": 2, "failureThreshold": 1}),
            "++-++",
            ".HU.H",
            Some(true),
        );
        // A readiness failure does not stop probing.
        check(
            R,
            json!({"failureThreshold": 1}),
            "-+-+",
            ".HUH",
            Some(true),
        );
    }

    #[test]
    fn liveness_and_startup_thresholds() {
        use ProbeKind::{Liveness as L, Startup as S};
        // Liveness starts healthy; failureThreshold failures in a row kill.
        check(L, json!({}), "", "", Some(true));
        check(L, json!({}), "+++", "...", Some(true));
        check(L, json!({}), "--+--", ".....", Some(true));
        check(L, json!({}), "---", "..U", Some(false));
        check(L, json!({"failureThreshold": 1}), "-", "U", Some(false));
        // After the kill verdict the probe is on hold: nothing more is counted.
        check(L, json!({"failureThreshold": 1}), "-+-", "U..", Some(false));
        // Startup starts unknown, succeeds once, or fails the container.
        check(S, json!({}), "", "", None);
        check(S, json!({}), "--+", "..H", Some(true));
        check(S, json!({}), "---", "..U", Some(false));
        check(S, json!({"failureThreshold": 30}), "-----", ".....", None);
    }

    #[test]
    fn schedule_starts_after_the_initial_delay_then_follows_the_period() {
        let t0 = Instant::now();
        let s = |secs: f64| t0 + Duration::from_secs_f64(secs);
        let mut state = ProbeState::new(
            ProbeKind::Liveness,
            &probe(json!({"initialDelaySeconds": 5, "periodSeconds": 10})),
            t0,
        );
        assert_eq!(state.next_due(), s(5.0));
        state.record(&Outcome::Success, s(5.3));
        assert_eq!(
            state.next_due(),
            s(15.0),
            "the next tick, not 10 s after the attempt ended"
        );
        state.record(&Outcome::Error("x".into()), s(15.1));
        assert_eq!(state.next_due(), s(25.0), "errors keep the schedule");
        state.record(&Outcome::Success, s(37.0));
        assert_eq!(state.next_due(), s(45.0), "an overrun skips ticks");
        // Defaults: no delay, 10 s period.
        let state = ProbeState::new(ProbeKind::Readiness, &probe(json!({})), t0);
        assert_eq!(state.next_due(), t0);
        // Nonsense values fall back to the defaults.
        let mut state = ProbeState::new(
            ProbeKind::Readiness,
            &probe(json!({"initialDelaySeconds": -3, "periodSeconds": 0})),
            t0,
        );
        assert_eq!(state.next_due(), t0);
        state.record(&Outcome::Success, t0);
        assert_eq!(state.next_due(), s(10.0));
    }

    #[test]
    fn startup_gates_liveness_and_readiness() {
        let t0 = Instant::now();
        let c = container(json!({
            "name": "web",
            "startupProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1, "failureThreshold": 3},
            "livenessProbe": {"tcpSocket": {"port": 80}, "terminationGracePeriodSeconds": 5},
            "readinessProbe": {"tcpSocket": {"port": 80}, "initialDelaySeconds": 2},
        }));
        let mut probes = ContainerProbes::new(&c, t0);
        assert!(!probes.started() && !probes.ready());
        assert_eq!(probes.due(t0), vec![ProbeKind::Startup]);
        assert_eq!(probes.next_due(), Some(t0));
        // Outcomes of gated probes are ignored.
        assert_eq!(
            probes.record(ProbeKind::Liveness, &Outcome::Failure("x".into()), t0),
            None
        );
        assert_eq!(
            probes.record(ProbeKind::Startup, &Outcome::Failure("x".into()), t0),
            None
        );
        assert_eq!(probes.next_due(), Some(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            probes.record(ProbeKind::Startup, &Outcome::Success, t1),
            Some(Verdict::Healthy)
        );
        assert!(probes.started());
        assert!(!probes.ready(), "readiness starts failed");
        // Startup is done; liveness runs at once, readiness after its initial delay.
        assert_eq!(probes.due(t1), vec![ProbeKind::Liveness]);
        assert_eq!(probes.next_due(), Some(t0), "overdue: at once");
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(
            probes.due(t2),
            vec![ProbeKind::Liveness, ProbeKind::Readiness]
        );
        assert_eq!(
            probes.record(ProbeKind::Readiness, &Outcome::Success, t2),
            Some(Verdict::Healthy)
        );
        assert!(probes.ready());
        assert_eq!(
            probes.record(ProbeKind::Startup, &Outcome::Failure("x".into()), t2),
            None
        );
        // Probe-level grace periods apply to liveness and startup kills.
        assert_eq!(
            probes.termination_grace_period(ProbeKind::Liveness),
            Some(5)
        );
        assert_eq!(probes.termination_grace_period(ProbeKind::Startup), None);
        // A liveness kill puts it on hold; readiness goes on.
        let fail = Outcome::Failure("dead".into());
        probes.record(ProbeKind::Liveness, &fail, t2);
        probes.record(ProbeKind::Liveness, &fail, t2);
        assert_eq!(
            probes.record(ProbeKind::Liveness, &fail, t2),
            Some(Verdict::Unhealthy("dead".into()))
        );
        assert!(probes.due(t2 + Duration::from_secs(60)) == vec![ProbeKind::Readiness]);
    }

    #[test]
    fn without_probes_a_container_is_started_and_ready() {
        let t0 = Instant::now();
        let probes = ContainerProbes::new(&container(json!({"name": "web"})), t0);
        assert!(probes.started() && probes.ready());
        assert_eq!(probes.next_due(), None);
        let only_readiness =
            container(json!({"name": "web", "readinessProbe": {"tcpSocket": {"port": 80}}}));
        let probes = ContainerProbes::new(&only_readiness, t0);
        assert!(probes.started() && !probes.ready());
        assert_eq!(probes.due(t0), vec![ProbeKind::Readiness]);
        // A failed startup probe leaves the container not started.
        let startup = container(
            json!({"name": "web", "startupProbe": {"tcpSocket": {"port": 80}, "failureThreshold": 1}}),
        );
        let mut probes = ContainerProbes::new(&startup, t0);
        assert_eq!(
            probes.record(ProbeKind::Startup, &Outcome::Failure("no".into()), t0),
            Some(Verdict::Unhealthy("no".into()))
        );
        assert!(!probes.started());
        assert_eq!(probes.next_due(), None, "on hold until the next container");
    }

    #[test]
    fn messages() {
        assert_eq!(
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
                .event_message(ProbeKind::Liveness),
            Some("Liveness probe failed: HTTP probe failed with statuscode: 500".into())
        );
        assert_eq!(Outcome::Success.event_message(ProbeKind::Readiness), None);
        assert_eq!(
            ProbeKind::Startup.kill_message("web"),
            "Container web failed startup probe, will be restarted"
        );
    }

    #[test]
    fn ports_resolve_by_number_or_name() {
        let c =
            container(json!({"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}));
        let check = |port: IntOrString, expect: Result<u16, &str>| {
            assert_eq!(
                resolve_port(&port, &c),
                expect.map_err(str::to_owned),
                "{port:?}"
            );
        };
        check(IntOrString::Int(80), Ok(80));
        check(IntOrString::String("http".into()), Ok(8080));
        check(IntOrString::String("81".into()), Ok(81));
        check(
            IntOrString::String("metrics".into()),
            Err("port \"metrics\" not found in the ports of container \"web\""),
        );
        check(IntOrString::Int(0), Err("invalid port number: 0"));
        check(IntOrString::Int(70000), Err("invalid port number: 70000"));
    }

    #[test]
    fn exec_commands_expand_static_env() {
        let c = container(json!({"name": "web", "env": [
            {"name": "PORT", "value": "8080"},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ]}));
        let command = vec![
            "check".to_owned(),
            "$(PORT)".to_owned(),
            "$(SECRET)$(NONE)$$".to_owned(),
        ];
        assert_eq!(
            expand_command(&command, &c),
            vec!["check", "8080", "$(NONE)$"]
        );
    }

    #[test]
    fn urls() {
        let base = Url {
            scheme: "http".into(),
            host: "127.0.0.1".into(),
            port: 8080,
            path: "/a/b?x=1".into(),
        };
        assert_eq!(base.to_string(), "http://127.0.0.1:8080/a/b?x=1");
        let check = |location: &str, expect: &str| {
            assert_eq!(
                base.join(location).map(|u| u.to_string()).as_deref(),
                Ok(expect),
                "{location}"
            );
        };
        check("/ok", "http://127.0.0.1:8080/ok");
        check("c", "http://127.0.0.1:8080/a/c");
        check("?y=2", "http://127.0.0.1:8080/a/b?y=2");
        check("//other:81/x", "http://other:81/x");
        check("HTTPS://[::1]/x#frag", "https://[::1]:443/x");
        check("http://user@host", "http://host:80/");
        assert!(base.join("http://host:port/").is_err());
        assert_eq!(request_target(""), "/");
        assert_eq!(request_target("healthz"), "/healthz");
        assert_eq!(request_target("/a b?q=\"x\"#f"), "/a%20b?q=%22x%22");
    }

    #[tokio::test]
    async fn exec_output_and_exit_codes_map_to_outcomes() {
        let command = vec!["sh".to_owned(), "-c".to_owned(), "check".to_owned()];
        let exited = |code, stdout: &str, stderr: &str| ExecEnd::Exited {
            code,
            stdout: stdout.into(),
            stderr: stderr.into(),
        };
        assert_eq!(
            exec_outcome(&command, exited(0, "fine", "")),
            Outcome::Success
        );
        assert_eq!(
            exec_outcome(&command, exited(1, "not ", "ready\n")),
            Outcome::Failure("not ready".into())
        );
        assert_eq!(
            exec_outcome(&command, exited(137, "", "")),
            Outcome::Failure("command \"sh -c check\" exited with 137".into())
        );
        assert_eq!(
            exec_outcome(&command, ExecEnd::TimedOut),
            Outcome::Failure("command \"sh -c check\" timed out".into())
        );
        assert_eq!(
            exec_outcome(&command, ExecEnd::Failed("no container".into())),
            Outcome::Error("no container".into())
        );
    }

    fn exit(code: i32) -> ExitInfo {
        ExitInfo {
            code,
            signal: None,
            oom_killed: false,
            unknown: false,
            finished_at: String::new(),
        }
    }

    fn pipe() -> (OwnedFd, File) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        (r, File::from(w))
    }

    #[tokio::test]
    async fn exec_collects_output_and_times_out() {
        use std::io::Write;
        use std::sync::atomic::{AtomicBool, Ordering};
        let later = || Instant::now() + Duration::from_secs(5);
        // Exited: both streams, capped.
        let ((out, mut out_w), (err, mut err_w)) = (pipe(), pipe());
        out_w
            .write_all(&vec![b'x'; MAX_OUTPUT + 100])
            .expect("write");
        err_w.write_all(b"warning").expect("write");
        drop((out_w, err_w));
        match collect(out, err, async { Ok(exit(3)) }, later(), || {
            panic!("killed")
        })
        .await
        {
            ExecEnd::Exited {
                code,
                stdout,
                stderr,
            } => {
                assert_eq!(
                    (code, stdout.len(), stderr.as_slice()),
                    (3, MAX_OUTPUT, &b"warning"[..])
                );
            }
            other => panic!("{other:?}"),
        }
        // Exited, but a child it left holds the pipes: the exit still counts.
        let ((out, mut out_w), (err, _err_w)) = (pipe(), pipe());
        out_w.write_all(b"ok").expect("write");
        match collect(out, err, async { Ok(exit(0)) }, later(), || {
            panic!("killed")
        })
        .await
        {
            ExecEnd::Exited {
                code: 0, stdout, ..
            } => assert_eq!(stdout, b"ok"),
            other => panic!("{other:?}"),
        }
        // Never ends: killed at the deadline.
        let ((out, _out_w), (err, _err_w)) = (pipe(), pipe());
        let killed = AtomicBool::new(false);
        let end = collect(
            out,
            err,
            std::future::pending(),
            Instant::now() + Duration::from_millis(100),
            || killed.store(true, Ordering::SeqCst),
        )
        .await;
        assert!(matches!(end, ExecEnd::TimedOut), "{end:?}");
        assert!(killed.load(Ordering::SeqCst));
        // The runtime failed.
        let ((out, _), (err, _)) = (pipe(), pipe());
        let end = collect(
            out,
            err,
            async { Err("supervisor gone".into()) },
            later(),
            || {},
        )
        .await;
        assert!(
            matches!(end, ExecEnd::Failed(ref e) if e == "supervisor gone"),
            "{end:?}"
        );
    }

    /// The worker may run probes and hooks on spawned tasks.
    #[test]
    fn attempts_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let (rt, c, p) = (runtime(), web(), probe(json!({})));
        let target = Target {
            runtime: &rt,
            container_id: "pod.test.web.0",
            netns: None,
            pod_ip: None,
            container: &c,
        };
        assert_send(&run(&p, &target));
        let handler = k8s_openapi::api::core::v1::LifecycleHandler::default();
        assert_send(&super::super::hooks::run(&handler, &target, Duration::ZERO));
    }

    #[test]
    fn process_start_times_identify_a_process() {
        let me = nix::unistd::getpid();
        let started = process_start_time(me).expect("our own start time");
        assert_eq!(process_start_time(me), Some(started));
        // pid_max is at most 2^22: this pid never exists.
        assert_eq!(
            process_start_time(nix::unistd::Pid::from_raw(i32::MAX)),
            None
        );
    }

    /// A runtime handle for targets; these tests never exec.
    fn runtime() -> Runtime {
        Runtime::new(
            Path::new("/nonexistent/state"),
            Path::new("/nonexistent/run"),
            Path::new("/bin/false"),
        )
    }

    async fn probe_in(netns: Option<&Path>, c: &Container, spec: serde_json::Value) -> Outcome {
        let rt = runtime();
        let target = Target {
            runtime: &rt,
            container_id: "pod.test.web.0",
            netns,
            pod_ip: None,
            container: c,
        };
        run(&probe(spec), &target).await
    }

    fn web() -> Container {
        container(json!({"name": "web"}))
    }

    #[tokio::test]
    async fn http_probes_inside_the_pod_namespace() {
        let netns = TestNetns::new().await;
        let server = Server::http(&netns);
        let ns = Some(netns.path.as_path());
        let get = |path: &str| json!({"httpGet": {"path": path, "port": server.port}});
        assert_eq!(probe_in(ns, &web(), get("/ok")).await, Outcome::Success);
        assert_eq!(
            probe_in(ns, &web(), get("/fail")).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        assert_eq!(
            probe_in(ns, &web(), get("/nothing-here")).await,
            Outcome::Failure("HTTP probe failed with statuscode: 404".into())
        );
        // The listener exists only inside the pod's namespace.
        let free_here = std::net::TcpListener::bind(("127.0.0.1", server.port)).is_ok();
        if free_here {
            let outside = probe_in(None, &web(), get("/ok")).await;
            assert!(
                matches!(&outside, Outcome::Failure(m) if m.ends_with("connect: connection refused")),
                "{outside:?}"
            );
        }
        // Connection refused names the address, as Go does.
        let closed = netns.closed_port();
        assert_eq!(
            probe_in(ns, &web(), json!({"httpGet": {"path": "/ok", "port": closed}})).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{closed}/ok\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
            ))
        );
        // timeoutSeconds bounds the attempt.
        assert_eq!(
            probe_in(ns, &web(), json!({"httpGet": {"path": "/slow", "port": server.port}, "timeoutSeconds": 1})).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                server.port
            ))
        );
    }

    #[tokio::test]
    async fn http_probes_send_headers_and_resolve_named_ports() {
        let netns = TestNetns::new().await;
        let server = Server::http(&netns);
        let ns = Some(netns.path.as_path());
        let c = container(
            json!({"name": "web", "ports": [{"name": "http", "containerPort": server.port}]}),
        );
        let spec = json!({"httpGet": {
            "path": "/headers?verbose=1",
            "port": "http",
            "httpHeaders": [
                {"name": "X-Custom", "value": "yes"},
                {"name": "x-custom", "value": "again"},
                {"name": "Host", "value": "probe.example"},
            ],
        }});
        assert_eq!(probe_in(ns, &c, spec).await, Outcome::Success);
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let head = &requests[0];
        assert!(
            head.starts_with("GET /headers?verbose=1 HTTP/1.1\r\n"),
            "{head}"
        );
        for line in [
            "Host: probe.example",
            "User-Agent: kube-probe/1.34",
            "Accept: */*",
            "X-Custom: yes",
            "X-Custom: again",
            "Connection: close",
        ] {
            assert!(
                head.contains(&format!("{line}\r\n")),
                "{line} missing in\n{head}"
            );
        }
        // A given User-Agent replaces the kubelet's; an empty Accept removes it.
        let spec = json!({"httpGet": {"path": "/headers", "port": server.port, "httpHeaders": [
            {"name": "User-Agent", "value": "mine"}, {"name": "Accept", "value": ""},
        ]}});
        assert_eq!(probe_in(ns, &c, spec).await, Outcome::Success);
        let head = server.requests().pop().expect("request");
        assert!(
            head.contains("User-Agent: mine\r\n") && !head.contains("kube-probe"),
            "{head}"
        );
        assert!(!head.contains("Accept:"), "{head}");
        assert!(
            head.contains(&format!("Host: 127.0.0.1:{}\r\n", server.port)),
            "{head}"
        );
        // A port name the container does not have is an error, not a failure.
        let spec = json!({"httpGet": {"path": "/ok", "port": "metrics"}});
        assert!(matches!(probe_in(ns, &c, spec).await, Outcome::Error(_)));
    }

    #[tokio::test]
    async fn http_probes_follow_redirects_only_to_the_same_host() {
        let netns = TestNetns::new().await;
        let server = Server::http(&netns);
        let ns = Some(netns.path.as_path());
        let get = |path: &str| json!({"httpGet": {"path": path, "port": server.port}});
        assert_eq!(
            probe_in(ns, &web(), get("/redirect-here")).await,
            Outcome::Success
        );
        assert!(server
            .requests()
            .last()
            .is_some_and(|h| h.starts_with("GET /ok ")));
        assert_eq!(
            probe_in(ns, &web(), get("/redirect-fail")).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        // Another host: not followed, and the kubelet counts the 3xx as a success.
        let before = server.requests().len();
        assert_eq!(
            probe_in(ns, &web(), get("/redirect-away")).await,
            Outcome::Success
        );
        assert_eq!(server.requests().len(), before + 1);
        let before = server.requests().len();
        assert_eq!(
            probe_in(ns, &web(), get("/loop")).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{}/loop\": stopped after 10 redirects",
                server.port
            ))
        );
        assert_eq!(server.requests().len(), before + 10);
    }

    #[tokio::test]
    async fn https_probes_skip_verification() {
        let netns = TestNetns::new().await;
        let server = Server::https(&netns);
        let plain = Server::http(&netns);
        let ns = Some(netns.path.as_path());
        let get = |port: u16, path: &str| json!({"httpGet": {"scheme": "HTTPS", "path": path, "port": port}});
        assert_eq!(
            probe_in(ns, &web(), get(server.port, "/ok")).await,
            Outcome::Success
        );
        assert_eq!(
            probe_in(ns, &web(), get(server.port, "/fail")).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        let head = server.requests().pop().expect("request");
        assert!(head.contains("User-Agent: kube-probe/1.34\r\n"), "{head}");
        assert_eq!(
            probe_in(ns, &web(), get(plain.port, "/ok")).await,
            Outcome::Failure(format!(
                "Get \"https://127.0.0.1:{}/ok\": http: server gave HTTP response to HTTPS client",
                plain.port
            ))
        );
    }

    #[tokio::test]
    async fn tcp_probes_inside_the_pod_namespace() {
        let netns = TestNetns::new().await;
        let listener = netns.listen();
        let port = listener.local_addr().expect("addr").port();
        let ns = Some(netns.path.as_path());
        assert_eq!(
            probe_in(ns, &web(), json!({"tcpSocket": {"port": port}})).await,
            Outcome::Success
        );
        let named =
            container(json!({"name": "web", "ports": [{"name": "db", "containerPort": port}]}));
        assert_eq!(
            probe_in(ns, &named, json!({"tcpSocket": {"port": "db"}})).await,
            Outcome::Success
        );
        assert!(matches!(
            probe_in(ns, &named, json!({"tcpSocket": {"port": "nope"}})).await,
            Outcome::Error(_)
        ));
        let closed = netns.closed_port();
        assert_eq!(
            probe_in(ns, &web(), json!({"tcpSocket": {"port": closed}})).await,
            Outcome::Failure(format!(
                "dial tcp 127.0.0.1:{closed}: connect: connection refused"
            ))
        );
        drop(listener);
        assert_eq!(
            probe_in(ns, &web(), json!({"tcpSocket": {"port": port}})).await,
            Outcome::Failure(format!(
                "dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
        // A namespace that is gone is our problem, not the container's.
        let gone = netns.path.with_file_name("gone");
        assert!(matches!(
            probe_in(Some(&gone), &web(), json!({"tcpSocket": {"port": port}})).await,
            Outcome::Error(m) if m.contains("network namespace")
        ));
    }

    #[tokio::test]
    async fn host_network_probes_use_the_agent_namespace() {
        // Loopback of the test's own namespace, on a port the kernel picks.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let rt = runtime();
        let c = web();
        let mut target = Target {
            runtime: &rt,
            container_id: "pod.test.web.0",
            netns: None,
            pod_ip: Some("127.0.0.1"),
            container: &c,
        };
        let tcp = probe(json!({"tcpSocket": {"port": port}}));
        assert_eq!(run(&tcp, &target).await, Outcome::Success);
        target.pod_ip = None;
        assert_eq!(run(&tcp, &target).await, Outcome::Success);
        let named = probe(json!({"tcpSocket": {"port": port, "host": "localhost"}}));
        assert_eq!(run(&named, &target).await, Outcome::Success);
    }

    #[tokio::test]
    async fn unsupported_probes() {
        let c = web();
        assert_eq!(
            probe_in(None, &c, json!({"grpc": {"port": 9090}})).await,
            Outcome::Failure("grpc probes are not supported".into())
        );
        assert!(matches!(
            probe_in(None, &c, json!({})).await,
            Outcome::Error(_)
        ));
        assert!(matches!(
            probe_in(None, &c, json!({"exec": {"command": []}})).await,
            Outcome::Error(_)
        ));
    }
}
