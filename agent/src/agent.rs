//! `outpost agent`: the long-running node agent.
//!
//! In this first increment it owns the node's image store and containers: it
//! imports the air-gap dir, attaches to (or starts) the supervisor and re-adopts
//! every container, cleans what a crash left half-made, garbage-collects images
//! by disk threshold, and tells systemd it is ready. Sources, pods and the local
//! API build on it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use outpost_runtime::container::{Runtime, State};
use outpost_runtime::image::store::{GcPolicy, InUse, Store};
use outpost_systemd::{notify, Notify};
use serde::{Deserialize, Serialize};

use crate::cli::NodeDirs;

/// Container files younger than this may be a `ctr run` in progress elsewhere.
const ORPHAN_MIN_AGE: Duration = Duration::from_secs(30);

/// How often image GC checks the disk.
const GC_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub dirs: NodeDirs,
    /// Disk usage (percent) above which unused images are garbage-collected.
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub image_gc_high_threshold: u8,
    /// Disk usage (percent) image GC brings the store back under.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_low_threshold: u8,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if args.image_gc_low_threshold >= args.image_gc_high_threshold {
        anyhow::bail!(
            "--image-gc-low-threshold ({}) must be below --image-gc-high-threshold ({})",
            args.image_gc_low_threshold,
            args.image_gc_high_threshold
        );
    }
    let dirs = args.dirs.clone();
    for dir in [&dirs.state_dir, &dirs.run_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let store = dirs.store()?;
    let runtime = dirs.runtime()?;
    let policy = GcPolicy {
        high_percent: args.image_gc_high_threshold,
        low_percent: args.image_gc_low_threshold,
    };

    import_airgap(&store, &dirs.state_dir.join("airgap")).await;

    let rt = runtime.clone();
    let (containers, cleaned) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        // Starts the supervisor if none runs (first start, or after a reboot).
        let (pid, version) = rt.ping()?;
        tracing::info!(pid, version, "supervisor up");
        Ok((rt.list()?, rt.clean_orphans(ORPHAN_MIN_AGE)?))
    })
    .await??;
    let running = containers
        .iter()
        .filter(|c| c.state == State::Running)
        .count();
    tracing::info!(total = containers.len(), running, "re-adopted containers");
    for c in &containers {
        match &c.exit {
            Some(exit) => {
                tracing::info!(id = %c.id, code = exit.code, reason = exit.reason(), "container has exited")
            }
            None => {
                tracing::info!(id = %c.id, pid = ?c.pid, state = ?c.state, "container is alive")
            }
        }
    }
    if !cleaned.is_empty() {
        tracing::info!(
            ?cleaned,
            "removed leftovers of containers that were never created"
        );
    }

    let status = format!("{running} containers running");
    if let Err(e) = notify(&[Notify::Ready, Notify::Status(&status)]) {
        tracing::warn!("sd_notify: {e}");
    }

    let mut gc_tick = tokio::time::interval(GC_INTERVAL);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = gc_tick.tick() => collect_garbage(&store, &runtime, policy).await,
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Containers stay up: they belong to the supervisor, and a restarted agent re-adopts them.
    let _ = notify(&[Notify::Stopping]);
    tracing::info!("agent stopping; containers keep running");
    Ok(ExitCode::SUCCESS)
}

async fn collect_garbage(store: &Store, runtime: &Runtime, policy: GcPolicy) {
    let (store, runtime) = (store.clone(), runtime.clone());
    let result = tokio::task::spawn_blocking(move || {
        store.gc(policy, &InUse::from_records(runtime.records()))
    })
    .await;
    match result {
        Ok(Ok(removed)) if !removed.is_empty() => {
            tracing::info!(?removed, "image garbage collection")
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("image garbage collection: {e}"),
        Err(e) => tracing::warn!("image garbage collection task: {e}"),
    }
}

/// What the air-gap dir held at the last import, so unchanged tarballs are not
/// hashed again at every start.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AirgapSeen {
    files: Vec<(String, u64, i64)>,
}

/// Imports every tarball in the air-gap dir (pinned: never garbage-collected).
/// A bad tarball is reported and skipped; the others still load.
async fn import_airgap(store: &Store, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let seen_path = store.root().join("airgap-imported.json");
    let mut seen: AirgapSeen = std::fs::read(&seen_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    files.sort();
    let mut changed = false;
    for path in files {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let key = (
            path.to_string_lossy().into_owned(),
            meta.len(),
            std::os::unix::fs::MetadataExt::mtime(&meta),
        );
        if seen.files.contains(&key) {
            continue;
        }
        let (s, p) = (store.clone(), path.clone());
        match tokio::task::spawn_blocking(move || {
            outpost_runtime::image::import::import(&s, &p, true)
        })
        .await
        {
            Ok(Ok(records)) => {
                for r in records {
                    tracing::info!(image = %r.name, file = %path.display(), "imported air-gap image");
                }
                seen.files.push(key);
                changed = true;
            }
            Ok(Err(e)) => tracing::error!(file = %path.display(), "air-gap import refused: {e}"),
            Err(e) => tracing::error!(file = %path.display(), "air-gap import task: {e}"),
        }
    }
    if changed {
        if let Ok(data) = serde_json::to_vec(&seen) {
            let _ = std::fs::write(&seen_path, data);
        }
    }
}
