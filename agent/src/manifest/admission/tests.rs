use k8s_openapi::api::core::v1::{LimitRange, Pod, ResourceQuota};

use super::*;

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A pod `web` in `default` whose spec is the flow-style map `spec`.
fn pod(spec: &str) -> Pod {
    yaml(&format!(
        "metadata: {{name: web, namespace: default}}\nspec: {{{spec}}}"
    ))
}

fn limit_range(name: &str, limits: &str) -> LimitRange {
    yaml(&format!(
        "metadata: {{name: {name}, namespace: default}}\nspec: {{limits: [{limits}]}}"
    ))
}

fn quota(spec: &str) -> ResourceQuota {
    yaml(&format!(
        "metadata: {{name: q, namespace: default}}\nspec: {{{spec}}}"
    ))
}

/// The resources of every container after admission, one line each, or the refusal.
fn limits(spec: &str, ranges: &[LimitRange]) -> String {
    let mut pod = pod(spec);
    match apply_limit_ranges(&mut pod, ranges) {
        Ok(()) => {
            let spec = pod.spec.unwrap_or_default();
            let all = spec
                .init_containers
                .unwrap_or_default()
                .into_iter()
                .chain(spec.containers);
            all.map(|c| {
                format!(
                    "{}: {}",
                    c.name,
                    serde_json::to_string(&c.resources).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
        }
        Err(message) => message,
    }
}

#[test]
fn limit_range_defaults() {
    let defaults = limit_range(
        "defaults",
        "{type: Container, default: {cpu: 500m, memory: 256Mi}, defaultRequest: {cpu: 100m}}",
    );
    let cases: &[(&str, &[LimitRange], &str)] = &[
        // Nothing to do.
        ("containers: [{name: a}]", &[], "a: null"),
        // Defaults fill in what is missing, and nothing else.
        (
            "containers: [{name: a}, {name: b, resources: {requests: {cpu: 50m}, limits: {memory: 1Gi}}}]",
            std::slice::from_ref(&defaults),
            r#"a: {"limits":{"cpu":"500m","memory":"256Mi"},"requests":{"cpu":"100m","memory":"256Mi"}}
b: {"limits":{"cpu":"500m","memory":"1Gi"},"requests":{"cpu":"50m","memory":"1Gi"}}"#,
        ),
        // Requests default to the limit (the item's, then the container's own), then to min.
        (
            "initContainers: [{name: i}], containers: [{name: a, resources: {limits: {cpu: 2}}}]",
            &[limit_range("l", "{type: Container, max: {memory: 1Gi}, min: {cpu: 10m}}")],
            r#"i: {"limits":{"memory":"1Gi"},"requests":{"cpu":"10m","memory":"1Gi"}}
a: {"limits":{"cpu":"2","memory":"1Gi"},"requests":{"cpu":"2","memory":"1Gi"}}"#,
        ),
        // The first range to give a default wins; Pod items give none.
        (
            "containers: [{name: a}]",
            &[limit_range("pods", "{type: Pod, max: {cpu: 4}}"), limit_range("first", "{type: Container, default: {cpu: 1}}"), defaults.clone()],
            r#"a: {"limits":{"cpu":"1","memory":"256Mi"},"requests":{"cpu":"1","memory":"256Mi"}}"#,
        ),
        // A default limit below an explicit request makes the pod invalid.
        (
            "containers: [{name: a, resources: {requests: {memory: 512Mi}}}]",
            &[limit_range("l", "{type: Container, default: {memory: 256Mi}}")],
            r#"Pod "web" is invalid: spec.containers[0].resources.requests: invalid value: "512Mi": must be less than or equal to memory limit of 256Mi"#,
        ),
    ];
    for (spec, ranges, expect) in cases {
        assert_eq!(limits(spec, ranges), *expect, "{spec}");
    }
}

#[test]
fn limit_range_constraints() {
    let max = limit_range("max", "{type: Container, max: {memory: 1Gi, cpu: 2}}");
    let min = limit_range("min", "{type: Container, min: {memory: 64Mi}}");
    let ratio = limit_range("ratio", "{type: Container, maxLimitRequestRatio: {cpu: 4}}");
    let per_pod = limit_range("pod", "{type: Pod, max: {memory: 1Gi}, min: {cpu: 200m}}");
    let cases: &[(&str, &[LimitRange], &str)] = &[
        (
            "containers: [{name: a, resources: {limits: {memory: 2Gi, cpu: 1}}}]",
            std::slice::from_ref(&max),
            r#"pods "web" is forbidden: maximum memory usage per Container is 1Gi, but limit is 2Gi"#,
        ),
        // The max is also the default limit.
        (
            "containers: [{name: a, resources: {limits: {cpu: 1}}}]",
            std::slice::from_ref(&max),
            r#"a: {"limits":{"cpu":"1","memory":"1Gi"},"requests":{"cpu":"1","memory":"1Gi"}}"#,
        ),
        (
            "containers: [{name: a}]",
            std::slice::from_ref(&per_pod),
            r#"pods "web" is forbidden: [minimum cpu usage per Pod is 200m, but no request is specified, maximum memory usage per Pod is 1Gi, but no limit is specified]"#,
        ),
        (
            "initContainers: [{name: i, resources: {requests: {memory: 32Mi}}}], containers: [{name: a}]",
            std::slice::from_ref(&min),
            // The min is also the default request: only the init container is short.
            r#"pods "web" is forbidden: minimum memory usage per Container is 64Mi, but request is 32Mi"#,
        ),
        (
            "containers: [{name: a, resources: {requests: {cpu: 100m}, limits: {cpu: 800m}}}]",
            std::slice::from_ref(&ratio),
            r#"pods "web" is forbidden: cpu max limit to request ratio per Container is 4, but provided ratio is 8.000000"#,
        ),
        (
            "containers: [{name: a, resources: {requests: {cpu: 100m}, limits: {cpu: 400m}}}]",
            std::slice::from_ref(&ratio),
            r#"a: {"limits":{"cpu":"400m"},"requests":{"cpu":"100m"}}"#,
        ),
        (
            "containers: [{name: a, resources: {limits: {memory: 768Mi}}}, {name: b, resources: {requests: {cpu: 100m}, limits: {memory: 512Mi}}}]",
            std::slice::from_ref(&per_pod),
            r#"pods "web" is forbidden: [minimum cpu usage per Pod is 200m, but request is 100m, maximum memory usage per Pod is 1Gi, but limit is 1280Mi]"#,
        ),
        // Every range applies, not only the first.
        (
            "containers: [{name: a, resources: {limits: {memory: 32Mi, cpu: 1}}}]",
            &[max.clone(), min.clone()],
            r#"pods "web" is forbidden: minimum memory usage per Container is 64Mi, but request is 32Mi"#,
        ),
    ];
    for (spec, ranges, expect) in cases {
        assert_eq!(limits(spec, ranges), *expect, "{spec}");
    }
}

#[test]
fn quotas() {
    let running = |name: &str, resources: &str| -> Pod {
        yaml(&format!(
            "metadata: {{name: {name}, namespace: default}}\nspec: {{containers: [{{name: c, resources: {{{resources}}}}}]}}\nstatus: {{phase: Running}}"
        ))
    };
    let mut done = running("done", "requests: {memory: 4Gi, cpu: 4}");
    if let Some(status) = done.status.as_mut() {
        status.phase = Some("Succeeded".to_owned());
    }
    let mut elsewhere = running("elsewhere", "requests: {memory: 4Gi, cpu: 4}");
    elsewhere.metadata.namespace = Some("other".to_owned());
    let one_gi = running(
        "one",
        "requests: {memory: 1Gi, cpu: 500m}, limits: {memory: 1Gi}",
    );
    let existing = [&done, &elsewhere, &one_gi];

    let memory = quota("hard: {requests.memory: 1536Mi}");
    type Case<'a> = (
        &'a str,
        &'a ResourceQuota,
        &'a [&'a Pod],
        Result<(), &'a str>,
    );
    let cases: &[Case] = &[
        ("containers: [{name: a, resources: {requests: {memory: 512Mi}}}]", &memory, &existing, Ok(())),
        (
            "containers: [{name: a, resources: {requests: {memory: 768Mi}}}]",
            &memory,
            &existing,
            Err(r#"pods "web" is forbidden: exceeded quota: q, requested: requests.memory=768Mi, used: requests.memory=1Gi, limited: requests.memory=1536Mi"#),
        ),
        (
            "containers: [{name: a, resources: {requests: {memory: 1Gi}}}, {name: b}]",
            &quota("hard: {requests.memory: 2Gi, limits.cpu: 2, pods: 5}"),
            &[],
            Err(r#"pods "web" is forbidden: failed quota: q: must specify limits.cpu,requests.memory"#),
        ),
        (
            "containers: [{name: a, resources: {requests: {cpu: 1, memory: 1Gi}, limits: {memory: 1Gi}}}]",
            &quota("hard: {pods: 1, cpu: 2, memory: 1Gi, limits.memory: 10Gi}"),
            &existing,
            Err(r#"pods "web" is forbidden: exceeded quota: q, requested: memory=1Gi,pods=1, used: memory=1Gi,pods=1, limited: memory=1Gi,pods=1"#),
        ),
        // Init containers count with their largest, not their sum.
        (
            "initContainers: [{name: i, resources: {requests: {cpu: 1500m}}}], containers: [{name: a, resources: {requests: {cpu: 500m}}}, {name: b, resources: {requests: {cpu: 500m}}}]",
            &quota("hard: {requests.cpu: 1}"),
            &[],
            Err(r#"pods "web" is forbidden: exceeded quota: q, requested: requests.cpu=1500m, used: requests.cpu=0, limited: requests.cpu=1"#),
        ),
        // A quota of another namespace, or scoped elsewhere, does not apply.
        ("containers: [{name: a}]", &yaml("metadata: {name: q, namespace: other}\nspec: {hard: {pods: 0}}"), &[], Ok(())),
        ("containers: [{name: a}]", &quota("hard: {pods: 0}, scopes: [Terminating]"), &[], Ok(())),
        (
            "containers: [{name: a}]",
            &quota("hard: {pods: 1, requests.cpu: 1}, scopes: [BestEffort]"),
            &[&running("be", "")],
            Err(r#"pods "web" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"#),
        ),
        (
            "containers: [{name: a}], priorityClassName: high",
            &quota("hard: {pods: 0}, scopeSelector: {matchExpressions: [{scopeName: PriorityClass, operator: In, values: [high]}]}"),
            &[],
            Err(r#"pods "web" is forbidden: exceeded quota: q, requested: pods=1, used: pods=0, limited: pods=0"#),
        ),
        // The pod itself, already admitted once, is not counted twice.
        ("containers: [{name: a}]", &quota("hard: {pods: 1}"), &[&running("web", "")], Ok(())),
    ];
    for (spec, quota, existing, expect) in cases {
        let got = check_quota(&pod(spec), quota, existing);
        assert_eq!(
            got.as_ref().map(|_| ()).map_err(String::as_str),
            *expect,
            "{spec}"
        );
    }
    // A terminated pod is never refused.
    assert_eq!(check_quota(&done, &quota("hard: {pods: 0}"), &[]), Ok(()));
}

#[test]
fn quantities_shown() {
    let check =
        |resource: &str, v: u64, expect: &str| assert_eq!(format_quantity(resource, v), expect);
    check("cpu", 1500, "1500m");
    check("requests.cpu", 2000, "2");
    check("memory", 1536 << 20, "1536Mi");
    check("memory", 1 << 30, "1Gi");
    check("limits.memory", 1_000_000_000, "1G");
    check("memory", 1001, "1001");
    check("memory", 0, "0");
    check("pods", 3, "3");
}
