//! `outpost get KIND [NAME]...`: kubectl's `get`, read through the agent's API.

use std::cmp::Ordering;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use jiff::Timestamp;
use serde_json::{json, Value};

use super::client::{report, write_stdout, ApiArgs, Client, StatusError};
use super::table;
use crate::api::printers::format_labels;
use crate::api::resources::{self, Resource};
use crate::api::route::encode;

#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// What to get: a kind (pods, po, configmaps, cm, events, ev, namespaces, ns, …;
    /// several with commas), or KIND/NAME.
    pub kind: String,
    /// Object names (all objects of the kind when none); or more KIND/NAME.
    pub names: Vec<String>,
    /// The namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// All namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector: app=web, tier in (a,b), !canary, ….
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector: metadata.name=web, status.phase=Running, ….
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Output format: wide, yaml, json or name.
    #[arg(short, long)]
    pub output: Option<String>,
    /// After listing, watch for changes and print them.
    #[arg(short, long)]
    pub watch: bool,
    /// Leave out the header line.
    #[arg(long)]
    pub no_headers: bool,
    /// Sort by a field, e.g. .metadata.name or .lastTimestamp.
    #[arg(long)]
    pub sort_by: Option<String>,
    /// Add a LABELS column.
    #[arg(long)]
    pub show_labels: bool,
}

/// How objects are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table { wide: bool },
    Yaml,
    Json,
    Name,
}

impl Output {
    pub fn parse(s: Option<&str>) -> anyhow::Result<Output> {
        Ok(match s {
            None => Output::Table { wide: false },
            Some("wide") => Output::Table { wide: true },
            Some("yaml") => Output::Yaml,
            Some("json") => Output::Json,
            Some("name") => Output::Name,
            Some(other) => anyhow::bail!(
                "unable to match a printer suitable for the output format {other:?}, allowed formats are: json,name,wide,yaml"
            ),
        })
    }
}

/// The server does not serve this kind: kubectl's message plus what it serves.
pub fn unknown_kind(name: &str) -> anyhow::Error {
    let known: Vec<String> = resources::RESOURCES
        .iter()
        .map(|r| {
            let mut names = vec![r.plural];
            names.extend(r.short_names);
            names.join(", ")
        })
        .collect();
    anyhow::anyhow!(
        "the server doesn't have a resource type \"{name}\"\nknown resource types: {}",
        known.join("; ")
    )
}

/// Resolves a kind name as kubectl does.
pub fn resolve(name: &str) -> anyhow::Result<&'static Resource> {
    resources::lookup(name).ok_or_else(|| unknown_kind(name))
}

/// What the arguments ask for: kinds, each with names (none: all).
fn requests(kind: &str, names: &[String]) -> anyhow::Result<Vec<(&'static Resource, Vec<String>)>> {
    let mut groups: Vec<(&'static Resource, Vec<String>)> = Vec::new();
    if kind.contains('/') {
        for arg in std::iter::once(kind).chain(names.iter().map(String::as_str)) {
            let (k, name) = arg.split_once('/').with_context(|| {
                format!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'outpost get resource/<resource_name>' instead of 'outpost get resource resource/<resource_name>'): {arg:?}")
            })?;
            let resource = resolve(k)?;
            match groups.iter_mut().find(|(r, _)| r.kind == resource.kind) {
                Some((_, names)) => names.push(name.to_owned()),
                None => groups.push((resource, vec![name.to_owned()])),
            }
        }
        return Ok(groups);
    }
    for k in kind.split(',').filter(|k| !k.is_empty()) {
        let resource = resolve(k)?;
        if !groups.iter().any(|(r, _)| r.kind == resource.kind) {
            groups.push((resource, names.to_vec()));
        }
    }
    if groups.is_empty() {
        return Err(unknown_kind(kind));
    }
    Ok(groups)
}

/// A list path with its query.
pub fn list_path(
    resource: &Resource,
    namespace: Option<&str>,
    labels: Option<&str>,
    fields: Option<&str>,
) -> String {
    let mut query = Vec::new();
    if let Some(l) = labels.filter(|l| !l.is_empty()) {
        query.push(format!("labelSelector={}", encode(l)));
    }
    if let Some(f) = fields.filter(|f| !f.is_empty()) {
        query.push(format!("fieldSelector={}", encode(f)));
    }
    let path = resource.collection_path(namespace);
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

fn items(list: Value) -> Vec<Value> {
    match list {
        Value::Object(mut m) => match m.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// A field path as `--sort-by` takes it (`.metadata.name`, `{.items[0].x}`) to a JSON pointer.
pub fn field_pointer(expr: &str) -> anyhow::Result<String> {
    let inner = expr
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('.');
    if inner.is_empty() {
        anyhow::bail!("invalid --sort-by {expr:?}: expected a field path such as .metadata.name");
    }
    let mut pointer = String::new();
    for segment in inner.split('.') {
        let (name, mut rest) = match segment.find('[') {
            Some(i) => segment.split_at(i),
            None => (segment, ""),
        };
        if name.is_empty() && rest.is_empty() {
            anyhow::bail!("invalid --sort-by {expr:?}: empty field name");
        }
        if !name.is_empty() {
            pointer.push('/');
            pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        while let Some(index) = rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
            let (i, after) = index;
            let i: usize = i.parse().map_err(|_| {
                anyhow::anyhow!("invalid --sort-by {expr:?}: index {i:?} is not a number")
            })?;
            pointer.push_str(&format!("/{i}"));
            rest = after;
        }
        if !rest.is_empty() {
            anyhow::bail!("invalid --sort-by {expr:?}: cannot read {rest:?}");
        }
    }
    Ok(pointer)
}

/// kubectl's order for `--sort-by`: numbers by value, times by time, else text;
/// objects without the field first.
pub fn sort_by(objects: &mut [Value], pointer: &str) {
    fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
        match (a, b) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(Value::Number(x)), Some(Value::Number(y))) => x
                .as_f64()
                .partial_cmp(&y.as_f64())
                .unwrap_or(Ordering::Equal),
            (Some(Value::String(x)), Some(Value::String(y))) => {
                match (x.parse::<Timestamp>(), y.parse::<Timestamp>()) {
                    (Ok(tx), Ok(ty)) => tx.cmp(&ty),
                    _ => x.cmp(y),
                }
            }
            (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
        }
    }
    objects.sort_by(|a, b| {
        compare(
            a.pointer(pointer).filter(|v| !v.is_null()),
            b.pointer(pointer).filter(|v| !v.is_null()),
        )
    });
}

/// The rows of a table, with the headers.
#[derive(Debug)]
pub struct Rows {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// How a kind's objects are shown as table rows.
#[derive(Debug, Clone, Copy)]
pub struct TableOptions {
    pub wide: bool,
    pub with_namespace: bool,
    /// Several kinds in one output: names read `pod/web`.
    pub with_kind: bool,
    pub show_labels: bool,
}

pub fn table_rows(
    resource: &Resource,
    objects: &[Value],
    options: TableOptions,
    now: Timestamp,
) -> Rows {
    let mut headers: Vec<String> = resource
        .printer
        .headers(options.wide)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let with_namespace = options.with_namespace && resource.namespaced;
    if with_namespace {
        headers.insert(0, "NAMESPACE".into());
    }
    if options.show_labels {
        headers.push("LABELS".into());
    }
    let name_column = headers.iter().position(|h| h == "NAME");
    let rows = objects
        .iter()
        .map(|o| {
            let mut row = resource.printer.row(o, options.wide, now);
            if with_namespace {
                row.insert(
                    0,
                    o.pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                );
            }
            if let (true, Some(i)) = (options.with_kind, name_column) {
                row[i] = format!("{}/{}", resource.qualified_singular(), row[i]);
            }
            if options.show_labels {
                row.push(format_labels(o.pointer("/metadata/labels")));
            }
            row
        })
        .collect();
    Rows { headers, rows }
}

/// `pod/web`.
pub fn object_name(resource: &Resource, object: &Value) -> String {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    format!("{}/{name}", resource.qualified_singular())
}

/// JSON as kubectl prints it (four-space indent).
pub fn to_json(value: &Value) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    if serde::Serialize::serialize(value, &mut serializer).is_err() {
        return value.to_string();
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn to_yaml(value: &Value) -> anyhow::Result<String> {
    serde_yaml_ng::to_string(value).context("cannot print YAML")
}

/// Several objects as one `List`, as kubectl prints them.
pub fn list_of(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})
}

pub async fn run(args: GetArgs) -> anyhow::Result<ExitCode> {
    report(get(args).await)
}

async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let output = Output::parse(args.output.as_deref())?;
    let groups = requests(&args.kind, &args.names)?;
    if let Some(expr) = &args.sort_by {
        field_pointer(expr)?;
    }
    let client = args.api.client();
    if args.watch {
        let [(resource, names)] = groups.as_slice() else {
            anyhow::bail!("watch is only supported on individual resources and resource collections, but {} kinds were asked for", groups.len());
        };
        if names.len() > 1 {
            anyhow::bail!("watch is only supported on individual resources and resource collections, but {} resources were found", names.len());
        }
        return watch(
            &client,
            &args,
            resource,
            names.first().map(String::as_str),
            output,
        )
        .await;
    }

    let namespace = (!args.all_namespaces).then_some(args.namespace.as_str());
    let with_kind = groups.len() > 1;
    let single = groups.len() == 1 && groups[0].1.len() == 1;
    let mut failed = false;
    let mut all: Vec<Value> = Vec::new();
    let mut tables = Vec::new();
    let mut out = String::new();
    for (resource, names) in &groups {
        let mut objects = Vec::new();
        if names.is_empty() {
            let path = list_path(
                resource,
                namespace,
                args.selector.as_deref(),
                args.field_selector.as_deref(),
            );
            objects = items(client.get(&path).await?);
        } else {
            for name in names {
                let path = resource.object_path(&args.namespace, name);
                match client.get(&path).await {
                    Ok(object) => objects.push(object),
                    Err(e) => match e.downcast_ref::<StatusError>() {
                        // Print the others; kubectl reports each missing one.
                        Some(status) if status.is_not_found() => {
                            eprintln!("{status}");
                            failed = true;
                        }
                        _ => return Err(e),
                    },
                }
            }
        }
        if let Some(expr) = &args.sort_by {
            sort_by(&mut objects, &field_pointer(expr)?);
        }
        match output {
            Output::Table { wide } => {
                if !objects.is_empty() {
                    let options = TableOptions {
                        wide,
                        with_namespace: args.all_namespaces,
                        with_kind,
                        show_labels: args.show_labels,
                    };
                    tables.push(table_rows(resource, &objects, options, Timestamp::now()));
                }
            }
            Output::Name => {
                for o in &objects {
                    out.push_str(&object_name(resource, o));
                    out.push('\n');
                }
            }
            Output::Json | Output::Yaml => all.extend(objects),
        }
    }
    match output {
        Output::Table { .. } => {
            for (i, t) in tables.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                let headers: Vec<&str> = t.headers.iter().map(String::as_str).collect();
                out.push_str(&table::render(&headers, &t.rows, args.no_headers));
            }
            if tables.is_empty() && !failed {
                let scope = match namespace {
                    Some(ns) if groups.iter().any(|(r, _)| r.namespaced) => {
                        format!(" in {ns} namespace")
                    }
                    _ => String::new(),
                };
                eprintln!("No resources found{scope}.");
            }
        }
        Output::Json | Output::Yaml => {
            let value = if single && all.len() == 1 {
                all.pop().unwrap_or(Value::Null)
            } else if single && all.is_empty() {
                Value::Null
            } else {
                list_of(all)
            };
            if !value.is_null() {
                out = if output == Output::Json {
                    to_json(&value) + "\n"
                } else {
                    to_yaml(&value)?
                };
            }
        }
        Output::Name => {}
    }
    write_stdout(out.as_bytes())?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Pads a row to the widths seen so far, growing them as needed.
fn pad_row(widths: &mut Vec<usize>, row: &[String]) -> String {
    if widths.len() < row.len() {
        widths.resize(row.len(), 0);
    }
    let last = row.len().saturating_sub(1);
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        widths[i] = widths[i].max(cell.len());
        if i == last {
            line.push_str(cell);
        } else {
            line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
        }
    }
    line.push('\n');
    line
}

/// `get -w`: the current objects, then each change as it happens.
async fn watch(
    client: &Client,
    args: &GetArgs,
    resource: &'static Resource,
    name: Option<&str>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let namespace = (!args.all_namespaces).then_some(args.namespace.as_str());
    let mut fields: Vec<String> = args.field_selector.iter().cloned().collect();
    if let Some(name) = name {
        fields.push(format!("metadata.name={name}"));
    }
    let fields = fields.join(",");
    let base = list_path(resource, namespace, args.selector.as_deref(), Some(&fields));
    let mut widths: Vec<usize> = Vec::new();
    let mut first = true;
    let options = TableOptions {
        wide: matches!(output, Output::Table { wide: true }),
        with_namespace: args.all_namespaces,
        with_kind: false,
        show_labels: args.show_labels,
    };
    // Ok(false): stdout was closed.
    let mut print = |objects: &[Value], first: &mut bool| -> anyhow::Result<bool> {
        let mut out = String::new();
        match output {
            Output::Table { .. } => {
                let t = table_rows(resource, objects, options, Timestamp::now());
                if *first && !args.no_headers && !objects.is_empty() {
                    for (i, h) in t.headers.iter().enumerate() {
                        if widths.len() <= i {
                            widths.push(0);
                        }
                        widths[i] = widths[i].max(h.len());
                    }
                    for row in &t.rows {
                        for (i, c) in row.iter().enumerate() {
                            if widths.len() <= i {
                                widths.push(0);
                            }
                            widths[i] = widths[i].max(c.len());
                        }
                    }
                    out.push_str(&pad_row(&mut widths, &t.headers));
                }
                for row in &t.rows {
                    out.push_str(&pad_row(&mut widths, row));
                }
            }
            Output::Name => objects.iter().for_each(|o| {
                out.push_str(&object_name(resource, o));
                out.push('\n');
            }),
            Output::Json => objects.iter().for_each(|o| {
                out.push_str(&to_json(o));
                out.push('\n');
            }),
            Output::Yaml => {
                for o in objects {
                    out.push_str("---\n");
                    out.push_str(&to_yaml(o)?);
                }
            }
        }
        if !objects.is_empty() {
            *first = false;
        }
        write_stdout(out.as_bytes())
    };
    loop {
        let list = client.get(&base).await?;
        let rv = list
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut objects = items(list);
        if let Some(expr) = &args.sort_by {
            sort_by(&mut objects, &field_pointer(expr)?);
        }
        if first && !print(&objects, &mut first)? {
            return Ok(ExitCode::SUCCESS);
        }
        let sep = if base.contains('?') { '&' } else { '?' };
        let mut stream = client
            .stream(&format!("{base}{sep}watch=1&resourceVersion={rv}"))
            .await?;
        loop {
            match stream.event().await {
                Ok(Some((_, object))) => {
                    if !print(std::slice::from_ref(&object), &mut first)? {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                Ok(None) => return Ok(ExitCode::SUCCESS),
                // Too far behind: list again and go on, as informers do.
                Err(e)
                    if e.downcast_ref::<StatusError>()
                        .is_some_and(|s| s.code == 410) =>
                {
                    break
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_by_paths() {
        assert_eq!(
            field_pointer(".lastTimestamp").expect("ok"),
            "/lastTimestamp"
        );
        assert_eq!(
            field_pointer("{.metadata.name}").expect("ok"),
            "/metadata/name"
        );
        assert_eq!(
            field_pointer("metadata.name").expect("ok"),
            "/metadata/name"
        );
        assert_eq!(
            field_pointer(".status.containerStatuses[0].restartCount").expect("ok"),
            "/status/containerStatuses/0/restartCount"
        );
        assert!(field_pointer("").is_err());
        assert!(field_pointer(".a[x]").is_err());
        let mut events = vec![
            json!({"metadata": {"name": "b"}, "lastTimestamp": "2024-05-01T12:00:00Z", "count": 10}),
            json!({"metadata": {"name": "a"}, "lastTimestamp": "2024-05-01T11:00:00.5+00:00", "count": 9}),
            json!({"metadata": {"name": "c"}}),
        ];
        let names = |v: &[Value]| {
            v.iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
        };
        sort_by(&mut events, "/lastTimestamp");
        assert_eq!(names(&events), ["c", "a", "b"]);
        sort_by(&mut events, "/count");
        assert_eq!(names(&events), ["c", "a", "b"]);
        sort_by(&mut events, "/metadata/name");
        assert_eq!(names(&events), ["a", "b", "c"]);
    }

    #[test]
    fn requests_resolve_kinds_and_names() {
        let show = |kind: &str, names: &[&str]| {
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            requests(kind, &names).map(|g| {
                g.iter()
                    .map(|(r, n)| format!("{}:{}", r.plural, n.join("+")))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(show("po", &[]).expect("ok"), ["pods:"]);
        assert_eq!(show("po", &["a", "b"]).expect("ok"), ["pods:a+b"]);
        assert_eq!(
            show("pod/a", &["cm/b", "pods/c"]).expect("ok"),
            ["pods:a+c", "configmaps:b"]
        );
        assert_eq!(
            show("po,cm", &["x"]).expect("ok"),
            ["pods:x", "configmaps:x"]
        );
        assert!(show("pod/a", &["b"]).is_err());
        let err = show("x", &[]).expect_err("unknown").to_string();
        assert!(err.starts_with("the server doesn't have a resource type \"x\"\nknown resource types: namespaces, ns; pods, po;"), "{err}");
    }

    #[test]
    fn tables_add_namespace_kind_and_labels() {
        let pods = resources::lookup("po").expect("pods");
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().expect("time");
        let pod = json!({"metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}, "creationTimestamp": "2024-05-01T11:59:00Z"},
            "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running"}});
        let options = TableOptions {
            wide: false,
            with_namespace: true,
            with_kind: true,
            show_labels: true,
        };
        let t = table_rows(pods, std::slice::from_ref(&pod), options, now);
        let headers: Vec<&str> = t.headers.iter().map(String::as_str).collect();
        assert_eq!(
            table::render(&headers, &t.rows, false),
            "NAMESPACE   NAME      READY   STATUS    RESTARTS   AGE   LABELS\n\
             prod        pod/web   0/1     Running   0          60s   app=web\n"
        );
        assert_eq!(object_name(pods, &pod), "pod/web");
        assert_eq!(
            list_path(pods, Some("a"), Some("app=web"), Some("")),
            "/api/v1/namespaces/a/pods?labelSelector=app%3Dweb"
        );
        let mut widths = Vec::new();
        assert_eq!(
            pad_row(&mut widths, &["NAME".into(), "X".into()]),
            "NAME   X\n"
        );
        assert_eq!(
            pad_row(&mut widths, &["ab".into(), "Y".into()]),
            "ab     Y\n"
        );
    }

    #[test]
    fn outputs() {
        assert_eq!(
            Output::parse(Some("wide")).expect("ok"),
            Output::Table { wide: true }
        );
        assert!(Output::parse(Some("xml")).is_err());
        assert_eq!(
            to_json(&json!({"a": [1]})),
            "{\n    \"a\": [\n        1\n    ]\n}"
        );
        assert_eq!(
            to_yaml(&list_of(vec![])).expect("yaml"),
            "apiVersion: v1\nitems: []\nkind: List\nmetadata:\n  resourceVersion: ''\n"
        );
    }
}
