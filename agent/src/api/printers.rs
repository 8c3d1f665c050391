//! kubectl's table columns per kind (kubectl's `printers.go`, which the API
//! server uses for server-side printing): pure functions of an object and the
//! current time. `outpost get` renders its tables with them.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::Value;

/// One column; `wide` ones show only with `-o wide` (kubectl's priority 1).
#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    pub wide: bool,
}

const fn col(name: &'static str) -> Column {
    Column { name, wide: false }
}

const fn wide(name: &'static str) -> Column {
    Column { name, wide: true }
}

/// The columns of a kind and how to fill them.
#[derive(Debug)]
pub struct Printer {
    pub columns: &'static [Column],
    /// One cell per column, wide ones included.
    cells: fn(&Value, Timestamp) -> Vec<String>,
}

impl Printer {
    /// The headers shown, upper-cased as kubectl prints them.
    pub fn headers(&self, wide: bool) -> Vec<&'static str> {
        self.columns
            .iter()
            .filter(|c| wide || !c.wide)
            .map(|c| c.name)
            .collect()
    }

    /// An object's row.
    pub fn row(&self, object: &Value, wide: bool, now: Timestamp) -> Vec<String> {
        let cells = (self.cells)(object, now);
        self.columns
            .iter()
            .zip(cells)
            .filter(|(c, _)| wide || !c.wide)
            .map(|(_, cell)| cell)
            .collect()
    }
}

/// Kinds without columns of their own: the API server's default table.
pub static DEFAULT: Printer = Printer {
    columns: &[col("NAME"), col("CREATED AT")],
    cells: default_cells,
};

pub static POD: Printer = Printer {
    columns: &[
        col("NAME"),
        col("READY"),
        col("STATUS"),
        col("RESTARTS"),
        col("AGE"),
        wide("IP"),
        wide("NODE"),
        wide("NOMINATED NODE"),
        wide("READINESS GATES"),
    ],
    cells: pod_cells,
};

pub static NAMESPACE: Printer = Printer {
    columns: &[col("NAME"), col("STATUS"), col("AGE")],
    cells: namespace_cells,
};

pub static CONFIG_MAP: Printer = Printer {
    columns: &[col("NAME"), col("DATA"), col("AGE")],
    cells: config_map_cells,
};

pub static SECRET: Printer = Printer {
    columns: &[col("NAME"), col("TYPE"), col("DATA"), col("AGE")],
    cells: secret_cells,
};

pub static EVENT: Printer = Printer {
    columns: &[
        col("LAST SEEN"),
        col("TYPE"),
        col("REASON"),
        col("OBJECT"),
        wide("SUBOBJECT"),
        wide("SOURCE"),
        col("MESSAGE"),
        wide("FIRST SEEN"),
        wide("COUNT"),
        wide("NAME"),
    ],
    cells: event_cells,
};

pub static RESOURCE_QUOTA: Printer = Printer {
    columns: &[col("NAME"), col("REQUEST"), col("LIMIT"), col("AGE")],
    cells: resource_quota_cells,
};

pub static SERVICE: Printer = Printer {
    columns: &[
        col("NAME"),
        col("TYPE"),
        col("CLUSTER-IP"),
        col("EXTERNAL-IP"),
        col("PORT(S)"),
        col("AGE"),
        wide("SELECTOR"),
    ],
    cells: service_cells,
};

pub static DEPLOYMENT: Printer = Printer {
    columns: &[
        col("NAME"),
        col("READY"),
        col("UP-TO-DATE"),
        col("AVAILABLE"),
        col("AGE"),
        wide("CONTAINERS"),
        wide("IMAGES"),
        wide("SELECTOR"),
    ],
    cells: deployment_cells,
};

pub static REPLICA_SET: Printer = Printer {
    columns: &[
        col("NAME"),
        col("DESIRED"),
        col("CURRENT"),
        col("READY"),
        col("AGE"),
        wide("CONTAINERS"),
        wide("IMAGES"),
        wide("SELECTOR"),
    ],
    cells: replica_set_cells,
};

pub static DAEMON_SET: Printer = Printer {
    columns: &[
        col("NAME"),
        col("DESIRED"),
        col("CURRENT"),
        col("READY"),
        col("UP-TO-DATE"),
        col("AVAILABLE"),
        col("NODE SELECTOR"),
        col("AGE"),
        wide("CONTAINERS"),
        wide("IMAGES"),
        wide("SELECTOR"),
    ],
    cells: daemon_set_cells,
};

pub static JOB: Printer = Printer {
    columns: &[
        col("NAME"),
        col("STATUS"),
        col("COMPLETIONS"),
        col("DURATION"),
        col("AGE"),
        wide("CONTAINERS"),
        wide("IMAGES"),
        wide("SELECTOR"),
    ],
    cells: job_cells,
};

pub static ENDPOINT_SLICE: Printer = Printer {
    columns: &[
        col("NAME"),
        col("ADDRESSTYPE"),
        col("PORTS"),
        col("ENDPOINTS"),
        col("AGE"),
    ],
    cells: endpoint_slice_cells,
};

// ---- helpers ---------------------------------------------------------------

/// The string at a JSON pointer, or `""`.
pub fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn array<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn object_len(v: &Value, pointer: &str) -> usize {
    v.pointer(pointer)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

/// The time at a JSON pointer.
pub fn time(v: &Value, pointer: &str) -> Option<Timestamp> {
    text(v, pointer).parse().ok()
}

fn name(v: &Value) -> String {
    text(v, "/metadata/name").to_owned()
}

fn age(v: &Value, now: Timestamp) -> String {
    since(time(v, "/metadata/creationTimestamp"), now)
}

/// kubectl's `translateTimestampSince`: `<unknown>` for no time.
pub fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => human_duration(now.as_nanosecond() - t.as_nanosecond()),
        None => "<unknown>".into(),
    }
}

/// apimachinery's `duration.HumanDuration`: `45s`, `3m20s`, `15m`, `5h30m`, `3d4h`, `400d`, `2y3d`.
pub fn human_duration(nanos: i128) -> String {
    const SECOND: i128 = 1_000_000_000;
    let seconds = nanos / SECOND;
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_owned()
    }
}

/// `a=1,b=2` (sorted), or `<none>`: labels.FormatLabels.
pub fn format_labels(labels: Option<&Value>) -> String {
    let pairs: BTreeMap<&str, &str> = labels
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `LabelSelector` (`matchLabels`, `matchExpressions`) as selector text,
/// requirements sorted by key: metav1.FormatLabelSelector.
pub fn format_label_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| s.is_object()) else {
        return "<none>".into();
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = text(e, "/key");
        let mut values: Vec<&str> = array(e, "/values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let req = match text(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".into(),
        };
        reqs.push((key.to_owned(), req));
    }
    if reqs.is_empty() {
        return "<none>".into();
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(",")
}

/// Container names and images, comma-separated: layoutContainerCells.
fn containers_and_images(v: &Value, pointer: &str) -> (String, String) {
    let containers = array(v, pointer);
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    (names.join(","), images.join(","))
}

// ---- kinds -----------------------------------------------------------------

fn default_cells(v: &Value, _now: Timestamp) -> Vec<String> {
    let created = time(v, "/metadata/creationTimestamp")
        .map_or_else(|| "<unknown>".into(), |t| t.to_string());
    vec![name(v), created]
}

fn namespace_cells(v: &Value, now: Timestamp) -> Vec<String> {
    // Every namespace the agent knows is in use unless it is being deleted.
    let phase = match text(v, "/status/phase") {
        "" if v.pointer("/metadata/deletionTimestamp").is_some() => "Terminating",
        "" => "Active",
        phase => phase,
    };
    vec![name(v), phase.to_owned(), age(v, now)]
}

fn config_map_cells(v: &Value, now: Timestamp) -> Vec<String> {
    let data = object_len(v, "/data") + object_len(v, "/binaryData");
    vec![name(v), data.to_string(), age(v, now)]
}

fn secret_cells(v: &Value, now: Timestamp) -> Vec<String> {
    // `stringData` is write-only in Kubernetes (merged into `data`); count it
    // in case the stored object still carries it.
    let mut keys: Vec<&String> = Vec::new();
    for field in ["data", "stringData"] {
        if let Some(m) = v.get(field).and_then(Value::as_object) {
            keys.extend(m.keys());
        }
    }
    keys.sort_unstable();
    keys.dedup();
    let kind = match text(v, "/type") {
        "" => "Opaque",
        t => t,
    };
    vec![
        name(v),
        kind.to_owned(),
        keys.len().to_string(),
        age(v, now),
    ]
}

/// The times and count an event is shown with: (last seen, first seen, count).
pub fn event_times(v: &Value) -> (Option<Timestamp>, Option<Timestamp>, i64) {
    let first = time(v, "/firstTimestamp").or_else(|| time(v, "/eventTime"));
    let mut last = time(v, "/lastTimestamp").or(first);
    let mut count = int(v, "/count");
    if v.get("series").is_some_and(Value::is_object) {
        last = time(v, "/series/lastObservedTime");
        count = int(v, "/series/count");
    } else if count == 0 {
        // Singleton events don't have a count set in the events.k8s.io API.
        count = 1;
    }
    (last, first, count)
}

fn event_cells(v: &Value, now: Timestamp) -> Vec<String> {
    let (last, first, count) = event_times(v);
    let kind = text(v, "/involvedObject/kind").to_ascii_lowercase();
    let target = match text(v, "/involvedObject/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = [
        text(v, "/source/component"),
        text(v, "/reportingComponent"),
        text(v, "/reportingController"),
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .unwrap_or("");
    let instance = [text(v, "/source/host"), text(v, "/reportingInstance")]
        .into_iter()
        .find(|s| !s.is_empty());
    let source = match instance {
        Some(i) => format!("{component}, {i}"),
        None => component.to_owned(),
    };
    vec![
        since(last, now),
        text(v, "/type").to_owned(),
        text(v, "/reason").to_owned(),
        target,
        text(v, "/involvedObject/fieldPath").to_owned(),
        source,
        text(v, "/message").trim().to_owned(),
        since(first, now),
        count.to_string(),
        name(v),
    ]
}

fn resource_quota_cells(v: &Value, now: Timestamp) -> Vec<String> {
    // Status carries what is enforced; before the first status, show the spec.
    let hard = v
        .pointer("/status/hard")
        .or_else(|| v.pointer("/spec/hard"))
        .and_then(Value::as_object);
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    let sorted: BTreeMap<&String, &Value> = hard.map(|m| m.iter().collect()).unwrap_or_default();
    for (resource, hard) in sorted {
        let used = v
            .pointer("/status/used")
            .and_then(|u| u.get(resource.as_str()))
            .map_or("0".into(), quantity);
        let cell = format!("{resource}: {used}/{}", quantity(hard));
        if resource.split('.').next() == Some("limits") && resource.contains('.') {
            limits.push(cell);
        } else {
            requests.push(cell);
        }
    }
    vec![name(v), requests.join(", "), limits.join(", "), age(v, now)]
}

fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn service_cells(v: &Value, now: Timestamp) -> Vec<String> {
    let kind = match text(v, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = array(v, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| text(v, "/spec/clusterIP"));
    let external: Vec<&str> = array(v, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match kind {
        "ClusterIP" | "NodePort" if !external.is_empty() => external.join(","),
        "ClusterIP" | "NodePort" => "<none>".into(),
        "LoadBalancer" => {
            let mut ips: Vec<&str> = array(v, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| match text(i, "/ip") {
                    "" => text(i, "/hostname"),
                    ip => ip,
                })
                .filter(|s| !s.is_empty())
                .collect();
            ips.sort_unstable();
            ips.dedup();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => text(v, "/spec/externalName").to_owned(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = array(v, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = match text(p, "/protocol") {
                "" => "TCP",
                proto => proto,
            };
            match int(p, "/nodePort") {
                0 => format!("{}/{protocol}", int(p, "/port")),
                node => format!("{}:{node}/{protocol}", int(p, "/port")),
            }
        })
        .collect();
    vec![
        name(v),
        kind.to_owned(),
        or_none(cluster_ip),
        external,
        or_none(&ports.join(",")),
        age(v, now),
        format_labels(v.pointer("/spec/selector")),
    ]
}

fn replicas(v: &Value) -> i64 {
    // The API server defaults `spec.replicas` to 1.
    v.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn deployment_cells(v: &Value, now: Timestamp) -> Vec<String> {
    let (containers, images) = containers_and_images(v, "/spec/template/spec/containers");
    vec![
        name(v),
        format!("{}/{}", int(v, "/status/readyReplicas"), replicas(v)),
        int(v, "/status/updatedReplicas").to_string(),
        int(v, "/status/availableReplicas").to_string(),
        age(v, now),
        containers,
        images,
        format_label_selector(v.pointer("/spec/selector")),
    ]
}

fn replica_set_cells(v: &Value, now: Timestamp) -> Vec<String> {
    let (containers, images) = containers_and_images(v, "/spec/template/spec/containers");
    vec![
        name(v),
        replicas(v).to_string(),
        int(v, "/status/replicas").to_string(),
        int(v, "/status/readyReplicas").to_string(),
        age(v, now),
        containers,
        images,
        format_label_selector(v.pointer("/spec/selector")),
    ]
}

fn daemon_set_cells(v: &Value, now: Timestamp) -> Vec<String> {
    let (containers, images) = containers_and_images(v, "/spec/template/spec/containers");
    vec![
        name(v),
        int(v, "/status/desiredNumberScheduled").to_string(),
        int(v, "/status/currentNumberScheduled").to_string(),
        int(v, "/status/numberReady").to_string(),
        int(v, "/status/updatedNumberScheduled").to_string(),
        int(v, "/status/numberAvailable").to_string(),
        format_labels(v.pointer("/spec/template/spec/nodeSelector")),
        age(v, now),
        containers,
        images,
        format_label_selector(v.pointer("/spec/selector")),
    ]
}

fn job_condition(v: &Value, kind: &str) -> bool {
    array(v, "/status/conditions")
        .iter()
        .find(|c| text(c, "/type") == kind)
        .is_some_and(|c| text(c, "/status") == "True")
}

fn job_cells(v: &Value, now: Timestamp) -> Vec<String> {
    let succeeded = int(v, "/status/succeeded");
    let completions = match v.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(v, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        time(v, "/status/startTime"),
        time(v, "/status/completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.as_nanosecond() - start.as_nanosecond()),
        (Some(start), Some(end)) => human_duration(end.as_nanosecond() - start.as_nanosecond()),
    };
    let status = if job_condition(v, "Complete") {
        "Complete"
    } else if job_condition(v, "Failed") {
        "Failed"
    } else if v.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if job_condition(v, "Suspended") {
        "Suspended"
    } else if job_condition(v, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (containers, images) = containers_and_images(v, "/spec/template/spec/containers");
    vec![
        name(v),
        status.into(),
        completions,
        duration,
        age(v, now),
        containers,
        images,
        format_label_selector(v.pointer("/spec/selector")),
    ]
}

/// Up to three items, then `+ N more...`; `<unset>` for none.
fn list_with_more(items: Vec<String>) -> String {
    const MAX: usize = 3;
    if items.len() > MAX {
        return format!("{} + {} more...", items[..MAX].join(","), items.len() - MAX);
    }
    if items.is_empty() {
        return "<unset>".into();
    }
    items.join(",")
}

fn endpoint_slice_cells(v: &Value, now: Timestamp) -> Vec<String> {
    let ports = array(v, "/ports")
        .iter()
        .map(|p| match p.get("port").and_then(Value::as_i64) {
            Some(port) => port.to_string(),
            None => match text(p, "/name") {
                "" => "*".into(),
                n => n.to_owned(),
            },
        })
        .collect();
    let addresses = array(v, "/endpoints")
        .iter()
        .flat_map(|e| {
            array(e, "/addresses")
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    vec![
        name(v),
        text(v, "/addressType").to_owned(),
        list_with_more(ports),
        list_with_more(addresses),
        age(v, now),
    ]
}

// ---- pods ------------------------------------------------------------------

/// What kubectl shows for a pod: READY, STATUS and RESTARTS (with when the
/// last restart happened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    pub ready: String,
    pub status: String,
    pub restarts: i64,
    pub last_restart: Option<Timestamp>,
}

impl PodSummary {
    /// The RESTARTS cell: `3`, or `3 (5m ago)` (kubectl 1.26+).
    pub fn restarts_cell(&self, now: Timestamp) -> String {
        match self.last_restart {
            Some(t) if self.restarts != 0 => {
                format!("{} ({} ago)", self.restarts, since(Some(t), now))
            }
            _ => self.restarts.to_string(),
        }
    }
}

fn has_condition(v: &Value, kind: &str) -> bool {
    array(v, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == kind && text(c, "/status") == "True")
}

/// kubectl's `printPod` logic for READY, STATUS and RESTARTS.
pub fn pod_summary(pod: &Value) -> PodSummary {
    let phase = text(pod, "/status/phase");
    let mut reason = match text(pod, "/status/reason") {
        "" => phase.to_owned(),
        r => r.to_owned(),
    };
    if array(pod, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == "PodScheduled" && text(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let init_specs = array(pod, "/spec/initContainers");
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| text(c, "/name") == name && text(c, "/restartPolicy") == "Always")
    };
    let mut total = array(pod, "/spec/containers").len();
    total += init_specs
        .iter()
        .filter(|c| text(c, "/restartPolicy") == "Always")
        .count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;
    let later = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };

    let mut initializing = false;
    for (i, status) in array(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let count = int(status, "/restartCount");
        let finished = time(status, "/lastState/terminated/finishedAt");
        restarts += count;
        last_restart = later(last_restart, finished);
        let sidecar = restartable(text(status, "/name"));
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let terminated = status.pointer("/state/terminated");
        let waiting_reason = text(status, "/state/waiting/reason");
        if terminated.is_some_and(|t| int(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && status.get("started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            match text(t, "/reason") {
                "" if int(t, "/signal") != 0 => format!("Init:Signal:{}", int(t, "/signal")),
                "" => format!("Init:ExitCode:{}", int(t, "/exitCode")),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || has_condition(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in array(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(status, "/restartCount");
            last_restart = later(
                last_restart,
                time(status, "/lastState/terminated/finishedAt"),
            );
            let waiting = text(status, "/state/waiting/reason");
            let terminated = status.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_owned();
            } else if let Some(t) = terminated {
                reason = match text(t, "/reason") {
                    "" if int(t, "/signal") != 0 => format!("Signal:{}", int(t, "/signal")),
                    "" => format!("ExitCode:{}", int(t, "/exitCode")),
                    r => r.to_owned(),
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && status.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        // Back to "Running" while at least one container still runs.
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        if text(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    PodSummary {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
        last_restart,
    }
}

/// The pod's first IP.
pub fn pod_ip(pod: &Value) -> &str {
    array(pod, "/status/podIPs")
        .first()
        .map(|ip| text(ip, "/ip"))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| text(pod, "/status/podIP"))
}

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<String> {
    let summary = pod_summary(pod);
    let gates = array(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".into()
    } else {
        let met = gates
            .iter()
            .filter(|g| {
                array(pod, "/status/conditions")
                    .iter()
                    .find(|c| text(c, "/type") == text(g, "/conditionType"))
                    .is_some_and(|c| text(c, "/status") == "True")
            })
            .count();
        format!("{met}/{}", gates.len())
    };
    vec![
        name(pod),
        summary.ready.clone(),
        summary.status.clone(),
        summary.restarts_cell(now),
        age(pod, now),
        or_none(pod_ip(pod)),
        or_none(text(pod, "/spec/nodeName")),
        or_none(text(pod, "/status/nominatedNodeName")),
        readiness_gates,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().expect("time")
    }

    #[test]
    fn durations_read_like_kubectl() {
        fn check(secs: i128, expect: &str) {
            assert_eq!(human_duration(secs * 1_000_000_000), expect, "{secs}s");
        }
        check(-5, "<invalid>");
        check(-1, "0s");
        check(0, "0s");
        check(119, "119s");
        check(120, "2m");
        check(150, "2m30s");
        check(599, "9m59s");
        check(600, "10m");
        check(3 * 3600 - 1, "179m");
        check(3 * 3600, "3h");
        check(5 * 3600 + 30 * 60, "5h30m");
        check(8 * 3600, "8h");
        check(47 * 3600, "47h");
        check(48 * 3600, "2d");
        check(3 * 86400 + 4 * 3600, "3d4h");
        check(8 * 86400, "8d");
        check(400 * 86400, "400d");
        check(2 * 365 * 86400 + 3 * 86400, "2y3d");
        check(9 * 365 * 86400, "9y");
        assert_eq!(since(None, now()), "<unknown>");
    }

    /// A pod from its status parts; times are minutes before `now()`.
    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"}, "spec": spec, "status": status})
    }

    fn running(ready: bool, restarts: i64) -> Value {
        json!({"name": "c", "ready": ready, "restartCount": restarts, "state": {"running": {"startedAt": "2024-05-01T11:00:00Z"}}})
    }

    fn two_containers() -> Value {
        json!({"containers": [{"name": "a"}, {"name": "b"}]})
    }

    /// (READY, STATUS, RESTARTS) as kubectl prints them: cases from kubectl's
    /// `TestPrintPod`/`TestPrintPodWithRestartableInitContainer`.
    #[test]
    fn pod_ready_status_restarts() {
        fn check(pod: Value, expect: (&str, &str, &str)) {
            let s = pod_summary(&pod);
            assert_eq!(
                (
                    s.ready.as_str(),
                    s.status.as_str(),
                    s.restarts_cell(now()).as_str()
                ),
                expect,
                "{pod}"
            );
        }
        // Waiting reason wins.
        check(
            pod(
                two_containers(),
                json!({"phase": "podPhase", "containerStatuses": [
                    running(true, 6),
                    {"name": "b", "restartCount": 3, "state": {"waiting": {"reason": "ContainerWaitingReason"}}},
                ]}),
            ),
            ("1/2", "ContainerWaitingReason", "9"),
        );
        // Terminated reason.
        check(
            pod(
                two_containers(),
                json!({"phase": "podPhase", "containerStatuses": [
                    running(true, 3),
                    {"name": "b", "restartCount": 3, "state": {"terminated": {"reason": "ContainerTerminatedReason"}}},
                ]}),
            ),
            ("1/2", "ContainerTerminatedReason", "6"),
        );
        // Pod reason overrides phase; a ready running pair counts.
        check(
            pod(
                two_containers(),
                json!({"phase": "podPhase", "reason": "PodReason", "containerStatuses": [running(true, 0), running(true, 0)]}),
            ),
            ("2/2", "PodReason", "0"),
        );
        // Terminated without reason: signal, then exit code.
        check(
            pod(
                two_containers(),
                json!({"phase": "podPhase", "containerStatuses": [
                    {"name": "a", "state": {"terminated": {"exitCode": 1, "signal": 9}}},
                    running(true, 0),
                ]}),
            ),
            ("1/2", "Signal:9", "0"),
        );
        check(
            pod(
                two_containers(),
                json!({"phase": "podPhase", "containerStatuses": [
                    {"name": "a", "state": {"terminated": {"exitCode": 2}}},
                    running(false, 0),
                ]}),
            ),
            ("0/2", "ExitCode:2", "0"),
        );
        // Restarts with the time of the last one.
        check(
            pod(
                json!({"containers": [{"name": "c"}]}),
                json!({"phase": "Running", "containerStatuses": [{
                    "name": "c", "ready": false, "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:55:00Z"}},
                }]}),
            ),
            ("0/1", "CrashLoopBackOff", "5 (5m ago)"),
        );
        // Completed with one still running: Running if ready, else NotReady.
        let completed_and_running = |conditions: Value| {
            pod(
                two_containers(),
                json!({"phase": "Running", "conditions": conditions, "containerStatuses": [
                    {"name": "a", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
                    running(true, 0),
                ]}),
            )
        };
        check(
            completed_and_running(json!([{"type": "Ready", "status": "True"}])),
            ("1/2", "Running", "0"),
        );
        check(completed_and_running(json!([])), ("1/2", "NotReady", "0"));
        // Succeeded pod.
        check(
            pod(
                json!({"containers": [{"name": "c"}]}),
                json!({"phase": "Succeeded", "containerStatuses": [
                    {"name": "c", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
                ]}),
            ),
            ("0/1", "Completed", "0"),
        );
        // Pending pod without statuses: its phase.
        check(
            pod(
                json!({"containers": [{"name": "c"}]}),
                json!({"phase": "Pending"}),
            ),
            ("0/1", "Pending", "0"),
        );
    }

    #[test]
    fn pod_init_containers() {
        fn check(pod: Value, expect: (&str, &str, &str)) {
            let s = pod_summary(&pod);
            assert_eq!(
                (
                    s.ready.as_str(),
                    s.status.as_str(),
                    s.restarts_cell(now()).as_str()
                ),
                expect,
                "{pod}"
            );
        }
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "c"}]});
        let waiting_main =
            json!([{"name": "c", "state": {"waiting": {"reason": "PodInitializing"}}}]);
        // First init done, second running: Init:1/2.
        check(
            pod(
                spec.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                    {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "i2", "restartCount": 2, "state": {"running": {}}},
                ], "containerStatuses": waiting_main}),
            ),
            ("0/1", "Init:1/2", "2"),
        );
        // A failed init container.
        check(
            pod(
                spec.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                    {"name": "i1", "restartCount": 3, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}},
                    {"name": "i2", "state": {"waiting": {"reason": "PodInitializing"}}},
                ]}),
            ),
            ("0/1", "Init:Error", "3"),
        );
        check(
            pod(
                spec.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                    {"name": "i1", "state": {"terminated": {"exitCode": 3}}},
                ]}),
            ),
            ("0/1", "Init:ExitCode:3", "0"),
        );
        // Waiting with a reason other than PodInitializing.
        check(
            pod(
                spec.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                    {"name": "i1", "state": {"waiting": {"reason": "ImagePullBackOff"}}},
                ]}),
            ),
            ("0/1", "Init:ImagePullBackOff", "0"),
        );
        check(
            pod(
                spec,
                json!({"phase": "Pending", "initContainerStatuses": [
                    {"name": "i1", "state": {"waiting": {"reason": "PodInitializing"}}},
                ]}),
            ),
            ("0/1", "Init:0/2", "0"),
        );
        // A restartable (sidecar) init container counts toward READY.
        let sidecar = json!({"initContainers": [{"name": "s", "restartPolicy": "Always"}], "containers": [{"name": "c"}]});
        check(
            pod(
                sidecar,
                json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                    "initContainerStatuses": [{"name": "s", "started": true, "ready": true, "restartCount": 1,
                        "lastState": {"terminated": {"finishedAt": "2024-05-01T11:58:00Z"}}, "state": {"running": {}}}],
                    "containerStatuses": [running(true, 0)]}),
            ),
            ("2/2", "Running", "1 (2m ago)"),
        );
    }

    #[test]
    fn pod_terminating_and_wide_columns() {
        let mut p = pod(
            json!({"containers": [{"name": "c"}], "nodeName": "edge-1"}),
            json!({"phase": "Running", "podIPs": [{"ip": "10.42.0.7"}], "containerStatuses": [running(true, 0)]}),
        );
        assert_eq!(
            POD.row(&p, true, now()),
            [
                "web",
                "1/1",
                "Running",
                "0",
                "60m",
                "10.42.0.7",
                "edge-1",
                "<none>",
                "<none>"
            ]
        );
        assert_eq!(
            POD.headers(false),
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        );
        p["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
        assert_eq!(pod_summary(&p).status, "Terminating");
        // A finished pod being deleted keeps its phase.
        p["status"]["phase"] = json!("Succeeded");
        assert_eq!(pod_summary(&p).status, "Succeeded");
    }

    #[test]
    fn other_kinds_rows() {
        let meta = json!({"name": "x", "creationTimestamp": "2024-05-01T11:58:00Z"});
        let cm = json!({"metadata": meta, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}});
        assert_eq!(CONFIG_MAP.row(&cm, false, now()), ["x", "3", "2m"]);
        let secret = json!({"metadata": meta, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            SECRET.row(&secret, false, now()),
            ["x", "kubernetes.io/tls", "2", "2m"]
        );
        let ns = json!({"metadata": meta, "status": {"phase": "Active"}});
        assert_eq!(NAMESPACE.row(&ns, false, now()), ["x", "Active", "2m"]);
        let event = json!({
            "metadata": {"name": "web.17a"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"},
            "reason": "BackOff", "type": "Warning", "message": "Back-off restarting failed container\n",
            "count": 4, "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:59:30Z",
            "source": {"component": "outpost", "host": "edge-1"},
        });
        assert_eq!(
            EVENT.headers(false),
            ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        );
        assert_eq!(
            EVENT.row(&event, false, now()),
            [
                "30s",
                "Warning",
                "BackOff",
                "pod/web",
                "Back-off restarting failed container"
            ]
        );
        assert_eq!(
            EVENT.row(&event, true, now()),
            [
                "30s",
                "Warning",
                "BackOff",
                "pod/web",
                "spec.containers{c}",
                "outpost, edge-1",
                "Back-off restarting failed container",
                "10m",
                "4",
                "web.17a"
            ]
        );
        let quota = json!({"metadata": meta, "status": {
            "hard": {"requests.cpu": "1", "limits.memory": "1Gi", "pods": "10"},
            "used": {"requests.cpu": "500m", "pods": "2"},
        }});
        assert_eq!(
            RESOURCE_QUOTA.row(&quota, false, now()),
            [
                "x",
                "pods: 2/10, requests.cpu: 500m/1",
                "limits.memory: 0/1Gi",
                "2m"
            ]
        );
        let limits = json!({"metadata": meta});
        assert_eq!(
            DEFAULT.row(&limits, false, now()),
            ["x", "2024-05-01T11:58:00Z"]
        );
        let svc = json!({"metadata": meta, "spec": {"type": "NodePort", "clusterIP": "10.43.0.12",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web"}}});
        assert_eq!(
            SERVICE.row(&svc, true, now()),
            [
                "x",
                "NodePort",
                "10.43.0.12",
                "<none>",
                "80:30080/TCP,53/UDP",
                "2m",
                "app=web"
            ]
        );
        let deploy = json!({"metadata": meta, "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]},
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            DEPLOYMENT.row(&deploy, true, now()),
            [
                "x",
                "2/3",
                "3",
                "2",
                "2m",
                "web,log",
                "nginx,busybox",
                "app=web,tier in (a,b)"
            ]
        );
        let job = json!({"metadata": meta, "spec": {"completions": 2},
            "status": {"succeeded": 2, "startTime": "2024-05-01T11:58:00Z", "completionTime": "2024-05-01T11:58:42Z",
                "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(
            JOB.row(&job, false, now()),
            ["x", "Complete", "2/2", "42s", "2m"]
        );
        let slice = json!({"metadata": meta, "addressType": "IPv4", "ports": [{"port": 80}],
            "endpoints": [{"addresses": ["10.42.0.1"]}, {"addresses": ["10.42.0.2"]}, {"addresses": ["10.42.0.3"]}, {"addresses": ["10.42.0.4"]}]});
        assert_eq!(
            ENDPOINT_SLICE.row(&slice, false, now()),
            [
                "x",
                "IPv4",
                "80",
                "10.42.0.1,10.42.0.2,10.42.0.3 + 1 more...",
                "2m"
            ]
        );
    }
}
