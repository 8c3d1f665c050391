//! Events, as Kubernetes shapes them (core/v1 Event with involvedObject,
//! reason, message, count, firstTimestamp, lastTimestamp). A repeat of the same
//! reason and message for the same object bumps `count` and `lastTimestamp` of
//! one Event instead of adding another, as the kubelet's recorder aggregates.
//! Kept in memory (bounded); logged once, here, where they are made.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::state::{ClusterState, ObjectKey};

/// Events kept; the oldest go first (the API server keeps them an hour).
const MAX_EVENTS: usize = 1000;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Involved {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
    /// e.g. `spec.containers{web}`.
    pub field_path: Option<String>,
}

impl Involved {
    /// An object by its key.
    pub fn object(key: &ObjectKey) -> Involved {
        Involved {
            kind: key.kind.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            uid: None,
            field_path: None,
        }
    }

    /// This node (for events about sources and the agent itself).
    pub fn node(name: &str) -> Involved {
        Involved {
            kind: "Node".into(),
            namespace: None,
            name: name.to_owned(),
            uid: None,
            field_path: None,
        }
    }
}

/// Records events into the cluster state.
#[derive(Debug, Clone)]
pub struct Recorder {
    state: ClusterState,
    node: String,
    order: Arc<Mutex<VecDeque<ObjectKey>>>,
}

impl Recorder {
    pub fn new(state: ClusterState, node: &str) -> Recorder {
        Recorder {
            state,
            node: node.to_owned(),
            order: Arc::default(),
        }
    }

    /// Records (or repeats) an event.
    pub fn record(&self, involved: &Involved, event_type: EventType, reason: &str, message: &str) {
        match event_type {
            EventType::Normal => tracing::info!(object = %describe(involved), reason, "{message}"),
            EventType::Warning => tracing::warn!(object = %describe(involved), reason, "{message}"),
        }
        let namespace = involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        // Same object, reason and message: one Event, counted.
        let digest = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (
                &involved.kind,
                &involved.namespace,
                &involved.name,
                &involved.field_path,
                reason,
                message,
            )
                .hash(&mut h);
            h.finish()
        };
        let name = format!("{}.{digest:016x}", involved.name);
        let key = ObjectKey::namespaced("Event", &namespace, &name);
        let now = now();
        let (count, first) = match self.state.get(&key) {
            Some(old) => (
                old["count"].as_u64().unwrap_or(1) + 1,
                old["firstTimestamp"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| now.clone()),
            ),
            None => (1, now.clone()),
        };
        let mut involved_json = json!({"kind": involved.kind, "name": involved.name});
        if let Some(ns) = &involved.namespace {
            involved_json["namespace"] = json!(ns);
        }
        if let Some(uid) = &involved.uid {
            involved_json["uid"] = json!(uid);
        }
        if let Some(fp) = &involved.field_path {
            involved_json["fieldPath"] = json!(fp);
        }
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": first},
            "involvedObject": involved_json,
            "reason": reason,
            "message": message,
            "type": match event_type { EventType::Normal => "Normal", EventType::Warning => "Warning" },
            "count": count,
            "firstTimestamp": first,
            "lastTimestamp": now,
            "source": {"component": "outpost", "host": self.node},
            "reportingComponent": "outpost",
            "reportingInstance": self.node,
        });
        self.state.upsert(key.clone(), event);
        let mut order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        if count == 1 {
            order.push_back(key);
            while order.len() > MAX_EVENTS {
                if let Some(old) = order.pop_front() {
                    self.state.delete(&old);
                }
            }
        }
    }
}

fn describe(i: &Involved) -> String {
    match (&i.namespace, &i.field_path) {
        (Some(ns), Some(fp)) => format!("{} {ns}/{} {fp}", i.kind, i.name),
        (Some(ns), None) => format!("{} {ns}/{}", i.kind, i.name),
        (None, _) => format!("{} {}", i.kind, i.name),
    }
}

/// Kubernetes' timestamp format (RFC 3339, seconds).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Reads back events for tests and `describe`.
pub fn for_object<'a>(
    events: &'a [Value],
    kind: &str,
    name: &str,
) -> impl Iterator<Item = &'a Value> {
    let (kind, name) = (kind.to_owned(), name.to_owned());
    events
        .iter()
        .filter(move |e| e["involvedObject"]["kind"] == kind && e["involvedObject"]["name"] == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_on_one_event() {
        let state = ClusterState::default();
        let rec = Recorder::new(state.clone(), "node-a");
        let pod = Involved::object(&ObjectKey::namespaced("Pod", "default", "web"));
        rec.record(
            &pod,
            EventType::Warning,
            "BackOff",
            "Back-off restarting failed container",
        );
        rec.record(
            &pod,
            EventType::Warning,
            "BackOff",
            "Back-off restarting failed container",
        );
        rec.record(&pod, EventType::Normal, "Started", "Started container web");
        let (events, _) = state.list("Event", Some("default"));
        assert_eq!(events.len(), 2);
        let backoff: Vec<&Value> = for_object(&events, "Pod", "web")
            .filter(|e| e["reason"] == "BackOff")
            .collect();
        assert_eq!(backoff[0]["count"], 2);
        assert_eq!(backoff[0]["type"], "Warning");
        assert_eq!(backoff[0]["involvedObject"]["namespace"], "default");
        let node = Involved::node("node-a");
        rec.record(&node, EventType::Warning, "SourceUnreachable", "x");
        assert_eq!(
            state.list("Event", Some("default")).0.len(),
            3,
            "node events land in default"
        );
    }
}
