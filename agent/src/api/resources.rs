//! The kinds the API serves: one table that routing, discovery, field
//! selectors, the CLI's kind names and its table printers all read. Serving a
//! new kind is one row here (and a printer in `printers.rs` for its columns).

use super::printers::{self, Printer};

/// One resource type, as discovery describes it.
#[derive(Debug)]
pub struct Resource {
    /// `Pod`: the `kind` of its objects and the `kind` of `ObjectKey`.
    pub kind: &'static str,
    /// API group: `""` for the core group (`/api/v1`), else `apps`, `batch`, ….
    pub group: &'static str,
    pub version: &'static str,
    /// Path segment and kubectl's plural: `pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// Field selector labels beyond `metadata.name` and `metadata.namespace`.
    pub fields: &'static [&'static str],
    /// kubectl's table columns.
    pub printer: &'static Printer,
}

/// Every kind the agent serves. Core kinds first, in the order `/api/v1` lists them.
pub static RESOURCES: &[Resource] = &[
    Resource {
        kind: "Namespace",
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        short_names: &["ns"],
        namespaced: false,
        fields: &["status.phase"],
        printer: &printers::NAMESPACE,
    },
    Resource {
        kind: "Pod",
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        namespaced: true,
        fields: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        printer: &printers::POD,
    },
    Resource {
        kind: "ConfigMap",
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        namespaced: true,
        fields: &[],
        printer: &printers::CONFIG_MAP,
    },
    Resource {
        kind: "Secret",
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        short_names: &[],
        namespaced: true,
        fields: &["type"],
        printer: &printers::SECRET,
    },
    Resource {
        kind: "Event",
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        namespaced: true,
        fields: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        printer: &printers::EVENT,
    },
    Resource {
        kind: "LimitRange",
        group: "",
        version: "v1",
        plural: "limitranges",
        singular: "limitrange",
        short_names: &["limits"],
        namespaced: true,
        fields: &[],
        printer: &printers::DEFAULT,
    },
    Resource {
        kind: "ResourceQuota",
        group: "",
        version: "v1",
        plural: "resourcequotas",
        singular: "resourcequota",
        short_names: &["quota"],
        namespaced: true,
        fields: &[],
        printer: &printers::RESOURCE_QUOTA,
    },
    Resource {
        kind: "Service",
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        short_names: &["svc"],
        namespaced: true,
        fields: &[],
        printer: &printers::SERVICE,
    },
    Resource {
        kind: "Deployment",
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        namespaced: true,
        fields: &[],
        printer: &printers::DEPLOYMENT,
    },
    Resource {
        kind: "ReplicaSet",
        group: "apps",
        version: "v1",
        plural: "replicasets",
        singular: "replicaset",
        short_names: &["rs"],
        namespaced: true,
        fields: &["status.replicas"],
        printer: &printers::REPLICA_SET,
    },
    Resource {
        kind: "DaemonSet",
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        singular: "daemonset",
        short_names: &["ds"],
        namespaced: true,
        fields: &[],
        printer: &printers::DAEMON_SET,
    },
    Resource {
        kind: "Job",
        group: "batch",
        version: "v1",
        plural: "jobs",
        singular: "job",
        short_names: &[],
        namespaced: true,
        fields: &["status.successful"],
        printer: &printers::JOB,
    },
    Resource {
        kind: "EndpointSlice",
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        short_names: &[],
        namespaced: true,
        fields: &[],
        printer: &printers::ENDPOINT_SLICE,
    },
];

impl Resource {
    /// `v1`, `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `/api/v1` or `/apis/apps/v1`.
    pub fn group_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The collection: in one namespace, or across all (or cluster-scoped) for `None`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => {
                format!("{}/namespaces/{ns}/{}", self.group_path(), self.plural)
            }
            _ => format!("{}/{}", self.group_path(), self.plural),
        }
    }

    /// One object.
    pub fn object_path(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection_path(Some(namespace)))
    }

    /// How `-o name` and messages name the type: `pod`, `deployment.apps`.
    pub fn qualified_singular(&self) -> String {
        if self.group.is_empty() {
            self.singular.to_owned()
        } else {
            format!("{}.{}", self.singular, self.group)
        }
    }

    /// Whether `label` may be used in a field selector on this kind.
    pub fn supports_field(&self, label: &str) -> bool {
        label == "metadata.name"
            || (label == "metadata.namespace" && self.namespaced)
            || self.fields.contains(&label)
    }
}

/// The kind a user means by `name`, as kubectl resolves it: plural, singular,
/// short name or kind, in any case, optionally qualified by group
/// (`deployments.apps`, `deploy.apps`).
pub fn lookup(name: &str) -> Option<&'static Resource> {
    let name = name.to_ascii_lowercase();
    let (name, group) = match name.split_once('.') {
        Some((n, g)) => (n.to_owned(), Some(g.to_owned())),
        None => (name, None),
    };
    RESOURCES.iter().find(|r| {
        let named = r.plural == name
            || r.singular == name
            || r.short_names.contains(&name.as_str())
            || r.kind.eq_ignore_ascii_case(&name);
        let grouped = match &group {
            None => true,
            // `pods.v1`, `deployments.v1.apps`, `deployments.apps`.
            Some(g) => {
                g == r.group
                    || *g == r.version
                    || *g == format!("{}.{}", r.version, r.group)
                    || (r.group.is_empty() && g == "core")
            }
        };
        named && grouped
    })
}

/// The resource at `<group>/<version>/<plural>` in a path.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of a kind (as `ObjectKey` names it).
pub fn by_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

/// The groups other than core, each with its versions, for `/apis`.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_resolve_by_kubectl_names() {
        fn check(name: &str, expect: Option<&str>) {
            assert_eq!(lookup(name).map(|r| r.kind), expect, "{name}");
        }
        check("po", Some("Pod"));
        check("pod", Some("Pod"));
        check("pods", Some("Pod"));
        check("Pod", Some("Pod"));
        check("PODS", Some("Pod"));
        check("cm", Some("ConfigMap"));
        check("configmap", Some("ConfigMap"));
        check("ev", Some("Event"));
        check("ns", Some("Namespace"));
        check("limits", Some("LimitRange"));
        check("quota", Some("ResourceQuota"));
        check("secrets", Some("Secret"));
        check("deploy", Some("Deployment"));
        check("deployments.apps", Some("Deployment"));
        check("deployments.v1.apps", Some("Deployment"));
        check("pods.v1", Some("Pod"));
        check("deployments.batch", None);
        check("x", None);
        check("", None);
    }

    #[test]
    fn paths_follow_the_kubernetes_layout() {
        let pods = lookup("po").expect("pods");
        assert_eq!(
            pods.collection_path(Some("default")),
            "/api/v1/namespaces/default/pods"
        );
        assert_eq!(pods.collection_path(None), "/api/v1/pods");
        assert_eq!(
            pods.object_path("kube-system", "web"),
            "/api/v1/namespaces/kube-system/pods/web"
        );
        let ns = lookup("ns").expect("namespaces");
        assert_eq!(ns.collection_path(Some("ignored")), "/api/v1/namespaces");
        let deploy = lookup("deploy").expect("deployments");
        assert_eq!(
            deploy.object_path("a", "b"),
            "/apis/apps/v1/namespaces/a/deployments/b"
        );
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.qualified_singular(), "deployment.apps");
        assert!(by_path("apps", "v1", "deployments").is_some());
        assert!(by_path("", "v1", "deployments").is_none());
    }

    #[test]
    fn table_is_consistent() {
        for (i, r) in RESOURCES.iter().enumerate() {
            for other in &RESOURCES[i + 1..] {
                assert_ne!(r.kind, other.kind);
                assert!(r.plural != other.plural || r.group != other.group);
                for short in r.short_names {
                    assert!(!other.short_names.contains(short), "{short}");
                }
            }
        }
        assert_eq!(
            groups(),
            vec![
                ("apps", vec!["v1"]),
                ("batch", vec!["v1"]),
                ("discovery.k8s.io", vec!["v1"])
            ]
        );
    }
}
