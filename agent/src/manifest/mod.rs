//! Manifests: a bundle of YAML/JSON files (what one source delivers) turned
//! into validated, defaulted Kubernetes objects, as the API server would
//! store them after `kubectl apply`. Pure: no I/O, no clock.
//!
//! A bundle is all or nothing: [`parse_bundle`] returns every object, or every
//! problem of the bundle (file, document, object, field), so the agent can
//! reject it as a whole and keep running its last-known-good state. Kinds
//! outpost does not run are kept as [`Object::Unsupported`], never an error.
//!
//! Per document: YAML/JSON to `serde_json::Value` (`decode`), `kind: List`
//! flattened, the kind looked up in one table (`decode_known`), the value
//! decoded into its k8s-openapi type with field paths on type errors, unknown
//! fields refused (`strict`), API-server defaults applied (`defaults`), then
//! the API server's validation (`validate`). `admission` holds what the pod
//! worker applies later: LimitRange defaults/limits and ResourceQuota.

mod admission;
mod decode;
mod defaults;
mod strict;
mod validate;

#[cfg(test)]
mod tests;

use std::any::TypeId;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, Pod, ResourceQuota, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::{Metadata, NamespaceResourceScope, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use admission::{apply_limit_ranges, check_quota};
pub(crate) use validate::names::{label_value, qualified_name};

use crate::state::ObjectKey;
use validate::FieldError;

/// One file of a bundle: its name (shown in problems; `.json` selects the
/// JSON reader, anything else is read as YAML) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    pub name: String,
    pub content: Vec<u8>,
}

/// A validated, defaulted object of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Namespace(Box<Namespace>),
    Pod(Box<Pod>),
    ConfigMap(Box<ConfigMap>),
    Secret(Box<Secret>),
    LimitRange(Box<LimitRange>),
    ResourceQuota(Box<ResourceQuota>),
    Service(Box<Service>),
    Deployment(Box<Deployment>),
    Job(Box<Job>),
    DaemonSet(Box<DaemonSet>),
    /// Any other apiVersion/kind: kept as written, reported in an event.
    Unsupported(Box<Unsupported>),
}

/// An object of a kind outpost does not run, with the identity it was given.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported {
    pub api_version: String,
    pub kind: String,
    /// `None` for kinds known to be cluster-scoped, else `default` when unset.
    pub namespace: Option<String>,
    pub name: String,
    /// The object as written (its namespace defaulted).
    pub raw: Value,
}

/// An object and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub file: String,
    /// 1-based within the file; items of a `List` share the List's document.
    pub document: usize,
    pub object: Object,
}

/// Why a bundle was rejected: all its problems, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleError {
    pub problems: Vec<Problem>,
}

/// One thing wrong with a bundle, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based within the file; 0 when the file as a whole is unreadable.
    pub document: usize,
    /// The object, when its kind and name could be read.
    pub object: Option<ObjectKey>,
    /// The field, rendered as Kubernetes does: `spec.containers[0].image`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    /// `manifests/web.yaml (document 2): Pod default/web: spec.containers[0].image: required value`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.document > 0 {
            write!(f, " (document {})", self.document)?;
        }
        if let Some(object) = &self.object {
            write!(f, ": {object}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Problem {}

impl fmt::Display for BundleError {
    /// Every problem, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BundleError {}

/// Runs `$typed` with `$o` bound to the boxed k8s-openapi object of any typed
/// variant, or `$unsupported` with `$u` bound to the [`Unsupported`] one.
macro_rules! for_object {
    ($object:expr, $o:ident => $typed:expr, $u:ident => $unsupported:expr) => {
        match $object {
            Object::Namespace($o) => $typed,
            Object::Pod($o) => $typed,
            Object::ConfigMap($o) => $typed,
            Object::Secret($o) => $typed,
            Object::LimitRange($o) => $typed,
            Object::ResourceQuota($o) => $typed,
            Object::Service($o) => $typed,
            Object::Deployment($o) => $typed,
            Object::Job($o) => $typed,
            Object::DaemonSet($o) => $typed,
            Object::Unsupported($u) => $unsupported,
        }
    };
}

impl Object {
    /// Identity: kind, namespace (none for cluster-scoped kinds), name.
    pub fn key(&self) -> ObjectKey {
        for_object!(self, o => typed_key(&**o), u => ObjectKey {
            kind: u.kind.clone(),
            namespace: u.namespace.clone(),
            name: u.name.clone(),
        })
    }

    /// `Pod`, `ConfigMap`, … or the unsupported kind as written.
    pub fn kind(&self) -> &str {
        for_object!(self, o => kind_of(&**o), u => u.kind.as_str())
    }

    /// The object as Kubernetes JSON, `apiVersion` and `kind` set.
    pub fn to_json(&self) -> Value {
        for_object!(
            self,
            o => serde_json::to_value(&**o).expect("k8s-openapi objects serialize to JSON"),
            u => u.raw.clone()
        )
    }
}

fn kind_of<T: Resource>(_: &T) -> &'static str {
    T::KIND
}

fn is_namespaced<T: Resource>() -> bool
where
    T::Scope: 'static,
{
    TypeId::of::<T::Scope>() == TypeId::of::<NamespaceResourceScope>()
}

fn typed_key<T>(object: &T) -> ObjectKey
where
    T: Resource + Metadata<Ty = ObjectMeta>,
    T::Scope: 'static,
{
    let meta = object.metadata();
    let namespace = is_namespaced::<T>().then(|| {
        meta.namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
    });
    ObjectKey {
        kind: T::KIND.to_owned(),
        namespace,
        name: meta.name.clone().unwrap_or_default(),
    }
}

/// An int, or a percent of `total` rounded up or down (apimachinery
/// `GetScaledValueFromIntOrPercent`).
pub fn int_or_percent(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent = s
                .strip_suffix('%')
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| {
                    "a valid percent string must be a numeric string followed by an ending '%'"
                        .to_owned()
                })?;
            let scaled = percent * i64::from(total);
            let n = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(n).map_err(|_| format!("{s} of {total} is out of range"))
        }
    }
}

/// Whether `labels` satisfy a label selector (apimachinery
/// `LabelSelectorAsSelector`). An empty selector matches everything.
pub fn selector_matches(
    selector: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    let equal = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| get(k) == Some(v));
    equal
        && selector.match_expressions.iter().flatten().all(|r| {
            let value = get(&r.key);
            let listed = |v: &String| r.values.iter().flatten().any(|x| x == v);
            match r.operator.as_str() {
                "In" => value.is_some_and(listed),
                "NotIn" => !value.is_some_and(listed),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Where namespaced objects without `metadata.namespace` go.
const DEFAULT_NAMESPACE: &str = "default";

/// The kinds outpost runs, one row each, by apiVersion and kind. A new kind
/// is a variant of [`Object`] and of `for_object!`, a row here, and its arms
/// in `defaults::apply` and `validate::object`. Without a row a kind is
/// [`Object::Unsupported`].
fn decode_known(api_version: &str, kind: &str, value: &Value) -> Option<Decoded> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => typed(value, Object::Namespace),
        ("v1", "Pod") => typed(value, Object::Pod),
        ("v1", "ConfigMap") => typed(value, Object::ConfigMap),
        ("v1", "Secret") => typed(value, Object::Secret),
        ("v1", "LimitRange") => typed(value, Object::LimitRange),
        ("v1", "ResourceQuota") => typed(value, Object::ResourceQuota),
        ("v1", "Service") => typed(value, Object::Service),
        ("apps/v1", "Deployment") => typed(value, Object::Deployment),
        ("batch/v1", "Job") => typed(value, Object::Job),
        ("apps/v1", "DaemonSet") => typed(value, Object::DaemonSet),
        _ => return None,
    })
}

/// The pod spec inside an object of a kind that has one (for YAML 1.1 file
/// modes, see `decode::octal_file_modes`).
fn pod_spec_mut<'a>(api_version: &str, kind: &str, value: &'a mut Value) -> Option<&'a mut Value> {
    match (api_version, kind) {
        ("v1", "Pod") => value.get_mut("spec"),
        ("apps/v1", "Deployment") | ("batch/v1", "Job") | ("apps/v1", "DaemonSet") => value
            .get_mut("spec")
            .and_then(|s| s.get_mut("template"))
            .and_then(|t| t.get_mut("spec")),
        _ => None,
    }
}

/// Kinds known to be cluster-scoped (by kind, whatever the group): their
/// objects get no namespace. Every other kind is namespaced.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
    "RuntimeClass",
    "IngressClass",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "APIService",
    "CertificateSigningRequest",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "FlowSchema",
    "PriorityLevelConfiguration",
];

fn cluster_scoped(kind: &str) -> bool {
    CLUSTER_SCOPED.contains(&kind)
}

/// A typed object and its unknown fields (reported, but validation goes on so
/// the user sees everything at once), or the type error that stopped decoding.
type Decoded = Result<(Object, Vec<FieldError>), FieldError>;

fn typed<T>(value: &Value, wrap: fn(Box<T>) -> Object) -> Decoded
where
    T: DeserializeOwned + Serialize,
{
    let object: T = serde_path_to_error::deserialize(value).map_err(type_error)?;
    let again = serde_json::to_value(&object).map_err(|e| FieldError::new(None, e.to_string()))?;
    let unknown = strict::unknown_fields(value, &again)
        .into_iter()
        .map(|field| FieldError::new(Some(field), "unknown field".to_owned()))
        .collect();
    Ok((wrap(Box::new(object)), unknown))
}

/// A decoding error at its field: `spec.containers[0].ports[0].containerPort:
/// invalid type: string "80", expected i32`.
fn type_error(e: serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    use serde_path_to_error::Segment;
    let mut field = String::new();
    for segment in e.path().iter() {
        match segment {
            Segment::Seq { index } => field.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key);
            }
            Segment::Unknown => field.push_str(".?"),
        }
    }
    let mut message = e.inner().to_string();
    let scalar = [
        "invalid type: integer",
        "invalid type: boolean",
        "invalid type: floating point",
    ];
    if message.ends_with("expected a string") && scalar.iter().any(|s| message.starts_with(s)) {
        message.push_str(" (quote the value to make it a string)");
    }
    FieldError::new((!field.is_empty()).then_some(field), message)
}

/// Parses, defaults and validates a bundle: every object, or every problem.
pub fn parse_bundle(files: &[BundleFile]) -> Result<Vec<Located>, BundleError> {
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    let mut seen: HashMap<ObjectKey, (String, usize)> = HashMap::new();
    for file in files {
        let (documents, errors) = decode::documents(&file.name, &file.content);
        let mut file_problems: Vec<Problem> = errors
            .into_iter()
            .map(|e| Problem {
                file: file.name.clone(),
                document: e.document,
                object: None,
                field: None,
                message: e.message,
            })
            .collect();
        let yaml = !decode::is_json(&file.name);
        for document in documents {
            let at = At {
                file: &file.name,
                document: document.index,
            };
            for (item, value) in flatten(document.value, &at, &mut file_problems) {
                let (key, result) = match object(value, yaml) {
                    Ok(object) => (Some(object.key()), Ok(object)),
                    Err((key, errors)) => (key, Err(errors)),
                };
                // Invalid objects are checked too: the user fixes both at once.
                if let Some(key) = key.as_ref() {
                    if let Some((file, document)) = seen.get(key) {
                        let message = format!(
                            "duplicate object: already defined in {file} (document {document})"
                        );
                        file_problems.push(at.problem(
                            Some(key.clone()),
                            item,
                            FieldError::new(None, message),
                        ));
                    } else {
                        seen.insert(key.clone(), (file.name.clone(), document.index));
                    }
                }
                match result {
                    Ok(object) => objects.push(Located {
                        file: file.name.clone(),
                        document: document.index,
                        object,
                    }),
                    Err(errors) => file_problems
                        .extend(errors.into_iter().map(|e| at.problem(key.clone(), item, e))),
                }
            }
        }
        // Decode errors were collected first; put them at their document.
        file_problems.sort_by_key(|p| p.document);
        problems.extend(file_problems);
    }
    if problems.is_empty() {
        Ok(objects)
    } else {
        Err(BundleError { problems })
    }
}

/// A document of a file, to name in problems.
struct At<'a> {
    file: &'a str,
    document: usize,
}

impl At<'_> {
    fn problem(&self, object: Option<ObjectKey>, item: Option<usize>, e: FieldError) -> Problem {
        let mut message = e.message;
        if let Some(item) = item {
            message.push_str(&format!(" (in List items[{item}])"));
        }
        Problem {
            file: self.file.to_owned(),
            document: self.document,
            object,
            field: e.field,
            message,
        }
    }
}

/// The objects of a document: itself, or the items of a `kind: List`
/// (with their index). Anything else is a problem.
fn flatten(value: Value, at: &At<'_>, problems: &mut Vec<Problem>) -> Vec<(Option<usize>, Value)> {
    let is_list = value.get("kind").and_then(Value::as_str) == Some("List");
    match value {
        Value::Object(mut map) if is_list => match map.remove("items") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut objects = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    if item.get("kind").and_then(Value::as_str) == Some("List") {
                        let e = FieldError::new(
                            None,
                            "a List inside a List is not supported".to_owned(),
                        );
                        problems.push(at.problem(None, Some(i), e));
                    } else if item.is_object() {
                        objects.push((Some(i), item));
                    } else {
                        let e = FieldError::new(None, not_an_object(&item));
                        problems.push(at.problem(None, Some(i), e));
                    }
                }
                objects
            }
            Some(other) => {
                let e = FieldError::new(
                    Some("items".to_owned()),
                    format!("must be a list, not {}", describe(&other)),
                );
                problems.push(at.problem(None, None, e));
                Vec::new()
            }
        },
        Value::Object(_) => vec![(None, value)],
        other => {
            problems.push(at.problem(None, None, FieldError::new(None, not_an_object(&other))));
            Vec::new()
        }
    }
}

fn not_an_object(value: &Value) -> String {
    format!(
        "expected a Kubernetes object (a map with apiVersion, kind and metadata), found {}",
        describe(value)
    )
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// One object: decoded, defaulted and validated; or its problems, with its
/// identity when that could be read.
fn object(mut value: Value, yaml: bool) -> Result<Object, (Option<ObjectKey>, Vec<FieldError>)> {
    let api_version = required_string(&value, "apiVersion");
    let kind = required_string(&value, "kind");
    let (api_version, kind) = match (api_version, kind) {
        (Ok(a), Ok(k)) => (a, k),
        (a, k) => {
            let key = k.as_ref().ok().and_then(|k| raw_key(&value, k));
            return Err((key, a.err().into_iter().chain(k.err()).collect()));
        }
    };
    if yaml {
        if let Some(pod_spec) = pod_spec_mut(&api_version, &kind, &mut value) {
            decode::octal_file_modes(pod_spec);
        }
    }
    let (mut object, mut errors) = match decode_known(&api_version, &kind, &value) {
        Some(Ok(decoded)) => decoded,
        Some(Err(e)) => return Err((raw_key(&value, &kind), vec![redact_secret(&kind, e)])),
        None => match unsupported(api_version, kind.clone(), value) {
            Ok(object) => (object, Vec::new()),
            Err((raw, errors)) => return Err((raw_key(&raw, &kind), errors)),
        },
    };
    defaults::apply(&mut object);
    errors.extend(validate::object(&object));
    if errors.is_empty() {
        Ok(object)
    } else {
        let key = object.key();
        let key = (!key.name.is_empty()).then_some(key);
        Err((key, errors))
    }
}

/// serde names the value that has the wrong type (`integer `1234``): not for
/// a Secret's data, which ends up in events and logs.
fn redact_secret(kind: &str, mut e: FieldError) -> FieldError {
    let in_data = e
        .field
        .as_deref()
        .is_some_and(|f| f.starts_with("data.") || f.starts_with("stringData."));
    if kind == "Secret" && in_data && e.message.starts_with("invalid type:") {
        e.message =
            "invalid type: expected a string (the value is not shown: it is secret)".to_owned();
    }
    e
}

fn required_string(value: &Value, field: &str) -> Result<String, FieldError> {
    match value.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(FieldError::new(
            Some(field.to_owned()),
            "required value".to_owned(),
        )),
        Some(other) => Err(FieldError::new(
            Some(field.to_owned()),
            format!("must be a string, not {}", describe(other)),
        )),
    }
}

/// The identity an object claims, before it could be decoded.
fn raw_key(value: &Value, kind: &str) -> Option<ObjectKey> {
    let name = value
        .pointer("/metadata/name")?
        .as_str()
        .filter(|n| !n.is_empty())?;
    let namespace = (!cluster_scoped(kind)).then(|| {
        let ns = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        ns.unwrap_or(DEFAULT_NAMESPACE).to_owned()
    });
    Some(ObjectKey {
        kind: kind.to_owned(),
        namespace,
        name: name.to_owned(),
    })
}

/// An object of a kind outpost does not run: only its identity is checked.
fn unsupported(
    api_version: String,
    kind: String,
    mut raw: Value,
) -> Result<Object, (Value, Vec<FieldError>)> {
    let mut errors = Vec::new();
    let field = |f: &str| Some(f.to_owned());
    let meta = match raw.get("metadata") {
        Some(Value::Object(meta)) => Some(meta),
        None | Some(Value::Null) => None,
        Some(other) => {
            errors.push(FieldError::new(
                field("metadata"),
                format!("must be a map, not {}", describe(other)),
            ));
            None
        }
    };
    let name = match meta.and_then(|m| m.get("name")) {
        Some(Value::String(name)) if !name.is_empty() => {
            for message in validate::names::path_segment(name) {
                errors.push(FieldError::invalid(field("metadata.name"), name, &message));
            }
            name.clone()
        }
        None | Some(Value::Null) | Some(Value::String(_)) => {
            errors.push(FieldError::new(
                field("metadata.name"),
                "required value: name is required".to_owned(),
            ));
            String::new()
        }
        Some(other) => {
            errors.push(FieldError::new(
                field("metadata.name"),
                format!("must be a string, not {}", describe(other)),
            ));
            String::new()
        }
    };
    let namespace = match meta.and_then(|m| m.get("namespace")) {
        _ if cluster_scoped(&kind) => None,
        Some(Value::String(ns)) if !ns.is_empty() => {
            for message in validate::names::dns1123_label(ns) {
                errors.push(FieldError::invalid(
                    field("metadata.namespace"),
                    ns,
                    &message,
                ));
            }
            Some(ns.clone())
        }
        None | Some(Value::Null) | Some(Value::String(_)) => Some(DEFAULT_NAMESPACE.to_owned()),
        Some(other) => {
            errors.push(FieldError::new(
                field("metadata.namespace"),
                format!("must be a string, not {}", describe(other)),
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err((raw, errors));
    }
    if let (Some(ns), Some(Value::Object(meta))) = (&namespace, raw.get_mut("metadata")) {
        meta.insert("namespace".to_owned(), Value::String(ns.clone()));
    }
    Ok(Object::Unsupported(Box::new(Unsupported {
        api_version,
        kind,
        namespace,
        name,
        raw,
    })))
}
