//! `?watch=1`: newline-delimited JSON events (`{"type":"ADDED","object":…}`),
//! filtered like the list they follow.
//!
//! Clients list, then watch from the list's `resourceVersion`; changes may
//! land in between. [`History`] keeps the last changes so such a watch replays
//! them instead of failing with `410 Gone`, as the API server's watch cache does.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::resources::Resource;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use crate::state::{ClusterState, ObjectKey, WatchEvent};

/// How many changes a late watch can replay.
const HISTORY: usize = 512;

/// Which objects a list or watch covers.
#[derive(Debug, Clone)]
pub struct Filter {
    pub resource: &'static Resource,
    /// One namespace, or all for `None` (and for cluster-scoped kinds).
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    /// Whether an object of this filter's kind matches.
    pub fn matches(&self, key: &ObjectKey, object: &Value) -> bool {
        key.kind == self.resource.kind
            && (self.namespace.is_none() || key.namespace == self.namespace)
            && self.labels.matches(object.pointer("/metadata/labels"))
            && self.fields.matches(object)
    }

    /// The matching objects and the list's resource version.
    pub fn list(&self, state: &ClusterState) -> (Vec<Value>, u64) {
        let namespace = self
            .namespace
            .as_deref()
            .filter(|_| self.resource.namespaced);
        let (items, rv) = state.list(self.resource.kind, namespace);
        let items = items
            .into_iter()
            .filter(|o| {
                self.labels.matches(o.pointer("/metadata/labels")) && self.fields.matches(o)
            })
            .collect();
        (items, rv)
    }

    fn key_of(&self, object: &Value) -> ObjectKey {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        match object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
        {
            Some(ns) if self.resource.namespaced => {
                ObjectKey::namespaced(self.resource.kind, ns, name)
            }
            _ => ObjectKey::cluster(self.resource.kind, name),
        }
    }
}

/// The resource version a stored object or event carries.
pub fn version_of(object: &Value) -> u64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[derive(Debug)]
struct Ring {
    /// Every change newer than `base` is in `events` (once recorded).
    base: u64,
    events: VecDeque<WatchEvent>,
}

/// The last [`HISTORY`] changes of the cluster state.
#[derive(Debug)]
pub struct History {
    ring: Mutex<Ring>,
    /// The newest version recorded.
    recorded: watch::Sender<u64>,
}

impl History {
    /// Starts recording `state`'s changes until `shutdown`.
    pub fn start(state: &ClusterState, shutdown: CancellationToken) -> Arc<History> {
        let rx = state.subscribe();
        let rv = state.resource_version();
        let history = Arc::new(History {
            ring: Mutex::new(Ring {
                base: rv,
                events: VecDeque::new(),
            }),
            recorded: watch::channel(rv).0,
        });
        tokio::spawn(record(history.clone(), rx, state.clone(), shutdown));
        history
    }

    /// The changes after `from` up to and including `to`, or the oldest
    /// version remembered when `from` is older than that.
    async fn between(&self, from: u64, to: u64) -> Result<Vec<WatchEvent>, u64> {
        // The recorder may not have caught up with `to` yet.
        let mut recorded = self.recorded.subscribe();
        let _ = recorded.wait_for(|&v| v >= to).await;
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if from < ring.base {
            return Err(ring.base);
        }
        Ok(ring
            .events
            .iter()
            .filter(|e| (from + 1..=to).contains(&version_of(&e.object)))
            .cloned()
            .collect())
    }
}

async fn record(
    history: Arc<History>,
    mut rx: broadcast::Receiver<WatchEvent>,
    state: ClusterState,
    shutdown: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.recv() => r,
        };
        let mut ring = history.ring.lock().unwrap_or_else(|e| e.into_inner());
        match received {
            Ok(event) => {
                let rv = version_of(&event.object);
                if rv <= ring.base {
                    continue;
                }
                ring.events.push_back(event);
                while ring.events.len() > HISTORY {
                    if let Some(old) = ring.events.pop_front() {
                        ring.base = version_of(&old.object);
                    }
                }
                history.recorded.send_if_modified(|v| {
                    let newer = rv > *v;
                    *v = (*v).max(rv);
                    newer
                });
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Changes were lost: remember only what comes from now on.
                ring.base = state.resource_version();
                ring.events.clear();
                let base = ring.base;
                history.recorded.send_modify(|v| *v = (*v).max(base));
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// A watch request.
#[derive(Debug)]
pub struct WatchRequest {
    pub filter: Filter,
    /// Changes after this version; `None` or 0 starts with the current objects as ADDED.
    pub resource_version: Option<u64>,
    /// `timeoutSeconds`: end the watch after this long.
    pub timeout: Option<Duration>,
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Streams the watch into `tx` until the client goes (`tx` closes), the
/// timeout passes or `shutdown`.
pub async fn run(
    request: WatchRequest,
    state: ClusterState,
    history: Arc<History>,
    tx: mpsc::Sender<Bytes>,
    shutdown: CancellationToken,
) {
    let deadline = request.timeout.map(|t| tokio::time::Instant::now() + t);
    let ended = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stream(request, state, history, &tx) => {}
        _ = tx.closed() => {}
        _ = shutdown.cancelled() => {}
        _ = ended => {}
    }
}

async fn stream(
    request: WatchRequest,
    state: ClusterState,
    history: Arc<History>,
    tx: &mpsc::Sender<Bytes>,
) {
    let filter = &request.filter;
    // Subscribe before reading the current state so no change falls in between.
    let mut rx = state.subscribe();
    let (current, now) = filter.list(&state);
    let mut known: HashSet<ObjectKey> = HashSet::new();
    match request.resource_version {
        None | Some(0) => {
            for object in &current {
                known.insert(filter.key_of(object));
                if tx.send(line("ADDED", object)).await.is_err() {
                    return;
                }
            }
        }
        Some(from) if from >= now => known.extend(current.iter().map(|o| filter.key_of(o))),
        Some(from) => {
            let replay = match history.between(from, now).await {
                Ok(events) => events,
                Err(oldest) => {
                    let status =
                        ApiError::expired(format!("too old resource version: {from} ({oldest})"))
                            .status();
                    let _ = tx.send(line("ERROR", &status)).await;
                    return;
                }
            };
            for event in replay.iter().filter(|e| filter.matches(&e.key, &e.object)) {
                if tx
                    .send(line(event.event_type, &event.object))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            known.extend(current.iter().map(|o| filter.key_of(o)));
        }
    }
    loop {
        let event = match rx.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // This watcher fell too far behind: clients re-list on 410.
                let status = ApiError::expired("the watch fell behind; list again").status();
                let _ = tx.send(line("ERROR", &status)).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if version_of(&event.object) <= now
            || event.key.kind != filter.resource.kind
            || (filter.namespace.is_some() && event.key.namespace != filter.namespace)
        {
            continue;
        }
        let Some(event_type) = transition(filter, &mut known, &event) else {
            continue;
        };
        if tx.send(line(event_type, &event.object)).await.is_err() {
            return;
        }
    }
}

/// What a change means to a filtered watcher that has seen `known`: an object
/// that starts matching is ADDED, one that stops matching is DELETED.
fn transition(
    filter: &Filter,
    known: &mut HashSet<ObjectKey>,
    event: &WatchEvent,
) -> Option<&'static str> {
    if event.event_type == "DELETED" {
        return known.remove(&event.key).then_some("DELETED");
    }
    if filter.matches(&event.key, &event.object) {
        Some(if known.insert(event.key.clone()) {
            "ADDED"
        } else {
            "MODIFIED"
        })
    } else {
        known.remove(&event.key).then_some("DELETED")
    }
}

#[cfg(test)]
mod tests {
    use super::super::resources::lookup;
    use super::*;

    fn pod(name: &str, app: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": app}}})
    }

    fn filter(labels: &str) -> Filter {
        Filter {
            resource: lookup("pods").expect("pods"),
            namespace: Some("default".into()),
            labels: LabelSelector::parse(labels).expect("selector"),
            fields: FieldSelector::default(),
        }
    }

    async fn lines(rx: &mut mpsc::Receiver<Bytes>, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            let bytes = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("in time")
                .expect("a line");
            let v: Value = serde_json::from_slice(&bytes).expect("json");
            out.push(format!(
                "{} {}",
                v["type"].as_str().unwrap_or(""),
                v["object"]["metadata"]["name"].as_str().unwrap_or("")
            ));
        }
        out
    }

    #[tokio::test]
    async fn watch_starts_with_current_objects_then_follows_changes() {
        let state = ClusterState::default();
        let shutdown = CancellationToken::new();
        let history = History::start(&state, shutdown.clone());
        state.upsert(
            ObjectKey::namespaced("Pod", "default", "a"),
            pod("a", "web"),
        );
        state.upsert(
            ObjectKey::namespaced("Pod", "other", "x"),
            json!({"metadata": {"name": "x", "namespace": "other"}}),
        );
        let (tx, mut rx) = mpsc::channel(16);
        let request = WatchRequest {
            filter: filter("app=web"),
            resource_version: None,
            timeout: None,
        };
        let task = tokio::spawn(run(request, state.clone(), history, tx, shutdown.clone()));
        assert_eq!(lines(&mut rx, 1).await, ["ADDED a"]);
        state.upsert(ObjectKey::namespaced("Pod", "default", "b"), pod("b", "db"));
        state.upsert(
            ObjectKey::namespaced("Pod", "default", "c"),
            pod("c", "web"),
        );
        // b starts matching: ADDED; a stops matching: DELETED.
        state.upsert(
            ObjectKey::namespaced("Pod", "default", "b"),
            pod("b", "web"),
        );
        state.upsert(ObjectKey::namespaced("Pod", "default", "a"), pod("a", "db"));
        state.delete(&ObjectKey::namespaced("Pod", "default", "a"));
        state.delete(&ObjectKey::namespaced("Pod", "default", "c"));
        assert_eq!(
            lines(&mut rx, 4).await,
            ["ADDED c", "ADDED b", "DELETED a", "DELETED c"]
        );
        shutdown.cancel();
        task.await.expect("watch ends at shutdown");
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn watch_from_a_version_replays_what_came_after_it() {
        let state = ClusterState::default();
        let shutdown = CancellationToken::new();
        let history = History::start(&state, shutdown.clone());
        let rv = state.upsert(
            ObjectKey::namespaced("Pod", "default", "a"),
            pod("a", "web"),
        );
        state.upsert(
            ObjectKey::namespaced("Pod", "default", "b"),
            pod("b", "web"),
        );
        state.upsert(
            ObjectKey::namespaced("Pod", "default", "a"),
            pod("a", "web2"),
        );
        let (tx, mut rx) = mpsc::channel(16);
        let request = WatchRequest {
            filter: filter(""),
            resource_version: Some(rv),
            timeout: None,
        };
        tokio::spawn(run(
            request,
            state.clone(),
            history.clone(),
            tx,
            shutdown.clone(),
        ));
        assert_eq!(lines(&mut rx, 2).await, ["ADDED b", "MODIFIED a"]);
        state.upsert(ObjectKey::namespaced("Pod", "default", "b"), pod("b", "x"));
        assert_eq!(lines(&mut rx, 1).await, ["MODIFIED b"]);

        // Older than remembered: an ERROR event with a 410 Status, then the end.
        let (tx, mut rx) = mpsc::channel(16);
        {
            let mut ring = history.ring.lock().expect("lock");
            ring.base = 3;
            ring.events.retain(|e| version_of(&e.object) > 3);
        }
        let request = WatchRequest {
            filter: filter(""),
            resource_version: Some(1),
            timeout: None,
        };
        tokio::spawn(run(request, state.clone(), history, tx, shutdown.clone()));
        let bytes = rx.recv().await.expect("an error event");
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(
            (v["type"].as_str(), v["object"]["code"].as_u64()),
            (Some("ERROR"), Some(410))
        );
        assert!(rx.recv().await.is_none());
        shutdown.cancel();
    }

    #[tokio::test]
    async fn watch_ends_after_its_timeout_or_when_the_client_goes() {
        let state = ClusterState::default();
        let shutdown = CancellationToken::new();
        let history = History::start(&state, shutdown.clone());
        let (tx, mut rx) = mpsc::channel(16);
        let request = WatchRequest {
            filter: filter(""),
            resource_version: None,
            timeout: Some(Duration::from_millis(50)),
        };
        run(
            request,
            state.clone(),
            history.clone(),
            tx,
            shutdown.clone(),
        )
        .await;
        assert!(rx.recv().await.is_none());

        let (tx, rx) = mpsc::channel(16);
        let request = WatchRequest {
            filter: filter(""),
            resource_version: None,
            timeout: None,
        };
        let task = tokio::spawn(run(request, state, history, tx, shutdown));
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("ends")
            .expect("joins");
    }
}
