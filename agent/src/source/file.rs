//! `file:///dir`: a directory of manifests, watched with inotify (no polling).
//!
//! Each round sets up a fresh watch, then reads the directory, then waits: for
//! events (debounced, since editors write in several steps), for the retry timer
//! while the directory is missing, or for shutdown. Watching before reading means
//! no change can fall between the two. A missing directory is reported as
//! unreachable and its nearest existing ancestor is watched, so it is picked up
//! as soon as it is created; a backoff timer stays armed as a safety net (e.g.
//! filesystems without inotify), which is also the honest `retry_in`.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use futures_util::StreamExt as _;
use inotify::{EventStream, Inotify, WatchMask};
use tokio::time::Instant;

use super::{content_version, Backoff, Outbox, SourceFile, Tuning};

/// Largest manifest file read; a bigger one refuses the whole directory.
const MAX_FILE_SIZE: u64 = 4 << 20;

/// What a read of the directory found.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    Files(Vec<SourceFile>),
    /// Some file cannot be used: the directory is refused as a whole.
    Refused(String),
    /// The directory itself cannot be read.
    Unreachable(String),
}

/// What is being watched in a round.
enum Watch {
    /// The directory itself.
    Dir(EventStream<Vec<u8>>),
    /// An ancestor of the missing directory; `next` is the path component below
    /// it that leads to the directory.
    Ancestor {
        stream: EventStream<Vec<u8>>,
        next: std::ffi::OsString,
    },
    /// Nothing (inotify failed): only the retry timer wakes the task.
    None,
}

pub(super) async fn run(dir: PathBuf, tuning: Tuning, out: Outbox) {
    let mut backoff = Backoff::new(tuning.backoff_base, tuning.backoff_max);
    let mut last_version: Option<String> = None;
    let mut last_refusal: Option<String> = None;
    let mut unwatched = Backoff::new(tuning.backoff_base, tuning.backoff_max);
    loop {
        let mut watch = watch(&dir);
        let scan = {
            let scanned = dir.clone();
            tokio::task::spawn_blocking(move || scan(&scanned))
                .await
                .unwrap_or_else(|e| {
                    Scan::Unreachable(format!("reading {} failed: {e}", dir.display()))
                })
        };
        let mut retry = None;
        match scan {
            Scan::Files(files) => {
                backoff.reset();
                last_refusal = None;
                let version = content_version(&files);
                if last_version.as_deref() != Some(&version) {
                    last_version = Some(version.clone());
                    if !out.bundle(files, version).await {
                        return;
                    }
                }
            }
            Scan::Refused(error) => {
                backoff.reset();
                if last_refusal.as_deref() != Some(&error) {
                    last_refusal = Some(error.clone());
                    if !out.refused(error).await {
                        return;
                    }
                }
            }
            Scan::Unreachable(error) => {
                last_refusal = None;
                let delay = backoff.next_delay();
                retry = Some(Instant::now() + delay);
                if !out.unreachable(error, delay).await {
                    return;
                }
            }
        }
        if matches!(watch, Watch::Dir(_)) {
            unwatched.reset();
        } else if retry.is_none() {
            // The directory is readable but cannot be watched (out of inotify
            // instances or watches): read it again on a slowing timer instead.
            retry = Some(Instant::now() + unwatched.next_delay());
        }
        if !wait(&mut watch, retry, &tuning, &out).await {
            return;
        }
    }
}

/// Waits until something worth a new read happened; false on shutdown.
async fn wait(watch: &mut Watch, retry: Option<Instant>, tuning: &Tuning, out: &Outbox) -> bool {
    // Trailing debounce: read once events pause for `debounce`, but no later
    // than `debounce_max` after the first one.
    let mut first: Option<Instant> = None;
    let mut quiet_until = Instant::now();
    loop {
        let deadline = match first {
            Some(first) => Some(quiet_until.min(first + tuning.debounce_max)),
            None => retry,
        };
        let event = async {
            match watch {
                Watch::Dir(stream) => stream.next().await.map(|e| e.map(|e| change_in_dir(&e))),
                Watch::Ancestor { stream, next } => stream.next().await.map(|e| {
                    e.map(|e| {
                        if relevant_in_ancestor(&e, next) {
                            Change::Writing
                        } else {
                            Change::None
                        }
                    })
                }),
                Watch::None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = out.shutdown.cancelled() => return false,
            () = sleep_until(deadline) => return true,
            event = event => match event {
                Some(Ok(Change::None)) => {}
                Some(Ok(change)) => {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    quiet_until = now + match change {
                        Change::Settled => tuning.settle,
                        _ => tuning.debounce,
                    };
                }
                // The inotify fd failed or closed: a new round after the
                // debounce sets up a new one (and cannot spin).
                Some(Err(_)) | None => {
                    *watch = Watch::None;
                    let now = Instant::now();
                    first.get_or_insert(now);
                    quiet_until = now + tuning.debounce;
                }
            },
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sets up this round's watch: the directory if it exists, else its nearest
/// existing ancestor.
fn watch(dir: &Path) -> Watch {
    let Ok(inotify) = Inotify::init() else {
        return Watch::None;
    };
    // MODIFY too: a large write in progress keeps postponing the read (up to
    // `debounce_max`) instead of being read half-written.
    let in_dir = WatchMask::CREATE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::DELETE
        | WatchMask::ATTRIB
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR;
    let watched = if inotify.watches().add(dir, in_dir).is_ok() {
        None
    } else {
        // Missing, not a directory, or not readable: watch the closest ancestor
        // for the next component on the way down to appear or change.
        let on_ancestor = WatchMask::CREATE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::DELETE
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR;
        let found = dir
            .ancestors()
            .skip(1)
            .zip(dir.ancestors())
            .find_map(|(ancestor, child)| {
                let next = child.file_name()?.to_owned();
                inotify
                    .watches()
                    .add(ancestor, on_ancestor)
                    .ok()
                    .map(|_| next)
            });
        match found {
            Some(next) => Some(next),
            None => return Watch::None,
        }
    };
    let Ok(stream) = inotify.into_event_stream(vec![0u8; 4096]) else {
        return Watch::None;
    };
    match watched {
        None => Watch::Dir(stream),
        Some(next) => Watch::Ancestor { stream, next },
    }
}

/// Whether an event in the watched directory can change what it holds: swap
/// and backup files of editors come and go without touching manifests.
/// What an event in the watched directory says about its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Nothing the agent reads.
    None,
    /// A file is being written (created, modified): more may follow.
    Writing,
    /// A file is complete (closed after writing, renamed into place, removed):
    /// read soon, after a short pause for the rest of a multi-file edit.
    Settled,
}

fn change_in_dir(event: &inotify::EventOwned) -> Change {
    use inotify::EventMask;
    match &event.name {
        Some(name) if is_editor_noise(name) => Change::None,
        Some(_)
            if event.mask.intersects(
                EventMask::CLOSE_WRITE
                    | EventMask::MOVED_TO
                    | EventMask::MOVED_FROM
                    | EventMask::DELETE,
            ) =>
        {
            Change::Settled
        }
        Some(_) => Change::Writing,
        // Events on the directory itself: deleted, moved, unwatched, overflow.
        None => Change::Writing,
    }
}

fn relevant_in_ancestor(event: &inotify::EventOwned, next: &OsStr) -> bool {
    match &event.name {
        Some(name) => name == next,
        None => true,
    }
}

/// Editors' swap, backup, lock and probe files (vim, emacs, nano).
fn is_editor_noise(name: &OsStr) -> bool {
    let name = name.as_encoded_bytes();
    [b".swp".as_slice(), b".swx", b".swo", b"~"]
        .iter()
        .any(|s| name.ends_with(s))
        || name.starts_with(b".#")
        || (name.len() > 1 && name.starts_with(b"#") && name.ends_with(b"#"))
        || name == b"4913"
}

/// Whether a directory entry is read as a manifest: `*.yaml`, `*.yml`, `*.json`,
/// neither hidden nor an editor's backup. `outpost apply/delete` use the same rule.
pub(crate) fn is_manifest(name: &str) -> bool {
    if name.starts_with('.') || name.ends_with('~') {
        return false;
    }
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    !stem.is_empty()
        && ["yaml", "yml", "json"]
            .iter()
            .any(|e| ext.eq_ignore_ascii_case(e))
}

/// Reads the manifests of `dir`, sorted by name (blocking).
fn scan(dir: &Path) -> Scan {
    let shown = dir.display();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Scan::Unreachable(format!(
                "directory {shown} does not exist: create it and put manifests in it"
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Scan::Unreachable(format!(
                "{shown} is not a directory: a file source takes a directory"
            ))
        }
        Err(e) => return Scan::Unreachable(format!("cannot read directory {shown}: {e}")),
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                if let Some(name) = entry.file_name().to_str().filter(|n| is_manifest(n)) {
                    names.push(name.to_owned());
                }
            }
            Err(e) => return Scan::Unreachable(format!("cannot read directory {shown}: {e}")),
        }
    }
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    let mut problems = Vec::new();
    for name in names {
        let path = dir.join(&name);
        match read_manifest(&path) {
            Ok(Some(content)) => files.push(SourceFile {
                name: path.display().to_string(),
                content,
            }),
            Ok(None) => {}
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Scan::Files(files)
    } else {
        Scan::Refused(problems.join("; "))
    }
}

/// Reads one manifest; `None` when it is not a regular file (a directory or
/// FIFO named `*.yaml`) or is gone already (its removal makes another round).
fn read_manifest(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let shown = path.display();
    let limit = MAX_FILE_SIZE >> 20;
    let too_big = |size: u64| {
        format!("{shown} is larger than the {limit} MiB limit ({size} bytes): split it into smaller files")
    };
    // Symlinks are followed (ConfigMap-style mounts); O_NONBLOCK so that opening
    // a FIFO cannot hang the task.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Ok(None);
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(too_big(meta.len()));
    }
    let mut content = Vec::with_capacity(meta.len() as usize);
    // The file may grow while read: never hold more than the limit.
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut content)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if content.len() as u64 > MAX_FILE_SIZE {
        return Err(too_big(content.len() as u64));
    }
    Ok(Some(content))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::super::{spawn_tuned, SourceConfig, SourceUpdate};
    use super::*;

    #[test]
    fn manifest_names() {
        for (name, want) in [
            ("web.yaml", true),
            ("web.yml", true),
            ("web.json", true),
            ("WEB.YAML", true),
            ("web.yaml~", false),
            (".web.yaml", false),
            (".web.yaml.swp", false),
            ("web.yaml.swp", false),
            ("#web.yaml#", false),
            (".#web.yaml", false),
            ("4913", false),
            ("web.txt", false),
            ("web", false),
            (".yaml", false),
        ] {
            assert_eq!(is_manifest(name), want, "{name}");
        }
        for (name, want) in [
            (".web.yaml.swp", true),
            ("web.yaml~", true),
            ("#web.yaml#", true),
            (".#web.yaml", true),
            ("4913", true),
            ("web.yaml", false),
            (".hidden", false),
            ("..data", false),
        ] {
            assert_eq!(is_editor_noise(OsStr::new(name)), want, "{name}");
        }
    }

    /// A file source on a temp dir, with its update channel.
    struct Harness {
        dir: tempfile::TempDir,
        rx: mpsc::Receiver<SourceUpdate>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    /// Long enough for a loaded CI machine; updates are expected within a second.
    const PATIENCE: Duration = Duration::from_secs(5);
    /// How long "nothing is sent" is watched for: several debounce periods.
    const QUIET: Duration = Duration::from_millis(600);

    fn tuning() -> Tuning {
        Tuning {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(400),
            ..Tuning::default()
        }
    }

    impl Harness {
        fn start_at(dir: tempfile::TempDir, path: &Path) -> Harness {
            let (tx, rx) = mpsc::channel(16);
            let shutdown = CancellationToken::new();
            let url = format!("file://{}", path.display());
            let config = SourceConfig::parse(&url).expect("temp dir URL");
            let task = spawn_tuned(config, tuning(), tx, shutdown.clone());
            Harness {
                dir,
                rx,
                shutdown,
                task,
            }
        }

        fn start(dir: tempfile::TempDir) -> Harness {
            let path = dir.path().to_owned();
            Harness::start_at(dir, &path)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn write(&self, name: &str, content: &str) {
            fs::write(self.path(name), content).expect("write test file");
        }

        async fn next(&mut self) -> SourceUpdate {
            match tokio::time::timeout(PATIENCE, self.rx.recv()).await {
                Ok(Some(update)) => update,
                Ok(None) => panic!("the source task ended"),
                Err(_) => panic!("no update within {PATIENCE:?}"),
            }
        }

        /// The next update, which must be a bundle: its files as (file name, content).
        async fn bundle(&mut self) -> Vec<(String, String)> {
            match self.next().await {
                SourceUpdate::Bundle(bundle) => {
                    assert!(bundle.version.starts_with("sha256:"), "{}", bundle.version);
                    bundle
                        .files
                        .into_iter()
                        .map(|f| {
                            let name = Path::new(&f.name);
                            assert_eq!(
                                name.parent(),
                                Some(self.dir.path()),
                                "names are full paths"
                            );
                            let name = name
                                .file_name()
                                .expect("file name")
                                .to_string_lossy()
                                .into_owned();
                            (
                                name,
                                String::from_utf8(f.content).expect("utf-8 test content"),
                            )
                        })
                        .collect()
                }
                other => panic!("expected a bundle, got {other:?}"),
            }
        }

        async fn quiet(&mut self) {
            if let Ok(update) = tokio::time::timeout(QUIET, self.rx.recv()).await {
                panic!("expected no update, got {update:?}");
            }
        }

        async fn stop(self) {
            self.shutdown.cancel();
            tokio::time::timeout(PATIENCE, self.task)
                .await
                .expect("the task ends on shutdown")
                .expect("the task does not panic");
        }
    }

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect()
    }

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    #[tokio::test]
    async fn follows_a_directory() {
        let dir = temp_dir();
        fs::write(dir.path().join("b.yaml"), "b: 1\n").expect("write");
        fs::write(dir.path().join("a.yml"), "a: 1\n").expect("write");
        fs::write(dir.path().join("notes.txt"), "not a manifest").expect("write");
        fs::create_dir(dir.path().join("sub.yaml")).expect("mkdir");
        fs::write(dir.path().join("sub.yaml/c.yaml"), "not recursive").expect("write");
        let mut h = Harness::start(dir);
        assert_eq!(
            h.bundle().await,
            files(&[("a.yml", "a: 1\n"), ("b.yaml", "b: 1\n")])
        );

        // Added.
        h.write("c.json", "{}");
        assert_eq!(
            h.bundle().await,
            files(&[("a.yml", "a: 1\n"), ("b.yaml", "b: 1\n"), ("c.json", "{}")])
        );

        // Edited.
        h.write("a.yml", "a: 2\n");
        assert_eq!(
            h.bundle().await,
            files(&[("a.yml", "a: 2\n"), ("b.yaml", "b: 1\n"), ("c.json", "{}")])
        );

        // Removed.
        fs::remove_file(h.path("c.json")).expect("remove");
        assert_eq!(
            h.bundle().await,
            files(&[("a.yml", "a: 2\n"), ("b.yaml", "b: 1\n")])
        );

        // Rewritten with the same content, touched: nothing to send.
        h.write("b.yaml", "b: 1\n");
        fs::File::open(h.path("a.yml"))
            .expect("open")
            .set_modified(std::time::SystemTime::now())
            .ok();
        h.quiet().await;

        // Editor noise and hidden files: ignored, nothing sent.
        h.write(".b.yaml.swp", "swap");
        h.write("b.yaml~", "backup");
        h.write(".hidden.yaml", "hidden: 1\n");
        h.write("#b.yaml#", "autosave");
        h.quiet().await;

        // Vim-style save: write a new file beside, then rename it into place.
        h.write(".b.yaml.tmp", "b: 2\n");
        fs::rename(h.path(".b.yaml.tmp"), h.path("b.yaml")).expect("rename");
        assert_eq!(
            h.bundle().await,
            files(&[("a.yml", "a: 2\n"), ("b.yaml", "b: 2\n")])
        );

        // Moved out of the directory.
        let elsewhere = temp_dir();
        fs::rename(h.path("a.yml"), elsewhere.path().join("a.yml")).expect("rename out");
        assert_eq!(h.bundle().await, files(&[("b.yaml", "b: 2\n")]));

        // Moved in from elsewhere.
        fs::rename(elsewhere.path().join("a.yml"), h.path("a.yaml")).expect("rename in");
        assert_eq!(
            h.bundle().await,
            files(&[("a.yaml", "a: 2\n"), ("b.yaml", "b: 2\n")])
        );

        // Several quick writes (an editor saving in steps): one bundle, the last content.
        for i in 0..5 {
            h.write("b.yaml", &format!("b: {i}\n"));
        }
        h.write("b.yaml", "b: 9\n");
        assert_eq!(
            h.bundle().await,
            files(&[("a.yaml", "a: 2\n"), ("b.yaml", "b: 9\n")])
        );
        h.quiet().await;
        h.stop().await;
    }

    #[tokio::test]
    async fn refuses_an_oversized_file_and_keeps_the_last_bundle() {
        let dir = temp_dir();
        fs::write(dir.path().join("a.yaml"), "a: 1\n").expect("write");
        let mut h = Harness::start(dir);
        assert_eq!(h.bundle().await, files(&[("a.yaml", "a: 1\n")]));

        let big = vec![b'#'; MAX_FILE_SIZE as usize + 1];
        fs::write(h.path("big.yaml"), &big).expect("write big");
        match h.next().await {
            SourceUpdate::Refused { error, source } => {
                assert_eq!(source, format!("file://{}", h.dir.path().display()));
                let big = h.path("big.yaml").display().to_string();
                assert!(error.contains(&big) && error.contains("4 MiB"), "{error}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Another change while the big file is there: still refused, not repeated.
        h.write("a.yaml", "a: 2\n");
        h.quiet().await;

        fs::remove_file(h.path("big.yaml")).expect("remove big");
        assert_eq!(h.bundle().await, files(&[("a.yaml", "a: 2\n")]));
        h.stop().await;
    }

    #[tokio::test]
    async fn waits_for_a_missing_directory() {
        let parent = temp_dir();
        let dir = parent.path().join("etc/manifests");
        let mut h = Harness::start_at(parent, &dir);
        match h.next().await {
            SourceUpdate::Unreachable {
                error, retry_in, ..
            } => {
                assert!(
                    error.contains(&dir.display().to_string()) && error.contains("does not exist"),
                    "{error}"
                );
                assert!(retry_in > Duration::ZERO);
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
        // Two levels are created; the watch moves down, then reads the directory.
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("a.yaml"), "a: 1\n").expect("write");
        loop {
            match h.next().await {
                SourceUpdate::Unreachable { .. } => continue,
                SourceUpdate::Bundle(b) if b.files.is_empty() => continue,
                SourceUpdate::Bundle(b) => {
                    assert_eq!(b.files.len(), 1);
                    assert_eq!(b.files[0].name, dir.join("a.yaml").display().to_string());
                    break;
                }
                other => panic!("expected a bundle, got {other:?}"),
            }
        }

        // Removed: unreachable again, the last bundle is not replaced by an empty one.
        fs::remove_dir_all(&dir).expect("rmdir");
        loop {
            match h.next().await {
                SourceUpdate::Unreachable { error, .. } => {
                    assert!(error.contains("does not exist"), "{error}");
                    break;
                }
                // Caught half way through the removal.
                SourceUpdate::Bundle(b) if b.files.is_empty() => continue,
                other => panic!("expected unreachable, got {other:?}"),
            }
        }
        h.stop().await;
    }

    #[tokio::test]
    async fn a_file_named_like_a_directory_is_unreachable() {
        let parent = temp_dir();
        let path = parent.path().join("manifests");
        fs::write(&path, "x").expect("write");
        let mut h = Harness::start_at(parent, &path);
        match h.next().await {
            SourceUpdate::Unreachable { error, .. } => {
                assert!(error.contains("is not a directory"), "{error}")
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
        h.stop().await;
    }
}
