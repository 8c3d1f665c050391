//! `outpost delete KIND NAME...` / `outpost delete -f FILE|DIR|-`: kubectl's
//! `delete`. The object's document is removed from the local source (its file
//! when nothing else is left in it); the agent stops and removes what it ran.
//! Objects another source owns are refused, as in `apply`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args};
use serde_json::Value;
use tokio::time::{timeout_at, Instant};

use super::apply::{self, Edit, LocalArgs, Owner};
use super::client::{write_stdout, ApiArgs, Client, StatusError};
use crate::api::resources;
use crate::api::route::encode;
use crate::manifest::{parse_bundle, BundleFile};
use crate::state::ObjectKey;

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// What to delete: KIND NAME... (pod/pods/po, configmap/cm, secret, namespace/ns,
    /// limitrange/limits, resourcequota/quota, …) or KIND/NAME...
    #[arg(value_name = "KIND NAME|KIND/NAME")]
    pub args: Vec<String>,
    /// Delete the objects these manifests define: a file, a directory or - for stdin; repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    pub filenames: Vec<String>,
    /// The namespace of the objects named as arguments.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// An object that does not exist is no error.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Wait until the agent no longer reports the objects (--wait=false: don't).
    #[arg(
        long,
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = ArgAction::Set
    )]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub local: LocalArgs,
}

pub async fn run(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let keys = match (args.args.is_empty(), args.filenames.is_empty()) {
        (true, true) => anyhow::bail!(
            "you must name what to delete: KIND NAME, KIND/NAME or -f FILE (e.g. outpost delete pod web)"
        ),
        (false, false) => anyhow::bail!("name objects either as arguments or with -f, not both"),
        (false, true) => keys_from_args(&args.args, &args.namespace)?,
        (true, false) => {
            let input = apply::read_inputs(&args.filenames, &mut std::io::stdin().lock())?;
            match keys_from_files(&input) {
                Ok(keys) => keys,
                Err(problems) => {
                    for problem in problems {
                        eprintln!("{problem}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    };
    let mut edit = Edit::begin(&args.api, &args.local, "delete").await?;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for key in keys {
        let owner = edit.owner(&key).await?;
        if let Some(Owner::Source(source)) = &owner {
            let message = apply::owned_elsewhere(&key, source, "delete", edit.source.dir());
            errors.push(format!("error: {message}"));
            continue;
        }
        match edit.source.remove(&key) {
            Ok(true) => deleted.push(key),
            Ok(false) if owner == Some(Owner::Agent) => errors.push(format!(
                "error: {} is not from any source (the agent keeps it itself); there is nothing to delete",
                apply::quoted(&key)
            )),
            Ok(false) if args.ignore_not_found => {}
            Ok(false) => errors.push(not_found(&key)),
            Err(e) => errors.push(format!("error: {e}")),
        }
    }
    if !edit.commit()? {
        return Ok(ExitCode::FAILURE);
    }
    let suffix = args.local.dry_run_suffix().unwrap_or("");
    let mut out = String::new();
    for key in &deleted {
        out.push_str(&format!("{}{suffix}\n", deleted_line(key)));
    }
    write_stdout(out.as_bytes())?;
    for e in &errors {
        eprintln!("{e}");
    }
    let mut ok = errors.is_empty();
    if let (Some(client), true, "") = (&edit.agent, args.wait, suffix) {
        let deadline = Instant::now() + args.timeout;
        for key in &deleted {
            if let Err(e) = wait_gone(client, key, deadline).await {
                eprintln!("error: {e:#}");
                ok = false;
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `pod "web" deleted`.
fn deleted_line(key: &ObjectKey) -> String {
    format!(
        "{} \"{}\" deleted",
        apply::type_name(&key.kind, None),
        key.name
    )
}

/// kubectl's words for an object that is nowhere.
fn not_found(key: &ObjectKey) -> String {
    StatusError {
        code: 404,
        reason: "NotFound".into(),
        message: format!("{} \"{}\" not found", apply::plural(&key.kind), key.name),
    }
    .to_string()
}

/// The kind a user means by `name` (kubectl's names: `po`, `cm`, `ns`, `limits`, `quota`, …).
pub(crate) fn kind_of(name: &str) -> anyhow::Result<&'static resources::Resource> {
    super::get::resolve(name)
}

/// The objects `KIND NAME...` or `KIND/NAME...` name; cluster-scoped kinds ignore `namespace`.
pub(crate) fn keys_from_args(args: &[String], namespace: &str) -> anyhow::Result<Vec<ObjectKey>> {
    let key = |resource: &resources::Resource, name: &str| {
        anyhow::ensure!(!name.is_empty(), "an object name must not be empty");
        Ok(if resource.namespaced {
            ObjectKey::namespaced(resource.kind, namespace, name)
        } else {
            ObjectKey::cluster(resource.kind, name)
        })
    };
    let mut keys = Vec::new();
    if args[0].contains('/') {
        for arg in args {
            let (kind, name) = arg.split_once('/').ok_or_else(|| {
                anyhow::anyhow!(
                    "there is no need to specify a resource type as a separate argument when passing \
                     arguments in resource/name form (e.g. 'outpost delete pod/web'): {arg:?}"
                )
            })?;
            keys.push(key(kind_of(kind)?, name)?);
        }
    } else {
        let resource = kind_of(&args[0])?;
        anyhow::ensure!(
            args.len() > 1,
            "resource(s) were provided, but no name was specified: outpost delete {} NAME",
            args[0]
        );
        for name in &args[1..] {
            keys.push(key(resource, name)?);
        }
    }
    keys.dedup();
    Ok(keys)
}

/// The objects manifests define. Only their identity matters: an object
/// with a bad field can still be deleted; a document that names nothing is
/// a problem (returned as the parser renders it).
pub(crate) fn keys_from_files(files: &[BundleFile]) -> Result<Vec<ObjectKey>, Vec<String>> {
    let mut keys: Vec<ObjectKey> = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let text = std::str::from_utf8(&file.content).ok();
        let documents = text
            .map(|t| apply::documents(&file.name, t.strip_prefix('\u{feff}').unwrap_or(t)))
            .unwrap_or_default();
        if text.is_none() || documents.iter().any(|d| d.anonymous) {
            let unnamed = parse_bundle(std::slice::from_ref(file)).err();
            problems.extend(
                unnamed
                    .into_iter()
                    .flat_map(|e| e.problems)
                    .filter(|p| p.object.is_none())
                    .map(|p| p.to_string()),
            );
        }
        for key in documents.into_iter().flat_map(|d| d.keys) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if keys.is_empty() {
        return Err(vec!["error: no objects passed to delete".to_owned()]);
    }
    Ok(keys)
}

/// Waits until the agent no longer reports `key`: one GET, then a watch
/// from that object's version until it is deleted.
async fn wait_gone(client: &Client, key: &ObjectKey, deadline: Instant) -> anyhow::Result<()> {
    let Some(resource) = resources::by_kind(&key.kind) else {
        return Ok(());
    };
    let timed_out = || {
        anyhow::anyhow!(
            "timed out waiting for the condition on {}/{}",
            resource.plural,
            key.name
        )
    };
    loop {
        let Ok(object) = timeout_at(deadline, apply::published(client, key)).await else {
            return Err(timed_out());
        };
        let Some(object) = object? else {
            return Ok(());
        };
        let version = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("0");
        let path = format!(
            "{}?watch=1&fieldSelector={}&resourceVersion={}",
            resource.collection_path(key.namespace.as_deref().map(encode).as_deref()),
            encode(&format!("metadata.name={}", key.name)),
            encode(version)
        );
        let Ok(stream) = timeout_at(deadline, client.stream(&path)).await else {
            return Err(timed_out());
        };
        let mut stream = stream?;
        loop {
            match timeout_at(deadline, stream.event()).await {
                Err(_) => return Err(timed_out()),
                Ok(Ok(Some((kind, object)))) => {
                    let name = object.pointer("/metadata/name").and_then(Value::as_str);
                    if kind == "DELETED" && name == Some(key.name.as_str()) {
                        return Ok(());
                    }
                }
                // The stream ended or its version is too old: look again.
                Ok(Ok(None)) => break,
                Ok(Err(e)) if e.downcast_ref::<StatusError>().is_some() => break,
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(args: &[&str], ns: &str) -> anyhow::Result<Vec<ObjectKey>> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        keys_from_args(&args, ns)
    }

    #[test]
    fn kinds_have_kubectl_names() {
        fn check(name: &str, kind: &str) {
            assert_eq!(kind_of(name).map(|r| r.kind).ok(), Some(kind), "{name}");
        }
        for (names, kind) in [
            (&["pod", "pods", "po", "Pod"][..], "Pod"),
            (&["configmap", "configmaps", "cm"], "ConfigMap"),
            (&["secret", "secrets"], "Secret"),
            (&["namespace", "namespaces", "ns"], "Namespace"),
            (&["limitrange", "limitranges", "limits"], "LimitRange"),
            (
                &["resourcequota", "resourcequotas", "quota"],
                "ResourceQuota",
            ),
        ] {
            for name in names {
                check(name, kind);
            }
        }
        assert!(kind_of("gizmo").is_err());
    }

    #[test]
    fn arguments_name_objects() {
        let pod = |ns: &str, n: &str| ObjectKey::namespaced("Pod", ns, n);
        assert_eq!(
            keys(&["po", "a", "b"], "x").expect("ok"),
            [pod("x", "a"), pod("x", "b")]
        );
        assert_eq!(
            keys(&["pod/a", "cm/b", "ns/prod"], "default").expect("ok"),
            [
                pod("default", "a"),
                ObjectKey::namespaced("ConfigMap", "default", "b"),
                ObjectKey::cluster("Namespace", "prod"),
            ]
        );
        assert_eq!(
            keys(&["namespace", "prod"], "x").expect("ok"),
            [ObjectKey::cluster("Namespace", "prod")]
        );
        assert!(keys(&["pod"], "x").is_err(), "no name");
        assert!(keys(&["pod/a", "b"], "x").is_err(), "mixed forms");
        assert!(keys(&["pod/"], "x").is_err(), "empty name");
    }

    #[test]
    fn files_name_objects_even_when_invalid() {
        let file = |content: &str| BundleFile {
            name: "STDIN".into(),
            content: content.as_bytes().to_vec(),
        };
        let bad_field = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  nope: 1\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n";
        assert_eq!(
            keys_from_files(&[file(bad_field)]),
            Ok(vec![
                ObjectKey::namespaced("Pod", "default", "web"),
                ObjectKey::namespaced("ConfigMap", "default", "c"),
            ])
        );
        let unnamed = "apiVersion: v1\nkind: Pod\nmetadata: {}\n";
        let problems = keys_from_files(&[file(unnamed)]).expect_err("no name");
        assert!(
            problems[0].starts_with("STDIN (document 1)"),
            "{problems:?}"
        );
        assert!(keys_from_files(&[file("# nothing\n")]).is_err());
    }

    #[test]
    fn messages_read_like_kubectl() {
        let key = ObjectKey::namespaced("Pod", "default", "x");
        assert_eq!(
            not_found(&key),
            "Error from server (NotFound): pods \"x\" not found"
        );
        assert_eq!(deleted_line(&key), "pod \"x\" deleted");
        assert_eq!(
            deleted_line(&ObjectKey::namespaced("Deployment", "default", "w")),
            "deployment.apps \"w\" deleted"
        );
    }
}
