//! Whether a pod may run on this node: its `nodeSelector` and its required
//! node affinity against the node's labels and name, as the scheduler's
//! NodeAffinity plugin decides. outpost has one node and no scheduler, so a
//! pod that does not fit stays Pending (PodScheduled=False, Unschedulable),
//! and a DaemonSet makes no pod here.
//!
//! Preferred affinity only ranks nodes, which one node does not need; this
//! node has no taints, so tolerations change nothing.

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};

use super::NodeInfo;

/// The scheduler's message for a pod that fits no node.
pub const UNSCHEDULABLE: &str =
    "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.";

/// Whether `spec` may run on `node`.
pub fn fits(spec: &PodSpec, node: &NodeInfo) -> bool {
    let selector = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    // The terms are ORed; with no terms at all nothing matches.
    selector && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// A term's expressions and fields, ANDed; an empty term matches nothing.
fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions
        .iter()
        .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        // The only field a node selector can name is metadata.name.
        && fields.iter().all(|r| {
            r.key == "metadata.name" && requirement_matches(r, Some(&node.name))
        })
}

/// One requirement against the value the node has for its key (if any).
fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    let compare = |cmp: fn(i64, i64) -> bool| match (value.and_then(number), values) {
        (Some(have), [limit]) => number(limit).is_some_and(|limit| cmp(have, limit)),
        _ => false,
    };
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => compare(|have, limit| have > limit),
        "Lt" => compare(|have, limit| have < limit),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeInfo {
        NodeInfo {
            name: "edge-1".into(),
            labels: [
                ("kubernetes.io/arch", "amd64"),
                ("kubernetes.io/os", "linux"),
                ("disk", "ssd"),
                ("gpus", "2"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        }
    }

    fn spec(json: serde_json::Value) -> PodSpec {
        serde_json::from_value(json).expect("pod spec")
    }

    fn affinity(terms: serde_json::Value) -> PodSpec {
        spec(serde_json::json!({
            "containers": [],
            "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
            }}
        }))
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> serde_json::Value {
        serde_json::json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]})
    }

    #[test]
    fn node_selector_needs_every_label() {
        let fits_with = |sel: serde_json::Value| {
            fits(
                &spec(serde_json::json!({"containers": [], "nodeSelector": sel})),
                &node(),
            )
        };
        assert!(fits_with(serde_json::json!({})));
        assert!(fits_with(
            serde_json::json!({"disk": "ssd", "kubernetes.io/os": "linux"})
        ));
        assert!(!fits_with(serde_json::json!({"disk": "ssd", "zone": "a"})));
        assert!(!fits_with(serde_json::json!({"disk": "hdd"})));
    }

    #[test]
    fn required_affinity_as_the_scheduler_reads_it() {
        let n = node();
        let check = |terms: serde_json::Value, want: bool| {
            assert_eq!(fits(&affinity(terms.clone()), &n), want, "{terms}");
        };
        check(
            serde_json::json!([expr("kubernetes.io/arch", "In", &["amd64", "arm64"])]),
            true,
        );
        check(
            serde_json::json!([expr("kubernetes.io/arch", "In", &["arm64"])]),
            false,
        );
        check(serde_json::json!([expr("disk", "NotIn", &["hdd"])]), true);
        check(serde_json::json!([expr("zone", "NotIn", &["a"])]), true);
        check(serde_json::json!([expr("disk", "Exists", &[])]), true);
        check(serde_json::json!([expr("zone", "DoesNotExist", &[])]), true);
        check(serde_json::json!([expr("gpus", "Gt", &["1"])]), true);
        check(serde_json::json!([expr("gpus", "Lt", &["2"])]), false);
        check(serde_json::json!([expr("disk", "Gt", &["1"])]), false);
        // Terms are ORed, expressions in a term ANDed.
        check(
            serde_json::json!([expr("zone", "Exists", &[]), expr("disk", "In", &["ssd"])]),
            true,
        );
        check(
            serde_json::json!([{"matchExpressions": [
                {"key": "disk", "operator": "In", "values": ["ssd"]},
                {"key": "zone", "operator": "Exists"}
            ]}]),
            false,
        );
        // Fields: the node's name only.
        check(
            serde_json::json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["edge-1"]}]}]),
            true,
        );
        check(
            serde_json::json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["edge-1"]}]}]),
            false,
        );
        // An empty term, or no terms, match nothing.
        check(serde_json::json!([{}]), false);
        check(serde_json::json!([]), false);
    }
}
