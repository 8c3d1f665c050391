//! The API server's validation (`pkg/apis/core/validation`), the part that
//! matters for what outpost runs, with its field paths and (lowercased)
//! messages: `spec.containers[0].image: required value`. Runs on defaulted
//! objects and reports every problem, not the first.

pub(super) mod names;
mod pod;
mod service;
mod workload;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Namespace, ResourceQuota, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Object;
use crate::quantity::{parse_bytes, parse_millicpu};

/// A problem with one field of an object (or the object, without a field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::manifest) struct FieldError {
    pub field: Option<String>,
    pub message: String,
}

impl FieldError {
    pub fn new(field: Option<String>, message: String) -> Self {
        FieldError { field, message }
    }

    /// `invalid value: "Web": <why>`.
    pub fn invalid(field: Option<String>, value: &str, why: &str) -> Self {
        FieldError {
            field,
            message: format!("invalid value: {value:?}: {why}"),
        }
    }
}

/// Validates a defaulted object.
pub(super) fn object(object: &Object) -> Vec<FieldError> {
    let mut e = Errors::default();
    match object {
        Object::Namespace(ns) => namespace(&mut e, ns),
        Object::Pod(p) => pod::pod(&mut e, p),
        Object::ConfigMap(cm) => config_map(&mut e, cm),
        Object::Secret(s) => secret(&mut e, s),
        Object::LimitRange(lr) => limit_range(&mut e, lr),
        Object::ResourceQuota(q) => resource_quota(&mut e, q),
        Object::Service(s) => service::service(&mut e, s),
        Object::Deployment(d) => workload::deployment(&mut e, d),
        Object::Job(j) => workload::job(&mut e, j),
        Object::DaemonSet(ds) => workload::daemon_set(&mut e, ds),
        // Checked when read: only its identity matters to outpost.
        Object::Unsupported(_) => {}
    }
    e.0
}

/// A field path: `spec.containers[0].resources.limits[memory]`.
#[derive(Debug, Clone)]
pub(super) struct Path(String);

impl Path {
    pub fn new(field: &str) -> Path {
        Path(field.to_owned())
    }

    pub fn child(&self, field: &str) -> Path {
        Path(format!("{}.{field}", self.0))
    }

    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    pub fn key(&self, key: &str) -> Path {
        Path(format!("{}[{key}]", self.0))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Collects problems; the helpers word them as the API server's field errors.
#[derive(Debug, Default)]
pub(super) struct Errors(Vec<FieldError>);

impl Errors {
    pub fn push(&mut self, path: &Path, message: String) {
        self.0.push(FieldError::new(Some(path.0.clone()), message));
    }

    pub fn required(&mut self, path: &Path) {
        self.push(path, "required value".to_owned());
    }

    pub fn required_because(&mut self, path: &Path, why: &str) {
        self.push(path, format!("required value: {why}"));
    }

    pub fn invalid(&mut self, path: &Path, value: &str, why: &str) {
        self.push(path, format!("invalid value: {value:?}: {why}"));
    }

    /// Every message of a format check (`names::*`) as an invalid value.
    pub fn invalid_all(&mut self, path: &Path, value: &str, whys: Vec<String>) {
        for why in whys {
            self.invalid(path, value, &why);
        }
    }

    pub fn invalid_number(&mut self, path: &Path, value: i64, why: &str) {
        self.push(path, format!("invalid value: {value}: {why}"));
    }

    pub fn unsupported(&mut self, path: &Path, value: &str, supported: &[&str]) {
        let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.push(
            path,
            format!(
                "unsupported value: {value:?}: supported values: {}",
                supported.join(", ")
            ),
        );
    }

    /// `value` must be one of `supported`.
    pub fn one_of(&mut self, path: &Path, value: &str, supported: &[&str]) {
        if !supported.contains(&value) {
            self.unsupported(path, value, supported);
        }
    }

    pub fn duplicate(&mut self, path: &Path, value: &str) {
        self.push(path, format!("duplicate value: {value:?}"));
    }

    pub fn not_found(&mut self, path: &Path, value: &str) {
        self.push(path, format!("not found: {value:?}"));
    }

    pub fn forbidden(&mut self, path: &Path, why: &str) {
        self.push(path, format!("forbidden: {why}"));
    }

    /// `<what> is|are not supported by outpost[: <instead>]`, as `message` says it.
    pub fn not_supported(&mut self, path: &Path, message: String) {
        self.push(path, message);
    }
}

/// Which names a kind accepts.
#[derive(Debug, Clone, Copy)]
pub(super) enum NameFormat {
    Subdomain,
    Label,
}

/// The longest total of annotation keys and values.
const ANNOTATIONS_MAX: usize = 256 * 1024;
/// The most data a ConfigMap or Secret holds.
const DATA_MAX: usize = 1024 * 1024;

/// ValidateObjectMeta on create.
pub(super) fn meta(e: &mut Errors, meta: &ObjectMeta, format: NameFormat, namespaced: bool) {
    let path = Path::new("metadata");
    match meta.name.as_deref() {
        Some(name) if !name.is_empty() => {
            let whys = match format {
                NameFormat::Subdomain => names::dns1123_subdomain(name),
                NameFormat::Label => names::dns1123_label(name),
            };
            e.invalid_all(&path.child("name"), name, whys);
        }
        _ if meta.generate_name.as_deref().is_some_and(|g| !g.is_empty()) => e.forbidden(
            &path.child("generateName"),
            "generateName is not supported by outpost: a manifest is applied again on every sync; set metadata.name",
        ),
        _ => e.required_because(&path.child("name"), "name or generateName is required"),
    }
    if namespaced {
        if let Some(ns) = meta.namespace.as_deref() {
            e.invalid_all(&path.child("namespace"), ns, names::dns1123_label(ns));
        }
    }
    let labels = path.child("labels");
    for (key, value) in meta.labels.iter().flatten() {
        e.invalid_all(&labels, key, names::qualified_name(key));
        e.invalid_all(&labels, value, names::label_value(value));
    }
    let annotations = path.child("annotations");
    let mut total = 0;
    for (key, value) in meta.annotations.iter().flatten() {
        e.invalid_all(
            &annotations,
            key,
            names::qualified_name(&key.to_lowercase()),
        );
        total += key.len() + value.len();
    }
    if total > ANNOTATIONS_MAX {
        e.push(
            &annotations,
            format!("too long: must have at most {ANNOTATIONS_MAX} bytes"),
        );
    }
}

fn namespace(e: &mut Errors, ns: &Namespace) {
    meta(e, &ns.metadata, NameFormat::Label, false);
}

/// Keys of ConfigMap/Secret data: config keys, never secret values in messages.
fn data_keys<'a>(e: &mut Errors, path: &Path, keys: impl Iterator<Item = &'a String>) {
    for key in keys {
        e.invalid_all(&path.key(key), key, names::config_map_key(key));
    }
}

fn data_size(e: &mut Errors, total: usize) {
    if total > DATA_MAX {
        e.push(
            &Path::new("data"),
            format!("too long: must have at most {DATA_MAX} bytes"),
        );
    }
}

fn config_map(e: &mut Errors, cm: &ConfigMap) {
    meta(e, &cm.metadata, NameFormat::Subdomain, true);
    let data = Path::new("data");
    data_keys(e, &data, cm.data.iter().flat_map(|d| d.keys()));
    data_keys(
        e,
        &Path::new("binaryData"),
        cm.binary_data.iter().flat_map(|d| d.keys()),
    );
    for key in cm.binary_data.iter().flat_map(|d| d.keys()) {
        if cm.data.as_ref().is_some_and(|d| d.contains_key(key)) {
            e.invalid(
                &data.key(key),
                key,
                "duplicate of key present in binaryData",
            );
        }
    }
    let text: usize = cm.data.iter().flatten().map(|(_, v)| v.len()).sum();
    let binary: usize = cm
        .binary_data
        .iter()
        .flatten()
        .map(|(_, v)| v.0.len())
        .sum();
    data_size(e, text + binary);
}

fn secret(e: &mut Errors, secret: &Secret) {
    meta(e, &secret.metadata, NameFormat::Subdomain, true);
    let path = Path::new("data");
    let data = secret.data.as_ref();
    data_keys(e, &path, data.iter().flat_map(|d| d.keys()));
    data_size(
        e,
        data.iter()
            .flat_map(|d| d.values())
            .map(|v| v.0.len())
            .sum(),
    );
    let has = |key: &str| data.is_some_and(|d| d.contains_key(key));
    let require = |e: &mut Errors, key: &str| {
        if !has(key) {
            e.required(&path.key(key));
        }
    };
    match secret.type_.as_deref().unwrap_or_default() {
        "kubernetes.io/tls" => {
            require(e, "tls.crt");
            require(e, "tls.key");
        }
        "kubernetes.io/ssh-auth" => require(e, "ssh-privatekey"),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            e.required_because(
                &path.key("username"),
                "one of username or password is required",
            );
        }
        kind @ ("kubernetes.io/dockerconfigjson" | "kubernetes.io/dockercfg") => {
            let key = if kind.ends_with("json") {
                ".dockerconfigjson"
            } else {
                ".dockercfg"
            };
            match data.and_then(|d| d.get(key)) {
                None => e.required(&path.key(key)),
                Some(bytes) => {
                    if let Err(err) = serde_json::from_slice::<serde_json::Value>(&bytes.0) {
                        e.invalid(
                            &path.key(key),
                            "<secret contents redacted>",
                            &err.to_string(),
                        );
                    }
                }
            }
        }
        "kubernetes.io/service-account-token" => {
            let name = "kubernetes.io/service-account.name";
            if !secret
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(name))
            {
                e.required(&Path::new("metadata.annotations").key(name));
            }
        }
        _ => {}
    }
}

/// What a quantity of `resource` measures: CPU in millicores, anything else
/// (memory, storage, hugepages, counts) as a plain number.
pub(super) fn parse_quantity(resource: &str, q: &Quantity) -> Result<u64, String> {
    let text = q.0.trim();
    if text.starts_with('-') {
        return Err("must be greater than or equal to 0".to_owned());
    }
    if resource == "cpu" || resource.ends_with(".cpu") {
        parse_millicpu(text)
    } else {
        parse_bytes(text)
    }
}

/// Whether a container resource (name and quantity) passes validation.
pub(super) fn valid_resource(name: &str, q: &Quantity) -> bool {
    let known = pod::standard_container_resource(name)
        || (name.contains('/') && names::qualified_name(name).is_empty());
    known && parse_quantity(name, q).is_ok()
}

/// Checks a quantity, returning its value when it parses.
pub(super) fn quantity(e: &mut Errors, path: &Path, resource: &str, q: &Quantity) -> Option<u64> {
    match parse_quantity(resource, q) {
        Ok(v) => Some(v),
        Err(why) if why.starts_with("must") => {
            e.invalid(path, &q.0, &why);
            None
        }
        Err(why) => {
            e.push(path, why);
            None
        }
    }
}

type ResourceList = BTreeMap<String, Quantity>;

fn limit_range(e: &mut Errors, lr: &LimitRange) {
    meta(e, &lr.metadata, NameFormat::Subdomain, true);
    let Some(spec) = lr.spec.as_ref() else { return };
    let limits = Path::new("spec.limits");
    for (i, item) in spec.limits.iter().enumerate() {
        let p = limits.index(i);
        match item.type_.as_str() {
            "" => e.required(&p.child("type")),
            t => e.one_of(
                &p.child("type"),
                t,
                &["Pod", "Container", "PersistentVolumeClaim"],
            ),
        }
        if item.type_ == "Pod" {
            if item.default.as_ref().is_some_and(|d| !d.is_empty()) {
                e.forbidden(
                    &p.child("default"),
                    "may not be specified when `type` is 'Pod'",
                );
            }
            if item.default_request.as_ref().is_some_and(|d| !d.is_empty()) {
                e.forbidden(
                    &p.child("defaultRequest"),
                    "may not be specified when `type` is 'Pod'",
                );
            }
        }
        let mut parsed = |field: &str, list: &Option<ResourceList>| -> Parsed {
            let mut out = BTreeMap::new();
            for (name, q) in list.iter().flatten() {
                if let Some(v) = quantity(e, &p.child(field).key(name), name, q) {
                    out.insert(name.clone(), (v, q.0.clone()));
                }
            }
            out
        };
        let min = parsed("min", &item.min);
        let max = parsed("max", &item.max);
        let default = parsed("default", &item.default);
        let default_request = parsed("defaultRequest", &item.default_request);
        let names: std::collections::BTreeSet<&String> = min
            .keys()
            .chain(max.keys())
            .chain(default.keys())
            .chain(default_request.keys())
            .collect();
        for name in names {
            let (mn, mx, d, dr) = (
                min.get(name),
                max.get(name),
                default.get(name),
                default_request.get(name),
            );
            let at = |field: &str| p.child(field).key(name);
            at_most(e, &at("min"), (mn, "min"), (mx, "max"), false);
            at_most(e, &at("default"), (mn, "min"), (d, "default"), true);
            at_most(e, &at("default"), (d, "default"), (mx, "max"), false);
            at_most(
                e,
                &at("defaultRequest"),
                (mn, "min"),
                (dr, "default request"),
                true,
            );
            at_most(
                e,
                &at("defaultRequest"),
                (dr, "default request"),
                (mx, "max"),
                false,
            );
            at_most(
                e,
                &at("defaultRequest"),
                (dr, "default request"),
                (d, "default limit"),
                false,
            );
        }
        for (name, q) in item.max_limit_request_ratio.iter().flatten() {
            let path = p.child("maxLimitRequestRatio").key(name);
            // Ratios are plain numbers: compared in thousandths.
            match parse_quantity("cpu", q) {
                Ok(thousandths) if thousandths < 1000 => {
                    e.invalid(&path, &q.0, &format!("ratio {} is less than 1", q.0));
                }
                Ok(_) => {}
                Err(why) => e.invalid(&path, &q.0, &why),
            }
        }
    }
}

/// Parsed quantities of a LimitRange item, with their text.
type Parsed = BTreeMap<String, (u64, String)>;

/// A LimitRange value and its role in messages (`min`, `default request`).
type Bound<'a> = (Option<&'a (u64, String)>, &'a str);

/// Checks `low <= high`, showing the value of the field at `path`: the high
/// one when `show_high`.
fn at_most(e: &mut Errors, path: &Path, low: Bound<'_>, high: Bound<'_>, show_high: bool) {
    if let ((Some((lo, lo_text)), lo_role), (Some((hi, hi_text)), hi_role)) = (low, high) {
        if lo > hi {
            let shown = if show_high { hi_text } else { lo_text };
            e.invalid(
                path,
                shown,
                &format!("{lo_role} value {lo_text} is greater than {hi_role} value {hi_text}"),
            );
        }
    }
}

/// Resources a ResourceQuota may limit without a domain prefix.
const QUOTA_RESOURCES: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
    "cpu",
    "memory",
    "ephemeral-storage",
    "storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];

const QUOTA_SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
];

fn resource_quota(e: &mut Errors, quota: &ResourceQuota) {
    meta(e, &quota.metadata, NameFormat::Subdomain, true);
    let Some(spec) = quota.spec.as_ref() else {
        return;
    };
    let hard = Path::new("spec.hard");
    for (name, q) in spec.hard.iter().flatten() {
        let p = hard.key(name);
        let standard = QUOTA_RESOURCES.contains(&name.as_str())
            || name.starts_with("count/")
            || name.starts_with("hugepages-")
            || name.starts_with("requests.hugepages-")
            || name.contains('/');
        if !standard {
            e.invalid(&p, name, "must be a standard resource for quota");
        }
        quantity(e, &p, name, q);
    }
    for (i, scope) in spec.scopes.iter().flatten().enumerate() {
        e.one_of(&Path::new("spec.scopes").index(i), scope, QUOTA_SCOPES);
    }
}
