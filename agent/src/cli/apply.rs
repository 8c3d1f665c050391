//! `outpost apply -f FILE|DIR|-`: kubectl's `apply`, for a node without an
//! API server to write to. Objects go into the local source, the directory
//! of the agent's first `file://` source, whose watcher picks them up within
//! a second. Objects another source owns are refused: the change belongs
//! there. `delete` shares the machinery here.
//!
//! Nothing is written unless the whole directory, edits included, still
//! reads as a valid bundle (the agent would reject all of it otherwise);
//! each file is replaced atomically (temp file in the same directory, then
//! rename), so the watcher never sees half of one.

mod local;

use std::fs::{self, File};
use std::io::{Read, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use nix::fcntl::{Flock, FlockArg};
use serde::Deserialize;
use serde_json::Value;

use local::Change;
pub(crate) use local::NewObject;
pub(crate) use local::{documents, LocalSource};

use super::client::{write_stdout, ApiArgs, Client, StatusError};
use crate::agent::SOURCE_ANNOTATION;
use crate::api::resources;
use crate::api::route::encode;
use crate::manifest::{parse_bundle, BundleFile, Object};
use crate::state::ObjectKey;

/// Where the local source is when nothing says otherwise (the agent's default source).
const DEFAULT_MANIFESTS: &str = "/etc/outpost/manifests";

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Manifests to apply: a file, a directory (its *.yaml, *.yml and *.json) or - for stdin; repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR|-"
    )]
    pub filenames: Vec<String>,
    #[command(flatten)]
    pub local: LocalArgs,
}

/// Which local source `apply` and `delete` edit, and whether they really do.
#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    /// The local source directory to edit [default: the agent's first file://
    /// source, from <run-dir>/sources.json, else /etc/outpost/manifests].
    #[arg(long, env = "OUTPOST_MANIFESTS", value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Only print what would be done (client and server mean the same here; none does it).
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "client",
        value_parser = ["none", "client", "server"],
        value_name = "STRATEGY"
    )]
    pub dry_run: Option<String>,
}

impl LocalArgs {
    /// What kubectl adds to each line of a dry run: ` (dry run)`; `None` when not one.
    pub(crate) fn dry_run_suffix(&self) -> Option<&'static str> {
        match self.dry_run.as_deref() {
            None | Some("none") => None,
            Some("server") => Some(" (server dry run)"),
            Some(_) => Some(" (dry run)"),
        }
    }
}

pub async fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let input = read_inputs(&args.filenames, &mut std::io::stdin().lock())?;
    let parsed = match parse_bundle(&input) {
        Ok(parsed) => parsed,
        Err(e) => {
            for problem in &e.problems {
                eprintln!("{problem}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if parsed.is_empty() {
        anyhow::bail!("no objects passed to apply");
    }
    let objects = local::new_objects(&input, parsed);
    let mut edit = Edit::begin(&args.api, &args.local, "apply").await?;
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for new in &objects {
        if let Some(Owner::Source(source)) = edit.owner(&new.key).await? {
            errors.push(owned_elsewhere(
                &new.key,
                &source,
                "apply",
                edit.source.dir(),
            ));
            continue;
        }
        match edit.source.put(new) {
            Ok(outcome) => lines.push(format!("{} {outcome}", object_name(new))),
            Err(e) => errors.push(e),
        }
    }
    if !edit.commit()? {
        return Ok(ExitCode::FAILURE);
    }
    let suffix = args.local.dry_run_suffix().unwrap_or("");
    let mut out = String::new();
    for line in lines {
        out.push_str(&format!("{line}{suffix}\n"));
    }
    write_stdout(out.as_bytes())?;
    for e in &errors {
        eprintln!("error: {e}");
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `pod/web`, `deployment.apps/web`: how kubectl names an object it applied.
fn object_name(new: &NewObject) -> String {
    let api_version = match &new.object {
        Object::Unsupported(u) => Some(u.api_version.as_str()),
        _ => None,
    };
    format!("{}/{}", type_name(&new.key.kind, api_version), new.key.name)
}

/// kubectl's name for a type in messages: `pod`, `deployment.apps`.
pub(crate) fn type_name(kind: &str, api_version: Option<&str>) -> String {
    if let Some(resource) = resources::by_kind(kind) {
        return resource.qualified_singular();
    }
    let kind = kind.to_ascii_lowercase();
    match api_version.and_then(|v| v.split_once('/')) {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind,
    }
}

/// How the API server names objects in errors: `pods "web" in namespace "default"`.
pub(crate) fn quoted(key: &ObjectKey) -> String {
    let plural = plural(&key.kind);
    match &key.namespace {
        Some(ns) => format!("{plural} \"{}\" in namespace \"{ns}\"", key.name),
        None => format!("{plural} \"{}\"", key.name),
    }
}

/// The resource name of a kind: `pods`.
pub(crate) fn plural(kind: &str) -> String {
    match resources::by_kind(kind) {
        Some(resource) => resource.plural.to_owned(),
        None => format!("{}s", kind.to_ascii_lowercase()),
    }
}

/// Who owns an object the agent publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The agent does not publish it.
    Nobody,
    /// The local source.
    Local,
    /// Another source (its URL).
    Source(String),
    /// The agent itself: published without a source (`default` namespace, …).
    Agent,
}

/// Who owns `published` (the object as the API returned it; `None`: not
/// found), given the local source `local_dir`.
pub(crate) fn owner(published: Option<&Value>, local_dir: &Path) -> Owner {
    let Some(object) = published else {
        return Owner::Nobody;
    };
    let source = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SOURCE_ANNOTATION))
        .and_then(Value::as_str);
    match source {
        None => Owner::Agent,
        Some(url) if url.strip_prefix("file://").map(Path::new) == Some(local_dir) => Owner::Local,
        Some(url) => Owner::Source(url.to_owned()),
    }
}

/// Why `verb` leaves an object another source owns alone.
pub(crate) fn owned_elsewhere(
    key: &ObjectKey,
    source: &str,
    verb: &str,
    local_dir: &Path,
) -> String {
    format!(
        "{} is owned by {source}; change it there (outpost {verb} edits only the local source {})",
        quoted(key),
        local_dir.display()
    )
}

/// The agent's sources, as it writes them to `<run-dir>/sources.json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Sources {
    /// The first `file://` source's directory.
    pub local: Option<PathBuf>,
    #[serde(default)]
    pub sources: Vec<String>,
}

fn read_sources(path: &Path) -> anyhow::Result<Option<Sources>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not the agent's sources file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}

/// The local source: `--manifests`/`$OUTPOST_MANIFESTS`, else the agent's
/// (`sources.json`), else the default.
pub(crate) fn choose_dir(
    flag: Option<&Path>,
    sources: Option<&Sources>,
    verb: &str,
) -> Result<PathBuf, String> {
    if let Some(dir) = flag {
        return Ok(dir.to_owned());
    }
    match sources {
        None => Ok(PathBuf::from(DEFAULT_MANIFESTS)),
        Some(Sources {
            local: Some(dir), ..
        }) => Ok(dir.clone()),
        Some(Sources { sources, .. }) => Err(format!(
            "the agent has no file:// source for `outpost {verb}` to edit (its sources: {}); \
             add --source file:///etc/outpost/manifests to the agent, or pass --manifests DIR",
            if sources.is_empty() {
                "none".to_owned()
            } else {
                sources.join(", ")
            }
        )),
    }
}

/// An edit of the local source, with the agent that follows it (when it
/// runs). Other `apply`/`delete` runs wait while it is read and written.
pub(crate) struct Edit {
    pub source: LocalSource,
    /// The agent's API, when it answers.
    pub agent: Option<Client>,
    dry_run: bool,
    _lock: Option<Flock<File>>,
}

impl Edit {
    /// Finds the local source and the agent, locks and reads the directory.
    pub async fn begin(api: &ApiArgs, local: &LocalArgs, verb: &str) -> anyhow::Result<Edit> {
        let sources_path = crate::paths::sources_file(&api.dirs.run_dir);
        let sources = read_sources(&sources_path)?;
        let dir = choose_dir(local.manifests.as_deref(), sources.as_ref(), verb)
            .map_err(anyhow::Error::msg)?;
        let dir = std::path::absolute(&dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let client = api.client();
        let running = tokio::net::UnixStream::connect(client.socket())
            .await
            .is_ok();
        if !running {
            eprintln!(
                "warning: the outpost agent is not running (nothing answers at {}): editing {} \
                 without checking which source owns each object",
                client.socket().display(),
                dir.display()
            );
        } else if let Some(agents) = sources.as_ref().and_then(|s| s.local.as_deref()) {
            if agents != dir {
                eprintln!(
                    "warning: the agent's local source is {}, not {}: it will not see this change",
                    agents.display(),
                    dir.display()
                );
            }
        }
        let dry_run = local.dry_run_suffix().is_some();
        let lock = if dry_run { None } else { lock(&dir)? };
        let source = read_local(&dir)?;
        Ok(Edit {
            source,
            agent: running.then_some(client),
            dry_run,
            _lock: lock,
        })
    }

    /// Who owns `key` by the agent's account; `None` when no agent runs.
    pub async fn owner(&self, key: &ObjectKey) -> anyhow::Result<Option<Owner>> {
        let Some(client) = &self.agent else {
            return Ok(None);
        };
        let published = published(client, key).await?;
        Ok(Some(owner(published.as_ref(), self.source.dir())))
    }

    /// Checks the edited source and writes it (not in a dry run). `false`
    /// (with the problems printed) when it would not be valid: nothing written.
    pub fn commit(&self) -> anyhow::Result<bool> {
        if !self.source.changed() {
            return Ok(true);
        }
        if let Err(problems) = self.source.check() {
            eprintln!(
                "error: the local source {} would be rejected after this change, so nothing was written:",
                self.source.dir().display()
            );
            for problem in problems {
                eprintln!("{problem}");
            }
            return Ok(false);
        }
        if !self.dry_run {
            write_changes(self.source.dir(), &self.source.changes())?;
        }
        Ok(true)
    }
}

/// The API path of an object, if the agent serves its kind.
pub(crate) fn object_path(key: &ObjectKey) -> Option<String> {
    let resource = resources::by_kind(&key.kind)?;
    let ns = key.namespace.as_deref().unwrap_or("");
    Some(resource.object_path(&encode(ns), &encode(&key.name)))
}

/// The object as the agent publishes it; `None` when it does not.
pub(crate) async fn published(client: &Client, key: &ObjectKey) -> anyhow::Result<Option<Value>> {
    let Some(path) = object_path(key) else {
        return Ok(None);
    };
    match client.get(&path).await {
        Ok(object) => Ok(Some(object)),
        Err(e)
            if e.downcast_ref::<StatusError>()
                .is_some_and(StatusError::is_not_found) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Whether a directory entry is one the agent reads (the file source's own rule).
fn is_manifest(name: &str) -> bool {
    crate::source::file::is_manifest(name)
}

/// The manifest files of a directory (following symlinks, regular files
/// only), sorted by name: (name, path).
fn manifest_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let path = entry.path();
        if is_manifest(&name) && fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push((name, path));
        }
    }
    files.sort();
    Ok(files)
}

/// Reads the manifests `apply`/`delete` take: files, directories (not
/// recursively), `-` for `stdin`.
pub(crate) fn read_inputs(
    names: &[String],
    stdin: &mut dyn Read,
) -> anyhow::Result<Vec<BundleFile>> {
    let mut files = Vec::new();
    let mut stdin_read = false;
    for name in names {
        if name == "-" {
            anyhow::ensure!(!stdin_read, "- (stdin) can be given only once");
            stdin_read = true;
            let mut content = Vec::new();
            stdin
                .read_to_end(&mut content)
                .context("cannot read the manifests from stdin")?;
            files.push(BundleFile {
                name: "STDIN".to_owned(),
                content,
            });
            continue;
        }
        let path = Path::new(name);
        let meta = fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!("the path \"{name}\" does not exist"),
            _ => anyhow::Error::new(e).context(format!("cannot read {name}")),
        })?;
        let paths = if meta.is_dir() {
            manifest_files(path)
                .with_context(|| format!("cannot read directory {name}"))?
                .into_iter()
                .map(|(_, p)| p)
                .collect()
        } else {
            vec![path.to_owned()]
        };
        for path in paths {
            let content =
                fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            files.push(BundleFile {
                name: path.display().to_string(),
                content,
            });
        }
    }
    Ok(files)
}

/// The local source as it is on disk (empty when the directory does not exist yet).
pub(crate) fn read_local(dir: &Path) -> anyhow::Result<LocalSource> {
    let shown = dir.display();
    let entries = match manifest_files(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("cannot read the local source {shown}"))
            )
        }
    };
    let mut files = Vec::new();
    for (name, path) in entries {
        let content = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        files.push((name, content));
    }
    Ok(LocalSource::new(dir.to_owned(), files))
}

/// Holds other `apply`/`delete` runs off the directory (an flock on the
/// directory itself: nothing to leave behind in it). `None` when it does not
/// exist yet.
fn lock(dir: &Path) -> anyhow::Result<Option<Flock<File>>> {
    let file = match File::open(dir) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot open {}", dir.display())))
        }
    };
    Flock::lock(file, FlockArg::LockExclusive)
        .map(Some)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", dir.display()))
}

/// Writes the changes into `dir`, each file atomically, then syncs the directory.
pub(crate) fn write_changes(dir: &Path, changes: &[Change]) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for change in changes {
        match change {
            Change::Write {
                name,
                content,
                mode,
            } => {
                let path = dir.join(name);
                write_atomic(&path, content, *mode)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Change::Remove { name } => {
                let path = dir.join(name);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("cannot remove {}", path.display())))
                    }
                    _ => {}
                }
            }
        }
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// Replaces `path` with `content` so that readers see the old file or the new
/// one, never part of it: a hidden temp file in the same directory (the agent
/// skips hidden files), synced, renamed over. An existing file keeps its mode
/// and owner (a symlinked one is written where it points); a new one gets `mode`.
pub(crate) fn write_atomic(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    let target = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path)?,
        _ => path.to_owned(),
    };
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(std::io::Error::other("not a file path"));
    };
    let existing = fs::metadata(&target).ok();
    let temp = dir.join(format!(
        ".{}.outpost-{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&temp);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        if let Some(meta) = &existing {
            file.set_permissions(meta.permissions())?;
            std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))?;
        }
        file.write_all(content)?;
        file.sync_all()?;
        fs::rename(&temp, &target)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
        )
    }

    #[test]
    fn owners_come_from_the_source_annotation() {
        let local = Path::new("/etc/outpost/manifests");
        let with = |source: Option<&str>| {
            let mut object = json!({"metadata": {"name": "web"}});
            if let Some(s) = source {
                object["metadata"]["annotations"] = json!({ SOURCE_ANNOTATION: s });
            }
            object
        };
        let check = |published: Option<Value>, expect: Owner| {
            assert_eq!(owner(published.as_ref(), local), expect, "{published:?}");
        };
        check(None, Owner::Nobody);
        check(Some(with(None)), Owner::Agent);
        check(
            Some(with(Some("file:///etc/outpost/manifests"))),
            Owner::Local,
        );
        check(
            Some(with(Some("file:///etc/outpost/manifests/"))),
            Owner::Local,
        );
        check(
            Some(with(Some("file:///srv/other"))),
            Owner::Source("file:///srv/other".into()),
        );
        check(
            Some(with(Some("https://hub/bundle.yaml"))),
            Owner::Source("https://hub/bundle.yaml".into()),
        );
    }

    #[test]
    fn refusals_say_where_to_change_it() {
        let key = ObjectKey::namespaced("Pod", "default", "web");
        assert_eq!(
            owned_elsewhere(&key, "https://hub/b.yaml", "apply", Path::new("/etc/outpost/manifests")),
            "pods \"web\" in namespace \"default\" is owned by https://hub/b.yaml; change it there \
             (outpost apply edits only the local source /etc/outpost/manifests)"
        );
        assert_eq!(
            quoted(&ObjectKey::cluster("Namespace", "prod")),
            "namespaces \"prod\""
        );
        assert_eq!(type_name("ConfigMap", Some("v1")), "configmap");
        assert_eq!(type_name("Deployment", Some("apps/v1")), "deployment.apps");
        assert_eq!(
            type_name("Widget", Some("example.com/v1")),
            "widget.example.com"
        );
        assert_eq!(
            object_path(&ObjectKey::cluster("Namespace", "prod")).as_deref(),
            Some("/api/v1/namespaces/prod")
        );
        assert_eq!(
            object_path(&ObjectKey::namespaced("ConfigMap", "a", "b")).as_deref(),
            Some("/api/v1/namespaces/a/configmaps/b")
        );
        assert_eq!(
            object_path(&ObjectKey::namespaced("Widget", "a", "b")),
            None
        );
    }

    #[test]
    fn the_local_source_is_found_in_order() {
        let agent = Sources {
            local: Some("/srv/m".into()),
            sources: vec!["file:///srv/m".into()],
        };
        let remote_only = Sources {
            local: None,
            sources: vec!["https://hub/b".into()],
        };
        let flag = Path::new("/tmp/x");
        assert_eq!(
            choose_dir(Some(flag), Some(&agent), "apply"),
            Ok(flag.into())
        );
        assert_eq!(choose_dir(None, Some(&agent), "apply"), Ok("/srv/m".into()));
        assert_eq!(
            choose_dir(None, None, "apply"),
            Ok(DEFAULT_MANIFESTS.into())
        );
        let e = choose_dir(None, Some(&remote_only), "delete").expect_err("no local source");
        assert!(
            e.contains("https://hub/b") && e.contains("--manifests"),
            "{e}"
        );
        assert_eq!(
            choose_dir(Some(flag), Some(&remote_only), "apply"),
            Ok(flag.into())
        );
    }

    #[test]
    fn inputs_are_files_directories_and_stdin() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("b.yaml"), pod("b")).expect("write");
        fs::write(dir.path().join("a.json"), "{}").expect("write");
        fs::write(dir.path().join(".hidden.yaml"), "x").expect("write");
        fs::write(dir.path().join("notes.txt"), "x").expect("write");
        fs::create_dir(dir.path().join("sub.yaml")).expect("mkdir");
        let d = dir.path().display().to_string();
        let mut stdin = std::io::Cursor::new(pod("s").into_bytes());
        let files = read_inputs(&[d.clone(), "-".into()], &mut stdin).expect("read");
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                format!("{d}/a.json").as_str(),
                &format!("{d}/b.yaml"),
                "STDIN"
            ]
        );
        assert_eq!(files[2].content, pod("s").into_bytes());
        let e =
            read_inputs(&["-".into(), "-".into()], &mut std::io::empty()).expect_err("stdin twice");
        assert!(e.to_string().contains("only once"));
        let e =
            read_inputs(&[format!("{d}/nope.yaml")], &mut std::io::empty()).expect_err("missing");
        assert_eq!(
            e.to_string(),
            format!("the path \"{d}/nope.yaml\" does not exist")
        );
    }

    #[test]
    fn stdin_objects_go_into_the_local_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut stdin = std::io::Cursor::new(pod("web").into_bytes());
        let input = read_inputs(&["-".into()], &mut stdin).expect("read");
        let objects = local::new_objects(&input, parse_bundle(&input).expect("parses"));
        let mut source = read_local(dir.path()).expect("read");
        assert_eq!(source.put(&objects[0]), Ok(local::Outcome::Created));
        source.check().expect("valid");
        write_changes(dir.path(), &source.changes()).expect("write");
        assert_eq!(
            fs::read_to_string(dir.path().join("pod-default-web.yaml")).expect("read"),
            pod("web")
        );
    }

    #[test]
    fn writes_are_atomic_and_keep_the_file_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.yaml");
        fs::write(&path, "old").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        let inode = fs::metadata(&path).expect("stat").ino();
        write_atomic(&path, b"new", 0o600).expect("write");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(fs::read_to_string(&path).expect("read"), "new");
        assert_ne!(
            meta.ino(),
            inode,
            "replaced by rename, not rewritten in place"
        );
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        // No temp file is left behind.
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.yaml"]);
        // A new file gets the mode asked for; a symlinked one is written where it points.
        write_atomic(&dir.path().join("s.yaml"), b"s", 0o600).expect("write");
        let mode = fs::metadata(dir.path().join("s.yaml"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::os::unix::fs::symlink("a.yaml", dir.path().join("l.yaml")).expect("symlink");
        write_atomic(&dir.path().join("l.yaml"), b"via link", 0o644).expect("write");
        assert!(fs::symlink_metadata(dir.path().join("l.yaml"))
            .expect("stat")
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&path).expect("read"), "via link");
    }

    #[test]
    fn the_temp_file_is_hidden_from_the_agent() {
        let temp = format!(".a.yaml.outpost-{}.tmp", std::process::id());
        assert!(!is_manifest(&temp));
        assert!(is_manifest("a.yaml") && is_manifest("b.JSON") && is_manifest("c.yml"));
        assert!(!is_manifest("a.yaml~") && !is_manifest(".yaml") && !is_manifest("a.txt"));
    }

    #[test]
    fn removing_the_last_object_removes_its_file_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("web.yaml"), pod("web")).expect("write");
        fs::write(dir.path().join("db.yaml"), pod("db")).expect("write");
        let mut source = read_local(dir.path()).expect("read");
        let key = ObjectKey::namespaced("Pod", "default", "web");
        assert_eq!(source.file_of(&key), Some("web.yaml"));
        assert_eq!(source.remove(&key), Ok(true));
        source.check().expect("valid");
        write_changes(dir.path(), &source.changes()).expect("write");
        assert!(!dir.path().join("web.yaml").exists());
        assert!(dir.path().join("db.yaml").exists());
    }

    #[test]
    fn the_directory_lock_is_exclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = lock(dir.path()).expect("lock").expect("dir exists");
        let other = File::open(dir.path()).expect("open");
        assert!(Flock::lock(other, FlockArg::LockExclusiveNonblock).is_err());
        drop(held);
        assert!(lock(&dir.path().join("missing")).expect("no dir").is_none());
    }
}
