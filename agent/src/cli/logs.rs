//! `outpost logs POD`: a container's log through the agent's API, as `kubectl logs`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use super::client::{report, write_stdout, ApiArgs};
use super::images::parse_duration;
use crate::api::printers::text;
use crate::api::route::encode;

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The pod (NAME or pod/NAME).
    pub pod: String,
    /// The container; by default the pod's default container.
    #[arg(short, long)]
    pub container: Option<String>,
    /// Keep printing new lines as they are written.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// The previous instance of the container (before its last restart).
    #[arg(short, long)]
    pub previous: bool,
    /// Prefix each line with its RFC 3339 time.
    #[arg(long)]
    pub timestamps: bool,
    /// Only lines newer than this (5s, 2m, 3h).
    #[arg(long)]
    pub since: Option<String>,
    /// Only lines after this RFC 3339 time.
    #[arg(long)]
    pub since_time: Option<String>,
    /// Stop after this many bytes.
    #[arg(long)]
    pub limit_bytes: Option<u64>,
    /// The namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

/// The container kubectl picks when none is named: the
/// `kubectl.kubernetes.io/default-container` annotation, else the first.
/// With a note naming the others when there are several.
pub fn default_container(pod: &Value) -> Option<(String, Option<String>)> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|cs| cs.iter().map(|c| text(c, "/name").to_owned()).collect())
            .unwrap_or_default()
    };
    let containers = names("containers");
    let annotated = text(
        pod,
        "/metadata/annotations/kubectl.kubernetes.io~1default-container",
    );
    let chosen = if !annotated.is_empty() && containers.iter().any(|c| c == annotated) {
        annotated.to_owned()
    } else {
        containers.first()?.clone()
    };
    let mut all = containers.clone();
    all.extend(
        names("initContainers")
            .into_iter()
            .map(|n| format!("{n} (init)")),
    );
    let note = (all.len() > 1 && annotated.is_empty()).then(|| {
        format!(
            "Defaulted container \"{chosen}\" out of: {}",
            all.join(", ")
        )
    });
    Some((chosen, note))
}

/// The log path with its query.
pub fn log_path(
    namespace: &str,
    pod: &str,
    args: &LogsArgs,
    container: Option<&str>,
) -> anyhow::Result<String> {
    let mut query = Vec::new();
    if let Some(c) = container {
        query.push(format!("container={}", encode(c)));
    }
    if args.follow {
        query.push("follow=true".into());
    }
    if args.previous {
        query.push("previous=true".into());
    }
    if args.timestamps {
        query.push("timestamps=true".into());
    }
    if args.tail >= 0 {
        query.push(format!("tailLines={}", args.tail));
    }
    if let Some(n) = args.limit_bytes {
        query.push(format!("limitBytes={n}"));
    }
    match (&args.since, &args.since_time) {
        (Some(_), Some(_)) => {
            anyhow::bail!("at most one of --since-time or --since may be specified")
        }
        (Some(since), None) => {
            let d = parse_duration(since).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            query.push(format!("sinceSeconds={}", d.as_secs().max(1)));
        }
        (None, Some(t)) => {
            let t: jiff::Timestamp = t
                .parse()
                .with_context(|| format!("--since-time: {t:?} is not an RFC 3339 time"))?;
            query.push(format!("sinceTime={}", encode(&t.to_string())));
        }
        (None, None) => {}
    }
    let base = format!("/api/v1/namespaces/{namespace}/pods/{pod}/log");
    Ok(if query.is_empty() {
        base
    } else {
        format!("{base}?{}", query.join("&"))
    })
}

pub async fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    report(logs(args).await)
}

async fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let pod = match args.pod.split_once('/') {
        Some(("pod" | "pods" | "po", name)) => name.to_owned(),
        Some((kind, _)) => {
            anyhow::bail!("cannot get logs of a {kind}: only pods (pod/NAME) have logs here")
        }
        None => args.pod.clone(),
    };
    let client = args.api.client();
    let container = match &args.container {
        Some(c) => Some(c.clone()),
        None => {
            let object = client
                .get(&format!("/api/v1/namespaces/{}/pods/{pod}", args.namespace))
                .await?;
            match default_container(&object) {
                Some((chosen, note)) => {
                    if let Some(note) = note {
                        eprintln!("{note}");
                    }
                    Some(chosen)
                }
                None => None,
            }
        }
    };
    let path = log_path(&args.namespace, &pod, &args, container.as_deref())?;
    let mut stream = client.stream(&path).await?;
    while let Some(chunk) = stream.chunk().await? {
        if !write_stdout(&chunk)? {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_container_is_kubectls() {
        let one = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(default_container(&one), Some(("a".into(), None)));
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(
            default_container(&two),
            Some((
                "a".into(),
                Some("Defaulted container \"a\" out of: a, b, i (init)".into())
            ))
        );
        let annotated = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/default-container": "b"}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(default_container(&annotated), Some(("b".into(), None)));
        assert_eq!(default_container(&json!({"spec": {}})), None);
    }
}
