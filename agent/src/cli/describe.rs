//! `outpost describe KIND NAME`: kubectl's describe, read through the agent's
//! API: sections per kind (pods in full), then the object's events.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use jiff::Timestamp;
use serde_json::Value;

use super::client::{report, write_stdout, ApiArgs, Client, StatusError};
use super::get::{list_path, resolve, to_yaml};
use crate::api::printers::{event_times, pod_ip, since, text, time};
use crate::api::resources::Resource;

#[derive(Debug, Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The kind (pods, po, configmaps, …), or KIND/NAME.
    pub kind: String,
    /// The object, or the start of its name; all objects of the kind when left out.
    pub name: Option<String>,
    /// The namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// All namespaces (when describing every object of a kind).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector, when describing every object of a kind.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

pub async fn run(args: DescribeArgs) -> anyhow::Result<ExitCode> {
    report(describe(args).await)
}

async fn describe(args: DescribeArgs) -> anyhow::Result<ExitCode> {
    let (kind, name) = match args.kind.split_once('/') {
        Some((k, n)) => (k.to_owned(), Some(n.to_owned())),
        None => (args.kind.clone(), args.name.clone()),
    };
    let resource = resolve(&kind)?;
    let client = args.api.client();
    let objects = match name {
        Some(name) => match client
            .get(&resource.object_path(&args.namespace, &name))
            .await
        {
            Ok(object) => vec![object],
            Err(e) => {
                let Some(status) = e.downcast_ref::<StatusError>().filter(|s| s.is_not_found())
                else {
                    return Err(e);
                };
                // kubectl describes the objects whose names start with NAME.
                let list = client
                    .get(&list_path(resource, Some(&args.namespace), None, None))
                    .await?;
                let matching: Vec<Value> = list["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|o| text(o, "/metadata/name").starts_with(&name))
                    .cloned()
                    .collect();
                if matching.is_empty() {
                    return Err(status.clone().into());
                }
                matching
            }
        },
        None => {
            let namespace = (!args.all_namespaces).then_some(args.namespace.as_str());
            let list = client
                .get(&list_path(
                    resource,
                    namespace,
                    args.selector.as_deref(),
                    None,
                ))
                .await?;
            let items: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                let scope = match namespace {
                    Some(ns) if resource.namespaced => format!(" in {ns} namespace"),
                    _ => String::new(),
                };
                eprintln!("No resources found{scope}.");
                return Ok(ExitCode::SUCCESS);
            }
            items
        }
    };
    let now = Timestamp::now();
    let mut out = String::new();
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        let events = events_for(&client, resource, object).await?;
        out.push_str(&describe_object(resource, object, &events, now)?);
    }
    write_stdout(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The events about an object, oldest first.
async fn events_for(
    client: &Client,
    resource: &Resource,
    object: &Value,
) -> anyhow::Result<Vec<Value>> {
    let Some(events) = crate::api::resources::by_kind("Event") else {
        return Ok(Vec::new());
    };
    let name = text(object, "/metadata/name");
    let namespace = text(object, "/metadata/namespace");
    let mut fields = format!("involvedObject.name={name}");
    if resource.namespaced {
        fields.push_str(&format!(",involvedObject.namespace={namespace}"));
    }
    let ns = if resource.namespaced {
        Some(namespace)
    } else {
        None
    };
    let list = client
        .get(&list_path(events, ns, None, Some(&fields)))
        .await?;
    let uid = text(object, "/metadata/uid");
    let mut items: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            let kind = text(e, "/involvedObject/kind");
            let event_uid = text(e, "/involvedObject/uid");
            (kind.is_empty() || kind == resource.kind)
                && (event_uid.is_empty() || uid.is_empty() || event_uid == uid)
        })
        .cloned()
        .collect();
    // kubectl's SortableEvents: by last timestamp.
    items.sort_by_key(|e| event_times(e).0);
    Ok(items)
}

/// Lines with tab-separated cells, aligned as Go's `text/tabwriter` does
/// for kubectl (minimum width 0, padding 2, spaces): consecutive lines
/// that have a cell in a column share its width; a line with fewer cells
/// ends that column's block.
pub fn tabwrite(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_inclusive('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    let mut widths = Vec::new();
    let mut out = String::new();
    format_block(&lines, 0, lines.len(), 0, &mut widths, &mut out);
    out
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    column: usize,
    widths: &mut Vec<usize>,
    out: &mut String,
) {
    let mut this = line0;
    while this < line1 {
        // Cells terminated by a tab take part in alignment; the last one does not.
        if column >= lines[this].len() - 1 {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = 0;
        while this < line1 && column < lines[this].len() - 1 {
            width = width.max(lines[this][column].chars().count() + 2);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, column + 1, widths, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            if j + 1 < line.len() && j < widths.len() {
                out.push_str(cell);
                out.push_str(&" ".repeat(widths[j].saturating_sub(cell.chars().count())));
            } else {
                out.push_str(cell);
            }
        }
    }
}

/// kubectl's describe writer: `level` indents by two spaces per level.
#[derive(Debug, Default)]
struct Writer {
    /// Text aligned together; events are aligned on their own.
    blocks: Vec<String>,
}

impl Writer {
    fn line(&mut self, level: usize, text: &str) {
        if self.blocks.is_empty() {
            self.blocks.push(String::new());
        }
        if let Some(block) = self.blocks.last_mut() {
            block.push_str(&"  ".repeat(level));
            block.push_str(text);
            block.push('\n');
        }
    }

    /// Later lines are aligned separately (kubectl flushes before events).
    fn flush(&mut self) {
        self.blocks.push(String::new());
    }

    fn finish(self) -> String {
        self.blocks.iter().map(|b| tabwrite(b)).collect()
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `Labels:  a=b` then one per line.
fn labels(w: &mut Writer, level: usize, title: &str, map: &BTreeMap<String, String>) {
    if map.is_empty() {
        w.line(level, &format!("{title}:\t<none>"));
        return;
    }
    for (i, (k, v)) in map.iter().enumerate() {
        let head = if i == 0 {
            format!("{title}:")
        } else {
            String::new()
        };
        w.line(level, &format!("{head}\t{k}={v}"));
    }
}

/// Annotations read `key: value`, long ones cut, kubectl's own left out.
fn annotations(w: &mut Writer, title: &str, map: &BTreeMap<String, String>) {
    const MAX: usize = 140;
    let shown: Vec<(&String, &String)> = map
        .iter()
        .filter(|(k, _)| k.as_str() != "kubectl.kubernetes.io/last-applied-configuration")
        .collect();
    if shown.is_empty() {
        w.line(0, &format!("{title}:\t<none>"));
        return;
    }
    for (i, (k, v)) in shown.into_iter().enumerate() {
        let head = if i == 0 {
            format!("{title}:")
        } else {
            String::new()
        };
        let mut line = format!("{k}: {}", v.trim_end_matches('\n'));
        if line.len() > MAX {
            let cut = (0..=MAX)
                .rev()
                .find(|&i| line.is_char_boundary(i))
                .unwrap_or(0);
            line.truncate(cut);
            line.push_str("...");
        }
        w.line(0, &format!("{head}\t{line}"));
    }
}

/// RFC 1123 with numeric zone, in local time: `Mon, 02 Jan 2006 15:04:05 -0700`.
fn rfc1123(t: Option<Timestamp>) -> String {
    match t {
        Some(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%a, %d %b %Y %H:%M:%S %z")
            .to_string(),
        None => "<unknown>".into(),
    }
}

fn events(w: &mut Writer, events: &[Value], now: Timestamp) {
    w.flush();
    if events.is_empty() {
        w.line(0, "Events:\t<none>");
        return;
    }
    w.line(0, "Events:");
    w.line(1, "Type\tReason\tAge\tFrom\tMessage");
    w.line(1, "----\t------\t----\t----\t-------");
    for e in events {
        let (last, first, count) = event_times(e);
        let interval = if count > 1 {
            format!("{} (x{count} over {})", since(last, now), since(first, now))
        } else {
            since(first, now)
        };
        let from = [
            text(e, "/source/component"),
            text(e, "/reportingComponent"),
            text(e, "/reportingController"),
        ]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or("");
        w.line(
            1,
            &format!(
                "{}\t{}\t{interval}\t{from}\t{}",
                text(e, "/type"),
                text(e, "/reason"),
                text(e, "/message").trim()
            ),
        );
    }
}

/// One object's description.
pub fn describe_object(
    resource: &Resource,
    object: &Value,
    event_list: &[Value],
    now: Timestamp,
) -> anyhow::Result<String> {
    let mut w = Writer::default();
    match resource.kind {
        "Pod" => describe_pod(&mut w, object, now),
        _ => describe_generic(&mut w, resource, object)?,
    }
    // kubectl's secret describer shows no events.
    if resource.kind != "Secret" {
        events(&mut w, event_list, now);
    }
    Ok(w.finish())
}

fn meta(w: &mut Writer, resource: &Resource, object: &Value) {
    w.line(0, &format!("Name:\t{}", text(object, "/metadata/name")));
    if resource.namespaced {
        w.line(
            0,
            &format!("Namespace:\t{}", text(object, "/metadata/namespace")),
        );
    }
    labels(
        w,
        0,
        "Labels",
        &string_map(object.pointer("/metadata/labels")),
    );
    annotations(
        w,
        "Annotations",
        &string_map(object.pointer("/metadata/annotations")),
    );
}

fn describe_generic(w: &mut Writer, resource: &Resource, object: &Value) -> anyhow::Result<()> {
    meta(w, resource, object);
    match resource.kind {
        "ConfigMap" => {
            w.line(0, "");
            w.line(0, "Data");
            w.line(0, "====");
            for (k, v) in string_map(object.get("data")) {
                w.line(0, &format!("{k}:"));
                w.line(0, "----");
                w.line(0, &v);
                w.line(0, "");
            }
            w.line(0, "");
            w.line(0, "BinaryData");
            w.line(0, "====");
            for (k, v) in string_map(object.get("binaryData")) {
                w.line(0, &format!("{k}: {} bytes", decoded_len(&v)));
            }
            w.line(0, "");
        }
        "Secret" => {
            w.line(0, "");
            w.line(0, &format!("Type:\t{}", or_none(text(object, "/type"))));
            w.line(0, "");
            w.line(0, "Data");
            w.line(0, "====");
            for (k, v) in string_map(object.get("data")) {
                w.line(0, &format!("{k}:\t{} bytes", decoded_len(&v)));
            }
        }
        "Namespace" => {
            let phase = match text(object, "/status/phase") {
                "" => "Active",
                p => p,
            };
            w.line(0, &format!("Status:\t{phase}"));
        }
        _ => {
            for section in ["spec", "status"] {
                let Some(value) = object.get(section).filter(|v| !v.is_null()) else {
                    continue;
                };
                let mut title = section.to_owned();
                title[..1].make_ascii_uppercase();
                w.line(0, &format!("{title}:"));
                for line in to_yaml(value)?.lines() {
                    w.line(1, line);
                }
            }
        }
    }
    Ok(())
}

/// The length of base64 data (what a Secret's value holds).
fn decoded_len(b64: &str) -> usize {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_or(b64.len(), |d| d.len())
}

fn array<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn describe_pod(w: &mut Writer, pod: &Value, now: Timestamp) {
    w.line(0, &format!("Name:\t{}", text(pod, "/metadata/name")));
    w.line(
        0,
        &format!("Namespace:\t{}", text(pod, "/metadata/namespace")),
    );
    if let Some(p) = pod.pointer("/spec/priority").and_then(Value::as_i64) {
        w.line(0, &format!("Priority:\t{p}"));
    }
    if !text(pod, "/spec/priorityClassName").is_empty() {
        w.line(
            0,
            &format!(
                "Priority Class Name:\t{}",
                text(pod, "/spec/priorityClassName")
            ),
        );
    }
    if !text(pod, "/spec/serviceAccountName").is_empty() {
        w.line(
            0,
            &format!(
                "Service Account:\t{}",
                text(pod, "/spec/serviceAccountName")
            ),
        );
    }
    match text(pod, "/spec/nodeName") {
        "" => w.line(0, "Node:\t<none>"),
        node => w.line(0, &format!("Node:\t{node}/{}", text(pod, "/status/hostIP"))),
    }
    if let Some(start) = time(pod, "/status/startTime") {
        w.line(0, &format!("Start Time:\t{}", rfc1123(Some(start))));
    }
    labels(w, 0, "Labels", &string_map(pod.pointer("/metadata/labels")));
    annotations(
        w,
        "Annotations",
        &string_map(pod.pointer("/metadata/annotations")),
    );
    if let Some(deleting) = time(pod, "/metadata/deletionTimestamp") {
        w.line(
            0,
            &format!(
                "Status:\tTerminating (lasts {})",
                since(Some(deleting), now)
            ),
        );
        if let Some(grace) = pod
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
        {
            w.line(0, &format!("Termination Grace Period:\t{grace}s"));
        }
    } else {
        w.line(0, &format!("Status:\t{}", text(pod, "/status/phase")));
    }
    if !text(pod, "/status/reason").is_empty() {
        w.line(0, &format!("Reason:\t{}", text(pod, "/status/reason")));
    }
    if !text(pod, "/status/message").is_empty() {
        w.line(0, &format!("Message:\t{}", text(pod, "/status/message")));
    }
    w.line(0, &format!("IP:\t{}", pod_ip(pod)));
    let ips: Vec<&str> = array(pod, "/status/podIPs")
        .iter()
        .map(|ip| text(ip, "/ip"))
        .collect();
    let ips = if ips.is_empty() && !pod_ip(pod).is_empty() {
        vec![pod_ip(pod)]
    } else {
        ips
    };
    if ips.is_empty() {
        w.line(0, "IPs:\t<none>");
    } else {
        w.line(0, "IPs:");
        for ip in ips {
            w.line(1, &format!("IP:\t{ip}"));
        }
    }
    if let Some(owner) = array(pod, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller") == Some(&Value::Bool(true)))
    {
        w.line(
            0,
            &format!(
                "Controlled By:\t{}/{}",
                text(owner, "/kind"),
                text(owner, "/name")
            ),
        );
    }
    if !array(pod, "/spec/initContainers").is_empty() {
        containers(
            w,
            pod,
            "Init Containers",
            array(pod, "/spec/initContainers"),
            array(pod, "/status/initContainerStatuses"),
        );
    }
    containers(
        w,
        pod,
        "Containers",
        array(pod, "/spec/containers"),
        array(pod, "/status/containerStatuses"),
    );
    let conditions = array(pod, "/status/conditions");
    if !conditions.is_empty() {
        w.line(0, "Conditions:");
        w.line(1, "Type\tStatus");
        for c in conditions {
            w.line(
                1,
                &format!("{} \t{} ", text(c, "/type"), text(c, "/status")),
            );
        }
    }
    volumes(w, array(pod, "/spec/volumes"));
    w.line(0, &format!("QoS Class:\t{}", qos_class(pod)));
    labels(
        w,
        0,
        "Node-Selectors",
        &string_map(pod.pointer("/spec/nodeSelector")),
    );
    tolerations(w, array(pod, "/spec/tolerations"));
}

fn containers(w: &mut Writer, pod: &Value, title: &str, specs: &[Value], statuses: &[Value]) {
    w.line(
        0,
        &format!("{title}:{}", if specs.is_empty() { " <none>" } else { "" }),
    );
    for c in specs {
        let name = text(c, "/name");
        let status = statuses.iter().find(|s| text(s, "/name") == name);
        w.line(1, &format!("{name}:"));
        if let Some(s) = status {
            w.line(2, &format!("Container ID:\t{}", text(s, "/containerID")));
        }
        w.line(2, &format!("Image:\t{}", text(c, "/image")));
        if let Some(s) = status {
            w.line(2, &format!("Image ID:\t{}", text(s, "/imageID")));
        }
        let ports = array(c, "/ports");
        let protocol = |p: &Value| match text(p, "/protocol") {
            "" => "TCP".to_owned(),
            proto => proto.to_owned(),
        };
        let port = |field: &str| {
            ports
                .iter()
                .map(|p| {
                    format!(
                        "{}/{}",
                        p.get(field).and_then(Value::as_i64).unwrap_or(0),
                        protocol(p)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (single, plural, field) in [
            ("Port", "Ports", "containerPort"),
            ("Host Port", "Host Ports", "hostPort"),
        ] {
            let value = port(field);
            if value.contains(',') {
                w.line(2, &format!("{plural}:\t{value}"));
            } else {
                w.line(2, &format!("{single}:\t{}", or_none(&value)));
            }
        }
        for (title, field) in [("Command", "command"), ("Args", "args")] {
            let items = array(c, &format!("/{field}"));
            if !items.is_empty() {
                w.line(2, &format!("{title}:"));
                for item in items {
                    for line in item.as_str().unwrap_or("").split('\n') {
                        w.line(3, line);
                    }
                }
            }
        }
        if let Some(s) = status {
            container_state(w, "State", s.get("state"));
            if s.pointer("/lastState/terminated").is_some() {
                container_state(w, "Last State", s.get("lastState"));
            }
            let ready = if s.get("ready") == Some(&Value::Bool(true)) {
                "True"
            } else {
                "False"
            };
            w.line(2, &format!("Ready:\t{ready}"));
            w.line(
                2,
                &format!(
                    "Restart Count:\t{}",
                    s.get("restartCount").and_then(Value::as_i64).unwrap_or(0)
                ),
            );
        }
        for (title, field) in [("Limits", "limits"), ("Requests", "requests")] {
            let values = string_map(c.pointer(&format!("/resources/{field}")));
            if !values.is_empty() {
                w.line(2, &format!("{title}:"));
                for (k, v) in values {
                    w.line(3, &format!("{k}:\t{v}"));
                }
            }
        }
        for (title, field) in [
            ("Liveness", "livenessProbe"),
            ("Readiness", "readinessProbe"),
            ("Startup", "startupProbe"),
        ] {
            if let Some(p) = c.get(field).filter(|p| p.is_object()) {
                w.line(2, &format!("{title}:\t{}", probe(p)));
            }
        }
        let env_from = array(c, "/envFrom");
        if !env_from.is_empty() {
            w.line(2, "Environment Variables from:");
            for e in env_from {
                let (from, r) = match (e.get("configMapRef"), e.get("secretRef")) {
                    (Some(r), _) => ("ConfigMap", r),
                    (_, Some(r)) => ("Secret", r),
                    _ => ("", &Value::Null),
                };
                let optional = r.get("optional") == Some(&Value::Bool(true));
                let prefix = text(e, "/prefix");
                let from = if prefix.is_empty() {
                    from.to_owned()
                } else {
                    format!("{from} with prefix '{prefix}'")
                };
                w.line(
                    3,
                    &format!("{}\t{from}\tOptional: {optional}", text(r, "/name")),
                );
            }
        }
        let env = array(c, "/env");
        w.line(
            2,
            &format!(
                "Environment:{}",
                if env.is_empty() { "\t<none>" } else { "" }
            ),
        );
        for e in env {
            let name = text(e, "/name");
            let Some(from) = e.get("valueFrom").filter(|v| v.is_object()) else {
                for (i, line) in text(e, "/value").split('\n').enumerate() {
                    if i == 0 {
                        w.line(3, &format!("{name}:\t{line}"));
                    } else {
                        w.line(3, &format!("\t{line}"));
                    }
                }
                continue;
            };
            let optional = |r: &Value| r.get("optional") == Some(&Value::Bool(true));
            if let Some(r) = from.get("fieldRef") {
                let value = field_ref(pod, text(r, "/fieldPath"));
                w.line(
                    3,
                    &format!(
                        "{name}:\t{value} ({}:{})",
                        text(r, "/apiVersion"),
                        text(r, "/fieldPath")
                    ),
                );
            } else if let Some(r) = from.get("resourceFieldRef") {
                w.line(3, &format!("{name}:\t ({})", text(r, "/resource")));
            } else if let Some(r) = from.get("secretKeyRef") {
                w.line(
                    3,
                    &format!(
                        "{name}:\t<set to the key '{}' in secret '{}'>\tOptional: {}",
                        text(r, "/key"),
                        text(r, "/name"),
                        optional(r)
                    ),
                );
            } else if let Some(r) = from.get("configMapKeyRef") {
                w.line(
                    3,
                    &format!(
                        "{name}:\t<set to the key '{}' of config map '{}'>\tOptional: {}",
                        text(r, "/key"),
                        text(r, "/name"),
                        optional(r)
                    ),
                );
            }
        }
        let mut mounts: Vec<&Value> = array(c, "/volumeMounts").iter().collect();
        mounts.sort_by_key(|m| text(m, "/mountPath"));
        w.line(
            2,
            &format!("Mounts:{}", if mounts.is_empty() { "\t<none>" } else { "" }),
        );
        for m in mounts {
            let mut flags = vec![if m.get("readOnly") == Some(&Value::Bool(true)) {
                "ro".to_owned()
            } else {
                "rw".to_owned()
            }];
            if !text(m, "/subPath").is_empty() {
                flags.push(format!("path={:?}", text(m, "/subPath")));
            }
            w.line(
                3,
                &format!(
                    "{} from {} ({})",
                    text(m, "/mountPath"),
                    text(m, "/name"),
                    flags.join(",")
                ),
            );
        }
    }
}

/// A downward-API field of the pod, as kubectl resolves it for env values.
fn field_ref(pod: &Value, path: &str) -> String {
    let quoted = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("']"))
            .map(|key| key.to_owned())
    };
    if let Some(key) = quoted("metadata.labels['") {
        return pod
            .pointer("/metadata/labels")
            .and_then(|l| l.get(&key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
    }
    if let Some(key) = quoted("metadata.annotations['") {
        return pod
            .pointer("/metadata/annotations")
            .and_then(|l| l.get(&key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
    }
    match path {
        "status.podIP" => pod_ip(pod).to_owned(),
        "metadata.name"
        | "metadata.namespace"
        | "metadata.uid"
        | "spec.nodeName"
        | "spec.serviceAccountName"
        | "status.hostIP" => text(pod, &format!("/{}", path.replace('.', "/"))).to_owned(),
        _ => String::new(),
    }
}

fn container_state(w: &mut Writer, title: &str, state: Option<&Value>) {
    let state = state.unwrap_or(&Value::Null);
    if let Some(running) = state.get("running").filter(|v| v.is_object()) {
        w.line(2, &format!("{title}:\tRunning"));
        w.line(
            3,
            &format!("Started:\t{}", rfc1123(time(running, "/startedAt"))),
        );
    } else if let Some(waiting) = state.get("waiting").filter(|v| v.is_object()) {
        w.line(2, &format!("{title}:\tWaiting"));
        if !text(waiting, "/reason").is_empty() {
            w.line(3, &format!("Reason:\t{}", text(waiting, "/reason")));
        }
    } else if let Some(t) = state.get("terminated").filter(|v| v.is_object()) {
        w.line(2, &format!("{title}:\tTerminated"));
        if !text(t, "/reason").is_empty() {
            w.line(3, &format!("Reason:\t{}", text(t, "/reason")));
        }
        if !text(t, "/message").is_empty() {
            w.line(3, &format!("Message:\t{}", text(t, "/message")));
        }
        w.line(
            3,
            &format!(
                "Exit Code:\t{}",
                t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
            ),
        );
        if let Some(signal) = t.get("signal").and_then(Value::as_i64).filter(|&s| s > 0) {
            w.line(3, &format!("Signal:\t{signal}"));
        }
        w.line(3, &format!("Started:\t{}", rfc1123(time(t, "/startedAt"))));
        w.line(
            3,
            &format!("Finished:\t{}", rfc1123(time(t, "/finishedAt"))),
        );
    } else {
        w.line(2, &format!("{title}:\tWaiting"));
    }
}

/// `http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3`.
fn probe(p: &Value) -> String {
    let int = |field: &str, default: i64| p.get(field).and_then(Value::as_i64).unwrap_or(default);
    let attrs = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        int("initialDelaySeconds", 0),
        int("timeoutSeconds", 1),
        int("periodSeconds", 10),
        int("successThreshold", 1),
        int("failureThreshold", 3)
    );
    let port = |v: Option<&Value>| match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    if let Some(exec) = p.get("exec") {
        let command: Vec<&str> = array(exec, "/command")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        format!("exec [{}] {attrs}", command.join(" "))
    } else if let Some(http) = p.get("httpGet") {
        let scheme = match text(http, "/scheme") {
            "" => "http".to_owned(),
            s => s.to_ascii_lowercase(),
        };
        format!(
            "http-get {scheme}://{}:{}{} {attrs}",
            text(http, "/host"),
            port(http.get("port")),
            text(http, "/path")
        )
    } else if let Some(tcp) = p.get("tcpSocket") {
        format!(
            "tcp-socket {}:{} {attrs}",
            text(tcp, "/host"),
            port(tcp.get("port"))
        )
    } else if let Some(grpc) = p.get("grpc") {
        format!(
            "grpc <pod>:{} {} {attrs}",
            port(grpc.get("port")),
            text(grpc, "/service")
        )
    } else {
        format!("unknown {attrs}")
    }
}

fn volumes(w: &mut Writer, volumes: &[Value]) {
    if volumes.is_empty() {
        w.line(0, "Volumes:\t<none>");
        return;
    }
    w.line(0, "Volumes:");
    for v in volumes {
        w.line(1, &format!("{}:", text(v, "/name")));
        let optional = |s: &Value| s.get("optional") == Some(&Value::Bool(true));
        if let Some(s) = v.get("emptyDir") {
            w.line(
                2,
                "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)",
            );
            w.line(2, &format!("Medium:\t{}", text(s, "/medium")));
            w.line(
                2,
                &format!(
                    "SizeLimit:\t{}",
                    match s.get("sizeLimit") {
                        Some(Value::String(l)) if l != "0" => l.clone(),
                        Some(Value::Number(n)) if n.as_f64() != Some(0.0) => n.to_string(),
                        _ => "<unset>".into(),
                    }
                ),
            );
        } else if let Some(s) = v.get("hostPath") {
            w.line(2, "Type:\tHostPath (bare host directory volume)");
            w.line(2, &format!("Path:\t{}", text(s, "/path")));
            w.line(2, &format!("HostPathType:\t{}", or_none(text(s, "/type"))));
        } else if let Some(s) = v.get("configMap") {
            w.line(2, "Type:\tConfigMap (a volume populated by a ConfigMap)");
            w.line(2, &format!("Name:\t{}", text(s, "/name")));
            w.line(2, &format!("Optional:\t{}", optional(s)));
        } else if let Some(s) = v.get("secret") {
            w.line(2, "Type:\tSecret (a volume populated by a Secret)");
            w.line(2, &format!("SecretName:\t{}", text(s, "/secretName")));
            w.line(2, &format!("Optional:\t{}", optional(s)));
        } else if let Some(s) = v.get("persistentVolumeClaim") {
            w.line(2, "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)");
            w.line(2, &format!("ClaimName:\t{}", text(s, "/claimName")));
            w.line(
                2,
                &format!(
                    "ReadOnly:\t{}",
                    s.get("readOnly") == Some(&Value::Bool(true))
                ),
            );
        } else if let Some(s) = v.get("projected") {
            w.line(
                2,
                "Type:\tProjected (a volume that contains injected data from multiple sources)",
            );
            for source in array(s, "/sources") {
                if let Some(r) = source.get("secret") {
                    w.line(2, &format!("SecretName:\t{}", text(r, "/name")));
                    w.line(2, &format!("Optional:\t{}", optional(r)));
                } else if source.get("downwardAPI").is_some() {
                    w.line(2, "DownwardAPI:\ttrue");
                } else if let Some(r) = source.get("configMap") {
                    w.line(2, &format!("ConfigMapName:\t{}", text(r, "/name")));
                    w.line(2, &format!("Optional:\t{}", optional(r)));
                } else if let Some(r) = source.get("serviceAccountToken") {
                    let seconds = r
                        .get("expirationSeconds")
                        .and_then(Value::as_i64)
                        .unwrap_or(3607);
                    w.line(2, &format!("TokenExpirationSeconds:\t{seconds}"));
                }
            }
        } else if let Some(s) = v.get("downwardAPI") {
            w.line(
                2,
                "Type:\tDownwardAPI (a volume populated by information about the pod)",
            );
            w.line(2, "Items:");
            for item in array(s, "/items") {
                if let Some(f) = item.get("fieldRef") {
                    w.line(
                        3,
                        &format!("{} -> {}", text(f, "/fieldPath"), text(item, "/path")),
                    );
                }
                if let Some(r) = item.get("resourceFieldRef") {
                    w.line(
                        3,
                        &format!("{} -> {}", text(r, "/resource"), text(item, "/path")),
                    );
                }
            }
        } else {
            w.line(1, "<unknown>");
        }
    }
}

/// The QoS class the kubelet gives a pod (status.qosClass when set).
fn qos_class(pod: &Value) -> String {
    if let Some(q) = pod
        .pointer("/status/qosClass")
        .and_then(Value::as_str)
        .filter(|q| !q.is_empty())
    {
        return q.to_owned();
    }
    let all: Vec<&Value> = array(pod, "/spec/containers")
        .iter()
        .chain(array(pod, "/spec/initContainers"))
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in all {
        let requests = string_map(c.pointer("/resources/requests"));
        let limits = string_map(c.pointer("/resources/limits"));
        let relevant = |m: &BTreeMap<String, String>| m.keys().any(|k| k == "cpu" || k == "memory");
        any |= relevant(&requests) || relevant(&limits);
        for resource in ["cpu", "memory"] {
            let limit = limits.get(resource);
            let request = requests.get(resource).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort".into()
    } else if guaranteed {
        "Guaranteed".into()
    } else {
        "Burstable".into()
    }
}

fn tolerations(w: &mut Writer, tolerations: &[Value]) {
    if tolerations.is_empty() {
        w.line(0, "Tolerations:\t<none>");
        return;
    }
    for (i, t) in tolerations.iter().enumerate() {
        let mut s = text(t, "/key").to_owned();
        if !text(t, "/value").is_empty() {
            s.push_str(&format!("={}", text(t, "/value")));
        }
        if !text(t, "/effect").is_empty() {
            s.push_str(&format!(":{}", text(t, "/effect")));
        }
        if text(t, "/operator") == "Exists" && text(t, "/value").is_empty() {
            s.push_str(if s.is_empty() {
                "op=Exists"
            } else {
                " op=Exists"
            });
        }
        if let Some(seconds) = t.get("tolerationSeconds").and_then(Value::as_i64) {
            s.push_str(&format!(" for {seconds}s"));
        }
        let head = if i == 0 { "Tolerations:" } else { "" };
        w.line(0, &format!("{head}\t{s}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tabwriter_aligns_blocks_like_go() {
        // Columns align across consecutive lines with a cell in them; a line
        // without tabs ends the block.
        let got = tabwrite("Name:\tweb\nNamespace:\tdefault\nContainers:\n  c:\n    Image:\tbusybox\n    Restart Count:\t0\n");
        assert_eq!(
            got,
            "Name:       web\nNamespace:  default\nContainers:\n  c:\n    Image:          busybox\n    Restart Count:  0\n"
        );
        assert_eq!(
            tabwrite("a\tb\tc\nlonger\tx\n"),
            "a       b  c\nlonger  x\n"
        );
        assert_eq!(tabwrite("no tabs\n"), "no tabs\n");
        assert_eq!(tabwrite(""), "");
    }

    #[test]
    fn pods_describe_like_kubectl() {
        let pods = crate::api::resources::lookup("po").expect("pods");
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().expect("time");
        let pod = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "web", "tier": "front"}},
            "spec": {"nodeName": "edge-1", "containers": [{
                "name": "c", "image": "busybox", "ports": [{"containerPort": 80}],
                "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}},
                "env": [{"name": "MODE", "value": "prod"}, {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }], "volumes": [{"name": "data", "emptyDir": {}}]},
            "status": {"phase": "Running", "hostIP": "192.168.1.5", "podIP": "10.42.0.7",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 1, "containerID": "outpost://abc", "imageID": "sha256:1",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]},
        });
        let events = [
            json!({"type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container",
            "count": 3, "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:59:00Z", "source": {"component": "outpost"}}),
        ];
        let got = describe_object(pods, &pod, &events, now).expect("describes");
        let expect = "\
Name:         web
Namespace:    default
Node:         edge-1/192.168.1.5
Labels:       app=web
              tier=front
Annotations:  <none>
Status:       Running
IP:           10.42.0.7
IPs:
  IP:  10.42.0.7
Containers:
  c:
    Container ID:   outpost://abc
    Image:          busybox
    Image ID:       sha256:1
    Port:           80/TCP
    Host Port:      0/TCP
    State:          Waiting
      Reason:       CrashLoopBackOff
    Last State:     Terminated
      Reason:       Error
      Exit Code:    1
      Started:      <unknown>
      Finished:     <unknown>
    Ready:          True
    Restart Count:  1
    Limits:
      memory:  64Mi
    Requests:
      cpu:     100m
      memory:  64Mi
    Environment:
      MODE:  prod
      KEY:   <set to the key 'k' in secret 's'>  Optional: false
    Mounts:
      /data from data (rw)
Conditions:
  Type    Status
  Ready   True 
Volumes:
  data:
    Type:        EmptyDir (a temporary directory that shares a pod's lifetime)
    Medium:      
    SizeLimit:   <unset>
QoS Class:       Burstable
Node-Selectors:  <none>
Tolerations:     <none>
Events:
  Type     Reason   Age                From     Message
  ----     ------   ----               ----     -------
  Warning  BackOff  60s (x3 over 10m)  outpost  Back-off restarting failed container
";
        assert_eq!(got, expect, "got:\n{got}");
    }

    #[test]
    fn configmaps_and_generic_kinds() {
        let cms = crate::api::resources::lookup("cm").expect("configmaps");
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().expect("time");
        let cm = json!({"metadata": {"name": "conf", "namespace": "default"}, "data": {"a.txt": "hello"}});
        let got = describe_object(cms, &cm, &[], now).expect("describes");
        assert_eq!(
            got,
            "Name:         conf\nNamespace:    default\nLabels:       <none>\nAnnotations:  <none>\n\nData\n====\na.txt:\n----\nhello\n\n\nBinaryData\n====\n\nEvents:  <none>\n"
        );
        let quotas = crate::api::resources::lookup("quota").expect("quotas");
        let q = json!({"metadata": {"name": "q", "namespace": "default"}, "spec": {"hard": {"pods": "4"}}});
        let got = describe_object(quotas, &q, &[], now).expect("describes");
        assert!(got.contains("Spec:\n  hard:\n    pods: '4'\n"), "{got}");
    }
}
