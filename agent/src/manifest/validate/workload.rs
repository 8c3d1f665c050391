//! Workload validation (apps/v1 `ValidateDeployment`, `ValidateDaemonSet`,
//! batch/v1 `ValidateJob`): the selector, the pod template (validated as a
//! pod is, at `spec.template.spec`), the strategy and the counts.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, DeploymentStrategy};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{meta, names, pod, Errors, NameFormat, Path};
use crate::manifest::{int_or_percent, selector_matches};

/// The API server's bound on an Indexed Job's completions.
const MAX_INDEXED_COMPLETIONS: i32 = 100_000;

pub(super) fn deployment(e: &mut Errors, d: &Deployment) {
    meta(e, &d.metadata, NameFormat::Subdomain, true);
    let p = Path::new("spec");
    let Some(spec) = d.spec.as_ref() else {
        return e.required(&p);
    };
    non_negative(e, &p.child("replicas"), spec.replicas);
    non_negative(e, &p.child("minReadySeconds"), spec.min_ready_seconds);
    non_negative(
        e,
        &p.child("revisionHistoryLimit"),
        spec.revision_history_limit,
    );
    if let Some(deadline) = spec.progress_deadline_seconds {
        non_negative(e, &p.child("progressDeadlineSeconds"), Some(deadline));
        if deadline <= spec.min_ready_seconds.unwrap_or(0) {
            e.invalid_number(
                &p.child("progressDeadlineSeconds"),
                deadline.into(),
                "must be greater than minReadySeconds",
            );
        }
    }
    selector_and_template(
        e,
        &p,
        Some(&spec.selector),
        &spec.template,
        &["Always"],
        "deployment",
    );
    if let Some(strategy) = spec.strategy.as_ref() {
        deployment_strategy(e, strategy, &p.child("strategy"));
    }
}

fn deployment_strategy(e: &mut Errors, strategy: &DeploymentStrategy, p: &Path) {
    let kind = strategy.type_.as_deref().unwrap_or("RollingUpdate");
    e.one_of(&p.child("type"), kind, &["Recreate", "RollingUpdate"]);
    let Some(rolling) = strategy.rolling_update.as_ref() else {
        if kind == "RollingUpdate" {
            e.required(&p.child("rollingUpdate"));
        }
        return;
    };
    let p = p.child("rollingUpdate");
    if kind == "Recreate" {
        e.forbidden(
            &p,
            "may not be specified when strategy `type` is 'Recreate'",
        );
        return;
    }
    let unavailable = rolling.max_unavailable.as_ref();
    let surge = rolling.max_surge.as_ref();
    let u = int_or_percent_field(e, &p.child("maxUnavailable"), unavailable);
    let s = int_or_percent_field(e, &p.child("maxSurge"), surge);
    if let Some(IntOrString::String(v)) = unavailable {
        if u.is_some_and(|u| u > 100) {
            e.invalid(
                &p.child("maxUnavailable"),
                v,
                "must not be greater than 100%",
            );
        }
    }
    if u == Some(0) && s == Some(0) {
        e.invalid(
            &p.child("maxUnavailable"),
            &show(unavailable),
            "may not be 0 when `maxSurge` is 0",
        );
    }
}

pub(super) fn daemon_set(e: &mut Errors, ds: &DaemonSet) {
    meta(e, &ds.metadata, NameFormat::Subdomain, true);
    let p = Path::new("spec");
    let Some(spec) = ds.spec.as_ref() else {
        return e.required(&p);
    };
    non_negative(e, &p.child("minReadySeconds"), spec.min_ready_seconds);
    non_negative(
        e,
        &p.child("revisionHistoryLimit"),
        spec.revision_history_limit,
    );
    selector_and_template(
        e,
        &p,
        Some(&spec.selector),
        &spec.template,
        &["Always"],
        "daemonset",
    );
    if let Some(strategy) = spec.update_strategy.as_ref() {
        let sp = p.child("updateStrategy");
        let kind = strategy.type_.as_deref().unwrap_or("RollingUpdate");
        e.one_of(&sp.child("type"), kind, &["OnDelete", "RollingUpdate"]);
        if let Some(rolling) = strategy.rolling_update.as_ref() {
            let rp = sp.child("rollingUpdate");
            let u = int_or_percent_field(
                e,
                &rp.child("maxUnavailable"),
                rolling.max_unavailable.as_ref(),
            );
            let s = int_or_percent_field(e, &rp.child("maxSurge"), rolling.max_surge.as_ref());
            if u == Some(0) && s == Some(0) {
                e.invalid(
                    &rp.child("maxUnavailable"),
                    &show(rolling.max_unavailable.as_ref()),
                    "may not be 0 when `maxSurge` is 0",
                );
            }
        }
    }
}

pub(super) fn job(e: &mut Errors, job: &Job) {
    meta(e, &job.metadata, NameFormat::Subdomain, true);
    let p = Path::new("spec");
    let Some(spec) = job.spec.as_ref() else {
        return e.required(&p);
    };
    non_negative(e, &p.child("parallelism"), spec.parallelism);
    non_negative(e, &p.child("completions"), spec.completions);
    non_negative(e, &p.child("backoffLimit"), spec.backoff_limit);
    if let Some(seconds) = spec.active_deadline_seconds.filter(|s| *s <= 0) {
        e.invalid_number(
            &p.child("activeDeadlineSeconds"),
            seconds,
            "must be greater than 0",
        );
    }
    if let Some(seconds) = spec.ttl_seconds_after_finished {
        non_negative(e, &p.child("ttlSecondsAfterFinished"), Some(seconds));
    }
    if let Some(mode) = spec.completion_mode.as_deref() {
        e.one_of(&p.child("completionMode"), mode, &["NonIndexed", "Indexed"]);
        if mode == "Indexed" {
            // validateJobSpec: an index per completion, within the API's bound.
            match spec.completions {
                None => e.required_because(
                    &p.child("completions"),
                    "when completion mode is Indexed",
                ),
                Some(c) if c > MAX_INDEXED_COMPLETIONS => e.invalid_number(
                    &p.child("completions"),
                    c.into(),
                    &format!("must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion mode is Indexed"),
                ),
                Some(_) => {}
            }
        }
    }
    for (field, set) in [
        ("podFailurePolicy", spec.pod_failure_policy.is_some()),
        ("successPolicy", spec.success_policy.is_some()),
        (
            "backoffLimitPerIndex",
            spec.backoff_limit_per_index.is_some(),
        ),
        ("managedBy", spec.managed_by.is_some()),
    ] {
        if set {
            e.not_supported(
                &p.child(field),
                format!("{field} is not supported by outpost"),
            );
        }
    }
    // The API server generates the selector (from the Job's uid) unless
    // manualSelector is set; outpost does the same when it runs the Job.
    let manual = spec.manual_selector == Some(true);
    if manual {
        selector_and_template(
            e,
            &p,
            spec.selector.as_ref(),
            &spec.template,
            &["OnFailure", "Never"],
            "job",
        );
    } else {
        if spec.selector.is_some() {
            e.invalid(
                &p.child("selector"),
                "",
                "`selector` will be auto-generated: set `manualSelector: true` to write one",
            );
        }
        template(e, &p, &spec.template, &["OnFailure", "Never"]);
    }
}

/// The selector is set, not empty, valid, and matches the template's labels.
fn selector_and_template(
    e: &mut Errors,
    p: &Path,
    selector: Option<&LabelSelector>,
    template: &PodTemplateSpec,
    restart_policies: &[&str],
    kind: &str,
) {
    let sp = p.child("selector");
    match selector {
        None => e.required(&sp),
        Some(s)
            if s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|m| m.is_empty()) =>
        {
            // k8s-openapi reads a missing selector as an empty one.
            e.required_because(&sp, &format!("empty selector is invalid for {kind}"))
        }
        Some(s) => {
            let before = e.0.len();
            label_selector(e, s, &sp);
            let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
            if e.0.len() == before && !selector_matches(s, labels.as_ref()) {
                let shown = labels
                    .iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                e.invalid(
                    &p.child("template").child("metadata").child("labels"),
                    &shown,
                    "`selector` does not match template `labels`",
                );
            }
        }
    }
    self::template(e, p, template, restart_policies);
}

fn template(e: &mut Errors, p: &Path, template: &PodTemplateSpec, restart_policies: &[&str]) {
    let tp = p.child("template");
    if let Some(labels) = template.metadata.as_ref().and_then(|m| m.labels.as_ref()) {
        let lp = tp.child("metadata").child("labels");
        for (key, value) in labels {
            e.invalid_all(&lp, key, names::qualified_name(key));
            e.invalid_all(&lp, value, names::label_value(value));
        }
    }
    let Some(spec) = template.spec.as_ref() else {
        return e.required(&tp.child("spec"));
    };
    let sp = tp.child("spec");
    pod::spec(e, spec, &sp);
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if !restart_policies.contains(&policy) {
        e.unsupported(&sp.child("restartPolicy"), policy, restart_policies);
    }
    if restart_policies == ["Always"] && spec.active_deadline_seconds.is_some() {
        e.forbidden(
            &sp.child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        );
    }
}

/// ValidateLabelSelector: keys and values, and each operator's values.
fn label_selector(e: &mut Errors, s: &LabelSelector, p: &Path) {
    for (key, value) in s.match_labels.iter().flatten() {
        let lp = p.child("matchLabels");
        e.invalid_all(&lp, key, names::qualified_name(key));
        e.invalid_all(&lp, value, names::label_value(value));
    }
    for (i, r) in s.match_expressions.iter().flatten().enumerate() {
        let rp = p.child("matchExpressions").index(i);
        e.invalid_all(&rp.child("key"), &r.key, names::qualified_name(&r.key));
        let values = r.values.as_ref().map_or(0, Vec::len);
        match r.operator.as_str() {
            "In" | "NotIn" if values == 0 => e.required_because(
                &rp.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            "Exists" | "DoesNotExist" if values > 0 => e.forbidden(
                &rp.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => e.unsupported(
                &rp.child("operator"),
                other,
                &["In", "NotIn", "Exists", "DoesNotExist"],
            ),
        }
    }
}

fn non_negative(e: &mut Errors, p: &Path, value: Option<i32>) {
    if let Some(v) = value.filter(|v| *v < 0) {
        e.invalid_number(p, v.into(), "must be greater than or equal to 0");
    }
}

/// An int or a percent (`25%`), non-negative; its number when valid.
fn int_or_percent_field(e: &mut Errors, p: &Path, value: Option<&IntOrString>) -> Option<i32> {
    let value = value?;
    // Against 100, a percent reads as its own number.
    match int_or_percent(value, 100, false) {
        Ok(n) if n < 0 => {
            e.invalid(p, &show(Some(value)), "must be greater than or equal to 0");
            None
        }
        Ok(n) => Some(n),
        Err(why) => {
            e.invalid(p, &show(Some(value)), &why);
            None
        }
    }
}

fn show(value: Option<&IntOrString>) -> String {
    match value {
        Some(IntOrString::Int(n)) => n.to_string(),
        Some(IntOrString::String(s)) => s.clone(),
        None => String::new(),
    }
}
