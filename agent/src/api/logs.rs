//! `GET /api/v1/namespaces/{ns}/pods/{name}/log`: a container's CRI log file,
//! as text lines, the way the kubelet serves `kubectl logs`.
//!
//! `follow` watches the container's log directory with inotify rather than
//! polling the file: no wake-ups while a container is quiet (DESIGN: no busy
//! polling), and renames/creates in the directory tell us about rotation. If
//! inotify cannot be had (instance or watch limits), it falls back to checking
//! the file once a second. A follow ends when the client goes, at shutdown,
//! when the container stops running (after a last read) or the pod is deleted
//! or replaced, and when the log directory goes away.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchMask};
use jiff::Timestamp;
use outpost_runtime::container::log::{parse_line, read_tail, LogRecord, Stream};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::printers::text;
use super::route::{flag, number};
use super::status::ApiError;
use crate::state::{ClusterState, ObjectKey};

/// The query parameters of a log request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<u64>,
    pub since: Option<Timestamp>,
}

impl LogOptions {
    /// Reads and checks the parameters as the API server validates them.
    pub fn parse(params: &HashMap<String, String>, now: Timestamp) -> Result<LogOptions, ApiError> {
        let bad = ApiError::bad_request;
        let tail_lines = match number(params, "tailLines").map_err(bad)? {
            Some(n) if n < 0 => {
                return Err(bad("tailLines: must be greater than or equal to 0".into()))
            }
            n => n.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        };
        let limit_bytes = match number(params, "limitBytes").map_err(bad)? {
            Some(n) if n < 1 => return Err(bad("limitBytes: must be greater than 0".into())),
            n => n.map(|n| n as u64),
        };
        let since_seconds = number(params, "sinceSeconds").map_err(bad)?;
        let since_time = params.get("sinceTime").filter(|s| !s.is_empty());
        let since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "at most one of sinceTime or sinceSeconds may be specified".into(),
                ))
            }
            (Some(s), None) if s < 1 => {
                return Err(bad("sinceSeconds: must be greater than 0".into()))
            }
            (Some(s), None) => Some(now - jiff::SignedDuration::from_secs(s)),
            (None, Some(t)) => Some(
                t.parse()
                    .map_err(|_| bad(format!("sinceTime: invalid RFC 3339 time {t:?}")))?,
            ),
            (None, None) => None,
        };
        Ok(LogOptions {
            container: params.get("container").filter(|c| !c.is_empty()).cloned(),
            follow: flag(params, "follow").map_err(bad)?,
            previous: flag(params, "previous").map_err(bad)?,
            timestamps: flag(params, "timestamps").map_err(bad)?,
            tail_lines,
            limit_bytes,
            since,
        })
    }
}

fn names(containers: &[Value]) -> String {
    containers
        .iter()
        .map(|c| text(c, "/name"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn containers<'a>(pod: &'a Value, field: &str) -> &'a [Value] {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The container a request means, with the API server's messages.
pub fn choose_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = text(pod, "/metadata/name");
    let main = containers(pod, "containers");
    let Some(requested) = requested else {
        return match main {
            [only] => Ok(text(only, "/name").to_owned()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            _ => {
                let mut message = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names(main)
                );
                let init = containers(pod, "initContainers");
                if !init.is_empty() {
                    message.push_str(&format!(
                        " or one of the init containers: [{}]",
                        names(init)
                    ));
                }
                Err(ApiError::bad_request(message))
            }
        };
    };
    let known = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .any(|field| {
            containers(pod, field)
                .iter()
                .any(|c| text(c, "/name") == requested)
        });
    if known {
        Ok(requested.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "container {requested} is not valid for pod {name}"
        )))
    }
}

/// A container's status in any of the pod's status lists.
fn container_status<'a>(pod: &'a Value, container: &str) -> Option<&'a Value> {
    [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .find_map(|field| {
        pod.pointer(&format!("/status/{field}"))
            .and_then(Value::as_array)?
            .iter()
            .find(|s| text(s, "/name") == container)
    })
}

fn restart_count(status: &Value) -> u32 {
    status
        .get("restartCount")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// Whether the pod (same uid) still runs this instance of the container.
fn still_running(pod: Option<&Value>, uid: &str, container: &str, restart: u32) -> bool {
    let Some(pod) = pod.filter(|p| text(p, "/metadata/uid") == uid) else {
        return false;
    };
    container_status(pod, container)
        .is_some_and(|s| restart_count(s) == restart && s.pointer("/state/running").is_some())
}

/// Which log file a request reads, and whether it may be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    pub container: String,
    pub uid: String,
    pub restart: u32,
    /// The container is running this instance: following makes sense.
    pub running: bool,
}

/// Picks the container instance, with the kubelet's messages for one that has no log.
pub fn target(
    pod: &Value,
    options: &LogOptions,
    log_exists: impl Fn(u32) -> bool,
) -> Result<LogTarget, ApiError> {
    let container = choose_container(pod, options.container.as_deref())?;
    let name = text(pod, "/metadata/name");
    let uid = text(pod, "/metadata/uid").to_owned();
    let waiting = |reason: &str| {
        let reason = if reason.is_empty() {
            "ContainerCreating"
        } else {
            reason
        };
        ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        ))
    };
    let Some(status) = container_status(pod, &container) else {
        return Err(waiting(""));
    };
    let count = restart_count(status);
    if options.previous {
        if count == 0 {
            return Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
        return Ok(LogTarget {
            container,
            uid,
            restart: count - 1,
            running: false,
        });
    }
    if let Some(reason) = status.pointer("/state/waiting").map(|w| text(w, "/reason")) {
        if !log_exists(count) {
            return Err(waiting(reason));
        }
    }
    let running = status.pointer("/state/running").is_some();
    Ok(LogTarget {
        container,
        uid,
        restart: count,
        running,
    })
}

/// Formats lines for the response: timestamps, `sinceTime`, `limitBytes`.
#[derive(Debug)]
struct Render {
    timestamps: bool,
    since: Option<Timestamp>,
    limit: Option<u64>,
    sent: u64,
}

impl Render {
    fn new(options: &LogOptions) -> Render {
        Render {
            timestamps: options.timestamps,
            since: options.since,
            limit: options.limit_bytes,
            sent: 0,
        }
    }

    /// Appends the lines to `out`; `false` once `limitBytes` is used up.
    fn push(&mut self, lines: &[LogRecord], out: &mut Vec<u8>) -> bool {
        for line in lines {
            if let Some(since) = self.since {
                if line.time.parse::<Timestamp>().is_ok_and(|t| t < since) {
                    continue;
                }
            }
            let start = out.len();
            if self.timestamps {
                out.extend_from_slice(line.time.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(&line.content);
            if !line.partial {
                out.push(b'\n');
            }
            let added = (out.len() - start) as u64;
            if let Some(limit) = self.limit {
                if self.sent + added >= limit {
                    out.truncate(start + (limit - self.sent) as usize);
                    self.sent = limit;
                    return false;
                }
            }
            self.sent += added;
        }
        true
    }

    fn done(&self) -> bool {
        self.limit.is_some_and(|l| self.sent >= l)
    }
}

/// The whole log (or its tail) as the response body.
pub async fn read(path: PathBuf, options: &LogOptions) -> Result<Vec<u8>, ApiError> {
    let tail = options.tail_lines;
    let lines = tokio::task::spawn_blocking(move || read_tail(&path, tail))
        .await
        .map_err(|e| ApiError::internal(format!("reading the log: {e}")))?
        .map_err(|e| ApiError::internal(format!("reading the log: {e}")))?;
    let mut out = Vec::new();
    Render::new(options).push(&lines, &mut out);
    Ok(out)
}

/// Joins `P` records with what follows on the same stream into whole lines.
#[derive(Debug, Default)]
struct Joiner {
    open: [Option<LogRecord>; 2],
}

impl Joiner {
    fn push(&mut self, record: LogRecord) -> Option<LogRecord> {
        let i = match record.stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        };
        let partial = record.partial;
        let line = match self.open[i].take() {
            Some(mut line) => {
                line.content.extend_from_slice(&record.content);
                line
            }
            None => record,
        };
        if partial {
            self.open[i] = Some(line);
            None
        } else {
            Some(LogRecord {
                partial: false,
                ..line
            })
        }
    }
}

/// Longest unterminated record kept while waiting for its end; a file with
/// longer "lines" is not in the CRI format and the excess is dropped.
const MAX_PENDING: usize = 1 << 20;

/// The live log file being followed.
#[derive(Debug)]
struct LiveFile {
    file: tokio::fs::File,
    inode: u64,
    /// The start of a record whose `\n` has not been written yet.
    pending: Vec<u8>,
}

impl LiveFile {
    async fn open(path: &Path) -> io::Result<LiveFile> {
        let file = tokio::fs::File::open(path).await?;
        let inode = file.metadata().await?.ino();
        Ok(LiveFile {
            file,
            inode,
            pending: Vec::new(),
        })
    }

    /// The complete records written since the last read.
    async fn read_records(&mut self) -> io::Result<Vec<LogRecord>> {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut records = Vec::new();
        loop {
            let n = self.file.read(&mut chunk).await?;
            if n == 0 {
                return Ok(records);
            }
            self.pending.extend_from_slice(&chunk[..n]);
            if let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') {
                let rest = self.pending.split_off(end + 1);
                records.extend(
                    self.pending
                        .split(|&b| b == b'\n')
                        .filter(|l| !l.is_empty())
                        .filter_map(parse_line),
                );
                self.pending = rest;
            }
            if self.pending.len() > MAX_PENDING {
                self.pending.clear();
            }
        }
    }
}

/// `<path>.<n>`: a rotated file.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The records of the rotated files, oldest first, reading back only as far
/// as `enough` asks; `skip_inode` is the live file (it may have just been rotated).
fn older_records(
    path: &Path,
    skip_inode: u64,
    enough: impl Fn(&[LogRecord]) -> bool,
) -> Vec<LogRecord> {
    let mut records: Vec<LogRecord> = Vec::new();
    for n in 1.. {
        let file = rotated(path, n);
        let Ok(meta) = std::fs::metadata(&file) else {
            break;
        };
        if meta.ino() == skip_inode {
            continue;
        }
        let Ok(bytes) = std::fs::read(&file) else {
            break;
        };
        let mut older: Vec<LogRecord> = bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(parse_line)
            .collect();
        older.append(&mut records);
        records = older;
        if enough(&records) {
            break;
        }
    }
    records
}

/// Everything a follow needs.
#[derive(Debug)]
pub struct Follow {
    pub path: PathBuf,
    pub options: LogOptions,
    pub pod: ObjectKey,
    pub target: LogTarget,
    pub state: ClusterState,
    pub shutdown: CancellationToken,
}

/// How long to keep reading after the container stopped, for output still
/// on its way from the pipe to the file.
const LAST_READ: Duration = Duration::from_millis(250);

/// Streams the log into `tx`: the tail first, then lines as they are written.
pub async fn follow(f: Follow, tx: mpsc::Sender<Bytes>) {
    let shutdown = f.shutdown.clone();
    tokio::select! {
        r = follow_inner(f, &tx) => {
            if let Err(e) = r {
                tracing::debug!("log follow ended: {e}");
            }
        }
        _ = tx.closed() => {}
        _ = shutdown.cancelled() => {}
    }
}

/// What woke the follower.
enum Wake {
    File,
    DirGone,
    Pod,
}

async fn follow_inner(f: Follow, tx: &mpsc::Sender<Bytes>) -> io::Result<()> {
    let mut changes = f.state.subscribe();
    let dir = f.path.parent().map(Path::to_owned).unwrap_or_default();
    // Watch before reading so no write falls in between.
    let mut events = Inotify::init()
        .and_then(|inotify| {
            let mask = WatchMask::MODIFY
                | WatchMask::CREATE
                | WatchMask::MOVED_TO
                | WatchMask::MOVED_FROM
                | WatchMask::DELETE
                | WatchMask::DELETE_SELF
                | WatchMask::MOVE_SELF;
            inotify.watches().add(&dir, mask)?;
            inotify.into_event_stream(vec![0u8; 4096])
        })
        .map_err(|e| {
            tracing::debug!(
                "no inotify for {}: {e}; checking once a second",
                dir.display()
            )
        })
        .ok();
    let mut tick = tokio::time::interval(Duration::from_secs(1));

    let mut live = LiveFile::open(&f.path).await?;
    let mut render = Render::new(&f.options);
    let mut joiner = Joiner::default();

    // The tail: from the live file, and the rotated ones if it has too few lines.
    let live_records = live.read_records().await?;
    let tail = f.options.tail_lines;
    let whole_lines = |records: &[LogRecord]| records.iter().filter(|r| !r.partial).count();
    let mut records = if tail.is_none_or(|n| whole_lines(&live_records) < n) {
        let (path, inode) = (f.path.clone(), live.inode);
        tokio::task::spawn_blocking(move || {
            older_records(&path, inode, |older| {
                tail.is_some_and(|n| whole_lines(older) >= n)
            })
        })
        .await
        .unwrap_or_default()
    } else {
        Vec::new()
    };
    records.extend(live_records);
    let mut lines: Vec<LogRecord> = records.into_iter().filter_map(|r| joiner.push(r)).collect();
    if let Some(n) = tail {
        lines.drain(..lines.len().saturating_sub(n));
    }
    if !send(&mut render, &lines, tx).await {
        return Ok(());
    }

    // The container may have stopped since the request was checked.
    let mut running = still_running(
        f.state.get(&f.pod).as_ref(),
        &f.target.uid,
        &f.target.container,
        f.target.restart,
    );
    let mut last_read_until = None;
    loop {
        // Drain what was written; follow a rotation to the new file.
        if !drain(&mut live, &mut joiner, &mut render, tx).await? {
            return Ok(());
        }
        if let Ok(meta) = tokio::fs::metadata(&f.path).await {
            if meta.ino() != live.inode {
                // Rotated: the writer is done with the old file, so what it
                // holds now is final; read it to the end, then switch.
                if !drain(&mut live, &mut joiner, &mut render, tx).await? {
                    return Ok(());
                }
                live = LiveFile::open(&f.path).await?;
                continue;
            }
        }
        if !running {
            let until =
                *last_read_until.get_or_insert_with(|| tokio::time::Instant::now() + LAST_READ);
            if tokio::time::Instant::now() >= until {
                return Ok(());
            }
        }
        let wake = tokio::select! {
            w = file_changed(&mut events, &mut tick) => w,
            w = pod_changed(&mut changes, &f.pod) => w,
            _ = tokio::time::sleep_until(last_read_until.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600))), if last_read_until.is_some() => Wake::File,
        };
        match wake {
            Wake::File => {}
            Wake::DirGone => running = false,
            Wake::Pod => {
                let pod = f.state.get(&f.pod);
                running = running
                    && still_running(
                        pod.as_ref(),
                        &f.target.uid,
                        &f.target.container,
                        f.target.restart,
                    );
            }
        }
    }
}

/// Sends what was appended to `live` since the last read; false when the client is done.
async fn drain(
    live: &mut LiveFile,
    joiner: &mut Joiner,
    render: &mut Render,
    tx: &mpsc::Sender<Bytes>,
) -> io::Result<bool> {
    let lines: Vec<LogRecord> = live
        .read_records()
        .await?
        .into_iter()
        .filter_map(|r| joiner.push(r))
        .collect();
    Ok(send(render, &lines, tx).await)
}

async fn send(render: &mut Render, lines: &[LogRecord], tx: &mpsc::Sender<Bytes>) -> bool {
    let mut out = Vec::new();
    let more = render.push(lines, &mut out);
    if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
        return false;
    }
    more && !render.done()
}

async fn file_changed(
    events: &mut Option<inotify::EventStream<Vec<u8>>>,
    tick: &mut tokio::time::Interval,
) -> Wake {
    let Some(stream) = events else {
        tick.tick().await;
        return Wake::File;
    };
    match stream.next().await {
        Some(Ok(e))
            if e.mask
                .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED) =>
        {
            Wake::DirGone
        }
        Some(Ok(_)) => Wake::File,
        Some(Err(e)) => {
            tracing::debug!("inotify: {e}; checking once a second");
            *events = None;
            Wake::File
        }
        None => {
            *events = None;
            Wake::File
        }
    }
}

async fn pod_changed(
    changes: &mut broadcast::Receiver<crate::state::WatchEvent>,
    pod: &ObjectKey,
) -> Wake {
    loop {
        match changes.recv().await {
            Ok(event) if event.key == *pod => return Wake::Pod,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return Wake::Pod,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(q: &str) -> HashMap<String, String> {
        super::super::route::query(Some(q))
    }

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().expect("time")
    }

    #[test]
    fn options_parse_and_validate() {
        let o = LogOptions::parse(
            &params(
                "container=c&follow=true&tailLines=10&timestamps=1&limitBytes=5&sinceSeconds=60",
            ),
            now(),
        )
        .expect("valid");
        assert_eq!(o.container.as_deref(), Some("c"));
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(10), Some(5)));
        assert_eq!(o.since, Some("2024-05-01T11:59:00Z".parse().expect("time")));
        let o = LogOptions::parse(
            &params("sinceTime=2024-05-01T10:00:00Z&previous=true"),
            now(),
        )
        .expect("valid");
        assert!(o.previous);
        assert_eq!(o.since, Some("2024-05-01T10:00:00Z".parse().expect("time")));
        for bad in [
            "tailLines=-1",
            "tailLines=x",
            "limitBytes=0",
            "sinceSeconds=0",
            "sinceTime=yesterday",
            "follow=maybe",
            "sinceSeconds=5&sinceTime=2024-05-01T10:00:00Z",
        ] {
            let err = LogOptions::parse(&params(bad), now()).expect_err(bad);
            assert_eq!(err.code, 400, "{bad}");
        }
    }

    fn pod(containers: &[&str], init: &[&str], statuses: Value) -> Value {
        let c = |names: &[&str]| {
            names
                .iter()
                .map(|n| json!({"name": n, "image": "busybox"}))
                .collect::<Vec<_>>()
        };
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": c(containers), "initContainers": c(init)},
            "status": {"containerStatuses": statuses}})
    }

    #[test]
    fn containers_are_chosen_like_the_api_server() {
        let one = pod(&["a"], &[], json!([]));
        assert_eq!(choose_container(&one, None), Ok("a".into()));
        let two = pod(&["a", "b"], &[], json!([]));
        assert_eq!(
            choose_container(&two, None).expect_err("ambiguous").message,
            "a container name must be specified for pod web, choose one of: [a b]"
        );
        let with_init = pod(&["a", "b"], &["setup"], json!([]));
        assert_eq!(
            choose_container(&with_init, None).expect_err("ambiguous").message,
            "a container name must be specified for pod web, choose one of: [a b] or one of the init containers: [setup]"
        );
        assert_eq!(
            choose_container(&with_init, Some("setup")),
            Ok("setup".into())
        );
        assert_eq!(
            choose_container(&two, Some("c"))
                .expect_err("unknown")
                .message,
            "container c is not valid for pod web"
        );
    }

    #[test]
    fn targets_pick_the_instance() {
        let running = pod(
            &["a"],
            &[],
            json!([{"name": "a", "restartCount": 2, "state": {"running": {}}}]),
        );
        let o = LogOptions::default();
        assert_eq!(
            target(&running, &o, |_| true),
            Ok(LogTarget {
                container: "a".into(),
                uid: "u1".into(),
                restart: 2,
                running: true
            })
        );
        let previous = LogOptions {
            previous: true,
            ..LogOptions::default()
        };
        assert_eq!(
            target(&running, &previous, |_| true).map(|t| (t.restart, t.running)),
            Ok((1, false))
        );
        let fresh = pod(
            &["a"],
            &[],
            json!([{"name": "a", "restartCount": 0, "state": {"running": {}}}]),
        );
        assert_eq!(
            target(&fresh, &previous, |_| true)
                .expect_err("no previous")
                .message,
            "previous terminated container \"a\" in pod \"web\" not found"
        );
        let creating = pod(
            &["a"],
            &[],
            json!([{"name": "a", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]),
        );
        assert_eq!(
            target(&creating, &o, |_| false)
                .expect_err("waiting")
                .message,
            "container \"a\" in pod \"web\" is waiting to start: ContainerCreating"
        );
        let no_status = pod(&["a"], &[], json!([]));
        assert_eq!(
            target(&no_status, &o, |_| false).expect_err("waiting").code,
            400
        );
        // Crash-looping: the last instance's log is there to read.
        let backoff = pod(
            &["a"],
            &[],
            json!([{"name": "a", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]),
        );
        assert_eq!(
            target(&backoff, &o, |n| n == 3).map(|t| (t.restart, t.running)),
            Ok((3, false))
        );
    }

    fn record(time: &str, stream: Stream, partial: bool, content: &str) -> LogRecord {
        LogRecord {
            time: time.into(),
            stream,
            partial,
            content: content.as_bytes().to_vec(),
        }
    }

    #[test]
    fn lines_render_with_timestamps_since_and_limit() {
        let lines = [
            record("2024-05-01T11:00:00Z", Stream::Stdout, false, "old"),
            record("2024-05-01T11:59:30.5Z", Stream::Stderr, false, "new"),
            record("2024-05-01T11:59:40Z", Stream::Stdout, true, "half"),
        ];
        let render = |o: LogOptions| {
            let mut out = Vec::new();
            Render::new(&o).push(&lines, &mut out);
            String::from_utf8(out).expect("utf-8")
        };
        assert_eq!(render(LogOptions::default()), "old\nnew\nhalf");
        assert_eq!(
            render(LogOptions {
                timestamps: true,
                ..LogOptions::default()
            }),
            "2024-05-01T11:00:00Z old\n2024-05-01T11:59:30.5Z new\n2024-05-01T11:59:40Z half"
        );
        assert_eq!(
            render(LogOptions {
                since: Some("2024-05-01T11:59:00Z".parse().expect("t")),
                ..LogOptions::default()
            }),
            "new\nhalf"
        );
        assert_eq!(
            render(LogOptions {
                limit_bytes: Some(6),
                ..LogOptions::default()
            }),
            "old\nne"
        );
    }

    #[test]
    fn joiner_joins_partial_records_per_stream() {
        let mut j = Joiner::default();
        assert_eq!(j.push(record("t1", Stream::Stdout, true, "he")), None);
        let err = j
            .push(record("t2", Stream::Stderr, false, "oops"))
            .expect("whole");
        assert_eq!(err.content, b"oops");
        let out = j
            .push(record("t3", Stream::Stdout, false, "llo"))
            .expect("whole");
        assert_eq!(
            (out.time.as_str(), out.content.as_slice(), out.partial),
            ("t1", &b"hello"[..], false)
        );
    }
}
