//! What the local API serves: every object the agent knows, as Kubernetes JSON
//! (pods with their live status, events), with resource versions and a watch
//! stream. Writers are the desired-state store and the pod workers; readers are
//! the API handlers. In memory only: the desired state is persisted elsewhere
//! (last-known-good), status is observed afresh after a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

/// Identity of an object: kind, namespace (none for cluster-scoped kinds), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    /// A namespaced object's key.
    pub fn namespaced(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectKey {
            kind: kind.to_owned(),
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }

    /// A cluster-scoped object's key.
    pub fn cluster(kind: &str, name: &str) -> Self {
        ObjectKey {
            kind: kind.to_owned(),
            namespace: None,
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    /// `Pod default/web`, `Namespace prod`: how messages name objects.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A change, as `?watch=1` streams it.
#[derive(Debug, Clone, Serialize)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub object: Value,
    #[serde(skip)]
    pub key: ObjectKey,
}

#[derive(Debug, Default)]
struct Inner {
    resource_version: u64,
    objects: BTreeMap<ObjectKey, Value>,
}

/// The shared, versioned object set. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClusterState {
    inner: Arc<RwLock<Inner>>,
    changes: broadcast::Sender<WatchEvent>,
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState {
            inner: Arc::default(),
            changes: broadcast::channel(1024).0,
        }
    }
}

impl ClusterState {
    /// Stores `object` under `key` unless it is unchanged. Sets
    /// `metadata.resourceVersion` to a fresh version when it changes, and tells
    /// watchers. Returns the object's resource version.
    pub fn upsert(&self, key: ObjectKey, mut object: Value) -> u64 {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        // Kept from the first store: AGE counts from when the object appeared.
        if object
            .pointer("/metadata/creationTimestamp")
            .is_none_or(Value::is_null)
        {
            let created = inner
                .objects
                .get(&key)
                .and_then(|old| old.pointer("/metadata/creationTimestamp").cloned())
                .unwrap_or_else(|| Value::String(crate::events::now()));
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("creationTimestamp".into(), created);
            }
        }
        if let Some(old) = inner.objects.get(&key) {
            if same_ignoring_version(old, &object) {
                return resource_version(old);
            }
        }
        inner.resource_version += 1;
        let rv = inner.resource_version;
        set_resource_version(&mut object, rv);
        let event_type = if inner.objects.insert(key.clone(), object.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let _ = self.changes.send(WatchEvent {
            event_type,
            object,
            key,
        });
        rv
    }

    /// Removes an object; watchers see `DELETED` with its last state.
    pub fn delete(&self, key: &ObjectKey) -> Option<Value> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let mut object = inner.objects.remove(key)?;
        inner.resource_version += 1;
        set_resource_version(&mut object, inner.resource_version);
        let _ = self.changes.send(WatchEvent {
            event_type: "DELETED",
            object: object.clone(),
            key: key.clone(),
        });
        Some(object)
    }

    /// One object.
    pub fn get(&self, key: &ObjectKey) -> Option<Value> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .objects
            .get(key)
            .cloned()
    }

    /// Objects of a kind, in one namespace or all, sorted by namespace and
    /// name, with the list's resource version.
    pub fn list(&self, kind: &str, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let items = inner
            .objects
            .iter()
            .filter(|(k, _)| {
                k.kind == kind && namespace.is_none_or(|ns| k.namespace.as_deref() == Some(ns))
            })
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.resource_version)
    }

    /// The keys of every object of a kind.
    pub fn keys(&self, kind: &str) -> Vec<ObjectKey> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .objects
            .keys()
            .filter(|k| k.kind == kind)
            .cloned()
            .collect()
    }

    /// Changes from now on (a slow reader that falls 1024 changes behind gets
    /// `Lagged` and should re-list, as Kubernetes clients do on `410 Gone`).
    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.changes.subscribe()
    }

    /// The newest resource version.
    pub fn resource_version(&self) -> u64 {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .resource_version
    }
}

fn resource_version(v: &Value) -> u64 {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn set_resource_version(v: &mut Value, rv: u64) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

fn same_ignoring_version(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        v
    };
    strip(old) == strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_change_only_with_content() {
        let state = ClusterState::default();
        let mut rx = state.subscribe();
        let key = ObjectKey::namespaced("Pod", "default", "web");
        let pod = json!({"metadata": {"name": "web", "namespace": "default"}, "status": {"phase": "Pending"}});
        assert_eq!(state.upsert(key.clone(), pod.clone()), 1);
        assert_eq!(
            state.upsert(key.clone(), pod),
            1,
            "unchanged: same version, no event"
        );
        let running = json!({"metadata": {"name": "web", "namespace": "default"}, "status": {"phase": "Running"}});
        assert_eq!(state.upsert(key.clone(), running), 2);
        assert_eq!(rx.try_recv().expect("added").event_type, "ADDED");
        let modified = rx.try_recv().expect("modified");
        assert_eq!(
            (
                modified.event_type,
                modified.object["metadata"]["resourceVersion"].as_str()
            ),
            ("MODIFIED", Some("2"))
        );
        assert!(rx.try_recv().is_err());

        let (items, rv) = state.list("Pod", Some("default"));
        assert_eq!((items.len(), rv), (1, 2));
        assert!(state.list("Pod", Some("other")).0.is_empty());
        assert!(state.delete(&key).is_some());
        assert_eq!(rx.try_recv().expect("deleted").event_type, "DELETED");
        assert_eq!(state.resource_version(), 3);
    }
}
