//! Admission, as the API server's LimitRanger and ResourceQuota plugins do it
//! to a pod before it runs. Pure: the pod worker passes the pod, the
//! namespace's LimitRanges and ResourceQuotas, and the pods already admitted;
//! a refusal is the API server's message, to show in the pod's events.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, LimitRange, LimitRangeItem, Pod, PodSpec, ResourceQuota,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::validate::parse_quantity;
use super::DEFAULT_NAMESPACE;

type ResourceList = BTreeMap<String, Quantity>;

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
}

/// `pods "web" is forbidden: <one>` or, as Go aggregates them, `[<a>, <b>]`.
fn forbidden(pod: &str, errors: &[String]) -> String {
    let joined = match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    format!("pods {pod:?} is forbidden: {joined}")
}

/// All containers, init containers first, with whether they are init ones.
fn containers(spec: &PodSpec) -> impl Iterator<Item = (bool, &Container)> {
    let init = spec.init_containers.iter().flatten().map(|c| (true, c));
    init.chain(spec.containers.iter().map(|c| (false, c)))
}

/// A quantity as a number (millicores for CPU), or why it is not one.
fn value(resource: &str, q: &Quantity, whose: &str) -> Result<u64, String> {
    parse_quantity(resource, q)
        .map_err(|why| format!("{whose}: {resource} quantity {:?}: {why}", q.0))
}

/// The defaults a LimitRange item gives containers (SetDefaults_LimitRangeItem):
/// limits from `default`, else `max`; requests from `defaultRequest`, else the
/// default limit, else `min`.
fn container_defaults(item: &LimitRangeItem) -> (ResourceList, ResourceList) {
    let mut limits = item.default.clone().unwrap_or_default();
    for (name, q) in item.max.iter().flatten() {
        limits.entry(name.clone()).or_insert_with(|| q.clone());
    }
    let mut requests = item.default_request.clone().unwrap_or_default();
    for (name, q) in limits.iter().chain(item.min.iter().flatten()) {
        requests.entry(name.clone()).or_insert_with(|| q.clone());
    }
    (limits, requests)
}

fn items<'a>(
    ranges: &'a [LimitRange],
    kind: &'a str,
) -> impl Iterator<Item = (&'a LimitRange, &'a LimitRangeItem)> {
    ranges
        .iter()
        .flat_map(|lr| {
            lr.spec
                .iter()
                .flat_map(move |s| s.limits.iter().map(move |item| (lr, item)))
        })
        .filter(move |(_, item)| item.type_ == kind)
}

/// LimitRanger: fills in default requests and limits where a container has
/// none (the first LimitRange to give one wins), then enforces every range's
/// min, max and maxLimitRequestRatio, per container and per pod.
pub fn apply_limit_ranges(pod: &mut Pod, ranges: &[LimitRange]) -> Result<(), String> {
    let name = pod_name(pod).to_owned();
    let Some(spec) = pod.spec.as_mut() else {
        return Ok(());
    };

    let defaults: Vec<(ResourceList, ResourceList)> = items(ranges, "Container")
        .map(|(_, item)| container_defaults(item))
        .collect();
    let all = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for c in all {
        let resources = c.resources.get_or_insert_with(Default::default);
        // The API server's own defaulting, done before admission: a limit
        // without a request is also the request.
        let mut requests = resources.requests.take().unwrap_or_default();
        let mut limits = resources.limits.take().unwrap_or_default();
        for (resource, limit) in &limits {
            requests
                .entry(resource.clone())
                .or_insert_with(|| limit.clone());
        }
        for (default_limits, default_requests) in &defaults {
            for (resource, q) in default_limits {
                limits.entry(resource.clone()).or_insert_with(|| q.clone());
            }
            for (resource, q) in default_requests {
                requests
                    .entry(resource.clone())
                    .or_insert_with(|| q.clone());
            }
        }
        resources.requests = (!requests.is_empty()).then_some(requests);
        resources.limits = (!limits.is_empty()).then_some(limits);
        if resources.requests.is_none() && resources.limits.is_none() && resources.claims.is_none()
        {
            c.resources = None;
        }
    }

    let spec: &PodSpec = spec;
    if let Some(invalid) = request_over_limit(spec) {
        return Err(format!("Pod {name:?} is invalid: {invalid}"));
    }
    match limit_errors(spec, ranges) {
        Ok(errors) if errors.is_empty() => Ok(()),
        Ok(errors) => Err(forbidden(&name, &errors)),
        Err(unreadable) => Err(forbidden(&name, &[unreadable])),
    }
}

/// A request above its limit, as validation words it: a default limit below
/// an explicit request makes the pod invalid.
fn request_over_limit(spec: &PodSpec) -> Option<String> {
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| ("initContainers", i, c));
    let all = init.chain(
        spec.containers
            .iter()
            .enumerate()
            .map(|(i, c)| ("containers", i, c)),
    );
    for (field, i, c) in all {
        let Some(r) = c.resources.as_ref() else {
            continue;
        };
        for (resource, request) in r.requests.iter().flatten() {
            let Some(limit) = r.limits.as_ref().and_then(|l| l.get(resource)) else {
                continue;
            };
            let (Ok(req), Ok(lim)) = (
                parse_quantity(resource, request),
                parse_quantity(resource, limit),
            ) else {
                continue;
            };
            if req > lim {
                return Some(format!(
                    "spec.{field}[{i}].resources.requests: invalid value: {:?}: must be less than or equal to {resource} limit of {}",
                    request.0, limit.0
                ));
            }
        }
    }
    None
}

/// Every violation of the ranges' min, max and maxLimitRequestRatio, per
/// container and per pod; `Err` when a quantity cannot be read.
fn limit_errors(spec: &PodSpec, ranges: &[LimitRange]) -> Result<Vec<String>, String> {
    let mut errors = Vec::new();
    for (lr, item) in items(ranges, "Container") {
        let whose = format!(
            "limit range {:?}",
            lr.metadata.name.as_deref().unwrap_or_default()
        );
        for (_, c) in containers(spec) {
            let observed = |resource: &str| -> Result<Observed, String> {
                let whose = format!("container {:?}", c.name);
                let get = |list: Option<&ResourceList>| -> Result<Option<(u64, String)>, String> {
                    match list.and_then(|l| l.get(resource)) {
                        Some(q) => Ok(Some((value(resource, q, &whose)?, q.0.clone()))),
                        None => Ok(None),
                    }
                };
                let r = c.resources.as_ref();
                Ok(Observed {
                    request: get(r.and_then(|r| r.requests.as_ref()))?,
                    limit: get(r.and_then(|r| r.limits.as_ref()))?,
                })
            };
            enforce(item, "Container", &whose, &observed, &mut errors)?;
        }
    }
    for (lr, item) in items(ranges, "Pod") {
        let whose = format!(
            "limit range {:?}",
            lr.metadata.name.as_deref().unwrap_or_default()
        );
        let observed = |resource: &str| -> Result<Observed, String> {
            let request = pod_total(spec, resource, |c| {
                c.resources.as_ref().and_then(|r| r.requests.as_ref())
            })?;
            let limit = pod_total(spec, resource, |c| {
                c.resources.as_ref().and_then(|r| r.limits.as_ref())
            })?;
            let shown = |v: Option<u64>| v.map(|v| (v, format_quantity(resource, v)));
            Ok(Observed {
                request: shown(request),
                limit: shown(limit),
            })
        };
        enforce(item, "Pod", &whose, &observed, &mut errors)?;
    }
    Ok(errors)
}

/// A container's (or pod's) request and limit for one resource, with the text
/// to show.
struct Observed {
    request: Option<(u64, String)>,
    limit: Option<(u64, String)>,
}

/// minConstraint, maxConstraint and limitRequestRatioConstraint of one item.
fn enforce(
    item: &LimitRangeItem,
    kind: &str,
    whose: &str,
    observed: &dyn Fn(&str) -> Result<Observed, String>,
    errors: &mut Vec<String>,
) -> Result<(), String> {
    for (resource, min) in item.min.iter().flatten() {
        let enforced = value(resource, min, whose)?;
        let o = observed(resource)?;
        let prefix = format!("minimum {resource} usage per {kind} is {}", min.0);
        match (&o.request, &o.limit) {
            (None, _) => errors.push(format!("{prefix}, but no request is specified")),
            (Some((request, text)), _) if *request < enforced => {
                errors.push(format!("{prefix}, but request is {text}"))
            }
            (_, Some((limit, text))) if *limit < enforced => {
                errors.push(format!("{prefix}, but limit is {text}"))
            }
            _ => {}
        }
    }
    for (resource, max) in item.max.iter().flatten() {
        let enforced = value(resource, max, whose)?;
        let o = observed(resource)?;
        let prefix = format!("maximum {resource} usage per {kind} is {}", max.0);
        match (&o.request, &o.limit) {
            (_, None) => errors.push(format!("{prefix}, but no limit is specified")),
            (_, Some((limit, text))) if *limit > enforced => {
                errors.push(format!("{prefix}, but limit is {text}"))
            }
            (Some((request, text)), _) if *request > enforced => {
                errors.push(format!("{prefix}, but request is {text}"))
            }
            _ => {}
        }
    }
    for (resource, ratio) in item.max_limit_request_ratio.iter().flatten() {
        // A ratio is a plain number: in thousandths, as CPU is.
        let max_ratio = value("cpu", ratio, whose)? as f64 / 1000.0;
        let o = observed(resource)?;
        let prefix = format!(
            "{resource} max limit to request ratio per {kind} is {}",
            ratio.0
        );
        match (&o.request, &o.limit) {
            (None, _) | (Some((0, _)), _) => {
                errors.push(format!(
                    "{prefix}, but no request is specified or request is 0"
                ));
            }
            (_, None) | (_, Some((0, _))) => {
                errors.push(format!("{prefix}, but no limit is specified or limit is 0"))
            }
            (Some((request, _)), Some((limit, _))) => {
                let observed = *limit as f64 / *request as f64;
                if observed > max_ratio {
                    errors.push(format!("{prefix}, but provided ratio is {observed:.6}"));
                }
            }
        }
    }
    Ok(())
}

/// What a pod as a whole requests (or is limited to) of a resource: the sum
/// over its containers and sidecars, or the largest init container if more;
/// `None` when no container sets it.
fn pod_total(
    spec: &PodSpec,
    resource: &str,
    list: impl Fn(&Container) -> Option<&ResourceList>,
) -> Result<Option<u64>, String> {
    let mut sum: Option<u64> = None;
    let mut init_max: Option<u64> = None;
    for (init, c) in containers(spec) {
        let Some(q) = list(c).and_then(|l| l.get(resource)) else {
            continue;
        };
        let v = value(resource, q, &format!("container {:?}", c.name))?;
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        if init && !sidecar {
            init_max = Some(init_max.unwrap_or(0).max(v));
        } else {
            sum = Some(sum.unwrap_or(0).saturating_add(v));
        }
    }
    Ok(match (sum, init_max) {
        (Some(s), Some(i)) => Some(s.max(i)),
        (s, i) => s.or(i),
    })
}

/// A number back as a Kubernetes quantity: `500m`, `2`, `512Mi`, `1G`.
fn format_quantity(resource: &str, v: u64) -> String {
    if resource == "cpu" || resource.ends_with(".cpu") {
        return if v.is_multiple_of(1000) {
            (v / 1000).to_string()
        } else {
            format!("{v}m")
        };
    }
    if resource == "pods" || resource.starts_with("count/") {
        return v.to_string();
    }
    if v == 0 {
        return "0".to_owned();
    }
    let binary = [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ];
    for (suffix, shift) in binary {
        if v.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", v >> shift);
        }
    }
    let decimal = [
        ("E", 18),
        ("P", 15),
        ("T", 12),
        ("G", 9),
        ("M", 6),
        ("k", 3),
    ];
    for (suffix, exp) in decimal {
        let unit = 10u64.pow(exp);
        if v.is_multiple_of(unit) {
            return format!("{}{suffix}", v / unit);
        }
    }
    v.to_string()
}

/// The pod resources a quota tracks, and the compute ones of them a pod must
/// set on every container when the quota limits them.
const POD_RESOURCES: &[&str] = &[
    "pods",
    "count/pods",
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];
const COMPUTE: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

fn terminated(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// What a container sets, as quota resource names (podComputeUsageHelper).
fn container_sets(c: &Container) -> BTreeSet<&'static str> {
    let r = c.resources.as_ref();
    let has = |list: Option<&ResourceList>, name: &str| list.is_some_and(|l| l.contains_key(name));
    let requests = r.and_then(|r| r.requests.as_ref());
    let limits = r.and_then(|r| r.limits.as_ref());
    let mut set = BTreeSet::new();
    if has(requests, "cpu") {
        set.extend(["cpu", "requests.cpu"]);
    }
    if has(requests, "memory") {
        set.extend(["memory", "requests.memory"]);
    }
    if has(limits, "cpu") {
        set.insert("limits.cpu");
    }
    if has(limits, "memory") {
        set.insert("limits.memory");
    }
    set
}

fn best_effort(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(containers)
        .all(|(_, c)| container_sets(c).is_empty())
}

/// Whether a quota's scopes (and scope selector) select the pod. Scopes
/// outpost cannot judge (CrossNamespacePodAffinity, …) select nothing.
fn in_scope(quota: &ResourceQuota, pod: &Pod) -> bool {
    let spec = quota.spec.as_ref();
    let terminating = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.active_deadline_seconds.is_some_and(|d| d >= 0));
    let priority_class = pod
        .spec
        .as_ref()
        .and_then(|s| s.priority_class_name.as_deref())
        .unwrap_or_default();
    let scope = |name: &str, operator: &str, values: &[String]| -> bool {
        match (name, operator) {
            ("Terminating", "Exists") => terminating,
            ("NotTerminating", "Exists") => !terminating,
            ("BestEffort", "Exists") => best_effort(pod),
            ("NotBestEffort", "Exists") => !best_effort(pod),
            ("PriorityClass", "Exists") => !priority_class.is_empty(),
            ("PriorityClass", "DoesNotExist") => priority_class.is_empty(),
            ("PriorityClass", "In") => values.iter().any(|v| v == priority_class),
            ("PriorityClass", "NotIn") => !values.iter().any(|v| v == priority_class),
            _ => false,
        }
    };
    let scopes = spec.and_then(|s| s.scopes.as_ref()).into_iter().flatten();
    let scopes_match = scopes.into_iter().all(|s| scope(s, "Exists", &[]));
    let expressions = spec
        .and_then(|s| s.scope_selector.as_ref())
        .and_then(|s| s.match_expressions.as_ref());
    let selector_match = expressions.into_iter().flatten().all(|e| {
        scope(
            &e.scope_name,
            &e.operator,
            e.values.as_deref().unwrap_or_default(),
        )
    });
    scopes_match && selector_match
}

fn limited_to_pods(quota: &ResourceQuota) -> bool {
    let scopes = quota.spec.as_ref().and_then(|s| s.scopes.as_ref());
    scopes.is_some_and(|s| s.iter().any(|s| s == "BestEffort"))
}

/// The quota usage of one pod, for the resources in `tracked`.
fn usage(pod: &Pod, tracked: &[&str]) -> Result<BTreeMap<String, u64>, String> {
    let mut out = BTreeMap::new();
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(out);
    };
    for &resource in tracked {
        let v = match resource {
            "pods" | "count/pods" => Some(1),
            "cpu" | "requests.cpu" => pod_total(spec, "cpu", |c| {
                c.resources.as_ref().and_then(|r| r.requests.as_ref())
            })?,
            "memory" | "requests.memory" => pod_total(spec, "memory", |c| {
                c.resources.as_ref().and_then(|r| r.requests.as_ref())
            })?,
            "limits.cpu" => pod_total(spec, "cpu", |c| {
                c.resources.as_ref().and_then(|r| r.limits.as_ref())
            })?,
            "limits.memory" => pod_total(spec, "memory", |c| {
                c.resources.as_ref().and_then(|r| r.limits.as_ref())
            })?,
            _ => None,
        };
        out.insert(resource.to_owned(), v.unwrap_or(0));
    }
    Ok(out)
}

/// ResourceQuota admission of a new pod: every container must set what the
/// quota limits, and the pod plus the (non-terminated) `existing` pods of the
/// quota's namespace must stay within `hard`.
pub fn check_quota(pod: &Pod, quota: &ResourceQuota, existing: &[&Pod]) -> Result<(), String> {
    let name = pod_name(pod);
    let namespace = pod_namespace(pod);
    let quota_name = quota.metadata.name.as_deref().unwrap_or_default();
    let quota_namespace = quota
        .metadata
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE);
    if namespace != quota_namespace || terminated(pod) || !in_scope(quota, pod) {
        return Ok(());
    }
    let whose = format!("resource quota {quota_name:?}");
    let mut hard = BTreeMap::new();
    for (resource, q) in quota.spec.iter().flat_map(|s| s.hard.iter().flatten()) {
        let Some(&known) = POD_RESOURCES.iter().find(|r| **r == resource.as_str()) else {
            continue;
        };
        if limited_to_pods(quota) && !known.ends_with("pods") {
            continue;
        }
        hard.insert(known, (value(known, q, &whose)?, q.0.clone()));
    }
    if hard.is_empty() {
        return Ok(());
    }

    let required: BTreeSet<&str> = hard
        .keys()
        .copied()
        .filter(|r| COMPUTE.contains(r))
        .collect();
    let mut missing = BTreeSet::new();
    for (_, c) in pod.spec.iter().flat_map(containers) {
        missing.extend(required.difference(&container_sets(c)).copied());
    }
    if !missing.is_empty() {
        let missing: Vec<&str> = missing.into_iter().collect();
        let why = format!(
            "failed quota: {quota_name}: must specify {}",
            missing.join(",")
        );
        return Err(forbidden(name, &[why]));
    }

    let tracked: Vec<&str> = hard.keys().copied().collect();
    let requested = usage(pod, &tracked)?;
    let mut used: BTreeMap<String, u64> = tracked.iter().map(|r| ((*r).to_owned(), 0)).collect();
    for other in existing {
        let same = pod_namespace(other) == namespace && pod_name(other) == name;
        if same || pod_namespace(other) != namespace || terminated(other) || !in_scope(quota, other)
        {
            continue;
        }
        for (resource, v) in usage(other, &tracked)? {
            let total = used.entry(resource).or_insert(0);
            *total = total.saturating_add(v);
        }
    }
    // Each exceeded resource as `name=requested`, `name=used`, `name=hard`.
    let (mut asked_list, mut used_list, mut hard_list) = (Vec::new(), Vec::new(), Vec::new());
    for (resource, (limit, limit_text)) in &hard {
        let asked = requested.get(*resource).copied().unwrap_or(0);
        let already = used.get(*resource).copied().unwrap_or(0);
        if asked > 0 && already.saturating_add(asked) > *limit {
            asked_list.push(format!("{resource}={}", format_quantity(resource, asked)));
            used_list.push(format!("{resource}={}", format_quantity(resource, already)));
            hard_list.push(format!("{resource}={limit_text}"));
        }
    }
    if asked_list.is_empty() {
        return Ok(());
    }
    let why = format!(
        "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
        asked_list.join(","),
        used_list.join(","),
        hard_list.join(","),
    );
    Err(forbidden(name, &[why]))
}

#[cfg(test)]
mod tests;
