//! kubectl's workload verbs: `scale`, `set image` and `rollout
//! status|history|undo|restart|pause|resume`. The edits go into the local
//! source, as `apply` does (objects another source owns are refused), and
//! then wait until the agent has taken them (its `metadata.generation`
//! moved), so `outpost set image … && outpost rollout status …` watches the
//! new rollout, not the old one. `rollout status` and `history` read the
//! agent's API.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::apply::{self, Edit, LocalArgs, NewObject, Owner};
use super::client::{write_stdout, ApiArgs, Client};
use crate::api::resources::{self, Resource};
use crate::api::route::encode;
use crate::controllers::{RESTARTED_AT_ANNOTATION, REVISION_ANNOTATION, TEMPLATE_HASH_LABEL};
use crate::state::ObjectKey;

/// How long an edit waits for the agent to take it.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `rollout status` looks.
const STATUS_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// deployment/NAME (or: deployment NAME).
    #[arg(value_name = "KIND/NAME", num_args = 1..=2, required = true)]
    pub target: Vec<String>,
    /// The new number of replicas.
    #[arg(long)]
    pub replicas: i32,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub local: LocalArgs,
}

#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Change container images: `set image deployment/NAME CONTAINER=IMAGE ...` (`*=IMAGE`: all).
    Image(SetImageArgs),
}

#[derive(Debug, Args)]
pub struct SetImageArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// KIND/NAME then CONTAINER=IMAGE pairs.
    #[arg(value_name = "KIND/NAME CONTAINER=IMAGE", num_args = 2.., required = true)]
    pub args: Vec<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub local: LocalArgs,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Wait for a rollout to finish: exit 0 when complete, 1 when its progress deadline is exceeded.
    Status(StatusArgs),
    /// List the revisions of a Deployment.
    History(HistoryArgs),
    /// Go back to the previous revision (or --to-revision=N).
    Undo(UndoArgs),
    /// Replace every pod, one rollout (sets the restartedAt annotation).
    Restart(TargetArgs),
    /// Stop rolling out template changes (scaling still applies).
    Pause(TargetArgs),
    /// Roll out template changes again.
    Resume(TargetArgs),
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// deployment/NAME (or: deployment NAME).
    #[arg(value_name = "KIND/NAME", num_args = 1..=2, required = true)]
    pub target: Vec<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub local: LocalArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[arg(value_name = "KIND/NAME", num_args = 1..=2, required = true)]
    pub target: Vec<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// How long to wait (0: forever).
    #[arg(long, default_value = "0s", value_parser = super::parse_duration)]
    pub timeout: Duration,
    /// Wait for the rollout to finish (--watch=false: report once).
    #[arg(short, long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[arg(value_name = "KIND/NAME", num_args = 1..=2, required = true)]
    pub target: Vec<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Show the pod template of this revision.
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[arg(value_name = "KIND/NAME", num_args = 1..=2, required = true)]
    pub target: Vec<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// The revision to go back to (0: the previous one).
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
    #[command(flatten)]
    pub local: LocalArgs,
}

/// `deployment/web` or `deployment web`, for the kinds `allowed`.
fn target(
    args: &[String],
    namespace: &str,
    allowed: &[&str],
    verb: &str,
) -> anyhow::Result<(&'static Resource, ObjectKey)> {
    let (kind, name) = match args {
        [one] => one.split_once('/').ok_or_else(|| {
            anyhow::anyhow!(
                "name the object as KIND/NAME or KIND NAME (e.g. outpost {verb} deployment/web)"
            )
        })?,
        [kind, name] => (kind.as_str(), name.as_str()),
        _ => anyhow::bail!("name one object: KIND/NAME"),
    };
    anyhow::ensure!(!name.is_empty(), "an object name must not be empty");
    let resource = super::get::resolve(kind)?;
    anyhow::ensure!(
        allowed.contains(&resource.kind),
        "outpost {verb} does not work on {}: only on {}",
        resource.plural,
        allowed
            .iter()
            .map(|k| resources::by_kind(k).map_or(*k, |r| r.plural))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok((
        resource,
        ObjectKey::namespaced(resource.kind, namespace, name),
    ))
}

/// `deployment.apps/web`.
fn object_name(resource: &Resource, key: &ObjectKey) -> String {
    format!("{}/{}", resource.qualified_singular(), key.name)
}

/// What an edit did.
enum Edited {
    Changed,
    Unchanged,
}

/// Edits the object `key` in the local source with `change` (on its value as
/// written), then waits for the agent to take it.
async fn edit(
    api: &ApiArgs,
    local: &LocalArgs,
    key: &ObjectKey,
    verb: &str,
    change: impl FnOnce(&mut Value) -> anyhow::Result<bool>,
) -> anyhow::Result<Edited> {
    let mut edit = Edit::begin(api, local, verb).await?;
    if let Some(Owner::Source(source)) = edit.owner(key).await? {
        anyhow::bail!(apply::owned_elsewhere(
            key,
            &source,
            verb,
            edit.source.dir()
        ));
    }
    let Some(mut raw) = edit.source.raw(key) else {
        anyhow::bail!(
            "{} not found in the local source {}",
            apply::quoted(key),
            edit.source.dir().display()
        );
    };
    if !change(&mut raw)? {
        return Ok(Edited::Unchanged);
    }
    let new = NewObject::from_raw(key, raw).map_err(|problems| {
        anyhow::anyhow!(
            "the change would make {} invalid:\n{}",
            key,
            problems.join("\n")
        )
    })?;
    let before = match &edit.agent {
        Some(client) => generation(client, key).await,
        None => None,
    };
    edit.source.put(&new).map_err(anyhow::Error::msg)?;
    if !edit.commit()? {
        anyhow::bail!("nothing was written");
    }
    if let (Some(client), None) = (&edit.agent, local.dry_run_suffix()) {
        let deadline = Instant::now() + OBSERVE_TIMEOUT;
        loop {
            if generation(client, key).await > before {
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "warning: the agent has not taken the change to {key} yet (is {} its local source?)",
                    edit.source.dir().display()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(Edited::Changed)
}

/// The published object's `metadata.generation`.
async fn generation(client: &Client, key: &ObjectKey) -> Option<i64> {
    let object = apply::published(client, key).await.ok()??;
    object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
}

pub async fn scale(args: ScaleArgs) -> anyhow::Result<ExitCode> {
    let (resource, key) = target(&args.target, &args.namespace, &["Deployment"], "scale")?;
    anyhow::ensure!(
        args.replicas >= 0,
        "--replicas={} is invalid: it must be 0 or more",
        args.replicas
    );
    let replicas = args.replicas;
    edit(&args.api, &args.local, &key, "scale", |raw| {
        if raw.pointer("/spec/replicas").and_then(Value::as_i64) == Some(replicas.into()) {
            return Ok(false);
        }
        raw["spec"]["replicas"] = json!(replicas);
        Ok(true)
    })
    .await?;
    // kubectl says "scaled" whether or not the count changed.
    let suffix = args.local.dry_run_suffix().unwrap_or("");
    write_stdout(format!("{} scaled{suffix}\n", object_name(resource, &key)).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

pub async fn set(command: SetCommand) -> anyhow::Result<ExitCode> {
    let SetCommand::Image(args) = command;
    let (target_args, pairs): (Vec<String>, Vec<String>) =
        args.args.iter().cloned().partition(|a| !a.contains('='));
    let (resource, key) = target(
        &target_args,
        &args.namespace,
        &["Deployment", "DaemonSet", "Job", "Pod"],
        "set image",
    )?;
    let mut images = BTreeMap::new();
    for pair in &pairs {
        let (container, image) = pair.split_once('=').unwrap_or_default();
        anyhow::ensure!(
            !container.is_empty() && !image.is_empty(),
            "{pair:?} is not CONTAINER=IMAGE"
        );
        images.insert(container.to_owned(), image.to_owned());
    }
    let kind = key.kind.clone();
    let edited = edit(&args.api, &args.local, &key, "set image", |raw| {
        let spec = if kind == "Pod" {
            raw.pointer_mut("/spec")
        } else {
            raw.pointer_mut("/spec/template/spec")
        };
        let spec = spec.ok_or_else(|| anyhow::anyhow!("{key} has no pod spec"))?;
        set_images(spec, &images)
    })
    .await?;
    if let Edited::Changed = edited {
        let suffix = args.local.dry_run_suffix().unwrap_or("");
        write_stdout(
            format!("{} image updated{suffix}\n", object_name(resource, &key)).as_bytes(),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Sets container images in a pod spec; `*` means every container. Whether anything changed.
fn set_images(spec: &mut Value, images: &BTreeMap<String, String>) -> anyhow::Result<bool> {
    let mut changed = false;
    for (container, image) in images {
        let mut found = false;
        for list in ["initContainers", "containers"] {
            for c in spec
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if container == "*" || c["name"] == container.as_str() {
                    found = true;
                    if c["image"] != image.as_str() {
                        c["image"] = json!(image);
                        changed = true;
                    }
                }
            }
        }
        anyhow::ensure!(found, "unable to find container named {container:?}");
    }
    Ok(changed)
}

pub async fn rollout(command: RolloutCommand) -> anyhow::Result<ExitCode> {
    match command {
        RolloutCommand::Status(args) => status(args).await,
        RolloutCommand::History(args) => history(args).await,
        RolloutCommand::Undo(args) => undo(args).await,
        RolloutCommand::Restart(args) => {
            let (resource, key) = target(
                &args.target,
                &args.namespace,
                &["Deployment", "DaemonSet"],
                "rollout restart",
            )?;
            let now = crate::events::now();
            edit(&args.api, &args.local, &key, "rollout restart", |raw| {
                raw["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION] =
                    json!(now);
                Ok(true)
            })
            .await?;
            let suffix = args.local.dry_run_suffix().unwrap_or("");
            write_stdout(
                format!("{} restarted{suffix}\n", object_name(resource, &key)).as_bytes(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        RolloutCommand::Pause(args) => pause(args, true).await,
        RolloutCommand::Resume(args) => pause(args, false).await,
    }
}

async fn pause(args: TargetArgs, paused: bool) -> anyhow::Result<ExitCode> {
    let verb = if paused {
        "rollout pause"
    } else {
        "rollout resume"
    };
    let (resource, key) = target(&args.target, &args.namespace, &["Deployment"], verb)?;
    let edited = edit(&args.api, &args.local, &key, verb, |raw| {
        let now = raw
            .pointer("/spec/paused")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if now == paused {
            return Ok(false);
        }
        match raw["spec"].as_object_mut() {
            Some(spec) if paused => {
                spec.insert("paused".into(), json!(true));
            }
            Some(spec) => {
                spec.remove("paused");
            }
            None => anyhow::bail!("{key} has no spec"),
        }
        Ok(true)
    })
    .await?;
    match edited {
        Edited::Changed => {
            let done = if paused { "paused" } else { "resumed" };
            let suffix = args.local.dry_run_suffix().unwrap_or("");
            write_stdout(format!("{} {done}{suffix}\n", object_name(resource, &key)).as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Edited::Unchanged => {
            let state = if paused {
                "already paused"
            } else {
                "not paused"
            };
            anyhow::bail!("{} is {state}", apply::quoted(&key))
        }
    }
}

/// The published object, or a NotFound error in the API server's words.
async fn published(client: &Client, key: &ObjectKey) -> anyhow::Result<Value> {
    apply::published(client, key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{} not found", apply::quoted(key)))
}

/// kubectl's `DeploymentStatusViewer`: a message and whether the rollout is done.
pub fn deployment_status(d: &Value) -> Result<(String, bool), String> {
    let name = d
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let int = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    if int("/metadata/generation") > int("/status/observedGeneration") {
        return Ok((
            "Waiting for deployment spec update to be observed...".into(),
            false,
        ));
    }
    let progressing = d
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"));
    if progressing.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
        return Err(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let replicas = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let updated = int("/status/updatedReplicas");
    let total = int("/status/replicas");
    let available = int("/status/availableReplicas");
    if updated < replicas {
        return Ok((format!("Waiting for deployment {name:?} rollout to finish: {updated} out of {replicas} new replicas have been updated..."), false));
    }
    if total > updated {
        return Ok((format!("Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...", total - updated), false));
    }
    if available < updated {
        return Ok((format!("Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."), false));
    }
    Ok((format!("deployment {name:?} successfully rolled out"), true))
}

/// kubectl's `DaemonSetStatusViewer`.
fn daemon_set_status(ds: &Value) -> Result<(String, bool), String> {
    let name = ds
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let int = |p: &str| ds.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    if int("/metadata/generation") > int("/status/observedGeneration") {
        return Ok((
            "Waiting for daemon set spec update to be observed...".into(),
            false,
        ));
    }
    let desired = int("/status/desiredNumberScheduled");
    let updated = int("/status/updatedNumberScheduled");
    let available = int("/status/numberAvailable");
    if updated < desired {
        return Ok((format!("Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."), false));
    }
    if available < desired {
        return Ok((format!("Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."), false));
    }
    Ok((format!("daemon set {name:?} successfully rolled out"), true))
}

async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (_, key) = target(
        &args.target,
        &args.namespace,
        &["Deployment", "DaemonSet"],
        "rollout status",
    )?;
    let client = args.api.client();
    let deadline = (!args.timeout.is_zero()).then(|| Instant::now() + args.timeout);
    let mut last = String::new();
    loop {
        let object = published(&client, &key).await?;
        let viewed = if key.kind == "Deployment" {
            deployment_status(&object)
        } else {
            daemon_set_status(&object)
        };
        match viewed {
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::FAILURE);
            }
            Ok((message, done)) => {
                if message != last {
                    write_stdout(format!("{message}\n").as_bytes())?;
                    last = message;
                }
                if done {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!("error: timed out waiting for the condition");
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(STATUS_POLL).await;
    }
}

/// The ReplicaSets a Deployment owns, by revision.
async fn revisions(client: &Client, deployment: &Value) -> anyhow::Result<BTreeMap<i64, Value>> {
    let ns = deployment
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let uid = deployment
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let rs = resources::by_kind("ReplicaSet").expect("ReplicaSet is served");
    let list = client.get(&rs.collection_path(Some(&encode(ns)))).await?;
    let mut by_revision = BTreeMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let owned = item
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid));
        let revision = item
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(REVISION_ANNOTATION))
            .and_then(Value::as_str)
            .and_then(|r| r.parse::<i64>().ok());
        if let (true, Some(revision)) = (owned, revision) {
            by_revision.insert(revision, item.clone());
        }
    }
    Ok(by_revision)
}

async fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let (resource, key) = target(
        &args.target,
        &args.namespace,
        &["Deployment"],
        "rollout history",
    )?;
    let client = args.api.client();
    let deployment = published(&client, &key).await?;
    let revisions = revisions(&client, &deployment).await?;
    let name = object_name(resource, &key);
    if args.revision > 0 {
        let Some(rs) = revisions.get(&args.revision) else {
            anyhow::bail!("unable to find the specified revision");
        };
        let mut template = rs["spec"]["template"].clone();
        if let Some(labels) = template
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.remove(TEMPLATE_HASH_LABEL);
        }
        let yaml = serde_yaml_ng::to_string(&template).unwrap_or_default();
        let mut out = format!("{name} with revision #{}\nPod Template:\n", args.revision);
        for line in yaml.lines() {
            out.push_str(&format!("  {line}\n"));
        }
        write_stdout(out.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!("{name} \nREVISION  CHANGE-CAUSE\n");
    for (revision, rs) in &revisions {
        let cause = rs
            .pointer("/metadata/annotations")
            .and_then(|a| a.get("kubernetes.io/change-cause"))
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        out.push_str(&format!("{revision:<10}{cause}\n"));
    }
    out.push('\n');
    write_stdout(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

async fn undo(args: UndoArgs) -> anyhow::Result<ExitCode> {
    let (resource, key) = target(
        &args.target,
        &args.namespace,
        &["Deployment"],
        "rollout undo",
    )?;
    let client = args.api.client();
    let deployment = published(&client, &key).await?;
    let revisions = revisions(&client, &deployment).await?;
    let current = revisions.keys().next_back().copied().unwrap_or(0);
    let wanted = if args.to_revision == 0 {
        let previous = revisions.keys().rev().nth(1).copied();
        previous.ok_or_else(|| {
            anyhow::anyhow!("no rollout history found for deployment {:?}", key.name)
        })?
    } else {
        args.to_revision
    };
    let Some(rs) = revisions.get(&wanted) else {
        anyhow::bail!("unable to find specified revision {wanted} in history");
    };
    let name = object_name(resource, &key);
    let suffix = args.local.dry_run_suffix().unwrap_or("");
    if wanted == current {
        write_stdout(format!("{name} skipped rollback (current template already matches revision {wanted}){suffix}\n").as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut template = rs["spec"]["template"].clone();
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(TEMPLATE_HASH_LABEL);
    }
    edit(&args.api, &args.local, &key, "rollout undo", |raw| {
        raw["spec"]["template"] = template;
        Ok(true)
    })
    .await?;
    write_stdout(format!("{name} rolled back{suffix}\n").as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_are_kubectls() {
        let check = |status: Value, generation: i64, expect: Result<(&str, bool), &str>| {
            let d = json!({"metadata": {"name": "web", "generation": generation}, "spec": {"replicas": 3}, "status": status});
            let got = deployment_status(&d);
            let expect = expect
                .map(|(m, done)| (m.to_owned(), done))
                .map_err(str::to_owned);
            assert_eq!(got, expect);
        };
        check(
            json!({"observedGeneration": 1}),
            2,
            Ok((
                "Waiting for deployment spec update to be observed...",
                false,
            )),
        );
        check(
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}),
            2,
            Ok(("Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...", false)),
        );
        check(
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
            2,
            Ok(("Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...", false)),
        );
        check(
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
            2,
            Ok(("Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...", false)),
        );
        check(
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
            2,
            Ok(("deployment \"web\" successfully rolled out", true)),
        );
        check(
            json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
            2,
            Err("deployment \"web\" exceeded its progress deadline"),
        );
    }

    #[test]
    fn images_are_set_by_container_name() {
        let mut spec = json!({"initContainers": [{"name": "init", "image": "a:1"}], "containers": [{"name": "app", "image": "a:1"}, {"name": "side", "image": "b:1"}]});
        let images = BTreeMap::from([("app".to_owned(), "a:2".to_owned())]);
        assert!(set_images(&mut spec, &images).expect("set"));
        assert_eq!(spec["containers"][0]["image"], "a:2");
        assert_eq!(spec["containers"][1]["image"], "b:1");
        assert!(
            !set_images(&mut spec, &images).expect("set"),
            "unchanged the second time"
        );
        let all = BTreeMap::from([("*".to_owned(), "c:1".to_owned())]);
        assert!(set_images(&mut spec, &all).expect("set"));
        assert_eq!(spec["initContainers"][0]["image"], "c:1");
        let missing = BTreeMap::from([("nope".to_owned(), "c:1".to_owned())]);
        assert_eq!(
            set_images(&mut spec, &missing)
                .expect_err("missing")
                .to_string(),
            "unable to find container named \"nope\""
        );
    }
}
